//! The `ViewStore` conformance suite stamped for [`TantivyViewStore`], plus what only the
//! embedded backend promises: a commit is visible to the next read as soon as it returns (not
//! just within the contract's second), and an index refuses a schema or a second writer it was
//! not made for.

use crate::view_store;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use annals_projectors::view_store::{FieldDef, FieldKind, Query, ViewSchema, ViewStore};
use annals_projectors::{TantivyViewStore, ViewError};
use view_store::{batch, query, schema, Doc};

fn open(dir: &Path, schema: ViewSchema) -> Box<dyn ViewStore> {
    Box::new(TantivyViewStore::open(dir, schema).expect("open the tantivy view"))
}

view_store_suite!(open);

#[test]
fn a_commit_is_searchable_as_soon_as_it_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), schema());
    for i in 0..20u64 {
        let id = format!("doc-{i}");
        store
            .commit(&batch([Doc::new("acme", &id, i, i as i64).text("subject", "hot off the press")], Some(i)))
            .expect("commit");
        // No waiting, no polling: the very next reads see the batch.
        assert!(store.get("acme", &id).expect("get").is_some(), "{id} by get");
        let q = Query { text: Some("press".into()), ..query("acme") };
        assert_eq!(store.search(&q).expect("search").total, i + 1, "{id} by search");
        assert_eq!(store.checkpoint().expect("checkpoint").map(|c| c.position.code()), Some(i));
    }
}

#[test]
fn concurrent_readers_see_each_commit_within_a_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = TantivyViewStore::open(dir.path(), schema()).expect("open");
    // The writer publishes the number of documents committed so far; readers check that a
    // search never lags it by more than a second.
    let committed = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut worst = Duration::ZERO;
                    while !done.load(Ordering::Acquire) {
                        let want = committed.load(Ordering::Acquire);
                        let since = Instant::now();
                        loop {
                            let total = store.search(&Query { limit: 1, ..query("acme") }).expect("search").total;
                            if total >= want {
                                break;
                            }
                            assert!(since.elapsed() < Duration::from_secs(1), "a commit was invisible for 1 s");
                        }
                        worst = worst.max(since.elapsed());
                    }
                    worst
                })
            })
            .collect();
        for i in 0..50u64 {
            store.commit(&batch([Doc::new("acme", &format!("c{i}"), i, i as i64)], Some(i))).expect("commit");
            committed.store(i + 1, Ordering::Release);
        }
        done.store(true, Ordering::Release);
        for reader in readers {
            let worst = reader.join().expect("reader thread");
            assert!(worst < Duration::from_secs(1));
        }
    });
}

#[test]
fn reopening_with_another_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(dir.path(), schema()));
    let mut other = schema();
    other.fields.push(FieldDef { name: "extra", kind: FieldKind::Keyword });
    let err = TantivyViewStore::open(dir.path(), other).expect_err("a changed schema needs a rebuild");
    assert!(matches!(err, ViewError::Backend { .. }), "{err:?}");
}

#[test]
fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = open(dir.path(), schema());
    let err = TantivyViewStore::open(dir.path(), schema()).expect_err("one writer per index");
    assert!(matches!(err, ViewError::Backend { .. }), "{err:?}");
}

#[test]
fn invalid_schemas_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reserved = ViewSchema {
        fields: vec![
            FieldDef { name: "_id", kind: FieldKind::Keyword },
            FieldDef { name: "at", kind: FieldKind::Time },
        ],
        ..schema()
    };
    let bad_sort = ViewSchema { default_sort: "status", ..schema() };
    for bad in [reserved, bad_sort] {
        let err = TantivyViewStore::open(dir.path(), bad).expect_err("refused");
        assert!(matches!(err, ViewError::BadQuery { .. }), "{err:?}");
    }
}
