//! `annals-query-api`: the HTTP API (axum). Empty until issue 3 lands the append, read, replay
//! and live-tail endpoints; it exists now so the workspace has its final shape.
