//! The read views the query routes serve, and (in the embedded, single-process mode) the
//! projectors that keep them: `messages` and `audit`, each a tantivy index under
//! `DATA_DIR/views/{name}`. Routes only read views; only projectors write them (ARCHITECTURE.md,
//! invariants).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use annals_projectors::view_store::ViewStore;
use annals_projectors::{
    AuditProjection, MessagesProjection, Projection, ProjectionStatus, Projector, ProjectorConfig, TantivyViewStore,
};
use annals_store::{Direction, EventFilter, EventStore, Position, ReadFrom, StoreError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::Error;

/// The views of this process.
#[derive(Clone, Debug)]
pub struct Views {
    pub messages: View,
    pub audit: View,
}

/// Where a projection stands against the log: what `GET /v1/projections` shows and the
/// `annals_projection_*` metrics export.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Progress {
    pub name: String,
    /// `catching_up` until the projection first reaches the head, then `live`.
    pub state: &'static str,
    /// The position of the last event applied to the view (none before the first).
    pub checkpoint: Option<u64>,
    /// The position of the last event in the log.
    pub head: Option<u64>,
    /// Positions between the checkpoint and the head; 0 when none of them is an event the
    /// projection reads (positions are shared by every view and tenant).
    pub lag_events: u64,
    /// The age of the oldest event the projection reads and has not applied; 0 when none.
    pub lag_seconds: f64,
    /// Events applied (parked ones included) since this process started.
    pub applied_events: u64,
    /// Events recorded in `$parked-{name}`, ever.
    pub parked_events: u64,
}

impl Views {
    pub fn all(&self) -> [&View; 2] {
        [&self.messages, &self.audit]
    }

    pub fn by_name(&self, name: &str) -> Option<&View> {
        self.all().into_iter().find(|v| v.status.name == name)
    }
}

/// One view: where reads go, and how far its projection has come.
#[derive(Clone, Debug)]
pub struct View {
    pub store: Arc<dyn ViewStore>,
    pub status: Arc<ProjectionStatus>,
    /// The events its projection reads.
    pub filter: EventFilter,
}

impl View {
    /// The projection's progress against the log now.
    pub async fn progress(&self, store: &dyn EventStore) -> Result<Progress, StoreError> {
        let snapshot = self.status.snapshot();
        let head = store.head().await?;
        let waiting = self.oldest_waiting(store, snapshot.checkpoint).await?;
        let (lag_events, lag_seconds) = match (waiting, head) {
            (Some(oldest), Some(head)) => {
                let behind = head.0 + 1 - snapshot.checkpoint.map_or(0, |c| c.0 + 1);
                let age = (chrono::Utc::now() - oldest.recorded_at).num_microseconds().unwrap_or(i64::MAX);
                (behind, age.max(0) as f64 / 1e6)
            }
            _ => (0, 0.0),
        };
        let parked = annals_projectors::runtime::parked_stream(self.status.name)?;
        let parked_events = match store.read_stream(&parked, ReadFrom::End, Direction::Backwards, 1).await? {
            annals_store::ReadStreamOutcome::Events(last) => last.first().map_or(0, |e| e.revision.0 + 1),
            annals_store::ReadStreamOutcome::StreamNotFound => 0,
        };
        Ok(Progress {
            name: self.status.name.to_owned(),
            state: if snapshot.caught_up { "live" } else { "catching_up" },
            checkpoint: snapshot.checkpoint.map(|c| c.0),
            head: head.map(|h| h.0),
            lag_events,
            lag_seconds,
            applied_events: snapshot.applied,
            parked_events,
        })
    }

    /// The first event past `checkpoint` that this view's projection reads: the oldest one it
    /// has not applied yet, if any.
    async fn oldest_waiting(
        &self,
        store: &dyn EventStore,
        checkpoint: Option<Position>,
    ) -> Result<Option<annals_store::RecordedEvent>, StoreError> {
        let from = checkpoint.map_or(ReadFrom::Start, |c| ReadFrom::At(c.next()));
        Ok(store.read_all(from, Direction::Forwards, 1, &self.filter).await?.into_iter().next())
    }

    /// Waits until every event at or before `position` that this view's projection reads is in
    /// the view (read-your-writes), for at most `timeout`; `false` if it is not by then.
    ///
    /// The checkpoint is the position of the last event the projection *applied*, so a position
    /// of an event it does not read (another view's) may never be reached by the checkpoint
    /// itself: the view has it when no event the projection reads lies between the checkpoint
    /// and `position`.
    pub async fn wait_for(
        &self,
        store: &dyn EventStore,
        position: Position,
        timeout: Duration,
    ) -> Result<bool, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let checkpoint = self.status.snapshot().checkpoint;
            if checkpoint.is_some_and(|c| c >= position) {
                return Ok(true);
            }
            let next = self.oldest_waiting(store, checkpoint).await?;
            if next.is_none_or(|e| e.position > position) {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Views {
    /// Opens (or creates) the views under `data_dir/views`.
    pub fn open(data_dir: &Path) -> Result<OpenViews, Error> {
        let open = |name: &str, schema| {
            let dir = data_dir.join("views").join(name);
            std::fs::create_dir_all(&dir).map_err(|e| Error::Views(format!("cannot create {}: {e}", dir.display())))?;
            TantivyViewStore::open(&dir, schema).map(Arc::new).map_err(|e| Error::Views(e.to_string()))
        };
        Ok(OpenViews {
            messages: open(MessagesProjection::NAME, MessagesProjection.schema())?,
            audit: open(AuditProjection::NAME, AuditProjection.schema())?,
        })
    }
}

/// Views opened, projectors not started yet.
#[derive(Debug)]
pub struct OpenViews {
    messages: Arc<TantivyViewStore>,
    audit: Arc<TantivyViewStore>,
}

impl OpenViews {
    /// Starts one projector per view; they stop (committing their batch) when `shutdown` fires.
    pub fn start(self, store: &Arc<dyn EventStore>, shutdown: &CancellationToken) -> (Views, Vec<JoinHandle<()>>) {
        let mut tasks = Vec::new();
        let messages = start(store, self.messages, MessagesProjection, shutdown, &mut tasks);
        let audit = start(store, self.audit, AuditProjection, shutdown, &mut tasks);
        (Views { messages, audit }, tasks)
    }
}

fn start<P: Projection>(
    store: &Arc<dyn EventStore>,
    view: Arc<TantivyViewStore>,
    projection: P,
    shutdown: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) -> View {
    let writer: Arc<dyn ViewStore> = view.clone();
    let filter = projection.filter();
    let projector = Projector::new(Arc::clone(store), writer, projection, ProjectorConfig::default());
    let status = projector.status();
    tasks.push(tokio::spawn(projector.run(shutdown.clone())));
    View { store: view, status, filter }
}
