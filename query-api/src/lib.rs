//! `annals-query-api`: the HTTP API (axum) over an [`EventStore`](annals_store::EventStore):
//! append, read a stream, read the global log, live tail, search the message and audit views
//! (`views.rs`), API keys, health. Every `/v1` request is authenticated by an API key that fixes
//! its tenant and role (`auth/`). Built as a value from typed settings and the backends it is
//! given ([`Application::build`]`(ApiSettings, Deps)`), so that `annals serve` and the black-box
//! tests run the same thing.
//!
//! Knows the store only through the `EventStore` trait and opens no backend: the composition
//! root (the `annals` crate, `src/compose/`) does. Every failure becomes an
//! `application/problem+json` response in one place, `error.rs`.

mod app;
mod auth;
mod cache;
mod contract;
mod documents;
mod edge;
mod error;
pub mod integrity;
mod metrics;
mod openapi;
mod routes;
mod server;
mod settings;
mod state;
mod trace;
mod views;
mod wire;

pub use app::{Application, Deps, BOOTSTRAP_TENANT};
pub use auth::{generate_token, Role};
pub use cache::{BackendProbe, CacheSettings, InvalidationDeps};
pub use error::{ApiError, Error};
pub use settings::{parse_cors_origins, ApiSettings};
pub use views::{OpenViews, Views};
