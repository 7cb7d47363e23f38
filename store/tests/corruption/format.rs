//! A parser of the on-disk format written from `store/src/engine/mod.rs` alone, so that the
//! corruption tests find group and record boundaries without the engine's own code, and check
//! that the engine writes what the documentation says.

use std::path::{Path, PathBuf};

use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// A parser of the documented on-disk format.
// ---------------------------------------------------------------------------------------------

pub const SEGMENT_MAGIC: &[u8; 8] = b"ANNALSEG";
pub const GROUP_MAGIC: &[u8; 4] = b"ANLG";
pub const SEGMENT_HEADER_LEN: usize = 32;
pub const GROUP_HEADER_LEN: usize = 32;
/// Length and checksum, before what the checksum covers.
pub const RECORD_PREFIX_LEN: usize = 8;
/// position, revision, recorded_at, id, stream len, type len, metadata len, data len.
pub const RECORD_FIXED_LEN: usize = 8 + 8 + 8 + 16 + 2 + 2 + 4 + 4;

#[derive(Clone, Debug)]
pub struct Segment {
    pub path: PathBuf,
    pub number: u64,
    pub version: u16,
    pub first_position: u64,
    pub groups: Vec<Group>,
    /// Where the data ends: the end of the last group (or of the header).
    pub len: u64,
    /// The file's length: `len` plus preallocated zeros, if any.
    pub file_len: u64,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub offset: u64,
    /// Header and payload.
    pub len: u64,
    pub first_position: u64,
    pub records: Vec<Record>,
}

#[derive(Clone, Debug)]
pub struct Record {
    pub offset: u64,
    pub position: u64,
    pub revision: u64,
    pub recorded_at_us: i64,
    pub id: Uuid,
    pub stream: String,
    pub event_type: String,
    pub metadata: Vec<u8>,
    pub data: Vec<u8>,
    /// Where `data` starts in the file.
    pub data_offset: u64,
}

pub fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Parses one segment file strictly: every byte must belong to the header, to a valid group, or to
/// the zeros that may follow the last group (preallocated space).
pub fn parse_segment(path: &Path) -> Result<Segment, String> {
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

pub fn parse_group(b: &[u8], offset: usize) -> Result<Group, String> {
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

pub fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .expect("list log/")
        .map(|entry| entry.expect("log/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    paths.sort();
    paths
}

/// Parses the whole log and checks what spans files: numbering, and positions contiguous from 0.
pub fn parse_log(dir: &Path) -> Result<Vec<Segment>, String> {
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
