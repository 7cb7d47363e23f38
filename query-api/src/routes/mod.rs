//! The router: every route of the API in one table, each handler in the file of its resource.

mod events;
mod health;
mod keys;
mod live;
mod schemas;
mod streams;

use axum::extract::{DefaultBodyLimit, Request};
use axum::routing::get;
use axum::Router;

use crate::app::AppState;
use crate::error::ApiError;

pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.max_body_bytes;
    Router::new()
        .route("/v1/streams/{stream}/events", get(streams::read).post(streams::append))
        .route("/v1/events", get(events::read_all))
        .route("/v1/events/live", get(live::live))
        .route("/v1/keys", get(keys::list).post(keys::create))
        .route("/v1/keys/{id}", axum::routing::delete(keys::revoke))
        .route("/v1/schemas", get(schemas::list))
        .route("/v1/schemas/{type}", get(schemas::get))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        // One span per request, with method, path and status; handlers' logs nest in it.
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!("{} {}", request.method(), request.uri().path()))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} {}", request.method(), request.uri().path()))
}
