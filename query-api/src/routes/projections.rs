//! The projections: where each stands against the log, and rebuilds on demand (operator keys
//! only: the figures and the views span tenants; a tenant's admin gets `403`).

use annals_projectors::control::{self, ControlError};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::path::PathParam;
use crate::auth::{Action, Principal};
use crate::error::ApiError;
use crate::state::AppState;
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
        projections.push(crate::views::progress(view, state.store.as_ref()).await?);
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
    PathParam(name): PathParam,
) -> Result<Json<Progress>, ApiError> {
    principal.require(Action::ManageProjections)?;
    let view = state.views.by_name(&name).ok_or(ApiError::DocumentNotFound { kind: "projection", id: name })?;
    Ok(Json(crate::views::progress(view, state.store.as_ref()).await?))
}

/// What `POST /v1/projections/{name}/rebuild` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct RebuildAccepted {
    pub projection: String,
    /// The generation being built; it serves once it has caught up.
    pub generation: u64,
    /// Where to follow its progress (`rebuild` in the projection's progress).
    pub status_url: String,
}

/// `POST /v1/projections/{name}/rebuild`: builds a new generation of the view from position 0
/// beside the serving one, which keeps answering queries until the new one has caught up.
///
/// The request is an event on the system stream `$projections`; the process running the
/// projector picks it up (this one with `role = "all"`; with `api` and `projector` processes,
/// the projector process that holds the view's lease), and every API process serves the new
/// generation once it has caught up.
#[utoipa::path(
    post,
    operation_id = "rebuild_projection",
    path = "/v1/projections/{name}/rebuild",
    tag = "projections",
    params(("name" = String, Path, description = "`messages` or `audit`")),
    responses(
        (status = 202, description = "The rebuild is requested", body = RebuildAccepted),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such projection", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "A rebuild of this projection is already running", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn rebuild(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(name): PathParam,
) -> Result<(StatusCode, Json<RebuildAccepted>), ApiError> {
    principal.require(Action::ManageProjections)?;
    let view = state.views.by_name(&name).ok_or(ApiError::DocumentNotFound { kind: "projection", id: name })?;
    let generation = match control::request_rebuild(state.store.as_ref(), view.name()).await {
        Ok(generation) => generation,
        Err(ControlError::RebuildRunning { projection, generation }) => {
            return Err(ApiError::RebuildRunning { projection, generation })
        }
        Err(ControlError::Store(e)) => return Err(e.into()),
    };
    let projection = view.name().to_owned();
    let status_url = format!("/v1/projections/{projection}");
    Ok((StatusCode::ACCEPTED, Json(RebuildAccepted { projection, generation, status_url })))
}
