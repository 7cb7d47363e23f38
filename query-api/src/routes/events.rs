//! The global log, `$all`: paged reads with filters on event types and stream names.

use annals_store::{Direction, EventFilter, Position, ReadFrom};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::{Action, Principal};
use crate::error::ApiError;
use crate::wire::{Event, Page};

/// Events per page when the request does not say.
const DEFAULT_LIMIT: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadAllParams {
    from_position: Option<u64>,
    limit: Option<usize>,
    /// Comma-separated event types; an event must have one of them exactly.
    types: Option<String>,
    stream_prefix: Option<String>,
}

/// `GET /v1/events`: a page of `$all`, oldest first.
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
    let page = state.store.read_all(from, Direction::Forwards, limit, &filter).await?;
    let next = (page.len() == limit).then(|| {
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
    let events = page
        .into_iter()
        .filter(|e| types.is_empty() || types.contains(&e.event_type))
        .map(|e| Event::new(e, &principal.tenant))
        .collect();
    Ok(Json(Page { events, next }))
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

pub fn query_error(rejection: QueryRejection) -> ApiError {
    ApiError::InvalidQuery(rejection.body_text())
}

/// Percent-encodes a query value (everything but unreserved characters).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
