//! Recovery on open and `verify`: one scanner walks groups and records and checks every byte; the
//! callers decide what a damaged group means (see "Recovery" in the module doc of `engine`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

use super::format::{self, GroupHeader, HeaderError, GROUP_HEADER_LEN, GROUP_MAGIC, SEGMENT_HEADER_LEN};
use super::index::{IdEntry, Index, IndexedRecord, StreamEntry, Watermark};
use super::segment::{self, list_segments, sync_dir, FileBudget, Segment, VerifyReport};
use crate::error::StoreError;
use crate::model::Position;

/// What an open found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// A torn tail that was cut off.
    pub truncated: Option<TruncatedTail>,
    /// A last segment whose creation was interrupted (no valid header, nothing in it), removed.
    pub removed_segment: Option<PathBuf>,
    /// Events indexed from the log because the index was behind it.
    pub reindexed_events: u64,
    /// The index was ahead of the log (after a truncation), or of an older layout
    /// (`index::LAYOUT`), and was rebuilt from position 0.
    pub index_rebuilt: bool,
}

/// A torn or damaged last group, truncated on open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruncatedTail {
    pub segment: PathBuf,
    /// Where the damaged group started; the file now ends here.
    pub offset: u64,
    /// The position the next append gets.
    pub position: Position,
    /// From `offset` to the last non-zero byte of the file: zeros past it cannot be told from
    /// preallocated space, so they are not counted.
    pub bytes_dropped: u64,
    pub reason: String,
}

/// The state recovery hands to the store.
pub struct Recovered {
    pub segments: Vec<Arc<Segment>>,
    pub budget: Arc<FileBudget>,
    pub index: Index,
    pub next_position: Position,
    pub end_offset: u64,
    pub next_stream_number: u64,
    pub report: RecoveryReport,
}

pub fn recover(log_dir: &Path, index_dir: &Path, max_open_segments: usize) -> Result<Recovered, StoreError> {
    let mut report = RecoveryReport::default();
    let budget = FileBudget::new(max_open_segments);
    let mut segments = open_segments(log_dir, &budget, &mut report)?;
    if segments.is_empty() {
        segments.push(Arc::new(Segment::create(log_dir, 0, Position(0), &budget)?));
    }
    let mut index = Index::open(index_dir)?;
    if !index.has_current_layout()? {
        warn!(index = %index_dir.display(), layout = super::index::LAYOUT,
            "the index was written in an older layout; rebuilding it from the log");
        drop(index);
        std::fs::remove_dir_all(index_dir).map_err(StoreError::io("remove index", index_dir))?;
        index = Index::open(index_dir)?;
        index.has_current_layout()?;
        report.index_rebuilt = true;
    }
    loop {
        match scan_and_index(&segments, &index, &mut report)? {
            Some(recovered) => {
                let (next_position, end_offset, next_stream_number) = recovered;
                // Only now that the log is known good: a refused open changes nothing.
                segment::remove_prepared(log_dir)?;
                return Ok(Recovered {
                    segments,
                    budget,
                    index,
                    next_position,
                    end_offset,
                    next_stream_number,
                    report,
                });
            }
            None => {
                warn!(index = %index_dir.display(), "index is ahead of the log; rebuilding it from position 0");
                drop(index);
                std::fs::remove_dir_all(index_dir).map_err(StoreError::io("remove index", index_dir))?;
                index = Index::open(index_dir)?;
                index.has_current_layout()?;
                report.index_rebuilt = true;
                report.reindexed_events = 0;
            }
        }
    }
}

/// Checks every group of every segment up to `end` (the published head).
pub fn verify(segments: &[Arc<Segment>], end: Position) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport { segments: segments.len(), ..VerifyReport::default() };
    let first = segments.first().map_or(Position(0), |s| s.first_position);
    let mut scanner = Scanner { segments, seg: 0, offset: SEGMENT_HEADER_LEN as u64, position: first };
    while scanner.position < end {
        match scanner.next_group()? {
            Step::Group(group) => {
                report.groups += 1;
                report.events += group.records.len() as u64;
                report.bytes += group.header.total_len();
            }
            Step::End => break,
            Step::Damaged { reason, .. } => return Err(scanner.corrupt(reason)),
        }
    }
    Ok(report)
}

type Recovery = (Position, u64, u64);

/// Scans from the index's watermark (or the start of the last segment, whichever is earlier) to
/// the end, indexing what the index lacks. `None`: the index is ahead of the log.
fn scan_and_index(
    segments: &[Arc<Segment>],
    index: &Index,
    report: &mut RecoveryReport,
) -> Result<Option<Recovery>, StoreError> {
    let last = segments.last().expect("at least one segment");
    let watermark = index.watermark()?;
    let (seg, offset, position) = match watermark {
        Some(w) if w.segment > last.number => return Ok(None),
        Some(w) if w.segment < last.number => ((w.segment - segments[0].number) as usize, w.offset, w.position),
        // The last segment is always verified in full, even when the index covers it.
        Some(_) => (segments.len() - 1, SEGMENT_HEADER_LEN as u64, last.first_position),
        None => (0, SEGMENT_HEADER_LEN as u64, segments[0].first_position),
    };
    let mut scanner = Scanner { segments, seg, offset, position };
    let mut next_stream_number = index.next_stream_number()?;
    let mut streams: HashMap<String, StreamEntry> = HashMap::new();
    let mut namespaces: HashMap<String, Arc<str>> = HashMap::new();
    let mut batch = index.batch();
    let at_or_past_watermark =
        |s: &Scanner<'_>| watermark.is_none_or(|w| (s.segments[s.seg].number, s.offset) >= (w.segment, w.offset));
    loop {
        if let Some(w) = watermark {
            if (segments[scanner.seg].number, scanner.offset) == (w.segment, w.offset) && scanner.position != w.position
            {
                return Ok(None);
            }
        }
        let indexing = at_or_past_watermark(&scanner);
        match scanner.next_group()? {
            Step::Group(group) => {
                if !indexing {
                    continue;
                }
                let segment = &segments[scanner.seg];
                let mut records = Vec::with_capacity(group.records.len());
                for r in &group.records {
                    let entry = match streams.get(&r.stream) {
                        Some(e) => Some(*e),
                        None => index.stream(&r.stream)?,
                    };
                    let number = match entry {
                        Some(e) if e.last_revision.0 + 1 == r.revision.0 => e.number,
                        None if r.revision.0 == 0 => {
                            next_stream_number += 1;
                            next_stream_number - 1
                        }
                        _ => {
                            let reason =
                                format!("stream {} continues at revision {}, out of order", r.stream, r.revision);
                            return Err(StoreError::Corrupt { file: segment.path.clone(), offset: r.offset, reason });
                        }
                    };
                    streams.insert(r.stream.clone(), StreamEntry { number, last_revision: r.revision });
                    let entry = IdEntry { stream_number: number, revision: r.revision, position: r.position };
                    let ns = crate::model::namespace_of(&r.stream);
                    let namespace = match namespaces.get(ns) {
                        Some(shared) => Arc::clone(shared),
                        None => Arc::clone(namespaces.entry(ns.to_owned()).or_insert_with(|| Arc::from(ns))),
                    };
                    records.push(IndexedRecord { namespace, id: r.id, entry, offset: r.offset, len: r.len });
                }
                index.insert_group(&mut batch, segment.number, group.offset, &records);
                report.reindexed_events += records.len() as u64;
                if batch.events() >= 100_000 {
                    flush(
                        index,
                        std::mem::replace(&mut batch, index.batch()),
                        &mut streams,
                        &scanner,
                        next_stream_number,
                    )?;
                }
            }
            Step::End => break,
            Step::Damaged { reason, header_valid } => {
                let segment = &segments[scanner.seg];
                if scanner.seg + 1 != segments.len() || header_valid || valid_group_after(segment, scanner.offset + 1)?
                {
                    let reason = format!("{reason}; the damage is not at the tail, so it is not a torn write");
                    return Err(scanner.corrupt(reason));
                }
                let dropped = segment.nonzero_end(scanner.offset)?.map_or(0, |end| end - scanner.offset);
                warn!(segment = %segment.path.display(), offset = scanner.offset, position = scanner.position.0,
                    bytes = dropped, reason = %reason, "truncating torn tail");
                segment.truncate(scanner.offset)?;
                report.truncated = Some(TruncatedTail {
                    segment: segment.path.clone(),
                    offset: scanner.offset,
                    position: scanner.position,
                    bytes_dropped: dropped,
                    reason,
                });
                break;
            }
        }
    }
    if !at_or_past_watermark(&scanner) {
        return Ok(None);
    }
    flush(index, batch, &mut streams, &scanner, next_stream_number)?;
    if report.reindexed_events > 0 {
        info!(events = report.reindexed_events, "indexed the log tail");
    }
    Ok(Some((scanner.position, scanner.offset, next_stream_number)))
}

fn flush(
    index: &Index,
    mut batch: super::index::IndexBatch,
    streams: &mut HashMap<String, StreamEntry>,
    scanner: &Scanner<'_>,
    next_stream_number: u64,
) -> Result<(), StoreError> {
    for (name, entry) in streams.drain() {
        index.insert_stream(&mut batch, &name, entry);
    }
    let watermark =
        Watermark { position: scanner.position, segment: scanner.segments[scanner.seg].number, offset: scanner.offset };
    index.commit(batch, watermark, next_stream_number)
}

fn open_segments(
    log_dir: &Path,
    budget: &Arc<FileBudget>,
    report: &mut RecoveryReport,
) -> Result<Vec<Arc<Segment>>, StoreError> {
    let listed = list_segments(log_dir)?;
    let mut segments = Vec::with_capacity(listed.len());
    for (i, (number, path)) in listed.iter().enumerate() {
        match Segment::open(path.clone(), budget) {
            // The header agrees with the first group, checked while the file is open anyway
            // (checking after the loop would reopen every file the budget has closed since).
            Ok(segment) if segment.number == *number => {
                check_first_group(&segment)?;
                segments.push(Arc::new(segment));
            }
            Ok(segment) => {
                let reason = format!("file name says segment {number}, header says {}", segment.number);
                return Err(StoreError::Corrupt { file: path.clone(), offset: 0, reason });
            }
            // A crash while creating the last segment leaves it without a whole header; nothing
            // was ever acknowledged in it.
            Err(StoreError::Corrupt { .. })
                if i + 1 == listed.len()
                    && std::fs::metadata(path).map_err(StoreError::io("stat", path))?.len()
                        <= SEGMENT_HEADER_LEN as u64 =>
            {
                warn!(segment = %path.display(), "removing a segment whose creation was interrupted");
                std::fs::remove_file(path).map_err(StoreError::io("remove segment", path))?;
                sync_dir(log_dir)?;
                report.removed_segment = Some(path.clone());
            }
            Err(e) => return Err(e),
        }
    }
    // Every segment but the last holds at least one group (a segment is created to take one), so
    // first positions strictly increase (each agrees with its first group, checked above).
    for pair in segments.windows(2) {
        if pair[1].first_position <= pair[0].first_position {
            let reason = format!("segment starts at position {}, not after its predecessor", pair[1].first_position);
            return Err(StoreError::Corrupt { file: pair[1].path.clone(), offset: 0, reason });
        }
    }
    Ok(segments)
}

fn check_first_group(segment: &Segment) -> Result<(), StoreError> {
    if let Some(first) = segment.first_group_position()? {
        if first != segment.first_position {
            let reason = format!(
                "segment header says it starts at position {}, its first group starts at {first}",
                segment.first_position
            );
            return Err(StoreError::Corrupt { file: segment.path.clone(), offset: 0, reason });
        }
    }
    Ok(())
}

/// Whether a group header with a valid checksum starts anywhere in `segment` from `from` on.
fn valid_group_after(segment: &Segment, from: u64) -> Result<bool, StoreError> {
    const STEP: usize = 1 << 20;
    let magic = GROUP_MAGIC.to_le_bytes();
    let mut at = from;
    loop {
        let chunk = segment.read_up_to(at, STEP + GROUP_HEADER_LEN)?;
        if chunk.len() < GROUP_HEADER_LEN {
            return Ok(false);
        }
        for i in 0..=chunk.len() - GROUP_HEADER_LEN {
            if chunk[i..i + 4] == magic && GroupHeader::decode(&chunk[i..]).is_ok() {
                return Ok(true);
            }
        }
        at += (chunk.len() - GROUP_HEADER_LEN + 1) as u64;
    }
}

struct Scanner<'a> {
    segments: &'a [Arc<Segment>],
    seg: usize,
    offset: u64,
    position: Position,
}

struct ScannedRecord {
    stream: String,
    revision: crate::model::Revision,
    position: Position,
    id: uuid::Uuid,
    offset: u64,
    len: u32,
}

struct ScannedGroup {
    /// Where the group starts in the scanner's (current) segment.
    offset: u64,
    header: GroupHeader,
    records: Vec<ScannedRecord>,
}

enum Step {
    Group(ScannedGroup),
    End,
    /// The group at the scanner's offset fails a check. `header_valid`: its header was intact
    /// (so it was not torn at the start, but its content is wrong).
    Damaged {
        reason: String,
        header_valid: bool,
    },
}

impl Scanner<'_> {
    /// Checks the group at the cursor and moves past it.
    fn next_group(&mut self) -> Result<Step, StoreError> {
        let mut segment = &self.segments[self.seg];
        let mut len = segment.len()?;
        if self.offset >= len {
            let Some(next) = self.segments.get(self.seg + 1) else { return Ok(Step::End) };
            if next.first_position != self.position {
                let reason = format!("segment starts at position {}, expected {}", next.first_position, self.position);
                return Err(StoreError::Corrupt { file: next.path.clone(), offset: 0, reason });
            }
            self.seg += 1;
            self.offset = SEGMENT_HEADER_LEN as u64;
            segment = &self.segments[self.seg];
            len = segment.len()?;
            if self.offset >= len {
                return Ok(Step::End);
            }
        }
        let header_bytes = segment.read_up_to(self.offset, GROUP_HEADER_LEN)?;
        // Zeros where a group would start: the end of the log if only zeros follow (preallocated
        // space), else a group torn so that its first sector never reached the disk.
        if header_bytes.iter().all(|b| *b == 0) {
            return Ok(match segment.nonzero_end(self.offset)? {
                None if self.seg + 1 == self.segments.len() => Step::End,
                None => Step::Damaged {
                    reason: "zeros where a group should start, in a segment that is not the last \
                        (a rolled segment ends with its last group)"
                        .into(),
                    header_valid: false,
                },
                Some(end) => Step::Damaged {
                    reason: format!(
                        "zeros where a group header should be, non-zero bytes after them up to offset {end}"
                    ),
                    header_valid: false,
                },
            });
        }
        let header = match GroupHeader::decode(&header_bytes) {
            Ok(h) => h,
            Err(HeaderError::Damaged(reason)) => return Ok(Step::Damaged { reason, header_valid: false }),
            Err(HeaderError::Unknown(reason)) => {
                return Err(StoreError::UnsupportedFormat { file: segment.path.clone(), reason })
            }
        };
        let damaged = |reason: String| Ok(Step::Damaged { reason, header_valid: false });
        if header.first_position != self.position {
            let reason = format!("group starts at position {}, expected {}", header.first_position, self.position);
            return Ok(Step::Damaged { reason, header_valid: true });
        }
        if self.offset + header.total_len() > len {
            return damaged(format!("group of {} bytes extends past the end of the file", header.total_len()));
        }
        let payload = segment.read_exact(self.offset + GROUP_HEADER_LEN as u64, header.payload_len as usize)?;
        let mut records = Vec::with_capacity(header.event_count as usize);
        let mut at = 0usize;
        for i in 0..u64::from(header.event_count) {
            let (rlen, position, revision, id, stream) = match format::check_record(&payload[at..]) {
                Ok(r) => r,
                Err(reason) => return damaged(format!("record {i} of the group: {reason}")),
            };
            if position.0 != self.position.0 + i {
                return damaged(format!("record {i} holds position {position}, expected {}", self.position.0 + i));
            }
            records.push(ScannedRecord {
                stream: stream.to_owned(),
                revision,
                position,
                id,
                offset: self.offset + (GROUP_HEADER_LEN + at) as u64,
                len: rlen as u32,
            });
            at += rlen;
        }
        if at != payload.len() {
            return damaged(format!("records take {at} bytes of a {}-byte payload", payload.len()));
        }
        let offset = self.offset;
        self.offset += header.total_len();
        self.position = Position(self.position.0 + u64::from(header.event_count));
        Ok(Step::Group(ScannedGroup { offset, header, records }))
    }

    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt { file: self.segments[self.seg].path.clone(), offset: self.offset, reason }
    }
}
