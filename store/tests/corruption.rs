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

#[path = "corruption/fixture.rs"]
mod fixture;
#[path = "corruption/format.rs"]
mod format;

use annals_store::engine::EmbeddedStore;
use annals_store::{Direction, EventFilter, EventStore, ReadFrom, Revision, StoreError};

use crate::pos;
use fixture::*;
use format::*;

pub const SEGMENT_SIZE: u64 = 64 * 1024;

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
        .read_all(ReadFrom::At(pos(record.position)), Direction::Forwards, 1, &EventFilter::all())
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
        .read_all(ReadFrom::At(pos(tail as u64)), Direction::Forwards, 10, &EventFilter::all())
        .await
        .expect("the last events");
    assert_events_match(&events, &fx.written[tail..], "the last events");

    // Appends go on.
    let mut written = fx.written.clone();
    append_new(&store, &mut written, &stream(STREAMS[1]), 3).await;
    let events = store
        .read_all(ReadFrom::At(pos(fx.written.len() as u64)), Direction::Forwards, 10, &EventFilter::all())
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
