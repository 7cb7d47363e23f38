//! `GET /v1/events/live`: the global log as Server-Sent Events, catch-up then live. Each event's
//! SSE `id` is its position, so a client that reconnects with `Last-Event-ID` resumes right after
//! the last event it received: no gap, no duplicate, across server restarts too (positions are
//! durable). Comments every `sse_heartbeat` keep idle connections (and proxies) open. A tail
//! ends when its key is revoked (checked before each event and every second while idle).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use annals_store::{Direction, EventFilter, PageLimits, Position, ReadFrom, SubscribeFrom, SubscriptionMessage};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tracing::debug;
use utoipa::IntoParams;

use super::params::{type_filter, QueryParams};
use crate::auth::{Action, Principal};
use crate::error::ApiError;
use crate::metrics::LiveGuard;
use crate::state::AppState;
use crate::wire::Event;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LiveParams {
    /// The first position to send; without it (and without `Last-Event-ID`), only new events.
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    from_position: Option<u64>,
    /// Comma-separated event types; an event must have one of them exactly.
    types: Option<String>,
    /// Only streams whose names start with this.
    stream_prefix: Option<String>,
}

/// `GET /v1/events/live`: Server-Sent Events.
#[utoipa::path(
    get,
    operation_id = "live_tail",
    path = "/v1/events/live",
    tag = "events",
    description = "Server-Sent Events: history from `from_position`, then a `caught-up` event, then new events as they \
                   commit. Each event's SSE id is its position; reconnect with `Last-Event-ID` to resume right after it. \
                   The stream ends when the server stops or the key is revoked.",
    params(
        LiveParams,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this position (wins over from_position)"),
        ("access_token" = Option<String>, Query, description = "Instead of the Authorization header (browsers' EventSource): a live-tail token from POST /v1/live-tokens; this route alone takes it")
    ),
    responses(
        (status = 200, description = "An event stream: `data` is an event as reads return it", content_type = "text/event-stream", body = String),
        (status = 400, description = "An invalid parameter or Last-Event-ID, or a resume point past the log's last position (no event has it)", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "As many tails are reading history as the server allows (`ANNALS_MAX_CATCHUP_TAILS`); retry after `Retry-After` seconds", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn live(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    params: Result<QueryParams<LiveParams>, ApiError>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    principal.require(Action::Read)?;
    let QueryParams(params) = params?;
    let last_event_id = super::params::last_event_id(&headers, "an event")?;
    // Positions are dense from 0 and the head is the last one published, so a resume point
    // past it was never sent to anyone: a client mistake (or another log's position), which
    // would otherwise wait in silence for an event that may never come.
    // `from_position` may also name where the next event goes: the `next` a forwards page at
    // the end hands out (the store says which position that is; nobody computes `head + 1`).
    let head = state.store.head().await?;
    let all = EventFilter::all();
    let end = state.store.read_all_page(ReadFrom::End, Direction::Forwards, PageLimits::count(1), &all).await?.next;
    let past_head = |parameter: &'static str, position: u64| ApiError::PositionPastHead {
        parameter,
        position,
        head: head.map_or_else(|| "the log is empty".to_owned(), |h| h.to_string()),
    };
    let (last_event_id, from_position) = (last_event_id.map(Position::from_code), params.from_position);
    match (last_event_id, from_position.map(Position::from_code)) {
        (Some(last), _) if head.is_none_or(|h| last > h) => return Err(past_head("Last-Event-ID", last.code())),
        (None, Some(first)) if end.is_some_and(|end| first > end) => {
            return Err(past_head("from_position", first.code()))
        }
        _ => {}
    }
    // `Last-Event-ID` wins: it is what the browser sends when it reconnects on its own.
    let from = match (last_event_id, from_position) {
        (Some(last), _) => SubscribeFrom::After(last),
        (None, Some(first)) => SubscribeFrom::At(Position::from_code(first)),
        (None, None) => SubscribeFrom::End,
    };
    let (types, filter) = type_filter(params.types.as_deref())?;
    let filter = filter.stream_prefix(principal.tenant.prefix() + params.stream_prefix.as_deref().unwrap_or(""));
    let tenant = principal.tenant;
    let key_id = principal.key_id;
    let keys = Arc::clone(&state.keys);
    // Revocation should stop a tail about as soon as it stops requests: a lookup a second is
    // nothing next to what an open tail costs.
    let recheck = state.settings.sse_heartbeat.min(Duration::from_secs(1));
    // A tail reading history holds a slot until it has caught up: catching up reads (and
    // buffers) history at full speed, being live costs next to nothing.
    let catching_up = match from {
        SubscribeFrom::End => None,
        _ => Some(
            Arc::clone(&state.catchup_tails)
                .try_acquire_owned()
                .map_err(|_| ApiError::TooManyCatchUpTails { limit: state.settings.max_catchup_tails })?,
        ),
    };
    let subscription = state.store.subscribe_to_all(from, filter).await?;
    let shutdown = state.shutdown.clone();
    let guard = LiveGuard::new(Arc::clone(&state.metrics));
    let events = stream::unfold((subscription, (guard, catching_up)), move |(mut subscription, mut guard)| {
        let types = types.clone();
        let tenant = tenant.clone();
        let key_id = key_id.clone();
        let keys = Arc::clone(&keys);
        async move {
            loop {
                // The key was checked when the tail opened; a tail outlives requests, so it is
                // checked again before each event and, while idle, every second: a
                // revoked key's tail ends (a reconnecting client then gets the `401`).
                let message = tokio::select! {
                    message = subscription.next() => message,
                    _ = tokio::time::sleep(recheck) => {
                        if keys.is_active(&key_id) {
                            continue;
                        }
                        debug!(key_id, "live tail ends: its key was revoked");
                        return None;
                    }
                };
                if !keys.is_active(&key_id) {
                    debug!(key_id, "live tail ends: its key was revoked");
                    return None;
                }
                match message {
                    Ok(SubscriptionMessage::Event(e)) => {
                        if !types.is_empty() && !types.contains(&e.event_type) {
                            continue;
                        }
                        let id = e.position.to_string();
                        let body = serde_json::to_string(&Event::new(e, &tenant)).expect("events serialize");
                        return Some((Ok(SseEvent::default().id(id).data(body)), (subscription, guard)));
                    }
                    Ok(SubscriptionMessage::CaughtUp) => {
                        guard.1 = None;
                        return Some((Ok(SseEvent::default().event("caught-up").data("{}")), (subscription, guard)));
                    }
                    Err(e) => {
                        // The store closed (shutdown) or failed: end the stream; the client
                        // reconnects with its Last-Event-ID and loses nothing.
                        debug!(error = %e, "live tail ends");
                        return None;
                    }
                }
            }
        }
    });
    // Long-lived responses must end when the server stops, or graceful shutdown would wait for
    // them forever.
    let events = events.take_until(shutdown.cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(state.settings.sse_heartbeat).text("heartbeat")))
}
