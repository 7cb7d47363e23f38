//! Whether Redis answers, for `/readyz`: a Redis that does not answer makes the process
//! *degraded* (invalidations wait in the sink's queue and are retried), never unhealthy —
//! `/healthz` does not ask, and projections and queries go on without Redis.

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::config::RedisConfig;
use super::stream::classify;
use crate::invalidation::InvalidationError;

/// What a probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisHealth {
    /// `PING` answered within the timeout.
    Up,
    /// Redis did not answer, or refused: what `/readyz` reports as degraded.
    Degraded { reason: String },
}

/// Pings Redis on a connection of its own (so a sink stuck on a slow command does not make the
/// probe wait).
#[derive(Clone)]
pub struct RedisProbe {
    connection: ConnectionManager,
    timeout: Duration,
}

impl std::fmt::Debug for RedisProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisProbe").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl RedisProbe {
    /// A probe for `config`; must be called inside a tokio runtime. Connects on first use.
    pub fn new(config: &RedisConfig) -> Result<RedisProbe, InvalidationError> {
        Ok(RedisProbe { connection: super::connection_manager(config)?, timeout: config.timeout() })
    }

    pub async fn check(&self) -> RedisHealth {
        let mut con = self.connection.clone();
        let ping = redis::cmd("PING");
        match tokio::time::timeout(self.timeout, ping.query_async::<String>(&mut con)).await {
            Ok(Ok(_)) => RedisHealth::Up,
            Ok(Err(e)) => RedisHealth::Degraded { reason: classify(e).to_string() },
            Err(_) => {
                RedisHealth::Degraded { reason: format!("redis did not answer a ping within {:?}", self.timeout) }
            }
        }
    }
}
