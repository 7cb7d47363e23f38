//! The `projector` role: the projections of a store that API processes share, one owner per
//! view at a time. Each view has a keeper task that takes the view's lease (on PostgreSQL a
//! session-level advisory lock, `lease.rs`), only then opens the view's writer (tantivy allows
//! one per index directory: a takeover retries it while the previous holder lets go), hosts the
//! view (its projector, rebuilds, parked replays, `annals_projectors::host`) and, the moment the
//! lease is lost, aborts it — no batch in hand is committed — and waits for the lease again.
//! A second projector process waits on the same leases and takes over when the first dies.
//!
//! Exclusion is not what keeps the view right: a lease can be lost silently (a connection that
//! stops answering is noticed within a heartbeat), so two holders may overlap for a moment.
//! Their writes are versioned by position (the view keeps only newer ones), parked ids are
//! derived from stream and position, and rebuilds are decided by expected revision on
//! `$projections`; `projectors/tests/overlap.rs` runs two projectors on one view at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annals_projectors::host::tantivy::TantivyHosting;
use annals_projectors::host::writer_busy;
use annals_projectors::invalidation::queue::Invalidations;
use annals_projectors::invalidation::{FlushReason, Invalidation, InvalidationSink, Scope};
use annals_projectors::{AuditProjection, MessagesProjection, OpenView, Projection, ProjectorConfig, ViewHosting};
use annals_store::{EventStore, Position};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::invalidations::{shared_sinks, Wiring};
use super::lease::Leases;
use super::views::ProjectorHost;
use crate::settings::Settings;
use crate::Error;

/// Which views this process holds the lease of now (for `/metrics`).
#[derive(Clone, Debug, Default)]
pub struct Holding {
    pub views: Vec<(&'static str, Arc<AtomicBool>)>,
    /// The queues to the shared sinks (Redis): where an overflow shows.
    pub queues: Vec<Arc<annals_projectors::invalidation::queue::SinkQueue>>,
}

/// Starts a keeper per view; the host stops them (each commits its batch and lets its lease go).
pub fn start(
    settings: &Settings,
    store: Arc<dyn EventStore>,
    leases: Leases,
) -> Result<(ProjectorHost, Holding), Error> {
    start_with_sinks(settings, store, leases, shared_sinks(settings)?)
}

/// [`start`] with the invalidation sinks given (the shared ones, or a test's).
pub fn start_with_sinks(
    settings: &Settings,
    store: Arc<dyn EventStore>,
    leases: Leases,
    sinks: Vec<Arc<dyn InvalidationSink>>,
) -> Result<(ProjectorHost, Holding), Error> {
    annals_projectors::background::set_priority(settings.projectors.priority);
    let dir = settings.views_dir();
    let views = |e: annals_projectors::ViewError| Error::Api(annals_query_api::Error::Views(e.to_string()));
    let messages: Arc<dyn ViewHosting> = Arc::new(
        TantivyHosting::open(&dir.join(MessagesProjection::NAME), MessagesProjection.schema()).map_err(views)?,
    );
    let audit: Arc<dyn ViewHosting> =
        Arc::new(TantivyHosting::open(&dir.join(AuditProjection::NAME), AuditProjection.schema()).map_err(views)?);
    let stop = CancellationToken::new();
    let config = settings.projectors.config();
    let mut holding = Holding::default();
    // The shared sinks (none until a backend such as Redis is configured), fed by whichever
    // process holds each view's lease.
    let wiring = Wiring::sinks_only(settings, sinks);
    let invalidations = wiring.out();
    holding.queues = wiring.deps(Vec::new()).queues;
    let hostings = [Arc::clone(&messages), Arc::clone(&audit)];
    let mut tasks = wiring.dispatch(Box::pin(checkpoints(hostings)), &stop);
    let mut keep = |hosting: Arc<dyn ViewHosting>, task: fn(Keeper) -> JoinHandle<()>| {
        let held = Arc::new(AtomicBool::new(false));
        holding.views.push((hosting.name(), Arc::clone(&held)));
        tasks.push(task(Keeper {
            hosting,
            store: Arc::clone(&store),
            config: config.clone(),
            leases: leases.clone(),
            shutdown: stop.clone(),
            held,
            invalidations: invalidations.clone(),
        }));
    };
    keep(messages, |k| tokio::spawn(k.run(MessagesProjection)));
    keep(audit, |k| tokio::spawn(k.run(AuditProjection)));
    Ok((ProjectorHost::new(stop, tasks), holding))
}

impl Keeper {
    /// What the previous holder had queued for the sinks died with it: the view is flushed for
    /// every tenant at its checkpoint before this holder's projector hands anything out
    /// (guarantee 4 of `annals_projectors::invalidation`; a duplicate flush is harmless).
    async fn flush_on_takeover<P: Projection + Clone>(&self, opened: &OpenView<P>) {
        if !self.invalidations.is_active() {
            return;
        }
        match opened.checkpoint().await {
            Ok(Some(checkpoint)) => self.invalidations.hand(
                Invalidation {
                    tenant: None,
                    view: self.hosting.name().to_owned(),
                    position: checkpoint.position,
                    scope: Scope::WholeView { reason: FlushReason::Resumed },
                },
                None,
            ),
            Ok(None) => {}
            Err(e) => {
                warn!(projection = self.hosting.name(), error = %e, "cannot read the view's checkpoint to flush its sinks")
            }
        }
    }
}

/// The serving generations' checkpoints, as a sink's dispatcher compares them at start (a view
/// that cannot be read counts as having none: the sink is then not flushed for it).
async fn checkpoints(hostings: [Arc<dyn ViewHosting>; 2]) -> Vec<(String, Option<Position>)> {
    let mut found = Vec::new();
    for hosting in hostings {
        let checkpoint = async {
            let reader = hosting.open_reader(hosting.current().await?).await?;
            reader.checkpoint().await
        };
        match checkpoint.await {
            Ok(c) => found.push((hosting.name().to_owned(), c.map(|c| c.position))),
            Err(e) => {
                warn!(projection = hosting.name(), error = %e, "cannot read the view's checkpoint for its invalidation sinks")
            }
        }
    }
    found
}

/// The lease's name for a view: one lock per view name, whatever its generation.
pub fn lease_name(view: &str) -> String {
    format!("annals/view/{view}")
}

/// How long a keeper waits after a failed step (lease, writer) before the next try.
const RETRY: Duration = Duration::from_millis(200);

struct Keeper {
    hosting: Arc<dyn ViewHosting>,
    store: Arc<dyn EventStore>,
    config: ProjectorConfig,
    leases: Leases,
    shutdown: CancellationToken,
    held: Arc<AtomicBool>,
    invalidations: Invalidations,
}

impl Keeper {
    async fn run<P: Projection + Clone>(self, projection: P) {
        let name = self.hosting.name();
        let lease_name = lease_name(name);
        loop {
            let lease = tokio::select! {
                lease = self.leases.acquire(&lease_name) => lease,
                _ = self.shutdown.cancelled() => return,
            };
            let lease = match lease {
                Ok(lease) => lease,
                Err(e) => {
                    warn!(projection = name, error = %e, "cannot take the view's lease; retrying");
                    if self.pause().await {
                        return;
                    }
                    continue;
                }
            };
            info!(projection = name, "lease taken: this process projects the view");
            let lost = lease.lost();
            let Some(opened) = self.open_writer(&projection, &lost).await else {
                if self.shutdown.is_cancelled() {
                    return;
                }
                continue;
            };
            let stop = CancellationToken::new();
            self.flush_on_takeover(&opened).await;
            let opened = opened.invalidations(self.invalidations.clone());
            let (view, task) = opened.start(Arc::clone(&self.store), self.config.clone(), stop.clone());
            self.held.store(true, Ordering::Relaxed);
            tokio::select! {
                _ = lost.cancelled() => {
                    // Nothing more is applied: the host and its projectors are aborted, not
                    // asked to commit the batch in hand.
                    warn!(projection = name, "lease lost: the view's projector is stopped at once");
                    task.abort();
                    let _ = task.await;
                    self.held.store(false, Ordering::Relaxed);
                    drop(view);
                    drop(lease);
                    if self.pause().await {
                        return;
                    }
                }
                _ = self.shutdown.cancelled() => {
                    stop.cancel();
                    let _ = task.await;
                    self.held.store(false, Ordering::Relaxed);
                    drop(view);
                    lease.release().await;
                    return;
                }
            }
        }
    }

    /// Opens the view's serving generation to write, retrying while another holder still has
    /// its writer (a projector that lost the lease lets go as its last commit ends; a dead one
    /// at once). `None` when the lease is lost or the process stops meanwhile.
    async fn open_writer<P: Projection + Clone>(
        &self,
        projection: &P,
        lost: &CancellationToken,
    ) -> Option<OpenView<P>> {
        let name = self.hosting.name();
        loop {
            if lost.is_cancelled() || self.shutdown.is_cancelled() {
                return None;
            }
            match OpenView::open(Arc::clone(&self.hosting), projection.clone()).await {
                Ok(opened) => return Some(opened),
                Err(e) if writer_busy(&e) => info!(projection = name, "the view's writer is still held; waiting"),
                Err(e) => warn!(projection = name, error = %e, "cannot open the view; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                _ = lost.cancelled() => return None,
                _ = self.shutdown.cancelled() => return None,
            }
        }
    }

    /// Waits a little before the next try; `true` if the process stops meanwhile.
    async fn pause(&self) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => false,
            _ = self.shutdown.cancelled() => true,
        }
    }
}
