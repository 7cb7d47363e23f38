//! The derived indexes, kept in fjall (an LSM tree: random-key inserts such as event ids stay
//! cheap as the index grows; measured against redb in `benches/index_choice.rs`).
//!
//! Nothing here is the source of truth. Writes are not fsynced: each batch carries the watermark
//! of the log it reflects, so after a crash the index is a consistent prefix and recovery replays
//! the log from the watermark. Keys are big-endian so that byte order is numeric order.

use std::path::Path;
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use uuid::Uuid;

use super::keys::{
    be_u64, decode_chunk, decode_id_entry, decode_namespace_chunk, id_key, namespace_chunk_key, stream_chunk_key,
};
pub use super::keys::{Chunk, IdEntry, NamespaceChunk};
use crate::error::{index_error, StoreError};
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

/// Largest chunk, in bytes of records: bounds what a stream read decodes to reach one revision.
pub const CHUNK_BYTES: u32 = 64 * 1024;

/// Bytes of log between seek points inside one group: bounds what a read from an arbitrary
/// position has to skip.
pub const SEEK_INTERVAL: u64 = 64 * 1024;

/// One record of a group, as `insert_group` indexes it.
#[derive(Clone, Debug)]
pub struct IndexedRecord {
    /// The namespace of the record's stream (`StreamId::namespace`): the scope of its id, and
    /// the run it belongs to in `namespace_chunks`.
    pub namespace: Arc<str>,
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

/// The layout of the index's keys and values. An index of another layout (or of none: before
/// the marker existed, ids were global and `namespace_chunks` did not exist) is deleted and
/// rebuilt from the log on open; the index is derived, so nothing is lost.
/// 2: event ids keyed by (namespace, id); `namespace_chunks` added.
pub const LAYOUT: u32 = 2;

pub struct Index {
    db: Database,
    streams: Keyspace,
    stream_chunks: Keyspace,
    /// (namespace, 0, id) → stream number, revision, position. Ids are unique per namespace.
    event_ids: Keyspace,
    /// (namespace, 0, first position) → segment, offset, count, bytes.
    namespace_chunks: Keyspace,
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
const LAYOUT_KEY: &[u8] = b"layout";

impl Index {
    pub fn open(dir: &Path) -> Result<Index, StoreError> {
        // The journal is what fjall replays on open; capping it (64 MiB is fjall's minimum) forces
        // memtable flushes early and keeps opens to seconds however large the index grows.
        let db = Database::builder(dir).max_journaling_size(64 * 1024 * 1024).open().map_err(index_error)?;
        let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default);
        Ok(Index {
            streams: ks("streams").map_err(index_error)?,
            stream_chunks: ks("stream_chunks").map_err(index_error)?,
            event_ids: ks("event_ids").map_err(index_error)?,
            namespace_chunks: ks("namespace_chunks").map_err(index_error)?,
            seek: ks("seek").map_err(index_error)?,
            meta: ks("meta").map_err(index_error)?,
            db,
        })
    }

    /// Whether this index has the layout this build reads: true for an empty index (which it
    /// then marks), false for one written by a build of another layout, which must be rebuilt.
    pub fn has_current_layout(&self) -> Result<bool, StoreError> {
        match self.meta.get(LAYOUT_KEY).map_err(index_error)? {
            Some(v) => Ok(v.len() == 4 && u32::from_be_bytes(v[..4].try_into().expect("4 bytes")) == LAYOUT),
            None if self.watermark()?.is_none() => {
                self.meta.insert(LAYOUT_KEY, LAYOUT.to_be_bytes()).map_err(index_error)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub fn watermark(&self) -> Result<Option<Watermark>, StoreError> {
        Ok(self.meta.get(WATERMARK).map_err(index_error)?.map(|v| Watermark {
            position: Position(be_u64(&v, 0)),
            segment: be_u64(&v, 8),
            offset: be_u64(&v, 16),
        }))
    }

    pub fn next_stream_number(&self) -> Result<u64, StoreError> {
        Ok(self.meta.get(NEXT_STREAM).map_err(index_error)?.map_or(0, |v| be_u64(&v, 0)))
    }

    pub fn stream(&self, name: &str) -> Result<Option<StreamEntry>, StoreError> {
        Ok(self
            .streams
            .get(name.as_bytes())
            .map_err(index_error)?
            .map(|v| StreamEntry { number: be_u64(&v, 0), last_revision: Revision(be_u64(&v, 8)) }))
    }

    /// What `namespace` holds under `id` (ids of other namespaces are invisible here).
    pub fn event_id(&self, namespace: &str, id: Uuid) -> Result<Option<IdEntry>, StoreError> {
        Ok(self.event_ids.get(id_key(namespace, id)).map_err(index_error)?.map(|v| decode_id_entry(&v)))
    }

    /// Looks up many ids at once. Time-ordered ids (UUIDv7, what annals generates) of one batch sit
    /// close together in key order, so one range scan over their span finds any stored ones for
    /// the cost of a single lookup. When the span holds many more stored ids than the batch has
    /// (scattered v4 ids), it falls back to a point lookup per id.
    pub fn event_ids(&self, namespace: &str, ids: &[Uuid]) -> Result<Vec<Option<IdEntry>>, StoreError> {
        let (Some(min), Some(max)) = (ids.iter().min(), ids.iter().max()) else { return Ok(Vec::new()) };
        if ids.len() >= 8 {
            // Recent groups' ids share the span; past this many, point lookups are cheaper.
            let limit = ids.len() * 4 + 64;
            let mut found = std::collections::HashMap::new();
            let mut complete = true;
            for guard in self.event_ids.range(id_key(namespace, *min)..=id_key(namespace, *max)) {
                if found.len() == limit {
                    complete = false;
                    break;
                }
                let (k, v) = guard.into_inner().map_err(index_error)?;
                let id = Uuid::from_slice(&k[k.len() - 16..]).map_err(|e| StoreError::Index(e.to_string()))?;
                found.insert(id, decode_id_entry(&v));
            }
            if complete {
                return Ok(ids.iter().map(|id| found.get(id).copied()).collect());
            }
        }
        ids.iter().map(|id| self.event_id(namespace, *id)).collect()
    }

    /// The chunks of `namespace` from the one holding `from` on (forwards), or from the one
    /// holding `from` back to the first (backwards).
    pub fn namespace_chunks(
        &self,
        namespace: &str,
        from: Position,
        direction: Direction,
    ) -> Result<Box<dyn Iterator<Item = Result<NamespaceChunk, StoreError>> + '_>, StoreError> {
        let key = |p: u64| namespace_chunk_key(namespace, Position(p));
        let decode = |guard: fjall::Guard| -> Result<NamespaceChunk, StoreError> {
            let (k, v) = guard.into_inner().map_err(index_error)?;
            Ok(decode_namespace_chunk(&k, &v))
        };
        Ok(match direction {
            Direction::Forwards => {
                let holding = self.namespace_chunks.range(key(0)..=key(from.0)).next_back().map(decode).transpose()?;
                let first = holding.filter(|c| c.first_position.0 + u64::from(c.count) > from.0);
                let after = from.0.saturating_add(1);
                let rest = self.namespace_chunks.range(key(after)..=key(u64::MAX)).map(decode);
                Box::new(first.map(Ok).into_iter().chain(rest))
            }
            Direction::Backwards => Box::new(self.namespace_chunks.range(key(0)..=key(from.0)).rev().map(decode)),
        })
    }

    /// The chunks of stream `number` that hold revision `from` and the revisions after it
    /// (forwards) or before it (backwards), in that order.
    pub fn chunks(
        &self,
        number: u64,
        from: Revision,
        direction: Direction,
    ) -> Result<Box<dyn Iterator<Item = Result<Chunk, StoreError>> + '_>, StoreError> {
        let key = |rev: u64| stream_chunk_key(number, Revision(rev));
        let decode = |guard: fjall::Guard| -> Result<Chunk, StoreError> {
            let (k, v) = guard.into_inner().map_err(index_error)?;
            Ok(decode_chunk(&k, &v))
        };
        Ok(match direction {
            Direction::Forwards => {
                // The chunk holding `from` starts at or before it.
                let holding = self.stream_chunks.range(key(0)..=key(from.0)).next_back().map(decode).transpose()?;
                let first = holding.filter(|c| c.first_revision.0 + u64::from(c.count) > from.0);
                let after = from.0.saturating_add(1);
                let rest = self.stream_chunks.range(key(after)..=key(u64::MAX)).map(decode);
                Box::new(first.map(Ok).into_iter().chain(rest))
            }
            Direction::Backwards => Box::new(self.stream_chunks.range(key(0)..=key(from.0)).rev().map(decode)),
        })
    }

    /// The stream's first chunk, if it has one: where revision 0 is.
    pub fn first_chunk(&self, number: u64) -> Result<Option<Chunk>, StoreError> {
        let key = stream_chunk_key(number, Revision(0));
        Ok(self.stream_chunks.get(key).map_err(index_error)?.map(|v| decode_chunk(&key, &v)))
    }

    /// The last seek point at or before `position`.
    pub fn seek_point(&self, position: Position) -> Result<Option<SeekPoint>, StoreError> {
        match self.seek.range(..=position.0.to_be_bytes()).next_back() {
            None => Ok(None),
            Some(guard) => {
                let (k, v) = guard.into_inner().map_err(index_error)?;
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

    fn insert_seek_point(&self, b: &mut IndexBatch, point: SeekPoint) {
        let mut v = [0u8; 20];
        v[0..8].copy_from_slice(&point.segment.to_be_bytes());
        v[8..16].copy_from_slice(&point.offset.to_be_bytes());
        v[16..20].copy_from_slice(&point.records_left_in_group.to_be_bytes());
        b.batch.insert(&self.seek, point.position.0.to_be_bytes(), v);
    }

    /// Indexes one group's records: the id of each; the stream chunks they form (runs of one
    /// stream's consecutive revisions, contiguous in the log, up to `CHUNK_BYTES`); a seek point
    /// at the group header, and one every `SEEK_INTERVAL` bytes inside large groups.
    pub fn insert_group(&self, b: &mut IndexBatch, segment: u64, group_offset: u64, records: &[IndexedRecord]) {
        let Some(first) = records.first() else { return };
        self.insert_seek_point(
            b,
            SeekPoint { position: first.entry.position, segment, offset: group_offset, records_left_in_group: 0 },
        );
        let mut last_seek = group_offset;
        let mut chunk: Option<Chunk> = None;
        let mut ns_chunk: Option<(&str, NamespaceChunk)> = None;
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
            let e = record.entry;
            let ns = &*record.namespace;
            match ns_chunk.as_mut() {
                Some((n, c))
                    if *n == ns
                        && c.offset + u64::from(c.bytes) == record.offset
                        && c.bytes + record.len <= CHUNK_BYTES =>
                {
                    c.count += 1;
                    c.bytes += record.len;
                }
                _ => {
                    if let Some((n, done)) = ns_chunk.take() {
                        self.insert_namespace_chunk(b, n, &done);
                    }
                    let c = NamespaceChunk {
                        first_position: e.position,
                        segment,
                        offset: record.offset,
                        count: 1,
                        bytes: record.len,
                    };
                    ns_chunk = Some((ns, c));
                }
            }
            let extends = chunk.as_ref().is_some_and(|c| {
                c.stream_number == e.stream_number
                    && c.first_revision.0 + u64::from(c.count) == e.revision.0
                    && c.offset + u64::from(c.bytes) == record.offset
                    && c.bytes + record.len <= CHUNK_BYTES
            });
            match chunk.as_mut() {
                Some(c) if extends => {
                    c.count += 1;
                    c.bytes += record.len;
                }
                _ => {
                    if let Some(done) = chunk.take() {
                        self.insert_chunk(b, &done);
                    }
                    chunk = Some(Chunk {
                        stream_number: e.stream_number,
                        first_revision: e.revision,
                        first_position: e.position,
                        segment,
                        offset: record.offset,
                        count: 1,
                        bytes: record.len,
                    });
                }
            }
            let mut v = [0u8; 24];
            v[0..8].copy_from_slice(&e.stream_number.to_be_bytes());
            v[8..16].copy_from_slice(&e.revision.0.to_be_bytes());
            v[16..24].copy_from_slice(&e.position.0.to_be_bytes());
            b.batch.insert(&self.event_ids, id_key(ns, record.id), v);
            b.events += 1;
        }
        if let Some(done) = chunk {
            self.insert_chunk(b, &done);
        }
        if let Some((n, done)) = ns_chunk {
            self.insert_namespace_chunk(b, n, &done);
        }
    }

    fn insert_namespace_chunk(&self, b: &mut IndexBatch, namespace: &str, c: &NamespaceChunk) {
        let mut v = [0u8; 24];
        v[0..8].copy_from_slice(&c.segment.to_be_bytes());
        v[8..16].copy_from_slice(&c.offset.to_be_bytes());
        v[16..20].copy_from_slice(&c.count.to_be_bytes());
        v[20..24].copy_from_slice(&c.bytes.to_be_bytes());
        b.batch.insert(&self.namespace_chunks, namespace_chunk_key(namespace, c.first_position), v);
    }

    fn insert_chunk(&self, b: &mut IndexBatch, c: &Chunk) {
        let mut v = [0u8; 32];
        v[0..8].copy_from_slice(&c.first_position.0.to_be_bytes());
        v[8..16].copy_from_slice(&c.segment.to_be_bytes());
        v[16..24].copy_from_slice(&c.offset.to_be_bytes());
        v[24..28].copy_from_slice(&c.count.to_be_bytes());
        v[28..32].copy_from_slice(&c.bytes.to_be_bytes());
        b.batch.insert(&self.stream_chunks, stream_chunk_key(c.stream_number, c.first_revision), v);
    }

    /// Adds the watermark and stream counter to `b` and commits it atomically (not fsynced).
    pub fn commit(&self, mut b: IndexBatch, watermark: Watermark, next_stream_number: u64) -> Result<(), StoreError> {
        let mut v = [0u8; 24];
        v[0..8].copy_from_slice(&watermark.position.0.to_be_bytes());
        v[8..16].copy_from_slice(&watermark.segment.to_be_bytes());
        v[16..24].copy_from_slice(&watermark.offset.to_be_bytes());
        b.batch.insert(&self.meta, WATERMARK, v);
        b.batch.insert(&self.meta, NEXT_STREAM, next_stream_number.to_be_bytes());
        b.batch.commit().map_err(index_error)?;
        Ok(())
    }

    /// Syncs fjall's journal (at close), so the next open finds the index at its watermark and has
    /// no log to replay. fjall still replays its own journal into memtables on open; capping the
    /// journal (`open`) is what bounds that: 3.6 s for a 10 M-event store (BENCHMARKS.md).
    pub fn persist(&self) -> Result<(), StoreError> {
        self.db.persist(PersistMode::SyncAll).map_err(index_error)?;
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
