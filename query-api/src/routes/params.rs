//! The request parameters every route shares: the one query-string extractor ([`QueryParams`],
//! a `400` problem naming the parameter at fault), the page size (`limit`), the `types` filter,
//! and the percent-encoding of values written back into `next` links. Before, these lived in
//! `events.rs` and six other routes imported one route for them.

use annals_store::EventFilter;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Events per page when the request does not say.
const DEFAULT_LIMIT: usize = 100;

/// The query string of a request parsed into `T` (`#[serde(deny_unknown_fields)]` structs, so
/// an unknown parameter is an error too); a query that does not parse is a `400` problem naming
/// the parameter where the parser says which. A route that checks the caller's role first takes
/// it as `Result<QueryParams<T>, ApiError>` and answers the error after the check, so a key
/// without the right gets its `403` whatever its query.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => Err(query_error(rejection)),
        }
    }
}

/// A `400` for a query string that does not parse, naming the parameter where the parser says
/// which: its messages read "limit: invalid digit found in string", "unknown field `colour`,
/// expected one of …", "duplicate field `limit`" or "missing field `view`".
fn query_error(rejection: QueryRejection) -> ApiError {
    let text = rejection.body_text();
    let detail = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text).to_owned();
    let is_name = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    let parameter = match detail.split_once(": ") {
        Some((name, _)) if is_name(name) => Some(name.to_owned()),
        _ => ["unknown field `", "duplicate field `", "missing field `"].iter().find_map(|lead| {
            let rest = detail.strip_prefix(lead)?;
            rest.split_once('`').map(|(name, _)| name.to_owned())
        }),
    };
    ApiError::InvalidQuery { parameter, detail }
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

/// Percent-encodes a query value or a path segment (everything but unreserved characters).
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `Last-Event-ID` header of a Server-Sent Events route: `None` when absent, else the
/// position it names (a whole number up to `MAX_INTEGER`), or a `400` naming the header that says
/// what it must be the position of (`what`: "an event", "an invalidation").
pub fn last_event_id(headers: &axum::http::HeaderMap, what: &str) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else { return Ok(None) };
    let max = crate::wire::MAX_INTEGER;
    value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()).filter(|v| *v <= max).map(Some).ok_or_else(|| {
        ApiError::InvalidParameter {
            parameter: "Last-Event-ID",
            detail: format!("Last-Event-ID must be the position of {what} (a whole number from 0 to {max})"),
        }
    })
}
