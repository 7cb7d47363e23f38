//! Index-backend choice: fjall (LSM tree) vs redb (copy-on-write B-tree).
//!
//! The event log lives in our own fsynced segment files; the *derived* indexes
//! (event id -> position, stream/revision -> location, "applied" watermark)
//! live in an embedded key-value library and are rebuilt from the log past
//! their last applied position on open. This bench exists to choose that
//! library by measuring the event store's exact index workload instead of
//! relying on generic benchmarks:
//!
//! 1. Append: group commits of `B` events (B = 1000 and B = 64). Per event an
//!    idempotency point lookup of its uuid v7 in the id index (always a miss),
//!    then one atomic batch per group inserting the id index entry
//!    (16-byte uuid -> u64 BE position), the stream index entry
//!    (stream u64 BE ++ revision u64 BE -> position u64, segment u32,
//!    offset u32) and the meta key `applied`.
//! 2. Read: random `read_stream` prefix scans (lookups/s, p99) and random
//!    point gets of existing event ids.
//! 3. Reopen: close, reopen, read `applied`; on-disk bytes per event. No
//!    flush is forced before the close, so fjall's reopen includes replaying
//!    its not-yet-flushed journal into memtables (as after a crash).
//!
//! Durability: index writes need no fsync because the log is the source of
//! truth. fjall commits its write batches with no journal persist at all
//! (`durability(None)`). redb commits with `Durability::None`, but a
//! non-durable redb commit only reaches disk when a later commit is
//! `Durability::Immediate`, so every 64th group commit is `Immediate` (plus a
//! final `Immediate` commit); fjall gets one final `persist(SyncAll)`. Both
//! final syncs are inside the timed append phase.
//!
//! Run: `cargo bench -p annals-store --bench index_choice`
//! (event count via `INDEX_BENCH_EVENTS`, default 2,000,000; about 2.5 minutes
//! on a 2-core machine). Besides the table it prints the bytes each backend
//! handed to `write(2)` during the append phase (from `/proc/self/io`), a
//! rough write-amplification figure (fjall flushes/compactions still running
//! in the background after the phase ends are not counted).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const DEFAULT_EVENTS: usize = 2_000_000;
const STREAMS: u64 = 200_000;
const READ_OPS: usize = 100_000;
const BATCH_SIZES: [usize; 2] = [1000, 64];
/// redb: every N-th group commit is `Durability::Immediate`.
const REDB_DURABLE_EVERY: u64 = 64;
/// Same block/page cache budget for both backends.
const CACHE_BYTES: usize = 256 * 1024 * 1024;
const APPLIED_KEY: &str = "applied";
/// Fake segment geometry for the stream index value.
const EVENTS_PER_SEGMENT: u64 = 1_000_000;
const FAKE_EVENT_BYTES: u64 = 256;

const REDB_IDS: TableDefinition<'_, &[u8; 16], &[u8; 8]> = TableDefinition::new("ids");
const REDB_STREAMS: TableDefinition<'_, &[u8; 16], &[u8; 16]> = TableDefinition::new("streams");
const REDB_META: TableDefinition<'_, &str, &[u8; 8]> = TableDefinition::new("meta");

/// One event as the index sees it.
#[derive(Clone, Copy, Debug)]
struct Event {
    id: [u8; 16],
    stream: u64,
    revision: u64,
}

fn stream_key(stream: u64, revision: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&stream.to_be_bytes());
    key[8..].copy_from_slice(&revision.to_be_bytes());
    key
}

fn stream_value(position: u64) -> [u8; 16] {
    let segment = (position / EVENTS_PER_SEGMENT) as u32;
    let offset = ((position % EVENTS_PER_SEGMENT) * FAKE_EVENT_BYTES) as u32;
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&position.to_be_bytes());
    value[8..12].copy_from_slice(&segment.to_be_bytes());
    value[12..].copy_from_slice(&offset.to_be_bytes());
    value
}

fn decode_u64(bytes: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = bytes.try_into().context("value is not 8 bytes")?;
    Ok(u64::from_be_bytes(arr))
}

/// The operations the event store performs against its index.
trait IndexBackend: Sized {
    const NAME: &'static str;
    fn open(dir: &Path) -> Result<Self>;
    /// Idempotency lookups plus one atomic insert batch for a group commit.
    fn append_group(&mut self, events: &[Event], first_position: u64) -> Result<()>;
    /// Make everything written so far durable (end of the append phase).
    fn finish(&mut self) -> Result<()>;
    fn read_stream(&self, stream: u64) -> Result<Vec<[u8; 16]>>;
    fn get_id(&self, id: &[u8; 16]) -> Result<Option<u64>>;
    fn read_applied(&self) -> Result<Option<u64>>;
}

struct FjallIndex {
    db: fjall::Database,
    ids: fjall::Keyspace,
    streams: fjall::Keyspace,
    meta: fjall::Keyspace,
}

impl IndexBackend for FjallIndex {
    const NAME: &'static str = "fjall 3.1";

    fn open(dir: &Path) -> Result<Self> {
        let db = fjall::Database::builder(dir).cache_size(CACHE_BYTES as u64).open()?;
        let ids = db.keyspace("ids", fjall::KeyspaceCreateOptions::default)?;
        let streams = db.keyspace("streams", fjall::KeyspaceCreateOptions::default)?;
        let meta = db.keyspace("meta", fjall::KeyspaceCreateOptions::default)?;
        Ok(Self { db, ids, streams, meta })
    }

    fn append_group(&mut self, events: &[Event], first_position: u64) -> Result<()> {
        // No journal persist: the event log is the source of truth.
        let mut batch = self.db.batch().durability(None);
        let mut position = first_position;
        for event in events {
            if self.ids.get(event.id)?.is_some() {
                bail!("duplicate event id at position {position}");
            }
            batch.insert(&self.ids, event.id, position.to_be_bytes());
            batch.insert(&self.streams, stream_key(event.stream, event.revision), stream_value(position));
            position += 1;
        }
        batch.insert(&self.meta, APPLIED_KEY, (position - 1).to_be_bytes());
        batch.commit()?;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    fn read_stream(&self, stream: u64) -> Result<Vec<[u8; 16]>> {
        let mut out = Vec::new();
        for guard in self.streams.prefix(stream.to_be_bytes()) {
            let value = guard.value()?;
            out.push(value[..].try_into().context("stream value is not 16 bytes")?);
        }
        Ok(out)
    }

    fn get_id(&self, id: &[u8; 16]) -> Result<Option<u64>> {
        self.ids.get(id)?.map(|v| decode_u64(&v)).transpose()
    }

    fn read_applied(&self) -> Result<Option<u64>> {
        self.meta.get(APPLIED_KEY)?.map(|v| decode_u64(&v)).transpose()
    }
}

struct RedbIndex {
    db: redb::Database,
    groups: u64,
}

impl IndexBackend for RedbIndex {
    const NAME: &'static str = "redb 4.6";

    fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("index.redb");
        let db = redb::Database::builder().set_cache_size(CACHE_BYTES).create(path)?;
        // Create the tables up front so readers never see them missing.
        let txn = db.begin_write()?;
        txn.open_table(REDB_IDS)?;
        txn.open_table(REDB_STREAMS)?;
        txn.open_table(REDB_META)?;
        txn.commit()?;
        Ok(Self { db, groups: 0 })
    }

    fn append_group(&mut self, events: &[Event], first_position: u64) -> Result<()> {
        self.groups += 1;
        let mut txn = self.db.begin_write()?;
        let durability = if self.groups.is_multiple_of(REDB_DURABLE_EVERY) {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        };
        txn.set_durability(durability)?;
        {
            let mut ids = txn.open_table(REDB_IDS)?;
            let mut streams = txn.open_table(REDB_STREAMS)?;
            let mut meta = txn.open_table(REDB_META)?;
            let mut position = first_position;
            for event in events {
                if ids.get(&event.id)?.is_some() {
                    bail!("duplicate event id at position {position}");
                }
                ids.insert(&event.id, &position.to_be_bytes())?;
                streams.insert(&stream_key(event.stream, event.revision), &stream_value(position))?;
                position += 1;
            }
            meta.insert(APPLIED_KEY, &(position - 1).to_be_bytes())?;
        }
        txn.commit()?;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        // An empty Immediate commit makes all earlier Durability::None commits durable.
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        txn.commit()?;
        Ok(())
    }

    fn read_stream(&self, stream: u64) -> Result<Vec<[u8; 16]>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REDB_STREAMS)?;
        let lo = stream_key(stream, 0);
        let hi = stream_key(stream, u64::MAX);
        let mut out = Vec::new();
        for entry in table.range::<&[u8; 16]>(&lo..=&hi)? {
            let (_key, value) = entry?;
            out.push(*value.value());
        }
        Ok(out)
    }

    fn get_id(&self, id: &[u8; 16]) -> Result<Option<u64>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REDB_IDS)?;
        let value = table.get(id)?;
        Ok(value.map(|v| u64::from_be_bytes(*v.value())))
    }

    fn read_applied(&self) -> Result<Option<u64>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REDB_META)?;
        let value = table.get(APPLIED_KEY)?;
        Ok(value.map(|v| u64::from_be_bytes(*v.value())))
    }
}

/// The workload, generated once and shared by every backend run.
struct Workload {
    events: Vec<Event>,
    /// Final revision count per stream, to verify scans.
    stream_len: HashMap<u64, u64>,
    scan_streams: Vec<u64>,
    get_positions: Vec<u64>,
}

impl Workload {
    fn generate(n_events: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(0x616e_6e61_6c73);
        let mut next_revision: HashMap<u64, u64> = HashMap::with_capacity(STREAMS as usize);
        let mut events = Vec::with_capacity(n_events);
        for _ in 0..n_events {
            let stream = rng.gen_range(0..STREAMS);
            let revision = next_revision.entry(stream).or_insert(0);
            events.push(Event { id: *uuid::Uuid::now_v7().as_bytes(), stream, revision: *revision });
            *revision += 1;
        }
        let scan_streams = (0..READ_OPS).map(|_| rng.gen_range(0..STREAMS)).collect();
        let get_positions = (0..READ_OPS).map(|_| rng.gen_range(0..n_events as u64)).collect();
        Self { events, stream_len: next_revision, scan_streams, get_positions }
    }
}

#[derive(Debug)]
struct Row {
    backend: &'static str,
    batch: usize,
    append_per_s: f64,
    scan_per_s: f64,
    scan_p99_us: f64,
    get_per_s: f64,
    reopen_ms: f64,
    bytes_per_event: f64,
    /// Bytes passed to write syscalls during the append phase, per event.
    written_per_event: Option<f64>,
}

fn dir_size(path: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += dir_size(&entry.path())?;
        } else {
            total += meta.len();
        }
    }
    Ok(total)
}

/// Bytes this process has passed to write syscalls so far (all threads), if known.
fn process_wchar() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines().find_map(|line| line.strip_prefix("wchar:")).and_then(|v| v.trim().parse().ok())
}

fn per_s(ops: usize, elapsed: Duration) -> f64 {
    ops as f64 / elapsed.as_secs_f64()
}

fn run<B: IndexBackend>(work: &Workload, batch: usize) -> Result<Row> {
    let dir = tempfile::Builder::new().prefix("annals-index-choice-").tempdir_in("/var/tmp")?;
    let n = work.events.len();
    let mut index = B::open(dir.path())?;

    // 1. Append phase.
    let wchar_before = process_wchar();
    let start = Instant::now();
    let mut position = 0u64;
    for group in work.events.chunks(batch) {
        index.append_group(group, position)?;
        position += group.len() as u64;
    }
    index.finish()?;
    let append_elapsed = start.elapsed();
    let written = match (wchar_before, process_wchar()) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };

    // 2a. read_stream: prefix scans of random streams.
    let mut latencies = Vec::with_capacity(READ_OPS);
    let start = Instant::now();
    for &stream in &work.scan_streams {
        let t = Instant::now();
        let values = index.read_stream(stream)?;
        latencies.push(t.elapsed());
        let expected = work.stream_len.get(&stream).copied().unwrap_or(0);
        ensure!(
            values.len() as u64 == expected,
            "{}: stream {stream} has {} entries, expected {expected}",
            B::NAME,
            values.len()
        );
    }
    let scan_elapsed = start.elapsed();
    latencies.sort_unstable();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];

    // 2b. Point gets of existing event ids.
    let start = Instant::now();
    for &pos in &work.get_positions {
        let id = &work.events[pos as usize].id;
        let found = index.get_id(id)?;
        ensure!(found == Some(pos), "{}: id get mismatch at {pos}", B::NAME);
    }
    let get_elapsed = start.elapsed();

    // 3. Reopen and read the watermark.
    drop(index);
    let start = Instant::now();
    let index = B::open(dir.path())?;
    let applied = index.read_applied()?;
    let reopen_elapsed = start.elapsed();
    ensure!(applied == Some(n as u64 - 1), "{}: applied after reopen is {applied:?}, expected {}", B::NAME, n - 1);
    drop(index);
    let bytes = dir_size(dir.path())?;

    Ok(Row {
        backend: B::NAME,
        batch,
        append_per_s: per_s(n, append_elapsed),
        scan_per_s: per_s(READ_OPS, scan_elapsed),
        scan_p99_us: p99.as_secs_f64() * 1e6,
        get_per_s: per_s(READ_OPS, get_elapsed),
        reopen_ms: reopen_elapsed.as_secs_f64() * 1e3,
        bytes_per_event: bytes as f64 / n as f64,
        written_per_event: written.map(|w| w as f64 / n as f64),
    })
}

fn events_from_env() -> Result<usize> {
    match std::env::var("INDEX_BENCH_EVENTS") {
        Ok(raw) => {
            let n: usize =
                raw.replace('_', "").parse().with_context(|| format!("INDEX_BENCH_EVENTS={raw:?} is not a count"))?;
            ensure!(n > 0, "INDEX_BENCH_EVENTS must be positive");
            Ok(n)
        }
        Err(_) => Ok(DEFAULT_EVENTS),
    }
}

fn main() -> Result<()> {
    let n_events = events_from_env()?;
    println!(
        "index_choice: {n_events} events, {STREAMS} streams, {READ_OPS} scans + {READ_OPS} id gets, \
         cache {} MiB per backend, dirs in /var/tmp",
        CACHE_BYTES / (1024 * 1024)
    );
    println!(
        "durability: fjall batches without journal persist (+ final SyncAll); \
         redb Durability::None with an Immediate commit every {REDB_DURABLE_EVERY} groups (+ final)"
    );
    let total = Instant::now();
    let work = Workload::generate(n_events);

    let mut rows = Vec::new();
    for batch in BATCH_SIZES {
        rows.push(run::<FjallIndex>(&work, batch)?);
        rows.push(run::<RedbIndex>(&work, batch)?);
    }

    println!();
    println!("| backend | batch | append events/s | stream-scan/s (p99 µs) | id-get/s | reopen ms | bytes/event |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.0} ({:.1}) | {:.0} | {:.1} | {:.1} |",
            r.backend,
            r.batch,
            r.append_per_s,
            r.scan_per_s,
            r.scan_p99_us,
            r.get_per_s,
            r.reopen_ms,
            r.bytes_per_event
        );
    }
    println!();
    println!("append-phase bytes written (write syscalls, /proc/self/io wchar) per event:");
    for r in &rows {
        match r.written_per_event {
            Some(w) => println!("- {} batch {}: {w:.1} B/event", r.backend, r.batch),
            None => println!("- {} batch {}: n/a", r.backend, r.batch),
        }
    }
    println!();
    println!("total bench time: {:.1} s", total.elapsed().as_secs_f64());
    Ok(())
}
