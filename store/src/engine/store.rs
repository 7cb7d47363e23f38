//! `EmbeddedStore`: the handle callers hold. It owns the data directory lock, starts the writer
//! thread after recovery, validates appends before they reach the writer, and runs reads on
//! tokio's blocking pool so that disk reads never stall the async runtime or the writer.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::info;

use super::all;
use super::config::EngineConfig;
use super::reader;
use super::recovery::{self, RecoveryReport};
use super::segment::{Segments, VerifyReport};
use super::shared::{Head, Shared};
use super::space::Space;
use super::subscribe;
use super::writer::{AppendRequest, Writer, WriterState};
use crate::batch_check::{check_batch, BatchLimits};
use crate::capabilities::Capabilities;
use crate::error::StoreError;
use crate::event_store::{EventStore, Subscription};
use crate::model::{
    AllPage, AppendResult, Direction, EventData, EventFilter, ExpectedRevision, PageLimits, Position, ReadFrom,
    ReadStreamOutcome, RecordedEvent, Revision, StreamId, SubscribeFrom,
};

/// How many appends may wait for the writer before callers wait to enqueue (back-pressure).
const QUEUE_DEPTH: usize = 4096;

/// The embedded event store. Cheap to clone; all clones share one writer.
#[derive(Clone, Debug)]
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    writer: Arc<WriterHandle>,
    report: Arc<RecoveryReport>,
}

/// Figures about an open store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreInfo {
    pub data_dir: PathBuf,
    /// Number of events; the next append gets this position.
    pub next_position: Position,
    pub segments: usize,
    /// Bytes of log data (segment headers and groups), without preallocated space.
    pub log_bytes: u64,
    /// Segment files open now (at most `max_open_segments`).
    pub open_segment_files: usize,
}

#[derive(Debug)]
struct WriterHandle {
    tx: Mutex<Option<mpsc::Sender<AppendRequest>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl WriterHandle {
    /// Closes the queue and waits for the writer to commit what it has taken.
    fn stop(&self) {
        self.tx.lock().expect("writer lock").take();
        if let Some(thread) = self.thread.lock().expect("writer lock").take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `config.data_dir`, recovering as the module doc describes.
    pub async fn open(config: EngineConfig) -> Result<EmbeddedStore, StoreError> {
        tokio::task::spawn_blocking(move || Self::open_blocking(config)).await.map_err(join_error)?
    }

    fn open_blocking(config: EngineConfig) -> Result<EmbeddedStore, StoreError> {
        let dir = config.data_dir.clone();
        let log_dir = dir.join("log");
        std::fs::create_dir_all(&log_dir).map_err(StoreError::io("create", &log_dir))?;
        let lock_path = dir.join("LOCK");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(StoreError::io("open", &lock_path))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => StoreError::Locked { path: dir.clone() },
            std::fs::TryLockError::Error(source) => StoreError::Io { op: "lock", path: lock_path.clone(), source },
        })?;
        let started = std::time::Instant::now();
        let min_free_bytes = config.min_free_bytes;
        let recovered = recovery::recover(&log_dir, &dir.join("index"), config.max_open_segments)?;
        let segment = Arc::clone(recovered.segments.last().expect("recovery leaves a segment"));
        let (head, _) = watch::channel(Head {
            position: recovered.next_position,
            segment: segment.number,
            offset: recovered.end_offset,
        });
        let shared = Arc::new(Shared::new(
            config,
            log_dir,
            Segments::new(recovered.segments, recovered.budget),
            recovered.index,
            head,
            lock,
            Space::new(&dir, min_free_bytes),
        ));
        info!(data_dir = %dir.display(), events = recovered.next_position.0, elapsed_ms = started.elapsed().as_millis() as u64, "store opened");
        // `recorded_at` never decreases along the log, whatever the clock does across restarts:
        // the writer starts from the last event's time (the scan may not have seen any event).
        let last_event = all::read_all(&shared, ReadFrom::End, Direction::Backwards, 1, &EventFilter::all())?.pop();
        let last_micros = last_event.map_or(0, |e| e.recorded_at.timestamp_micros());
        // Recovery checked that only zeros follow the data of the last segment.
        let zeroed_until = segment.len()?;
        let state = WriterState {
            segment,
            offset: recovered.end_offset,
            next_position: recovered.next_position,
            next_stream_number: recovered.next_stream_number,
            last_micros,
            zeroed_until,
        };
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let writer = Writer::new(Arc::clone(&shared), state);
        let thread = std::thread::Builder::new()
            .name("annals-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(StoreError::io("spawn writer thread", &dir))?;
        Ok(EmbeddedStore {
            shared,
            writer: Arc::new(WriterHandle { tx: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)) }),
            report: Arc::new(recovered.report),
        })
    }

    /// What the open found and repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Stops accepting appends, lets the writer finish its group, waits for reads in progress,
    /// flushes the index and releases the data directory: it can be opened again as soon as this
    /// returns. Every clone then answers `StoreError::Closed`, and subscriptions end with it.
    pub async fn close(self) -> Result<(), StoreError> {
        self.close_shared().await
    }

    async fn close_shared(&self) -> Result<(), StoreError> {
        let writer = Arc::clone(&self.writer);
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            writer.stop();
            shared.close()
        })
        .await
        .map_err(join_error)?
    }

    pub async fn info(&self) -> Result<StoreInfo, StoreError> {
        let shared = Arc::clone(&self.shared);
        self.blocking(move || {
            let segments = shared.segments.all();
            let head = shared.head();
            let mut log_bytes = 0;
            for segment in &segments {
                // Only the segment the head is in can have preallocated space (rolled ones are
                // sealed); a segment after it (just rolled, not yet published) holds no data yet.
                log_bytes += match segment.number.cmp(&head.segment) {
                    std::cmp::Ordering::Less => segment.len()?,
                    std::cmp::Ordering::Equal => head.offset,
                    std::cmp::Ordering::Greater => 0,
                };
            }
            Ok(StoreInfo {
                data_dir: shared.config.data_dir.clone(),
                next_position: head.position,
                segments: segments.len(),
                log_bytes,
                open_segment_files: shared.segments.budget().open_now(),
            })
        })
        .await
    }

    /// Reads and checks every group and record of every segment up to the head.
    pub async fn verify(&self) -> Result<VerifyReport, StoreError> {
        let shared = Arc::clone(&self.shared);
        self.blocking(move || recovery::verify(&shared.segments.all(), shared.head().position)).await
    }

    fn check_batch(&self, events: &[EventData]) -> Result<usize, StoreError> {
        let config = &self.shared.config;
        let limits = BatchLimits {
            max_event_size: config.max_event_size,
            max_batch_events: config.max_batch_events,
            max_batch_bytes: config.max_batch_bytes,
        };
        check_batch(events, limits)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        if self.shared.is_closed() {
            return Err(StoreError::Closed);
        }
        tokio::task::spawn_blocking(f).await.map_err(join_error)?
    }
}

#[async_trait]
impl EventStore for EmbeddedStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::everything()
    }

    async fn append_to_stream(
        &self,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        let bytes = self.check_batch(&events)?;
        let (reply, answer) = oneshot::channel();
        let namespace = Arc::from(stream.namespace());
        let request = AppendRequest { stream: stream.clone(), namespace, expected, events, bytes, reply };
        let tx = self.writer.tx.lock().expect("writer lock").clone().ok_or(StoreError::Closed)?;
        tx.send(request).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn read_stream_bounded(
        &self,
        stream: &StreamId,
        from: ReadFrom<Revision>,
        direction: Direction,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<ReadStreamOutcome, StoreError> {
        let shared = Arc::clone(&self.shared);
        let stream = stream.clone();
        self.blocking(move || Ok(reader::read_stream(&shared, &stream, from, direction, max_count, max_bytes)?.0)).await
    }

    async fn read_all(
        &self,
        from: ReadFrom<Position>,
        direction: Direction,
        max_count: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let shared = Arc::clone(&self.shared);
        let filter = filter.clone();
        self.blocking(move || all::read_all(&shared, from, direction, max_count, &filter)).await
    }

    async fn read_all_page(
        &self,
        from: ReadFrom<Position>,
        direction: Direction,
        limits: PageLimits,
        filter: &EventFilter,
    ) -> Result<AllPage, StoreError> {
        let shared = Arc::clone(&self.shared);
        let filter = filter.clone();
        self.blocking(move || all::read_all_page(&shared, from, direction, limits, &filter)).await
    }

    async fn subscribe_to_all(
        &self,
        from: SubscribeFrom<Position>,
        filter: EventFilter,
    ) -> Result<Subscription, StoreError> {
        if self.shared.is_closed() {
            return Err(StoreError::Closed);
        }
        Ok(subscribe::to_all(&self.shared, from, filter))
    }

    async fn subscribe_to_stream(
        &self,
        stream: &StreamId,
        from: SubscribeFrom<Revision>,
    ) -> Result<Subscription, StoreError> {
        subscribe::to_stream(&self.shared, stream.clone(), from)
    }

    async fn writable(&self) -> Result<(), StoreError> {
        self.head().await?;
        if self.shared.poisoned().is_some() {
            return Err(self.shared.poisoned_error());
        }
        let shared = Arc::clone(&self.shared);
        self.blocking(move || shared.space.writable()).await
    }

    async fn head(&self) -> Result<Option<Position>, StoreError> {
        // A writer thread that died (a bug: it panicked) takes no appends: the store must not
        // look ready to a load balancer then, although reads still work.
        let writer_gone = self.writer.tx.lock().expect("writer lock").as_ref().is_none_or(|tx| tx.is_closed());
        if self.shared.is_closed() || writer_gone {
            return Err(StoreError::Closed);
        }
        let next = self.shared.head().position;
        Ok(next.0.checked_sub(1).map(Position))
    }

    async fn distance(&self, after: Option<Position>, through: Position) -> Result<Option<u64>, StoreError> {
        Ok(Some(crate::capabilities::DENSE.distance(after, through)))
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.close_shared().await
    }
}

fn join_error(e: tokio::task::JoinError) -> StoreError {
    StoreError::Io { op: "blocking task", path: PathBuf::new(), source: std::io::Error::other(e.to_string()) }
}
