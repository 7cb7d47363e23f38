//! Parked events of a projection: what a view could not apply, with the reason, and replays of
//! them once the cause is fixed (operator keys only: entries span tenants). An operator runs the
//! system and reads no tenant's data, so an entry shows where the event is (stream, position),
//! its type and the *kind* of error, never the error's text, which quotes the event's data
//! (`ApplyError`'s messages name values the decoder refused). Both work on the serving
//! generation's parked stream (`annals_projectors::parked`): listing folds it, a replay appends a
//! request to it that the projector carries out in log order.

use annals_projectors::control;
use annals_projectors::parked::{self, Parked, ReplayOutcome, ReplayRequest};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::params::{limit, QueryParams};
use super::path::PathParam;
use crate::auth::{Action, Principal};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ParkedParams {
    /// The first entry to return (its `revision`); default: the oldest.
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    from_revision: Option<u64>,
    /// Entries per page (default 100, at most the server's `max_page`).
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    limit: Option<usize>,
    /// Only entries in this state: `parked` (no replay has applied it) or `replayed`.
    status: Option<ParkedStatus>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParkedStatus {
    /// Not applied to the view (never replayed, or every replay failed).
    Parked,
    /// A replay applied it.
    Replayed,
}

/// One event the projection could not apply.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParkedEvent {
    /// Its place in the generation's parked stream (`$parked-{name}`, `$parked-{name}-gen-N`).
    pub revision: u64,
    /// When it was parked.
    pub parked_at: chrono::DateTime<chrono::Utc>,
    /// Where the parked event is and what kind of error stopped it.
    pub entry: ParkedEntryView,
    pub status: ParkedStatus,
    /// What each replay did to it, oldest first.
    pub replays: Vec<ReplayResult>,
}

/// A parked event as an operator sees it: where it is, never what it holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParkedEntryView {
    /// Its position in the log.
    pub position: u64,
    /// Its stream, with the tenant's prefix (`{tenant}/{stream}`).
    pub stream: String,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    /// Why it could not be applied.
    pub error_kind: ErrorKind,
}

/// Why an event could not be applied, without the values involved (read the event from the log
/// with access to the data, `annals store read`, for those).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// A `message.*` event on a stream that is not `message-{id}`.
    NotAMessageStream,
    /// An event applied to another stream's document.
    WrongStream,
    /// An event type the view does not know.
    UnknownEventType,
    /// A `metadata.schema_version` the view was not written for.
    UnsupportedSchemaVersion,
    /// Data that does not decode as the event type's schema.
    InvalidData,
    /// Data that names another message than its stream.
    MessageIdMismatch,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// The kind of a parked entry's error, from its text (what the projector records, in every
    /// version so far; the phrases are `annals_projectors::ApplyError`'s). A stream name quoted
    /// in the text could mislead it into another kind, never into showing the text.
    fn of(error: &str) -> ErrorKind {
        if error.starts_with("stream ") && error.contains("is not a message stream") {
            ErrorKind::NotAMessageStream
        } else if error.starts_with("event type ") && error.contains(" view applies") {
            ErrorKind::UnknownEventType
        } else if error.starts_with("event at position ") && error.contains("applied to the document of stream") {
            ErrorKind::WrongStream
        } else if error.starts_with("event at position ") && error.contains(" names message ") {
            ErrorKind::MessageIdMismatch
        } else if error.contains(" has schema_version ") {
            ErrorKind::UnsupportedSchemaVersion
        } else if error.contains(" does not match its schema") {
            ErrorKind::InvalidData
        } else {
            ErrorKind::Other
        }
    }
}

/// One replay's outcome for one parked event.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayResult {
    /// The position of the replay request in the log.
    pub replayed_at: u64,
    /// `applied`, or `failed` (then `error_kind` says why; the event stays parked).
    #[schema(value_type = String)]
    pub outcome: ReplayOutcome,
    pub error_kind: Option<ErrorKind>,
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
        (status = 200, description = "A page of parked events with the kind of error that stopped each (never the data)", body = ParkedPage),
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
    PathParam(name): PathParam,
    params: Result<QueryParams<ParkedParams>, ApiError>,
) -> Result<Json<ParkedPage>, ApiError> {
    principal.require(Action::ManageProjections)?;
    let QueryParams(params) = params?;
    let view = state.views.by_name(&name).ok_or(ApiError::DocumentNotFound { kind: "projection", id: name })?;
    let limit = limit(params.limit, state.settings.max_page)?;
    let from = params.from_revision.unwrap_or(0);
    let serving = view.serving();
    let mut log = serving.parked.lock().await;
    let log = log.refresh(state.store.as_ref()).await?;
    let items: Vec<ParkedEvent> = log
        .entries()
        .into_iter()
        .filter(|p| p.revision.0 >= from && params.status.is_none_or(|s| s == status_of(p)))
        .take(limit)
        .map(item)
        .collect();
    let next = (items.len() == limit).then(|| {
        let last = items.last().expect("a full page is not empty").revision;
        let status = params.status.map_or(String::new(), |s| format!("&status={}", status_name(s)));
        format!("/v1/projections/{}/parked?from_revision={}&limit={limit}{status}", view.name(), last + 1)
    });
    Ok(Json(ParkedPage { items, next }))
}

/// The body of `POST /v1/projections/{name}/parked/replay` (optional: no body replays every
/// parked event).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// Only these parked events (their `position` in the log); default: every one still parked.
    #[serde(default, deserialize_with = "crate::wire::whole_numbers")]
    pub positions: Option<Vec<u64>>,
}

/// What a replay request answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayAccepted {
    pub projection: String,
    /// The generation whose parked events are replayed (the serving one).
    pub generation: u64,
    /// Parked events the replay takes.
    pub events: usize,
    /// The request's position in the log: the replay is done when the projection's checkpoint
    /// has reached it (`GET /v1/projections/{name}`); `null` when there was nothing to replay.
    pub replay_position: Option<u64>,
    /// Where to see each event's outcome.
    pub parked_url: String,
}

/// `POST /v1/projections/{name}/parked/replay`: applies parked events again, after the cause
/// was fixed. The projector does it in log order when it reaches the request; an event that
/// fails again stays parked with the new error.
#[utoipa::path(
    post,
    operation_id = "replay_parked_events",
    path = "/v1/projections/{name}/parked/replay",
    tag = "projections",
    params(("name" = String, Path, description = "`messages` or `audit`")),
    request_body(content = Option<ReplayBody>, description = "Which parked events; none: all of them"),
    responses(
        (status = 202, description = "The replay was requested", body = ReplayAccepted),
        (status = 200, description = "Nothing is parked: nothing to replay", body = ReplayAccepted),
        (status = 400, description = "A malformed body", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the limit", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within the body timeout", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 415, description = "A body whose content type is not application/json (or a +json type)", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such projection", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "A rebuild is running: replay once it serves", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A position that is not a parked event still waiting", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn replay(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(name): PathParam,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ReplayAccepted>), ApiError> {
    principal.require(Action::ManageProjections)?;
    let body = body.map_err(|r| ApiError::body_rejected(r, state.settings.max_body_bytes))?;
    let view = state.views.by_name(&name).ok_or(ApiError::DocumentNotFound { kind: "projection", id: name })?;
    // No body and `null` ask for every parked event, as the document's `oneOf [null, ReplayBody]`
    // says; anything else must be an object (serde would take `[null]`, the struct as an array).
    let body: ReplayBody = if body.iter().all(u8::is_ascii_whitespace)
        || serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v.is_null())
    {
        ReplayBody::default()
    } else {
        crate::wire::body_object(&body)?
    };
    // A request goes to the serving generation's stream: a rebuild switching before the old
    // projector reached it would drop it unseen, and the new generation parks afresh anyway.
    // Running here, or requested and not yet picked up by the projection host (it polls).
    let requested = control::read_state(state.store.as_ref(), view.name()).await?.0.rebuilding;
    if let Some(generation) = view.rebuild().map(|r| r.generation.number).or(requested.map(|r| r.generation)) {
        return Err(ApiError::RebuildRunning { projection: view.name().to_owned(), generation });
    }
    let serving = view.serving();
    let mut log = serving.parked.lock().await;
    let log = log.refresh(state.store.as_ref()).await?;
    let waiting: std::collections::BTreeSet<u64> =
        log.entries().into_iter().filter(|p| !p.resolved()).map(|p| p.entry.position).collect();
    if body.positions.as_ref().is_some_and(Vec::is_empty) {
        return Err(ApiError::MalformedBody(
            "/positions lists no position (leave it out to replay every parked event)".into(),
        ));
    }
    let positions = body.positions.map(|p| p.into_iter().collect::<std::collections::BTreeSet<u64>>());
    if let Some(positions) = &positions {
        let unknown: Vec<u64> = positions.iter().copied().filter(|p| !waiting.contains(p)).collect();
        if !unknown.is_empty() {
            return Err(ApiError::NotParked { projection: view.name().to_owned(), positions: unknown });
        }
    }
    let events = positions.as_ref().map_or(waiting.len(), std::collections::BTreeSet::len);
    let mut accepted = ReplayAccepted {
        projection: view.name().to_owned(),
        generation: serving.number,
        events,
        replay_position: None,
        parked_url: format!("/v1/projections/{}/parked", view.name()),
    };
    if events == 0 {
        return Ok((StatusCode::OK, Json(accepted)));
    }
    let request =
        ReplayRequest { projection: view.name().to_owned(), positions: positions.map(|p| p.into_iter().collect()) };
    let at = parked::request_replay(state.store.as_ref(), log.stream(), &request).await?;
    accepted.replay_position = Some(at.code());
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

fn item(p: &Parked) -> ParkedEvent {
    let entry = &p.entry;
    ParkedEvent {
        revision: p.revision.0,
        parked_at: p.parked_at,
        entry: ParkedEntryView {
            position: entry.position,
            stream: entry.stream.clone(),
            event_id: entry.event_id,
            event_type: entry.event_type.clone(),
            error_kind: ErrorKind::of(&entry.error),
        },
        status: status_of(p),
        replays: p
            .replays
            .iter()
            .map(|r| ReplayResult {
                replayed_at: r.replayed_at,
                outcome: r.outcome,
                error_kind: r.error.as_deref().map(ErrorKind::of),
            })
            .collect(),
    }
}

fn status_of(p: &Parked) -> ParkedStatus {
    if p.resolved() {
        ParkedStatus::Replayed
    } else {
        ParkedStatus::Parked
    }
}

fn status_name(s: ParkedStatus) -> &'static str {
    match s {
        ParkedStatus::Parked => "parked",
        ParkedStatus::Replayed => "replayed",
    }
}
