//! The top of a sorted result without visiting every match: for a search with many matches, the
//! page is looked for in a window of time next to where it starts (the newest documents for a
//! newest-first page, the oldest for an oldest-first one, or those next to the cursor), widened
//! fourfold until it holds a full page or covers every time.
//!
//! tantivy's top-k by a fast field visits every matching document (it has no early termination
//! for fast-field sorts), so the log UI's landing page cost grew with the tenant's messages.
//! A window is a range over the time field's inverted index (second precision), which reads the
//! postings of the window's seconds only. The answer is exact: the window is all documents at or
//! after (before, ascending) a whole second, so every document outside it comes after every
//! document inside it in the page's (time, id) order; a window holding a full page therefore
//! holds the page. The first width is guessed from the number of matches (known from the counts,
//! `counts.rs`) spread over the time the index spans, aiming at two pages' worth.

use std::ops::Bound;

use tantivy::collector::sort_key::{SortByStaticFastValue, SortByString};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, InvertedIndexRangeQuery, Query as TQuery};
use tantivy::schema::Field;
use tantivy::{DocAddress, Order, Searcher, Term};

use super::schema::{self, backend, to_tantivy_time};
use crate::error::ViewError;
use crate::view_store::Cursor;

/// A result: its sort time and id, and where it is.
pub(crate) type Hit = ((Option<tantivy::DateTime>, Option<String>), DocAddress);

const SECOND: i64 = 1_000_000_000;

/// Below this many matches per requested document, visiting every match is as cheap as a window.
const DENSE: u64 = 4;

/// What to look for: the page query (filters and cursor), its sort, and the page size.
pub(crate) struct Page<'a> {
    pub(crate) view: &'static str,
    pub(crate) query: &'a dyn TQuery,
    pub(crate) sort_name: &'static str,
    pub(crate) sort_field: Field,
    pub(crate) descending: bool,
    pub(crate) limit: usize,
    pub(crate) after: Option<&'a Cursor>,
    /// How many documents match (without the cursor); `None` when unknown.
    pub(crate) matches: Option<u64>,
    pub(crate) total: usize,
}

/// The first `limit` results of `page` in its (time, id) order.
pub(crate) fn top(searcher: &Searcher, page: &Page<'_>) -> Result<Vec<Hit>, ViewError> {
    let dense = page.matches.filter(|m| *m >= DENSE.saturating_mul(page.limit as u64));
    let bounds = match dense {
        Some(_) => bounds(page.view, searcher, page.sort_name)?,
        None => None,
    };
    let (Some(matches), Some((lo, hi))) = (dense, bounds) else {
        return collect(searcher, page, page.query, page.limit.min(page.total));
    };
    let span = (hi - lo).max(1) as f64;
    let mut width = (span * 2.0 * page.limit as f64 / matches as f64).max(SECOND as f64) as i64;
    let cursor = page.after.and_then(|c| to_tantivy_time(c.time)).map(|t| t.into_timestamp_nanos());
    loop {
        let window = if page.descending {
            let start = cursor.map_or(hi, |c| c.min(hi));
            let from = floor_second(start.saturating_sub(width));
            if from <= lo {
                break;
            }
            InvertedIndexRangeQuery::new(Bound::Included(term(page.sort_field, from)), Bound::Unbounded)
        } else {
            let start = cursor.map_or(lo, |c| c.max(lo));
            let to = floor_second(start.saturating_add(width));
            if to > hi {
                break;
            }
            InvertedIndexRangeQuery::new(Bound::Unbounded, Bound::Excluded(term(page.sort_field, to)))
        };
        let windowed = BooleanQuery::intersection(vec![page.query.box_clone(), Box::new(window)]);
        let hits = collect(searcher, page, &windowed, page.limit)?;
        if hits.len() >= page.limit {
            return Ok(hits);
        }
        width = width.saturating_mul(4);
    }
    collect(searcher, page, page.query, page.limit.min(page.total))
}

fn collect(searcher: &Searcher, page: &Page<'_>, query: &dyn TQuery, limit: usize) -> Result<Vec<Hit>, ViewError> {
    let order = if page.descending { Order::Desc } else { Order::Asc };
    let by = (
        (SortByStaticFastValue::<tantivy::DateTime>::for_field(page.sort_name), order),
        (SortByString::for_field(schema::ID), order),
    );
    searcher.search(query, &TopDocs::with_limit(limit.max(1)).order_by(by)).map_err(backend(page.view, "search"))
}

/// The earliest and latest time of the sort field in any segment (deleted documents included:
/// only the first window's width depends on them).
fn bounds(view: &'static str, searcher: &Searcher, field: &str) -> Result<Option<(i64, i64)>, ViewError> {
    let mut out: Option<(i64, i64)> = None;
    for segment in searcher.segment_readers() {
        let column =
            segment.fast_fields().column_opt::<tantivy::DateTime>(field).map_err(backend(view, "open sort column"))?;
        let Some(column) = column.filter(|c| c.values.num_vals() > 0) else { continue };
        let (lo, hi) = (column.min_value().into_timestamp_nanos(), column.max_value().into_timestamp_nanos());
        out = Some(out.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
    }
    Ok(out)
}

fn floor_second(nanos: i64) -> i64 {
    nanos.div_euclid(SECOND) * SECOND
}

/// The inverted index's term for a time (tantivy truncates it to the indexed second).
fn term(field: Field, nanos: i64) -> Term {
    Term::from_field_date(field, tantivy::DateTime::from_timestamp_nanos(nanos))
}
