//! A view query's filters and full text evaluated against one document in memory, with the view
//! store's own semantics (Keyword fields match exactly, any of a field's values; `Prefix` on
//! Keyword values; `TimeRange` with `from` included and `to` excluded; full text through the same
//! analyzer the index uses, every query word in some Text value, a query without words matching
//! nothing).
//!
//! Why: an export (query-api's `/v1/audit/export`, `/v1/messages/export`) selects its records from
//! the log with the search route's filters, and `annals verify` applies that selection again
//! offline; both must select exactly the documents the search returns, so both run the
//! projection's own `to_view` and this matcher rather than a second reading of the filters.

use std::collections::BTreeSet;

use crate::view_store::tantivy::analyzer::text_analyzer;
use crate::view_store::{FieldValue, Filter, ViewDoc};

/// The words of `text` as the index stores them (lowercased, long words in pieces).
fn words(text: &str) -> BTreeSet<String> {
    let mut analyzer = text_analyzer();
    let mut out = BTreeSet::new();
    analyzer.token_stream(text).process(&mut |t| {
        out.insert(t.text.clone());
    });
    out
}

/// Whether `doc` matches every filter and, when `text` has non-blank content, the full text
/// (`text_fields`: the view's Text fields).
pub fn doc_matches(doc: &ViewDoc, filters: &[Filter], text: Option<&str>, text_fields: &[&str]) -> bool {
    let values = |field: &str| doc.fields.get(field).map(Vec::as_slice).unwrap_or(&[]);
    let strs = |field: &str| {
        values(field).iter().filter_map(|v| match v {
            FieldValue::Str(s) => Some(s.as_str()),
            _ => None,
        })
    };
    let filters_hold = filters.iter().all(|filter| match filter {
        Filter::Term { field, values } => strs(field).any(|v| values.iter().any(|w| w == v)),
        Filter::Prefix { field, prefix } => strs(field).any(|v| v.starts_with(prefix.as_str())),
        Filter::TimeRange { field, from, to } => values(field).iter().any(|v| match v {
            FieldValue::Time(t) => from.is_none_or(|f| *t >= f) && to.is_none_or(|u| *t < u),
            _ => false,
        }),
        Filter::Bool { field, value } => values(field).iter().any(|v| matches!(v, FieldValue::Bool(b) if b == value)),
    });
    if !filters_hold {
        return false;
    }
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else { return true };
    let wanted = words(text);
    if wanted.is_empty() {
        return false;
    }
    let mut held = BTreeSet::new();
    for field in text_fields {
        for value in strs(field) {
            held.extend(words(value));
        }
    }
    wanted.iter().all(|w| held.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn doc() -> ViewDoc {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("status", vec![FieldValue::Str("SENT".into())]);
        fields.insert("tag", vec![FieldValue::Str("a".into()), FieldValue::Str("b".into())]);
        fields.insert("has_errors", vec![FieldValue::Bool(false)]);
        fields.insert("text", vec![FieldValue::Str("Grüße, Ada!".into())]);
        fields.insert("at", vec![FieldValue::Time(Utc.timestamp_opt(100, 0).unwrap())]);
        ViewDoc {
            id: "x".into(),
            tenant: "t".into(),
            version: annals_store::Position::from_code(0),
            fields,
            source: serde_json::value::to_raw_value(&serde_json::json!({})).unwrap(),
        }
    }

    #[test]
    fn filters_and_text_match_as_the_index_does() {
        let d = doc();
        let term = |field, v: &str| Filter::Term { field, values: vec![v.to_owned()] };
        assert!(doc_matches(&d, &[term("tag", "b"), term("status", "SENT")], None, &["text"]));
        assert!(!doc_matches(&d, &[term("status", "sent")], None, &["text"]), "keywords are exact");
        assert!(doc_matches(&d, &[Filter::Prefix { field: "status", prefix: "SE".into() }], None, &["text"]));
        assert!(doc_matches(&d, &[Filter::Bool { field: "has_errors", value: false }], None, &["text"]));
        let at = |s| Some(Utc.timestamp_opt(s, 0).unwrap());
        assert!(doc_matches(&d, &[Filter::TimeRange { field: "at", from: at(100), to: at(101) }], None, &[]));
        assert!(!doc_matches(&d, &[Filter::TimeRange { field: "at", from: None, to: at(100) }], None, &[]));
        assert!(doc_matches(&d, &[], Some("ADA grüße"), &["text"]));
        assert!(!doc_matches(&d, &[], Some("ada bob"), &["text"]));
        assert!(!doc_matches(&d, &[], Some("!!"), &["text"]), "a query without words matches nothing");
        assert!(doc_matches(&d, &[], Some("  "), &["text"]), "a blank query is no query");
    }
}
