//! Pages of `$all` bounded in events, bytes and events examined, and where the next one starts.
//!
//! Why this exists: a page bounded by event count alone held a GB of 1 MB events, and a read with
//! a rare filter read on through the whole log; `EventStore::read_all_page` takes these bounds.

use crate::model::{Position, RecordedEvent};

/// The bounds of one page of `$all` ([`EventStore::read_all_page`](crate::EventStore::read_all_page)):
/// the page ends at whichever comes first. A page always holds at least one event if one matches
/// within `max_scan`, whatever its size.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PageLimits {
    /// Events returned, at most.
    pub max_count: usize,
    /// Bytes of events returned ([`RecordedEvent::size`]), at most — exceeded only by a page's
    /// first event, which is returned whatever its size.
    pub max_bytes: usize,
    /// Events examined, matching the filter or not, at most (KurrentDB's "max search window"):
    /// bounds the work of a read whose filter matches rarely. Events of other namespaces that a
    /// namespace-filtered read skips through the index are not examined.
    pub max_scan: usize,
}

impl PageLimits {
    /// At most `max_count` events, no other bound.
    pub fn count(max_count: usize) -> Self {
        PageLimits { max_count, max_bytes: usize::MAX, max_scan: usize::MAX }
    }
}

/// One page of `$all`, and where the next one starts.
#[derive(Clone, PartialEq, Debug)]
pub struct AllPage {
    pub events: Vec<RecordedEvent>,
    /// Where to read on: forwards, the position after the last event examined (at the end of the
    /// log, the head's next position); backwards, the position before it (`None` past position
    /// 0). Reading on from here never skips or repeats an event.
    pub next: Option<Position>,
    /// The read reached the end of the log (forwards: the head; backwards: position 0): only
    /// events appended since can follow.
    pub reached_end: bool,
    /// Events examined (the figure `max_scan` bounds): a caller that reads on can carry one
    /// scan budget across several reads.
    pub examined: usize,
}
