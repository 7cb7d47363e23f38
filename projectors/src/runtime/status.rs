//! Live figures of a running projection, shared between its projector (the only writer) and
//! whoever reports on it (the projections API, metrics). Lock-free: the projector updates them
//! once per batch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    throughput: Mutex<Throughput>,
}

/// Events applied per second, measured over windows of [`WINDOW`]: the last full window's rate.
#[derive(Debug)]
struct Throughput {
    started: Instant,
    applied_at_start: u64,
    /// The rate of the last full window and when that window ended.
    last: Option<(f64, Instant)>,
}

/// How long a throughput window lasts.
const WINDOW: Duration = Duration::from_secs(5);

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
            throughput: Mutex::new(Throughput { started: Instant::now(), applied_at_start: 0, last: None }),
        }
    }

    /// Events applied per second over the last few seconds (0 when nothing was applied lately).
    pub fn events_per_second(&self) -> f64 {
        let t = self.throughput.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match t.last {
            // A window that ended long ago says nothing of now; a window in progress does.
            Some((rate, ended)) if now.duration_since(ended) < WINDOW * 2 => rate,
            _ => {
                let elapsed = now.duration_since(t.started).as_secs_f64();
                let applied = self.applied.load(Ordering::Relaxed) - t.applied_at_start;
                if elapsed >= 1.0 {
                    applied as f64 / elapsed
                } else {
                    0.0
                }
            }
        }
    }

    pub fn snapshot(&self) -> StatusSnapshot {
        let next = self.checkpoint_next.load(Ordering::Acquire);
        StatusSnapshot {
            checkpoint: next.checked_sub(1).map(Position::from_code),
            applied: self.applied.load(Ordering::Relaxed),
            parked: self.parked.load(Ordering::Relaxed),
            caught_up: self.caught_up.load(Ordering::Relaxed),
        }
    }

    /// Whether every event at or before `position` (of those the projection reads) is in the
    /// view: what read-your-writes waits for.
    pub fn has_applied(&self, position: Position) -> bool {
        self.checkpoint_next.load(Ordering::Acquire) > position.code()
    }

    pub(crate) fn set_checkpoint(&self, checkpoint: Option<Position>) {
        self.checkpoint_next.store(checkpoint.map_or(0, |p| p.code() + 1), Ordering::Release);
    }

    pub(crate) fn committed(&self, checkpoint: Position, events: u64, parked: u64) {
        let applied = self.applied.fetch_add(events, Ordering::Relaxed) + events;
        let mut t = self.throughput.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let elapsed = now.duration_since(t.started);
        if elapsed >= WINDOW {
            let rate = (applied - t.applied_at_start) as f64 / elapsed.as_secs_f64();
            *t = Throughput { started: now, applied_at_start: applied, last: Some((rate, now)) };
        }
        drop(t);
        self.parked.fetch_add(parked, Ordering::Relaxed);
        self.set_checkpoint(Some(checkpoint));
    }

    pub(crate) fn set_caught_up(&self) {
        self.caught_up.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_is_the_rate_of_recent_commits_and_zero_when_idle() {
        let status = ProjectionStatus::new("t");
        assert_eq!(status.events_per_second(), 0.0, "nothing applied yet");
        // As if the window had started 2 s ago and 4,000 events came since.
        status.throughput.lock().unwrap().started = Instant::now() - Duration::from_secs(2);
        status.committed(Position::from_code(10), 4_000, 0);
        let rate = status.events_per_second();
        assert!((1_500.0..=2_100.0).contains(&rate), "about 4,000 events in 2 s: {rate}");
        // A full window: its rate is what is reported.
        status.throughput.lock().unwrap().started = Instant::now() - WINDOW;
        status.committed(Position::from_code(11), 1_000, 0);
        let rate = status.events_per_second();
        assert!((900.0..=1_100.0).contains(&rate), "5,000 events in a 5 s window: {rate}");
        // Long idle: neither the old window nor the current one says anything is happening.
        {
            let mut t = status.throughput.lock().unwrap();
            let (rate, _) = t.last.expect("a full window");
            t.last = Some((rate, Instant::now() - WINDOW * 3));
            t.started = Instant::now() - WINDOW * 3;
        }
        assert!(status.events_per_second() < 1.0, "idle for a long while");
    }
}
