//! Jittered exponential backoff, shared by the projector runtime (failed commits, broken
//! subscriptions) and the invalidation dispatchers (a sink that is down): a leaf beside the
//! folders, so neither imports the other.

use std::time::Duration;

/// 50 ms doubling to 5 s ("full jitter": uniform in [d/2, d]).
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = 50u64.saturating_mul(1 << self.attempt.min(7)).min(5_000);
        self.attempt += 1;
        let jitter = rand::random::<f64>() * 0.5 + 0.5;
        Duration::from_millis((ceiling as f64 * jitter) as u64)
    }
}
