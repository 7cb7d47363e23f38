//! The single writer: takes appends from a channel, checks them, and commits every append waiting
//! in one group with one `write` and one `fdatasync` (group commit). It is the only code that
//! writes to the log, and the only code that moves the published head.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};
use uuid::Uuid;

use super::format::{self, GroupHeader, RecordFields, GROUP_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::index::{IdEntry, IndexedRecord, StreamEntry, Watermark};
use super::segment::Segment;
use super::store::{Head, Shared};
use crate::error::StoreError;
use crate::model::{AppendResult, CurrentRevision, EventData, ExpectedRevision, Position, Revision, StreamId};

pub struct AppendRequest {
    pub stream: StreamId,
    pub expected: ExpectedRevision,
    pub events: Vec<EventData>,
    pub bytes: usize,
    pub reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

/// Where the writer is: recovered on open, then owned by the writer thread.
pub struct WriterState {
    pub segment: Arc<Segment>,
    pub offset: u64,
    pub next_position: Position,
    pub next_stream_number: u64,
    pub last_micros: i64,
}

pub struct Writer {
    shared: Arc<Shared>,
    state: WriterState,
    buf: Vec<u8>,
    /// Set after a failed write or sync: what is on disk past the head is unknown, so nothing more
    /// is written until the store is reopened (and recovery decides).
    poisoned: Option<String>,
}

/// A stream as the group being built sees it: its number, and its last revision if it has events.
#[derive(Clone, Copy)]
struct StreamState {
    number: u64,
    last: Option<Revision>,
}

/// The group being built: encoded records and what they change.
#[derive(Default)]
struct Group {
    streams: HashMap<StreamId, StreamState>,
    ids: HashMap<Uuid, IdEntry>,
    records: Vec<IndexedRecord>,
}

impl Writer {
    pub fn new(shared: Arc<Shared>, state: WriterState) -> Self {
        Writer { shared, state, buf: Vec::with_capacity(1 << 20), poisoned: None }
    }

    /// Runs until every sender is gone, then returns.
    pub fn run(mut self, mut rx: mpsc::Receiver<AppendRequest>) {
        let max_bytes = self.shared.config.max_group_bytes;
        while let Some(first) = rx.blocking_recv() {
            let mut bytes = first.bytes;
            let mut requests = vec![first];
            while bytes < max_bytes {
                match rx.try_recv() {
                    Ok(request) => {
                        bytes += request.bytes;
                        requests.push(request);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(requests);
        }
    }

    fn commit_group(&mut self, requests: Vec<AppendRequest>) {
        if let Some(reason) = &self.poisoned {
            for request in requests {
                let _ = request.reply.send(Err(poisoned_error(reason, &self.state.segment)));
            }
            return;
        }
        let mut group = Group::default();
        self.buf.clear();
        self.buf.resize(GROUP_HEADER_LEN, 0);
        let now = now_micros().max(self.state.last_micros);
        let mut replies = Vec::with_capacity(requests.len());
        for request in requests {
            let result = self.prepare(&request, &mut group, now);
            // An answer that depends on this group (new events, or a retry of events in it) may
            // only be given once the group is durable.
            let in_group = match &result {
                Ok(r) => r.last_position >= self.state.next_position,
                Err(_) => false,
            };
            replies.push((request.reply, result, in_group));
        }
        if !group.records.is_empty() {
            if let Err(e) = self.write_group(&group, now) {
                error!(error = %e, "group commit failed; the store accepts no more appends until reopened");
                self.poisoned = Some(e.to_string());
                for (_, result, in_group) in &mut replies {
                    if *in_group {
                        *result = Err(poisoned_error(&e.to_string(), &self.state.segment));
                    }
                }
            }
        }
        for (reply, result, _) in replies {
            let _ = reply.send(result);
        }
    }

    /// Checks one append against the stream and the stored ids; if it is new, encodes its events
    /// into the group.
    fn prepare(&mut self, request: &AppendRequest, group: &mut Group, now: i64) -> Result<AppendResult, StoreError> {
        let shared = Arc::clone(&self.shared);
        let index = shared.index()?;
        let stream = &request.stream;
        let current = match group.streams.get(stream) {
            Some(state) => Some(*state),
            None => {
                index.stream(stream.as_str())?.map(|e| StreamState { number: e.number, last: Some(e.last_revision) })
            }
        };
        let mut stored = Vec::new();
        for event in &request.events {
            let found = match group.ids.get(&event.id()) {
                Some(entry) => Some(*entry),
                None => index.event_id(event.id())?,
            };
            if let Some(entry) = found {
                stored.push((event.id(), entry));
            }
        }
        if !stored.is_empty() {
            return retry_result(request, current, &stored);
        }
        let actual = match current.and_then(|s| s.last) {
            Some(r) => CurrentRevision::Current(r),
            None => CurrentRevision::NoStream,
        };
        let ok = match (request.expected, actual) {
            (ExpectedRevision::Any, _) => true,
            (ExpectedRevision::NoStream, CurrentRevision::NoStream) => true,
            (ExpectedRevision::StreamExists, CurrentRevision::Current(_)) => true,
            (ExpectedRevision::Exact(e), CurrentRevision::Current(a)) => e == a,
            _ => false,
        };
        if !ok {
            return Err(StoreError::WrongExpectedRevision {
                stream: stream.clone(),
                expected: request.expected,
                actual,
            });
        }
        let number = match current {
            Some(state) => state.number,
            None => {
                self.state.next_stream_number += 1;
                self.state.next_stream_number - 1
            }
        };
        let first_revision = current.and_then(|s| s.last).map_or(Revision(0), Revision::next);
        let first_position = Position(self.state.next_position.0 + group.records.len() as u64);
        for (i, event) in request.events.iter().enumerate() {
            let entry = IdEntry {
                stream_number: number,
                revision: Revision(first_revision.0 + i as u64),
                position: Position(first_position.0 + i as u64),
            };
            let start = self.buf.len();
            format::encode_record(
                &RecordFields {
                    position: entry.position,
                    revision: entry.revision,
                    recorded_at_micros: now,
                    id: event.id(),
                    stream: stream.as_str(),
                    event_type: event.event_type(),
                    metadata: event.metadata(),
                    data: event.data(),
                },
                &mut self.buf,
            );
            // Offsets are relative to the group until `write_group` knows where it goes.
            let len = (self.buf.len() - start) as u32;
            group.records.push(IndexedRecord { id: event.id(), entry, offset: start as u64, len });
            group.ids.insert(event.id(), entry);
        }
        let n = request.events.len() as u64;
        let last_revision = Revision(first_revision.0 + n - 1);
        group.streams.insert(stream.clone(), StreamState { number, last: Some(last_revision) });
        Ok(AppendResult {
            stream: stream.clone(),
            first_revision,
            last_revision,
            first_position,
            last_position: Position(first_position.0 + n - 1),
        })
    }

    /// Writes and syncs the group, indexes it, publishes the new head.
    fn write_group(&mut self, group: &Group, now: i64) -> Result<(), StoreError> {
        let count = group.records.len() as u32;
        let header = GroupHeader {
            payload_len: (self.buf.len() - GROUP_HEADER_LEN) as u32,
            event_count: count,
            first_position: self.state.next_position,
        };
        let mut head_bytes = Vec::with_capacity(GROUP_HEADER_LEN);
        header.encode_into(&mut head_bytes);
        self.buf[..GROUP_HEADER_LEN].copy_from_slice(&head_bytes);

        let total = self.buf.len() as u64;
        if self.state.offset > SEGMENT_HEADER_LEN as u64 && self.state.offset + total > self.shared.config.segment_size
        {
            self.roll()?;
        }
        let segment = Arc::clone(&self.state.segment);
        let group_offset = self.state.offset;
        segment.write_all_at(&self.buf, group_offset)?;
        segment.sync_data()?;
        self.state.offset += total;
        self.state.next_position = Position(self.state.next_position.0 + u64::from(count));
        self.state.last_micros = now;

        let index = self.shared.index()?;
        let mut batch = index.batch();
        for (name, state) in &group.streams {
            let last_revision = state.last.expect("streams in a group have events");
            index.insert_stream(&mut batch, name.as_str(), StreamEntry { number: state.number, last_revision });
        }
        let records: Vec<IndexedRecord> =
            group.records.iter().map(|r| IndexedRecord { offset: group_offset + r.offset, ..*r }).collect();
        index.insert_group(&mut batch, segment.number, group_offset, &records);
        let watermark =
            Watermark { position: self.state.next_position, segment: segment.number, offset: self.state.offset };
        index.commit(batch, watermark, self.state.next_stream_number)?;
        self.shared.publish(Head { position: self.state.next_position });
        Ok(())
    }

    fn roll(&mut self) -> Result<(), StoreError> {
        let number = self.state.segment.number + 1;
        let segment = Arc::new(Segment::create(&self.shared.log_dir, number, self.state.next_position)?);
        self.shared.segments.push(Arc::clone(&segment));
        self.state.segment = segment;
        self.state.offset = SEGMENT_HEADER_LEN as u64;
        Ok(())
    }
}

/// The answer to an append some of whose ids are stored: the original result if it is an exact
/// retry, otherwise `IdempotencyConflict` saying precisely why not.
fn retry_result(
    request: &AppendRequest,
    current: Option<StreamState>,
    stored: &[(Uuid, IdEntry)],
) -> Result<AppendResult, StoreError> {
    let stream = &request.stream;
    let conflict =
        |event_id: Uuid, reason: String| StoreError::IdempotencyConflict { stream: stream.clone(), event_id, reason };
    let n = request.events.len();
    let (first_id, first) = stored[0];
    if stored.len() < n {
        let missing =
            request.events.iter().find(|e| !stored.iter().any(|(id, _)| *id == e.id())).expect("one is missing");
        return Err(conflict(
            first_id,
            format!(
                "{} of the {n} events are stored already and {} (at least) is not, so the batch is neither new nor a retry",
                stored.len(),
                missing.id()
            ),
        ));
    }
    let number = current.map(|s| s.number);
    for (i, (id, entry)) in stored.iter().enumerate() {
        if Some(entry.stream_number) != number {
            return Err(conflict(*id, "it is stored in another stream".into()));
        }
        if entry.revision.0 != first.revision.0 + i as u64 {
            return Err(conflict(
                *id,
                format!("it is stored at revision {}, not in the order of this batch", entry.revision),
            ));
        }
    }
    let consistent = match request.expected {
        ExpectedRevision::Any => true,
        ExpectedRevision::NoStream => first.revision.0 == 0,
        ExpectedRevision::StreamExists => true,
        ExpectedRevision::Exact(r) => first.revision.0 == r.0 + 1,
    };
    if !consistent {
        return Err(conflict(
            first_id,
            format!("it is stored at revision {}, which does not follow expected {}", first.revision, request.expected),
        ));
    }
    let last = stored[n - 1].1;
    Ok(AppendResult {
        stream: stream.clone(),
        first_revision: first.revision,
        last_revision: last.revision,
        first_position: first.position,
        last_position: last.position,
    })
}

fn poisoned_error(reason: &str, segment: &Segment) -> StoreError {
    warn!(reason, "append refused: store is poisoned");
    StoreError::Io {
        op: "append (store needs reopening after a failed commit)",
        path: segment.path.clone(),
        source: std::io::Error::other(reason.to_owned()),
    }
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
