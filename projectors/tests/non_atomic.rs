//! The runtime on a view without an atomic checkpoint (issue 14, Elasticsearch's case): it
//! commits a batch's documents first and the checkpoint after, never both in one commit, and
//! a crash between the two writes — documents in the view, checkpoint behind them — is
//! harmless: the restarted projector folds the events after the checkpoint again and ends with
//! exactly the view that one run from position 0 builds.
//!
//! The view is the tantivy backend behind a wrapper that reports no atomic checkpoint, refuses
//! a commit holding both documents and a checkpoint, and "crashes" (fails every call from then
//! on, as a dead process would) when the checkpoint of its N-th document commit arrives.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annals_projectors::view_store::{
    Capabilities, Checkpoint, CommitOutcome, StoredDoc, ViewBatch, ViewHalves, ViewReader, ViewWriter,
};
use annals_projectors::{MessagesProjection, Projection, Projector, ProjectorConfig, TantivyViewStore, ViewError};
use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{EventData, EventStore, ExpectedRevision, Position, StreamId};
use async_trait::async_trait;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use common::all_docs;

#[derive(Debug)]
struct SplitCommits {
    inner: TantivyViewStore,
    /// Document commits let through before the next checkpoint commit crashes; `None`: never.
    crash_after: Option<usize>,
    documents: AtomicUsize,
    crashed: AtomicBool,
    /// Set if the runtime ever sent documents and a checkpoint in one commit.
    mixed: AtomicBool,
}

impl SplitCommits {
    fn new(inner: TantivyViewStore, crash_after: Option<usize>) -> Arc<Self> {
        Arc::new(SplitCommits {
            inner,
            crash_after,
            documents: AtomicUsize::new(0),
            crashed: AtomicBool::new(false),
            mixed: AtomicBool::new(false),
        })
    }

    fn alive(&self) -> Result<(), ViewError> {
        match self.crashed.load(Ordering::SeqCst) {
            true => Err(ViewError::Backend { view: "messages", op: "commit", reason: "crashed".into() }),
            false => Ok(()),
        }
    }
}

#[async_trait]
impl ViewWriter for SplitCommits {
    fn capabilities(&self) -> Capabilities {
        Capabilities { atomic_checkpoint: false, ..ViewWriter::capabilities(&self.inner) }
    }

    async fn commit(&self, batch: Arc<ViewBatch>) -> Result<CommitOutcome, ViewError> {
        self.alive()?;
        if !batch.upserts.is_empty() && batch.checkpoint.is_some() {
            self.mixed.store(true, Ordering::SeqCst);
            return Err(ViewError::Backend {
                view: "messages",
                op: "commit",
                reason: "documents and checkpoint in one commit".into(),
            });
        }
        if !batch.upserts.is_empty() {
            self.documents.fetch_add(1, Ordering::SeqCst);
        } else if batch.checkpoint.is_some()
            && self.crash_after.is_some_and(|n| self.documents.load(Ordering::SeqCst) >= n)
        {
            self.crashed.store(true, Ordering::SeqCst);
            self.alive()?;
        }
        self.inner.commit(batch).await
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>, ViewError> {
        self.alive()?;
        ViewWriter::checkpoint(&self.inner).await
    }

    async fn get_many(&self, keys: &[(String, String)]) -> Result<Vec<Option<StoredDoc>>, ViewError> {
        self.alive()?;
        self.inner.get_many(keys).await
    }

    async fn bulk_load(&self, on: bool) -> Result<(), ViewError> {
        self.alive()?;
        self.inner.bulk_load(on).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_documents_and_checkpoint_converges_to_the_view_of_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EngineConfig::new(dir.path().join("store"))).await.unwrap();
    let mut last = Position::from_code(0);
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..150 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        last = append(&store, (rng % 8) as u8, ((rng >> 8) % 8) as u8).await;
    }
    let config = ProjectorConfig {
        batch_size: 7,
        flush_interval: Duration::from_millis(5),
        cache_docs: 0,
        parallelism: 2,
        live_pace: Duration::from_millis(2),
    };
    let rebuilt = run_once(&store, dir.path().join("rebuilt"), last).await;

    for crash_after in [1, 4, 9] {
        let view_dir = dir.path().join(format!("crashed-{crash_after}"));
        let view = SplitCommits::new(open(&view_dir), Some(crash_after));
        let shutdown = CancellationToken::new();
        let (status, task) = start(&store, Arc::clone(&view) as _, config.clone(), shutdown.clone());
        for _ in 0..1_000 {
            if view.crashed.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(view.crashed.load(Ordering::SeqCst), "the view crashed after {crash_after} document commits");
        // The process is dead: nothing it still tries reaches the view.
        shutdown.cancel();
        task.await.unwrap();
        assert!(!view.mixed.load(Ordering::SeqCst), "the runtime split every commit");
        // A commit the projector started may still be running out its last attempt.
        let mut view = view;
        for _ in 0..1_000 {
            match Arc::try_unwrap(view) {
                Ok(unwrapped) => {
                    drop(unwrapped);
                    break;
                }
                Err(shared) => view = shared,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // Reopened from its files: documents ahead of the checkpoint, as the crash left them.
        let reopened = open(&view_dir);
        let checkpoint = ViewReader::checkpoint(&reopened).await.unwrap().map(|c| c.position);
        let docs = all_docs(&reopened, "acme").await;
        assert!(
            docs.iter().any(|(_, version, _)| Some(*version) > checkpoint),
            "a document past checkpoint {checkpoint:?} (crash after {crash_after}): {:?}",
            docs.iter().map(|d| d.1).collect::<Vec<_>>()
        );
        assert!(!status.has_applied(last));

        let view = SplitCommits::new(reopened, None);
        let shutdown = CancellationToken::new();
        let (status, task) = start(&store, Arc::clone(&view) as _, config.clone(), shutdown.clone());
        wait_until_applied(&status, last).await;
        shutdown.cancel();
        task.await.unwrap();
        assert!(!view.mixed.load(Ordering::SeqCst), "the runtime split every commit");
        assert_eq!(
            all_docs(&view.inner, "acme").await,
            all_docs(rebuilt.reader.as_ref(), "acme").await,
            "crashed between documents and checkpoint (after {crash_after}), replayed, and one run disagree"
        );
    }
    store.close().await.unwrap();
}

fn open(dir: &std::path::Path) -> TantivyViewStore {
    TantivyViewStore::open(dir, MessagesProjection.schema()).unwrap()
}

/// One run from position 0 on a plain (atomic) tantivy view.
async fn run_once(store: &EmbeddedStore, dir: std::path::PathBuf, last: Position) -> ViewHalves {
    let view = Arc::new(open(&dir));
    let shutdown = CancellationToken::new();
    let (status, task) = start(store, Arc::clone(&view) as _, ProjectorConfig::default(), shutdown.clone());
    wait_until_applied(&status, last).await;
    shutdown.cancel();
    task.await.unwrap();
    ViewHalves { reader: Arc::clone(&view) as _, writer: view }
}

type Started = (Arc<annals_projectors::ProjectionStatus>, tokio::task::JoinHandle<()>);

fn start(
    store: &EmbeddedStore,
    view: Arc<dyn ViewWriter>,
    config: ProjectorConfig,
    shutdown: CancellationToken,
) -> Started {
    let store: Arc<dyn EventStore> = Arc::new(store.clone());
    let projector = Projector::new(store, view, MessagesProjection, config);
    let status = projector.status();
    (status, tokio::spawn(projector.run(shutdown)))
}

async fn wait_until_applied(status: &annals_projectors::ProjectionStatus, last: Position) {
    for _ in 0..1_000 {
        if status.has_applied(last) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("position {last} not applied within 10 s: {:?}", status.snapshot());
}

/// One event of message `c{stream}`: an enqueue, a later status, or data that never applies.
async fn append(store: &EmbeddedStore, stream: u8, kind: u8) -> Position {
    const TYPES: [&str; 7] = [
        "message.enqueued",
        "message.routed",
        "message.sent",
        "message.delivered",
        "message.opened",
        "message.undeliverable",
        "message.sent",
    ];
    let id = format!("c{stream}");
    let (event_type, data): (&str, Value) = match kind as usize {
        0 => (
            TYPES[0],
            json!({ "message_id": id, "recipient": { "id": "u", "email": "u@example.com" }, "channel": "email", "subject": format!("s{stream}") }),
        ),
        k if k < TYPES.len() => (TYPES[k], json!({ "message_id": id, "provider": "ses", "reason": "BOUNCED" })),
        _ => ("message.sent", json!({ "message_id": 42 })),
    };
    let event = EventData::json(event_type, &data).unwrap();
    let stream = StreamId::new(format!("acme/message-{id}")).unwrap();
    store.append_to_stream(&stream, ExpectedRevision::Any, vec![event]).await.unwrap().last_position
}
