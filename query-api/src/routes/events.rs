//! The global log, `$all`: paged reads with filters on event types and stream names.

use annals_store::{Direction, EventFilter, EventStore, Position, ReadFrom, RecordedEvent};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::app::AppState;
use crate::auth::{Action, Principal};
use crate::error::ApiError;
use crate::wire::{Event, Page};

/// Events per page when the request does not say.
const DEFAULT_LIMIT: usize = 100;

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
    description = "The global log of the caller's tenant, in commit order. Positions are global (shared by all tenants), so they have gaps here.",
    params(ReadAllParams),
    responses(
        (status = 200, description = "A page of events; `next` links to the following page when this one is full", body = Page),
        (status = 400, description = "An invalid parameter", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn read_all(
    State(state): State<AppState>,
    principal: Principal,
    params: Result<Query<ReadAllParams>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    principal.require(Action::Read)?;
    let Query(params) = params.map_err(query_error)?;
    let limit = limit(params.limit, state.settings.max_page)?;
    let (types, filter) = type_filter(params.types.as_deref())?;
    let filter = filter.stream_prefix(principal.tenant.prefix() + params.stream_prefix.as_deref().unwrap_or(""));
    let from = params.from_position.map_or(ReadFrom::Start, |p| ReadFrom::At(Position(p)));
    let (page, full) = read_exact_types(&*state.store, from, limit, &filter, &types).await?;
    let next = full.then(|| {
        let last = page.last().expect("a full page is not empty").position.0;
        let mut link = format!("/v1/events?from_position={}&limit={limit}", last + 1);
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

/// Up to `limit` events from `from` that pass `filter` and have one of `types` exactly (any type
/// if empty), and whether the page is full. The store filters types by prefix, so its pages can
/// hold events of longer types that are dropped here; it reads on until the page is full or the
/// log ends, so a short page means the end (and a `next` link always leads to events).
async fn read_exact_types(
    store: &dyn EventStore,
    mut from: ReadFrom<Position>,
    limit: usize,
    filter: &EventFilter,
    types: &[String],
) -> Result<(Vec<RecordedEvent>, bool), ApiError> {
    let mut page = Vec::with_capacity(limit);
    loop {
        let read = store.read_all(from, Direction::Forwards, limit, filter).await?;
        let (read_len, last) = (read.len(), read.last().map(|e| e.position));
        for event in read {
            if types.is_empty() || types.contains(&event.event_type) {
                page.push(event);
                if page.len() == limit {
                    return Ok((page, true));
                }
            }
        }
        match last {
            Some(last) if read_len == limit => from = ReadFrom::At(last.next()),
            _ => return Ok((page, false)),
        }
    }
}

/// The exact types of a `types` parameter (comma-separated), and the store filter for them: the
/// store filters on prefixes, so callers check the exact type again on what it returns.
pub fn type_filter(types: Option<&str>) -> Result<(Vec<String>, EventFilter), ApiError> {
    let Some(list) = types else { return Ok((Vec::new(), EventFilter::all())) };
    let types: Vec<String> = list.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect();
    if types.is_empty() {
        return Err(ApiError::InvalidParameter { parameter: "types", detail: "types lists no event type".into() });
    }
    let filter = types.iter().fold(EventFilter::all(), |f, t| f.event_type_prefix(t.clone()));
    Ok((types, filter))
}

/// The page size: `DEFAULT_LIMIT` if not given, at most `max`, at least 1.
pub fn limit(requested: Option<usize>, max: usize) -> Result<usize, ApiError> {
    match requested {
        None => Ok(DEFAULT_LIMIT.min(max)),
        Some(0) => Err(ApiError::InvalidParameter { parameter: "limit", detail: "limit must be at least 1".into() }),
        Some(n) => Ok(n.min(max)),
    }
}

/// A `400` for a query string that does not parse, naming the parameter where the parser says
/// which: its messages read "limit: invalid digit found in string", "unknown field `colour`,
/// expected one of …" or "duplicate field `limit`".
pub fn query_error(rejection: QueryRejection) -> ApiError {
    let text = rejection.body_text();
    let detail = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text).to_owned();
    let is_name = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    let parameter = match detail.split_once(": ") {
        Some((name, _)) if is_name(name) => Some(name.to_owned()),
        _ => ["unknown field `", "duplicate field `"].iter().find_map(|lead| {
            let rest = detail.strip_prefix(lead)?;
            rest.split_once('`').map(|(name, _)| name.to_owned())
        }),
    };
    ApiError::InvalidQuery { parameter, detail }
}

/// Percent-encodes a query value or a path segment (everything but unreserved characters).
pub(super) fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
