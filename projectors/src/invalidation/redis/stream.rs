//! Stream entry ids and `XINFO STREAM`, shared by the sink (its checkpoint) and the feed (where
//! to resume, and whether what a reader missed was trimmed away).
//!
//! An entry id is `<position code>-<n>` with `n` from 1: the code orders entries like the
//! positions they announce, and `n` tells apart invalidations of one position (one per tenant
//! of a batch), while keeping every id above `0-0`, which Redis refuses.

use std::fmt;

use annals_store::Position;
use redis::aio::ConnectionLike;
use redis::{RedisError, Value};

use crate::invalidation::InvalidationError;

/// A stream entry id, `ms-seq` in Redis' words; here `<position code>-<n>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct EntryId {
    pub code: u64,
    pub seq: u64,
}

impl EntryId {
    /// The id after which a reader resuming after `position` reads: every entry of a later
    /// position, none of this one.
    pub fn after(position: Position) -> EntryId {
        EntryId { code: position.code(), seq: u64::MAX }
    }

    pub fn parse(text: &str) -> Option<EntryId> {
        let (code, seq) = text.split_once('-')?;
        Some(EntryId { code: code.parse().ok()?, seq: seq.parse().ok()? })
    }

    /// Whether this is `0-0`, Redis' "no entry".
    pub fn is_zero(self) -> bool {
        self == EntryId { code: 0, seq: 0 }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.code, self.seq)
    }
}

/// What `XINFO STREAM` says about a stream that exists.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct StreamInfo {
    /// The highest id ever added (durable, survives trimming).
    pub last_generated: Option<EntryId>,
    /// The oldest entry still held.
    pub first_entry: Option<EntryId>,
    /// The highest id removed by `XDEL` (Redis 7 does not count trimming here; `None` before 7,
    /// or none removed).
    pub max_deleted: Option<EntryId>,
    /// Entries in the stream now.
    pub length: Option<u64>,
    /// Entries ever added (Redis 7; `None` before).
    pub entries_added: Option<u64>,
}

/// `XINFO STREAM key`, or `None` when there is no such stream.
pub(super) async fn stream_info<C: ConnectionLike>(con: &mut C, key: &str) -> Result<Option<StreamInfo>, RedisError> {
    let reply: Value = match redis::cmd("XINFO").arg("STREAM").arg(key).query_async(con).await {
        Ok(reply) => reply,
        Err(e) if e.to_string().contains("no such key") => return Ok(None),
        Err(e) => return Err(e),
    };
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Map(pairs) => pairs,
        Value::Array(items) => {
            let mut items = items.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        _ => Vec::new(),
    };
    let mut info = StreamInfo::default();
    for (name, value) in pairs {
        match text(&name).as_deref() {
            Some("last-generated-id") => info.last_generated = text(&value).and_then(|t| EntryId::parse(&t)),
            Some("length") => info.length = number(&value),
            Some("entries-added") => info.entries_added = number(&value),
            Some("max-deleted-entry-id") => {
                info.max_deleted = text(&value).and_then(|t| EntryId::parse(&t)).filter(|id| !id.is_zero());
            }
            Some("first-entry") => {
                if let Value::Array(entry) = value {
                    info.first_entry = entry.first().and_then(text).and_then(|t| EntryId::parse(&t));
                }
            }
            _ => {}
        }
    }
    Ok(Some(info))
}

fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => text(value).and_then(|t| t.parse().ok()),
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// A Redis error as the seam's error: what a retry cannot change (authentication, permissions,
/// a key of the wrong type, a bad client configuration) is `Refused`; the rest (I/O, timeouts,
/// a server loading its data or read-only) is `Unavailable`.
pub(super) fn classify(e: RedisError) -> InvalidationError {
    use redis::{ErrorKind, ServerErrorKind};
    let refused = matches!(
        e.kind(),
        ErrorKind::AuthenticationFailed | ErrorKind::InvalidClientConfig | ErrorKind::Server(ServerErrorKind::NoPerm)
    );
    let reason = e.to_string();
    // A pipeline's error wraps the server's, whose code is then only in the text.
    let refused = refused || ["WRONGTYPE", "NOAUTH", "WRONGPASS", "NOPERM"].iter().any(|code| reason.contains(code));
    if refused {
        InvalidationError::Refused { backend: "redis", reason }
    } else {
        InvalidationError::Unavailable { backend: "redis", reason }
    }
}
