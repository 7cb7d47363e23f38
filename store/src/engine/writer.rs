//! The first stage of the write pipeline, and the only code that writes to the log: it takes
//! appends from a channel, checks them, and writes every append waiting as one group with one
//! `write` and one `fdatasync` (group commit). Durable groups go to the indexer (`indexer.rs`),
//! which publishes them and answers the callers while this thread syncs the next group.
//!
//! Checks need the state of groups that are durable but not indexed yet, so the writer keeps an
//! overlay of their streams and event ids, pruned as the published head passes them.
//!
//! Once the current segment is half full, a helper thread zero-fills the next one (see
//! "Preallocation" in the module doc); the roll waits for it, which costs nothing when the helper
//! is faster than the writer's second half of the segment, as it is by far (no syncs per write).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};
use uuid::Uuid;

use super::format::{self, GroupHeader, RecordFields, GROUP_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::index::{IdEntry, IndexedRecord, StreamEntry, Watermark};
use super::indexer::{self, IndexJob};
use super::retry::{retry_result, Retried};
use super::segment::{self, Prepared, Segment};
use super::shared::Shared;
use crate::error::StoreError;
use crate::model::{AppendResult, CurrentRevision, EventData, ExpectedRevision, Position, Revision, StreamId};

pub struct AppendRequest {
    pub stream: StreamId,
    /// `stream.namespace()`, shared by the request's records and overlay entries.
    pub namespace: Arc<str>,
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
    /// The segment holds zeros from `offset` up to here (preallocated space; `offset` if none).
    pub zeroed_until: u64,
}

/// Groups the indexer may hold before the writer waits for it (bounds the overlay).
const JOBS_IN_FLIGHT: usize = 4;
/// Appends with at least this many events look their ids up on their own.
const OWN_LOOKUP: usize = 8;
/// Stream entries the writer keeps at most.
const STREAM_CACHE: usize = 100_000;

pub struct Writer {
    shared: Arc<Shared>,
    state: WriterState,
    /// The overlay entries of the streams the group being prepared changed, as they were before
    /// it: a group refused for lack of space is taken back out of the overlay.
    undo_streams: HashMap<StreamId, Option<(StreamEntry, Position)>>,
    buf: Vec<u8>,
    overlay: Overlay,
    /// The zero-filling of the next segment, once the current one is half full.
    preparing: Option<JoinHandle<Result<Option<Prepared>, StoreError>>>,
    /// Tells the preparing thread to stop early: the store is closing.
    cancel: Arc<AtomicBool>,
}

/// An event id with its stream's namespace: ids are unique per namespace (`StreamId::namespace`).
type IdKey = (Arc<str>, Uuid);

/// Ids of groups written but not yet published, and the entries of recently written streams
/// (all of those not yet published among them).
#[derive(Default)]
struct Overlay {
    /// A stream's entry and the position of its last event.
    streams: HashMap<StreamId, (StreamEntry, Position)>,
    ids: HashMap<IdKey, IdEntry>,
    /// Per group in flight: its end position and the ids it added.
    groups: VecDeque<(Position, Vec<IdKey>)>,
}

impl Writer {
    pub fn new(shared: Arc<Shared>, state: WriterState) -> Self {
        Writer {
            shared,
            state,
            undo_streams: HashMap::new(),
            buf: Vec::with_capacity(1 << 20),
            overlay: Overlay::default(),
            preparing: None,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Runs until every sender is gone and the indexer has answered everything, then returns.
    pub fn run(mut self, mut rx: mpsc::Receiver<AppendRequest>) {
        let (jobs, job_rx) = std_mpsc::sync_channel(JOBS_IN_FLIGHT);
        let shared = Arc::clone(&self.shared);
        let indexer = std::thread::Builder::new()
            .name("annals-indexer".into())
            .spawn(move || indexer::run(shared, job_rx))
            .expect("spawn the indexer thread");
        let max_bytes = self.shared.config.max_group_bytes;
        self.prepare_next_segment();
        // A group is whatever waits when the writer is free: appends that arrive during a sync
        // form the next group, so the group size follows the load with nothing to tune. Groups
        // are pipelined: the indexer publishes group N while this thread syncs group N+1.
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
            let job = self.commit_group(requests);
            if jobs.send(job).is_err() {
                break;
            }
        }
        drop(jobs);
        let _ = indexer.join();
        // A half-made next segment is of no use to anyone: stop, the helper removes its file.
        self.cancel.store(true, Ordering::Relaxed);
        if let Some(preparing) = self.preparing.take() {
            if let Ok(Ok(Some(unused))) = preparing.join() {
                drop(unused);
                if let Err(e) = segment::remove_prepared(&self.shared.log_dir) {
                    warn!(error = %e, "cannot remove the unused preallocated segment; the next open will");
                }
            }
        }
    }

    fn commit_group(&mut self, requests: Vec<AppendRequest>) -> IndexJob {
        self.prune();
        let first_position = self.state.next_position;
        let mut job = IndexJob {
            records: Vec::new(),
            streams: Vec::new(),
            segment: self.state.segment.number,
            group_offset: self.state.offset,
            watermark: Watermark {
                position: first_position,
                segment: self.state.segment.number,
                offset: self.state.offset,
            },
            next_stream_number: self.state.next_stream_number,
            replies: Vec::with_capacity(requests.len()),
        };
        if self.shared.poisoned().is_some() {
            job.replies = requests.into_iter().map(|r| (r.reply, Err(self.shared.poisoned_error()))).collect();
            return job;
        }
        // Refused before anything is written while the filesystem is short of space: a group
        // refused here changes nothing, on disk or in the overlay (module doc, "Full disk").
        let needed: u64 = requests
            .iter()
            .map(|r| (r.bytes + r.events.len() * (format::RECORD_FIXED_LEN + r.stream.as_str().len())) as u64)
            .sum();
        let check = match self.shared.config.min_free_bytes {
            0 => Ok(()),
            _ => self.shared.space.check(needed + GROUP_HEADER_LEN as u64),
        };
        if let Err(detail) = check {
            warn!(detail = %detail, "refusing appends: storage full");
            job.replies = requests.into_iter().map(|r| (r.reply, Err(self.storage_full(&detail)))).collect();
            return job;
        }
        self.undo_streams.clear();
        let next_stream_number = self.state.next_stream_number;
        self.buf.clear();
        self.buf.resize(GROUP_HEADER_LEN, 0);
        let now = chrono::Utc::now().timestamp_micros().max(self.state.last_micros);
        let mut group_streams = HashSet::new();
        let prefetched = match self.prefetch_ids(&requests) {
            Ok(found) => found,
            Err(e) => {
                job.replies = requests.into_iter().map(|r| (r.reply, Err(StoreError::Index(e.to_string())))).collect();
                return job;
            }
        };
        for request in requests {
            let result = self.prepare(&request, &prefetched, &mut job.records, &mut group_streams, now);
            job.replies.push((request.reply, result));
        }
        if job.records.is_empty() {
            return job;
        }
        match self.write_group(&job.records, now) {
            Ok((segment, group_offset)) => {
                for record in &mut job.records {
                    record.offset += group_offset;
                }
                job.segment = segment;
                job.group_offset = group_offset;
                job.watermark = Watermark { position: self.state.next_position, segment, offset: self.state.offset };
                job.next_stream_number = self.state.next_stream_number;
                job.streams = group_streams.iter().map(|s| (s.clone(), self.overlay.streams[s].0)).collect();
                let ids = job.records.iter().map(|r| (Arc::clone(&r.namespace), r.id)).collect();
                self.overlay.groups.push_back((self.state.next_position, ids));
                self.prepare_next_segment();
            }
            Err(StoreError::StorageFull { detail, .. }) => {
                // Nothing of the group is on disk past the data (`Segment::write_and_sync` cut it
                // off) and nothing was answered: take it out of the overlay, answer every append
                // of the group "storage full" (a rejection computed against an append of the
                // group would be against a state that never existed), and write the next group
                // where this one would have gone.
                warn!(detail = %detail, "group refused by the filesystem: storage full");
                self.shared.space.refused(detail.clone());
                for record in job.records.drain(..) {
                    self.overlay.ids.remove(&(record.namespace, record.id));
                }
                for (stream, previous) in self.undo_streams.drain() {
                    match previous {
                        Some(entry) => self.overlay.streams.insert(stream, entry),
                        None => self.overlay.streams.remove(&stream),
                    };
                }
                self.state.next_stream_number = next_stream_number;
                self.state.zeroed_until = self.state.offset;
                for (_, result) in &mut job.replies {
                    *result = Err(self.storage_full(&detail));
                }
            }
            Err(e) => {
                error!(error = %e, "group commit failed; the store accepts no more appends until reopened");
                self.shared.poison(e.to_string());
                // Nothing of this group is published: the indexer turns its answers into errors.
                job.records.clear();
            }
        }
        job
    }

    /// Checks one append against its stream and the stored ids; if it is new, encodes its events
    /// into the group.
    /// The stored ids among those of the group's small appends, found with one lookup: the ids
    /// concurrent clients generate (time-ordered v7) lie close together. Larger appends look up
    /// their own ids, which are close together in any case.
    fn prefetch_ids(&self, requests: &[AppendRequest]) -> Result<HashMap<IdKey, IdEntry>, StoreError> {
        let mut by_namespace: HashMap<Arc<str>, Vec<Uuid>> = HashMap::new();
        for request in requests.iter().filter(|r| r.events.len() < OWN_LOOKUP) {
            let ids = by_namespace.entry(Arc::clone(&request.namespace)).or_default();
            for event in &request.events {
                if !self.overlay.ids.contains_key(&(Arc::clone(&request.namespace), event.id())) {
                    ids.push(event.id());
                }
            }
        }
        let index = self.shared.index()?;
        let mut found = HashMap::new();
        for (namespace, ids) in by_namespace {
            let entries = index.event_ids(&namespace, &ids)?;
            for (id, entry) in ids.into_iter().zip(entries) {
                if let Some(entry) = entry {
                    found.insert((Arc::clone(&namespace), id), entry);
                }
            }
        }
        Ok(found)
    }

    fn prepare(
        &mut self,
        request: &AppendRequest,
        prefetched: &HashMap<IdKey, IdEntry>,
        records: &mut Vec<IndexedRecord>,
        group_streams: &mut HashSet<StreamId>,
        now: i64,
    ) -> Result<AppendResult, StoreError> {
        let index = self.shared.index()?;
        let stream = &request.stream;
        let current = match self.overlay.streams.get(stream) {
            Some((entry, _)) => Some(*entry),
            None => index.stream(stream.as_str())?,
        };
        let mut stored = Vec::new();
        let mut unknown = Vec::new();
        let namespace = &request.namespace;
        for event in &request.events {
            let key = (Arc::clone(namespace), event.id());
            match self.overlay.ids.get(&key).or_else(|| prefetched.get(&key)) {
                Some(entry) => stored.push((event.id(), *entry)),
                None => unknown.push(event.id()),
            }
        }
        if request.events.len() >= OWN_LOOKUP {
            let in_index = index.event_ids(namespace, &unknown)?;
            stored.extend(unknown.iter().zip(in_index).filter_map(|(id, entry)| Some((*id, entry?))));
        }
        // Report stored ids in the batch's order, as a retry is checked against it.
        if !stored.is_empty() {
            let order: HashMap<Uuid, usize> = request.events.iter().enumerate().map(|(i, e)| (e.id(), i)).collect();
            stored.sort_by_key(|(id, _)| order[id]);
        }
        drop(index);
        if !stored.is_empty() {
            let retried = Retried { stream: &request.stream, expected: request.expected, events: &request.events };
            return retry_result(retried, current.map(|e| e.number), &stored);
        }
        let actual = current.map_or(CurrentRevision::NoStream, |e| CurrentRevision::Current(e.last_revision));
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
            Some(entry) => entry.number,
            None => {
                self.state.next_stream_number += 1;
                self.state.next_stream_number - 1
            }
        };
        let first_revision = current.map_or(Revision(0), |e| e.last_revision.next());
        let first_position = Position(self.state.next_position.0 + records.len() as u64);
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
            let namespace = Arc::clone(&request.namespace);
            records.push(IndexedRecord {
                namespace: Arc::clone(&namespace),
                id: event.id(),
                entry,
                offset: start as u64,
                len,
            });
            self.overlay.ids.insert((namespace, event.id()), entry);
        }
        let n = request.events.len() as u64;
        let last_revision = Revision(first_revision.0 + n - 1);
        let last_position = Position(first_position.0 + n - 1);
        let previous = self.overlay.streams.get(stream).copied();
        self.undo_streams.entry(stream.clone()).or_insert(previous);
        self.overlay.streams.insert(stream.clone(), (StreamEntry { number, last_revision }, last_position));
        group_streams.insert(stream.clone());
        Ok(AppendResult {
            stream: stream.clone(),
            first_revision,
            last_revision,
            first_position,
            last_position: Position(first_position.0 + n - 1),
        })
    }

    /// Writes and syncs the group; returns the segment and offset it went to.
    fn write_group(&mut self, records: &[IndexedRecord], now: i64) -> Result<(u64, u64), StoreError> {
        let count = records.len() as u32;
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
        // In preallocated space, write on to the end of the page with the zeros that are there
        // anyway: a write that covers whole pages needs no read of the page from disk first
        // (the zeros were written past the page cache; see `segment::prepare`).
        let padded = (group_offset + total).next_multiple_of(segment::DIRECT_ALIGN as u64);
        if padded <= self.state.zeroed_until {
            self.buf.resize((padded - group_offset) as usize, 0);
        }
        segment.write_and_sync(&self.buf, group_offset)?;
        self.state.offset += total;
        self.state.next_position = Position(self.state.next_position.0 + u64::from(count));
        self.state.last_micros = now;
        Ok((segment.number, group_offset))
    }

    /// An append's answer while the filesystem is short of space.
    fn storage_full(&self, detail: &str) -> StoreError {
        StoreError::StorageFull { path: self.shared.log_dir.clone(), detail: detail.to_owned() }
    }

    /// Starts zero-filling the next segment once the current one is half full, if not started
    /// and if the filesystem has room for it besides the reserve (else the next segment grows
    /// as written: preallocation must not be what fills the disk).
    fn prepare_next_segment(&mut self) {
        let size = self.shared.config.segment_size;
        if self.preparing.is_some() || !self.shared.config.preallocate || self.state.offset < size / 2 {
            return;
        }
        if self.shared.space.available().is_some_and(|free| free < size.saturating_add(self.shared.space.reserve())) {
            return;
        }
        let log_dir = self.shared.log_dir.clone();
        let cancel = Arc::clone(&self.cancel);
        let spawned = std::thread::Builder::new()
            .name("annals-prealloc".into())
            .spawn(move || segment::prepare(&log_dir, size, &cancel));
        match spawned {
            Ok(handle) => self.preparing = Some(handle),
            Err(e) => warn!(error = %e, "cannot start preallocating the next segment; it will grow as written"),
        }
    }

    /// Seals the current segment where its data ends and starts the next one: preallocated if the
    /// helper prepared it (waiting for it to finish), else an empty file that grows as written.
    fn roll(&mut self) -> Result<(), StoreError> {
        self.state.segment.seal(self.state.offset)?;
        let number = self.state.segment.number + 1;
        let log_dir = &self.shared.log_dir;
        let position = self.state.next_position;
        let prepared = match self.preparing.take().map(JoinHandle::join) {
            Some(Ok(Ok(prepared))) => prepared,
            Some(Ok(Err(e))) => {
                warn!(error = %e, "preallocating the next segment failed; it will grow as written");
                None
            }
            Some(Err(_)) => {
                warn!("the preallocating thread panicked; the next segment will grow as written");
                None
            }
            None => None,
        };
        let segment = Arc::new(match prepared {
            Some(prepared) => {
                Segment::create_prepared(log_dir, number, position, prepared, self.shared.segments.budget())?
            }
            None => {
                segment::remove_prepared(log_dir)?;
                Segment::create(log_dir, number, position, self.shared.segments.budget())?
            }
        });
        self.state.zeroed_until = segment.len()?;
        self.shared.segments.push(Arc::clone(&segment));
        self.state.segment = segment;
        self.state.offset = SEGMENT_HEADER_LEN as u64;
        Ok(())
    }

    /// Forgets the ids the indexer has published (the index answers for them now) and bounds the
    /// stream cache.
    fn prune(&mut self) {
        let head = self.shared.head().position;
        while let Some((end, _)) = self.overlay.groups.front() {
            if *end > head {
                break;
            }
            let (_, ids) = self.overlay.groups.pop_front().expect("checked");
            for key in ids {
                self.overlay.ids.remove(&key);
            }
        }
        // Published stream entries stay as a cache (the writer is the only one that changes
        // them), up to a bound; past it, everything published is forgotten at once.
        if self.overlay.streams.len() > STREAM_CACHE {
            self.overlay.streams.retain(|_, (_, last)| *last >= head);
        }
    }
}
