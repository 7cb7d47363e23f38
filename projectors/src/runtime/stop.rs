//! Why one subscription of the projector ended, and how long it waits before the next: shared by
//! the loop (`mod.rs`) and the commits it starts (`commit.rs`).

use std::time::Duration;

pub(super) enum Stop {
    /// The store is gone: nothing to retry.
    Closed,
    /// Shutdown came while a batch could not be committed; it is left for the next start.
    Abandoned,
    Retry(String),
}

impl Stop {
    pub(super) fn store(e: annals_store::StoreError) -> Stop {
        match e {
            annals_store::StoreError::Closed => Stop::Closed,
            other => Stop::Retry(other.to_string()),
        }
    }

    pub(super) fn view(e: crate::error::ViewError) -> Stop {
        Stop::Retry(e.to_string())
    }
}

/// Jittered exponential backoff, 50 ms doubling to 5 s ("full jitter": uniform in [d/2, d]).
#[derive(Default)]
pub(super) struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub(super) fn next_delay(&mut self) -> Duration {
        let ceiling = 50u64.saturating_mul(1 << self.attempt.min(7)).min(5_000);
        self.attempt += 1;
        let jitter = rand::random::<f64>() * 0.5 + 0.5;
        Duration::from_millis((ceiling as f64 * jitter) as u64)
    }
}
