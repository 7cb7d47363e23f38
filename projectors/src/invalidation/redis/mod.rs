//! Cache invalidations through Redis (issue 15, feature `redis`): a sink that drops an
//! application's cached entries and records each invalidation in a per-view stream, and a feed
//! that reads the stream back.
//!
//! # What is in Redis
//! - **Cache keys** are the application's: the sink only `UNLINK`s them. An invalidated key of
//!   kind `k` with value `v` of tenant `t` is the template of `k` with `{tenant}` and `{value}`
//!   replaced by the percent-encodings of `t` and `v` ([`keys`]; default
//!   `annals:{tenant}:message:{value}` and likewise `recipient`, `audit_target`, `actor`). A
//!   whole-view invalidation unlinks every key of the view's kinds for its tenant (every
//!   tenant's for `tenant: None`) by `SCAN MATCH` + `UNLINK` of an escaped pattern.
//! - **One stream per view** (default `annals:invalidations:{view}`), trimmed with
//!   `MAXLEN ~ maxlen`. Each entry has one field, `invalidation`, the [`Invalidation`] as JSON
//!   (`{"tenant":…,"view":…,"position":…,"scope":"keys","keys":[{"kind":…,"value":…}]}`), under
//!   the id `<position code>-<n>`, `n` counting from 1 the invalidations of one position.
//! - **A channel** (default `annals:invalidations`) on which each new entry's JSON is published
//!   for listeners that need no history.
//!
//! # How a crash or an outage is recovered
//! Each invalidation is appended by one Lua script that, atomically, checks whether the stream
//! holds it already, appends it, unlinks its keys and publishes it (`sink`); so the stream's
//! last-generated id — durable as Redis is (run it with `appendonly yes`) — is the sink's
//! checkpoint: everything up to it has had its keys unlinked. Re-delivering what was delivered
//! (a retry after a lost answer, a restarted dispatcher) is refused by Redis itself and changes
//! nothing. While Redis is down, `deliver` answers `Unavailable` at once and the dispatcher
//! keeps the invalidations (collapsing them into one whole-view invalidation per tenant when its
//! queue overflows) and retries with backoff; projections never wait. A restarted process
//! compares the sink's checkpoint with the view's and sends a [`FlushReason::Resumed`]
//! whole-view invalidation when the sink is behind. A feed reader resumes after the last
//! position it received; when entries after it were trimmed away it gets a
//! [`FlushReason::Trimmed`] whole-view invalidation first, and when Redis goes away its stream
//! ends with `Unavailable` and it resumes the same way.
//!
//! [`FlushReason::Resumed`]: crate::invalidation::FlushReason::Resumed
//! [`FlushReason::Trimmed`]: crate::invalidation::FlushReason::Trimmed
//! [`Invalidation`]: crate::invalidation::Invalidation

pub mod config;
pub mod feed;
pub mod health;
pub mod keys;
pub mod sink;
mod stream;
#[cfg(feature = "testsuite")]
pub mod testing;

pub use config::{ConfigError, RedisConfig, RedisOptions};
pub use feed::RedisFeed;
pub use health::{RedisHealth, RedisProbe};
pub use keys::{encode, KeyTemplate};
pub use sink::{Delivered, RedisSink};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::invalidation::InvalidationError;

/// A lazily connecting, self-reconnecting connection: one attempt per call, bounded by the
/// configured timeout, so a call on a dead Redis fails fast and the caller's backoff decides
/// when to try again.
fn connection_manager(config: &RedisConfig) -> Result<ConnectionManager, InvalidationError> {
    let settings = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.timeout()))
        .set_response_timeout(Some(config.timeout()))
        .set_number_of_retries(1)
        .set_max_delay(config.timeout());
    ConnectionManager::new_lazy_with_config(config.client(), settings).map_err(stream::classify)
}
