//! Damaged data directories against the recovery rules of the embedded engine (the "Recovery"
//! section of `store/src/engine/mod.rs` is the spec): a torn or damaged tail is truncated and
//! reported, damage anywhere else is refused or reported with the file and offset, and a refusal
//! changes nothing on disk.
//!
//! Each case writes a log of a few segments (64 KiB segments, sequential appends), closes the
//! store, damages the files, and reopens:
//!
//! - (a) bytes cut off the end of the last segment, inside its last group → truncated, reported;
//! - (b) a byte flipped in the last group of the last segment → truncated, reported;
//! - (c) a byte flipped in the last segment with valid groups after it → `Corrupt` at the start
//!   of the damaged group, nothing on disk changed;
//! - (d) a byte flipped in an earlier segment → open succeeds; reads of that record and `verify`
//!   return `Corrupt` with the file and offset;
//! - (e) zeros after the last group (preallocated space) → the end of the log, nothing truncated;
//!   non-zero bytes in that space, or zeros in place of a group header with non-zero bytes after
//!   them → truncated as a torn write, reported;
//! - (f) a damaged, inconsistent or unknown-version segment header, or a missing segment → refused;
//! - and the index rules: deleted index rebuilt, index behind the log caught up across segments,
//!   index ahead of a shortened log rebuilt (rule 4).
//!
//! Group and record boundaries come from a small parser of the on-disk format written from the
//! documentation alone, so these tests also check that the engine writes the format
//! `engine/mod.rs` documents (see `documented_format_matches_what_the_engine_writes`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{
    AppendResult, Direction, EventData, EventFilter, EventStore, ExpectedRevision, Position, ReadFrom,
    ReadStreamOutcome, RecordedEvent, Revision, StoreError, StreamId,
};
use uuid::Uuid;

const SEGMENT_SIZE: u64 = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// A parser of the documented on-disk format.
// ---------------------------------------------------------------------------------------------

const SEGMENT_MAGIC: &[u8; 8] = b"ANNALSEG";
const GROUP_MAGIC: &[u8; 4] = b"ANLG";
const SEGMENT_HEADER_LEN: usize = 32;
const GROUP_HEADER_LEN: usize = 32;
/// Length and checksum, before what the checksum covers.
const RECORD_PREFIX_LEN: usize = 8;
/// position, revision, recorded_at, id, stream len, type len, metadata len, data len.
const RECORD_FIXED_LEN: usize = 8 + 8 + 8 + 16 + 2 + 2 + 4 + 4;

#[derive(Clone, Debug)]
struct Segment {
    path: PathBuf,
    number: u64,
    version: u16,
    first_position: u64,
    groups: Vec<Group>,
    /// Where the data ends: the end of the last group (or of the header).
    len: u64,
    /// The file's length: `len` plus preallocated zeros, if any.
    file_len: u64,
}

#[derive(Clone, Debug)]
struct Group {
    offset: u64,
    /// Header and payload.
    len: u64,
    first_position: u64,
    records: Vec<Record>,
}

#[derive(Clone, Debug)]
struct Record {
    offset: u64,
    position: u64,
    revision: u64,
    recorded_at_us: i64,
    id: Uuid,
    stream: String,
    event_type: String,
    metadata: Vec<u8>,
    data: Vec<u8>,
    /// Where `data` starts in the file.
    data_offset: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Parses one segment file strictly: every byte must belong to the header, to a valid group, or to
/// the zeros that may follow the last group (preallocated space).
fn parse_segment(path: &Path) -> Result<Segment, String> {
    let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let fail = |offset: usize, what: String| format!("{}:{offset}: {what}", path.display());
    if b.len() < SEGMENT_HEADER_LEN {
        return Err(fail(0, format!("{} bytes, shorter than a segment header", b.len())));
    }
    if &b[..8] != SEGMENT_MAGIC {
        return Err(fail(0, format!("segment magic {:?}", &b[..8])));
    }
    if crc32c::crc32c(&b[..28]) != u32_at(&b, 28) {
        return Err(fail(0, "segment header checksum mismatch".into()));
    }
    let mut segment = Segment {
        path: path.to_owned(),
        version: u16_at(&b, 8),
        number: u64_at(&b, 12),
        first_position: u64_at(&b, 20),
        groups: Vec::new(),
        len: b.len() as u64,
        file_len: b.len() as u64,
    };
    let mut offset = SEGMENT_HEADER_LEN;
    while offset < b.len() {
        if b[offset..].iter().all(|byte| *byte == 0) {
            break;
        }
        let group = parse_group(&b, offset).map_err(|what| fail(offset, what))?;
        offset += group.len as usize;
        segment.groups.push(group);
    }
    segment.len = offset as u64;
    Ok(segment)
}

fn parse_group(b: &[u8], offset: usize) -> Result<Group, String> {
    if b.len() - offset < GROUP_HEADER_LEN {
        return Err(format!("{} bytes left, shorter than a group header", b.len() - offset));
    }
    let h = &b[offset..offset + GROUP_HEADER_LEN];
    if &h[..4] != GROUP_MAGIC {
        return Err(format!("group magic {:?}", &h[..4]));
    }
    if crc32c::crc32c(&h[..28]) != u32_at(h, 28) {
        return Err("group header checksum mismatch".into());
    }
    let payload_len = u32_at(h, 8) as usize;
    let count = u32_at(h, 12);
    let first_position = u64_at(h, 16);
    let end = offset + GROUP_HEADER_LEN + payload_len;
    if end > b.len() {
        return Err(format!("payload of {payload_len} bytes runs past the end of the file"));
    }
    let mut records = Vec::with_capacity(count as usize);
    let mut at = offset + GROUP_HEADER_LEN;
    for i in 0..count {
        if end - at < RECORD_PREFIX_LEN + RECORD_FIXED_LEN {
            return Err(format!("record {i} at {at}: runs past the group's payload"));
        }
        let len = u32_at(b, at) as usize;
        let crc = u32_at(b, at + 4);
        let body_at = at + RECORD_PREFIX_LEN;
        if len < RECORD_FIXED_LEN || body_at + len > end {
            return Err(format!("record {i} at {at}: length {len} does not fit the group's payload"));
        }
        let body = &b[body_at..body_at + len];
        if crc32c::crc32c(body) != crc {
            return Err(format!("record {i} at {at}: checksum mismatch"));
        }
        let stream_len = u16_at(body, 40) as usize;
        let type_len = u16_at(body, 42) as usize;
        let metadata_len = u32_at(body, 44) as usize;
        let data_len = u32_at(body, 48) as usize;
        if RECORD_FIXED_LEN + stream_len + type_len + metadata_len + data_len != len {
            return Err(format!("record {i} at {at}: field lengths do not add up to the record length {len}"));
        }
        let mut v = RECORD_FIXED_LEN;
        let mut take = |n: usize| {
            let field = &body[v..v + n];
            v += n;
            field
        };
        let stream = String::from_utf8(take(stream_len).to_vec()).map_err(|e| format!("record {i}: stream {e}"))?;
        let event_type = String::from_utf8(take(type_len).to_vec()).map_err(|e| format!("record {i}: type {e}"))?;
        let metadata = take(metadata_len).to_vec();
        let data = take(data_len).to_vec();
        let record = Record {
            offset: at as u64,
            position: u64_at(body, 0),
            revision: u64_at(body, 8),
            recorded_at_us: i64::from_le_bytes(body[16..24].try_into().unwrap()),
            id: Uuid::from_bytes(body[24..40].try_into().unwrap()),
            stream,
            event_type,
            metadata,
            data,
            data_offset: (body_at + len - data_len) as u64,
        };
        if record.position != first_position + u64::from(i) {
            return Err(format!(
                "record {i} at {at}: position {} in a group starting at position {first_position}",
                record.position
            ));
        }
        records.push(record);
        at = body_at + len;
    }
    if at != end {
        return Err(format!(
            "{count} records take {} bytes, the header says {payload_len}",
            at - offset - GROUP_HEADER_LEN
        ));
    }
    Ok(Group { offset: offset as u64, len: (end - offset) as u64, first_position, records })
}

fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .expect("list log/")
        .map(|entry| entry.expect("log/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    paths.sort();
    paths
}

/// Parses the whole log and checks what spans files: numbering, and positions contiguous from 0.
fn parse_log(dir: &Path) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut next_position = 0;
    for (i, path) in segment_paths(dir).iter().enumerate() {
        let segment = parse_segment(path)?;
        let name = format!("{:020}.seg", segment.number);
        if segment.number != i as u64 || path.file_name().unwrap() != name.as_str() {
            return Err(format!("{}: segment number {} in file {i} of the log", path.display(), segment.number));
        }
        if segment.first_position != next_position {
            return Err(format!(
                "{}: header's first position {} but the log's next position is {next_position}",
                path.display(),
                segment.first_position
            ));
        }
        for group in &segment.groups {
            if group.first_position != next_position {
                return Err(format!(
                    "{}:{}: group's first position {} but the log's next position is {next_position}",
                    path.display(),
                    group.offset,
                    group.first_position
                ));
            }
            next_position += group.records.len() as u64;
        }
        segments.push(segment);
    }
    Ok(segments)
}

// ---------------------------------------------------------------------------------------------
// A log to damage.
// ---------------------------------------------------------------------------------------------

/// An event as the test appended it, where the store acknowledged it.
#[derive(Clone, Debug)]
struct Written {
    id: Uuid,
    stream: StreamId,
    revision: u64,
    position: u64,
    event_type: String,
    data: Vec<u8>,
    /// Which append (0, 1, …) it came in.
    batch: usize,
}

const STREAMS: [&str; 3] = ["orders-1", "orders-2", "audit-log"];
const BATCH_SIZES: [usize; 7] = [1, 3, 2, 5, 1, 4, 2];
const APPENDS: usize = 90;
/// The last append: several events, so a cut can land between its records.
const LAST_BATCH: usize = 4;

fn config(dir: &Path) -> EngineConfig {
    EngineConfig::new(dir).segment_size(SEGMENT_SIZE)
}

fn stream(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

/// The expected revision that makes an append to `stream` follow `written`.
fn expected_after(written: &[Written], stream: &StreamId) -> ExpectedRevision {
    match written.iter().rev().find(|w| &w.stream == stream) {
        Some(last) => ExpectedRevision::Exact(Revision(last.revision)),
        None => ExpectedRevision::NoStream,
    }
}

/// Appends `size` new events to `stream` and records them in `written`, checking the result.
async fn append_new(store: &EmbeddedStore, written: &mut Vec<Written>, stream: &StreamId, size: usize) -> AppendResult {
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
async fn append_recorded(
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
        (Position(position), Position(position + n - 1), Revision(first_revision), Revision(first_revision + n - 1)),
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
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    written: Vec<Written>,
    log: Vec<Segment>,
}

impl Fixture {
    async fn new() -> Fixture {
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

    fn last_segment(&self) -> &Segment {
        self.log.last().unwrap()
    }

    fn last_group(&self) -> &Group {
        self.last_segment().groups.last().unwrap()
    }

    async fn open(&self) -> Result<EmbeddedStore, StoreError> {
        EmbeddedStore::open(config(&self.dir)).await
    }
}

// ---------------------------------------------------------------------------------------------
// Damage and checks.
// ---------------------------------------------------------------------------------------------

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

/// The offset just past the last non-zero byte.
fn nonzero_end(bytes: &[u8]) -> u64 {
    bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i as u64 + 1)
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(bytes, offset).unwrap();
}

fn set_len(path: &Path, len: u64) {
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

/// Rewrites the first 28 bytes of the 32-byte header at `offset` and gives it a valid checksum,
/// so only the semantic checks can catch the change.
fn rewrite_header(path: &Path, offset: u64, edit: impl FnOnce(&mut [u8])) {
    let mut bytes = std::fs::read(path).unwrap();
    let header = &mut bytes[offset as usize..offset as usize + 32];
    edit(&mut header[..28]);
    let crc = crc32c::crc32c(&header[..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

/// Every file of `log/`, by name, with its bytes.
fn snapshot_log(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap())
        })
        .collect()
}

fn assert_same_log(before: &BTreeMap<String, Vec<u8>>, after: &BTreeMap<String, Vec<u8>>, case: &str) {
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
fn names_segment(reported: &Path, segment: &Path) -> bool {
    reported == segment || reported.ends_with(Path::new("log").join(segment.file_name().unwrap()))
}

fn refused(result: Result<EmbeddedStore, StoreError>, case: &str) -> StoreError {
    match result {
        Ok(_) => panic!("{case}: open succeeded, but it must refuse"),
        Err(e) => e,
    }
}

/// `err` is `Corrupt` naming `segment` at one of `offsets`.
fn assert_corrupt_at(err: &StoreError, segment: &Path, offsets: &[u64], case: &str) {
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
async fn assert_open_refused(fx: &Fixture, segment: &Path, offsets: &[u64], case: &str) {
    let before = snapshot_log(&fx.dir);
    for attempt in ["first open", "second open"] {
        let err = refused(fx.open().await, case);
        assert_corrupt_at(&err, segment, offsets, &format!("{case}, {attempt}"));
    }
    assert_same_log(&before, &snapshot_log(&fx.dir), case);
}

async fn read_everything(store: &EmbeddedStore) -> Vec<RecordedEvent> {
    let end = store.head().await.expect("head").map_or(0, |p| p.0 + 1);
    let mut events: Vec<RecordedEvent> = Vec::new();
    while (events.len() as u64) < end {
        let from = Position(events.len() as u64);
        let page =
            store.read_all(ReadFrom::At(from), Direction::Forwards, 100, &EventFilter::all()).await.expect("read_all");
        assert!(!page.is_empty(), "read_all from {from} is empty, but the head is {}", end - 1);
        events.extend(page);
    }
    events
}

fn assert_events_match(events: &[RecordedEvent], written: &[Written], case: &str) {
    assert_eq!(events.len(), written.len(), "{case}: number of events in $all");
    for (event, w) in events.iter().zip(written) {
        assert!(
            event.id == w.id
                && event.stream == w.stream
                && event.revision == Revision(w.revision)
                && event.position == Position(w.position)
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
async fn assert_streams_match(store: &EmbeddedStore, written: &[Written], case: &str) {
    for name in STREAMS {
        let s = stream(name);
        let want: Vec<(Uuid, Revision, Position)> = written
            .iter()
            .filter(|w| w.stream == s)
            .map(|w| (w.id, Revision(w.revision), Position(w.position)))
            .collect();
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
async fn assert_each_position_reads(store: &EmbeddedStore, written: &[Written], case: &str) {
    for w in written {
        let events = store
            .read_all(ReadFrom::At(Position(w.position)), Direction::Forwards, 1, &EventFilter::all())
            .await
            .unwrap_or_else(|e| panic!("{case}: read_all from position {}: {e}", w.position));
        assert_events_match(&events, std::slice::from_ref(w), &format!("{case}, read_all from {}", w.position));
    }
}

/// Re-sending the last append of `written` is answered from the `event_ids` index, unchanged,
/// without writing anything.
async fn assert_retry_answers_from_index(store: &EmbeddedStore, written: &[Written], case: &str) {
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
        (Position(batch[0].position), Revision(batch[0].revision)),
        "{case}: a retry answers the original result"
    );
    let head = store.head().await.unwrap();
    assert_eq!(head, Some(Position(written.len() as u64 - 1)), "{case}: a retry writes nothing");
}

fn copy_dir(from: &Path, to: &Path) {
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

async fn assert_verifies(store: &EmbeddedStore, case: &str) {
    if let Err(e) = store.verify().await {
        panic!("{case}: verify failed on an undamaged log: {e}");
    }
}

/// The damage at the end of the last segment must be treated as a torn write: truncated at
/// `offset` (where the first bad group starts), reported, and the log usable from there on.
async fn assert_tail_truncated(fx: &Fixture, offset: u64, position: u64, index_rebuilt: bool, case: &str) {
    assert_recovered(fx, Some(offset), position, index_rebuilt, case).await;
}

/// Opens the damaged store and checks that recovery left the log ending before `position`:
/// with a reported truncation at `truncated_at`, or none; the index rebuilt or not; every event
/// before `position` readable; appends continuing at `position`; a clean reopen afterwards.
async fn assert_recovered(fx: &Fixture, truncated_at: Option<u64>, position: u64, index_rebuilt: bool, case: &str) {
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
            assert_eq!(t.position, Position(position), "{case}: position of the first dropped event");
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
    assert_eq!(store.head().await.unwrap(), position.checked_sub(1).map(Position), "{case}: head");
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
    assert_eq!(store.head().await.unwrap(), Some(Position(expected.len() as u64 - 1)), "{case}: head after append");
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

// ---------------------------------------------------------------------------------------------
// The cases.
// ---------------------------------------------------------------------------------------------

/// The parser above, written from `engine/mod.rs`, reads what the engine wrote, record for record,
/// and the layout follows the documented rules (appends never span groups, segments roll when the
/// next group would take them past `segment_size`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_format_matches_what_the_engine_writes() {
    let fx = Fixture::new().await;
    let records: Vec<&Record> = fx.log.iter().flat_map(|s| &s.groups).flat_map(|g| &g.records).collect();
    assert_eq!(records.len(), fx.written.len(), "records in the log");
    for (r, w) in records.iter().zip(&fx.written) {
        assert_eq!(
            (r.id, r.stream.as_str(), r.revision, r.position, r.event_type.as_str(), &r.data, r.metadata.is_empty()),
            (w.id, w.stream.as_str(), w.revision, w.position, w.event_type.as_str(), &w.data, true),
            "record at position {}",
            w.position
        );
    }

    // A clean close leaves segments only: a next segment being prepared is cancelled and removed.
    let names: Vec<String> =
        std::fs::read_dir(fx.dir.join("log")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(names.iter().all(|n| n.ends_with(".seg")), "files in log/ after a clean close: {names:?}");

    let versions: Vec<u16> = fx.log.iter().map(|s| s.version).collect();
    assert!(versions.iter().all(|v| *v == versions[0]), "segment format versions {versions:?}");
    for (i, segment) in fx.log.iter().enumerate() {
        assert_eq!(segment.first_position, segment.groups[0].first_position, "segment {i}: first position");
        for group in &segment.groups {
            let first = &fx.written[group.first_position as usize];
            let last = &fx.written[(group.first_position as usize) + group.records.len() - 1];
            let before = group.first_position.checked_sub(1).map(|p| fx.written[p as usize].batch);
            let after = fx.written.get(group.first_position as usize + group.records.len()).map(|w| w.batch);
            assert!(
                before != Some(first.batch) && after != Some(last.batch),
                "{}:{}: an append spans groups",
                segment.path.display(),
                group.offset
            );
        }
        if let Some(next) = fx.log.get(i + 1) {
            assert_eq!(segment.file_len, segment.len, "segment {i} was rolled: its file must end with its last group");
            let next_group = next.groups[0].len;
            assert!(
                segment.len <= SEGMENT_SIZE || segment.groups.len() == 1,
                "segment {i} is {} bytes, past segment_size {SEGMENT_SIZE}",
                segment.len
            );
            assert!(
                segment.len + next_group > SEGMENT_SIZE,
                "segment {i} ({} bytes) rolled although the next group ({next_group} bytes) fitted",
                segment.len
            );
        }
    }

    // A clean reopen: nothing to truncate, nothing to index, the same events with the same
    // `recorded_at` as the records.
    let store = fx.open().await.expect("reopen");
    let report = store.recovery_report();
    assert!(report.truncated.is_none(), "truncation after a clean close");
    assert!(!report.index_rebuilt, "index rebuilt after a clean close");
    assert_eq!(report.reindexed_events, 0, "events indexed again after a clean close");
    let events = read_everything(&store).await;
    assert_events_match(&events, &fx.written, "clean reopen");
    for (event, record) in events.iter().zip(&records) {
        assert_eq!(event.recorded_at.timestamp_micros(), record.recorded_at_us, "recorded_at at {}", event.position);
    }
    assert!(records.windows(2).all(|w| w[0].recorded_at_us <= w[1].recorded_at_us), "recorded_at decreases");
    assert_streams_match(&store, &fx.written, "clean reopen").await;
    assert_verifies(&store, "clean reopen").await;
    store.close().await.unwrap();
}

/// The index is derived: deleting it loses nothing, and idempotent retries still answer from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_index_rebuilds_it_from_the_log() {
    let fx = Fixture::new().await;
    std::fs::remove_dir_all(fx.dir.join("index")).unwrap();
    let store = fx.open().await.expect("open without an index");
    let report = store.recovery_report();
    assert!(report.truncated.is_none(), "nothing to truncate");
    assert_eq!(report.reindexed_events, fx.written.len() as u64, "every event indexed again");
    assert_events_match(&read_everything(&store).await, &fx.written, "rebuilt index");
    assert_streams_match(&store, &fx.written, "rebuilt index").await;
    assert_each_position_reads(&store, &fx.written, "rebuilt index").await;
    // Retrying the last append answers from the rebuilt `event_ids` without writing.
    assert_retry_answers_from_index(&store, &fx.written, "rebuilt index").await;
    store.close().await.unwrap();
}

/// The index may be behind the log after a crash (it is not fsynced; invariant 5): recovery
/// indexes what it lacks, from its watermark on, across segment boundaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_behind_the_log_catches_up_across_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut written = Vec::new();
    let store = EmbeddedStore::open(config(&dir)).await.expect("open a new store");
    for n in 0..5 {
        append_new(&store, &mut written, &stream(STREAMS[n % STREAMS.len()]), BATCH_SIZES[n]).await;
    }
    store.close().await.unwrap();
    let indexed = written.len();
    copy_dir(&dir.join("index"), &tmp.path().join("index-behind"));

    let store = EmbeddedStore::open(config(&dir)).await.expect("reopen");
    for n in 5..APPENDS {
        append_new(&store, &mut written, &stream(STREAMS[n % STREAMS.len()]), BATCH_SIZES[n % BATCH_SIZES.len()]).await;
    }
    store.close().await.unwrap();
    let log = parse_log(&dir).unwrap_or_else(|e| panic!("the log must follow the documented format: {e}"));
    assert!(log.len() >= 3, "the log should span at least 3 segments, it has {}", log.len());

    // Put back the index as it was after the first session: consistent, but behind the log.
    std::fs::remove_dir_all(dir.join("index")).unwrap();
    copy_dir(&tmp.path().join("index-behind"), &dir.join("index"));
    let case = "index behind by several segments";
    let store = EmbeddedStore::open(config(&dir)).await.unwrap_or_else(|e| panic!("{case}: open: {e}"));
    let report = store.recovery_report();
    assert!(report.truncated.is_none(), "{case}: nothing to truncate");
    assert!(!report.index_rebuilt, "{case}: an index behind the log is caught up, not rebuilt");
    assert_eq!(report.reindexed_events, (written.len() - indexed) as u64, "{case}: events indexed on open");
    assert_events_match(&read_everything(&store).await, &written, case);
    assert_each_position_reads(&store, &written, case).await;
    assert_streams_match(&store, &written, case).await;
    assert_retry_answers_from_index(&store, &written, case).await;
    append_new(&store, &mut written, &stream(STREAMS[2]), 2).await;
    assert_verifies(&store, case).await;
    store.close().await.unwrap();
}

/// A last segment that ends cleanly at a group boundary but before the index's watermark (the
/// index is ahead of the log): nothing to truncate, and the index is rebuilt from position 0
/// (recovery rule 4), so the dropped events are gone from it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_shorter_than_the_index_rebuilds_the_index() {
    let fx = Fixture::new().await;
    let group = fx.last_group().clone();
    set_len(&fx.last_segment().path, group.offset);
    assert_recovered(&fx, None, group.first_position, true, "last group missing, cut at its start").await;
}

/// (a) Bytes cut off the end of the last segment, inside its last group: a torn write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_last_group_is_truncated_as_a_torn_write() {
    type Cut = fn(&Group, u64) -> u64;
    let cuts: [(&str, Cut); 5] = [
        ("one byte cut off", |_, len| len - 1),
        ("cut inside the second record", |g, _| g.records[1].offset + 10),
        ("cut at a record boundary", |g, _| g.records[LAST_BATCH - 1].offset),
        ("only the group header left", |g, _| g.offset + GROUP_HEADER_LEN as u64),
        ("cut inside the group header", |g, _| g.offset + 10),
    ];
    for (case, cut) in cuts {
        let fx = Fixture::new().await;
        let group = fx.last_group().clone();
        let path = &fx.last_segment().path;
        set_len(path, cut(&group, fx.last_segment().len));
        assert_tail_truncated(&fx, group.offset, group.first_position, true, case).await;
    }
}

/// (b) A byte flipped in the last group of the last segment: nothing valid follows, so it is
/// indistinguishable from a torn write and truncated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_last_group_is_truncated() {
    type Damage = fn(&Group) -> u64;
    let damages: [(&str, Damage); 3] = [
        ("data byte of the last record", |g| {
            let r = g.records.last().unwrap();
            r.data_offset + r.data.len() as u64 / 2
        }),
        ("event count in the group header", |g| g.offset + 12),
        ("checksum of the first record", |g| g.records[0].offset + 4),
    ];
    for (case, damage) in damages {
        let fx = Fixture::new().await;
        let group = fx.last_group().clone();
        flip_byte(&fx.last_segment().path, damage(&group));
        assert_tail_truncated(&fx, group.offset, group.first_position, true, case).await;
    }
}

/// (e) Zeros after the last group are preallocated space, the end of the log: nothing is
/// truncated, nothing indexed again, and appends go on after the last group — whether the zeros
/// are the engine's own preallocation, a few bytes, or more than a segment's worth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeros_after_the_last_group_end_the_log() {
    let fx = Fixture::new().await;
    assert!(
        fx.last_segment().file_len > fx.last_segment().len,
        "the fixture's last segment should be preallocated (file {} bytes, data {} bytes)",
        fx.last_segment().file_len,
        fx.last_segment().len
    );
    assert_recovered(&fx, None, fx.written.len() as u64, false, "the engine's own preallocated space").await;
    for len in [7u64, 2 * SEGMENT_SIZE] {
        let fx = Fixture::new().await;
        let path = &fx.last_segment().path;
        set_len(path, fx.last_segment().len);
        set_len(path, fx.last_segment().len + len);
        let case = format!("{len} zero bytes after the last group");
        assert_recovered(&fx, None, fx.written.len() as u64, false, &case).await;
    }
}

/// (e) Non-zero bytes in the preallocated space after the last group are what a torn write of
/// the next group leaves (its sectors reach the disk in any order): truncated and reported, and
/// the index, which ends at the last group, is not rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_in_the_preallocated_space_are_truncated_as_a_torn_write() {
    type Garbage = fn(u64) -> (u64, Vec<u8>);
    let cases: [(&str, Garbage); 3] = [
        ("a partial group header", |end| (end, GROUP_MAGIC.to_vec())),
        ("zeros in place of a group header, payload bytes after them", |end| (end + 4096, vec![0xab; 100])),
        ("one stray byte far into the space", |end| (end + SEGMENT_SIZE / 4, vec![1])),
    ];
    for (case, garbage) in cases {
        let fx = Fixture::new().await;
        let end = fx.last_segment().len;
        assert!(fx.last_segment().file_len > end, "{case}: the fixture's last segment should be preallocated");
        let (at, bytes) = garbage(end);
        write_at(&fx.last_segment().path, at, &bytes);
        assert_tail_truncated(&fx, end, fx.written.len() as u64, false, case).await;
    }
}

/// (c) Damage in the last segment with valid groups after it is not a torn write: open refuses
/// with `Corrupt` at the start of the damaged group and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_followed_by_valid_groups_refuses_open_and_changes_nothing() {
    for case in ["data byte of a record", "payload length in the group header", "wrong first position, valid checksum"]
    {
        let fx = Fixture::new().await;
        let segment = fx.last_segment();
        let group = &segment.groups[segment.groups.len() / 2];
        assert!(segment.groups.len() - segment.groups.len() / 2 >= 2, "valid groups must follow the damage");
        match case {
            "data byte of a record" => {
                let r = &group.records[0];
                flip_byte(&segment.path, r.data_offset + r.data.len() as u64 / 2);
            }
            "payload length in the group header" => flip_byte(&segment.path, group.offset + 8),
            _ => rewrite_header(&segment.path, group.offset, |h| {
                let first = u64_at(h, 16) + 1;
                h[16..24].copy_from_slice(&first.to_le_bytes());
            }),
        }
        assert_open_refused(&fx, &segment.path, &[group.offset], case).await;
    }
}

/// (d) Damage in an earlier segment is not looked for at open (it costs the last segment, not
/// the log); reads of the damaged record and `verify` report it with the file and offset, and
/// everything else keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_an_earlier_segment_is_reported_by_reads_and_verify() {
    let fx = Fixture::new().await;
    let segment = &fx.log[1];
    let group = &segment.groups[segment.groups.len() / 2];
    let record = &group.records[0];
    flip_byte(&segment.path, record.data_offset + record.data.len() as u64 / 2);
    // The damage may be named by the record (what a read checks) or by its group.
    let offsets = [record.offset, group.offset];
    let damaged = &fx.written[record.position as usize];

    let store = fx.open().await.unwrap_or_else(|e| panic!("open must not scan earlier segments, got {e}"));
    assert!(store.recovery_report().truncated.is_none(), "nothing to truncate");

    let err = store
        .read_stream(&damaged.stream, ReadFrom::At(Revision(damaged.revision)), Direction::Forwards, 1)
        .await
        .expect_err("read_stream of the damaged event must fail");
    assert_corrupt_at(&err, &segment.path, &offsets, "read_stream of the damaged event");
    let err = store
        .read_all(ReadFrom::At(Position(record.position)), Direction::Forwards, 1, &EventFilter::all())
        .await
        .expect_err("read_all of the damaged event must fail");
    assert_corrupt_at(&err, &segment.path, &offsets, "read_all of the damaged event");
    match store.verify().await {
        Ok(_) => panic!("verify passed a damaged log"),
        Err(err) => assert_corrupt_at(&err, &segment.path, &offsets, "verify"),
    }

    // Undamaged records still read: one in another group of the same segment, and the last events.
    let other = &fx.written[segment.groups[0].first_position as usize];
    let events = store
        .read_stream(&other.stream, ReadFrom::At(Revision(other.revision)), Direction::Forwards, 1)
        .await
        .expect("an undamaged record of the damaged segment")
        .into_events();
    assert_eq!(events.first().map(|e| e.id), Some(other.id));
    let tail = fx.written.len() - 5;
    let events = store
        .read_all(ReadFrom::At(Position(tail as u64)), Direction::Forwards, 10, &EventFilter::all())
        .await
        .expect("the last events");
    assert_events_match(&events, &fx.written[tail..], "the last events");

    // Appends go on.
    let mut written = fx.written.clone();
    append_new(&store, &mut written, &stream(STREAMS[1]), 3).await;
    let events = store
        .read_all(ReadFrom::At(Position(fx.written.len() as u64)), Direction::Forwards, 10, &EventFilter::all())
        .await
        .expect("the new events");
    assert_events_match(&events, &written[fx.written.len()..], "appended after the damage was found");
    store.close().await.unwrap();
}

/// (f) A damaged or inconsistent segment header, in any segment, refuses the open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_segment_header_refuses_open() {
    // Flipped bytes: the header checksum fails.
    let fx = Fixture::new().await;
    let path = fx.log[1].path.clone();
    flip_byte(&path, 20);
    assert_open_refused(&fx, &path, &[0], "flipped first-position byte in segment 1's header").await;

    let fx = Fixture::new().await;
    let path = fx.last_segment().path.clone();
    flip_byte(&path, 12);
    assert_open_refused(&fx, &path, &[0], "flipped segment-number byte in the last segment's header").await;

    // Valid checksums, wrong contents: the numbering and first-position checks.
    let fx = Fixture::new().await;
    let path = fx.log[1].path.clone();
    rewrite_header(&path, 0, |h| h[12..20].copy_from_slice(&1000u64.to_le_bytes()));
    assert_open_refused(&fx, &path, &[0], "segment 1's header says it is segment 1000").await;

    let fx = Fixture::new().await;
    let path = fx.log[1].path.clone();
    rewrite_header(&path, 0, |h| {
        let first = u64_at(h, 20) + 1;
        h[20..28].copy_from_slice(&first.to_le_bytes());
    });
    // Named by the header or by the first group it disagrees with.
    assert_open_refused(&fx, &path, &[0, SEGMENT_HEADER_LEN as u64], "segment 1's first position is off by one").await;

    // A missing segment: the numbering has a gap.
    let fx = Fixture::new().await;
    std::fs::remove_file(&fx.log[1].path).unwrap();
    let before = snapshot_log(&fx.dir);
    match refused(fx.open().await, "segment 1 missing") {
        StoreError::Corrupt { .. } => {}
        other => panic!("segment 1 missing: expected Corrupt, got {other:?}"),
    }
    assert_same_log(&before, &snapshot_log(&fx.dir), "segment 1 missing");
}

/// A segment of a format version this build does not know is refused as such, not misread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_segment_version_is_refused() {
    let fx = Fixture::new().await;
    let path = fx.log[0].path.clone();
    let unknown = fx.log[0].version.wrapping_add(100);
    rewrite_header(&path, 0, |h| h[8..10].copy_from_slice(&unknown.to_le_bytes()));
    let before = snapshot_log(&fx.dir);
    match refused(fx.open().await, "unknown version") {
        StoreError::UnsupportedFormat { file, .. } => {
            assert!(names_segment(&file, &path), "UnsupportedFormat names {}", file.display())
        }
        other => panic!("unknown segment version: expected UnsupportedFormat, got {other:?}"),
    }
    assert_same_log(&before, &snapshot_log(&fx.dir), "unknown version");
}

/// A crash while the next segment was being zero-filled, or before it was named, leaves
/// `log/next.seg.prep`: it never held data, so open removes it and nothing else changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leftover_prepared_segment_is_removed_on_open() {
    let fx = Fixture::new().await;
    let leftover = fx.dir.join("log").join("next.seg.prep");
    std::fs::write(&leftover, vec![0u8; 10_000]).unwrap();
    assert_recovered(&fx, None, fx.written.len() as u64, false, "a leftover next.seg.prep").await;
    assert!(!leftover.exists(), "open must remove a leftover next.seg.prep");
}

/// A rolled segment ends with its last group (the roll seals it). Zeros after its last group
/// are not preallocated space then but damage: not looked for at open, reported by `verify`
/// with the file and the offset where the data should have gone on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeros_at_the_end_of_a_rolled_segment_are_reported_by_verify() {
    let fx = Fixture::new().await;
    let segment = &fx.log[1];
    set_len(&segment.path, segment.len + 4096);
    let store = fx.open().await.unwrap_or_else(|e| panic!("open must not scan earlier segments, got {e}"));
    match store.verify().await {
        Ok(report) => panic!("verify passed a rolled segment with zeros after its last group: {report:?}"),
        Err(err) => assert_corrupt_at(&err, &segment.path, &[segment.len], "zeros after a rolled segment's data"),
    }
    store.close().await.unwrap();
}
