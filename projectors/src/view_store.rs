//! The `ViewStore` contract: what a projection needs from the place its read view lives, narrow
//! enough that an embedded index (tantivy) and a search cluster (Elasticsearch) can both keep it.
//! One conformance suite (`projectors/tests/view_store/`) is stamped out for every backend.
//!
//! A view is a set of documents, each with a string id, a **version** (the log position of the
//! last event applied to it) and a JSON **source** (what reads return), plus typed **fields**
//! extracted from it for filtering, full-text search, sorting and facets. What the fields are is
//! declared once per view in a [`ViewSchema`]; a backend maps it to its own index mapping.
//!
//! # Guarantees every backend gives
//!
//! 1. **Atomic batches with their checkpoint.** [`ViewStore::commit`] makes every write of the
//!    batch and the batch's checkpoint visible together, or none of them: after a crash,
//!    [`ViewStore::checkpoint`] names exactly the last position whose effects are in the view.
//!    (tantivy: the commit payload; a backend without atomic commits writes the documents
//!    first, then the checkpoint, and relies on rule 2 to make replays harmless.)
//! 2. **Idempotent by version.** A write whose version is not greater than the stored
//!    document's version changes nothing, so replaying any prefix of the log again is a no-op.
//! 3. **Near-real-time reads.** A committed batch is visible to [`ViewStore::search`] and
//!    [`ViewStore::get`] within one second of `commit` returning.
//! 4. **Stable cursors.** Results are sorted by (sort field, id), both in the sort's direction,
//!    and a page after a cursor holds only documents strictly after it in that order, so
//!    concurrent writes never duplicate or skip a document that did not move. (A projection
//!    makes that hold for updates too by sorting on a field its updates never change: messages
//!    sort by `first_event_at`.)
//! 6. **Exact totals and facets**: what counting the matching documents one by one gives,
//!    whether a backend counts them or answers from counts it keeps (`ViewSchema::counted`).
//! 5. **Every read filters by tenant**: `Query::tenant` is not optional.

use std::collections::BTreeMap;

use annals_store::Position;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How a view's documents are indexed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewSchema {
    /// The view's name (`messages`, `audit`): also its index name.
    pub name: &'static str,
    pub fields: Vec<FieldDef>,
    /// The time field results sort on by default (newest first).
    pub default_sort: &'static str,
    /// Keyword fields of few values (statuses, channels) whose counts per tenant the backend
    /// may keep as it commits, so that a search filtered by nothing but terms on them (the
    /// page a log UI opens on) gets its total and facets without visiting its matches. Totals
    /// and facets are exact either way; this only decides what is fast.
    pub counted: Vec<&'static str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDef {
    pub name: &'static str,
    pub kind: FieldKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// Exact values (ids, statuses, emails): term and prefix filters, facets. May hold several.
    Keyword,
    /// Tokenized text for `Query::text` (subject, names).
    Text,
    /// A point in time: range filters and sorting.
    Time,
    Bool,
}

/// One field's values in a document (keywords and text may hold several, e.g. tags).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    Str(String),
    Time(DateTime<Utc>),
    Bool(bool),
}

/// A document as a projection writes it.
#[derive(Clone, Debug)]
pub struct ViewDoc {
    pub id: String,
    pub tenant: String,
    /// The position of the last event applied to this document.
    pub version: Position,
    pub fields: BTreeMap<&'static str, Vec<FieldValue>>,
    /// What reads return, as the projection serialized it (JSON text: a projection serializes
    /// its typed document straight to it, with no `Value` tree in between).
    pub source: Box<serde_json::value::RawValue>,
}

/// A document as reads return it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredDoc {
    pub id: String,
    pub version: Position,
    pub source: serde_json::Value,
}

/// How far a view has applied the log: every event at or before `position` is in the view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub position: Position,
}

/// What one `commit` writes.
#[derive(Clone, Debug, Default)]
pub struct ViewBatch {
    /// Inserted, or replacing the stored document of the same id if its version is greater.
    pub upserts: Vec<ViewDoc>,
    /// The checkpoint committed with the writes.
    pub checkpoint: Option<Checkpoint>,
}

/// A filtered search. All filters combine (AND); several values of one `Term` filter are OR.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub tenant: String,
    pub filters: Vec<Filter>,
    /// Full-text over the view's `Text` fields: every word must match. No word is too long to
    /// be found, and text without any word (only punctuation) matches nothing.
    pub text: Option<String>,
    pub sort: Sort,
    pub limit: usize,
    /// From the previous page's `next`.
    pub after: Option<Cursor>,
    /// Keyword fields to count values of, over every document matching the filters.
    pub facets: Vec<&'static str>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    Term {
        field: &'static str,
        values: Vec<String>,
    },
    Prefix {
        field: &'static str,
        prefix: String,
    },
    /// `from` included, `to` excluded.
    TimeRange {
        field: &'static str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    },
    Bool {
        field: &'static str,
        value: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sort {
    pub field: &'static str,
    pub descending: bool,
}

/// A position in a sorted result: the last document of a page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub time: DateTime<Utc>,
    pub id: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SearchPage {
    pub docs: Vec<StoredDoc>,
    /// Set when there may be more: pass it as `Query::after`.
    pub next: Option<Cursor>,
    /// Total documents matching the filters (not just this page).
    pub total: u64,
    /// Per facet field: value → count, over every matching document.
    pub facets: BTreeMap<&'static str, BTreeMap<String, u64>>,
}

/// A view's storage. Methods block (tantivy's API is synchronous; callers run them on the
/// blocking pool); a backend is shared by one writer (its projection) and many readers.
pub trait ViewStore: Send + Sync + std::fmt::Debug {
    /// Applies the batch and its checkpoint atomically (guarantees 1 and 2).
    /// By reference, so that a failed commit can be retried with the same batch.
    fn commit(&self, batch: &ViewBatch) -> Result<(), crate::ViewError>;

    /// The last committed checkpoint; `None` for a view that has applied nothing.
    fn checkpoint(&self) -> Result<Option<Checkpoint>, crate::ViewError>;

    /// The committed document `id` of `tenant`, if any.
    fn get(&self, tenant: &str, id: &str) -> Result<Option<StoredDoc>, crate::ViewError>;

    /// `get` for many `(tenant, id)` pairs at once, answered in their order from one point in
    /// time (what a projector loads before applying a batch).
    fn get_many(&self, keys: &[(&str, &str)]) -> Result<Vec<Option<StoredDoc>>, crate::ViewError> {
        keys.iter().map(|(tenant, id)| self.get(tenant, id)).collect()
    }

    fn search(&self, query: &Query) -> Result<SearchPage, crate::ViewError>;

    /// A hint from the projector: `true` while it catches up from far behind (a rebuild, a
    /// first start on a long log), when many commits come back to back and throughput matters
    /// more than search latency; `false` once it is live. Reads and writes keep every guarantee
    /// either way; a backend may ignore the hint.
    fn bulk_load(&self, on: bool) -> Result<(), crate::ViewError> {
        let _ = on;
        Ok(())
    }
}
