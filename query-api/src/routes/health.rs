//! Liveness, readiness, metrics and the OpenAPI document: the routes that need no key.
//! `/healthz` answers while the process serves; `/readyz` only while the store takes appends, so
//! a load balancer stops sending appends to an instance whose store closed or whose disk is full
//! (and says `degraded`, naming it, when a shared backend it can run without does not answer).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use annals_store::{Position, StoreError};

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready`, or `degraded` when a shared backend the process can run without (Redis, for cache
    /// invalidations) does not answer: appends and queries still work; see `degraded`.
    #[schema(value_type = String, pattern = "^(ready|degraded)$")]
    status: &'static str,
    /// The position of the last event in the store; null when it is empty.
    head_position: Option<u64>,
    /// The backends that do not answer (empty when ready).
    degraded: Vec<Degraded>,
}

/// A backend that does not answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Degraded {
    /// Which backend (`redis`).
    component: &'static str,
    /// What is wrong with it, without detail (`unreachable`); the detail is in the log.
    #[schema(value_type = String, pattern = "^unreachable$")]
    status: &'static str,
}

#[utoipa::path(get, operation_id = "healthz", path = "/healthz", tag = "operations", responses((status = 200, description = "The process serves", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[utoipa::path(
    get,
    operation_id = "readyz",
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The store answers (`status` `degraded` names the shared backends that do not: appends and queries still work)", body = Ready),
        (status = 503, description = "The store takes no appends: it is closing, its disk is full or its backend cannot be reached (`not-ready`, with `Retry-After`; ready again by itself once space is freed or the backend is back), or a failed commit needs a restart", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    let head = state.store.head().await?;
    // Ready means "send appends here": not while they would fail.
    state.store.writable().await.map_err(|e| match e {
        StoreError::Closed => ApiError::Store(e),
        other => ApiError::NotReady(other),
    })?;
    let mut degraded = Vec::new();
    for probe in &state.invalidations.probes {
        if let Err(reason) = probe.check().await {
            tracing::warn!(component = probe.name(), reason = %reason, "shared backend does not answer; degraded");
            degraded.push(Degraded { component: probe.name(), status: "unreachable" });
        }
    }
    let status = if degraded.is_empty() { "ready" } else { "degraded" };
    Ok(Json(Ready { status, head_position: head.map(Position::code), degraded }))
}

/// `GET /metrics`: the application's metrics, OpenMetrics text (which Prometheus reads).
#[utoipa::path(
    get,
    operation_id = "metrics",
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let head = state.store.head().await?;
    state.metrics.head_position.set(head.map_or(-1, |p| p.code() as i64));
    for view in state.views.all() {
        state.metrics.projections.set(&crate::views::progress(view, state.store.as_ref()).await?);
    }
    for queue in &state.invalidations.queues {
        state.metrics.invalidations.set(queue);
    }
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render()))
}

/// `GET /openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(
    get,
    operation_id = "openapi",
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
pub async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], state.openapi.get().cloned().unwrap_or_default())
}
