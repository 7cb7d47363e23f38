//! Opens the views that `[views]` names and hosts their projectors. Kept thin on purpose: the
//! views are turning into an async reader (what an `api` process opens) and writer (what a
//! `projector` process hosts), and this file is where that split is wired.

use std::sync::Arc;

use annals_query_api::{OpenViews, Views};
use annals_store::EventStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::invalidations::Wiring;
use crate::settings::{ProjectorSettings, Settings, ViewsKind};
use crate::Error;

/// Opens (or creates) the views of `settings`, projectors not started.
pub async fn open(settings: &Settings) -> Result<OpenViews, Error> {
    match settings.views.kind {
        ViewsKind::Tantivy => {
            // Before the views open: their threads (and tantivy's) take it when they start.
            annals_projectors::background::set_priority(settings.projectors.priority);
            Ok(Views::open(&settings.views_dir()).await?)
        }
    }
}

/// Starts a projector per view (with its rebuilds) handing its invalidations to `wiring`'s
/// sinks, and a dispatcher per sink; returns the views to read and the host that stops them.
pub async fn start_projectors(
    opened: OpenViews,
    store: &Arc<dyn EventStore>,
    settings: &ProjectorSettings,
    wiring: &Wiring,
) -> Result<(Views, ProjectorHost), Error> {
    let stop = CancellationToken::new();
    // Read before the projectors start: a sink's `Resumed` flush then precedes what they queue.
    let checkpoints = opened.checkpoints().await?;
    let opened = opened.invalidations(wiring.out());
    let (views, mut tasks) = opened.start(store, settings.config(), &stop);
    tasks.extend(wiring.dispatch(Box::pin(std::future::ready(checkpoints)), &stop));
    Ok((views, ProjectorHost { stop, tasks }))
}

/// Opens the views of `settings` to read only (an `api` process, beside projector processes);
/// returns the views and the host of their followers.
pub async fn follow(settings: &Settings, store: &Arc<dyn EventStore>) -> Result<(Views, ProjectorHost), Error> {
    match settings.views.kind {
        ViewsKind::Tantivy => {
            let stop = CancellationToken::new();
            let (views, tasks) = Views::follow(&settings.views_dir(), store, &stop).await?;
            Ok((views, ProjectorHost { stop, tasks }))
        }
    }
}

/// The projectors of this process (or, in an `api` process, the followers of its views).
#[derive(Debug)]
pub struct ProjectorHost {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl ProjectorHost {
    /// Tasks that stop, committing what they hold, when `stop` fires.
    pub fn new(stop: CancellationToken, tasks: Vec<JoinHandle<()>>) -> ProjectorHost {
        ProjectorHost { stop, tasks }
    }

    /// Stops every projector once it has committed the batch in hand.
    pub async fn stop(mut self) {
        self.stop.cancel();
        for task in std::mem::take(&mut self.tasks) {
            if let Err(e) = task.await {
                warn!(error = %e, "a projector task failed");
            }
        }
    }
}

impl Drop for ProjectorHost {
    /// A host dropped without `stop` (a `Server` built and never run) still stops its projectors,
    /// which would otherwise keep the store open for ever.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
