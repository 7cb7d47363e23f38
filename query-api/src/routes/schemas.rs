//! `/v1/schemas`: the registered event types and their JSON Schemas, every published version.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::path::PathParam;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct SchemaList {
    schemas: Vec<SchemaEntry>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SchemaEntry {
    #[serde(rename = "type")]
    event_type: String,
    version: u32,
    /// Where the type's schemas are.
    url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SchemaVersions {
    #[serde(rename = "type")]
    event_type: String,
    versions: Vec<SchemaVersion>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SchemaVersion {
    version: u32,
    /// The JSON Schema (draft 2020-12).
    #[schema(value_type = Object)]
    schema: Value,
}

/// `GET /v1/schemas`: every type and version, with where to get its schema.
#[utoipa::path(
    get,
    operation_id = "list_schemas",
    path = "/v1/schemas",
    tag = "schemas",
    responses(
        (status = 200, description = "Every registered type and version", body = SchemaList),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn list(State(state): State<AppState>, _caller: Principal) -> Json<SchemaList> {
    let schemas = state
        .schemas
        .schemas()
        .into_iter()
        .map(|s| SchemaEntry {
            url: format!("/v1/schemas/{}", s.event_type),
            event_type: s.event_type,
            version: s.version,
        })
        .collect();
    Json(SchemaList { schemas })
}

/// `GET /v1/schemas/{type}`: every published version of one type's schema.
#[utoipa::path(
    get,
    operation_id = "get_schema",
    path = "/v1/schemas/{type}",
    tag = "schemas",
    params(("type" = String, Path, description = "An event type, e.g. message.sent")),
    responses(
        (status = 200, description = "The type's schemas, by version", body = SchemaVersions),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No schema is registered for the type", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    _caller: Principal,
    PathParam(event_type): PathParam,
) -> Result<Json<SchemaVersions>, ApiError> {
    let versions: Vec<SchemaVersion> = state
        .schemas
        .schemas()
        .into_iter()
        .filter(|s| s.event_type == event_type)
        .map(|s| SchemaVersion { version: s.version, schema: s.schema })
        .collect();
    if versions.is_empty() {
        return Err(ApiError::SchemaNotFound(event_type));
    }
    Ok(Json(SchemaVersions { event_type, versions }))
}
