//! A [`Query`] as an Elasticsearch `_search` body: every filter in `bool.filter` (no scoring),
//! the tenant first, full text as a `multi_match` over the view's Text fields with every word
//! required, facets as `terms` aggregations, the (sort field, id) sort and `search_after`.
//!
//! Shapes: elasticsearch-specification `_global/search/SearchRequest.ts` (`size`,
//! `track_total_hits`, `_source`, `sort`, `search_after`, `aggregations`/`aggs`),
//! `_types/query_dsl/term.ts` (`term`, `terms`, `prefix`, `range`, `exists`),
//! `_types/query_dsl/fulltext.ts` (`multi_match` with `type: cross_fields`, `operator: and`),
//! `_types/aggregations/bucket.ts` (`terms` with `field`, `size`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::error::ViewError;
use crate::view_store::{FieldKind, Filter, Query, ViewSchema};

/// `index.max_result_window`'s default: no page asks for more.
pub(crate) const MAX_PAGE: usize = 10_000;

/// Buckets asked per facet. A facet with more values than this would not be counted exactly;
/// the reader refuses to answer rather than answer wrong (`sum_other_doc_count`).
pub(crate) const FACET_BUCKETS: usize = 10_000;

fn bad(schema: &ViewSchema, reason: String) -> ViewError {
    ViewError::BadQuery { view: schema.name, reason }
}

fn field_of(schema: &ViewSchema, name: &str, kind: FieldKind, usage: &str) -> Result<(), ViewError> {
    match schema.fields.iter().find(|f| f.name == name) {
        Some(f) if f.kind == kind => Ok(()),
        Some(f) => Err(bad(schema, format!("{usage} field {name:?} is {:?}, not {kind:?}", f.kind))),
        None => Err(bad(schema, format!("{usage} field {name:?} is not a field of the view"))),
    }
}

pub(crate) fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// The page size asked of Elasticsearch for `query`.
pub(crate) fn page_size(query: &Query) -> usize {
    query.limit.min(MAX_PAGE)
}

/// The `_search` body of `query`.
pub(crate) fn search_body(schema: &ViewSchema, query: &Query) -> Result<Value, ViewError> {
    field_of(schema, query.sort.field, FieldKind::Time, "sort")?;
    // Only documents with a sort time are results (a cursor could not point at one without).
    let mut filter =
        vec![json!({ "term": { "tenant": query.tenant } }), json!({ "exists": { "field": query.sort.field } })];
    for f in &query.filters {
        filter.push(match f {
            Filter::Term { field, values } => {
                field_of(schema, field, FieldKind::Keyword, "term filter")?;
                json!({ "terms": { *field: values } })
            }
            Filter::Prefix { field, prefix } => {
                field_of(schema, field, FieldKind::Keyword, "prefix filter")?;
                json!({ "prefix": { *field: { "value": prefix } } })
            }
            Filter::TimeRange { field, from, to } => {
                field_of(schema, field, FieldKind::Time, "time range filter")?;
                let mut range = serde_json::Map::new();
                if let Some(from) = from {
                    range.insert("gte".into(), json!(time(from)));
                }
                if let Some(to) = to {
                    range.insert("lt".into(), json!(time(to)));
                }
                json!({ "range": { *field: range } })
            }
            Filter::Bool { field, value } => {
                field_of(schema, field, FieldKind::Bool, "bool filter")?;
                json!({ "term": { *field: value } })
            }
        });
    }
    let mut bool_query = json!({ "filter": filter });
    if let Some(text) = &query.text {
        let fields: Vec<&str> = schema.fields.iter().filter(|f| f.kind == FieldKind::Text).map(|f| f.name).collect();
        if fields.is_empty() {
            return Err(bad(schema, "full-text search on a view without Text fields".into()));
        }
        // Text without a word analyses to no term, which `zero_terms_query: none` matches to
        // nothing, as the contract says.
        bool_query["must"] = json!([{ "multi_match": {
            "query": text, "fields": fields, "type": "cross_fields", "operator": "and", "zero_terms_query": "none"
        } }]);
    }
    let order = if query.sort.descending { "desc" } else { "asc" };
    let mut body = json!({
        "size": page_size(query),
        "track_total_hits": true,
        "_source": ["id", "version", "source"],
        "query": { "bool": bool_query },
        "sort": [ { query.sort.field: { "order": order } }, { "id": { "order": order } } ],
    });
    if let Some(after) = &query.after {
        // A date_nanos sort value is the time in nanoseconds since the epoch.
        let nanos = after
            .time
            .timestamp_nanos_opt()
            .ok_or_else(|| bad(schema, "the cursor's time is outside what nanoseconds can hold".into()))?;
        body["search_after"] = json!([nanos, after.id]);
    }
    if !query.facets.is_empty() {
        let mut aggs = serde_json::Map::new();
        for facet in &query.facets {
            field_of(schema, facet, FieldKind::Keyword, "facet")?;
            aggs.insert((*facet).into(), json!({ "terms": { "field": facet, "size": FACET_BUCKETS } }));
        }
        body["aggs"] = Value::Object(aggs);
    }
    Ok(body)
}
