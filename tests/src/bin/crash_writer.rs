//! `crash_writer`: the process that `tests/tests/crash.rs` kills with SIGKILL in the middle of
//! appending, so that crash recovery is tested against a real process death rather than a simulated
//! one.
//!
//! Usage: `crash_writer DATA_DIR`. It opens an [`EmbeddedStore`] on `DATA_DIR` (with small segments,
//! so segments roll often and a kill can land during a roll), then runs several concurrent appender
//! tasks until it is killed: single events and multi-event batches, over a few streams, with
//! `Any`, `Exact`/`NoStream` and `StreamExists` expectations. Each event's data is JSON that makes it
//! checkable on its own:
//!
//! ```text
//! {"batch": uuid, "batch_size": n, "index": i, "stream": name, "payload": random text,
//!  "check": FNV-1a 64 of payload as 16 hex digits}
//! ```
//!
//! so the parent can tell, for any event it finds in the store, that its content is intact and that
//! its whole batch is there (no partial append is visible).
//!
//! Once the store is open it writes `{"ready": true, "open_ms": n}` to stdout (so the parent can
//! time its kill from there, and knows how long recovery took). After each **acknowledged** append
//! (`append_to_stream` returned `Ok`) it writes one line of JSON to stdout and flushes it before
//! doing anything else — the *ack log*:
//!
//! ```text
//! {"stream": name, "batch": uuid, "expected": "...", "ids": [uuid, ...], "first_revision": r,
//!  "last_revision": r, "first_position": p, "last_position": p, "data_hash": 16 hex digits}
//! ```
//!
//! `data_hash` is FNV-1a 64 over, for each event of the batch in order, its data length as a
//! little-endian u64 followed by its data bytes. Every line in the ack log is a promise of the
//! store that the parent checks after the kill. The protocol (field names, hash) is duplicated in
//! `tests/tests/crash.rs`; change both together.
//!
//! Any error other than an expected `WrongExpectedRevision` ends the process with a non-zero status
//! and a message on stderr; the parent treats a child that exits on its own as a failure.

use annals_tests::{fnv1a, FNV_OFFSET};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{
    CurrentRevision, Direction, EventData, EventStore, ExpectedRevision, ReadFrom, ReadStreamOutcome, Revision,
    StoreError, StreamId,
};
use anyhow::{bail, Context};
use uuid::Uuid;

/// Segment size used by the child and by the parent when it reopens the store.
const SEGMENT_SIZE: u64 = 64 * 1024;
/// Number of streams the appenders share (so `Exact` appends sometimes race and fail).
const STREAMS: usize = 5;
/// Number of concurrent appender tasks (so groups hold several appends).
const APPENDERS: usize = 6;
/// Longest random payload, in bytes.
const MAX_PAYLOAD: usize = 600;

/// xorshift64*: enough randomness for choosing streams, sizes and payloads (the package's regular
/// dependencies have no RNG, and this binary must build with them alone).
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        Rng((Uuid::new_v4().as_u128() as u64) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn text(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        (0..len).map(|_| ALPHABET[self.below(ALPHABET.len())] as char).collect()
    }
}

/// State shared by the appenders: the streams and the last revision each appender has seen acked.
struct Shared {
    streams: Vec<StreamId>,
    known: Mutex<Vec<Option<Revision>>>,
}

impl Shared {
    fn known(&self, stream: usize) -> Option<Revision> {
        self.known.lock().expect("known revisions lock")[stream]
    }

    fn saw(&self, stream: usize, revision: Option<Revision>) {
        let mut known = self.known.lock().expect("known revisions lock");
        known[stream] = known[stream].max(revision);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        bail!("usage: crash_writer DATA_DIR");
    };
    let started = std::time::Instant::now();
    let store = EmbeddedStore::open(EngineConfig::new(&dir).segment_size(SEGMENT_SIZE))
        .await
        .with_context(|| format!("opening the store at {}", dir.display()))?;
    let open_ms = started.elapsed().as_millis() as u64;

    let streams: Vec<StreamId> = (0..STREAMS).map(|i| StreamId::new(format!("crash-{i}"))).collect::<Result<_, _>>()?;
    let mut known = Vec::with_capacity(STREAMS);
    for stream in &streams {
        let last = match store.read_stream(stream, ReadFrom::End, Direction::Backwards, 1).await? {
            ReadStreamOutcome::StreamNotFound => None,
            ReadStreamOutcome::Events(events) => events.last().map(|e| e.revision),
        };
        known.push(last);
    }
    let shared = Arc::new(Shared { streams, known: Mutex::new(known) });
    write_line(&serde_json::json!({ "ready": true, "open_ms": open_ms }))?;

    let mut appenders = tokio::task::JoinSet::new();
    for _ in 0..APPENDERS {
        appenders.spawn(append_forever(store.clone(), Arc::clone(&shared), Rng::seeded()));
    }
    // The appenders only return on an error: report the first one and exit non-zero.
    match appenders.join_next().await {
        Some(Ok(Err(e))) => Err(e),
        Some(Err(e)) => Err(anyhow::Error::new(e).context("appender task panicked")),
        Some(Ok(Ok(()))) | None => bail!("an appender stopped without an error"),
    }
}

/// Writes one line of the ack log: one write of the whole line, flushed at once, so a line in
/// the log means the append was acknowledged; an ack the kill cut off is just not a promise.
fn write_line(line: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(format!("{line}\n").as_bytes()).context("writing the ack log")?;
    out.flush().context("flushing the ack log")
}

async fn append_forever(store: EmbeddedStore, shared: Arc<Shared>, mut rng: Rng) -> anyhow::Result<()> {
    loop {
        let s = rng.below(STREAMS);
        let stream = &shared.streams[s];
        let size = match rng.below(10) {
            0..=4 => 1,
            5..=8 => 2 + rng.below(7),
            _ => 10 + rng.below(21),
        };
        let known = shared.known(s);
        let expected = match (rng.below(3), known) {
            (0, _) => ExpectedRevision::Any,
            (1, Some(revision)) => ExpectedRevision::Exact(revision),
            (1, None) => ExpectedRevision::NoStream,
            (_, Some(_)) => ExpectedRevision::StreamExists,
            (_, None) => ExpectedRevision::Any,
        };

        let batch = Uuid::new_v4();
        let mut events = Vec::with_capacity(size);
        for index in 0..size {
            let len = rng.below(MAX_PAYLOAD + 1);
            let payload = rng.text(len);
            let check = format!("{:016x}", fnv1a(FNV_OFFSET, payload.as_bytes()));
            let data = serde_json::json!({
                "batch": batch.to_string(),
                "batch_size": size,
                "index": index,
                "stream": stream.as_str(),
                "payload": payload,
                "check": check,
            });
            let event_type = if size == 1 { "crash.single" } else { "crash.batched" };
            events.push(EventData::json(event_type, &data)?);
        }
        let ids: Vec<String> = events.iter().map(|e| e.id().to_string()).collect();
        let data_hash = events.iter().fold(FNV_OFFSET, |h, e| {
            let h = fnv1a(h, &(e.data().len() as u64).to_le_bytes());
            fnv1a(h, e.data())
        });

        match store.append_to_stream(stream, expected, events).await {
            Ok(result) => {
                shared.saw(s, Some(result.last_revision));
                let line = serde_json::json!({
                    "stream": stream.as_str(),
                    "batch": batch.to_string(),
                    "expected": expected.to_string(),
                    "ids": ids,
                    "first_revision": result.first_revision.0,
                    "last_revision": result.last_revision.0,
                    "first_position": result.first_position.code(),
                    "last_position": result.last_position.code(),
                    "data_hash": format!("{data_hash:016x}"),
                });
                write_line(&line)?;
            }
            Err(StoreError::WrongExpectedRevision { actual, .. }) if expected != ExpectedRevision::Any => {
                // Another appender got there first; learn the stream's end and go on.
                if let CurrentRevision::Current(revision) = actual {
                    shared.saw(s, Some(revision));
                }
            }
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("append of {size} events to {stream} expecting {expected}"))
                )
            }
        }
    }
}
