//! Hosting a view in this process: the serving generation with its live projector, and rebuilds
//! on demand — a new generation built beside the serving one by the same projector
//! code from position 0, switched to atomically once it has caught up, the old one then removed.
//!
//! # The rebuild protocol
//! 1. A request is a `$rebuild-requested` event on `$projections` (`control.rs`); the host polls
//!    the control stream, so the process asking need not be this one.
//! 2. The host opens generation N ([`ViewHosting::open`]; tantivy: `gen-{N}`, `tantivy.rs`) and runs a [`Projector`] on it from its own
//!    checkpoint — from 0 for a new directory, from where it stopped after a crash. Reads keep
//!    going to the serving generation meanwhile.
//! 3. When the new generation has reached the head once and applied at least what the serving
//!    one has (its checkpoint is not behind), the host switches ([`ViewHosting::switch`], durable;
//!    tantivy: `CURRENT`),
//!    stops the old projector (it commits its batch in hand), waits for the new generation to
//!    pass the old one's final checkpoint, swaps the generation reads use (one pointer, so a
//!    read sees one generation or the other, never a mix, and never an older state than the
//!    last), appends `$rebuild-completed`, and removes the old directory. The new generation's
//!    projector simply goes on as the live one.
//!
//! Invalidations (issue 15): the serving generation's projector hands its commits' keys out; a
//! rebuilding one hands out nothing per document, and at the switch, once reads go to it, one
//! whole-view invalidation of every tenant (`tenant: None`, `FlushReason::Rebuild`) goes out at
//! its checkpoint and its per-document ones start (`runtime/emit.rs`).
//!
//! A crash before the switch is recorded leaves the old generation serving and the request open:
//! the next start resumes the rebuild. A crash after it serves the new generation, and the
//! missing `$rebuild-completed` is appended at start (the host reconciles before anything else).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use annals_store::{EventFilter, EventStore, Position, RecordedEvent, StoreError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::error::ViewError;
use crate::invalidation::queue::Invalidations;
use crate::runtime::control;
use crate::runtime::parked::{self, ParkedLog};
use crate::runtime::projection::Projection;
use crate::runtime::status::ProjectionStatus;
use crate::runtime::unapplied::UnappliedScan;
use crate::runtime::{Emission, Projector, ProjectorConfig};
use crate::view_store::{Checkpoint, ViewHalves, ViewReader};

pub use follow::follow;
pub use hosting::ViewHosting;

pub mod follow;
mod hosting;
pub mod tantivy;

/// A view as this process serves it.
#[derive(Debug)]
pub struct HostedView {
    name: &'static str,
    filter: EventFilter,
    serving: RwLock<Generation>,
    rebuild: RwLock<Option<Rebuild>>,
    unapplied: UnappliedScan,
}

/// One generation of a view: its reader, its projector's figures and its parked events.
#[derive(Clone, Debug)]
pub struct Generation {
    pub number: u64,
    pub reader: Arc<dyn ViewReader>,
    pub status: Arc<ProjectionStatus>,
    /// The generation's parked stream, folded as far as the last `refresh` read it.
    pub parked: Arc<tokio::sync::Mutex<ParkedLog>>,
}

/// A rebuild in progress.
#[derive(Clone, Debug)]
pub struct Rebuild {
    pub generation: Generation,
    pub started: Instant,
}

impl HostedView {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The events the view's projection reads.
    pub fn filter(&self) -> &EventFilter {
        &self.filter
    }

    /// The generation reads go to now.
    pub fn serving(&self) -> Generation {
        self.serving.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn rebuild(&self) -> Option<Rebuild> {
        self.rebuild.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The serving generation's committed checkpoint, as its reader sees it: what
    /// read-your-writes and lag are answered from, whether or not this process projects.
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, ViewError> {
        self.serving().reader.checkpoint().await
    }

    /// The first event after `checkpoint` that the view's projection reads: the oldest one it
    /// has not applied, if any (scanning only what was appended since the last ask found none).
    pub async fn oldest_unapplied(
        &self,
        store: &dyn EventStore,
        checkpoint: Option<Position>,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        self.unapplied.oldest(store, &self.filter, checkpoint).await
    }
}

/// A view opened (its serving generation), not hosted yet.
#[derive(Debug)]
pub struct OpenView<P: Projection> {
    projection: P,
    hosting: Arc<dyn ViewHosting>,
    serving: (u64, ViewHalves),
    invalidations: Invalidations,
}

impl<P: Projection + Clone> OpenView<P> {
    /// Opens the serving generation of the view `hosting` keeps.
    pub async fn open(hosting: Arc<dyn ViewHosting>, projection: P) -> Result<Self, ViewError> {
        let number = hosting.current().await?;
        let halves = hosting.open(number).await?;
        Ok(OpenView { projection, hosting, serving: (number, halves), invalidations: Invalidations::default() })
    }

    /// The serving generation's committed checkpoint (before its projector starts: where an
    /// invalidation sink's dispatcher compares its own checkpoint).
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, ViewError> {
        self.serving.1.reader.checkpoint().await
    }

    /// Where its projectors' invalidations go (none by default).
    pub fn invalidations(mut self, out: Invalidations) -> Self {
        self.invalidations = out;
        self
    }

    /// Starts the serving generation's projector and the host task (which resumes a pending
    /// rebuild and follows the control stream); both stop when `shutdown` fires.
    pub fn start(
        self,
        store: Arc<dyn EventStore>,
        config: ProjectorConfig,
        shutdown: CancellationToken,
    ) -> (Arc<HostedView>, JoinHandle<()>) {
        let (number, halves) = self.serving;
        let out = self.invalidations;
        let live = Running::start(&store, halves, number, &self.projection, &config, &shutdown, (&out, true));
        let view = Arc::new(HostedView {
            name: self.projection.schema().name,
            filter: self.projection.filter(),
            serving: RwLock::new(live.generation.clone()),
            rebuild: RwLock::new(None),
            unapplied: UnappliedScan::default(),
        });
        let host = Host {
            view: Arc::clone(&view),
            store,
            projection: self.projection,
            hosting: self.hosting,
            config,
            shutdown,
            live,
            rebuild: None,
            invalidations: out,
            swept: false,
            control: control::ControlReader::new(view.name),
        };
        (view, tokio::spawn(host.run()))
    }
}

/// How often the host reads the control stream and checks a rebuild's progress.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A projector running on one generation. Dropping it aborts the projector (what a holder that
/// lost its lease does: `abort` on the host's task drops the host, and with it this), so
/// nothing more is applied; a shutdown instead cancels `stop` and awaits the task, which
/// commits the batch in hand.
struct Running {
    generation: Generation,
    emission: Arc<Emission>,
    stop: CancellationToken,
    task: AbortOnDrop,
}

/// A task aborted when its handle is dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::future::Future for AbortOnDrop {
    type Output = Result<(), tokio::task::JoinError>;
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl Running {
    fn start<P: Projection + Clone>(
        store: &Arc<dyn EventStore>,
        halves: ViewHalves,
        number: u64,
        projection: &P,
        config: &ProjectorConfig,
        shutdown: &CancellationToken,
        (out, live): (&Invalidations, bool),
    ) -> Running {
        let projector = Projector::new(Arc::clone(store), halves.writer, projection.clone(), config.clone())
            .generation(number)
            .invalidations(out.clone(), live);
        let status = projector.status();
        let emission = projector.emission();
        let stream = parked::parked_stream(status.name, number).expect("view names make valid stream names");
        let parked = Arc::new(tokio::sync::Mutex::new(ParkedLog::new(stream)));
        let stop = shutdown.child_token();
        let task = AbortOnDrop(tokio::spawn(projector.run(stop.clone())));
        Running { generation: Generation { number, reader: halves.reader, status, parked }, emission, stop, task }
    }
}

struct Host<P: Projection> {
    view: Arc<HostedView>,
    store: Arc<dyn EventStore>,
    projection: P,
    hosting: Arc<dyn ViewHosting>,
    config: ProjectorConfig,
    shutdown: CancellationToken,
    live: Running,
    rebuild: Option<Running>,
    invalidations: Invalidations,
    /// Whether generation directories that serve nothing have been removed since the last
    /// rebuild ended (at start, or after a failed one); a switch removes its predecessor itself.
    swept: bool,
    control: control::ControlReader,
}

impl<P: Projection + Clone> Host<P> {
    async fn run(mut self) {
        loop {
            if let Err(e) = self.tick().await {
                warn!(projection = self.view.name, error = %e, "projection host: control step failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = self.shutdown.cancelled() => break,
            }
        }
        // The projectors' tokens are children of `shutdown`: they commit and stop on their own.
        if let Some(rebuild) = self.rebuild.take() {
            let _ = rebuild.task.await;
        }
        let _ = self.live.task.await;
    }

    /// One step: follow the control stream, start or finish a rebuild.
    async fn tick(&mut self) -> Result<(), String> {
        let name = self.view.name;
        let state = self.control.refresh(self.store.as_ref()).await.map_err(|e| e.to_string())?.clone();
        let serving = self.live.generation.number;
        if let Some(requested) = state.rebuilding.as_ref().map(|r| r.generation) {
            if requested == serving {
                // The switch happened but a crash came before it was recorded.
                control::complete_rebuild(self.store.as_ref(), name, serving).await.map_err(|e| e.to_string())?;
            } else if requested > serving && self.rebuild.is_none() {
                self.start_rebuild(requested).await?;
            }
        }
        if self.rebuild.is_none() && !self.swept {
            let removed = self.hosting.remove_others(&[serving]).await.map_err(|e| e.to_string())?;
            for removed in removed {
                info!(projection = name, removed, "removed a view generation that is not serving");
            }
            self.swept = true;
        }
        if self.rebuild.as_ref().is_some_and(|r| caught_up(&r.generation, &self.live.generation)) {
            self.switch().await?;
        }
        Ok(())
    }

    async fn start_rebuild(&mut self, generation: u64) -> Result<(), String> {
        let name = self.view.name;
        match self.hosting.open(generation).await {
            Ok(halves) => {
                info!(projection = name, generation, "rebuild started");
                let out = (&self.invalidations, false);
                let running = Running::start(
                    &self.store,
                    halves,
                    generation,
                    &self.projection,
                    &self.config,
                    &self.shutdown,
                    out,
                );
                *self.view.rebuild.write().unwrap_or_else(|p| p.into_inner()) =
                    Some(Rebuild { generation: running.generation.clone(), started: Instant::now() });
                self.rebuild = Some(running);
                Ok(())
            }
            Err(e) if writer_busy(&e) => {
                // Another process still holds the generation's writer (a projector that lost
                // its lease and is stopping): the next tick tries again.
                Err(format!("generation {generation}'s writer is still held elsewhere: {e}"))
            }
            Err(e) => {
                error!(projection = name, generation, error = %e, "rebuild cannot start");
                self.swept = false;
                control::fail_rebuild(self.store.as_ref(), name, generation, e.to_string())
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Makes the rebuilt generation the serving one (the protocol's step 3).
    async fn switch(&mut self) -> Result<(), String> {
        let Some(new) = self.rebuild.take() else { return Ok(()) };
        let (name, number) = (self.view.name, new.generation.number);
        if let Err(e) = self.hosting.switch(number).await {
            self.rebuild = Some(new);
            return Err(format!("cannot switch to generation {number}: {e}"));
        }
        // The old projector's last commit may have landed after the check: stop it, then let the
        // new generation pass its final checkpoint, so no reader sees the view go back in time.
        // (Reads stay on the old generation meanwhile, a moment behind at most.)
        let old_status = Arc::clone(&self.live.generation.status);
        let (old_number, old_stop, old_task) =
            (self.live.generation.number, self.live.stop.clone(), &mut self.live.task);
        old_stop.cancel();
        let _ = old_task.await;
        let old_final = old_status.snapshot().checkpoint;
        while new.generation.status.snapshot().checkpoint < old_final && !self.shutdown.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        *self.view.serving.write().unwrap_or_else(|p| p.into_inner()) = new.generation.clone();
        *self.view.rebuild.write().unwrap_or_else(|p| p.into_inner()) = None;
        // Reads go to the new generation now: its one whole-view invalidation, then its keys.
        new.emission.go_live();
        self.live = new;
        info!(
            projection = name,
            generation = number,
            previous = old_number,
            "rebuild complete; the new generation serves"
        );
        control::complete_rebuild(self.store.as_ref(), name, number).await.map_err(|e| e.to_string())?;
        self.hosting.remove_others(&[number]).await.map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Whether opening a generation failed only because another holder still has its writer (a
/// lock the backend releases when that holder stops or dies): worth retrying, not a failure.
pub fn writer_busy(e: &ViewError) -> bool {
    matches!(e, ViewError::Backend { op: "open writer", reason, .. } if reason.contains("LockBusy"))
}

/// Whether `new` may replace `serving`: it has reached the head once, and has applied at least
/// what the serving generation has, so a reader never goes back in time at the switch.
fn caught_up(new: &Generation, serving: &Generation) -> bool {
    let (new, serving) = (new.status.snapshot(), serving.status.snapshot());
    new.caught_up && new.checkpoint >= serving.checkpoint
}
