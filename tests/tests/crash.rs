//! Crash safety of the embedded engine against real process deaths: the `EventStore` contract
//! promises that an acknowledged append survives a crash and that appends are atomic, and
//! `store/src/engine/mod.rs` promises that recovery turns any crashed data directory back into a
//! valid log. This test checks both the only honest way, by killing a writer with SIGKILL.
//!
//! For each of K iterations (default 20, so CI stays fast; `ANNALS_CRASH_KILLS=1000` for the soak)
//! it spawns `crash_writer` (see `tests/src/bin/crash_writer.rs`) on one data directory that
//! accumulates across iterations, lets it append for a random 20–300 ms (counted from when it
//! reports its store open, so a slow recovery cannot starve the appends), kills it with SIGKILL,
//! reads its ack log, opens the store in this process and checks what follows. One kill in five
//! lands at a random moment of the child's start and recovery instead: recovery must survive a
//! crash too.
//!
//!
//! - every acknowledged append is there and intact: same ids, stream, revisions, positions, data;
//! - no partial batch is visible: every batch found in the store is complete and contiguous;
//! - every event's content is intact (its payload matches its checksum);
//! - positions are contiguous from 0 to the head, revisions of each stream contiguous from 0,
//!   `recorded_at` never decreases, every position reads on its own, and the stream index agrees
//!   with `$all`;
//! - nothing verified at an earlier iteration changed (a running hash of the verified prefix).
//!
//! Then it closes the store and goes on. Each iteration checks the events appended since the last
//! one; every iteration is a full re-scan of the log (plus `verify`) when K ≤ 50, and every 50th
//! iteration and the last one are in soak mode, so the soak stays linear in the log size.
//!
//! The last line printed is the summary to record for a soak (kills, acked events verified, tail
//! truncations, index rebuilds, longest opens):
//! `cargo test -p annals-tests --release --test crash -- --nocapture` with `ANNALS_CRASH_KILLS=1000`.
//! `ANNALS_CRASH_KEEP=1` keeps the data directory and ack logs (the path is printed).

use annals_tests::{fnv1a, FNV_OFFSET};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{
    Direction, EventFilter, EventStore, Position, ReadFrom, ReadStreamOutcome, RecordedEvent, Revision, StreamId,
};
use anyhow::{anyhow, bail, ensure, Context};
use rand::Rng;
use uuid::Uuid;

/// Same as the child's: segments roll every few hundred events, so kills land during rolls too.
const SEGMENT_SIZE: u64 = 64 * 1024;
/// How long opening (recovery) may take before the test calls it hung.
const OPEN_TIMEOUT: Duration = Duration::from_secs(120);
/// Events per `read_all` page.
const PAGE: usize = 512;

#[path = "crash/log_check.rs"]
mod log_check;

use annals_store::engine::DENSE;
use log_check::*;

/// The child process, killed (SIGKILL) and reaped when dropped, so that no error path of the test
/// leaves a writer running.
struct Writer(Child);

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the child reports the store open; returns how long that took from `spawned`.
async fn wait_ready(child: &mut Child, ack_path: &Path, err_path: &Path, spawned: Instant) -> anyhow::Result<Duration> {
    loop {
        let text = std::fs::read_to_string(ack_path).unwrap_or_default();
        if text.lines().next().is_some_and(|line| line.contains("\"ready\"")) && text.contains('\n') {
            return Ok(spawned.elapsed());
        }
        if let Some(status) = child.try_wait()? {
            let stderr = std::fs::read_to_string(err_path).unwrap_or_default();
            bail!("crash_writer exited ({status}) before the store was open; stderr:\n{stderr}");
        }
        ensure!(spawned.elapsed() < OPEN_TIMEOUT, "crash_writer did not open the store within {OPEN_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Reads `$all` forwards over positions `from..end`, in pages, handing each event to `visit`.
async fn scan_all(
    store: &EmbeddedStore,
    from: u64,
    end: u64,
    mut visit: impl FnMut(&RecordedEvent) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut next = from;
    while next < end {
        let want = PAGE.min((end - next) as usize);
        let page = store
            .read_all(ReadFrom::At(DENSE.position(next)), Direction::Forwards, want, &EventFilter::all())
            .await
            .with_context(|| format!("read_all from position {next}"))?;
        ensure!(!page.is_empty(), "read_all from position {next} returned nothing, but the head is {}", end - 1);
        ensure!(page.len() <= want, "read_all of at most {want} events returned {}", page.len());
        for event in &page {
            visit(event)?;
        }
        next = page.last().map_or(next, |e| DENSE.index(e.position) + 1);
    }
    Ok(())
}

#[derive(Debug, Default)]
struct IterationStats {
    acked_batches: u64,
    acked_events: u64,
}

/// Checks the store after a kill against what was verified before it and the child's acks.
async fn check_store(
    store: &EmbeddedStore,
    verified: &Verified,
    acks: &[Ack],
    full: bool,
) -> anyhow::Result<(Verified, IterationStats)> {
    let head = store.head().await.context("head")?;
    let len = head.map_or(0, |p| DENSE.index(p) + 1);
    ensure!(
        len >= verified.len,
        "the log shrank: {} events were verified in a cleanly closed store before this kill, the head is now {:?}",
        verified.len,
        head
    );

    // Old events: unchanged since they were verified.
    let mut scanner;
    if full {
        scanner = Scanner { state: Verified::empty(), open_batch: None };
        scan_all(store, 0, verified.len, |e| scanner.push(e)).await?;
        scanner.finish().context("at the end of the previously verified prefix")?;
        ensure!(
            scanner.state.prefix_hash == verified.prefix_hash,
            "the {} events verified before this kill changed (hash of the prefix differs)",
            verified.len
        );
    } else {
        if let Some(last_id) = verified.last_id {
            let events = store
                .read_all(ReadFrom::At(DENSE.position(verified.len - 1)), Direction::Forwards, 1, &EventFilter::all())
                .await
                .context("reading the last verified event")?;
            ensure!(
                events.first().map(|e| (DENSE.index(e.position), e.id)) == Some((verified.len - 1, last_id)),
                "the last verified event (position {}, id {last_id}) changed: now {:?}",
                verified.len - 1,
                events.first().map(|e| (e.position, e.id))
            );
        }
        scanner = Scanner { state: verified.clone(), open_batch: None };
    }

    // New events: every invariant, and kept for the ack check.
    let mut new_events: Vec<RecordedEvent> = Vec::new();
    scan_all(store, verified.len, len, |e| {
        scanner.push(e)?;
        new_events.push(e.clone());
        Ok(())
    })
    .await?;
    scanner.finish()?;
    ensure!(scanner.state.len == len, "read {} events but the head says {len}", scanner.state.len);

    // Acks: each acknowledged append is there, exactly as acknowledged.
    let by_id: HashMap<Uuid, &RecordedEvent> = new_events.iter().map(|e| (e.id, e)).collect();
    ensure!(by_id.len() == new_events.len(), "an event id appears twice among the new events");
    let mut stats = IterationStats::default();
    for ack in acks {
        let what =
            || format!("ack line {} (batch {}, {} events on {})", ack.line, ack.batch, ack.ids.len(), ack.stream);
        let n = ack.ids.len() as u64;
        ensure!(
            n > 0
                && ack.last_position.checked_sub(ack.first_position) == Some(n - 1)
                && ack.last_revision.checked_sub(ack.first_revision) == Some(n - 1),
            "{}: the AppendResult's ranges do not match the batch size: {ack:?}",
            what()
        );
        let mut hash = FNV_OFFSET;
        for (i, id) in ack.ids.iter().enumerate() {
            let i = i as u64;
            let Some(event) = by_id.get(id) else {
                bail!(
                    "{}: acknowledged event {id} (position {}, revision {}) is missing after the crash; the log has \
                     {len} events",
                    what(),
                    ack.first_position + i,
                    ack.first_revision + i
                );
            };
            ensure!(
                event.stream.as_str() == ack.stream
                    && event.revision.0 == ack.first_revision + i
                    && DENSE.index(event.position) == ack.first_position + i,
                "{}: acknowledged event {id} was acked at position {}, revision {} of {} but is stored at position \
                 {}, revision {} of {}",
                what(),
                ack.first_position + i,
                ack.first_revision + i,
                ack.stream,
                event.position,
                event.revision,
                event.stream
            );
            hash = fnv1a(hash, &(event.data.len() as u64).to_le_bytes());
            hash = fnv1a(hash, &event.data);
        }
        ensure!(hash == ack.data_hash, "{}: the stored data differs from the acknowledged data", what());
        stats.acked_batches += 1;
        stats.acked_events += n;
    }

    // Every new position reads on its own (each such read seeks through the index).
    for event in &new_events {
        let got = store
            .read_all(ReadFrom::At(event.position), Direction::Forwards, 1, &EventFilter::all())
            .await
            .with_context(|| format!("read_all from position {}", event.position))?;
        ensure!(
            got.len() == 1 && got[0] == *event,
            "read_all from position {} alone gives {:?}, reading through gives {:?}",
            event.position,
            got.first().map(|e| (e.position, e.id)),
            (event.position, event.id)
        );
    }

    // The stream index agrees with `$all` for every stream that got new events.
    let mut per_stream: HashMap<&str, Vec<&RecordedEvent>> = HashMap::new();
    for event in &new_events {
        per_stream.entry(event.stream.as_str()).or_default().push(event);
    }
    for (name, events) in per_stream {
        let stream = StreamId::new(name)?;
        let first = events[0].revision;
        let outcome = store
            .read_stream(&stream, ReadFrom::At(first), Direction::Forwards, events.len() + 1)
            .await
            .with_context(|| format!("read_stream {name} from {first}"))?;
        let got: Vec<(Uuid, Revision, Position)> = match outcome {
            ReadStreamOutcome::StreamNotFound => bail!("stream {name} has events in $all but is not found"),
            ReadStreamOutcome::Events(events) => events.iter().map(|e| (e.id, e.revision, e.position)).collect(),
        };
        let want: Vec<(Uuid, Revision, Position)> = events.iter().map(|e| (e.id, e.revision, e.position)).collect();
        ensure!(got == want, "stream {name} from revision {first}: read_stream gives {got:?}, $all gives {want:?}");
    }

    if full {
        store.verify().await.map_err(|e| anyhow!("verify failed on a recovered store: {e}"))?;
    }
    Ok((scanner.state, stats))
}

#[derive(Debug, Default)]
struct Summary {
    kills: u64,
    /// Kills aimed at the child's start and recovery rather than at its appends.
    early_kills: u64,
    acked_batches: u64,
    acked_events: u64,
    truncations: u64,
    index_rebuilds: u64,
    reindexed_events: u64,
    log_len: u64,
    /// Longest open (recovery included) seen by a child, and by this process after a kill.
    max_child_open: Duration,
    max_recovery_open: Duration,
}

impl Summary {
    fn line(&self) -> String {
        format!(
            "kills={} early_kills={} acked_batches={} acked_events_verified={} tail_truncations={} index_rebuilds={} \
             reindexed_events={} log_events={} max_child_open_ms={} max_recovery_open_ms={}",
            self.kills,
            self.early_kills,
            self.acked_batches,
            self.acked_events,
            self.truncations,
            self.index_rebuilds,
            self.reindexed_events,
            self.log_len,
            self.max_child_open.as_millis(),
            self.max_recovery_open.as_millis()
        )
    }
}

async fn run(work: &Path, kills: u64) -> anyhow::Result<Summary> {
    let data_dir = work.join("data");
    let config = EngineConfig::new(&data_dir).segment_size(SEGMENT_SIZE);
    let mut rng = rand::thread_rng();
    let mut verified = Verified::empty();
    let mut summary = Summary::default();
    // How long the last child took from spawn to an open store: the window early kills aim at.
    let mut last_ready = Duration::from_millis(50);

    for kill in 0..kills {
        let ack_path = work.join(format!("acks-{kill:05}.jsonl"));
        let err_path = work.join(format!("stderr-{kill:05}.txt"));
        let spawned = Instant::now();
        let mut child = Writer(
            Command::new(env!("CARGO_BIN_EXE_crash_writer"))
                .arg(&data_dir)
                .stdin(Stdio::null())
                .stdout(File::create(&ack_path)?)
                .stderr(File::create(&err_path)?)
                .spawn()
                .context("spawning crash_writer")?,
        );
        // Most kills land while the child appends: 20–300 ms after its store is open. One in five
        // lands anywhere in its start and recovery instead, which must survive a crash as well.
        let early = rng.gen_ratio(1, 5);
        let when = if early {
            summary.early_kills += 1;
            let at = Duration::from_micros(rng.gen_range(0..=last_ready.as_micros() as u64));
            tokio::time::sleep(at).await;
            format!("{at:?} after spawning it, during its start")
        } else {
            last_ready = wait_ready(&mut child.0, &ack_path, &err_path, spawned)
                .await
                .with_context(|| format!("kill {kill}"))?;
            let appending = Duration::from_millis(rng.gen_range(20..=300));
            tokio::time::sleep(appending).await;
            format!("after {appending:?} of appends")
        };
        if let Some(status) = child.0.try_wait()? {
            let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
            bail!("kill {kill}: crash_writer exited on its own ({status}) before the kill {when}; stderr:\n{stderr}");
        }
        child.0.kill().context("killing crash_writer")?; // SIGKILL on Unix
        child.0.wait().context("reaping crash_writer")?;
        summary.kills += 1;

        let log = parse_acks(&ack_path)?;
        if let Some(ms) = log.open_ms {
            summary.max_child_open = summary.max_child_open.max(Duration::from_millis(ms));
        }
        let opening = Instant::now();
        let store = tokio::time::timeout(OPEN_TIMEOUT, EmbeddedStore::open(config.clone()))
            .await
            .map_err(|_| anyhow!("kill {kill}: opening the store after the kill took more than {OPEN_TIMEOUT:?}"))?
            .with_context(|| format!("kill {kill}: opening the store after the kill {when}"))?;
        summary.max_recovery_open = summary.max_recovery_open.max(opening.elapsed());
        let report = store.recovery_report();
        if let Some(t) = &report.truncated {
            summary.truncations += 1;
            println!(
                "kill {kill}: recovery truncated {} at offset {} (position {}, {} bytes dropped): {}",
                t.segment.display(),
                t.offset,
                t.position,
                t.bytes_dropped,
                t.reason
            );
        }
        summary.index_rebuilds += u64::from(report.index_rebuilt);
        summary.reindexed_events += report.reindexed_events;

        let full = kills <= 50 || kill % 50 == 49 || kill + 1 == kills;
        let (next, stats) = check_store(&store, &verified, &log.acks, full)
            .await
            .with_context(|| format!("kill {kill} ({when}; ack log {})", ack_path.display()))?;
        summary.acked_batches += stats.acked_batches;
        summary.acked_events += stats.acked_events;
        verified = next;
        summary.log_len = verified.len;
        if kills > 50 && kill % 50 == 49 {
            println!("progress: {}", summary.line());
        }
        store.close().await.with_context(|| format!("kill {kill}: closing the store"))?;
        // The ack log has been checked; keep the directory small unless asked to keep everything.
        if std::env::var_os("ANNALS_CRASH_KEEP").is_none() {
            std::fs::remove_file(&ack_path).ok();
            std::fs::remove_file(&err_path).ok();
        }
    }
    Ok(summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_sigkill_and_no_partial_batch_is_visible() {
    let kills: u64 = match std::env::var("ANNALS_CRASH_KILLS") {
        Ok(v) => v.parse().expect("ANNALS_CRASH_KILLS must be a number"),
        Err(_) => 20,
    };
    let mut work = tempfile::Builder::new().prefix("annals-crash-").tempdir().expect("temp dir");
    let keep = std::env::var_os("ANNALS_CRASH_KEEP").is_some();
    if keep {
        work.disable_cleanup(true);
        println!("keeping the data directory and ack logs in {}", work.path().display());
    }
    let started = Instant::now();
    match run(work.path(), kills).await {
        Ok(s) => {
            println!("crash summary: {} elapsed={:.1}s", s.line(), started.elapsed().as_secs_f64());
            assert!(s.acked_events > 0, "no append was acknowledged in {} runs of crash_writer", s.kills);
        }
        Err(e) => {
            // Keep the evidence: the data directory as recovery left it, and the ack logs.
            work.disable_cleanup(true);
            let path: PathBuf = work.path().to_owned();
            panic!("{e:#}\n(data directory and ack logs kept in {})", path.display());
        }
    }
}
