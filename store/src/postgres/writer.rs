//! The writer task: group commit on one connection (the append protocol of the module doc).
//! It takes every append waiting, checks each against the database under the head row lock,
//! writes the accepted ones in one transaction and answers after `COMMIT`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, NoTls, Statement};
use tracing::warn;
use uuid::Uuid;

use super::store::Shared;
use super::{db_error, is_unavailable, position_from_db, unavailable};
use crate::error::StoreError;
use crate::model::{AppendResult, CurrentRevision, EventData, ExpectedRevision, Revision, StreamId};

pub struct AppendRequest {
    pub stream: StreamId,
    pub expected: ExpectedRevision,
    pub events: Vec<EventData>,
    pub bytes: usize,
    pub reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

/// The writer's connection and its prepared statements (one round trip per statement, and
/// statements of one phase go out together: tokio-postgres pipelines them).
struct Conn {
    client: Client,
    begin: Statement,
    head: Statement,
    streams: Statement,
    ids: Statement,
    insert: Statement,
    move_head: Statement,
    notify: Statement,
    commit: Statement,
    rollback: Statement,
}

const HEAD: &str = "SELECT next_position, greatest(last_recorded_at, clock_timestamp()) FROM annals_head FOR UPDATE";
const STREAMS: &str = "SELECT s, (SELECT max(revision) FROM annals_events e WHERE e.stream = s) \
                       FROM unnest($1::text[]) AS s";
const IDS: &str = "SELECT e.namespace, e.id, e.stream, e.revision, e.position \
                   FROM unnest($1::text[], $2::uuid[]) AS k(namespace, id) \
                   JOIN annals_events e ON e.namespace = k.namespace AND e.id = k.id";
const INSERT: &str = "INSERT INTO annals_events \
                      (position, stream, revision, namespace, id, event_type, data, metadata, recorded_at) \
                      SELECT p, s, r, n, i, t, d, m, $9 FROM unnest($1::bigint[], $2::text[], $3::bigint[], \
                      $4::text[], $5::uuid[], $6::text[], $7::bytea[], $8::bytea[]) AS u(p, s, r, n, i, t, d, m)";
const MOVE_HEAD: &str = "UPDATE annals_head SET next_position = $1, last_recorded_at = $2";
const NOTIFY: &str = "SELECT pg_notify('annals_events', '')";

/// The longest pause between reconnection attempts; the first is 50 ms.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(2);

async fn connect(pg: &tokio_postgres::Config) -> Result<Conn, StoreError> {
    let (client, connection) = pg.connect(NoTls).await.map_err(|e| db_error("connect", e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(error = %e, "postgresql writer connection ended");
        }
    });
    let prepare = |sql: &'static str| {
        let client = &client;
        async move { client.prepare(sql).await.map_err(|e| db_error("prepare", e)) }
    };
    Ok(Conn {
        begin: prepare("BEGIN").await?,
        head: prepare(HEAD).await?,
        streams: prepare(STREAMS).await?,
        ids: prepare(IDS).await?,
        insert: prepare(INSERT).await?,
        move_head: prepare(MOVE_HEAD).await?,
        notify: prepare(NOTIFY).await?,
        commit: prepare("COMMIT").await?,
        rollback: prepare("ROLLBACK").await?,
        client,
    })
}

/// Runs until every sender is gone; wakes local subscriptions after each commit.
pub async fn run(
    pg: tokio_postgres::Config,
    mut rx: mpsc::Receiver<AppendRequest>,
    max_group_bytes: usize,
    shared: Arc<Shared>,
) {
    let mut conn: Option<Conn> = None;
    let mut pause = Duration::ZERO;
    let mut failed_at = Instant::now();
    while let Some(first) = rx.recv().await {
        let mut bytes = first.bytes;
        let mut requests = vec![first];
        while bytes < max_group_bytes {
            match rx.try_recv() {
                Ok(request) => {
                    bytes += request.bytes;
                    requests.push(request);
                }
                Err(_) => break,
            }
        }
        if conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            conn = None;
        }
        if conn.is_none() {
            // Backoff: while the server is away, appends fail at once instead of each paying
            // for a connection attempt.
            if failed_at.elapsed() < pause {
                answer_all(requests, || unavailable("append", "no connection to PostgreSQL; reconnecting"));
                continue;
            }
            match connect(&pg).await {
                Ok(c) => {
                    conn = Some(c);
                    pause = Duration::ZERO;
                }
                Err(e) => {
                    warn!(error = %e, "postgresql writer cannot connect");
                    pause = (pause * 2).clamp(Duration::from_millis(50), MAX_RECONNECT_PAUSE);
                    failed_at = Instant::now();
                    let text = e.to_string();
                    let transient = is_unavailable(&e);
                    answer_all(requests, || same_error(transient, &text));
                    continue;
                }
            }
        }
        let c = conn.as_ref().expect("connected above");
        match commit_group(c, &requests).await {
            Ok((results, committed)) => {
                for (request, result) in requests.into_iter().zip(results) {
                    let _ = request.reply.send(result);
                }
                if committed {
                    shared.wake_all();
                }
            }
            Err(e) => {
                let e = db_error("append", e);
                if is_unavailable(&e) {
                    // The outcome of a COMMIT without an answer is unknown: the appends are
                    // answered as transient failures, and their retries (same ids) are answered
                    // from the log if the group did commit.
                    conn = None;
                    failed_at = Instant::now();
                    pause = Duration::from_millis(50);
                }
                warn!(error = %e, appends = requests.len(), "postgresql group commit failed");
                let text = e.to_string();
                let transient = is_unavailable(&e);
                answer_all(requests, || same_error(transient, &text));
            }
        }
    }
}

fn answer_all(requests: Vec<AppendRequest>, error: impl Fn() -> StoreError) {
    for request in requests {
        let _ = request.reply.send(Err(error()));
    }
}

/// One error for each append of a failed group (`StoreError` is not `Clone`).
fn same_error(transient: bool, text: &str) -> StoreError {
    if transient {
        unavailable("append", text)
    } else {
        StoreError::Index(text.to_owned())
    }
}

type Params<'a, const N: usize> = [&'a (dyn tokio_postgres::types::ToSql + Sync); N];

/// A stored event id: its stream, revision and position.
struct Stored {
    stream: String,
    revision: i64,
    position: i64,
}

/// The events the group writes, as the columns of `INSERT … FROM unnest(…)`.
#[derive(Default)]
struct Columns<'a> {
    positions: Vec<i64>,
    streams: Vec<&'a str>,
    revisions: Vec<i64>,
    namespaces: Vec<&'a str>,
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    data: Vec<&'a [u8]>,
    metadata: Vec<&'a [u8]>,
}

/// One transaction for the group: the answers, and whether anything was committed.
async fn commit_group(
    c: &Conn,
    requests: &[AppendRequest],
) -> Result<(Vec<Result<AppendResult, StoreError>>, bool), tokio_postgres::Error> {
    let mut names: Vec<&str> = requests.iter().map(|r| r.stream.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let (mut key_namespaces, mut key_ids) = (Vec::new(), Vec::new());
    for request in requests {
        for event in &request.events {
            key_namespaces.push(request.stream.namespace());
            key_ids.push(event.id());
        }
    }
    let client = &c.client;
    // Phase 1, one round trip: take the head row lock, then look up what the checks need.
    let (stream_params, id_params): (Params<'_, 1>, Params<'_, 2>) = ([&names], [&key_namespaces, &key_ids]);
    let (begin, head, stream_rows, id_rows) = tokio::join!(
        client.execute(&c.begin, &[]),
        client.query_one(&c.head, &[]),
        client.query(&c.streams, &stream_params),
        client.query(&c.ids, &id_params),
    );
    let phase1 = begin.and_then(|_| Ok((head?, stream_rows?, id_rows?)));
    let (head, stream_rows, id_rows) = match phase1 {
        Ok(rows) => rows,
        Err(e) => {
            let _ = client.execute(&c.rollback, &[]).await;
            return Err(e);
        }
    };
    let first_position: i64 = head.get(0);
    let recorded_at: DateTime<Utc> = head.get(1);
    let mut current: HashMap<String, Option<i64>> =
        stream_rows.iter().map(|row| (row.get::<_, String>(0), row.get::<_, Option<i64>>(1))).collect();
    let mut stored: HashMap<(String, Uuid), Stored> = id_rows
        .iter()
        .map(|row| {
            let key = (row.get::<_, String>(0), row.get::<_, Uuid>(1));
            (key, Stored { stream: row.get(2), revision: row.get(3), position: row.get(4) })
        })
        .collect();
    let mut columns = Columns::default();
    let mut next = first_position;
    let results: Vec<_> =
        requests.iter().map(|r| decide(r, &mut current, &mut stored, &mut next, &mut columns)).collect();
    if columns.positions.is_empty() {
        client.execute(&c.rollback, &[]).await?;
        return Ok((results, false));
    }
    // Phase 2, one round trip: write, move the head, queue the wake-up, commit.
    let insert_params: Params<'_, 9> = [
        &columns.positions,
        &columns.streams,
        &columns.revisions,
        &columns.namespaces,
        &columns.ids,
        &columns.types,
        &columns.data,
        &columns.metadata,
        &recorded_at,
    ];
    let head_params: Params<'_, 2> = [&next, &recorded_at];
    let (insert, moved, notified, commit) = tokio::join!(
        client.execute(&c.insert, &insert_params),
        client.execute(&c.move_head, &head_params),
        client.query(&c.notify, &[]),
        client.execute(&c.commit, &[]),
    );
    // A statement that failed aborted the transaction, and COMMIT then rolled it back.
    insert?;
    moved?;
    notified?;
    commit?;
    Ok((results, true))
}

/// Checks one append as the engine does and, if it is new, adds its events to the group.
fn decide<'a>(
    request: &'a AppendRequest,
    current: &mut HashMap<String, Option<i64>>,
    stored: &mut HashMap<(String, Uuid), Stored>,
    next: &mut i64,
    columns: &mut Columns<'a>,
) -> Result<AppendResult, StoreError> {
    let stream = &request.stream;
    let namespace = stream.namespace();
    let found: Vec<(Uuid, &Stored)> = request
        .events
        .iter()
        .filter_map(|e| stored.get(&(namespace.to_owned(), e.id())).map(|s| (e.id(), s)))
        .collect();
    if !found.is_empty() {
        return retry_result(request, &found);
    }
    let last = current.get(stream.as_str()).copied().flatten();
    let actual = last.map_or(CurrentRevision::NoStream, |r| CurrentRevision::Current(revision(r)));
    let ok = match (request.expected, actual) {
        (ExpectedRevision::Any, _) => true,
        (ExpectedRevision::NoStream, CurrentRevision::NoStream) => true,
        (ExpectedRevision::StreamExists, CurrentRevision::Current(_)) => true,
        (ExpectedRevision::Exact(e), CurrentRevision::Current(a)) => e == a,
        _ => false,
    };
    if !ok {
        return Err(StoreError::WrongExpectedRevision { stream: stream.clone(), expected: request.expected, actual });
    }
    let first_revision = last.map_or(0, |r| r + 1);
    let first_position = *next;
    for (i, event) in request.events.iter().enumerate() {
        let (rev, pos) = (first_revision + i as i64, first_position + i as i64);
        columns.positions.push(pos);
        columns.streams.push(stream.as_str());
        columns.revisions.push(rev);
        columns.namespaces.push(namespace);
        columns.ids.push(event.id());
        columns.types.push(event.event_type());
        columns.data.push(event.data().as_ref());
        columns.metadata.push(event.metadata().as_ref());
        let entry = Stored { stream: stream.as_str().to_owned(), revision: rev, position: pos };
        stored.insert((namespace.to_owned(), event.id()), entry);
    }
    let n = request.events.len() as i64;
    *next += n;
    current.insert(stream.as_str().to_owned(), Some(first_revision + n - 1));
    Ok(AppendResult {
        stream: stream.clone(),
        first_revision: revision(first_revision),
        last_revision: revision(first_revision + n - 1),
        first_position: position_from_db(first_position),
        last_position: position_from_db(first_position + n - 1),
    })
}

fn revision(value: i64) -> Revision {
    Revision(u64::try_from(value).expect("revisions are never negative"))
}

/// The answer to an append some of whose ids are stored (`found`, in the batch's order): the
/// original result if it is an exact retry, else `IdempotencyConflict` — the engine's rules
/// (`engine/retry.rs`), with the stream compared by name.
fn retry_result(request: &AppendRequest, found: &[(Uuid, &Stored)]) -> Result<AppendResult, StoreError> {
    let stream = &request.stream;
    let conflict =
        |event_id: Uuid, reason: String| StoreError::IdempotencyConflict { stream: stream.clone(), event_id, reason };
    let n = request.events.len();
    let (first_id, first) = found[0];
    if found.len() < n {
        let missing = request.events.iter().find(|e| !found.iter().any(|(id, _)| *id == e.id())).expect("one missing");
        return Err(conflict(
            first_id,
            format!(
                "{} of the {n} events are stored already and {} (at least) is not, so the batch is neither new nor a retry",
                found.len(),
                missing.id()
            ),
        ));
    }
    for (i, (id, entry)) in found.iter().enumerate() {
        if entry.stream != stream.as_str() {
            return Err(conflict(*id, "it is stored in another stream".into()));
        }
        if entry.revision != first.revision + i as i64 {
            return Err(conflict(
                *id,
                format!("it is stored at revision {}, not in the order of this batch", entry.revision),
            ));
        }
    }
    let consistent = match request.expected {
        ExpectedRevision::Any | ExpectedRevision::StreamExists => true,
        ExpectedRevision::NoStream => first.revision == 0,
        ExpectedRevision::Exact(r) => r.0.checked_add(1) == u64::try_from(first.revision).ok(),
    };
    if !consistent {
        return Err(conflict(
            first_id,
            format!("it is stored at revision {}, which does not follow expected {}", first.revision, request.expected),
        ));
    }
    let last = found[n - 1].1;
    Ok(AppendResult {
        stream: stream.clone(),
        first_revision: revision(first.revision),
        last_revision: revision(last.revision),
        first_position: position_from_db(first.position),
        last_position: position_from_db(last.position),
    })
}
