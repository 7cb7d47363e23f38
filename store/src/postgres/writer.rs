//! The writer task: group commit with several groups in flight (`groups_in_flight`, default 3;
//! the append protocol of the module doc). It takes every append waiting, looks up what the
//! checks need, decides each append against the database plus the groups still in flight, and
//! writes the group with ONE statement that moves the head row only if it is where the decisions
//! assumed — so the head row lock is held for that statement and its commit only.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, Statement};
use tracing::warn;
use uuid::Uuid;

use super::checks::{decide, Append, Stored, View};
use super::shared::Shared;
use super::write::{added_by, stored_id, write_group, WritePath, INSERT_THEN_LOCK, LOCK_THEN_INSERT};
use super::{db_error, is_unavailable, unavailable};
use crate::error::StoreError;
use crate::model::AppendResult;

pub struct AppendRequest {
    pub append: Arc<Append>,
    pub reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

/// The longest pause between reconnection attempts; the first is 50 ms.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(2);

const HEAD: &str = "SELECT next_position, last_group FROM annals_head";
const STREAMS: &str = "SELECT s, (SELECT max(revision) FROM annals_events e WHERE e.stream = s) \
                       FROM unnest($1::text[]) AS s";
const IDS: &str = "SELECT e.namespace, e.id, e.stream, e.revision, e.position \
                   FROM unnest($1::text[], $2::uuid[]) AS k(namespace, id) \
                   JOIN annals_events e ON e.namespace = k.namespace AND e.id = k.id";
struct Slot {
    client: Arc<Client>,
    head: Statement,
    streams: Statement,
    ids: Statement,
    lock_then_insert: Statement,
    insert_then_lock: Statement,
}

/// How the writer forms and writes groups (from `PostgresConfig`).
#[derive(Clone, Copy, Debug)]
pub struct GroupSettings {
    pub max_bytes: usize,
    pub in_flight: usize,
    /// Groups of at least this many events are written with `WritePath::InsertThenLock`.
    pub parallel_insert_min_events: usize,
}

async fn connect(pg: &tokio_postgres::Config) -> Result<Slot, StoreError> {
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
    Ok(Slot {
        head: prepare(HEAD).await?,
        streams: prepare(STREAMS).await?,
        ids: prepare(IDS).await?,
        lock_then_insert: prepare(LOCK_THEN_INSERT).await?,
        insert_then_lock: prepare(INSERT_THEN_LOCK).await?,
        client: Arc::new(client),
    })
}

/// A group written but not yet answered.
struct InFlight {
    slot: usize,
    requests: Vec<AppendRequest>,
    results: Vec<Result<AppendResult, StoreError>>,
    /// What the group adds to the log, for the checks of the groups decided after it.
    added: View,
    /// Whether its ids were looked up (else a stored id fails the write, and it is decided again).
    checked: bool,
    /// The head position and token once it is written.
    end: i64,
    token: Uuid,
    /// Whether the head was where the group assumed (so it is written), or why not.
    write: JoinHandle<Result<bool, tokio_postgres::Error>>,
}

struct Writer {
    pg: tokio_postgres::Config,
    shared: Arc<Shared>,
    parallel_insert_min_events: usize,
    slots: Vec<Option<Slot>>,
    in_flight: VecDeque<InFlight>,
    /// Appends taken back from stale groups, to go first.
    pending: VecDeque<AppendRequest>,
    pause: Duration,
    failed_at: Instant,
    /// Look the group's ids up before writing. Off by default: the unique index on (namespace,
    /// id) refuses a stored id anyway, and a group refused so is decided again with the lookup
    /// (retries are rare; looking up every id of a 1,000-event batch is not).
    check_ids: bool,
}

/// Runs until every sender is gone and every append taken is answered.
pub async fn run(
    pg: tokio_postgres::Config,
    mut rx: mpsc::Receiver<AppendRequest>,
    groups: GroupSettings,
    shared: Arc<Shared>,
) {
    let max_group_bytes = groups.max_bytes;
    let mut w = Writer {
        pg,
        shared,
        parallel_insert_min_events: groups.parallel_insert_min_events,
        slots: (0..groups.in_flight.max(1)).map(|_| None).collect(),
        in_flight: VecDeque::new(),
        pending: VecDeque::new(),
        pause: Duration::ZERO,
        failed_at: Instant::now(),
        check_ids: false,
    };
    let mut open = true;
    loop {
        if w.pending.is_empty() {
            if !open && w.in_flight.is_empty() {
                return;
            }
            let received = if w.in_flight.is_empty() {
                rx.recv().await
            } else if open {
                // Cancel-safe: the write is only polled here, and taken below once it is done.
                let front = w.in_flight.front_mut().expect("in flight");
                let done = tokio::select! {
                    biased;
                    received = rx.recv() => Err(received),
                    outcome = &mut front.write => Ok(outcome),
                };
                match done {
                    Ok(outcome) => {
                        w.finish_front(outcome).await;
                        continue;
                    }
                    Err(received) => received,
                }
            } else {
                w.complete_front().await;
                continue;
            };
            match received {
                Some(request) => w.pending.push_back(request),
                None => {
                    open = false;
                    continue;
                }
            }
        }
        if w.in_flight.len() == w.slots.len() {
            w.complete_front().await;
            continue;
        }
        let mut bytes = 0;
        let mut requests = Vec::new();
        while let Some(request) = w.pending.pop_front() {
            bytes += request.append.bytes;
            requests.push(request);
            if bytes >= max_group_bytes {
                break;
            }
        }
        while bytes < max_group_bytes {
            match rx.try_recv() {
                Ok(request) => {
                    bytes += request.append.bytes;
                    requests.push(request);
                }
                Err(_) => break,
            }
        }
        w.start_group(requests).await;
    }
}

impl Writer {
    /// A free slot, connected; `None` (and the appends answered) when no connection can be had.
    async fn slot(&mut self, requests: &mut Vec<AppendRequest>) -> Option<usize> {
        let index = (0..self.slots.len()).find(|i| !self.in_flight.iter().any(|g| g.slot == *i)).expect("a free slot");
        if self.slots[index].as_ref().is_some_and(|s| s.client.is_closed()) {
            self.slots[index] = None;
        }
        if self.slots[index].is_none() {
            // Backoff: while the server is away, appends fail at once instead of each waiting
            // for a connection attempt.
            if self.failed_at.elapsed() < self.pause {
                answer_all(std::mem::take(requests), || {
                    unavailable("append", "no connection to PostgreSQL; reconnecting")
                });
                return None;
            }
            match connect(&self.pg).await {
                Ok(slot) => {
                    self.slots[index] = Some(slot);
                    self.pause = Duration::ZERO;
                }
                Err(e) => {
                    warn!(error = %e, "postgresql writer cannot connect");
                    self.broken(index);
                    let (transient, text) = (is_unavailable(&e), e.to_string());
                    answer_all(std::mem::take(requests), || same_error(transient, &text));
                    return None;
                }
            }
        }
        Some(index)
    }

    fn broken(&mut self, slot: usize) {
        self.slots[slot] = None;
        self.pause = (self.pause * 2).clamp(Duration::from_millis(50), MAX_RECONNECT_PAUSE);
        self.failed_at = Instant::now();
    }

    async fn start_group(&mut self, mut requests: Vec<AppendRequest>) {
        let Some(index) = self.slot(&mut requests).await else { return };
        let slot = self.slots[index].as_ref().expect("connected");
        let client = Arc::clone(&slot.client);
        let statements = [slot.lock_then_insert.clone(), slot.insert_then_lock.clone()];
        let (head_statement, streams_statement, ids_statement) =
            (slot.head.clone(), slot.streams.clone(), slot.ids.clone());
        let mut names: Vec<&str> = requests.iter().map(|r| r.append.stream.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let checked = std::mem::take(&mut self.check_ids);
        let (mut namespaces, mut ids) = (Vec::new(), Vec::new());
        for request in requests.iter().filter(|_| checked) {
            for event in &request.append.events {
                namespaces.push(request.append.stream.namespace());
                ids.push(event.id());
            }
        }
        // One round trip, no lock: the head first, so whatever the lookups see is at least as
        // new as the head the group is checked against (anything newer makes the write stale).
        let stream_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&names];
        let id_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&namespaces, &ids];
        let (head, stream_rows, id_rows) = tokio::join!(
            client.query_one(&head_statement, &[]),
            client.query(&streams_statement, &stream_params),
            async {
                match checked {
                    true => client.query(&ids_statement, &id_params).await,
                    false => Ok(Vec::new()),
                }
            },
        );
        let (head, stream_rows, id_rows) = match (head, stream_rows, id_rows) {
            (Ok(h), Ok(s), Ok(i)) => (h, s, i),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                let e = db_error("append", e);
                if is_unavailable(&e) {
                    self.broken(index);
                }
                let (transient, text) = (is_unavailable(&e), e.to_string());
                answer_all(requests, || same_error(transient, &text));
                return;
            }
        };
        let mut view = View::default();
        for row in &stream_rows {
            view.streams.insert(row.get(0), row.get(1));
        }
        for row in &id_rows {
            let entry = Stored { stream: row.get(2), revision: row.get(3), position: row.get(4) };
            view.ids.insert((row.get(0), row.get(1)), entry);
        }
        for group in &self.in_flight {
            view.streams.extend(group.added.streams.iter().map(|(k, v)| (k.clone(), *v)));
            view.ids.extend(group.added.ids.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let (expected_position, expected_token) = match self.in_flight.back() {
            Some(last) => (last.end, last.token),
            None => (head.get::<_, i64>(0), head.get::<_, Uuid>(1)),
        };
        let mut next = expected_position;
        let mut accepted = Vec::new();
        let results: Vec<_> = requests.iter().map(|r| decide(&r.append, &mut view, &mut next, &mut accepted)).collect();
        // A refusal stands only if the ids were looked up: an append whose ids are stored is a
        // retry, answered with the original result whatever its expected revision.
        if !checked && results.iter().any(|r| matches!(r, Err(StoreError::WrongExpectedRevision { .. }))) {
            self.check_ids = true;
            for request in requests.into_iter().rev() {
                self.pending.push_front(request);
            }
            return;
        }
        if accepted.is_empty() {
            if self.in_flight.is_empty() {
                for (request, result) in requests.into_iter().zip(results) {
                    let _ = request.reply.send(result);
                }
            } else {
                // Answers that rest on groups not yet written wait until they are: decided
                // again once nothing is in flight.
                for request in requests.into_iter().rev() {
                    self.pending.push_front(request);
                }
                self.complete_front().await;
            }
            return;
        }
        let added = added_by(&accepted);
        let token = Uuid::new_v4();
        let events: usize = accepted.iter().map(|a| a.append.events.len()).sum();
        let [lock_then_insert, insert_then_lock] = statements;
        let write = match events >= self.parallel_insert_min_events {
            true => (WritePath::InsertThenLock, insert_then_lock),
            false => (WritePath::LockThenInsert, lock_then_insert),
        };
        let write =
            tokio::spawn(write_group(client, write, accepted, [next, expected_position], [token, expected_token]));
        self.in_flight.push_back(InFlight { slot: index, requests, results, added, checked, end: next, token, write });
    }

    /// Waits for the oldest group in flight and answers it, or takes its appends back when it
    /// was stale (then every group after it is stale too: they assumed it).
    async fn complete_front(&mut self) {
        let Some(front) = self.in_flight.front_mut() else { return };
        let outcome = (&mut front.write).await;
        self.finish_front(outcome).await;
    }

    /// Answers the oldest group in flight, whose write ended with `outcome`.
    async fn finish_front(&mut self, outcome: Result<Result<bool, tokio_postgres::Error>, tokio::task::JoinError>) {
        let group = self.in_flight.pop_front().expect("a group in flight");
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                self.broken(group.slot);
                answer_all(group.requests, || unavailable("append", format!("writer task failed: {e}")));
                return;
            }
        };
        match outcome {
            Ok(true) => {
                for (request, result) in group.requests.into_iter().zip(group.results) {
                    let _ = request.reply.send(result);
                }
                self.shared.wake_all();
            }
            Ok(false) => self.retake(group.requests).await,
            Err(e) if !group.checked && stored_id(&e) => {
                self.check_ids = true;
                self.retake(group.requests).await;
            }
            Err(e) => self.failed(group.slot, group.requests, group.results, e),
        }
    }

    /// Takes back the appends of a group that wrote nothing, and of every group after it (they
    /// assumed it, so they wrote nothing either), to be decided again first.
    async fn retake(&mut self, mut retake: Vec<AppendRequest>) {
        while let Some(mut later) = self.in_flight.pop_front() {
            match (&mut later.write).await {
                Ok(Ok(false)) => retake.extend(later.requests),
                Ok(Ok(true)) => unreachable_commit(later),
                Err(_) => {
                    self.broken(later.slot);
                    answer_all(later.requests, || unavailable("append", "writer task failed"));
                }
                Ok(Err(e)) if !later.checked && stored_id(&e) => retake.extend(later.requests),
                Ok(Err(e)) => self.failed(later.slot, later.requests, later.results, e),
            }
        }
        for request in retake.into_iter().rev() {
            self.pending.push_front(request);
        }
    }

    /// A group whose write failed. After a broken connection its outcome is unknown: the
    /// appends are answered as transient failures, and their retries (same ids) are answered
    /// from the log if it was written. Appends the checks refused keep their answers.
    fn failed(
        &mut self,
        slot: usize,
        requests: Vec<AppendRequest>,
        results: Vec<Result<AppendResult, StoreError>>,
        e: tokio_postgres::Error,
    ) {
        let e = db_error("append", e);
        warn!(error = %e, appends = requests.len(), "postgresql group write failed");
        if is_unavailable(&e) {
            self.broken(slot);
        }
        let (transient, text) = (is_unavailable(&e), e.to_string());
        for (request, result) in requests.into_iter().zip(results) {
            let answer = match result {
                Ok(_) => Err(same_error(transient, &text)),
                refused => refused,
            };
            let _ = request.reply.send(answer);
        }
    }
}

/// A group after a stale one cannot have been written (it assumed the stale one's token).
fn unreachable_commit(group: InFlight) {
    tracing::error!("a group chained to a stale one was written; answering it as written");
    for (request, result) in group.requests.into_iter().zip(group.results) {
        let _ = request.reply.send(result);
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
