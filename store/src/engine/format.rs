//! Encoding and decoding of the on-disk format described in the module doc of `engine`: segment
//! headers, group headers and event records. Pure functions over byte slices, no I/O, so the
//! recovery scanner, the readers and `verify` all check bytes the same way.

use bytes::{BufMut, Bytes};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::model::{Position, RecordedEvent, Revision, StreamId};

pub const SEGMENT_MAGIC: &[u8; 8] = b"ANNALSEG";
pub const SEGMENT_VERSION: u16 = 1;
pub const SEGMENT_HEADER_LEN: usize = 32;

pub const GROUP_MAGIC: u32 = u32::from_le_bytes(*b"ANLG");
pub const GROUP_VERSION: u8 = 1;
pub const GROUP_HEADER_LEN: usize = 32;

/// Bytes of an event record before its variable parts: length, crc, then the fixed fields.
pub const RECORD_FIXED_LEN: usize = 8 + 8 + 8 + 8 + 16 + 2 + 2 + 4 + 4;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SegmentHeader {
    pub number: u64,
    pub first_position: Position,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        b[12..20].copy_from_slice(&self.number.to_le_bytes());
        b[20..28].copy_from_slice(&self.first_position.0.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<SegmentHeader, HeaderError> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err(HeaderError::Damaged(format!(
                "segment header is {} bytes, expected {SEGMENT_HEADER_LEN}",
                b.len()
            )));
        }
        if &b[0..8] != SEGMENT_MAGIC {
            return Err(HeaderError::Damaged("bad segment magic".into()));
        }
        if crc32c::crc32c(&b[0..28]) != u32_at(b, 28) {
            return Err(HeaderError::Damaged("segment header checksum mismatch".into()));
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != SEGMENT_VERSION {
            return Err(HeaderError::Unknown(format!(
                "segment format version {version}, this build reads {SEGMENT_VERSION}"
            )));
        }
        Ok(SegmentHeader { number: u64_at(b, 12), first_position: Position(u64_at(b, 20)) })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GroupHeader {
    pub payload_len: u32,
    pub event_count: u32,
    pub first_position: Position,
}

/// Why a segment or group header could not be decoded. `Unknown` is a valid header of a version this build
/// does not read: not damage, so recovery must not truncate it.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    Damaged(String),
    Unknown(String),
}

impl GroupHeader {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.put_u32_le(GROUP_MAGIC);
        out.put_u8(GROUP_VERSION);
        out.put_u8(0);
        out.put_u16_le(0);
        out.put_u32_le(self.payload_len);
        out.put_u32_le(self.event_count);
        out.put_u64_le(self.first_position.0);
        out.put_u32_le(0);
        let crc = crc32c::crc32c(&out[start..start + 28]);
        out.put_u32_le(crc);
    }

    pub fn decode(b: &[u8]) -> Result<GroupHeader, HeaderError> {
        if b.len() < GROUP_HEADER_LEN {
            return Err(HeaderError::Damaged("group header cut short".into()));
        }
        if u32_at(b, 0) != GROUP_MAGIC {
            return Err(HeaderError::Damaged("bad group magic".into()));
        }
        if crc32c::crc32c(&b[0..28]) != u32_at(b, 28) {
            return Err(HeaderError::Damaged("group header checksum mismatch".into()));
        }
        if b[4] != GROUP_VERSION {
            return Err(HeaderError::Unknown(format!(
                "group format version {}, this build reads {GROUP_VERSION}",
                b[4]
            )));
        }
        Ok(GroupHeader {
            payload_len: u32_at(b, 8),
            event_count: u32_at(b, 12),
            first_position: Position(u64_at(b, 16)),
        })
    }

    pub fn total_len(&self) -> u64 {
        GROUP_HEADER_LEN as u64 + u64::from(self.payload_len)
    }
}

/// The fields of one event as the writer encodes it.
pub struct RecordFields<'a> {
    pub position: Position,
    pub revision: Revision,
    pub recorded_at_micros: i64,
    pub id: Uuid,
    pub stream: &'a str,
    pub event_type: &'a str,
    pub metadata: &'a [u8],
    pub data: &'a [u8],
}

/// Size of the record for these variable parts.
pub fn record_len(stream: usize, event_type: usize, metadata: usize, data: usize) -> usize {
    RECORD_FIXED_LEN + stream + event_type + metadata + data
}

pub fn encode_record(f: &RecordFields<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    let len = record_len(f.stream.len(), f.event_type.len(), f.metadata.len(), f.data.len()) - 8;
    out.put_u32_le(len as u32);
    out.put_u32_le(0); // checksum, filled in below
    out.put_u64_le(f.position.0);
    out.put_u64_le(f.revision.0);
    out.put_i64_le(f.recorded_at_micros);
    out.put_slice(f.id.as_bytes());
    out.put_u16_le(f.stream.len() as u16);
    out.put_u16_le(f.event_type.len() as u16);
    out.put_u32_le(f.metadata.len() as u32);
    out.put_u32_le(f.data.len() as u32);
    out.put_slice(f.stream.as_bytes());
    out.put_slice(f.event_type.as_bytes());
    out.put_slice(f.metadata);
    out.put_slice(f.data);
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Total length (including the length and checksum words) of the record starting at `b`, or
/// `None` if `b` is too short to tell.
pub fn peek_record_len(b: &[u8]) -> Option<usize> {
    (b.len() >= 4).then(|| u32_at(b, 0) as usize + 8)
}

/// What a reader keeps between records to avoid an allocation per event: the last stream name,
/// shared by consecutive events of one stream.
#[derive(Default)]
pub struct DecodeCache {
    stream: Option<StreamId>,
}

/// Decodes and verifies the record at the start of `buf` (a shared buffer, so `data` and `metadata`
/// are zero-copy slices of it). Returns the event and the record's total length.
pub fn decode_record(buf: &Bytes, cache: &mut DecodeCache) -> Result<(RecordedEvent, usize), String> {
    let b = &buf[..];
    let total = peek_record_len(b).ok_or("record cut short")?;
    if total < RECORD_FIXED_LEN || total > b.len() {
        return Err(format!("record length {total} does not fit"));
    }
    if crc32c::crc32c(&b[8..total]) != u32_at(b, 4) {
        return Err("record checksum mismatch".into());
    }
    let position = Position(u64_at(b, 8));
    let revision = Revision(u64_at(b, 16));
    let recorded_at_micros = i64::from_le_bytes(b[24..32].try_into().expect("8 bytes"));
    let id = Uuid::from_bytes(b[32..48].try_into().expect("16 bytes"));
    let stream_len = u16::from_le_bytes([b[48], b[49]]) as usize;
    let type_len = u16::from_le_bytes([b[50], b[51]]) as usize;
    let meta_len = u32_at(b, 52) as usize;
    let data_len = u32_at(b, 56) as usize;
    if RECORD_FIXED_LEN + stream_len + type_len + meta_len + data_len != total {
        return Err("record field lengths do not add up".into());
    }
    let mut at = RECORD_FIXED_LEN;
    let stream = std::str::from_utf8(&b[at..at + stream_len]).map_err(|_| "stream name is not UTF-8")?;
    at += stream_len;
    let event_type = std::str::from_utf8(&b[at..at + type_len]).map_err(|_| "event type is not UTF-8")?;
    at += type_len;
    let metadata = buf.slice(at..at + meta_len);
    at += meta_len;
    let data = buf.slice(at..at + data_len);
    let stream = match &cache.stream {
        Some(cached) if cached.as_str() == stream => cached.clone(),
        _ => cache.stream.insert(StreamId::from_log(stream)).clone(),
    };
    let event = RecordedEvent {
        id,
        stream,
        revision,
        position,
        event_type: event_type.to_owned(),
        data,
        metadata,
        recorded_at: micros_to_time(recorded_at_micros),
    };
    Ok((event, total))
}

/// Verifies the record at the start of `b` without building an event; returns its length,
/// position, id and revision (what recovery needs to index it) and the stream name.
pub fn check_record(b: &[u8]) -> Result<(usize, Position, Revision, Uuid, &str), String> {
    let total = peek_record_len(b).ok_or("record cut short")?;
    if total < RECORD_FIXED_LEN || total > b.len() {
        return Err(format!("record length {total} does not fit"));
    }
    if crc32c::crc32c(&b[8..total]) != u32_at(b, 4) {
        return Err("record checksum mismatch".into());
    }
    let stream_len = u16::from_le_bytes([b[48], b[49]]) as usize;
    let (type_len, meta_len, data_len) =
        (u16::from_le_bytes([b[50], b[51]]) as usize, u32_at(b, 52) as usize, u32_at(b, 56) as usize);
    if RECORD_FIXED_LEN + stream_len + type_len + meta_len + data_len != total {
        return Err("record field lengths do not add up".into());
    }
    let stream = std::str::from_utf8(&b[RECORD_FIXED_LEN..RECORD_FIXED_LEN + stream_len])
        .map_err(|_| "stream name is not UTF-8")?;
    let id = Uuid::from_bytes(b[32..48].try_into().expect("16 bytes"));
    Ok((total, Position(u64_at(b, 8)), Revision(u64_at(b, 16)), id, stream))
}

pub fn micros_to_time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_detects_a_flipped_bit() {
        let id = Uuid::now_v7();
        let fields = RecordFields {
            position: Position(7),
            revision: Revision(3),
            recorded_at_micros: 1_700_000_000_000_000,
            id,
            stream: "message-1",
            event_type: "message.sent",
            metadata: b"{}",
            data: br#"{"a":1}"#,
        };
        let mut buf = Vec::new();
        encode_record(&fields, &mut buf);
        let bytes = Bytes::from(buf.clone());
        let (event, len) = decode_record(&bytes, &mut DecodeCache::default()).expect("decodes");
        assert_eq!(len, buf.len());
        assert_eq!((event.position, event.revision, event.id), (Position(7), Revision(3), id));
        assert_eq!(&event.data[..], br#"{"a":1}"#);
        for i in 0..buf.len() {
            let mut damaged = buf.clone();
            damaged[i] ^= 0x10;
            assert!(
                decode_record(&Bytes::from(damaged), &mut DecodeCache::default()).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn headers_round_trip() {
        let seg = SegmentHeader { number: 3, first_position: Position(99) };
        assert_eq!(SegmentHeader::decode(&seg.encode()), Ok(seg));
        let group = GroupHeader { payload_len: 10, event_count: 2, first_position: Position(5) };
        let mut buf = Vec::new();
        group.encode_into(&mut buf);
        assert_eq!(GroupHeader::decode(&buf), Ok(group));
        buf[9] ^= 1;
        assert!(matches!(GroupHeader::decode(&buf), Err(HeaderError::Damaged(_))));
    }
}
