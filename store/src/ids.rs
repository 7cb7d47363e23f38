//! The identifiers of the log: stream names, revisions, positions, and the expected and current
//! revisions of an append.
//!
//! Why a file of its own: the error type names these (a wrong expected revision says which stream,
//! which revision), and the types that validate themselves return that error; with both in one
//! file the error and the model imported each other. Here they depend on nothing of the crate;
//! the validating constructor (`StreamId::new`) lives with the rest of the model.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The name of a stream: 1 to 256 bytes of UTF-8 without leading or trailing whitespace and
/// without characters that can spoof a name where it is shown ([`forbidden_character`](crate::forbidden_character): controls,
/// Unicode format characters such as U+202E or a zero-width space, noncharacters). Names starting
/// with `$` are system streams (keys, projection control). The part before the first `/` is the
/// stream's namespace ([`StreamId::namespace`]), the scope of event ids.
///
/// Cheap to clone (shared string).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StreamId(Arc<str>);

impl StreamId {
    /// A name read back from the log, validated when it was appended.
    pub(crate) fn from_log(name: &str) -> Self {
        StreamId(Arc::from(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The namespace the stream belongs to: its name up to the first `/` (the API's tenant), or
    /// `""` for a name without `/` (system streams such as `$keys`). Event ids are unique within a
    /// namespace, not across namespaces (see "Idempotent retries" on [`EventStore`](crate::EventStore)).
    pub fn namespace(&self) -> &str {
        namespace_of(&self.0)
    }

    /// System streams (`$…`) hold the store's own control data: API keys, projection requests.
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({:?})", &*self.0)
    }
}

/// The number of an event within its stream: 0 for the first, contiguous after that.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Revision(pub u64);

/// The place of an event in the global log (`$all`): strictly increasing in commit order.
///
/// Opaque outside the backend that made it: positions are ordered, serialised (as a JSON number,
/// the API's and the checkpoints' wire form), shown and parsed, and nothing else. Whether they
/// are dense (the embedded engine: 0 for the first event, then contiguous) or sparse (KurrentDB:
/// byte offsets of commits) is the backend's business ([`Capabilities`](crate::Capabilities)), so
/// callers never compute with one: "the event after this one" is [`ReadFrom::After`] or
/// [`SubscribeFrom::After`], "how far behind" is [`EventStore::distance`](crate::EventStore::distance),
/// and an RFC 9162 leaf index is [`DensePositions`](crate::DensePositions), which only a backend
/// with dense positions hands out.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(pub(crate) u64);

// `next` saturates: `u64::MAX` is never a real revision or position (they count from 0), but a
// client can name it ("after the last possible"), and what follows it is nothing, not event 0.
impl Revision {
    pub fn next(self) -> Revision {
        Revision(self.0.saturating_add(1))
    }
}

impl Position {
    /// The position right after this one in a backend with dense positions (the engine's own
    /// arithmetic; callers say [`ReadFrom::After`]).
    pub(crate) fn next(self) -> Position {
        Position(self.0.saturating_add(1))
    }

    /// The position's code: the number it serialises as, for a field that holds a number
    /// rather than serde's output (a checkpoint in an index field, an atomic, a deterministic id).
    /// Codes order like positions; nothing else is promised (a backend's codes may be sparse),
    /// so a code is stored and compared, never computed with.
    pub fn code(self) -> u64 {
        self.0
    }

    /// The position whose [`code`](Position::code) this is: a stored checkpoint read back. A code
    /// that no store handed out names no event (a read from it finds the events after it).
    pub fn from_code(code: u64) -> Position {
        Position(code)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The HTTP boundary's parse: the same decimal number [`Display`](fmt::Display) writes.
impl std::str::FromStr for Position {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Position)
    }
}

/// The optimistic-concurrency condition of an append.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedRevision {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's last event must have exactly this revision.
    Exact(Revision),
}

/// What a stream's end was when an append was checked; reported in `WrongExpectedRevision`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CurrentRevision {
    NoStream,
    Current(Revision),
}

impl fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedRevision::Any => f.write_str("any"),
            ExpectedRevision::NoStream => f.write_str("no stream"),
            ExpectedRevision::StreamExists => f.write_str("stream exists"),
            ExpectedRevision::Exact(r) => write!(f, "revision {r}"),
        }
    }
}

impl fmt::Display for CurrentRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CurrentRevision::NoStream => f.write_str("no stream"),
            CurrentRevision::Current(r) => write!(f, "revision {r}"),
        }
    }
}

/// The namespace of a stream name: up to the first `/`, or `""` without one.
pub(crate) fn namespace_of(stream: &str) -> &str {
    stream.split_once('/').map_or("", |(namespace, _)| namespace)
}
