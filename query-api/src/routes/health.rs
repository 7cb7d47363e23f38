//! Liveness and readiness: `/healthz` answers while the process serves; `/readyz` only while the
//! store answers too, so a load balancer stops sending appends to an instance whose store closed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::error::ApiError;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /metrics`: the application's metrics, OpenMetrics text (which Prometheus reads).
pub async fn metrics(State(state): State<AppState>) -> Result<impl axum::response::IntoResponse, ApiError> {
    let head = state.store.head().await?;
    state.metrics.head_position.set(head.map_or(-1, |p| p.0 as i64));
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    ))
}

pub async fn readyz(State(state): State<AppState>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let head = state.store.head().await?;
    Ok((StatusCode::OK, Json(json!({ "status": "ready", "head_position": head.map(|p| p.0) }))))
}
