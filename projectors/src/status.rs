//! Live figures of a running projection, shared between its projector (the only writer) and
//! whoever reports on it (the projections API, metrics). Lock-free: the projector updates them
//! once per batch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use annals_store::Position;

/// What a projection has done so far in this process.
#[derive(Debug)]
pub struct ProjectionStatus {
    pub name: &'static str,
    /// The committed checkpoint plus one; 0 when nothing is committed.
    checkpoint_next: AtomicU64,
    applied: AtomicU64,
    parked: AtomicU64,
    caught_up: AtomicBool,
}

/// A consistent-enough copy of the figures (each one is exact; they are read one by one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusSnapshot {
    pub checkpoint: Option<Position>,
    /// Events read and committed since the process started (parked ones included).
    pub applied: u64,
    /// Events parked since the process started.
    pub parked: u64,
    /// Whether the projection has reached the head of the log at least once.
    pub caught_up: bool,
}

impl ProjectionStatus {
    pub fn new(name: &'static str) -> Self {
        ProjectionStatus {
            name,
            checkpoint_next: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            parked: AtomicU64::new(0),
            caught_up: AtomicBool::new(false),
        }
    }

    pub fn snapshot(&self) -> StatusSnapshot {
        let next = self.checkpoint_next.load(Ordering::Acquire);
        StatusSnapshot {
            checkpoint: next.checked_sub(1).map(Position),
            applied: self.applied.load(Ordering::Relaxed),
            parked: self.parked.load(Ordering::Relaxed),
            caught_up: self.caught_up.load(Ordering::Relaxed),
        }
    }

    /// Whether every event at or before `position` (of those the projection reads) is in the
    /// view: what read-your-writes waits for.
    pub fn has_applied(&self, position: Position) -> bool {
        self.checkpoint_next.load(Ordering::Acquire) > position.0
    }

    pub(crate) fn set_checkpoint(&self, checkpoint: Option<Position>) {
        self.checkpoint_next.store(checkpoint.map_or(0, |p| p.0 + 1), Ordering::Release);
    }

    pub(crate) fn committed(&self, checkpoint: Position, events: u64, parked: u64) {
        self.applied.fetch_add(events, Ordering::Relaxed);
        self.parked.fetch_add(parked, Ordering::Relaxed);
        self.set_checkpoint(Some(checkpoint));
    }

    pub(crate) fn set_caught_up(&self) {
        self.caught_up.store(true, Ordering::Relaxed);
    }
}
