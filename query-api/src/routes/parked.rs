//! Parked events of a projection: what a view could not apply, with the reason, read from the
//! system stream `$parked-{name}` the projector records them in (admin only: entries span
//! tenants). Oldest first, paged by revision of that stream.

use annals_store::{Direction, ReadFrom, ReadStreamOutcome, Revision};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::events::{limit, query_error};
use crate::app::AppState;
use crate::auth::{Action, Principal};
use crate::error::ApiError;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ParkedParams {
    /// The first entry to return (its `revision`); default: the oldest.
    from_revision: Option<u64>,
    /// Entries per page (default 100, at most the server's `max_page`).
    limit: Option<usize>,
}

/// One event the projection could not apply.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParkedEvent {
    /// Its place in `$parked-{name}`.
    pub revision: u64,
    /// When it was parked.
    pub parked_at: chrono::DateTime<chrono::Utc>,
    /// The parked event as recorded: `position`, `stream` (with its tenant prefix), `event_id`,
    /// `event_type` and the `error` that stopped it.
    #[schema(value_type = Object)]
    pub entry: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ParkedPage {
    pub items: Vec<ParkedEvent>,
    /// The next page, when this one is full.
    pub next: Option<String>,
}

/// `GET /v1/projections/{name}/parked`: the events the projection parked, oldest first.
#[utoipa::path(
    get,
    operation_id = "list_parked_events",
    path = "/v1/projections/{name}/parked",
    tag = "projections",
    params(("name" = String, Path, description = "`messages` or `audit`"), ParkedParams),
    responses(
        (status = 200, description = "A page of parked events with the reason each could not be applied", body = ParkedPage),
        (status = 400, description = "An invalid parameter", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such projection", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    params: Result<Query<ParkedParams>, QueryRejection>,
) -> Result<Json<ParkedPage>, ApiError> {
    principal.require(Action::ManageProjections)?;
    let Query(params) = params.map_err(query_error)?;
    let view = state.views.by_name(&name).ok_or(ApiError::DocumentNotFound { kind: "projection", id: name })?;
    let limit = limit(params.limit, state.settings.max_page)?;
    let stream = annals_projectors::runtime::parked_stream(view.name())?;
    let from = params.from_revision.map_or(ReadFrom::Start, |r| ReadFrom::At(Revision(r)));
    let events = match state.store.read_stream(&stream, from, Direction::Forwards, limit).await? {
        ReadStreamOutcome::Events(events) => events,
        ReadStreamOutcome::StreamNotFound => Vec::new(),
    };
    let next = (events.len() == limit).then(|| {
        let last = events.last().expect("a full page is not empty").revision.0;
        format!("/v1/projections/{}/parked?from_revision={}&limit={limit}", view.name(), last + 1)
    });
    let items = events
        .into_iter()
        .map(|e| ParkedEvent {
            revision: e.revision.0,
            parked_at: e.recorded_at,
            // Written by the projector as JSON; anything else is shown as it is.
            entry: serde_json::from_slice(&e.data)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&e.data).into_owned())),
        })
        .collect();
    Ok(Json(ParkedPage { items, next }))
}
