//! Reads: `read_stream` through the stream index and positioned reads of single records, and the
//! [`LogCursor`] that walks groups and segments in order (`all.rs` reads `$all` with it). Readers see only what the
//! published head covers (invariant 4 of the module doc) and verify every record they decode.

use std::sync::Arc;

use bytes::Bytes;

use super::format::{self, DecodeCache, GroupHeader, HeaderError, GROUP_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::index::{Chunk, SeekPoint};
use super::segment::Segment;
use super::shared::Shared;
use crate::error::StoreError;
use crate::model::{Direction, Position, ReadFrom, ReadStreamOutcome, RecordedEvent, Revision, StreamId};

/// How much of a segment one read fetches when walking the log.
const CHUNK: usize = 1024 * 1024;

/// Up to `max_count` events of `stream`, and at most `max_bytes` of them (`RecordedEvent::size`)
/// past the first; and whether the byte bound ended the read.
pub fn read_stream(
    shared: &Shared,
    stream: &StreamId,
    from: ReadFrom<Revision>,
    direction: Direction,
    max_count: usize,
    max_bytes: usize,
) -> Result<(ReadStreamOutcome, bool), StoreError> {
    let index = shared.index()?;
    let head = shared.head().position;
    let Some(entry) = index.stream(stream.as_str())? else {
        return Ok((ReadStreamOutcome::StreamNotFound, false));
    };
    // The writer indexes a group just before it publishes the head: events at or past the head
    // are not acknowledged yet and must look absent, down to the stream itself. A chunk lies
    // within one group, so it is published whole or not at all.
    if index.first_chunk(entry.number)?.is_none_or(|c| c.first_position >= head) {
        return Ok((ReadStreamOutcome::StreamNotFound, false));
    }
    let from = match (from, direction) {
        (ReadFrom::Start, _) => Revision(0),
        (ReadFrom::End, Direction::Forwards) => entry.last_revision.next(),
        (ReadFrom::End, Direction::Backwards) => entry.last_revision,
        (ReadFrom::After(r), Direction::Forwards) => r.next(),
        (ReadFrom::After(r), Direction::Backwards) => match r.0.checked_sub(1) {
            Some(before) => Revision(before),
            None => return Ok((ReadStreamOutcome::Events(Vec::new()), false)),
        },
        (ReadFrom::At(r), _) => r,
    };
    let mut events = Vec::new();
    let mut bytes = 0usize;
    if max_count == 0 {
        return Ok((ReadStreamOutcome::Events(events), false));
    }
    for chunk in index.chunks(entry.number, from, direction)? {
        let chunk = chunk?;
        if chunk.first_position >= head {
            match direction {
                Direction::Forwards => break,
                Direction::Backwards => continue,
            }
        }
        let records = read_chunk(shared, &chunk, stream)?;
        let wanted = |e: &RecordedEvent| match direction {
            Direction::Forwards => e.revision >= from,
            Direction::Backwards => e.revision <= from,
        };
        let ordered: Box<dyn Iterator<Item = RecordedEvent>> = match direction {
            Direction::Forwards => Box::new(records.into_iter()),
            Direction::Backwards => Box::new(records.into_iter().rev()),
        };
        for event in ordered.filter(wanted) {
            bytes = bytes.saturating_add(event.size());
            if !events.is_empty() && bytes > max_bytes {
                return Ok((ReadStreamOutcome::Events(events), true));
            }
            events.push(event);
            if events.len() == max_count {
                return Ok((ReadStreamOutcome::Events(events), false));
            }
        }
    }
    Ok((ReadStreamOutcome::Events(events), false))
}

/// Reads and checks every record of a chunk, in revision order.
fn read_chunk(shared: &Shared, chunk: &Chunk, stream: &StreamId) -> Result<Vec<RecordedEvent>, StoreError> {
    read_run(shared, chunk.segment, chunk.offset, chunk.bytes, chunk.count, |i, event| {
        let matches = event.stream == *stream
            && event.revision.0 == chunk.first_revision.0 + i
            && event.position.0 == chunk.first_position.0 + i;
        (!matches).then(|| {
            format!(
                "index expects {stream}@{} at position {}, record holds {}@{} at {}",
                chunk.first_revision.0 + i,
                chunk.first_position.0 + i,
                event.stream,
                event.revision,
                event.position
            )
        })
    })
}

/// Reads the `count` records stored back to back at `offset` of a segment with one positioned
/// read, checksum-verifying each, and asks `mismatch(i, event)` whether the `i`-th is the one the
/// index promised (`Some(reason)` when not): the one way runs named by an index (stream chunks,
/// namespace chunks) are read.
pub(super) fn read_run(
    shared: &Shared,
    segment: u64,
    offset: u64,
    bytes: u32,
    count: u32,
    mismatch: impl Fn(u64, &RecordedEvent) -> Option<String>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let segment = shared.segment(segment)?;
    let data = segment.read_exact(offset, bytes as usize)?;
    let mut events = Vec::with_capacity(count as usize);
    let mut cache = DecodeCache::default();
    let mut at = 0usize;
    for i in 0..u64::from(count) {
        let offset = offset + at as u64;
        let corrupt = |reason: String| StoreError::Corrupt { file: segment.path.clone(), offset, reason };
        let (event, len) = format::decode_record(&data.slice(at..), &mut cache).map_err(corrupt)?;
        if let Some(reason) = mismatch(i, &event) {
            return Err(corrupt(reason));
        }
        at += len;
        events.push(event);
    }
    Ok(events)
}

/// Walks the log forwards from a seek point, record by record, up to (excluding) `end`.
pub struct LogCursor<'a> {
    shared: &'a Shared,
    segment: Arc<Segment>,
    offset: u64,
    records_left: u32,
    position: Position,
    /// The first position from which events are returned (earlier ones are skipped).
    pub start: Position,
    end: Position,
    chunk: Bytes,
    chunk_start: u64,
    cache: DecodeCache,
}

impl<'a> LogCursor<'a> {
    pub fn at(shared: &'a Shared, point: SeekPoint, end: Position) -> Result<Self, StoreError> {
        Ok(LogCursor {
            shared,
            segment: shared.segment(point.segment)?,
            offset: point.offset,
            records_left: point.records_left_in_group,
            position: point.position,
            start: point.position,
            end,
            chunk: Bytes::new(),
            chunk_start: 0,
            cache: DecodeCache::default(),
        })
    }

    pub fn next(&mut self) -> Result<Option<RecordedEvent>, StoreError> {
        loop {
            if self.position >= self.end {
                return Ok(None);
            }
            if self.records_left == 0 {
                self.enter_group()?;
            }
            let offset = self.offset;
            let len_word = self.bytes(offset, 4)?;
            let len = format::peek_record_len(&len_word).expect("4 bytes");
            let record = self.bytes(offset, len)?;
            let (event, _) =
                format::decode_record(&record, &mut self.cache).map_err(|reason| self.corrupt(offset, reason))?;
            if event.position != self.position {
                let reason = format!("record holds position {}, expected {}", event.position, self.position);
                return Err(self.corrupt(offset, reason));
            }
            self.offset += len as u64;
            self.records_left -= 1;
            self.position = self.position.next();
            if event.position >= self.start {
                return Ok(Some(event));
            }
        }
    }

    /// Reads the group header at the cursor, moving to the next segment when this one is done.
    fn enter_group(&mut self) -> Result<(), StoreError> {
        if let Some(next) = self.shared.segments.get(self.segment.number + 1) {
            if next.first_position <= self.position {
                self.segment = next;
                self.offset = SEGMENT_HEADER_LEN as u64;
                self.chunk = Bytes::new();
            }
        }
        let offset = self.offset;
        let bytes = self.bytes(offset, GROUP_HEADER_LEN)?;
        let header = GroupHeader::decode(&bytes).map_err(|e| match e {
            HeaderError::Damaged(reason) | HeaderError::Unknown(reason) => self.corrupt(offset, reason),
        })?;
        if header.first_position != self.position || header.event_count == 0 {
            let reason = format!("group starts at position {}, expected {}", header.first_position, self.position);
            return Err(self.corrupt(offset, reason));
        }
        self.offset += GROUP_HEADER_LEN as u64;
        self.records_left = header.event_count;
        Ok(())
    }

    /// `len` bytes at `offset` of the current segment, from the buffered chunk when it has them.
    fn bytes(&mut self, offset: u64, len: usize) -> Result<Bytes, StoreError> {
        let in_chunk = offset >= self.chunk_start && offset + len as u64 <= self.chunk_start + self.chunk.len() as u64;
        if !in_chunk {
            // In the segment the head is in, the published bytes end at the head's offset; past
            // it lie preallocated zeros. A live subscriber woken for a few new events used to read
            // (and allocate, zero and copy) a whole chunk of them per wake-up: most of the CPU a
            // live tail cost, taken from the API's workers (BENCHMARKS.md, 2026-11-30 evening).
            let head = self.shared.head();
            let published = if head.segment == self.segment.number {
                usize::try_from(head.offset.saturating_sub(offset)).unwrap_or(usize::MAX)
            } else {
                CHUNK
            };
            self.chunk = self.segment.read_up_to(offset, published.min(CHUNK).max(len))?;
            self.chunk_start = offset;
            if self.chunk.len() < len {
                return Err(self.corrupt(offset, format!("{len} bytes expected, segment ends")));
            }
        }
        let at = (offset - self.chunk_start) as usize;
        Ok(self.chunk.slice(at..at + len))
    }

    fn corrupt(&self, offset: u64, reason: String) -> StoreError {
        StoreError::Corrupt { file: self.segment.path.clone(), offset, reason }
    }
}
