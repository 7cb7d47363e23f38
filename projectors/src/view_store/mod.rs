//! The view-store contract: what a projection needs from the place its read view lives, narrow
//! enough that an embedded index (tantivy, [`tantivy`]) and a search cluster (Elasticsearch: one
//! index per generation, no atomic multi-document commit, refresh-based visibility) can both keep
//! it. One conformance suite (`testsuite`, behind the `testsuite` feature) is stamped out for
//! every backend.
//!
//! A view is a set of documents, each with a string id, a **version** (the log position of the
//! last event applied to it) and a JSON **source** (what reads return), plus typed **fields**
//! extracted from it for filtering, full-text search, sorting and facets. What the fields are is
//! declared once per view in a [`ViewSchema`]; a backend maps it to its own index mapping.
//!
//! The contract is two traits, because two kinds of process use a view: [`ViewReader`] is what
//! the API needs (get, search, and the committed checkpoint, from which a process that runs no
//! projector answers read-your-writes and lag), [`ViewWriter`] what its one projector needs
//! (commit, `get_many` to load documents before folding, the bulk-load hint, the checkpoint to
//! resume from). Both are async: a cluster answers over the network, and a backend that blocks
//! (tantivy) moves its work off the async workers itself. What differs between backends is a
//! [`Capabilities`] value, which the runtime and the conformance suite read.
//!
//! # Guarantees every backend gives
//!
//! 1. **Checkpoints name what is in the view.** After a crash, the checkpoint names a position
//!    whose effects (and every earlier one's) are in the view. With
//!    [`Capabilities::atomic_checkpoint`] a [`ViewWriter::commit`] makes a batch's writes and its
//!    checkpoint durable and visible together, or none of them (tantivy: the commit payload).
//!    Without it, the caller (the runtime) commits the documents first and the checkpoint after,
//!    in two commits, never both in one; a crash between them leaves documents ahead of the
//!    checkpoint, which rule 2 makes harmless when the events are replayed.
//! 2. **Idempotent by version.** A write whose version is not greater than the stored
//!    document's version changes nothing, so replaying any prefix of the log again is a no-op;
//!    a checkpoint never moves back. (Elasticsearch: `version_type=external` with the position.)
//! 3. **Near-real-time reads.** A committed batch is visible to [`ViewReader::search`] and
//!    [`ViewReader::get`] within one second of `commit` returning (at once, in this process,
//!    with [`Capabilities::visible_on_return`]).
//! 4. **A reader's checkpoint is visible.** Once [`ViewReader::checkpoint`] has returned `C`,
//!    reads through that reader see every document the commits up to `C` wrote. A backend with
//!    refresh-based visibility therefore makes a commit's documents visible before it stores
//!    a checkpoint past them (Elasticsearch: the documents' bulk with `refresh=wait_for`, then
//!    the checkpoint), or reads the checkpoint from what its readers see.
//! 5. **Stable cursors.** Results are sorted by (sort field, id), both in the sort's direction,
//!    and a page after a cursor holds only documents strictly after it in that order, so
//!    concurrent writes never duplicate or skip a document that did not move. (A projection
//!    makes that hold for updates too by sorting on a field its updates never change: messages
//!    sort by `first_event_at`.)
//! 6. **Exact totals and facets**: what counting the matching documents one by one gives,
//!    whether a backend counts them or answers from counts it keeps (`ViewSchema::counted`).
//! 7. **Every read filters by tenant**: `Query::tenant` is not optional.

#[cfg(feature = "elasticsearch")]
pub mod elasticsearch;
pub mod tantivy;
#[cfg(feature = "testsuite")]
pub mod testsuite;

use std::collections::BTreeMap;
use std::sync::Arc;

use annals_store::Position;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ViewError;

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

/// What a [`ViewWriter::commit`] did beyond succeeding: the documents the backend refused for
/// their content (an Elasticsearch `400`: a value its mapping cannot hold). Refusing one again
/// would refuse it the same way, so the runtime parks the event behind each (the one at its
/// version) before its checkpoint passes it, and the projection goes on. Every other document of
/// the batch is durable when `commit` returns `Ok`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitOutcome {
    pub rejected: Vec<RejectedDoc>,
}

/// A document the backend refused, and its reason as the backend gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedDoc {
    pub tenant: String,
    pub id: String,
    /// The document's version: the position of the last event applied to it.
    pub version: Position,
    pub reason: String,
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

/// What a backend can promise beyond the guarantees every one gives; the runtime and the
/// conformance suite read it (as the store's suite reads its `Limits`), so one suite and one
/// runtime serve every backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// A commit's documents and its checkpoint are durable and visible together (guarantee 1).
    /// Without it the runtime commits documents and checkpoint apart, documents first.
    pub atomic_checkpoint: bool,
    /// A commit is visible to this process's reads as soon as `commit` returns, not only
    /// within the second of guarantee 3.
    pub visible_on_return: bool,
}

/// The read half of a view store: what the API needs.
#[async_trait]
pub trait ViewReader: Send + Sync + std::fmt::Debug {
    /// The last committed checkpoint, as this reader sees it (guarantee 4); `None` for a view
    /// that has applied nothing.
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, ViewError>;

    /// The committed document `id` of `tenant`, if any.
    async fn get(&self, tenant: &str, id: &str) -> Result<Option<StoredDoc>, ViewError>;

    async fn search(&self, query: &Query) -> Result<SearchPage, ViewError>;
}

/// The write half of a view store: what its projector needs. A view has one writer at a time.
#[async_trait]
pub trait ViewWriter: Send + Sync + std::fmt::Debug {
    fn capabilities(&self) -> Capabilities;

    /// Applies the batch (guarantees 1 and 2): with [`Capabilities::atomic_checkpoint`], its
    /// writes and checkpoint together; without, callers send writes and checkpoint in separate
    /// batches, and a backend may refuse a batch holding both. Shared, so that a failed commit
    /// can be retried with the same batch (and a blocking backend can move it to a thread).
    /// `Ok` means every document is durable except those the outcome lists as rejected.
    async fn commit(&self, batch: Arc<ViewBatch>) -> Result<CommitOutcome, ViewError>;

    /// The last committed checkpoint, where the projector resumes; `None` for a view that has
    /// applied nothing.
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, ViewError>;

    /// The committed documents of many `(tenant, id)` pairs at once, answered in their order
    /// from one point in time that includes every commit that has returned (what a projector
    /// loads before applying a batch; a backend with refresh-based visibility reads them in
    /// real time, not from its last refresh).
    async fn get_many(&self, keys: &[(String, String)]) -> Result<Vec<Option<StoredDoc>>, ViewError>;

    /// A hint from the projector: `true` while it catches up from far behind (a rebuild, a
    /// first start on a long log), when many commits come back to back and throughput matters
    /// more than search latency; `false` once it is live. Reads and writes keep every guarantee
    /// either way; a backend may ignore the hint.
    async fn bulk_load(&self, on: bool) -> Result<(), ViewError> {
        let _ = on;
        Ok(())
    }
}

/// Both halves of one opened view store (a generation of a view, `crate::host`).
#[derive(Clone, Debug)]
pub struct ViewHalves {
    pub reader: Arc<dyn ViewReader>,
    pub writer: Arc<dyn ViewWriter>,
}
