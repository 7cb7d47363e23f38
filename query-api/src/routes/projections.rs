//! The projections: where each stands against the log (admin only: the figures span tenants).

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::auth::{Action, Principal};
use crate::error::ApiError;
use crate::views::Progress;

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionList {
    pub projections: Vec<Progress>,
}

/// `GET /v1/projections`: every projection's progress.
#[utoipa::path(
    get,
    operation_id = "list_projections",
    path = "/v1/projections",
    tag = "projections",
    responses(
        (status = 200, description = "Every projection: state, checkpoint, head, lag, applied and parked events", body = ProjectionList),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn list(State(state): State<AppState>, principal: Principal) -> Result<Json<ProjectionList>, ApiError> {
    principal.require(Action::ManageProjections)?;
    let mut projections = Vec::new();
    for view in state.views.all() {
        projections.push(view.progress(state.store.as_ref()).await?);
    }
    Ok(Json(ProjectionList { projections }))
}

/// `GET /v1/projections/{name}`: one projection's progress.
#[utoipa::path(
    get,
    operation_id = "get_projection",
    path = "/v1/projections/{name}",
    tag = "projections",
    params(("name" = String, Path, description = "`messages` or `audit`")),
    responses(
        (status = 200, description = "The projection's progress", body = Progress),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such projection", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Progress>, ApiError> {
    principal.require(Action::ManageProjections)?;
    let view = state.views.by_name(&name).ok_or(ApiError::DocumentNotFound { kind: "projection", id: name })?;
    Ok(Json(view.progress(state.store.as_ref()).await?))
}
