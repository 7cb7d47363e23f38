//! The derived indexes, kept in fjall (an LSM tree: random-key inserts such as event ids stay
//! cheap as the index grows; measured against redb in `benches/index_choice.rs`).
//!
//! Nothing here is the source of truth. Writes are not fsynced: each batch carries the watermark
//! of the log it reflects, so after a crash the index is a consistent prefix and recovery replays
//! the log from the watermark. Keys are big-endian so that byte order is numeric order.

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use uuid::Uuid;

use crate::error::StoreError;
use crate::model::{Direction, Position, Revision};

/// Where the index stops: the next group to apply starts at `position`, in `segment` at `offset`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Watermark {
    pub position: Position,
    pub segment: u64,
    pub offset: u64,
}

/// A stream's number (streams are keyed by number in the other indexes) and its last revision.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StreamEntry {
    pub number: u64,
    pub last_revision: Revision,
}

/// Where one event's record is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RecordLocation {
    pub position: Position,
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

/// What the id index says of an event id.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IdEntry {
    pub stream_number: u64,
    pub revision: Revision,
    pub position: Position,
}

/// Bytes of log between seek points inside one group: bounds what a read from an arbitrary
/// position has to skip.
pub const SEEK_INTERVAL: u64 = 64 * 1024;

/// One record of a group, as `insert_group` indexes it.
#[derive(Clone, Copy, Debug)]
pub struct IndexedRecord {
    pub id: Uuid,
    pub entry: IdEntry,
    /// Absolute offset of the record in its segment.
    pub offset: u64,
    pub len: u32,
}

/// A place to start reading `$all`: the record of `position` is at `offset`, or, when
/// `records_left_in_group` is 0, a group header whose first event is `position` is there.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SeekPoint {
    pub position: Position,
    pub segment: u64,
    pub offset: u64,
    pub records_left_in_group: u32,
}

pub struct Index {
    db: Database,
    streams: Keyspace,
    stream_events: Keyspace,
    event_ids: Keyspace,
    seek: Keyspace,
    meta: Keyspace,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").finish_non_exhaustive()
    }
}

const WATERMARK: &[u8] = b"watermark";
const NEXT_STREAM: &[u8] = b"next_stream_number";

impl Index {
    pub fn open(dir: &Path) -> Result<Index, StoreError> {
        // The journal is what fjall replays on open; capping it (64 MiB is fjall's minimum) forces
        // memtable flushes early and keeps opens to seconds however large the index grows.
        let db = Database::builder(dir).max_journaling_size(64 * 1024 * 1024).open()?;
        let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default);
        Ok(Index {
            streams: ks("streams")?,
            stream_events: ks("stream_events")?,
            event_ids: ks("event_ids")?,
            seek: ks("seek")?,
            meta: ks("meta")?,
            db,
        })
    }

    pub fn watermark(&self) -> Result<Option<Watermark>, StoreError> {
        Ok(self.meta.get(WATERMARK)?.map(|v| Watermark {
            position: Position(be_u64(&v, 0)),
            segment: be_u64(&v, 8),
            offset: be_u64(&v, 16),
        }))
    }

    pub fn next_stream_number(&self) -> Result<u64, StoreError> {
        Ok(self.meta.get(NEXT_STREAM)?.map_or(0, |v| be_u64(&v, 0)))
    }

    pub fn stream(&self, name: &str) -> Result<Option<StreamEntry>, StoreError> {
        Ok(self
            .streams
            .get(name.as_bytes())?
            .map(|v| StreamEntry { number: be_u64(&v, 0), last_revision: Revision(be_u64(&v, 8)) }))
    }

    pub fn event_id(&self, id: Uuid) -> Result<Option<IdEntry>, StoreError> {
        Ok(self.event_ids.get(id.as_bytes())?.map(|v| IdEntry {
            stream_number: be_u64(&v, 0),
            revision: Revision(be_u64(&v, 8)),
            position: Position(be_u64(&v, 16)),
        }))
    }

    /// Up to `max` records of stream `number` from revision `from` (included) in `direction`,
    /// counting only those for which `visible` holds.
    pub fn stream_range(
        &self,
        number: u64,
        from: Revision,
        direction: Direction,
        max: usize,
        visible: impl Fn(&RecordLocation) -> bool,
    ) -> Result<Vec<RecordLocation>, StoreError> {
        let key = |rev: u64| stream_event_key(number, Revision(rev));
        let iter = match direction {
            Direction::Forwards => Box::new(self.stream_events.range(key(from.0)..=key(u64::MAX)))
                as Box<dyn Iterator<Item = fjall::Guard>>,
            Direction::Backwards => Box::new(self.stream_events.range(key(0)..=key(from.0)).rev()),
        };
        let mut out = Vec::new();
        for guard in iter {
            if out.len() == max {
                break;
            }
            let location = decode_location(&guard.value()?);
            if visible(&location) {
                out.push(location);
            } else if direction == Direction::Forwards {
                // Positions grow with revisions: nothing further on is visible either.
                break;
            }
        }
        Ok(out)
    }

    /// Where revision `revision` of stream `number` is.
    pub fn stream_event(&self, number: u64, revision: Revision) -> Result<Option<RecordLocation>, StoreError> {
        Ok(self.stream_events.get(stream_event_key(number, revision))?.map(|v| decode_location(&v)))
    }

    /// The last seek point at or before `position`.
    pub fn seek_point(&self, position: Position) -> Result<Option<SeekPoint>, StoreError> {
        match self.seek.range(..=position.0.to_be_bytes()).next_back() {
            None => Ok(None),
            Some(guard) => {
                let (k, v) = guard.into_inner()?;
                Ok(Some(SeekPoint {
                    position: Position(be_u64(&k, 0)),
                    segment: be_u64(&v, 0),
                    offset: be_u64(&v, 8),
                    records_left_in_group: u32::from_be_bytes(v[16..20].try_into().expect("4 bytes")),
                }))
            }
        }
    }

    pub fn batch(&self) -> IndexBatch {
        IndexBatch { batch: self.db.batch(), events: 0 }
    }

    pub fn insert_stream(&self, b: &mut IndexBatch, name: &str, entry: StreamEntry) {
        let mut v = [0u8; 16];
        v[0..8].copy_from_slice(&entry.number.to_be_bytes());
        v[8..16].copy_from_slice(&entry.last_revision.0.to_be_bytes());
        b.batch.insert(&self.streams, name.as_bytes(), v);
    }

    fn insert_event(&self, b: &mut IndexBatch, id: Uuid, entry: IdEntry, location: RecordLocation) {
        let mut v = [0u8; 28];
        v[0..8].copy_from_slice(&location.position.0.to_be_bytes());
        v[8..16].copy_from_slice(&location.segment.to_be_bytes());
        v[16..24].copy_from_slice(&location.offset.to_be_bytes());
        v[24..28].copy_from_slice(&location.len.to_be_bytes());
        b.batch.insert(&self.stream_events, stream_event_key(entry.stream_number, entry.revision), v);
        let mut v = [0u8; 24];
        v[0..8].copy_from_slice(&entry.stream_number.to_be_bytes());
        v[8..16].copy_from_slice(&entry.revision.0.to_be_bytes());
        v[16..24].copy_from_slice(&entry.position.0.to_be_bytes());
        b.batch.insert(&self.event_ids, *id.as_bytes(), v);
        b.events += 1;
    }

    fn insert_seek_point(&self, b: &mut IndexBatch, point: SeekPoint) {
        let mut v = [0u8; 20];
        v[0..8].copy_from_slice(&point.segment.to_be_bytes());
        v[8..16].copy_from_slice(&point.offset.to_be_bytes());
        v[16..20].copy_from_slice(&point.records_left_in_group.to_be_bytes());
        b.batch.insert(&self.seek, point.position.0.to_be_bytes(), v);
    }

    /// Indexes one group's records: the stream and id entries of each, a seek point at the group
    /// header, and one every `SEEK_INTERVAL` bytes inside large groups.
    pub fn insert_group(&self, b: &mut IndexBatch, segment: u64, group_offset: u64, records: &[IndexedRecord]) {
        let Some(first) = records.first() else { return };
        self.insert_seek_point(
            b,
            SeekPoint { position: first.entry.position, segment, offset: group_offset, records_left_in_group: 0 },
        );
        let mut last_seek = group_offset;
        for (i, record) in records.iter().enumerate() {
            if record.offset - last_seek >= SEEK_INTERVAL {
                last_seek = record.offset;
                let left = (records.len() - i) as u32;
                let point = SeekPoint {
                    position: record.entry.position,
                    segment,
                    offset: record.offset,
                    records_left_in_group: left,
                };
                self.insert_seek_point(b, point);
            }
            let location =
                RecordLocation { position: record.entry.position, segment, offset: record.offset, len: record.len };
            self.insert_event(b, record.id, record.entry, location);
        }
    }

    /// Adds the watermark and stream counter to `b` and commits it atomically (not fsynced).
    pub fn commit(&self, mut b: IndexBatch, watermark: Watermark, next_stream_number: u64) -> Result<(), StoreError> {
        let mut v = [0u8; 24];
        v[0..8].copy_from_slice(&watermark.position.0.to_be_bytes());
        v[8..16].copy_from_slice(&watermark.segment.to_be_bytes());
        v[16..24].copy_from_slice(&watermark.offset.to_be_bytes());
        b.batch.insert(&self.meta, WATERMARK, v);
        b.batch.insert(&self.meta, NEXT_STREAM, next_stream_number.to_be_bytes());
        b.batch.commit()?;
        Ok(())
    }

    /// Flushes fjall's journal to disk (at close, so the next open has nothing to replay).
    pub fn persist(&self) -> Result<(), StoreError> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}

/// Index writes gathered for one atomic commit.
pub struct IndexBatch {
    batch: fjall::OwnedWriteBatch,
    events: usize,
}

impl IndexBatch {
    pub fn events(&self) -> usize {
        self.events
    }
}

fn decode_location(v: &[u8]) -> RecordLocation {
    RecordLocation {
        position: Position(be_u64(v, 0)),
        segment: be_u64(v, 8),
        offset: be_u64(v, 16),
        len: u32::from_be_bytes(v[24..28].try_into().expect("4 bytes")),
    }
}

fn stream_event_key(number: u64, revision: Revision) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[0..8].copy_from_slice(&number.to_be_bytes());
    k[8..16].copy_from_slice(&revision.0.to_be_bytes());
    k
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
