//! `/v1/schemas`: the registered event types and their JSON Schemas, every published version.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::ApiError;

/// `GET /v1/schemas`: every type and version, with where to get its schema.
pub async fn list(State(state): State<AppState>, _caller: Principal) -> Json<Value> {
    let schemas: Vec<Value> = state
        .schemas
        .schemas()
        .into_iter()
        .map(|s| json!({ "type": s.event_type, "version": s.version, "url": format!("/v1/schemas/{}", s.event_type) }))
        .collect();
    Json(json!({ "schemas": schemas }))
}

/// `GET /v1/schemas/{type}`: every published version of one type's schema.
pub async fn get(
    State(state): State<AppState>,
    _caller: Principal,
    Path(event_type): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let versions: Vec<Value> = state
        .schemas
        .schemas()
        .into_iter()
        .filter(|s| s.event_type == event_type)
        .map(|s| json!({ "version": s.version, "schema": s.schema }))
        .collect();
    if versions.is_empty() {
        return Err(ApiError::SchemaNotFound(event_type));
    }
    Ok(Json(json!({ "type": event_type, "versions": versions })))
}
