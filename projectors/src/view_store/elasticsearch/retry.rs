//! Jittered exponential backoff for the `_bulk` items an Elasticsearch node answered `429` or
//! `5xx` for ("full jitter": a uniform delay up to the exponential bound), so that many
//! projectors pushed back at once do not come back at once.

use std::time::Duration;

use rand::Rng;

use super::config::RetryPolicy;

/// The delays of one commit's retries.
#[derive(Debug)]
pub(crate) struct Backoff {
    policy: RetryPolicy,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(policy: RetryPolicy) -> Self {
        Backoff { policy, attempt: 0 }
    }

    /// The delay before the next attempt, or `None` once the policy's attempts are spent.
    pub(crate) fn next_delay(&mut self) -> Option<Duration> {
        if self.attempt >= self.policy.attempts {
            return None;
        }
        let bound = self.policy.base.saturating_mul(1u32 << self.attempt.min(20)).min(self.policy.max);
        self.attempt += 1;
        let micros = bound.as_micros().min(u64::MAX as u128) as u64;
        Some(Duration::from_micros(rand::thread_rng().gen_range(0..=micros)))
    }

    pub(crate) fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_the_exponential_bound_and_stop_after_the_attempts() {
        let policy = RetryPolicy { attempts: 5, base: Duration::from_millis(10), max: Duration::from_millis(50) };
        let mut backoff = Backoff::new(policy);
        let bounds = [10, 20, 40, 50, 50];
        for bound in bounds {
            let delay = backoff.next_delay().expect("an attempt left");
            assert!(delay <= Duration::from_millis(bound), "{delay:?} > {bound} ms");
        }
        assert_eq!(backoff.next_delay(), None);
        assert_eq!(backoff.attempts(), 5);
    }
}
