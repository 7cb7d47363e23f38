//! The embedded engine against the `EventStore` contract, plus what only an on-disk engine promises.
//!
//! Why this exists: `EmbeddedStore` is the backend `annals serve` runs on, so it must pass every
//! case of the conformance suite (stamped out below, one test per case, each store in its own
//! temporary directory with 64 KiB segments so that rolling is exercised everywhere). The
//! contract says nothing about files, so the engine's own promises are tested here too: data,
//! revisions and idempotency survive close + reopen; segments roll and reads cross them; the
//! indexes are derived data that a reopen rebuilds from the log when `index/` is deleted; one
//! process at a time holds a data directory; closing ends subscriptions and other handles.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use annals_store::conformance::Limits;
use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{
    AppendResult, CurrentRevision, Direction, EventData, EventFilter, EventStore, ExpectedRevision, Position, ReadFrom,
    ReadStreamOutcome, RecordedEvent, Revision, StoreError, StreamId, SubscribeFrom, SubscriptionMessage,
};
use anyhow::{bail, ensure, Context, Result};
use tempfile::TempDir;

const SEGMENT_SIZE: u64 = 64 * 1024;
const WAIT: Duration = Duration::from_secs(30);

fn config(dir: &Path) -> EngineConfig {
    EngineConfig::new(dir).segment_size(SEGMENT_SIZE)
}

/// The conformance suite's factory: a fresh store in its own temporary directory, which lives
/// as long as the test holds the guard.
async fn fresh_store() -> (EmbeddedStore, TempDir) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let store = EmbeddedStore::open(config(&dir.path().join("data"))).await.expect("open a fresh store");
    (store, dir)
}

annals_store::event_store_test_suite!(fresh_store, limits = Limits::of_engine(&config(Path::new("unused"))));

#[path = "conformance_embedded/helpers.rs"]
mod helpers;

use crate::{idx, pos};
use helpers::*;

// ---------------------------------------------------------------------------------------------
// Embedded-only tests
// ---------------------------------------------------------------------------------------------

/// Events, revisions, positions, `recorded_at` and idempotency survive close + reopen; appends
/// continue where they left off.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_survives_close_and_reopen() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    let store = open(&dir).await?;
    ensure!(store.recovery_report().truncated.is_none(), "fresh store: {:?}", store.recovery_report());
    let appended = mixed_workload(&store, 40, 50).await?;
    let before = snapshot(&store, &NAMES).await?;
    ensure!(before.log.len() > 40, "workload too small");
    close(store).await?;

    let store = open(&dir).await?;
    let report = store.recovery_report().clone();
    ensure!(report.truncated.is_none(), "a clean close must leave no torn tail: {report:?}");
    ensure!(!report.index_rebuilt, "a clean close must not need an index rebuild: {report:?}");
    ensure!(report.reindexed_events == 0, "close flushes the index, so reopen must replay nothing: {report:?}");
    ensure_same(&before, &snapshot(&store, &NAMES).await?, "after reopen")?;

    // Idempotent retries of every mode still answer with the original result.
    ensure_retries_return_original(&store, &appended, "after reopen").await?;

    // Expected revisions are checked against the persisted stream ends.
    let s = stream("acct-1");
    let last = before.streams["acct-1"].clone().into_events().last().expect("acct-1 has events").revision;
    for expected in [ExpectedRevision::NoStream, ExpectedRevision::Exact(Revision(last.0 + 1))] {
        match store.append_to_stream(&s, expected, vec![event("Late", 0, 1)]).await {
            Err(StoreError::WrongExpectedRevision { actual, .. }) => {
                ensure!(actual == CurrentRevision::Current(last), "after reopen, {expected}: actual {actual:?}")
            }
            other => bail!("after reopen, {expected} on acct-1: expected WrongExpectedRevision, got {other:?}"),
        }
    }
    // A partial overlap is still a conflict.
    let overlap = vec![appended[3].events[0].clone(), event("Fresh", 0, 1)];
    match store.append_to_stream(&appended[3].stream, ExpectedRevision::Any, overlap).await {
        Err(StoreError::IdempotencyConflict { .. }) => {}
        other => bail!("after reopen, a partially stored batch: expected IdempotencyConflict, got {other:?}"),
    }

    // Appends continue at the next revision and position, with a recorded_at not before the last.
    let head = before.head.expect("not empty");
    let next = append(&store, &s, ExpectedRevision::Exact(last), &[event("Late", 1, 1)]).await?;
    ensure!(
        next.first_revision == last.next() && next.first_position == pos(idx(head) + 1),
        "after reopen the next append got {next:?}, expected revision {} and position {}",
        last.next(),
        pos(idx(head) + 1)
    );
    let fresh =
        append(&store, &stream("fresh-after-reopen"), ExpectedRevision::NoStream, &[event("New", 0, 1)]).await?;
    ensure!(fresh.first_revision == Revision(0) && fresh.first_position == pos(idx(head) + 2), "{fresh:?}");
    let log = whole_log(&store).await?;
    ensure!(log.windows(2).all(|w| w[0].recorded_at <= w[1].recorded_at), "recorded_at decreases across the reopen");

    // A subscription from the start replays the reopened log.
    let mut sub = within("subscribe", store.subscribe_to_all(SubscribeFrom::Start, EventFilter::all())).await??;
    let mut replayed = Vec::new();
    while let SubscriptionMessage::Event(e) = within("subscription message", sub.next()).await?? {
        replayed.push(e);
    }
    ensure!(replayed == log, "subscription after reopen differs from read_all");
    drop(sub);

    // And everything survives a second reopen.
    let before = snapshot(&store, &NAMES).await?;
    close(store).await?;
    let store = open(&dir).await?;
    ensure_same(&before, &snapshot(&store, &NAMES).await?, "after the second reopen")?;
    ensure_retries_return_original(&store, &appended, "after the second reopen").await?;
    close(store).await
}

/// With 64 KiB segments, appends roll over many segments; every kind of read crosses segment
/// boundaries correctly, before and after a reopen; a group larger than a segment still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn segments_roll_and_reads_cross_segments() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    let store = open(&dir).await?;
    // Sequential appends (one per group) of ~1.5 KiB: ~600 KiB, about ten segments.
    let appended = mixed_workload(&store, 200, 700).await?;
    let files = segment_files(&dir)?;
    ensure!(files.len() >= 5, "expected the log to roll over at least 5 segments, found {files:?}");
    for (i, (path, len)) in files.iter().enumerate() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        ensure!(name == format!("{i:020}.seg"), "segment {i} is named {name}");
        ensure!(*len <= SEGMENT_SIZE, "{name} is {len} bytes, more than the segment size {SEGMENT_SIZE}");
    }

    // One event larger than a segment goes in a segment of its own; small ones follow.
    let big = EventData::from_json_bytes("Opened", format!("\"{}\"", "b".repeat(200 * 1024)).into_bytes())?;
    append(&store, &stream("acct-big"), ExpectedRevision::NoStream, std::slice::from_ref(&big)).await?;
    let after_big = mixed_workload_tail(&store).await?;
    ensure!(segment_files(&dir)?.len() > files.len(), "the big event did not roll the segment");

    let log = whole_log(&store).await?;
    let total = log.len() as u64;
    ensure!(log.iter().map(|e| idx(e.position)).eq(0..total), "positions across segments are not contiguous");
    let big_read = log.iter().find(|e| e.id == big.id()).context("the big event is missing")?;
    ensure!(big_read.data == *big.data(), "the big event's data differs");
    ensure!(after_big.iter().all(|r| r.first_position > big_read.position), "events after the big one are misplaced");

    // read_all from positions all over the log, both ways, small pages.
    for p in (0..total).step_by(37) {
        let fwd = read_all(&store, ReadFrom::At(pos(p)), Direction::Forwards, 50, &EventFilter::all()).await?;
        let want: Vec<&RecordedEvent> = log.iter().skip(p as usize).take(50).collect();
        ensure!(fwd.iter().collect::<Vec<_>>() == want, "read_all forwards from {p} differs from the full read");
        let back = read_all(&store, ReadFrom::At(pos(p)), Direction::Backwards, 50, &EventFilter::all()).await?;
        let want: Vec<&RecordedEvent> = log[..=p as usize].iter().rev().take(50).collect();
        ensure!(back.iter().collect::<Vec<_>>() == want, "read_all backwards from {p} differs from the full read");
    }
    // Page through the whole log forwards and backwards.
    let mut paged = Vec::new();
    let mut from = ReadFrom::Start;
    loop {
        let page = read_all(&store, from, Direction::Forwards, 97, &EventFilter::all()).await?;
        let Some(last) = page.last() else { break };
        from = ReadFrom::After(last.position);
        paged.extend(page);
    }
    ensure!(paged == log, "paging forwards through the segments differs from one read");
    let mut paged = Vec::new();
    let mut from = ReadFrom::End;
    loop {
        let page = read_all(&store, from, Direction::Backwards, 89, &EventFilter::all()).await?;
        let Some(last) = page.last() else { break };
        paged.extend(page.iter().cloned());
        if idx(last.position) == 0 {
            break;
        }
        from = ReadFrom::At(pos(idx(last.position) - 1));
    }
    paged.reverse();
    ensure!(paged == log, "paging backwards through the segments differs from one read");

    // Streams spread over every segment.
    for name in ["acct-1", "acct-2", "user-1", "user-2", "acct-10", "acct-big"] {
        let s = stream(name);
        let want: Vec<RecordedEvent> = log.iter().filter(|e| e.stream == s).cloned().collect();
        let got = read_stream(&store, &s, ReadFrom::Start, Direction::Forwards, 1_000_000).await?.into_events();
        ensure!(got == want, "read_stream({name}) across segments differs from read_all");
        let n = want.len() as u64;
        for r in (0..n).step_by(11) {
            let fwd = read_stream(&store, &s, ReadFrom::At(Revision(r)), Direction::Forwards, 7).await?.into_events();
            ensure!(fwd[..] == want[r as usize..(r as usize + 7).min(n as usize)], "read_stream({name}) from {r}");
            let back = read_stream(&store, &s, ReadFrom::At(Revision(r)), Direction::Backwards, 7).await?.into_events();
            let want_back: Vec<RecordedEvent> = want[..=r as usize].iter().rev().take(7).cloned().collect();
            ensure!(back == want_back, "read_stream({name}) backwards from {r}");
        }
    }
    let filter = EventFilter::all().stream_prefix("user-").event_type_prefix("Closed");
    let filtered = read_all(&store, ReadFrom::Start, Direction::Forwards, 1_000_000, &filter).await?;
    let want: Vec<RecordedEvent> =
        log.iter().filter(|e| e.stream.as_str().starts_with("user-") && e.event_type == "Closed").cloned().collect();
    ensure!(filtered == want, "filtered read_all across segments");

    // A subscription from the start reads across every segment.
    let mut sub = within("subscribe", store.subscribe_to_all(SubscribeFrom::Start, EventFilter::all())).await??;
    let mut replayed = Vec::new();
    while let SubscriptionMessage::Event(e) = within("subscription message", sub.next()).await?? {
        replayed.push(e);
    }
    ensure!(replayed == log, "subscription across segments differs from read_all");
    drop(sub);

    let before = snapshot(&store, &NAMES).await?;
    close(store).await?;
    let store = open(&dir).await?;
    ensure!(store.recovery_report().truncated.is_none(), "{:?}", store.recovery_report());
    ensure_same(&before, &snapshot(&store, &NAMES).await?, "after reopening a multi-segment log")?;
    ensure_retries_return_original(&store, &appended, "after reopening a multi-segment log").await?;
    let r = append(&store, &stream("acct-1"), ExpectedRevision::Any, &[event("Opened", 0, 10)]).await?;
    ensure!(r.first_position == pos(total), "after reopen the next position is {:?}, not {total}", r.first_position);
    close(store).await
}

/// A few small appends after the big event, returning their results.
async fn mixed_workload_tail(store: &EmbeddedStore) -> Result<Vec<AppendResult>> {
    let mut results = Vec::new();
    for i in 0..5 {
        results.push(append(store, &stream("acct-big"), ExpectedRevision::Any, &[event("Deposited", i, 10)]).await?);
    }
    Ok(results)
}

/// Deleting `index/` loses nothing: the reopen rebuilds every index from the log, and reads,
/// revisions, idempotency and new streams behave exactly as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reopen_without_index_dir_rebuilds_indexes_from_the_log() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    let store = open(&dir).await?;
    let appended = mixed_workload(&store, 120, 700).await?;
    ensure!(segment_files(&dir)?.len() >= 3, "the workload should span several segments");
    let before = snapshot(&store, &NAMES).await?;
    let total = before.log.len() as u64;
    close(store).await?;

    let index_dir = dir.join("index");
    ensure!(index_dir.is_dir(), "expected the index in {}", index_dir.display());
    std::fs::remove_dir_all(&index_dir)?;

    let store = open(&dir).await?;
    let report = store.recovery_report().clone();
    ensure!(report.truncated.is_none(), "deleting the index must not truncate the log: {report:?}");
    ensure!(
        report.reindexed_events == total,
        "with no index, every one of the {total} events must be indexed from the log: {report:?}"
    );
    ensure_same(&before, &snapshot(&store, &NAMES).await?, "after rebuilding the index")?;

    // The id index is back: retries answer with the original results.
    ensure_retries_return_original(&store, &appended, "after rebuilding the index").await?;
    // The stream index is back: revisions continue, wrong expectations report the right actual.
    for name in ["acct-1", "user-2"] {
        let s = stream(name);
        let last = before.streams[name].clone().into_events().last().context("stream has events")?.revision;
        match store.append_to_stream(&s, ExpectedRevision::NoStream, vec![event("X", 0, 1)]).await {
            Err(StoreError::WrongExpectedRevision { actual, .. }) => {
                ensure!(actual == CurrentRevision::Current(last), "{name}: actual {actual:?}, expected {last}")
            }
            other => bail!("{name} with NoStream after rebuild: expected WrongExpectedRevision, got {other:?}"),
        }
        let r = append(&store, &s, ExpectedRevision::Exact(last), &[event("Deposited", 0, 1)]).await?;
        ensure!(r.first_revision == last.next(), "{name}: next revision {r:?}");
    }
    // New streams do not collide with rebuilt ones.
    let fresh = stream("acct-fresh");
    let r = append(&store, &fresh, ExpectedRevision::NoStream, &[event("Opened", 0, 1), event("Opened", 1, 1)]).await?;
    ensure!(r.first_revision == Revision(0) && r.first_position == pos(total + 2), "{r:?}");
    for name in ["acct-2", "user-1", "acct-10"] {
        ensure!(
            read_stream(&store, &stream(name), ReadFrom::Start, Direction::Forwards, 1_000_000).await?
                == before.streams[name],
            "{name} changed after creating a new stream on a rebuilt index"
        );
    }
    let fresh_events = read_stream(&store, &fresh, ReadFrom::Start, Direction::Forwards, 100).await?.into_events();
    ensure!(
        fresh_events.iter().map(|e| e.revision.0).eq(0..2) && fresh_events.iter().all(|e| e.stream == fresh),
        "the new stream reads back wrong: {fresh_events:?}"
    );

    // A normal reopen after the rebuild has nothing left to do.
    let before = snapshot(&store, &NAMES).await?;
    close(store).await?;
    let store = open(&dir).await?;
    let report = store.recovery_report().clone();
    ensure!(report.reindexed_events == 0 && !report.index_rebuilt, "second reopen: {report:?}");
    ensure_same(&before, &snapshot(&store, &NAMES).await?, "after reopening the rebuilt store")?;
    close(store).await
}

/// One open store per directory: a second open fails with `Locked` until the first is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn second_open_of_an_open_directory_is_locked() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    let store = open(&dir).await?;
    append(&store, &stream("lock-1"), ExpectedRevision::Any, &[event("E", 0, 1)]).await?;
    match within("second open", EmbeddedStore::open(config(&dir))).await? {
        Err(StoreError::Locked { .. }) => {}
        Err(other) => bail!("a second open of an open directory: expected Locked, got {other:?}"),
        Ok(_) => bail!("a second open of an open directory succeeded"),
    }
    // The refused open changed nothing.
    ensure!(whole_log(&store).await?.len() == 1);
    append(&store, &stream("lock-1"), ExpectedRevision::Exact(Revision(0)), &[event("E", 1, 1)]).await?;
    close(store).await?;
    let store = open(&dir).await?;
    ensure!(whole_log(&store).await?.len() == 2, "events lost across the lock test");
    close(store).await
}

/// Closing the store makes other clones fail with `Closed`; once the last handle is gone its
/// subscriptions end with `Closed` (they do not hang), and the directory can be opened again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn close_ends_clones_and_subscriptions() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    let store = open(&dir).await?;
    let s = stream("closing-1");
    append(&store, &s, ExpectedRevision::Any, &[event("E", 0, 1), event("E", 1, 1)]).await?;
    let mut sub = within("subscribe", store.subscribe_to_all(SubscribeFrom::Start, EventFilter::all())).await??;
    let mut seen = 0;
    while let SubscriptionMessage::Event(_) = within("subscription message", sub.next()).await?? {
        seen += 1;
    }
    ensure!(seen == 2);
    let mut stream_sub = within("subscribe", store.subscribe_to_stream(&s, SubscribeFrom::End)).await??;
    ensure!(within("subscription message", stream_sub.next()).await?? == SubscriptionMessage::CaughtUp);

    let clone = store.clone();
    close(store).await?;
    let late = clone.append_to_stream(&s, ExpectedRevision::Any, vec![event("E", 2, 1)]);
    match within("append on a clone after close", late).await? {
        Err(StoreError::Closed) => {}
        other => bail!("append on a clone after close: expected Closed, got {other:?}"),
    }
    drop(clone);

    for (sub, what) in [(&mut sub, "subscribe_to_all"), (&mut stream_sub, "subscribe_to_stream")] {
        match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
            Ok(Err(StoreError::Closed)) => {}
            Ok(other) => bail!("{what} after close: expected Err(Closed), got {other:?}"),
            Err(_) => bail!("{what} after close: still waiting after 10 s instead of ending with Closed"),
        }
    }

    let store = open(&dir).await?;
    ensure!(whole_log(&store).await?.len() == 2, "the append after close must not have been written");
    close(store).await
}

/// Once `close` returns the directory is free: reopening right away works, even when
/// subscriptions were busy reading history at the moment they were dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reopen_right_after_close_while_subscriptions_were_reading() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    let store = open(&dir).await?;
    // A backlog long enough that subscribers are in the middle of a read when dropped.
    for i in 0..50 {
        let batch: Vec<EventData> = (0..200).map(|k| event("Busy", i * 1000 + k, 20)).collect();
        append(&store, &stream("busy"), ExpectedRevision::Any, &batch).await?;
    }
    close(store).await?;
    for round in 0..20 {
        let store = open(&dir).await.with_context(|| format!("round {round}: open right after close"))?;
        let mut consumers = Vec::new();
        for _ in 0..4 {
            let mut sub =
                within("subscribe", store.subscribe_to_all(SubscribeFrom::Start, EventFilter::all())).await??;
            consumers.push(tokio::spawn(async move { while sub.next().await.is_ok() {} }));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        for consumer in &consumers {
            consumer.abort();
        }
        for consumer in consumers {
            let _ = consumer.await; // the subscriptions are dropped now
        }
        close(store).await.with_context(|| format!("round {round}"))?;
    }
    let store = open(&dir).await?;
    ensure!(whole_log(&store).await?.len() == 10_000);
    close(store).await
}

/// The stream index stores chunks of up to 64 KiB of records: large appends span several, small
/// appends to one stream in one group share one. Every read position and direction across their
/// boundaries must give exactly the model's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stream_reads_across_chunk_boundaries() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Large segments here: the point is chunk boundaries, not segment boundaries.
    let store = within("open", EmbeddedStore::open(EngineConfig::new(dir.path().join("data")))).await??;
    let big = stream("chunky");
    let other = stream("other");
    let mut expected_data = Vec::new();
    for round in 0..3u64 {
        // ~600-byte events: 400 of them are ~240 KiB, four or more chunks.
        let events: Vec<EventData> = (0..400).map(|i| event("big", round * 1000 + i, 550)).collect();
        expected_data.extend(events.iter().map(|e| e.data().clone()));
        append(&store, &big, ExpectedRevision::Any, &events).await?;
        append(&store, &other, ExpectedRevision::Any, &[event("other", round, 10)]).await?;
        // Small appends, concurrently, so some share a group and extend the same chunk.
        let small: Vec<_> = (0..20u64)
            .map(|i| {
                let store = store.clone();
                let e = event("small", round * 1000 + 500 + i, 20);
                let s = big.clone();
                tokio::spawn(async move { store.append_to_stream(&s, ExpectedRevision::Any, vec![e]).await })
            })
            .collect();
        for task in small {
            let result = task.await??;
            ensure!(result.first_revision == result.last_revision, "single-event append spans revisions");
        }
    }
    let all = read_stream(&store, &big, ReadFrom::Start, Direction::Forwards, usize::MAX).await?.into_events();
    ensure!(all.len() == 1260, "expected 1260 events, read {}", all.len());
    for (i, e) in all.iter().enumerate() {
        ensure!(e.revision == Revision(i as u64), "revision {} at index {i}", e.revision);
    }
    // Big appends keep their order within the stream; compare their data where we know it.
    let big_data: Vec<_> = all.iter().filter(|e| e.event_type == "big").map(|e| e.data.clone()).collect();
    ensure!(big_data == expected_data, "data of the large appends differs");
    for from in [0u64, 1, 99, 100, 101, 399, 400, 401, 419, 420, 421, 700, 839, 840, 1100, 1259, 1260, 5000] {
        for max in [1usize, 2, 7, 64, 150, 2000] {
            for direction in [Direction::Forwards, Direction::Backwards] {
                let got = read_stream(&store, &big, ReadFrom::At(Revision(from)), direction, max).await?.into_events();
                let want: Vec<u64> = match direction {
                    Direction::Forwards => (from..1260).take(max).collect(),
                    Direction::Backwards => (0..=from.min(1259)).rev().take(max).collect(),
                };
                let got_revs: Vec<u64> = got.iter().map(|e| e.revision.0).collect();
                ensure!(got_revs == want, "from {from} {direction:?} max {max}: got {got_revs:?}");
                for e in &got {
                    ensure!(*e == all[e.revision.0 as usize], "event {} differs from the full read", e.revision);
                }
            }
        }
    }
    close(store).await
}
