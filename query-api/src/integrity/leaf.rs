//! What a leaf of the integrity tree is: the canonical bytes of one recorded event (versioned,
//! length-prefixed, exactly as stored) and the leaf built from them, `tag ‖ SHA-256(event bytes)`,
//! where the tag is an HMAC of the event's namespace (its tenant) under the log's secret.
//!
//! Shared by the server (which feeds the tree and writes exports) and by `annals verify` (which
//! rebuilds leaves offline from an export): one encoder, so both sides agree byte for byte.
//!
//! # Event bytes, version 1 (integers big-endian)
//!
//! ```text
//! version u8 = 1
//! position u64
//! stream name   u32 length ‖ UTF-8 (as stored: with the tenant's "{tenant}/" prefix)
//! revision u64
//! event id      16 bytes (UUID)
//! event type    u32 length ‖ UTF-8
//! recorded_at   i64 seconds since the Unix epoch ‖ u32 nanoseconds
//! metadata      u32 length ‖ bytes (exactly as stored; empty for none)
//! data          u32 length ‖ bytes (exactly as stored)
//! ```

use annals_integrity::Hash;
use annals_store::RecordedEvent;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The version byte of the event bytes this build writes and reads.
pub const EVENT_BYTES_VERSION: u8 = 1;

/// A leaf: the namespace's tag, then the digest of the event bytes.
pub const LEAF_LEN: usize = 64;

/// The canonical bytes of `event` (module doc).
pub fn event_bytes(event: &RecordedEvent) -> Vec<u8> {
    let stream = event.stream.as_str().as_bytes();
    let mut out =
        Vec::with_capacity(64 + stream.len() + event.event_type.len() + event.metadata.len() + event.data.len());
    out.push(EVENT_BYTES_VERSION);
    out.extend_from_slice(&event.position.code().to_be_bytes());
    put_len_prefixed(&mut out, stream);
    out.extend_from_slice(&event.revision.0.to_be_bytes());
    out.extend_from_slice(event.id.as_bytes());
    put_len_prefixed(&mut out, event.event_type.as_bytes());
    out.extend_from_slice(&event.recorded_at.timestamp().to_be_bytes());
    out.extend_from_slice(&event.recorded_at.timestamp_subsec_nanos().to_be_bytes());
    put_len_prefixed(&mut out, &event.metadata);
    put_len_prefixed(&mut out, &event.data);
    out
}

fn put_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    // Every field is far below 4 GiB: the store caps an event's size.
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Event bytes read back: what the verifier checks a record's claims against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedEvent {
    pub position: u64,
    pub stream: String,
    pub revision: u64,
    pub id: Uuid,
    pub event_type: String,
    pub recorded_at: DateTime<Utc>,
    pub metadata: Vec<u8>,
    pub data: Vec<u8>,
}

impl DecodedEvent {
    /// The recorded event these bytes are of (for the projections' code, which the verifier runs
    /// to apply an export's selection again); `Err` when the stream name is not a valid one.
    pub fn to_recorded(&self) -> Result<RecordedEvent, String> {
        Ok(RecordedEvent {
            id: self.id,
            stream: annals_store::StreamId::new(&self.stream).map_err(|e| e.to_string())?,
            revision: annals_store::Revision(self.revision),
            position: annals_store::Position::from_code(self.position),
            event_type: self.event_type.clone(),
            data: self.data.clone().into(),
            metadata: self.metadata.clone().into(),
            recorded_at: self.recorded_at,
        })
    }
}

/// Parses event bytes; `Err` says what is wrong with them.
pub fn decode_event_bytes(bytes: &[u8]) -> Result<DecodedEvent, String> {
    let mut r = Reader(bytes);
    let version = r.take(1)?[0];
    if version != EVENT_BYTES_VERSION {
        return Err(format!("event bytes of version {version}, this build reads version {EVENT_BYTES_VERSION}"));
    }
    let position = r.u64()?;
    let stream = String::from_utf8(r.prefixed()?.to_vec()).map_err(|_| "the stream name is not UTF-8".to_owned())?;
    let revision = r.u64()?;
    let id = Uuid::from_slice(r.take(16)?).map_err(|e| e.to_string())?;
    let event_type = String::from_utf8(r.prefixed()?.to_vec()).map_err(|_| "the event type is not UTF-8".to_owned())?;
    let secs = r.u64()? as i64;
    let nanos = u32::from_be_bytes(r.take(4)?.try_into().expect("4 bytes"));
    let recorded_at = DateTime::from_timestamp(secs, nanos).ok_or("recorded_at is out of range")?;
    let metadata = r.prefixed()?.to_vec();
    let data = r.prefixed()?.to_vec();
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the data", r.0.len()));
    }
    Ok(DecodedEvent { position, stream, revision, id, event_type, recorded_at, metadata, data })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("the event bytes end early".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn prefixed(&mut self) -> Result<&'a [u8], String> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        self.take(len)
    }
}

/// A stream's namespace: its name up to the first `/` (a tenant's name), or the whole name for a
/// system stream without one.
pub fn namespace(stream: &str) -> &str {
    stream.split_once('/').map_or(stream, |(ns, _)| ns)
}

/// A namespace's tag: HMAC-SHA256(secret, namespace). Unguessable without the secret, so a
/// foreign leaf's tag says only "not yours".
pub fn tag(secret: &[u8; 32], namespace: &str) -> [u8; 32] {
    hmac_sha256(secret, namespace.as_bytes())
}

/// The leaf of an event: `tag ‖ SHA-256(event bytes)`.
pub fn leaf(tag: &[u8; 32], event_bytes: &[u8]) -> [u8; LEAF_LEN] {
    let mut out = [0u8; LEAF_LEN];
    out[..32].copy_from_slice(tag);
    out[32..].copy_from_slice(&Sha256::digest(event_bytes));
    out
}

/// The RFC 9162 leaf hash of a leaf.
pub fn leaf_hash(leaf: &[u8; LEAF_LEN]) -> Hash {
    Hash::leaf(leaf)
}

/// HMAC-SHA256 (RFC 2104) with a key of at most one block, over `sha2` alone.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 1 and 2 of RFC 4231.
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn event_bytes_round_trip_and_name_every_field() {
        let event = RecordedEvent {
            id: Uuid::from_u128(7),
            stream: annals_store::StreamId::new("acme/order-1").unwrap(),
            revision: annals_store::Revision(3),
            position: annals_store::Position::from_code(42),
            event_type: "audit.recorded".into(),
            data: b"{\"a\":1}".to_vec().into(),
            metadata: Vec::new().into(),
            recorded_at: DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap(),
        };
        let bytes = event_bytes(&event);
        let back = decode_event_bytes(&bytes).unwrap();
        assert_eq!(back.position, 42);
        assert_eq!(back.stream, "acme/order-1");
        assert_eq!(back.revision, 3);
        assert_eq!(back.id, Uuid::from_u128(7));
        assert_eq!(back.recorded_at, event.recorded_at);
        assert_eq!(back.data, b"{\"a\":1}");
        assert!(decode_event_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert_eq!(namespace("acme/order-1"), "acme");
        assert_ne!(tag(&[1; 32], "acme"), tag(&[1; 32], "other"));
    }
}
