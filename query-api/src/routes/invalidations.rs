//! `GET /v1/invalidations?view=messages|audit`: the caller's tenant's cache invalidations of one
//! view as Server-Sent Events (issue 15), for UIs and external purgers. Each event's id is the
//! invalidation's position, so a client reconnecting with `Last-Event-ID` resumes after it; a
//! resume point the feed no longer holds yields a `flush` event (drop everything cached from the
//! view) before what follows, never a silent gap. A tenant sees its own invalidations and the
//! whole-view ones of every tenant (`tenant: null`), never another tenant's keys.
//!
//! An event is sent only once this process's response cache has applied it (when the cache is
//! on), so a client that queries as soon as it hears of a change never gets the cached answer
//! the change outdates.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use annals_projectors::invalidation::{Invalidation, Scope};
use annals_store::Position;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tracing::{debug, warn};
use utoipa::IntoParams;

use super::params::QueryParams;
use crate::auth::{Action, Principal};
use crate::error::ApiError;
use crate::openapi::InvalidationView;
use crate::state::AppState;

/// How long an event waits for this process's cache to apply it before it is sent anyway.
const CACHE_APPLIED_WITHIN: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InvalidationParams {
    /// The view whose invalidations to follow.
    view: InvalidationView,
}

/// `GET /v1/invalidations`: Server-Sent Events.
#[utoipa::path(
    get,
    operation_id = "follow_invalidations",
    path = "/v1/invalidations",
    tag = "invalidations",
    description = "Server-Sent Events: the cache invalidations of one view for the caller's tenant, from now on (or after \
                   `Last-Event-ID`), in position order. An `invalidation` event's data is \
                   `{\"tenant\", \"view\", \"position\", \"scope\": \"keys\", \"keys\": [{\"kind\", \"value\"}]}` (kinds: \
                   `message`, `recipient`, `audit_target` as `{target_type}:{target_id}`, `actor`); a `flush` event's is \
                   `{\"tenant\", \"view\", \"position\", \"scope\": \"whole_view\", \"reason\"}` (reasons: `overflow`, \
                   `rebuild`, `trimmed`, `resumed`) and means: drop everything cached from the view (`tenant` null: for \
                   every tenant). Each event's id is its position; reconnect with `Last-Event-ID` to resume after it \
                   (at least once: a duplicate is harmless). A resume point older than what the server retains \
                   gets a `flush` first. An event is sent only once the view shows its change.",
    params(
        InvalidationParams,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this position")
    ),
    responses(
        (status = 200, description = "An event stream of `invalidation` and `flush` events", content_type = "text/event-stream", body = String),
        (status = 400, description = "A missing or unknown `view`, or a `Last-Event-ID` that is not a position", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "This process has no invalidation feed (an api process without a shared invalidation backend), or the feed cannot be reached", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn follow(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    params: Result<QueryParams<InvalidationParams>, ApiError>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    principal.require(Action::Read)?;
    let QueryParams(params) = params?;
    let view: &'static str = match params.view {
        InvalidationView::Messages => "messages",
        InvalidationView::Audit => "audit",
    };
    let after = super::params::last_event_id(&headers, "an invalidation")?.map(Position::from_code);
    let Some(feed) = state.invalidations.feed.clone() else { return Err(ApiError::InvalidationsUnavailable) };
    let feed = feed.follow(view, after).await.map_err(|e| ApiError::InvalidationFeed(e.to_string()))?;
    let tenant = principal.tenant.as_str().to_owned();
    let (key_id, keys, cache) = (principal.key_id, Arc::clone(&state.keys), Arc::clone(&state.cache));
    // A feed outlives requests: the key is checked again before each event and, while idle,
    // every second, as the live tail does; a revoked key's stream ends.
    let recheck = state.settings.sse_heartbeat.min(Duration::from_secs(1));
    let events = stream::unfold(feed, move |mut feed| {
        let (tenant, key_id, keys, cache) = (tenant.clone(), key_id.clone(), Arc::clone(&keys), Arc::clone(&cache));
        async move {
            loop {
                let item = tokio::select! {
                    item = feed.next() => item?,
                    _ = tokio::time::sleep(recheck) => {
                        if keys.is_active(&key_id) {
                            continue;
                        }
                        debug!(key_id, "invalidation feed ends: its key was revoked");
                        return None;
                    }
                };
                if !keys.is_active(&key_id) {
                    debug!(key_id, "invalidation feed ends: its key was revoked");
                    return None;
                }
                let invalidation = match item {
                    Ok(invalidation) => invalidation,
                    Err(e) => {
                        // The client reconnects with its Last-Event-ID and loses nothing.
                        warn!(error = %e, "invalidation feed failed; the stream ends");
                        return None;
                    }
                };
                if invalidation.tenant.as_deref().is_some_and(|t| t != tenant) {
                    continue;
                }
                if !cache.applied(view, invalidation.position, CACHE_APPLIED_WITHIN).await {
                    debug!(view, position = %invalidation.position, "the response cache has not applied an invalidation in time");
                }
                return Some((Ok(event(&invalidation)), feed));
            }
        }
    });
    let events = events.take_until(state.shutdown.clone().cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(state.settings.sse_heartbeat).text("heartbeat")))
}

fn event(invalidation: &Invalidation) -> SseEvent {
    let name = match invalidation.scope {
        Scope::Keys { .. } => "invalidation",
        Scope::WholeView { .. } => "flush",
    };
    let data = serde_json::to_string(invalidation).expect("invalidations serialize");
    SseEvent::default().id(invalidation.position.code().to_string()).event(name).data(data)
}
