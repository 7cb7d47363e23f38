//! A view served read-only, beside a projector in another process (an `api` process): the
//! serving generation opened to read ([`ViewHosting::open_reader`]), and a follower task that
//! keeps it the one the hosting names, so a rebuild carried out by a projector process serves
//! through every API process.
//!
//! # Staleness, bounded
//! The follower looks at the hosting ([`ViewHosting::current`]; tantivy: `CURRENT`) and the
//! control stream every [`FOLLOW_INTERVAL`]. When the serving generation changed, it opens the
//! new one and swaps reads to it once the new reader's checkpoint is not behind the old one's
//! (the projector switched only after the new generation caught up, so this takes a moment at
//! most; after [`CATCH_UP_LIMIT`] it swaps anyway and says so). So an API process serves a
//! finished rebuild within about `FOLLOW_INTERVAL` plus the backend's own visibility delay
//! (tantivy's readers reload on a watched `meta.json`, ~0.5 s), and its reads never go back in
//! time at the swap.
//!
//! # Status without a projector
//! An API process runs no projector, so the figures `GET /v1/projections` shows come from the
//! view itself: the checkpoint is the reader's; "caught up" is set once nothing the projection
//! reads lies past it; "applied events" counts the positions the checkpoint moved past since
//! this process started (the store's `distance`), and the rate follows from it. A rebuild in
//! progress (requested on `$projections`, its generation opened by the projector process) is
//! read through a reader of its generation in the same way.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use annals_store::{EventStore, Position};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Generation, HostedView, Rebuild, ViewHosting};
use crate::error::ViewError;
use crate::runtime::control::ControlReader;
use crate::runtime::parked::{self, ParkedLog};
use crate::runtime::projection::Projection;
use crate::runtime::status::ProjectionStatus;
use crate::runtime::unapplied::UnappliedScan;

/// How often the follower looks for a switch of generation and a rebuild, and refreshes the
/// status figures.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// How long a swap waits for the new generation's reader to reach the old one's checkpoint.
pub const CATCH_UP_LIMIT: Duration = Duration::from_secs(10);

/// Opens the serving generation of the view `hosting` keeps to read only, and starts the task
/// that follows its switches; it stops when `shutdown` fires.
pub async fn follow<P: Projection>(
    hosting: Arc<dyn ViewHosting>,
    projection: &P,
    store: Arc<dyn EventStore>,
    shutdown: CancellationToken,
) -> Result<(Arc<HostedView>, JoinHandle<()>), ViewError> {
    let name = projection.schema().name;
    let number = hosting.current().await?;
    let generation = open_generation(hosting.as_ref(), name, number).await?;
    let view = Arc::new(HostedView {
        name,
        filter: projection.filter(),
        serving: RwLock::new(generation),
        rebuild: RwLock::new(None),
        unapplied: UnappliedScan::default(),
    });
    let follower = Follower {
        view: Arc::clone(&view),
        hosting,
        store,
        control: ControlReader::new(name),
        seen: Default::default(),
    };
    Ok((view, tokio::spawn(follower.run(shutdown))))
}

async fn open_generation(hosting: &dyn ViewHosting, name: &'static str, number: u64) -> Result<Generation, ViewError> {
    let reader = hosting.open_reader(number).await?;
    let stream = parked::parked_stream(name, number).expect("view names make valid stream names");
    Ok(Generation {
        number,
        reader,
        status: Arc::new(ProjectionStatus::new(name)),
        parked: Arc::new(tokio::sync::Mutex::new(ParkedLog::new(stream))),
    })
}

struct Follower {
    view: Arc<HostedView>,
    hosting: Arc<dyn ViewHosting>,
    store: Arc<dyn EventStore>,
    control: ControlReader,
    /// The checkpoint each generation's figures were last updated from (by number).
    seen: std::collections::HashMap<u64, Option<Position>>,
}

impl Follower {
    async fn run(mut self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.tick(&shutdown).await {
                warn!(projection = self.view.name, error = %e, "view follower: step failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn tick(&mut self, shutdown: &CancellationToken) -> Result<(), String> {
        let name = self.view.name;
        let current = self.hosting.current().await.map_err(|e| e.to_string())?;
        let serving = self.view.serving();
        if current != serving.number {
            let new = open_generation(self.hosting.as_ref(), name, current).await.map_err(|e| e.to_string())?;
            self.swap(serving, new, shutdown).await;
        }
        let serving = self.view.serving();
        let state = self.control.refresh(self.store.as_ref()).await.map_err(|e| e.to_string())?.clone();
        let wanted = state.rebuilding.map(|r| r.generation).filter(|&g| g > serving.number);
        let shown = self.view.rebuild().map(|r| r.generation.number);
        if wanted != shown {
            let rebuild = match wanted {
                // Only once the projector process has made it: a reader must not create it.
                Some(g) if self.hosting.exists(g).await.map_err(|e| e.to_string())? => Some(Rebuild {
                    generation: open_generation(self.hosting.as_ref(), name, g).await.map_err(|e| e.to_string())?,
                    started: Instant::now(),
                }),
                _ => None,
            };
            *self.view.rebuild.write().unwrap_or_else(|p| p.into_inner()) = rebuild;
        }
        self.observe(&self.view.serving(), true).await?;
        if let Some(rebuild) = self.view.rebuild() {
            self.observe(&rebuild.generation, false).await?;
        }
        Ok(())
    }

    /// Serves `new` instead of `old` once it has reached `old`'s checkpoint (or after
    /// [`CATCH_UP_LIMIT`]), so reads do not go back in time at the swap.
    async fn swap(&mut self, old: Generation, new: Generation, shutdown: &CancellationToken) {
        let name = self.view.name;
        let started = Instant::now();
        // What this process last read from the old generation: the floor when the old one is
        // already gone (the projector removes it only after the new one passed its last commit).
        let floor = self.seen.get(&old.number).copied().flatten();
        loop {
            let old_at = old.reader.checkpoint().await.map(|c| c.map(|c| c.position)).unwrap_or(floor);
            match new.reader.checkpoint().await {
                Ok(n) if n.map(|c| c.position) >= old_at => break,
                _ if started.elapsed() >= CATCH_UP_LIMIT || shutdown.is_cancelled() => {
                    warn!(
                        projection = name,
                        generation = new.number,
                        "the new generation serves before reaching the old one's checkpoint"
                    );
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        info!(projection = name, generation = new.number, previous = old.number, "following a switch of generation");
        self.seen.remove(&old.number);
        *self.view.serving.write().unwrap_or_else(|p| p.into_inner()) = new;
        let mut rebuild = self.view.rebuild.write().unwrap_or_else(|p| p.into_inner());
        if rebuild.as_ref().is_some_and(|r| r.generation.number <= self.view.serving().number) {
            *rebuild = None;
        }
    }

    /// Updates a generation's figures from its reader's checkpoint (and, for the serving one,
    /// whether it has caught up: the view's scan of unapplied events is the serving one's).
    async fn observe(&mut self, generation: &Generation, serving: bool) -> Result<(), String> {
        let checkpoint = generation.reader.checkpoint().await.map_err(|e| e.to_string())?.map(|c| c.position);
        let store = self.store.as_ref();
        let before = self.seen.insert(generation.number, checkpoint);
        match (before, checkpoint) {
            (None, _) => generation.status.set_checkpoint(checkpoint),
            (Some(before), Some(now)) if before < Some(now) => {
                let moved = store.distance(before, now).await.map_err(|e| e.to_string())?.unwrap_or(0);
                generation.status.committed(now, moved, 0);
            }
            _ => {}
        }
        if serving
            && !generation.status.snapshot().caught_up
            && self
                .view
                .unapplied
                .oldest(store, &self.view.filter, checkpoint)
                .await
                .map_err(|e| e.to_string())?
                .is_none()
        {
            generation.status.set_caught_up();
        }
        Ok(())
    }
}
