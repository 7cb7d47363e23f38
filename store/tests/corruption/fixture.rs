//! The corruption tests' fixture (a closed store of a few segments and what was written to it),
//! the ways they damage files, and the checks they make after reopening.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{
    AppendResult, Direction, EventData, EventFilter, EventStore, ExpectedRevision, Position, ReadFrom,
    ReadStreamOutcome, RecordedEvent, Revision, StoreError, StreamId,
};
use uuid::Uuid;

use super::format::*;
use super::SEGMENT_SIZE;
use crate::{idx, pos};

// ---------------------------------------------------------------------------------------------
// A log to damage.
// ---------------------------------------------------------------------------------------------

/// An event as the test appended it, where the store acknowledged it.
#[derive(Clone, Debug)]
pub struct Written {
    pub id: Uuid,
    pub stream: StreamId,
    pub revision: u64,
    pub position: u64,
    pub event_type: String,
    pub data: Vec<u8>,
    /// Which append (0, 1, …) it came in.
    pub batch: usize,
}

pub const STREAMS: [&str; 3] = ["orders-1", "orders-2", "audit-log"];
pub const BATCH_SIZES: [usize; 7] = [1, 3, 2, 5, 1, 4, 2];
pub const APPENDS: usize = 90;
/// The last append: several events, so a cut can land between its records.
pub const LAST_BATCH: usize = 4;

pub fn config(dir: &Path) -> EngineConfig {
    EngineConfig::new(dir).segment_size(SEGMENT_SIZE)
}

pub fn stream(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

/// The expected revision that makes an append to `stream` follow `written`.
pub fn expected_after(written: &[Written], stream: &StreamId) -> ExpectedRevision {
    match written.iter().rev().find(|w| &w.stream == stream) {
        Some(last) => ExpectedRevision::Exact(Revision(last.revision)),
        None => ExpectedRevision::NoStream,
    }
}

/// Appends `size` new events to `stream` and records them in `written`, checking the result.
pub async fn append_new(
    store: &EmbeddedStore,
    written: &mut Vec<Written>,
    stream: &StreamId,
    size: usize,
) -> AppendResult {
    let batch = written.last().map_or(0, |w| w.batch + 1);
    let events: Vec<EventData> = (0..size)
        .map(|i| {
            let n = written.len() + i;
            let pad: String = (0..500 + (n * 97) % 900).map(|k| char::from(b'a' + ((n + k) % 26) as u8)).collect();
            EventData::json("test.event", &serde_json::json!({ "n": n, "batch": batch, "pad": pad })).unwrap()
        })
        .collect();
    append_recorded(store, written, stream, events, batch).await
}

/// Appends `events` to `stream` (following `written`), checks the result and records them.
pub async fn append_recorded(
    store: &EmbeddedStore,
    written: &mut Vec<Written>,
    stream: &StreamId,
    events: Vec<EventData>,
    batch: usize,
) -> AppendResult {
    let expected = expected_after(written, stream);
    let first_revision = match expected {
        ExpectedRevision::Exact(r) => r.0 + 1,
        _ => 0,
    };
    let position = written.len() as u64;
    let n = events.len() as u64;
    let ids: Vec<Uuid> = events.iter().map(EventData::id).collect();
    let datas: Vec<Vec<u8>> = events.iter().map(|e| e.data().to_vec()).collect();
    let result = store.append_to_stream(stream, expected, events).await.expect("append");
    assert_eq!(
        (result.first_position, result.last_position, result.first_revision, result.last_revision),
        (pos(position), pos(position + n - 1), Revision(first_revision), Revision(first_revision + n - 1)),
        "append of {n} events to {stream} after {position} events"
    );
    for (i, (id, data)) in ids.into_iter().zip(datas).enumerate() {
        written.push(Written {
            id,
            stream: stream.clone(),
            revision: first_revision + i as u64,
            position: position + i as u64,
            event_type: "test.event".into(),
            data,
            batch,
        });
    }
    result
}

/// A closed store with a few segments, what was written to it, and its parsed layout.
pub struct Fixture {
    pub _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub written: Vec<Written>,
    pub log: Vec<Segment>,
}

impl Fixture {
    pub async fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let store = EmbeddedStore::open(config(&dir)).await.expect("open a new store");
        let mut written = Vec::new();
        for n in 0..=APPENDS {
            let size = if n == APPENDS { LAST_BATCH } else { BATCH_SIZES[n % BATCH_SIZES.len()] };
            append_new(&store, &mut written, &stream(STREAMS[n % STREAMS.len()]), size).await;
        }
        store.close().await.expect("close");
        let log = parse_log(&dir).unwrap_or_else(|e| panic!("the log must follow the documented format: {e}"));
        // Preconditions of the cases below.
        assert!(log.len() >= 3, "the fixture should span at least 3 segments, it has {}", log.len());
        let last = log.last().unwrap();
        assert!(last.groups.len() >= 3, "the last segment should hold at least 3 groups, it has {}", last.groups.len());
        let last_group = last.groups.last().unwrap();
        assert_eq!(last_group.records.len(), LAST_BATCH, "the last group should be the last append, alone");
        assert!(log[1].groups.len() >= 3, "segment 1 should hold at least 3 groups");
        Fixture { _tmp: tmp, dir, written, log }
    }

    pub fn last_segment(&self) -> &Segment {
        self.log.last().unwrap()
    }

    pub fn last_group(&self) -> &Group {
        self.last_segment().groups.last().unwrap()
    }

    pub async fn open(&self) -> Result<EmbeddedStore, StoreError> {
        EmbeddedStore::open(config(&self.dir)).await
    }
}

// ---------------------------------------------------------------------------------------------
// Damage and checks.
// ---------------------------------------------------------------------------------------------

pub fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

/// The offset just past the last non-zero byte.
pub fn nonzero_end(bytes: &[u8]) -> u64 {
    bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i as u64 + 1)
}

pub fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(bytes, offset).unwrap();
}

pub fn set_len(path: &Path, len: u64) {
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

/// Rewrites the first 28 bytes of the 32-byte header at `offset` and gives it a valid checksum,
/// so only the semantic checks can catch the change.
pub fn rewrite_header(path: &Path, offset: u64, edit: impl FnOnce(&mut [u8])) {
    let mut bytes = std::fs::read(path).unwrap();
    let header = &mut bytes[offset as usize..offset as usize + 32];
    edit(&mut header[..28]);
    let crc = crc32c::crc32c(&header[..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

/// Every file of `log/`, by name, with its bytes.
pub fn snapshot_log(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap())
        })
        .collect()
}

pub fn assert_same_log(before: &BTreeMap<String, Vec<u8>>, after: &BTreeMap<String, Vec<u8>>, case: &str) {
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(before), names(after), "{case}: the files of log/ changed");
    for (name, bytes) in before {
        let now = &after[name];
        let first_difference = bytes.iter().zip(now.iter()).position(|(a, b)| a != b);
        assert!(
            bytes == now,
            "{case}: log/{name} changed: {} bytes before, {} after, first difference at {first_difference:?}",
            bytes.len(),
            now.len()
        );
    }
}

/// Whether a path the engine reported names `segment` (the engine may report it relative to the
/// data directory or absolute).
pub fn names_segment(reported: &Path, segment: &Path) -> bool {
    reported == segment || reported.ends_with(Path::new("log").join(segment.file_name().unwrap()))
}

pub fn refused(result: Result<EmbeddedStore, StoreError>, case: &str) -> StoreError {
    match result {
        Ok(_) => panic!("{case}: open succeeded, but it must refuse"),
        Err(e) => e,
    }
}

/// `err` is `Corrupt` naming `segment` at one of `offsets`.
pub fn assert_corrupt_at(err: &StoreError, segment: &Path, offsets: &[u64], case: &str) {
    match err {
        StoreError::Corrupt { file, offset, reason } => {
            assert!(
                names_segment(file, segment),
                "{case}: Corrupt names {} but the damage is in {} ({err})",
                file.display(),
                segment.display()
            );
            assert!(
                offsets.contains(offset),
                "{case}: Corrupt at offset {offset}, expected one of {offsets:?} ({err})"
            );
            assert!(!reason.is_empty(), "{case}: Corrupt without a reason");
        }
        other => panic!("{case}: expected StoreError::Corrupt in {}, got {other:?} ({other})", segment.display()),
    }
}

/// Opening must fail with `Corrupt` at `segment`:`offsets`, twice in a row (a refused open must not
/// keep the lock), and leave every file of the log as it was.
pub async fn assert_open_refused(fx: &Fixture, segment: &Path, offsets: &[u64], case: &str) {
    let before = snapshot_log(&fx.dir);
    for attempt in ["first open", "second open"] {
        let err = refused(fx.open().await, case);
        assert_corrupt_at(&err, segment, offsets, &format!("{case}, {attempt}"));
    }
    assert_same_log(&before, &snapshot_log(&fx.dir), case);
}

pub async fn read_everything(store: &EmbeddedStore) -> Vec<RecordedEvent> {
    let end = store.head().await.expect("head").map_or(0, |p| idx(p) + 1);
    let mut events: Vec<RecordedEvent> = Vec::new();
    while (events.len() as u64) < end {
        let from = pos(events.len() as u64);
        let page =
            store.read_all(ReadFrom::At(from), Direction::Forwards, 100, &EventFilter::all()).await.expect("read_all");
        assert!(!page.is_empty(), "read_all from {from} is empty, but the head is {}", end - 1);
        events.extend(page);
    }
    events
}

pub fn assert_events_match(events: &[RecordedEvent], written: &[Written], case: &str) {
    assert_eq!(events.len(), written.len(), "{case}: number of events in $all");
    for (event, w) in events.iter().zip(written) {
        assert!(
            event.id == w.id
                && event.stream == w.stream
                && event.revision == Revision(w.revision)
                && event.position == pos(w.position)
                && event.event_type == w.event_type
                && event.data.as_ref() == w.data.as_slice()
                && event.metadata.is_empty(),
            "{case}: event at position {} is {:?}, expected {:?}",
            w.position,
            (event.id, &event.stream, event.revision, event.position, &event.event_type),
            (w.id, &w.stream, w.revision, w.position, &w.event_type),
        );
    }
}

/// Every stream reads back exactly what `written` says it holds (the stream index agrees).
pub async fn assert_streams_match(store: &EmbeddedStore, written: &[Written], case: &str) {
    for name in STREAMS {
        let s = stream(name);
        let want: Vec<(Uuid, Revision, Position)> =
            written.iter().filter(|w| w.stream == s).map(|w| (w.id, Revision(w.revision), pos(w.position))).collect();
        let outcome = store.read_stream(&s, ReadFrom::Start, Direction::Forwards, 100_000).await.expect("read_stream");
        match outcome {
            ReadStreamOutcome::StreamNotFound => assert!(want.is_empty(), "{case}: stream {name} not found"),
            ReadStreamOutcome::Events(events) => {
                let got: Vec<(Uuid, Revision, Position)> =
                    events.iter().map(|e| (e.id, e.revision, e.position)).collect();
                assert_eq!(got, want, "{case}: stream {name}");
            }
        }
    }
}

/// `$all` read from every single position (each read seeks through the index on its own).
pub async fn assert_each_position_reads(store: &EmbeddedStore, written: &[Written], case: &str) {
    for w in written {
        let events = store
            .read_all(ReadFrom::At(pos(w.position)), Direction::Forwards, 1, &EventFilter::all())
            .await
            .unwrap_or_else(|e| panic!("{case}: read_all from position {}: {e}", w.position));
        assert_events_match(&events, std::slice::from_ref(w), &format!("{case}, read_all from {}", w.position));
    }
}

/// Re-sending the last append of `written` is answered from the `event_ids` index, unchanged,
/// without writing anything.
pub async fn assert_retry_answers_from_index(store: &EmbeddedStore, written: &[Written], case: &str) {
    let last = written.last().unwrap().batch;
    let batch: Vec<&Written> = written.iter().filter(|w| w.batch == last).collect();
    let before = &written[..written.len() - batch.len()];
    let events: Vec<EventData> = batch
        .iter()
        .map(|w| EventData::from_json_bytes(w.event_type.clone(), w.data.clone()).unwrap().with_id(w.id))
        .collect();
    let result = store
        .append_to_stream(&batch[0].stream, expected_after(before, &batch[0].stream), events)
        .await
        .unwrap_or_else(|e| panic!("{case}: idempotent retry of the last append: {e}"));
    assert_eq!(
        (result.first_position, result.first_revision),
        (pos(batch[0].position), Revision(batch[0].revision)),
        "{case}: a retry answers the original result"
    );
    let head = store.head().await.unwrap();
    assert_eq!(head, Some(pos(written.len() as u64 - 1)), "{case}: a retry writes nothing");
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

pub async fn assert_verifies(store: &EmbeddedStore, case: &str) {
    if let Err(e) = store.verify().await {
        panic!("{case}: verify failed on an undamaged log: {e}");
    }
}

/// The damage at the end of the last segment must be treated as a torn write: truncated at
/// `offset` (where the first bad group starts), reported, and the log usable from there on.
pub async fn assert_tail_truncated(fx: &Fixture, offset: u64, position: u64, index_rebuilt: bool, case: &str) {
    assert_recovered(fx, Some(offset), position, index_rebuilt, case).await;
}

/// Opens the damaged store and checks that recovery left the log ending before `position`:
/// with a reported truncation at `truncated_at`, or none; the index rebuilt or not; every event
/// before `position` readable; appends continuing at `position`; a clean reopen afterwards.
pub async fn assert_recovered(fx: &Fixture, truncated_at: Option<u64>, position: u64, index_rebuilt: bool, case: &str) {
    let segment = &fx.last_segment().path;
    let nonzero_end_before = nonzero_end(&std::fs::read(segment).unwrap());
    let store = fx.open().await.unwrap_or_else(|e| panic!("{case}: open must recover, got {e}"));
    let report = store.recovery_report();
    match (truncated_at, report.truncated.as_ref()) {
        (None, None) => {}
        (None, Some(t)) => panic!("{case}: nothing to truncate, but recovery truncated {t:?}"),
        (Some(offset), None) => {
            panic!(
                "{case}: recovery_report().truncated is None, expected the tail from offset {offset} to be truncated"
            )
        }
        (Some(offset), Some(t)) => {
            assert!(
                names_segment(&t.segment, segment),
                "{case}: truncated {} instead of {}",
                t.segment.display(),
                segment.display()
            );
            assert_eq!(t.offset, offset, "{case}: truncation offset (the start of the bad group)");
            assert_eq!(t.position, pos(position), "{case}: position of the first dropped event");
            assert_eq!(
                t.bytes_dropped,
                nonzero_end_before - offset,
                "{case}: bytes dropped (up to the last non-zero byte)"
            );
            assert!(!t.reason.is_empty(), "{case}: a truncation needs a reason");
            let len = std::fs::metadata(segment).unwrap().len();
            assert_eq!(len, offset, "{case}: the file must be cut at the bad group");
        }
    }
    assert_eq!(report.index_rebuilt, index_rebuilt, "{case}: index_rebuilt (recovery rule 4)");

    // Every complete group is still there, in $all and in the stream index.
    let survivors = &fx.written[..position as usize];
    assert_eq!(store.head().await.unwrap(), position.checked_sub(1).map(pos), "{case}: head");
    assert_events_match(&read_everything(&store).await, survivors, case);
    assert_each_position_reads(&store, survivors, case).await;
    assert_streams_match(&store, survivors, case).await;

    // The next append continues where the log now ends. Dropped events are gone from the
    // idempotency index too: appending them again writes them again, at the same place.
    let mut expected = survivors.to_vec();
    let dropped = &fx.written[position as usize..];
    if dropped.is_empty() {
        append_new(&store, &mut expected, &stream(STREAMS[0]), 2).await;
    } else {
        let again: Vec<&Written> = dropped.iter().filter(|w| w.batch == dropped[0].batch).collect();
        assert_eq!(again.len(), dropped.len(), "{case}: the test expects one dropped append");
        let events = again
            .iter()
            .map(|w| EventData::from_json_bytes(w.event_type.clone(), w.data.clone()).unwrap().with_id(w.id))
            .collect();
        append_recorded(&store, &mut expected, &again[0].stream, events, again[0].batch).await;
    }
    assert_eq!(store.head().await.unwrap(), Some(pos(expected.len() as u64 - 1)), "{case}: head after append");
    assert_events_match(&read_everything(&store).await, &expected, case);
    store.close().await.expect("close");

    // And the repaired log is a clean one.
    let store = fx.open().await.unwrap_or_else(|e| panic!("{case}: reopen after recovery: {e}"));
    assert!(store.recovery_report().truncated.is_none(), "{case}: a second truncation after a clean close");
    assert_events_match(&read_everything(&store).await, &expected, &format!("{case}, reopened"));
    assert_streams_match(&store, &expected, &format!("{case}, reopened")).await;
    assert_verifies(&store, case).await;
    store.close().await.expect("close");
}
