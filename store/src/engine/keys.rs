//! The byte layout of the index's keys and values (big-endian, so byte order is numeric order).
//! `index::LAYOUT` names the layout; changing anything here means a new layout number. The
//! values decoded here (`Chunk`, `IdEntry`, `NamespaceChunk`) are defined here too, so this file
//! depends on nothing of the index and `index.rs` (which re-exports them) depends on it alone.

use uuid::Uuid;

use crate::model::{Position, Revision};

/// A run of one stream's consecutive revisions whose records are contiguous in one segment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Chunk {
    pub stream_number: u64,
    pub first_revision: Revision,
    pub first_position: Position,
    pub segment: u64,
    /// Offset of the first record.
    pub offset: u64,
    pub count: u32,
    /// Bytes of all its records.
    pub bytes: u32,
}

/// What the id index says of an event id.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IdEntry {
    pub stream_number: u64,
    pub revision: Revision,
    pub position: Position,
}

/// A run of one namespace's consecutive records in one group (positions contiguous, bytes
/// contiguous), up to `CHUNK_BYTES`: what a read of `$all` filtered to one namespace reads instead
/// of the whole log.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NamespaceChunk {
    pub first_position: Position,
    pub segment: u64,
    pub offset: u64,
    pub count: u32,
    pub bytes: u32,
}

pub fn decode_id_entry(v: &[u8]) -> IdEntry {
    IdEntry { stream_number: be_u64(v, 0), revision: Revision(be_u64(v, 8)), position: Position(be_u64(v, 16)) }
}

pub fn decode_chunk(k: &[u8], v: &[u8]) -> Chunk {
    Chunk {
        stream_number: be_u64(k, 0),
        first_revision: Revision(be_u64(k, 8)),
        first_position: Position(be_u64(v, 0)),
        segment: be_u64(v, 8),
        offset: be_u64(v, 16),
        count: u32::from_be_bytes(v[24..28].try_into().expect("4 bytes")),
        bytes: u32::from_be_bytes(v[28..32].try_into().expect("4 bytes")),
    }
}

/// `namespace`, a zero byte, then `tail`: a namespace never holds a zero byte (names refuse
/// control characters), so one namespace's keys are contiguous and ordered by `tail`.
pub fn namespaced_key(namespace: &str, tail: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(namespace.len() + 1 + tail.len());
    k.extend_from_slice(namespace.as_bytes());
    k.push(0);
    k.extend_from_slice(tail);
    k
}

pub fn id_key(namespace: &str, id: Uuid) -> Vec<u8> {
    namespaced_key(namespace, id.as_bytes())
}

pub fn namespace_chunk_key(namespace: &str, first: Position) -> Vec<u8> {
    namespaced_key(namespace, &first.0.to_be_bytes())
}

pub fn decode_namespace_chunk(k: &[u8], v: &[u8]) -> NamespaceChunk {
    NamespaceChunk {
        first_position: Position(be_u64(k, k.len() - 8)),
        segment: be_u64(v, 0),
        offset: be_u64(v, 8),
        count: u32::from_be_bytes(v[16..20].try_into().expect("4 bytes")),
        bytes: u32::from_be_bytes(v[20..24].try_into().expect("4 bytes")),
    }
}

pub fn stream_chunk_key(number: u64, revision: Revision) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[0..8].copy_from_slice(&number.to_be_bytes());
    k[8..16].copy_from_slice(&revision.0.to_be_bytes());
    k
}

pub fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
