//! The write of one group: one statement, one transaction, that inserts the group's events and
//! moves the head row only from where the group's decisions assumed it — in one of two orders
//! ([`WritePath`]) — and what a group adds to the writer's view of the log for the groups
//! decided after it.

use std::sync::Arc;

use tokio_postgres::{Client, Statement};
use uuid::Uuid;

use super::checks::{Accepted, Stored, View};

/// How a group is written: both are one statement, one transaction, and give the same log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WritePath {
    /// [`LOCK_THEN_INSERT`]: cheapest per group; what small groups take.
    LockThenInsert,
    /// [`INSERT_THEN_LOCK`]: groups in flight insert in parallel; what large groups take.
    InsertThenLock,
}

/// Move the head from where the checks assumed it ($11, $12: position and token of the group
/// that put it there) past the group, and insert the group's events only if that succeeded.
/// 0 rows moved: the assumption was stale. The head row is locked for the whole insert, so the
/// inserts of a process's groups in flight run one after another.
pub const LOCK_THEN_INSERT: &str = "WITH h AS ( \
      UPDATE annals_head SET next_position = $9, last_group = $10, \
             last_recorded_at = greatest(last_recorded_at, clock_timestamp()) \
      WHERE next_position = $11 AND last_group = $12 RETURNING last_recorded_at), \
    ins AS ( \
      INSERT INTO annals_events (position, stream, revision, namespace, id, event_type, data, metadata, recorded_at) \
      SELECT u.p, u.s, u.r, u.n, u.i, u.t, u.d, u.m, h.last_recorded_at FROM h, \
             unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::uuid[], $6::text[], $7::bytea[], \
                    $8::bytea[]) AS u(p, s, r, n, i, t, d, m) RETURNING 1) \
    SELECT (SELECT count(*) FROM h), (SELECT count(*) FROM ins), pg_notify('annals_events', '')";

/// The function of schema migration 2: insert the group's events, then — once the group before
/// it in this process has ended — move the head from where the checks assumed it ($9, $10) past
/// the group; a head elsewhere raises [`STALE_HEAD`] and nothing is written.
///
/// The rows go in before the head row is locked: the groups in flight insert in parallel (on a
/// connection each), and the lock, which serializes every appending transaction of the
/// database, is held only to move the head and commit. With the lock taken first, a process's
/// inserts run one after another and one core's worth of inserting is the ceiling of large
/// batches (0.73x the peer's four parallel transactions; 1.2–1.3x that with this path,
/// BENCHMARKS.md). The waits, in order:
/// - on the group before it in this process: each group holds an advisory lock keyed by its
///   token until it ends, and the next one takes it shared; and since the predecessor's
///   statement, sent first on another connection, may not have taken it yet, the function also
///   waits (a few tens of milliseconds at most) while the committed head is short of where the
///   group assumed it — else it would find the head short and be decided again. Both waits are
///   bounded (100 ms for the lock): the group holds its rows meanwhile, and the one before may
///   wait for another process's group that waits for those rows (the same positions), a cycle
///   the deadlock detector would break only after a second (the load tests met it); past the
///   bound the group is stale and the cycle is gone;
/// - never on the head row: it is locked `NOWAIT`. A head that is where the group assumed and
///   locked is held by another process's group that assumed the same and wins; waiting for it
///   could deadlock when that group, locking first, waits for this group's rows (same
///   positions). That, and a head elsewhere, make the group stale.
///
/// It costs the server a little more per group (the function, the advisory locks: ~2 µs per
/// event in a batch of 1,000) than [`LOCK_THEN_INSERT`], which is why small groups do not take it.
pub const INSERT_THEN_LOCK: &str = "SELECT annals_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

/// The advisory-lock key of a group (`annals_append`'s `_key`): 32 bits of its token. Two
/// groups in flight with one key would only make one wait a little longer.
fn key(token: Uuid) -> i32 {
    let b = token.as_bytes();
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The SQLSTATE `annals_append` raises when the head is not where the group assumed.
const STALE_HEAD: &str = "AN001";

/// Whether the write failed because the log moved under the group's assumptions: the head was
/// elsewhere or locked by a group that wins, the group before it took too long, or another
/// process's events took its positions or revisions first (the unique indexes on the position
/// and on (stream, revision), met before the head). Nothing was written; the group is decided
/// again from fresh lookups.
fn stale(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        db.code().code() == STALE_HEAD
            || db.code() == &tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE
            // Two groups of different processes inserting the same keys in different orders
            // (rare: the same events appended through two processes at once); the rolled-back
            // one is decided again and finds the other's events.
            || db.code() == &tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
            || (db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION
                && matches!(db.constraint(), Some("annals_events_pkey" | "annals_events_stream_revision")))
    })
}

/// The write failed on the unique (namespace, id) index: an id of the group is stored.
pub fn stored_id(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION
            && db.constraint() == Some("annals_events_namespace_id")
    })
}

pub fn added_by(accepted: &[Accepted]) -> View {
    let mut view = View::default();
    for a in accepted {
        let stream = a.append.stream.as_str().to_owned();
        let namespace = a.append.stream.namespace().to_owned();
        for (i, event) in a.append.events.iter().enumerate() {
            let entry = Stored {
                stream: stream.clone(),
                revision: a.first_revision + i as i64,
                position: a.first_position + i as i64,
            };
            view.ids.insert((namespace.clone(), event.id()), entry);
        }
        view.streams.insert(stream, Some(a.first_revision + a.append.events.len() as i64 - 1));
    }
    view
}

/// Writes a group: `true` if the head was where it was assumed (the group is committed),
/// `false` if not (nothing was written).
pub async fn write_group(
    client: Arc<Client>,
    (path, write): (WritePath, Statement),
    accepted: Vec<Accepted>,
    [end, expected_position]: [i64; 2],
    [token, expected_token]: [Uuid; 2],
) -> Result<bool, tokio_postgres::Error> {
    let mut positions = Vec::new();
    let (mut streams, mut revisions, mut namespaces) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ids, mut types, mut data, mut metadata) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for a in &accepted {
        for (i, event) in a.append.events.iter().enumerate() {
            positions.push(a.first_position + i as i64);
            streams.push(a.append.stream.as_str());
            revisions.push(a.first_revision + i as i64);
            namespaces.push(a.append.stream.namespace());
            ids.push(event.id());
            types.push(event.event_type());
            data.push(event.data().as_ref());
            metadata.push(event.metadata().as_ref());
        }
    }
    if path == WritePath::LockThenInsert {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 12] = [
            &positions,
            &streams,
            &revisions,
            &namespaces,
            &ids,
            &types,
            &data,
            &metadata,
            &end,
            &token,
            &expected_position,
            &expected_token,
        ];
        let row = client.query_one(&write, &params).await?;
        return Ok(row.get::<_, i64>(0) == 1);
    }
    let (key, expected_key) = (key(token), key(expected_token));
    let written = client
        .execute(
            &write,
            &[
                &positions,
                &streams,
                &revisions,
                &namespaces,
                &ids,
                &types,
                &data,
                &metadata,
                &expected_position,
                &expected_token,
                &expected_key,
                &end,
                &token,
                &key,
            ],
        )
        .await;
    match written {
        Ok(_) => Ok(true),
        Err(e) if stale(&e) => Ok(false),
        Err(e) => Err(e),
    }
}
