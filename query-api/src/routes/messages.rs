//! The message log: search the `messages` view, open one message (as it is now, or as it was at
//! a time, folded from the log with the projector's own code), and replay its raw events.

use annals_projectors::view_store::Filter;
use annals_projectors::{fold_message_skipping, MessageStatus};
use annals_store::{Direction, ReadFrom, ReadStreamOutcome, Revision, StoreError, StreamId};
use axum::extract::{RawQuery, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use annals_projectors::invalidation::{InvalidatedKey, KeyKind};
use annals_projectors::MessagesProjection;
use axum::response::{IntoResponse, Response};

use super::cached;
use super::params::{encode, limit, QueryParams};
use super::path::PathParam;
use super::search::{self, Paging, SearchPage};
use crate::auth::{Action, Principal};
use crate::cache::CacheKey;
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::Page;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessageSearch {
    /// Comma-separated statuses (ENQUEUED, ROUTED, SENT, DELIVERED, OPENED, CLICKED,
    /// UNDELIVERABLE, CANCELED, THROTTLED); a message must have one of them.
    status: Option<String>,
    /// A recipient id, email or phone, exactly.
    recipient: Option<String>,
    channel: Option<String>,
    provider: Option<String>,
    /// A template id.
    template: Option<String>,
    tag: Option<String>,
    /// Messages with (true) or without (false) a delivery error.
    has_errors: Option<bool>,
    /// Full text over subject, recipient and template: every word must match (words of any
    /// length; a `q` of only punctuation matches nothing).
    q: Option<String>,
    /// Created (first event recorded) at or after this time (RFC 3339), from 1677-09-21T00:12:44Z to
    /// 2262-04-11T23:47:16Z (the times the view indexes; others are a 400 naming the parameter).
    from: Option<DateTime<Utc>>,
    /// Created (first event recorded) before this time (RFC 3339), from 1677-09-21T00:12:44Z to
    /// 2262-04-11T23:47:16Z (the times the view indexes; others are a 400 naming the parameter).
    to: Option<DateTime<Utc>>,
    /// `newest` (default) or `oldest` first, by creation: the time the message's first event was
    /// recorded (`first_event_at`), ties broken by id. A message keeps its place when later
    /// events change it, so paging neither repeats nor skips one.
    sort: Option<String>,
    /// Messages per page (default 100, at most the server's `max_page`).
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    limit: Option<usize>,
    /// From the previous page's `next` link (a cursor naming a time outside the view's range,
    /// 1677-09-21T00:12:44Z to 2262-04-11T23:47:16Z, is a 400).
    cursor: Option<String>,
    /// Read-your-writes: wait (up to 5 s, else `503` with `Retry-After`) until the view has
    /// applied this position, e.g. the `last_position` of the caller's append (a position the log
    /// has not reached is not applied: it is waited for the same way).
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    min_position: Option<u64>,
}

/// `GET /v1/messages`: a page of the message log with facet counts.
#[utoipa::path(
    get,
    operation_id = "search_messages",
    path = "/v1/messages",
    tag = "messages",
    description = "Messages of the caller's tenant, newest first by default, ordered by creation (`first_event_at`, \
                   the time the message's first event was recorded, which later events never change; ties by id). \
                   Filters combine; pages follow `next` (a cursor on (creation time, id)): every message that \
                   existed when paging began is on exactly one page, however messages are updated or added \
                   meanwhile. `total` and `facets` (statuses and channels) count every message matching the \
                   filters, exactly; without filters, or with only `status` and `channel`, they come from \
                   counts kept as the view commits, so such a page costs the same whatever the number of \
                   messages.",
    params(MessageSearch),
    responses(
        (status = 200, description = "A page of message documents", body = SearchPage),
        (status = 400, description = "An invalid parameter", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The view is unavailable", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn search(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
    params: Result<QueryParams<MessageSearch>, ApiError>,
) -> Result<Json<SearchPage>, ApiError> {
    principal.require(Action::Read)?;
    let QueryParams(p) = params?;
    search::wait_for(&state, &state.views.messages, p.min_position).await?;
    let mut filters = Vec::new();
    if let Some(list) = &p.status {
        filters.push(Filter::Term { field: "status", values: statuses(list)? });
    }
    for (field, value) in [
        ("recipient", &p.recipient),
        ("channel", &p.channel),
        ("provider", &p.provider),
        ("template", &p.template),
        ("tag", &p.tag),
    ] {
        if let Some(v) = value {
            filters.push(Filter::Term { field, values: vec![v.clone()] });
        }
    }
    if let Some(value) = p.has_errors {
        filters.push(Filter::Bool { field: "has_errors", value });
    }
    let paging = Paging {
        from: p.from,
        to: p.to,
        q: p.q.as_deref(),
        sort: p.sort.as_deref(),
        limit: p.limit,
        cursor: p.cursor.as_deref(),
    };
    let query = search::view_query(
        &principal.tenant,
        state.settings.max_page,
        // Creation, not last activity: a sort key that later events move would repeat and skip
        // messages between pages (issue 13).
        "first_event_at",
        filters,
        paging,
        vec!["status", "channel"],
    )?;
    let page = search::run(&state.views.messages.serving().reader, query).await?;
    Ok(Json(SearchPage::new(page, "/v1/messages", raw.as_deref(), &principal.tenant)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AsOf {
    /// The message as it was at this time (RFC 3339): folded from the events recorded by then.
    as_of: Option<DateTime<Utc>>,
    /// Read-your-writes: wait (up to 5 s, else `503` with `Retry-After`) until the view has
    /// applied this position.
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    min_position: Option<u64>,
}

/// `GET /v1/messages/{id}`: one message with its timeline.
#[utoipa::path(
    get,
    operation_id = "get_message",
    path = "/v1/messages/{id}",
    tag = "messages",
    params(("id" = String, Path, description = "The message id (its stream is `message-{id}`)"), AsOf),
    responses(
        (status = 200, description = "The message document", body = Object),
        (status = 400, description = "An invalid parameter", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such message (at that time)", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The view is unavailable", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(id): PathParam,
    params: Result<QueryParams<AsOf>, ApiError>,
) -> Result<Response, ApiError> {
    principal.require(Action::Read)?;
    let QueryParams(AsOf { as_of, min_position }) = params?;
    search::wait_for(&state, &state.views.messages, min_position).await?;
    let stream = message_stream(&principal, &id)?;
    // Read-your-writes asks for the view, not for what the cache has heard of yet.
    let cacheable = as_of.is_none() && min_position.is_none();
    let key = cacheable.then(|| message_key(&principal, &id, "detail".to_owned()));
    let messages = &state.views.messages;
    cached::answer(&state, messages, key, || detail(&state, &principal, id, stream, as_of)).await
}

/// The message document (at `as_of`, folded from the log), as `GET /v1/messages/{id}` answers.
async fn detail(
    state: &AppState,
    principal: &Principal,
    id: String,
    stream: StreamId,
    as_of: Option<DateTime<Utc>>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::DocumentNotFound { kind: "message", id: id.clone() };
    let source = match as_of {
        None => {
            let doc =
                search::get(&state.views.messages.serving().reader, &principal.tenant, stream.to_string()).await?;
            doc.ok_or_else(not_found)?.source
        }
        Some(at) => {
            // The same fold the projector runs, over the events recorded by `at`; events the
            // projector parks are left out the same way.
            let by_then = read_until(state, &stream, at).await?;
            let doc = fold_message_skipping(by_then.iter(), |_, _| {}).ok_or_else(not_found)?;
            serde_json::to_value(doc).expect("a message document serializes")
        }
    };
    Ok(Json(search::client_source(source, &principal.tenant)).into_response())
}

/// The cache entry of message `id`'s answer `variant`, invalidated with the message's key.
fn message_key(principal: &Principal, id: &str, variant: String) -> CacheKey {
    CacheKey {
        view: MessagesProjection::NAME,
        tenant: principal.tenant.as_str().to_owned(),
        depends_on: InvalidatedKey { kind: KeyKind::Message, value: id.to_owned() },
        variant,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// The first revision of the message's stream to return (included); default 0.
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    from_revision: Option<u64>,
    /// Events per page (default 100, at most the server's `max_page`).
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    limit: Option<usize>,
}

/// `GET /v1/messages/{id}/history`: the message's raw events, from the log, paged (a message has
/// a handful, but nothing stops a writer from appending millions to one).
#[utoipa::path(
    get,
    operation_id = "get_message_history",
    path = "/v1/messages/{id}/history",
    tag = "messages",
    params(("id" = String, Path, description = "The message id"), HistoryParams),
    responses(
        (status = 200, description = "The message's events, in order, a page at a time (up to `limit`, and past the first, up to the server's `max_page_bytes` of data and metadata); `next` links to the following page when this one is full", body = Page),
        (status = 400, description = "An invalid parameter", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such message", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn history(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(id): PathParam,
    RawQuery(raw): RawQuery,
    params: Result<QueryParams<HistoryParams>, ApiError>,
) -> Result<Response, ApiError> {
    principal.require(Action::Read)?;
    let QueryParams(p) = params?;
    // From the log, which is ahead of the view: the messages view's checkpoint read before it is
    // a version the page is at least as new as.
    let key = Some(message_key(&principal, &id, format!("history?{}", raw.unwrap_or_default())));
    let messages = &state.views.messages;
    cached::answer(&state, messages, key, || history_page(&state, &principal, id, p)).await
}

async fn history_page(
    state: &AppState,
    principal: &Principal,
    id: String,
    p: HistoryParams,
) -> Result<Response, ApiError> {
    let limit = limit(p.limit, state.settings.max_page)?;
    let stream = message_stream(principal, &id)?;
    let from = p.from_revision.map_or(ReadFrom::Start, |r| ReadFrom::At(Revision(r)));
    let max_bytes = state.settings.max_page_bytes;
    let read =
        super::page::read_stream_bounded(state.store.as_ref(), &stream, from, Direction::Forwards, limit, max_bytes);
    let Some((page, full)) = read.await? else { return Err(ApiError::DocumentNotFound { kind: "message", id }) };
    let next = full.then(|| {
        let after = page.last().expect("a full page is not empty").revision.next();
        format!("/v1/messages/{}/history?from_revision={}&limit={limit}", encode(&id), after.0)
    });
    Ok(super::page::page_response(page, &principal.tenant, next))
}

/// The stream of message `id` in the caller's tenant; an id that makes no valid stream name is a
/// `400` about the id (the stream's name is ours, not the client's).
fn message_stream(principal: &Principal, id: &str) -> Result<StreamId, ApiError> {
    principal.tenant.stream(&format!("message-{id}")).map_err(|e| match e {
        ApiError::Store(StoreError::InvalidStreamName { reason, .. }) => {
            ApiError::InvalidParameter { parameter: "id", detail: format!("invalid message id {id:?}: {reason}") }
        }
        other => other,
    })
}

/// The events of a stream recorded by `at`, read a page of 1,000 at a time and no further than
/// the first one after `at` (`recorded_at` never decreases along the log, so none follows).
async fn read_until(
    state: &AppState,
    stream: &StreamId,
    at: DateTime<Utc>,
) -> Result<Vec<annals_store::RecordedEvent>, ApiError> {
    let mut events: Vec<annals_store::RecordedEvent> = Vec::new();
    loop {
        let from = events.last().map_or(ReadFrom::Start, |e| ReadFrom::At(e.revision.next()));
        let page = match state.store.read_stream(stream, from, Direction::Forwards, 1_000).await? {
            ReadStreamOutcome::StreamNotFound => return Ok(events),
            ReadStreamOutcome::Events(page) => page,
        };
        let (read, kept) = (page.len(), events.len());
        events.extend(page.into_iter().take_while(|e| e.recorded_at <= at));
        let passed_at = events.len() - kept < read;
        if read < 1_000 || passed_at {
            return Ok(events);
        }
    }
}

/// `status=` as the message search (and its export) reads it: comma-separated, case-insensitive,
/// at least one known status.
pub(crate) fn statuses(list: &str) -> Result<Vec<String>, ApiError> {
    let mut values = Vec::new();
    for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let status = MessageStatus::parse(&s.to_ascii_uppercase()).ok_or_else(|| ApiError::InvalidParameter {
            parameter: "status",
            detail: format!(
                "unknown status {s:?}; one of {}",
                MessageStatus::ALL.map(MessageStatus::as_str).join(", ")
            ),
        })?;
        values.push(status.as_str().to_owned());
    }
    if values.is_empty() {
        return Err(ApiError::InvalidParameter { parameter: "status", detail: "status lists no status".into() });
    }
    Ok(values)
}
