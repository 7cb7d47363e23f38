//! The view-store conformance suite stamped for [`TantivyViewStore`] (its capabilities say a
//! commit is visible on return, which the suite then checks), plus what only the embedded
//! backend promises: readers on other threads see each commit within the second, and an index
//! refuses a schema or a second writer it was not made for.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals_projectors::view_store::testsuite::{batch, query, schema, Doc};
use annals_projectors::view_store::{FieldDef, FieldKind, Query, ViewHalves, ViewReader, ViewSchema, ViewWriter};
use annals_projectors::{TantivyViewStore, ViewError};

async fn open(dir: PathBuf, schema: ViewSchema) -> ViewHalves {
    let store = Arc::new(TantivyViewStore::open(&dir, schema).expect("open the tantivy view"));
    ViewHalves { reader: Arc::clone(&store) as _, writer: store }
}

annals_projectors::view_store_test_suite!(open);

fn open_sync(dir: &Path, schema: ViewSchema) -> TantivyViewStore {
    TantivyViewStore::open(dir, schema).expect("open the tantivy view")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_see_each_commit_within_a_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_sync(dir.path(), schema());
    // The writer publishes the number of documents committed so far; readers check that a
    // search never lags it by more than a second.
    let committed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, committed, done) = (store.clone(), Arc::clone(&committed), Arc::clone(&done));
            tokio::spawn(async move {
                let mut worst = Duration::ZERO;
                while !done.load(Ordering::Acquire) {
                    let want = committed.load(Ordering::Acquire);
                    let since = Instant::now();
                    loop {
                        let total = store.search(&Query { limit: 1, ..query("acme") }).await.expect("search").total;
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
        let batch = batch([Doc::new("acme", &format!("c{i}"), i, i as i64)], Some(i));
        store.commit(Arc::new(batch)).await.expect("commit");
        committed.store(i + 1, Ordering::Release);
    }
    done.store(true, Ordering::Release);
    for reader in readers {
        let worst = reader.await.expect("reader task");
        assert!(worst < Duration::from_secs(1));
    }
}

#[test]
fn reopening_with_another_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open_sync(dir.path(), schema()));
    let mut other = schema();
    other.fields.push(FieldDef { name: "extra", kind: FieldKind::Keyword });
    let err = TantivyViewStore::open(dir.path(), other).expect_err("a changed schema needs a rebuild");
    assert!(matches!(err, ViewError::Backend { .. }), "{err:?}");
}

#[test]
fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = open_sync(dir.path(), schema());
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

/// An API process that runs no projector opens the view to read only: it takes no writer lock,
/// and the checkpoint it reads is the one the writer committed, with that commit's documents
/// visible to it at once (guarantee 4), so `min_position` and lag can be answered from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_opened_beside_the_writer_follows_its_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = open_sync(dir.path(), schema());
    let reader = TantivyViewStore::open_reader(dir.path(), schema()).expect("a reader beside the writer");
    assert_eq!(ViewReader::checkpoint(&reader).await.expect("checkpoint"), None);
    for i in 0..10u64 {
        let batch = batch([Doc::new("acme", &format!("w{i}"), i, i as i64)], Some(i));
        writer.commit(Arc::new(batch)).await.expect("commit");
        let seen = ViewReader::checkpoint(&reader).await.expect("checkpoint").map(|c| c.position);
        assert_eq!(seen, ViewReader::checkpoint(&writer).await.expect("checkpoint").map(|c| c.position));
        assert!(reader.get("acme", &format!("w{i}")).await.expect("get").is_some(), "w{i} under its checkpoint");
        assert_eq!(reader.search(&query("acme")).await.expect("search").total, i + 1);
    }
    // Readers never lock the index: a second one opens too, and the writer still writes.
    let _another = TantivyViewStore::open_reader(dir.path(), schema()).expect("a second reader");
    writer.commit(Arc::new(batch([], Some(20)))).await.expect("commit beside readers");
}
