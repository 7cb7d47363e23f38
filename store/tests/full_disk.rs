//! A full disk on a real filesystem: a small tmpfs mounted for the test (root only; skipped with
//! a message where mounting is impossible).
//!
//! Why this exists: ENOSPC used to poison the store, so appends failed until a restart. Now an
//! append that finds no space is `StorageFull` (transient), nothing of it is written, and appends
//! resume by themselves once space is freed; nothing acknowledged is lost and nothing torn stays
//! in the log. Both ways in are tested: the free-space reserve checked before a write, and a
//! `write` that meets ENOSPC itself (reserve 0).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::idx;
use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{Direction, EventData, EventFilter, EventStore, ExpectedRevision, ReadFrom, StoreError, StreamId};
use uuid::Uuid;

/// A tmpfs of `mib` MiB mounted on a temporary directory, unmounted on drop.
struct Mount {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mount {
    fn tmpfs(mib: u64) -> Option<Mount> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).expect("mount point");
        let status =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={mib}M"), "tmpfs"]).arg(&path).status();
        match status {
            Ok(s) if s.success() => Some(Mount { path, _dir: dir }),
            other => {
                eprintln!("SKIPPED: cannot mount a tmpfs ({other:?}); this test needs root");
                None
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the filesystem of `dir` with a file until it is full; returns the file.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    for chunk in [1 << 20, 4096, 1] {
        let bytes = vec![7u8; chunk];
        while file.write_all(&bytes).is_ok() {}
    }
    path
}

fn event(n: u64, pad: usize) -> EventData {
    EventData::json("Stored", &serde_json::json!({ "n": n, "pad": "x".repeat(pad) })).expect("valid event")
}

async fn append_or_full(store: &EmbeddedStore, s: &StreamId, e: &EventData) -> Result<(), StoreError> {
    store.append_to_stream(s, ExpectedRevision::Any, vec![e.clone()]).await.map(|_| ())
}

/// The tests of this file run one at a time. Each spawns `mount` and `umount`: a child holds a
/// copy of every descriptor of the process from its fork to its exec, the other test's `LOCK`
/// included, and a reopen that falls in that window finds the directory still locked.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn run(reserve_mib: u64) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(mount) = Mount::tmpfs(24) else { return };
    let dir = mount.path.join("data");
    let config = || EngineConfig::new(&dir).min_free_bytes(reserve_mib << 20);
    let store = EmbeddedStore::open(config()).await.expect("open");
    let s = StreamId::new("acme/full-1").expect("name");
    let mut acked: Vec<Uuid> = Vec::new();
    for n in 0..20 {
        let e = event(n, 1_000);
        append_or_full(&store, &s, &e).await.expect("space to spare");
        acked.push(e.id());
    }
    let filler = fill(&mount.path);
    // With a reserve the writer refuses before writing; without one the write meets ENOSPC.
    let cause = if reserve_mib > 0 { "min_free_bytes" } else { "No space left on device" };

    // Refused, typed, transient; the store is not ready while it lasts and is not poisoned.
    let refused = event(100, 64 * 1024);
    for _ in 0..2 {
        match append_or_full(&store, &s, &refused).await {
            Err(e @ StoreError::StorageFull { .. }) => assert!(e.is_transient() && e.to_string().contains(cause)),
            other => panic!("an append on a full disk (reserve {reserve_mib} MiB): {other:?}"),
        }
    }
    assert!(matches!(store.writable().await, Err(StoreError::StorageFull { .. })), "not writable while full");

    std::fs::remove_file(&filler).expect("free the space");
    store.writable().await.expect("writable again once space is freed, with no append needed");
    // The refused event was not stored: the same id is a new append now.
    let after = store.append_to_stream(&s, ExpectedRevision::Any, vec![refused.clone()]).await.expect("resumed");
    assert_eq!(idx(after.first_position), 20, "positions go on without a gap");
    acked.push(refused.id());
    let last = event(101, 10);
    append_or_full(&store, &s, &last).await.expect("appends go on");
    acked.push(last.id());
    store.close().await.expect("close");

    let store = EmbeddedStore::open(config()).await.expect("reopen");
    let report = store.recovery_report().clone();
    assert!(report.truncated.is_none(), "nothing torn was left in the log: {report:?}");
    let all = store.read_all(ReadFrom::Start, Direction::Forwards, 1_000, &EventFilter::all()).await.expect("read");
    let ids: Vec<Uuid> = all.iter().map(|e| e.id).collect();
    assert_eq!(ids, acked, "every acknowledged event, once, in order, and nothing else");
    assert!(all.iter().enumerate().all(|(i, e)| idx(e.position) == i as u64), "contiguous positions");
    store.verify().await.expect("every record checks");
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reserve_refuses_appends_before_writing_and_they_resume_when_space_is_freed() {
    run(4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_meets_enospc_is_undone_and_appends_resume_when_space_is_freed() {
    run(0).await;
}
