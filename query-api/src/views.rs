//! The read views the query routes serve, and (in the embedded, single-process mode) the
//! projectors that keep them: `messages` and `audit`, each hosted by
//! `annals_projectors::host` under `DATA_DIR/views/{name}/gen-{N}` (rebuilds make the next
//! generation). Routes only read views, through the serving generation's `ViewReader`; only
//! projectors write them (ARCHITECTURE.md, invariants). Read-your-writes and lag are answered
//! from the checkpoint the view has committed, as its reader sees it, not from a projector of
//! this process.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use annals_projectors::host::tantivy::TantivyHosting;
use annals_projectors::{
    AuditProjection, HostedView, MessagesProjection, OpenView, Projection, ProjectorConfig, ViewHosting,
};
use annals_store::{EventStore, Position};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, Error};

/// The views of this process.
#[derive(Clone, Debug)]
pub struct Views {
    pub messages: View,
    pub audit: View,
}

/// One view: where reads go (its serving generation), and how far its projection has come.
pub type View = Arc<HostedView>;

/// Where a projection stands against the log: what `GET /v1/projections` shows and the
/// `annals_projection_*` metrics export.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Progress {
    pub name: String,
    /// The generation of the view that serves reads (each rebuild makes the next one).
    pub generation: u64,
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
    /// Events applied (parked ones included, replayed ones again) since this process started; in
    /// an `api` process, which runs no projector, the positions the view's committed checkpoint
    /// has passed since it started.
    pub applied_events: u64,
    /// Parked events of the serving generation that no replay has applied yet.
    pub parked_events: u64,
    /// Events applied per second by the serving generation's projector, over the last seconds (in
    /// an `api` process: as `applied_events` counts them).
    pub events_per_second: f64,
    /// The rebuild in progress, if any.
    pub rebuild: Option<RebuildProgress>,
}

/// A new generation being built from the log beside the serving one.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RebuildProgress {
    pub generation: u64,
    /// The position the new generation has applied up to.
    pub checkpoint: Option<u64>,
    /// `checkpoint / head`, from 0 to 1.
    pub progress: f64,
    /// Positions of the log covered per second since the rebuild started.
    pub positions_per_second: f64,
    /// Events applied per second since the rebuild started.
    pub events_per_second: f64,
    /// Seconds until the new generation reaches the head at that rate (none before a rate).
    pub eta_seconds: Option<f64>,
    pub elapsed_seconds: f64,
}

impl Views {
    pub fn all(&self) -> [&View; 2] {
        [&self.messages, &self.audit]
    }

    pub fn by_name(&self, name: &str) -> Option<&View> {
        self.all().into_iter().find(|v| v.name() == name)
    }

    /// Opens (or creates) the views under `dir` (`[views] dir`, by default `DATA_DIR/views`).
    pub async fn open(dir: &Path) -> Result<OpenViews, Error> {
        let views = |e: annals_projectors::ViewError| Error::Views(e.to_string());
        let messages = TantivyHosting::open(&dir.join(MessagesProjection::NAME), MessagesProjection.schema());
        let audit = TantivyHosting::open(&dir.join(AuditProjection::NAME), AuditProjection.schema());
        Ok(OpenViews {
            messages: OpenView::open(Arc::new(messages.map_err(views)?), MessagesProjection).await.map_err(views)?,
            audit: OpenView::open(Arc::new(audit.map_err(views)?), AuditProjection).await.map_err(views)?,
        })
    }
}

impl Views {
    /// Opens the views under `dir` to read only, beside projector processes that write them
    /// (an `api` process): each follows its view's switches of generation
    /// (`annals_projectors::host::follow`: staleness bounded there); the followers stop when
    /// `shutdown` fires.
    pub async fn follow(
        dir: &Path,
        store: &Arc<dyn EventStore>,
        shutdown: &CancellationToken,
    ) -> Result<(Views, Vec<JoinHandle<()>>), Error> {
        let views = |e: annals_projectors::ViewError| Error::Views(e.to_string());
        let messages = TantivyHosting::open(&dir.join(MessagesProjection::NAME), MessagesProjection.schema());
        let audit = TantivyHosting::open(&dir.join(AuditProjection::NAME), AuditProjection.schema());
        use annals_projectors::host::follow;
        let (messages, m) =
            follow(Arc::new(messages.map_err(views)?), &MessagesProjection, Arc::clone(store), shutdown.clone())
                .await
                .map_err(views)?;
        let (audit, a) = follow(Arc::new(audit.map_err(views)?), &AuditProjection, Arc::clone(store), shutdown.clone())
            .await
            .map_err(views)?;
        Ok((Views { messages, audit }, vec![m, a]))
    }
}

impl Views {
    /// Opens (or creates) the views kept by `messages` and `audit` (a backend other than the
    /// directories of [`Views::open`]: Elasticsearch).
    pub async fn open_hosted(messages: Arc<dyn ViewHosting>, audit: Arc<dyn ViewHosting>) -> Result<OpenViews, Error> {
        let views = |e: annals_projectors::ViewError| Error::Views(e.to_string());
        Ok(OpenViews {
            messages: OpenView::open(messages, MessagesProjection).await.map_err(views)?,
            audit: OpenView::open(audit, AuditProjection).await.map_err(views)?,
        })
    }

    /// [`Views::follow`] for the views kept by `messages` and `audit`.
    pub async fn follow_hosted(
        messages: Arc<dyn ViewHosting>,
        audit: Arc<dyn ViewHosting>,
        store: &Arc<dyn EventStore>,
        shutdown: &CancellationToken,
    ) -> Result<(Views, Vec<JoinHandle<()>>), Error> {
        let views = |e: annals_projectors::ViewError| Error::Views(e.to_string());
        use annals_projectors::host::follow;
        let (messages, m) =
            follow(messages, &MessagesProjection, Arc::clone(store), shutdown.clone()).await.map_err(views)?;
        let (audit, a) = follow(audit, &AuditProjection, Arc::clone(store), shutdown.clone()).await.map_err(views)?;
        Ok((Views { messages, audit }, vec![m, a]))
    }
}

/// Views opened, projectors not started yet.
#[derive(Debug)]
pub struct OpenViews {
    messages: OpenView<MessagesProjection>,
    audit: OpenView<AuditProjection>,
}

impl OpenViews {
    /// Hands its projectors' invalidations to `out` (issue 15).
    pub fn invalidations(mut self, out: annals_projectors::invalidation::queue::Invalidations) -> Self {
        self.messages = self.messages.invalidations(out.clone());
        self.audit = self.audit.invalidations(out);
        self
    }

    /// Each view's committed checkpoint, before its projector starts.
    pub async fn checkpoints(&self) -> Result<Vec<(String, Option<annals_store::Position>)>, Error> {
        let views = |e: annals_projectors::ViewError| Error::Views(e.to_string());
        let messages = self.messages.checkpoint().await.map_err(views)?.map(|c| c.position);
        let audit = self.audit.checkpoint().await.map_err(views)?.map(|c| c.position);
        Ok(vec![(MessagesProjection::NAME.to_owned(), messages), (AuditProjection::NAME.to_owned(), audit)])
    }

    /// Hosts each view (its projector, rebuilds); they stop, committing their batch, when
    /// `shutdown` fires.
    pub fn start(
        self,
        store: &Arc<dyn EventStore>,
        config: ProjectorConfig,
        shutdown: &CancellationToken,
    ) -> (Views, Vec<JoinHandle<()>>) {
        let (messages, m) = self.messages.start(Arc::clone(store), config.clone(), shutdown.clone());
        let (audit, a) = self.audit.start(Arc::clone(store), config, shutdown.clone());
        (Views { messages, audit }, vec![m, a])
    }
}

/// The projection's progress against the log now.
pub async fn progress(view: &HostedView, store: &dyn EventStore) -> Result<Progress, ApiError> {
    let serving = view.serving();
    let snapshot = serving.status.snapshot();
    // The view's committed checkpoint, which an API process that runs no projector reads too.
    let checkpoint = serving.reader.checkpoint().await?.map(|c| c.position);
    let head = store.head().await?;
    let waiting = view.oldest_unapplied(store, checkpoint).await?;
    let (lag_events, lag_seconds) = match (waiting, head) {
        (Some(oldest), Some(head)) => {
            // Events where the store can count them (0 where it cannot); seconds always.
            let behind = store.distance(checkpoint, head).await?.unwrap_or(0);
            let age = (chrono::Utc::now() - oldest.recorded_at).num_microseconds().unwrap_or(i64::MAX);
            (behind, age.max(0) as f64 / 1e6)
        }
        _ => (0, 0.0),
    };
    let parked_events = serving.parked.lock().await.refresh(store).await?.unresolved() as u64;
    let count = |through: Option<Position>| async move {
        Ok::<_, annals_store::StoreError>(match through {
            Some(p) => store.distance(None, p).await?.unwrap_or(0),
            None => 0,
        })
    };
    let total = count(head).await? as f64;
    let rebuilding = view.rebuild();
    let covered = match &rebuilding {
        Some(r) => count(r.generation.status.snapshot().checkpoint).await? as f64,
        None => 0.0,
    };
    let rebuild = rebuilding.map(|r| {
        let s = r.generation.status.snapshot();
        let elapsed = r.started.elapsed().as_secs_f64().max(1e-3);
        let positions_per_second = covered / elapsed;
        RebuildProgress {
            generation: r.generation.number,
            checkpoint: s.checkpoint.map(Position::code),
            progress: if total > 0.0 { (covered / total).min(1.0) } else { 1.0 },
            positions_per_second,
            events_per_second: s.applied as f64 / elapsed,
            eta_seconds: (positions_per_second > 0.0).then(|| (total - covered).max(0.0) / positions_per_second),
            elapsed_seconds: elapsed,
        }
    });
    Ok(Progress {
        name: view.name().to_owned(),
        generation: serving.number,
        state: if snapshot.caught_up { "live" } else { "catching_up" },
        checkpoint: checkpoint.map(Position::code),
        head: head.map(Position::code),
        lag_events,
        lag_seconds,
        applied_events: snapshot.applied,
        parked_events,
        events_per_second: serving.status.events_per_second(),
        rebuild,
    })
}

/// Waits until every event at or before `position` that the view's projection reads is in the
/// serving generation (read-your-writes), for at most `timeout`; `false` if it is not by then.
///
/// The checkpoint is the position of the last event the projection *applied*, so a position
/// of an event it does not read (another view's) may never be reached by the checkpoint
/// itself: the view has it when no event the projection reads lies between the checkpoint
/// and `position`.
///
/// A position the log has not reached is not applied, however idle the view: with nothing to
/// apply, "no unapplied event up to `position`" would hold for any position past the head
/// (issue 13: `min_position=99999999` answered at once). So the head must have reached it
/// first; it is read before the scan, so the scan sees every event up to it.
pub async fn wait_for(
    view: &HostedView,
    store: &dyn EventStore,
    position: Position,
    timeout: Duration,
) -> Result<bool, ApiError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let checkpoint = view.checkpoint().await?.map(|c| c.position);
        if checkpoint.is_some_and(|c| c >= position) {
            return Ok(true);
        }
        let reached = store.head().await?.is_some_and(|head| head >= position);
        if reached && view.oldest_unapplied(store, checkpoint).await?.is_none_or(|e| e.position > position) {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
