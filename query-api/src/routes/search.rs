//! What the view searches (`/v1/messages`, `/v1/audit`) share: running a query on the view's
//! reader, cursors as query-string values, `next` links, and documents as a tenant sees them.

use std::collections::BTreeMap;
use std::sync::Arc;

use annals_projectors::view_store::{
    Cursor, Filter, Query as ViewQuery, SearchPage as ViewPage, Sort, StoredDoc, ViewReader,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Tenant;
use crate::error::ApiError;

/// A page of view documents.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchPage {
    /// The documents, in the requested order.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<serde_json::Value>,
    /// Documents matching the filters, on every page (exact).
    pub total: u64,
    /// Per faceted field, how many matching documents have each value (exact).
    pub facets: BTreeMap<String, BTreeMap<String, u64>>,
    /// The next page, when this one is full.
    pub next: Option<String>,
}

impl SearchPage {
    /// The API's page of `page`: `next` repeats the request's query (`raw`) with the new cursor.
    pub fn new(page: ViewPage, path: &str, raw: Option<&str>, tenant: &Tenant) -> SearchPage {
        let next = page.next.as_ref().map(|cursor| {
            let kept: Vec<&str> =
                raw.unwrap_or("").split('&').filter(|p| !p.is_empty() && !p.starts_with("cursor=")).collect();
            let mut query = kept.join("&");
            if !query.is_empty() {
                query.push('&');
            }
            format!("{path}?{query}cursor={}", super::params::encode(&format_cursor(cursor)))
        });
        SearchPage {
            items: page.docs.into_iter().map(|d| client_source(d.source, tenant)).collect(),
            total: page.total,
            facets: page.facets.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            next,
        }
    }
}

/// What every view search takes besides its own filters: a time range and the sort on the view's
/// time field, full text, the page size and the cursor.
#[derive(Debug)]
pub struct Paging<'a> {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub q: Option<&'a str>,
    pub sort: Option<&'a str>,
    pub limit: Option<usize>,
    pub cursor: Option<&'a str>,
}

/// The view query of a search of `tenant`: its own `filters` plus `paging` on `time_field`.
pub fn view_query(
    tenant: &Tenant,
    max_page: usize,
    time_field: &'static str,
    mut filters: Vec<Filter>,
    paging: Paging<'_>,
    facets: Vec<&'static str>,
) -> Result<ViewQuery, ApiError> {
    within_index("from", paging.from)?;
    within_index("to", paging.to)?;
    // A cursor's time is nanoseconds in an `i64`, which is every time the view holds, so a
    // cursor out of the view's range cannot be written (`parse_cursor` refuses it, naming `cursor`).
    let after = paging.cursor.map(parse_cursor).transpose()?;
    if paging.from.is_some() || paging.to.is_some() {
        filters.push(Filter::TimeRange { field: time_field, from: paging.from, to: paging.to });
    }
    Ok(ViewQuery {
        tenant: tenant.as_str().to_owned(),
        filters,
        text: paging.q.filter(|q| !q.trim().is_empty()).map(str::to_owned),
        sort: Sort { field: time_field, descending: descending(paging.sort)? },
        limit: super::params::limit(paging.limit, max_page)?,
        after,
        facets,
    })
}

/// The first and last time `from`, `to` and cursors may name: the view indexes times in this
/// range (`annals_projectors::projection::indexed_times`), and the OpenAPI texts of the search
/// parameters say so.
pub const EARLIEST_TIME: &str = "1677-09-21T00:12:44Z";
pub const LATEST_TIME: &str = "2262-04-11T23:47:16Z";

/// A `400` naming `parameter` when `time` is outside what the view indexes.
pub(crate) fn within_index(parameter: &'static str, time: Option<DateTime<Utc>>) -> Result<(), ApiError> {
    match time {
        Some(t) if !annals_projectors::projection::indexed_times().contains(&t) => Err(ApiError::InvalidParameter {
            parameter,
            detail: format!(
                "{parameter} names {}, outside the times the view holds ({EARLIEST_TIME} to {LATEST_TIME})",
                t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            ),
        }),
        _ => Ok(()),
    }
}

/// How long a query with `min_position` waits for the view before answering `503`.
const READ_YOUR_WRITES_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Read-your-writes: waits until `view` has applied `min_position` (when given), or fails with
/// `503` and `Retry-After`.
pub async fn wait_for(
    state: &crate::state::AppState,
    view: &crate::views::View,
    min_position: Option<u64>,
) -> Result<(), ApiError> {
    let Some(position) = min_position else { return Ok(()) };
    let position_ = annals_store::Position::from_code(position);
    let applied = crate::views::wait_for(view, state.store.as_ref(), position_, READ_YOUR_WRITES_WAIT).await?;
    if applied {
        Ok(())
    } else {
        Err(ApiError::NotYetApplied { view: view.name(), position })
    }
}

/// Runs `query` on the view.
pub async fn run(view: &Arc<dyn ViewReader>, query: ViewQuery) -> Result<ViewPage, ApiError> {
    Ok(view.search(&query).await?)
}

/// The committed document `id` of `tenant`.
pub async fn get(view: &Arc<dyn ViewReader>, tenant: &Tenant, id: String) -> Result<Option<StoredDoc>, ApiError> {
    Ok(view.get(tenant.as_str(), &id).await?)
}

/// A document as its tenant sees it: no tenant field, stream names without the tenant prefix.
pub fn client_source(mut source: serde_json::Value, tenant: &Tenant) -> serde_json::Value {
    if let Some(map) = source.as_object_mut() {
        map.remove("tenant");
        if let Some(serde_json::Value::String(stream)) = map.get_mut("stream") {
            *stream = tenant.client_name(stream).to_owned();
        }
    }
    source
}

/// `sort=newest|oldest` → descending or not.
pub fn descending(sort: Option<&str>) -> Result<bool, ApiError> {
    match sort {
        None | Some("newest") => Ok(true),
        Some("oldest") => Ok(false),
        Some(other) => Err(ApiError::InvalidParameter {
            parameter: "sort",
            detail: format!("sort must be newest or oldest, got {other:?}"),
        }),
    }
}

/// A cursor as it travels in `cursor=`: `n`, the sort time in nanoseconds since the epoch, `~`,
/// the document id. Nanoseconds because a cursor must name the exact time of its document (a
/// truncated time would put the document itself after its own cursor); the `n` tells it from
/// the microsecond cursors of earlier versions, which sorted messages by their last event and
/// mean nothing in today's order (they are refused, not misread).
pub fn format_cursor(cursor: &Cursor) -> String {
    // Every sort time came out of the view, which holds only i64 nanoseconds.
    let nanos = cursor.time.timestamp_nanos_opt().unwrap_or(i64::MAX);
    format!("n{nanos}~{}", cursor.id)
}

pub fn parse_cursor(text: &str) -> Result<Cursor, ApiError> {
    let bad = || ApiError::InvalidParameter {
        parameter: "cursor",
        detail: format!("cursor {text:?} is not one this server gave (take it from a page's next link)"),
    };
    let (nanos, id) = text.strip_prefix('n').and_then(|t| t.split_once('~')).ok_or_else(bad)?;
    // Any i64 is a time the view can hold (1677..2262); a number beyond it names a time the view
    // cannot hold, which the detail says (no page's `next` ever carries one).
    let time = match nanos.parse::<i64>() {
        Ok(nanos) => DateTime::from_timestamp_nanos(nanos),
        Err(_) if nanos.parse::<i128>().is_ok() => {
            return Err(ApiError::InvalidParameter {
                parameter: "cursor",
                detail: format!(
                    "cursor {text:?} names a time outside the times the view holds ({EARLIEST_TIME} to {LATEST_TIME})"
                ),
            })
        }
        Err(_) => return Err(bad()),
    };
    if id.is_empty() {
        return Err(bad());
    }
    Ok(Cursor { time, id: id.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The range the OpenAPI texts state is the one the view indexes.
    #[test]
    fn the_stated_time_range_is_the_indexed_one() {
        let range = annals_projectors::projection::indexed_times();
        let text = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        assert_eq!((text(range.start()).as_str(), text(range.end()).as_str()), (EARLIEST_TIME, LATEST_TIME));
    }
}
