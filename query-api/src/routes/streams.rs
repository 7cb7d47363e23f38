//! One stream: append to it, read its history.

use annals_store::{Direction, ReadFrom, Revision, StreamId};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use std::time::Instant;

use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::params::QueryParams;
use super::path::PathParam;
use crate::auth::{Action, Principal, Tenant};
use crate::error::ApiError;
use crate::metrics::AppendOutcome;
use crate::state::AppState;
use crate::wire::{AppendBody, Appended, Page, Schemas};

/// `POST /v1/streams/{stream}/events`: appends atomically; `201` with the revisions and positions.
#[utoipa::path(
    post,
    operation_id = "append_events",
    path = "/v1/streams/{stream}/events",
    tag = "streams",
    description = "Appends the events atomically (all or none). Sending ids makes retries safe: an append whose ids \
                   are stored in this stream at the same revisions returns the original answer and writes nothing.",
    params(
        ("stream" = String, Path, description = "The stream's name within the caller's tenant; names starting with $ are reserved"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context, stored in each event's metadata")
    ),
    request_body(content = AppendBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Appended, or an exact retry of an earlier append", body = Appended),
        (status = 400, description = "Malformed JSON, an invalid field, an empty batch or an invalid stream name; or JSON that readers would not all read alike — a duplicate key, a lone surrogate escape, a number beyond a 64-bit float, containers nested more than 127 levels in data or metadata — with the `pointer` of the first", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Wrong expected revision (with expected and actual), or ids stored already but not as this append would store them (another stream, other revisions, part of the batch)", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, description = "An event or the body is larger than the limit", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within the body timeout", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 415, description = "A body whose content type is not application/json (or a +json type)", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Event data violates its type's schema, or the type's definition cannot read it (a whole number written as 1.0, a uint32 beyond 4294967295), with pointer and rule; or no schema for it in strict mode", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 507, description = "The store's disk is full (less than `ANNALS_MIN_FREE_BYTES` free): nothing was written; retry with the same ids after `Retry-After`", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn append(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    PathParam(stream): PathParam,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Appended>), ApiError> {
    let started = Instant::now();
    let result = append_inner(&state, &principal, &headers, &stream, body).await;
    let outcome = match &result {
        Ok(_) => AppendOutcome::Ok,
        Err(e) if e.status() == StatusCode::CONFLICT => AppendOutcome::Conflict,
        Err(e) if e.status().is_client_error() => AppendOutcome::Rejected,
        Err(_) => AppendOutcome::Error,
    };
    state.metrics.count_append(outcome);
    state.metrics.append_duration.observe(started.elapsed().as_secs_f64());
    result
}

async fn append_inner(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    stream: &str,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Appended>), ApiError> {
    principal.require(Action::Append)?;
    let stream = client_stream(&principal.tenant, stream)?;
    let body = body.map_err(|r| ApiError::body_rejected(r, state.settings.max_body_bytes))?;
    structure(&body)?;
    let body: AppendBody = crate::wire::body_object(&body)?;
    let expected = body.expected()?;
    // The W3C trace context of the request travels with the events, so that whoever consumes
    // them (projectors, other services) can continue the trace.
    let traceparent = crate::trace::traceparent_for_events(headers);
    let schemas = Schemas { registry: &state.schemas, strict: state.settings.strict_schemas };
    let events = body.into_events(traceparent.as_deref(), &schemas)?;
    let (count, bytes) = (events.len() as u64, events.iter().map(|e| e.payload_len() as u64).sum::<u64>());
    let result =
        state.store.append_to_stream(&stream, expected, events).await.map_err(|e| principal.tenant.client_error(e))?;
    state.metrics.appended_events.inc_by(count);
    state.metrics.appended_bytes.inc_by(bytes);
    Ok((StatusCode::CREATED, Json(Appended::new(result, &principal.tenant))))
}

/// Containers around an event's `data` and `metadata` in an append body (`{"events": [{"data"`).
const ENVELOPE_DEPTH: usize = 3;

/// The structural check of the whole body, for every event whatever its type: one pass over the
/// bytes (the body is parsed once, with `RawValue`, which proves only the grammar), so that what
/// is stored is what every reader reads the same way. A grammar error is left to the parser,
/// which words it.
fn structure(body: &[u8]) -> Result<(), ApiError> {
    use annals_schemas::structure::{check, Flaw, MAX_DEPTH};
    match check(body, ENVELOPE_DEPTH + MAX_DEPTH) {
        Ok(()) => Ok(()),
        Err(e) if e.flaw == Flaw::Syntax => Ok(()),
        // The limit as a client counts it: levels inside its data or metadata.
        Err(e) if matches!(e.flaw, Flaw::TooDeep { .. }) => Err(ApiError::UnreadableJson {
            detail: format!(
                "{:?} nests containers deeper than {MAX_DEPTH} levels inside an event's data or metadata",
                e.pointer
            ),
            pointer: e.pointer,
        }),
        Err(e) => Err(ApiError::UnreadableJson { detail: e.to_string(), pointer: e.pointer }),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// The first revision to return (included); default: the first (forwards) or last (backwards).
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    from_revision: Option<u64>,
    #[param(value_type = Option<crate::openapi::Direction>)]
    direction: Option<Direction>,
    /// Events per page (default 100, at most the server's `max_page`).
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    limit: Option<usize>,
}

/// `GET /v1/streams/{stream}/events`: a page of the stream's history; `404` if it has none.
#[utoipa::path(
    get,
    operation_id = "read_stream",
    path = "/v1/streams/{stream}/events",
    tag = "streams",
    params(("stream" = String, Path, description = "The stream's name within the caller's tenant"), ReadParams),
    responses(
        (status = 200, description = "A page of events: up to `limit`, and past the first, up to the server's `max_page_bytes` of data and metadata; `next` links to the following page when this one is full", body = Page),
        (status = 400, description = "An invalid parameter", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "The stream has no events", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn read(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(name): PathParam,
    params: Result<QueryParams<ReadParams>, ApiError>,
) -> Result<axum::response::Response, ApiError> {
    principal.require(Action::Read)?;
    let stream = client_stream(&principal.tenant, &name)?;
    let QueryParams(params) = params?;
    let direction = params.direction.unwrap_or(Direction::Forwards);
    let limit = super::params::limit(params.limit, state.settings.max_page)?;
    let from = match (params.from_revision, direction) {
        (Some(r), _) => ReadFrom::At(Revision(r)),
        (None, Direction::Forwards) => ReadFrom::Start,
        (None, Direction::Backwards) => ReadFrom::End,
    };
    let max_bytes = state.settings.max_page_bytes;
    let read = super::page::read_stream_bounded(state.store.as_ref(), &stream, from, direction, limit, max_bytes);
    let Some((events, full)) = read.await? else { return Err(ApiError::StreamNotFound(name)) };
    let next_revision = match (events.last(), direction) {
        (Some(_), _) if !full => None,
        (Some(last), Direction::Forwards) => Some(last.revision.0 + 1),
        (Some(last), Direction::Backwards) => last.revision.0.checked_sub(1),
        (None, _) => None,
    };
    let direction_name = match direction {
        Direction::Forwards => "forwards",
        Direction::Backwards => "backwards",
    };
    // The name as a path segment: a stream name may hold `/`, `?`, `#`, `%` or spaces.
    let segment = super::params::encode(&name);
    let next = next_revision
        .map(|r| format!("/v1/streams/{segment}/events?from_revision={r}&direction={direction_name}&limit={limit}"));
    Ok(super::page::page_response(events, &principal.tenant, next))
}

/// The store's name of a client's stream: valid, not a system name (`$…`, which only the server
/// itself writes), under the caller's tenant.
fn client_stream(tenant: &Tenant, name: &str) -> Result<StreamId, ApiError> {
    if StreamId::new(name)?.is_system() {
        return Err(annals_store::StoreError::InvalidStreamName {
            name: name.to_owned(),
            reason: "names starting with $ are reserved for the system",
        }
        .into());
    }
    tenant.stream(name)
}
