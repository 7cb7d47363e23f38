//! The router: every route of the API in one table, each handler in the file of its resource.
//! Routes go through `utoipa_axum::routes!`, which puts each handler's `#[utoipa::path]` into
//! the OpenAPI document as it adds the route: nothing is served undocumented.

mod audit;
mod cached;
mod cors;
mod events;
mod export;
mod export_body;
mod export_page;
mod health;
mod integrity;
mod invalidations;
mod keys;
mod live;
mod live_tokens;
mod messages;
mod page;
pub(crate) mod params;
mod parked;
mod path;
mod projections;
mod schemas;
pub(crate) mod search;
mod streams;

use axum::extract::{DefaultBodyLimit, Request};
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::openapi::ApiDoc;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.max_body_bytes;
    let cors_origins = state.settings.cors_origins.clone();
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(streams::read, streams::append))
        .routes(routes!(events::read_all))
        .routes(routes!(live::live))
        .routes(routes!(live_tokens::mint))
        .routes(routes!(messages::search))
        .routes(routes!(export::messages))
        .routes(routes!(messages::get))
        .routes(routes!(messages::history))
        .routes(routes!(audit::search))
        .routes(routes!(export::audit))
        .routes(routes!(audit::get))
        .routes(routes!(invalidations::follow))
        .routes(routes!(projections::list))
        .routes(routes!(projections::get))
        .routes(routes!(projections::rebuild))
        .routes(routes!(parked::list))
        .routes(routes!(parked::replay))
        .routes(routes!(keys::list, keys::create))
        .routes(routes!(keys::revoke))
        .routes(routes!(schemas::list))
        .routes(routes!(schemas::get))
        .routes(routes!(integrity::public_key))
        .routes(routes!(integrity::head))
        .routes(routes!(integrity::inclusion))
        .routes(routes!(integrity::consistency))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(health::openapi))
        .split_for_parts();
    let _ = state.openapi.set(crate::openapi::document(api));
    let router = router
        // Bodies must be JSON (`415` otherwise) and arrive in time: on routes, not the fallbacks.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::edge::json_bodies))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(crate::edge::head_limits))
        // One span per request, with method, path and status; handlers' logs nest in it.
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(crate::trace::request_span))
        .with_state(state);
    cors::layer(router, &cors_origins)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!("{} {}", request.method(), request.uri().path()))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} {}", request.method(), request.uri().path()))
}
