//! Data directories written by earlier builds keep working: the index is derived from the log
//! (ARCHITECTURE invariant 5), so an index of an older layout is rebuilt from the log on open and
//! then answers by the current contract. Here: event ids, once global, are scoped by namespace.
//!
//! Why this exists: the index keys changed (ids keyed by namespace, `namespace_chunks` added);
//! reading an old index with the new keys would find no stored id, and retries of events
//! appended before the upgrade would be written twice.

use crate::idx;
use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{Direction, EventData, EventStore, ExpectedRevision, ReadFrom, StreamId};
use anyhow::{ensure, Context, Result};
use fjall::KeyspaceCreateOptions;
use uuid::Uuid;

fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("valid stream name")
}

fn event(n: u64, id: Uuid) -> EventData {
    EventData::json("Happened", &serde_json::json!({ "n": n })).expect("valid event").with_id(id)
}

/// Rewrites the index of the closed store in `dir` as the layout-1 build wrote it: event ids as
/// bare 16-byte keys (one global id space), no `namespace_chunks`, no layout marker.
fn downgrade_index_to_layout_1(dir: &std::path::Path) -> Result<usize> {
    let db = fjall::Database::builder(dir.join("index")).open()?;
    let ids = db.keyspace("event_ids", KeyspaceCreateOptions::default)?;
    let mut entries = Vec::new();
    for guard in ids.iter() {
        let (k, v) = guard.into_inner()?;
        entries.push((k.to_vec(), v.to_vec()));
    }
    for (k, v) in &entries {
        ids.remove(k.as_slice())?;
        ids.insert(&k[k.len() - 16..], v.as_slice())?;
    }
    let chunks = db.keyspace("namespace_chunks", KeyspaceCreateOptions::default)?;
    let chunk_keys: Vec<Vec<u8>> = chunks.iter().map(|g| g.key().map(|k| k.to_vec())).collect::<Result<_, _>>()?;
    for k in chunk_keys {
        chunks.remove(k.as_slice())?;
    }
    let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
    ensure!(meta.get("layout")?.is_some(), "the current build marks its index's layout");
    meta.remove("layout")?;
    db.persist(fjall::PersistMode::SyncAll)?;
    Ok(entries.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_of_the_old_layout_is_rebuilt_and_follows_the_new_contract() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    let (a, b) = (stream("acme/order-1"), stream("globex/order-1"));
    let (x, nil) = (Uuid::new_v4(), Uuid::nil());
    let store = EmbeddedStore::open(EngineConfig::new(&dir)).await?;
    let batch = vec![event(0, x), event(1, nil)];
    let original = store.append_to_stream(&a, ExpectedRevision::NoStream, batch.clone()).await?;
    store.close().await?;
    let rewritten = downgrade_index_to_layout_1(&dir)?;
    ensure!(rewritten == 2, "expected the two ids in the index, found {rewritten}");

    let store = EmbeddedStore::open(EngineConfig::new(&dir)).await?;
    let report = store.recovery_report().clone();
    ensure!(report.index_rebuilt && report.reindexed_events == 2, "the old index must be rebuilt: {report:?}");
    // The retry of an append made before the upgrade is still recognised...
    let retried = store.append_to_stream(&a, ExpectedRevision::Any, batch).await?;
    ensure!(retried == original, "retry after the upgrade: {retried:?}, original {original:?}");
    // ...and the same ids in another namespace are new events.
    let other = store.append_to_stream(&b, ExpectedRevision::NoStream, vec![event(2, x), event(3, nil)]).await?;
    ensure!(idx(other.first_position) == 2, "globex's events are new: {other:?}");
    let all = store.read_all(ReadFrom::Start, Direction::Forwards, 10, &Default::default()).await?;
    ensure!(all.len() == 4, "four events in the log: {all:?}");
    store.close().await?;

    // A reopen of the rebuilt index has nothing to rebuild.
    let store = EmbeddedStore::open(EngineConfig::new(&dir)).await?;
    let report = store.recovery_report().clone();
    ensure!(!report.index_rebuilt && report.reindexed_events == 0, "second open: {report:?}");
    let again = store.append_to_stream(&b, ExpectedRevision::Any, vec![event(2, x), event(3, nil)]).await?;
    ensure!(again == other, "globex's retry after reopen");
    store.close().await.context("close")
}
