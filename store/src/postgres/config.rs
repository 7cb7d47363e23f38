//! Settings of the PostgreSQL store: where the database is, how many connections, and the same
//! limits as the embedded engine's `EngineConfig` (the contract promises typed errors at them).

use std::str::FromStr;
use std::time::Duration;

use crate::error::StoreError;

/// How a [`PostgresStore`](super::PostgresStore) (or a [`PostgresLease`](super::PostgresLease))
/// connects. `url` is a libpq connection string: a URL (`postgresql://user@host/db`) or
/// key-value pairs (`host=/run/postgresql dbname=annals user=annals`; a `host` that is a path
/// is a Unix socket directory).
#[derive(Clone)]
pub struct PostgresConfig {
    pub url: String,
    /// Connections of the read pool (the writer and the `LISTEN` connection are two more).
    pub pool_size: usize,
    /// Largest event (type + data + metadata), in bytes.
    pub max_event_size: usize,
    /// Most events in one append.
    pub max_batch_events: usize,
    /// Most bytes (sum of event sizes) in one append.
    pub max_batch_bytes: usize,
    /// The writer stops adding appends to a group past this many bytes: it bounds the memory a
    /// group takes and the size of its transaction.
    pub max_group_bytes: usize,
    /// Groups the writer has in flight at most, each on a connection of its own: the next group
    /// is looked up and decided while the previous one commits. More overlap hides round trips;
    /// fewer makes bigger groups (more appends per commit).
    pub groups_in_flight: usize,
    /// Groups of at least this many events insert their rows before they lock the head row,
    /// so that the groups in flight insert in parallel (`write.rs`, `INSERT_THEN_LOCK`); smaller
    /// groups lock first, which costs the server less per group. Single-event appends from many
    /// clients make groups of up to one event per client, under the default.
    pub parallel_insert_min_events: usize,
    /// How long connecting, or waiting for a pooled connection, may take before the call fails
    /// as unavailable.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for PostgresConfig {
    // The URL may hold a password: show only what is not secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &"…")
            .field("pool_size", &self.pool_size)
            .field("max_event_size", &self.max_event_size)
            .field("max_batch_events", &self.max_batch_events)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("max_group_bytes", &self.max_group_bytes)
            .field("groups_in_flight", &self.groups_in_flight)
            .field("parallel_insert_min_events", &self.parallel_insert_min_events)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl PostgresConfig {
    /// The engine's defaults for the limits, a pool of 16 connections, 5 s to connect.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: url.into(),
            pool_size: 16,
            max_event_size: 1024 * 1024,
            max_batch_events: 10_000,
            max_batch_bytes: 32 * 1024 * 1024,
            max_group_bytes: 8 * 1024 * 1024,
            groups_in_flight: 3,
            parallel_insert_min_events: 128,
            connect_timeout: Duration::from_secs(5),
        }
    }

    pub fn pool_size(mut self, connections: usize) -> Self {
        self.pool_size = connections.max(1);
        self
    }

    pub fn max_event_size(mut self, bytes: usize) -> Self {
        self.max_event_size = bytes;
        self
    }

    pub fn max_batch_events(mut self, count: usize) -> Self {
        self.max_batch_events = count;
        self
    }

    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes;
        self
    }

    pub fn max_group_bytes(mut self, bytes: usize) -> Self {
        self.max_group_bytes = bytes;
        self
    }

    pub fn groups_in_flight(mut self, groups: usize) -> Self {
        self.groups_in_flight = groups.max(1);
        self
    }

    pub fn parallel_insert_min_events(mut self, events: usize) -> Self {
        self.parallel_insert_min_events = events.max(1);
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The parsed connection settings, with our timeout and application name.
    pub(crate) fn pg_config(&self) -> Result<tokio_postgres::Config, StoreError> {
        // No typed configuration error in `StoreError` yet: "unsupported format in
        // PostgresConfig::url: …" says what is wrong.
        let mut config = tokio_postgres::Config::from_str(&self.url).map_err(|e| StoreError::UnsupportedFormat {
            file: "PostgresConfig::url".into(),
            reason: format!("not a PostgreSQL connection string: {e}"),
        })?;
        config.connect_timeout(self.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("annals");
        }
        Ok(config)
    }
}
