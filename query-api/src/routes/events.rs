//! The global log, `$all`: paged reads with filters on event types and stream names.

use annals_store::{Direction, EventFilter, EventStore, PageLimits, Position, ReadFrom, RecordedEvent};
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::{Action, Principal};
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{Event, Page};

use super::params::{encode, limit, type_filter, QueryParams};

/// Events of the caller's tenant one request examines at most (KurrentDB's max search window):
/// a `types` filter that matches rarely answers a short page, or an empty one, with a `next` link
/// instead of reading on through the tenant's whole log. Other tenants' events are never examined
/// (the store reads the tenant's namespace through its index).
pub const SCAN_WINDOW: usize = 10_000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadAllParams {
    /// The first position to return (included); default: the start of the log.
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    from_position: Option<u64>,
    /// Events per page (default 100, at most the server's `max_page`).
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    limit: Option<usize>,
    /// Comma-separated event types; an event must have one of them exactly.
    types: Option<String>,
    /// Only streams whose names start with this.
    stream_prefix: Option<String>,
}

/// `GET /v1/events`: a page of `$all`, oldest first.
#[utoipa::path(
    get,
    operation_id = "read_all",
    path = "/v1/events",
    tag = "events",
    description = "The global log of the caller's tenant, in commit order. Positions are global (shared by all tenants), so they have gaps here. A page ends at `limit` events, at the server's byte bound (`ANNALS_MAX_PAGE_BYTES`, default 16 MiB; a page's first event is sent whatever its size), or after 10,000 of the tenant's events examined for a `types` or `stream_prefix` filter, whichever comes first: a page may hold fewer than `limit` events, or none, and still have a `next` link. Following `next` until a page has none returns every matching event exactly once, in order.",
    params(ReadAllParams),
    responses(
        (status = 200, description = "A page of events; `next` links to the following page unless this one reached the end of the log", body = Page),
        (status = 400, description = "An invalid parameter", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn read_all(
    State(state): State<AppState>,
    principal: Principal,
    params: Result<QueryParams<ReadAllParams>, ApiError>,
) -> Result<Json<Page>, ApiError> {
    principal.require(Action::Read)?;
    let QueryParams(params) = params?;
    let limit = limit(params.limit, state.settings.max_page)?;
    let (types, filter) = type_filter(params.types.as_deref())?;
    let filter = filter.stream_prefix(principal.tenant.prefix() + params.stream_prefix.as_deref().unwrap_or(""));
    let from = params.from_position.map_or(ReadFrom::Start, |p| ReadFrom::At(Position::from_code(p)));
    let (page, next) = read_page(&*state.store, from, limit, state.settings.max_page_bytes, &filter, &types).await?;
    let next = next.map(|next| {
        let mut link = format!("/v1/events?from_position={next}&limit={limit}");
        if let Some(types) = &params.types {
            link.push_str(&format!("&types={}", encode(types)));
        }
        if let Some(prefix) = &params.stream_prefix {
            link.push_str(&format!("&stream_prefix={}", encode(prefix)));
        }
        link
    });
    let events = page.into_iter().map(|e| Event::new(e, &principal.tenant)).collect();
    Ok(Json(Page { events, next }))
}

/// A page of events from `from` that pass `filter` and have one of `types` exactly (any type if
/// empty), and where the next page starts unless this one reached the end of the log. The store
/// filters types by prefix, so its pages can hold longer types, dropped here; it reads on until
/// the page has `limit` events or `max_bytes` of them (its first event whatever its size), the
/// log ends, or `SCAN_WINDOW` of the tenant's events were examined. So the work of a request is
/// bounded, and a page can be short, even empty, with a `next` that continues right after the
/// last event examined: following `next` never skips or repeats an event.
async fn read_page(
    store: &dyn EventStore,
    mut from: ReadFrom<Position>,
    limit: usize,
    max_bytes: usize,
    filter: &EventFilter,
    types: &[String],
) -> Result<(Vec<RecordedEvent>, Option<Position>), ApiError> {
    let mut page: Vec<RecordedEvent> = Vec::new();
    let (mut bytes, mut budget) = (0usize, SCAN_WINDOW);
    loop {
        let max_count = limit - page.len();
        let limits = PageLimits { max_count, max_bytes: max_bytes.saturating_sub(bytes).max(1), max_scan: budget };
        let read = store.read_all_page(from, Direction::Forwards, limits, filter).await?;
        budget = budget.saturating_sub(read.examined.max(1));
        for event in read.events {
            if !types.is_empty() && !types.contains(&event.event_type) {
                continue;
            }
            if !page.is_empty() && bytes.saturating_add(event.size()) > max_bytes {
                // It starts the next page.
                return Ok((page, Some(event.position)));
            }
            bytes += event.size();
            page.push(event);
        }
        if read.reached_end {
            return Ok((page, None));
        }
        let Some(next) = read.next else { return Ok((page, None)) };
        if page.len() == limit || budget == 0 || bytes >= max_bytes {
            return Ok((page, Some(next)));
        }
        from = ReadFrom::At(next);
    }
}
