//! The suite's fixtures: one schema with every field kind, a document builder, a small seeded
//! data set in two tenants, and helpers that turn a failed call into a test failure naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use crate::error::ViewError;
use crate::view_store::{
    Checkpoint, FieldDef, FieldKind, FieldValue, Filter, Query, SearchPage, Sort, StoredDoc, ViewBatch, ViewDoc,
    ViewHalves, ViewSchema,
};
use annals_store::Position;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;

pub const T: &str = "acme";
pub const OTHER: &str = "globex";

pub fn schema() -> ViewSchema {
    let f = |name, kind| FieldDef { name, kind };
    ViewSchema {
        name: "conformance",
        fields: vec![
            f("status", FieldKind::Keyword),
            f("channel", FieldKind::Keyword),
            f("tags", FieldKind::Keyword),
            f("action", FieldKind::Keyword),
            f("subject", FieldKind::Text),
            f("recipient", FieldKind::Text),
            f("at", FieldKind::Time),
            f("sent_at", FieldKind::Time),
            f("has_errors", FieldKind::Bool),
        ],
        default_sort: "at",
        // `tags` may hold several values; `action` is left uncounted, so both ways of answering
        // totals and facets are exercised.
        counted: vec!["status", "channel", "tags"],
    }
}

/// The suite's time origin; `at(n)` is `n` seconds after it.
pub fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 17, 0, 0).single().expect("a valid date") + Duration::seconds(seconds)
}

/// A document builder: `Doc::new(tenant, id, version, at_seconds).kw("status", "SENT")…`.
#[derive(Clone, Debug)]
pub struct Doc(pub ViewDoc);

impl Doc {
    pub fn new(tenant: &str, id: &str, version: u64, at_seconds: i64) -> Doc {
        Doc::at(tenant, id, version, at(at_seconds))
    }

    pub fn at(tenant: &str, id: &str, version: u64, time: DateTime<Utc>) -> Doc {
        let mut fields = BTreeMap::new();
        fields.insert("at", vec![FieldValue::Time(time)]);
        Doc(ViewDoc {
            id: id.to_owned(),
            tenant: tenant.to_owned(),
            version: Position::from_code(version),
            fields,
            source: raw(json!({ "id": id, "tenant": tenant, "version": version })),
        })
    }

    pub fn kw(mut self, field: &'static str, value: &str) -> Doc {
        self.0.fields.entry(field).or_default().push(FieldValue::Str(value.to_owned()));
        self
    }

    pub fn text(self, field: &'static str, value: &str) -> Doc {
        self.kw(field, value)
    }

    pub fn time(mut self, field: &'static str, time: DateTime<Utc>) -> Doc {
        self.0.fields.insert(field, vec![FieldValue::Time(time)]);
        self
    }

    pub fn flag(mut self, field: &'static str, value: bool) -> Doc {
        self.0.fields.insert(field, vec![FieldValue::Bool(value)]);
        self
    }

    pub fn source(mut self, source: serde_json::Value) -> Doc {
        self.0.source = raw(source);
        self
    }
}

fn raw(source: serde_json::Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(&source).expect("a JSON value serializes")
}

pub fn batch(docs: impl IntoIterator<Item = Doc>, checkpoint: Option<u64>) -> ViewBatch {
    ViewBatch {
        upserts: docs.into_iter().map(|d| d.0).collect(),
        checkpoint: checkpoint.map(|p| Checkpoint { position: Position::from_code(p) }),
    }
}

pub fn query(tenant: &str) -> Query {
    Query {
        tenant: tenant.to_owned(),
        filters: Vec::new(),
        text: None,
        sort: Sort { field: "at", descending: true },
        limit: 1000,
        after: None,
        facets: Vec::new(),
    }
}

pub fn with_filter(filter: Filter) -> Query {
    Query { filters: vec![filter], ..query(T) }
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory for the view")
}

pub async fn commit(store: &ViewHalves, batch: ViewBatch) {
    try_commit(store, batch).await.expect("commit");
}

/// Commits `batch` as the runtime would on this backend: in one commit where documents and
/// checkpoint commit atomically, else documents first, then the checkpoint. On a backend whose
/// commits are not visible on return, waits out guarantee 3's second, so every case can read
/// what it wrote.
pub async fn try_commit(store: &ViewHalves, batch: ViewBatch) -> Result<(), ViewError> {
    let capabilities = store.writer.capabilities();
    // The fixtures' documents are ones every backend must hold: none may be rejected.
    let outcomes = if capabilities.atomic_checkpoint || batch.upserts.is_empty() || batch.checkpoint.is_none() {
        vec![store.writer.commit(Arc::new(batch)).await?]
    } else {
        let checkpoint = batch.checkpoint;
        vec![
            store.writer.commit(Arc::new(ViewBatch { upserts: batch.upserts, checkpoint: None })).await?,
            store.writer.commit(Arc::new(ViewBatch { upserts: Vec::new(), checkpoint })).await?,
        ]
    };
    for outcome in outcomes {
        assert!(outcome.rejected.is_empty(), "a fixture document was rejected: {:?}", outcome.rejected);
    }
    if !capabilities.visible_on_return {
        tokio::time::sleep(StdDuration::from_millis(1_100)).await;
    }
    Ok(())
}

pub async fn search(store: &ViewHalves, q: &Query) -> SearchPage {
    store.reader.search(q).await.expect("search")
}

pub async fn try_search(store: &ViewHalves, q: Query) -> Result<SearchPage, ViewError> {
    store.reader.search(&q).await
}

pub async fn get(store: &ViewHalves, tenant: &str, id: &str) -> Result<Option<StoredDoc>, ViewError> {
    store.reader.get(tenant, id).await
}

pub async fn get_many(store: &ViewHalves, keys: &[(&str, &str)]) -> Result<Vec<Option<StoredDoc>>, ViewError> {
    let keys: Vec<(String, String)> = keys.iter().map(|(t, i)| ((*t).to_owned(), (*i).to_owned())).collect();
    store.writer.get_many(&keys).await
}

/// The ids of a search's page, in order.
pub async fn ids(store: &ViewHalves, q: &Query) -> Vec<String> {
    search(store, q).await.docs.into_iter().map(|d| d.id).collect()
}

/// The ids matching a search, as a set (for filter tests, where order is not the point).
pub async fn id_set(store: &ViewHalves, q: &Query) -> BTreeSet<String> {
    let page = search(store, q).await;
    assert_eq!(page.total as usize, page.docs.len(), "total must count the matching documents");
    page.docs.into_iter().map(|d| d.id).collect()
}

pub fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// Every document of `tenant`, walked with cursors.
pub async fn all_docs(store: &ViewHalves, tenant: &str) -> Vec<StoredDoc> {
    let mut q = Query { limit: 7, ..query(tenant) };
    let mut out = Vec::new();
    loop {
        let page = search(store, &q).await;
        out.extend(page.docs);
        match page.next {
            Some(next) => q.after = Some(next),
            None => return out,
        }
    }
}

/// The checkpoint, which the reader and the writer must agree on.
pub async fn checkpoint(store: &ViewHalves) -> Option<u64> {
    let read = store.reader.checkpoint().await.expect("the reader's checkpoint");
    let written = store.writer.checkpoint().await.expect("the writer's checkpoint");
    assert_eq!(read, written, "the reader and the writer see one committed checkpoint");
    read.map(|c| c.position.code())
}

pub fn assert_bad_query(result: Result<SearchPage, ViewError>, what: &str) {
    match result {
        Err(ViewError::BadQuery { .. }) => {}
        other => panic!("{what}: expected BadQuery, got {other:?}"),
    }
}

/// A small message-like data set in tenant `T` and one document in `OTHER`.
pub async fn seed(store: &ViewHalves) {
    commit(
        store,
        batch(
            [
                Doc::new(T, "m1", 1, 10)
                    .kw("status", "SENT")
                    .kw("channel", "email")
                    .kw("tags", "orders")
                    .kw("tags", "transactional")
                    .kw("action", "template.created")
                    .text("subject", "Your order #48213 has SHIPPED")
                    .text("recipient", "ada@example.com")
                    .flag("has_errors", false),
                Doc::new(T, "m2", 2, 20)
                    .kw("status", "DELIVERED")
                    .kw("channel", "sms")
                    .kw("tags", "orders")
                    .kw("action", "template.updated")
                    .text("subject", "Order delivered")
                    .text("recipient", "grace hopper")
                    .flag("has_errors", false),
                Doc::new(T, "m3", 3, 30)
                    .kw("status", "UNDELIVERABLE")
                    .kw("channel", "email")
                    .kw("tags", "marketing")
                    .kw("action", "templates.listed")
                    .text("subject", "Weekly digest")
                    .text("recipient", "ada lovelace")
                    .flag("has_errors", true),
                Doc::new(T, "m4", 4, 40)
                    .kw("status", "SENT")
                    .kw("channel", "push")
                    .kw("action", "brand.updated")
                    .text("subject", "Password reset (order-free)")
                    .flag("has_errors", false),
                Doc::new(OTHER, "o1", 5, 15)
                    .kw("status", "SENT")
                    .kw("channel", "email")
                    .kw("tags", "orders")
                    .kw("action", "template.created")
                    .text("subject", "Your order has shipped")
                    .flag("has_errors", false),
            ],
            Some(5),
        ),
    )
    .await;
}
