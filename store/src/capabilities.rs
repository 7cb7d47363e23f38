//! What differs between backends of the [`EventStore`](crate::EventStore) contract, stated by each
//! backend ([`EventStore::capabilities`](crate::EventStore::capabilities)).
//!
//! Why this exists: the contract is written for every backend (the embedded engine, PostgreSQL,
//! KurrentDB), but some promises only some backends can keep: KurrentDB's `$all` positions are
//! sparse byte offsets of commits (a read from a position no event has fails), its event-id
//! deduplication for `Any`/`StreamExists` appends is an in-memory window lost on restart, and it
//! cannot see an id stored in another stream. Rather than promise the weakest everywhere or
//! pretend everywhere, each backend says what it keeps; callers that need a capability ask for it
//! (the integrity log needs dense positions), and the conformance suite checks each promise a
//! backend makes and the weaker one where it makes none.

use crate::ids::Position;

/// What a backend promises beyond the contract every backend keeps.
///
/// `#[non_exhaustive]`: only backends (in this crate) make one, and a new capability is not a
/// breaking change for the code that reads them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct Capabilities {
    /// Positions are 0 for the first event and then contiguous (no gap, ever): `Some` holds the
    /// only way to turn positions into indexes and back. Without it positions are only ordered.
    pub dense_positions: Option<DensePositions>,
    /// A retry is recognised by its ids for every `ExpectedRevision`, across restarts. Without
    /// it, `Exact`/`NoStream` retries are still recognised (the revision check catches them), but
    /// `Any`/`StreamExists` retries only within a window the backend keeps (KurrentDB: in memory,
    /// lost on restart), after which a retry is appended again.
    pub durable_idempotency: bool,
    /// An id stored in another stream of the same namespace is an `IdempotencyConflict`. Without
    /// it, the store cannot see ids of other streams: the append writes a second event with that
    /// id.
    pub cross_stream_id_conflicts: bool,
    /// [`EventStore::distance`](crate::EventStore::distance) counts the events between two
    /// positions; without it, it answers `None` and lag is reported in seconds only.
    pub counts_distance: bool,
    /// A read of `$all` `At` a position that is no event's (between two events, or past the head)
    /// starts at the next event. Without it only positions the store handed out (an event's, a
    /// page's `next`) may be read from: KurrentDB fails a read from a non-boundary offset.
    pub reads_from_any_position: bool,
}

impl Capabilities {
    /// Everything the embedded engine promises (it keeps every capability).
    pub(crate) fn everything() -> Self {
        Capabilities {
            dense_positions: Some(DENSE),
            durable_idempotency: true,
            cross_stream_id_conflicts: true,
            counts_distance: true,
            reads_from_any_position: true,
        }
    }
}

/// The proof that a backend's positions are dense (0, 1, 2, … in commit order, no gap), and the
/// only public conversion between positions and indexes: what an RFC 9162 log (leaf `i` is the
/// event at position `i`) needs. Only a backend can make one
/// ([`Capabilities::dense_positions`]), so code that indexes positions cannot run on a backend
/// whose positions are sparse.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DensePositions(());

/// The proof, for backends of this crate whose positions are dense.
pub(crate) const DENSE: DensePositions = DensePositions(());

impl DensePositions {
    /// The index of `position`: the number of events before it.
    pub fn index(self, position: Position) -> u64 {
        position.0
    }

    /// The position of the event with `index` events before it.
    pub fn position(self, index: u64) -> Position {
        Position(index)
    }

    /// The events after `after` (`None`: from the first) up to `through` (included): with dense
    /// positions, the positions between. What a dense backend answers to `EventStore::distance`.
    pub(crate) fn distance(self, after: Option<Position>, through: Position) -> u64 {
        let first = after.map_or(0, |p| p.0.saturating_add(1));
        through.0.saturating_add(1).saturating_sub(first)
    }
}
