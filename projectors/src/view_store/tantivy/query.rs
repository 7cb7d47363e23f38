//! Translation of a [`Query`] into tantivy queries: the tenant, the filters, the full text and the
//! cursor, each checked against the view's schema first so a caller's mistake is a
//! [`ViewError::BadQuery`], never a tantivy error or a panic.
//!
//! No user input goes through tantivy's query-language parser: every clause is built from terms,
//! so there is no syntax to escape and no syntax error to hit.

use std::ops::Bound;

use tantivy::query::{
    BooleanQuery, EmptyQuery, ExistsQuery, InvertedIndexRangeQuery, Occur, Query as TQuery, RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::Term;

use super::schema::{bad, to_tantivy_time, Fields};
use crate::error::ViewError;
use crate::view_store::{Cursor, FieldKind, Filter, Query, Sort};

/// The parts of a search: `matching` selects what `total` and facets count; `page` adds the
/// cursor to it.
#[derive(Debug)]
pub(crate) struct Built {
    pub(crate) matching: Box<dyn TQuery>,
    pub(crate) page: Box<dyn TQuery>,
    pub(crate) sort_field: &'static str,
}

/// Builds the queries of `query`. `analyzer` is the tokenizer of the Text fields, so the text
/// is split and lowercased exactly as the documents were.
pub(crate) fn build(
    view: &'static str,
    fields: &Fields,
    analyzer: &mut TextAnalyzer,
    query: &Query,
) -> Result<Built, ViewError> {
    let sort_field = field_of(view, fields, query.sort.field, FieldKind::Time, "sort")?;
    let mut clauses: Vec<Box<dyn TQuery>> = vec![term(fields.tenant, &query.tenant)];
    // Only documents with a sort time are results: one without could not be placed in the
    // (time, id) order, so no cursor could point at it.
    clauses.push(Box::new(ExistsQuery::new(query.sort.field.to_owned(), false)));
    for filter in &query.filters {
        if let Some(clause) = filter_clause(view, fields, filter)? {
            clauses.push(clause);
        }
    }
    if let Some(text) = &query.text {
        clauses.push(text_clause(view, fields, analyzer, text)?);
    }
    for facet in &query.facets {
        field_of(view, fields, facet, FieldKind::Keyword, "facet")?;
    }
    let matching = BooleanQuery::intersection(clauses);
    let page: Box<dyn TQuery> = match &query.after {
        None => Box::new(matching.clone()),
        Some(cursor) => {
            let after = after_cursor(view, fields.id, sort_field, &query.sort, cursor)?;
            Box::new(BooleanQuery::intersection(vec![Box::new(matching.clone()), after]))
        }
    };
    Ok(Built { matching: Box::new(matching), page, sort_field: query.sort.field })
}

/// The declared field `name`, which must be of `kind` to be used as `usage`.
fn field_of(view: &'static str, fields: &Fields, name: &str, kind: FieldKind, usage: &str) -> Result<Field, ViewError> {
    match fields.declared.get(name) {
        Some(&(k, field)) if k == kind => Ok(field),
        Some(&(k, _)) => Err(bad(view, format!("{usage} field {name:?} is {k:?}, not {kind:?}"))),
        None => Err(bad(view, format!("{usage} field {name:?} does not exist"))),
    }
}

fn term(field: Field, value: &str) -> Box<dyn TQuery> {
    Box::new(TermQuery::new(Term::from_field_text(field, value), IndexRecordOption::Basic))
}

fn filter_clause(view: &'static str, fields: &Fields, filter: &Filter) -> Result<Option<Box<dyn TQuery>>, ViewError> {
    Ok(Some(match filter {
        Filter::Term { field, values } => {
            let f = field_of(view, fields, field, FieldKind::Keyword, "term filter")?;
            if values.is_empty() {
                return Err(bad(view, format!("term filter on {field:?} has no values")));
            }
            // Term queries, not a `TermSetQuery`: that one turns the postings of its terms into a
            // bitset up front, a cost that grows with every document holding the value even when
            // a page needs a few of them (`topk.rs`); a term query reads its postings lazily.
            let mut terms: Vec<Term> = values.iter().map(|v| Term::from_field_text(f, v)).collect();
            terms.sort();
            terms.dedup();
            if terms.len() == 1 {
                Box::new(TermQuery::new(terms.remove(0), IndexRecordOption::Basic))
            } else {
                let any: Vec<(Occur, Box<dyn TQuery>)> = terms
                    .into_iter()
                    .map(|t| (Occur::Should, Box::new(TermQuery::new(t, IndexRecordOption::Basic)) as Box<dyn TQuery>))
                    .collect();
                Box::new(BooleanQuery::new(any))
            }
        }
        Filter::Prefix { field, prefix } => {
            let f = field_of(view, fields, field, FieldKind::Keyword, "prefix filter")?;
            prefix_clause(f, prefix)
        }
        Filter::TimeRange { field, from, to } => {
            let f = field_of(view, fields, field, FieldKind::Time, "time range filter")?;
            let bound = |t: &Option<chrono::DateTime<chrono::Utc>>| -> Result<Option<Term>, ViewError> {
                t.map(|t| {
                    to_tantivy_time(t)
                        .map(|t| Term::from_field_date(f, t))
                        .ok_or_else(|| bad(view, format!("time {t} of the {field:?} range is out of range")))
                })
                .transpose()
            };
            match (bound(from)?, bound(to)?) {
                (None, None) => return Ok(None),
                // An empty range: said outright rather than handing tantivy inverted bounds.
                (Some(_), Some(_)) if from >= to => Box::new(EmptyQuery),
                (lo, hi) => Box::new(RangeQuery::new(
                    lo.map_or(Bound::Unbounded, Bound::Included),
                    hi.map_or(Bound::Unbounded, Bound::Excluded),
                )),
            }
        }
        Filter::Bool { field, value } => {
            let f = field_of(view, fields, field, FieldKind::Bool, "bool filter")?;
            Box::new(TermQuery::new(Term::from_field_bool(f, *value), IndexRecordOption::Basic))
        }
    }))
}

/// Every value starting with `prefix` lies in `[prefix, successor(prefix))` in byte order, and
/// a range over the term dictionary needs no pattern syntax, so no input can be misread.
fn prefix_clause(field: Field, prefix: &str) -> Box<dyn TQuery> {
    let lower = Bound::Included(Term::from_field_text(field, prefix));
    let upper = match prefix_successor(prefix.as_bytes()) {
        Some(bytes) => {
            // The successor may not be UTF-8 (it is a byte bound), so set the bytes directly.
            let mut t = Term::from_field_text(field, "");
            t.set_bytes(&bytes);
            Bound::Excluded(t)
        }
        None => Bound::Unbounded,
    };
    Box::new(InvertedIndexRangeQuery::new(lower, upper))
}

/// The smallest byte string greater than every string starting with `prefix`; `None` when there
/// is none (empty, or all `0xFF`), i.e. the range is unbounded above.
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut bytes = prefix.to_vec();
    while let Some(last) = bytes.pop() {
        if last < u8::MAX {
            bytes.push(last + 1);
            return Some(bytes);
        }
    }
    None
}

/// Every word of `text` must occur in at least one Text field (a long word: each of its pieces,
/// see `analyzer`). Text without any word (only punctuation, say) matches nothing, as
/// Elasticsearch's `match` does by default: a search whose words all vanished must never match
/// everything.
fn text_clause(
    view: &'static str,
    fields: &Fields,
    analyzer: &mut TextAnalyzer,
    text: &str,
) -> Result<Box<dyn TQuery>, ViewError> {
    if fields.text.is_empty() {
        return Err(bad(view, "full-text search on a view without Text fields".to_owned()));
    }
    let mut tokens = Vec::new();
    analyzer.token_stream(text).process(&mut |token| tokens.push(token.text.clone()));
    tokens.sort();
    tokens.dedup();
    if tokens.is_empty() {
        return Ok(Box::new(EmptyQuery));
    }
    let per_token = tokens
        .iter()
        .map(|token| {
            let any_field: Vec<(Occur, Box<dyn TQuery>)> = fields
                .text
                .iter()
                .map(|&f| {
                    let q: Box<dyn TQuery> =
                        Box::new(TermQuery::new(Term::from_field_text(f, token), IndexRecordOption::Basic));
                    (Occur::Should, q)
                })
                .collect();
            let q: Box<dyn TQuery> = Box::new(BooleanQuery::new(any_field));
            q
        })
        .collect();
    Ok(Box::new(BooleanQuery::intersection(per_token)))
}

/// Documents strictly after `cursor` in the (time, id) order of `sort`: a filter, not an offset,
/// so a page starts at the same document however many were written since the previous one.
fn after_cursor(
    view: &'static str,
    id: Field,
    time: Field,
    sort: &Sort,
    cursor: &Cursor,
) -> Result<Box<dyn TQuery>, ViewError> {
    let t = to_tantivy_time(cursor.time)
        .ok_or_else(|| bad(view, format!("cursor time {} is out of range", cursor.time)))?;
    let t = Term::from_field_date(time, t);
    let cursor_id = Term::from_field_text(id, &cursor.id);
    let (time_beyond, id_beyond) = if sort.descending {
        (
            RangeQuery::new(Bound::Unbounded, Bound::Excluded(t.clone())),
            RangeQuery::new(Bound::Unbounded, Bound::Excluded(cursor_id)),
        )
    } else {
        (
            RangeQuery::new(Bound::Excluded(t.clone()), Bound::Unbounded),
            RangeQuery::new(Bound::Excluded(cursor_id), Bound::Unbounded),
        )
    };
    let same_time = RangeQuery::new(Bound::Included(t.clone()), Bound::Included(t));
    let tie: Box<dyn TQuery> = Box::new(BooleanQuery::intersection(vec![Box::new(same_time), Box::new(id_beyond)]));
    Ok(Box::new(BooleanQuery::new(vec![(Occur::Should, Box::new(time_beyond)), (Occur::Should, tie)])))
}
