//! How a [`ViewSchema`] becomes a tantivy schema, and a [`ViewDoc`] a tantivy document.
//!
//! Kept apart from reads and writes because both sides must agree on one mapping: the hidden
//! fields (`_id`, `_key`, `_tenant`, `_version`, `_source`) and the index options of each
//! [`FieldKind`] decide which queries are possible (fast columns for sorting, facets and exact
//! time ranges; the inverted index for terms and text), so they are chosen in one place.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tantivy::schema::{DateOptions, DateTimePrecision, Field, Schema, FAST, INDEXED, STORED, STRING, TEXT};
use tantivy::TantivyDocument;

use crate::error::ViewError;
use crate::view_store::{FieldKind, FieldValue, ViewDoc, ViewSchema};

/// The document id: stored (reads return it), indexed (lookups) and fast (the sort tie-break).
pub(crate) const ID: &str = "_id";
/// `{tenant length}:{tenant}{id}`: the identity a write replaces and a `get` looks up, so two
/// tenants' documents can never replace, shadow or out-version each other even if their ids
/// collide (the length prefix keeps the pair unambiguous whatever characters either holds).
pub(crate) const KEY: &str = "_key";
pub(crate) const TENANT: &str = "_tenant";
/// Fast for the version check on write, stored for reads.
pub(crate) const VERSION: &str = "_version";
pub(crate) const SOURCE: &str = "_source";

/// The tantivy fields of one view, resolved once at open.
#[derive(Clone, Debug)]
pub(crate) struct Fields {
    pub(crate) id: Field,
    pub(crate) key: Field,
    pub(crate) tenant: Field,
    pub(crate) version: Field,
    pub(crate) source: Field,
    /// The view's declared fields by name.
    pub(crate) declared: BTreeMap<&'static str, (FieldKind, Field)>,
    /// Every `Text` field: where `Query::text` looks.
    pub(crate) text: Vec<Field>,
    /// The counted Keyword fields (`ViewSchema::counted`), in the schema's order (`counts`).
    pub(crate) counted: Vec<(&'static str, Field)>,
    /// Every Time field, in the schema's order (`counts`: which ones a document has).
    pub(crate) times: Vec<&'static str>,
}

/// Builds the tantivy schema of `view`. Declared names may not start with `_` (reserved for the
/// hidden fields) or repeat, so a declared field can never alias a hidden one.
pub(crate) fn build(view: &ViewSchema) -> Result<(Schema, Fields), ViewError> {
    let mut builder = Schema::builder();
    let id = builder.add_text_field(ID, STRING | STORED | FAST);
    let key = builder.add_text_field(KEY, STRING);
    let tenant = builder.add_text_field(TENANT, STRING);
    let version = builder.add_u64_field(VERSION, FAST | STORED);
    let source = builder.add_text_field(SOURCE, STORED);
    let mut declared = BTreeMap::new();
    let mut text = Vec::new();
    for def in &view.fields {
        if def.name.starts_with('_') {
            return Err(bad(view.name, format!("field {:?}: names starting with `_` are reserved", def.name)));
        }
        let field = match def.kind {
            // Raw (untokenized) so terms and prefixes match whole values; fast for facets.
            FieldKind::Keyword => builder.add_text_field(def.name, STRING | FAST),
            // The `default` tokenizer lowercases, which makes text search case-insensitive.
            FieldKind::Text => {
                let field = builder.add_text_field(def.name, TEXT);
                text.push(field);
                field
            }
            // Nanosecond fast columns: the inverted index keeps dates at second precision only,
            // and cursors need the exact time to be strictly after a document.
            FieldKind::Time => builder.add_date_field(
                def.name,
                DateOptions::default().set_indexed().set_fast().set_precision(DateTimePrecision::Nanoseconds),
            ),
            FieldKind::Bool => builder.add_bool_field(def.name, INDEXED),
        };
        if declared.insert(def.name, (def.kind, field)).is_some() {
            return Err(bad(view.name, format!("field {:?} is declared twice", def.name)));
        }
    }
    if !matches!(declared.get(view.default_sort), Some((FieldKind::Time, _))) {
        return Err(bad(view.name, format!("default_sort {:?} is not a Time field of the view", view.default_sort)));
    }
    let mut counted = Vec::new();
    for name in &view.counted {
        match declared.get(name) {
            Some(&(FieldKind::Keyword, field)) if !counted.iter().any(|(n, _)| n == name) => {
                counted.push((*name, field))
            }
            _ => {
                return Err(bad(
                    view.name,
                    format!("counted field {name:?} is not a Keyword field of the view, or repeats"),
                ))
            }
        }
    }
    let times: Vec<&'static str> = view.fields.iter().filter(|d| d.kind == FieldKind::Time).map(|d| d.name).collect();
    if times.len() > 64 {
        return Err(bad(view.name, "more than 64 Time fields".to_owned()));
    }
    Ok((builder.build(), Fields { id, key, tenant, version, source, declared, text, counted, times }))
}

/// The identity term text of a document: see [`KEY`].
pub(crate) fn key(tenant: &str, id: &str) -> String {
    format!("{}:{tenant}{id}", tenant.len())
}

/// Converts a document, refusing fields the view does not declare and values of the wrong kind
/// (a Time field holds at most one value, because sorting and cursors need a single time).
pub(crate) fn to_document(view: &'static str, fields: &Fields, doc: &ViewDoc) -> Result<TantivyDocument, ViewError> {
    let mut out = TantivyDocument::default();
    out.add_text(fields.id, &doc.id);
    out.add_text(fields.key, key(&doc.tenant, &doc.id));
    out.add_text(fields.tenant, &doc.tenant);
    out.add_u64(fields.version, doc.version.code());
    out.add_text(fields.source, doc.source.get());
    for (name, values) in &doc.fields {
        let Some(&(kind, field)) = fields.declared.get(name) else {
            return Err(bad(view, format!("document {:?}: unknown field {name:?}", doc.id)));
        };
        if kind == FieldKind::Time && values.len() > 1 {
            return Err(bad(view, format!("document {:?}: Time field {name:?} has several values", doc.id)));
        }
        for value in values {
            match (kind, value) {
                (FieldKind::Keyword | FieldKind::Text, FieldValue::Str(s)) => out.add_text(field, s),
                (FieldKind::Time, FieldValue::Time(t)) => {
                    let t = to_tantivy_time(*t).ok_or_else(|| {
                        bad(view, format!("document {:?}: time {t} of {name:?} is out of range", doc.id))
                    })?;
                    out.add_date(field, t);
                }
                (FieldKind::Bool, FieldValue::Bool(b)) => out.add_bool(field, *b),
                (kind, value) => {
                    return Err(bad(
                        view,
                        format!("document {:?}: {value:?} is not a value of {kind:?} field {name:?}", doc.id),
                    ))
                }
            }
        }
    }
    Ok(out)
}

/// Nanoseconds since the epoch; `None` outside 1677..2262, which i64 nanoseconds cannot hold.
pub(crate) fn to_tantivy_time(t: DateTime<Utc>) -> Option<tantivy::DateTime> {
    t.timestamp_nanos_opt().map(tantivy::DateTime::from_timestamp_nanos)
}

pub(crate) fn from_tantivy_time(t: tantivy::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(t.into_timestamp_nanos())
}

pub(crate) fn bad(view: &'static str, reason: String) -> ViewError {
    ViewError::BadQuery { view, reason }
}

/// Maps a tantivy (or I/O) failure of `op` to [`ViewError::Backend`].
pub(crate) fn backend(view: &'static str, op: &'static str) -> impl Fn(tantivy::TantivyError) -> ViewError {
    move |e| ViewError::Backend { view, op, reason: e.to_string() }
}

pub(crate) fn corrupt(view: &'static str, reason: String) -> ViewError {
    ViewError::Corrupt { view, reason }
}
