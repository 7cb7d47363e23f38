//! The PostgreSQL event store: the same [`EventStore`](crate::EventStore) contract as the
//! embedded engine, kept by a PostgreSQL database that several annals processes share.
//!
//! # Schema (`schema.rs`, version 2; created and migrated at connect)
//!
//! ```text
//! annals_schema  (version int, applied_at)          one row per applied migration
//! annals_head    (singleton bool PK, next_position bigint, last_recorded_at timestamptz,
//!                 last_group uuid)
//!                exactly one row: the position the next event gets, the time of the last one,
//!                the token of the group that wrote last
//! annals_events  (position bigint PK, stream text, revision bigint, namespace text, id uuid,
//!                 event_type text, data bytea, metadata bytea, recorded_at timestamptz)
//!                UNIQUE (stream, revision)   stream reads, and the stream's current revision
//!                UNIQUE (namespace, id)      durable idempotency, ids scoped by namespace
//!                INDEX  (namespace, position) `$all` reads filtered to one namespace (a tenant)
//! annals_append(…)  (version 2) the write of a large group: insert, then move the head
//! ```
//!
//! Text columns use the `C` collation (bytes, like the engine's comparisons). `data` and
//! `metadata` are `bytea`: the exact bytes the client sent, so hashes of events are stable (a
//! `jsonb` column would reorder keys and drop duplicate whitespace).
//!
//! # Append protocol (`writer.rs`, checks in `checks.rs`)
//!
//! One writer task per process does group commit: it takes every append waiting (up to
//! `max_group_bytes`) as one group, and
//!
//! 1. looks up, in one round trip and without a lock, the head row (next position and the
//!    token of the group that wrote last) and the current revision of each stream of the group
//!    (and which of its event ids are stored, per namespace, when the group is checked: below);
//! 2. decides each append in Rust with the engine's rules (expected revision, idempotent retry
//!    or conflict) against that, plus the groups of this process still in flight, plus the
//!    appends accepted before it in the group: a failed check fails only its own append;
//! 3. writes the accepted events with ONE statement (one transaction, autocommit) that inserts
//!    them and moves the head row past the group — `UPDATE annals_head … WHERE next_position =
//!    <assumed> AND last_group = <assumed token>`, with `recorded_at = max(now, last)` and the
//!    group's new token — so that the events are written only if the head was where the
//!    group assumed; a `pg_notify` goes out on commit. A small group locks the head first and
//!    inserts under the lock (`INSERT … SELECT FROM <that update>, unnest(…)`); a group of
//!    `parallel_insert_min_events` or more inserts first and moves the head after
//!    (`annals_append`), so that the groups in flight insert in parallel (`write.rs` says how
//!    it waits for the group before it, and why it never waits on the head row);
//! 4. answers the group's appenders after that statement returned (committed). If the head was
//!    not where the group assumed — another process wrote first, or a group before it in this
//!    process failed — nothing was written, and the group (with every group after it, which
//!    assumed it) is decided again from fresh lookups.
//!
//! Ids are left to the unique (namespace, id) index at first: a group whose write it refuses,
//! or in which an expected revision was refused (a retry is answered with its original result
//! whatever its expected revision, so a refusal stands only once the ids are known), is decided
//! again with its ids looked up. Retries are rare; looking up every id of every batch is not.
//!
//! Up to three groups are in flight, each on a connection of its own: the next group is looked
//! up and decided (and, if large, inserted) while the previous one commits, and its statement
//! waits on the server for it. So the lock every append of every process takes is held for one statement
//! and its commit (`fsync`), never while a client process is scheduled, thinks, or talks.
//!
//! Why the head row instead of a sequence: a sequence hands out values at `INSERT` time, and
//! transactions commit in another order, so a reader can see position 11 before 10 commits and
//! skip 10 forever (Marten, Eventuous and SQLStreamStore all had this bug); a rolled-back
//! transaction leaves a hole. The head row update and the events are one transaction, and the
//! transaction that holds positions `n..m` commits (becomes visible) before the next one can
//! even read `m`: every snapshot sees a prefix of the log, positions are dense, and a rollback
//! gives its positions back. The cost is one appending transaction at a time per database —
//! which group commit turns into one `fsync` per group, the embedded writer's trade.
//!
//! # Reads and subscriptions (`reader.rs`, `subscribe.rs`)
//!
//! Reads go through a pool. A `$all` page is one statement that reads the head row and the
//! events below it together (one snapshot), with the filter, the event bound, the byte bound
//! and the scan bound applied in SQL, so a page of 1 MiB events does not fetch a thousand of
//! them. Subscriptions are reads in a loop, as in the engine: each task re-reads from the last
//! position it delivered; a `LISTEN annals_events` connection (one per store) wakes them when a
//! group commits anywhere, and after it reconnects (notifications sent while it was away are
//! lost, so it wakes everyone once it is back). A read that fails for want of the server is
//! retried with backoff, so a PostgreSQL restart pauses a subscription and never ends it.
//!
//! # Recovery
//!
//! There is nothing of ours to recover: PostgreSQL's WAL makes a committed group durable, an
//! uncommitted one vanishes whole (positions included). An append whose `COMMIT` got no answer
//! (the connection broke) is answered with a transient error although it may have committed:
//! the client retries with the same ids, and durable idempotency answers the retry with the
//! original result. The writer reconnects (with backoff) on the next group.
//!
//! # Why `tokio-postgres` + `deadpool-postgres`
//!
//! `tokio-postgres` is the asynchronous client the Rust PostgreSQL ecosystem builds on (sqlx
//! and diesel-async have their own layers; we want none of their query macros or ORM): it
//! pipelines concurrent queries on one connection — the writer's lookups are one round trip
//! because of that — speaks the binary format (`bytea` arrives as bytes, no hex decoding) and
//! exposes `LISTEN/NOTIFY` messages directly. `deadpool-postgres` is the small, maintained pool
//! for it, with a per-connection statement cache and a cheap liveness check on checkout, so a
//! connection broken by a server restart is replaced, not handed out.

mod checks;
mod config;
mod lease;
mod reader;
mod schema;
mod shared;
mod store;
mod subscribe;
#[cfg(feature = "testsuite")]
pub mod testing;
mod write;
mod writer;

pub use config::PostgresConfig;
pub use lease::PostgresLease;
pub use store::PostgresStore;

use crate::error::StoreError;
use crate::model::Position;

/// The one place a connection failure becomes a `StoreError`: transient, retry later.
pub(crate) fn unavailable(what: &'static str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable { backend: "postgresql", reason: format!("{what}: {detail}") }
}

/// Whether `e` is what [`unavailable`] makes (the store retries such reads itself).
pub(crate) fn is_unavailable(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable { .. } | StoreError::Timeout { .. })
}

/// A database error: transient when the connection or the server is the cause, else permanent.
pub(crate) fn db_error(what: &'static str, e: tokio_postgres::Error) -> StoreError {
    let detail = describe(&e);
    if is_connection_error(&e) {
        unavailable(what, detail)
    } else {
        StoreError::Index(format!("postgresql {what}: {detail}"))
    }
}

/// A pool error (no connection could be had in time): transient.
pub(crate) fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db_error("connect", e),
        deadpool_postgres::PoolError::Closed => StoreError::Closed,
        other => unavailable("connect", other),
    }
}

fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // Class 08 (connection exception), 57P01-57P03 (server shutting down, crashed, starting),
        // 53300 (too many connections): the server, not the request.
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }
        // No SQLSTATE: the client failed to talk to the server (I/O, protocol, timeout).
        None => e.as_db_error().is_none(),
    }
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let source = std::error::Error::source(e).map(|s| format!(": {s}")).unwrap_or_default();
            format!("{e}{source}")
        }
    }
}

/// The one pair that turns positions into database values (`bigint`) and back.
pub(crate) fn position_from_db(value: i64) -> Position {
    Position::from_code(u64::try_from(value).expect("positions in the database are never negative"))
}

/// A position as a `bigint`; one past what a `bigint` holds reads as "after everything".
pub(crate) fn position_to_db(position: Position) -> i64 {
    i64::try_from(position.code()).unwrap_or(i64::MAX)
}
