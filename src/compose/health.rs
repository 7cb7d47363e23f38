//! The one HTTP listener of a `projector` process: `GET /healthz` (the process runs) and
//! `GET /metrics` (which views this process holds the lease of, and its queues to the shared
//! invalidation sinks, in Prometheus text), so a
//! supervisor and a scraper see it like an API process. Nothing else: the API lives in `api`
//! processes, and a projector takes no requests.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use annals_projectors::invalidation::queue::SinkStats;

use super::projector::Holding;
use crate::Error;

/// A bound listener, not serving yet.
#[derive(Debug)]
pub struct HealthServer {
    listener: TcpListener,
    addr: SocketAddr,
    holding: Holding,
}

impl HealthServer {
    pub async fn bind(listen: SocketAddr, holding: Holding) -> Result<HealthServer, Error> {
        let bind = |source| Error::Api(annals_query_api::Error::Bind { addr: listen, source });
        let listener = TcpListener::bind(listen).await.map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        Ok(HealthServer { listener, addr, holding })
    }

    /// Reports the leases `holding` names.
    pub fn holding(mut self, holding: Holding) -> HealthServer {
        self.holding = holding;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` fires.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), Error> {
        let holding = self.holding;
        let app = Router::new()
            .route("/healthz", get(|| async { ([("content-type", "application/json")], "{\"status\":\"ok\"}") }))
            .route("/metrics", get(move || std::future::ready(metrics(&holding))));
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(|source| Error::Api(annals_query_api::Error::Bind { addr: self.addr, source }))
    }
}

/// A queue figure: its metric name, its help text, and how to read it.
type Figure = (&'static str, &'static str, fn(&SinkStats) -> u64);

fn metrics(holding: &Holding) -> ([(&'static str, &'static str); 1], String) {
    let mut text = String::from(
        "# HELP annals_projector_lease_held Whether this process holds the view's lease (and so projects it).\n\
         # TYPE annals_projector_lease_held gauge\n",
    );
    for (view, held) in &holding.views {
        let _ = writeln!(
            text,
            "annals_projector_lease_held{{projection=\"{view}\"}} {}",
            u8::from(held.load(Ordering::Relaxed))
        );
    }
    // The same figures an API process shows for its queues (`annals_query_api::metrics`), so
    // that an overflow of the Redis sink's queue, which lives here, is seen where it happens.
    let figures: [Figure; 5] = [
        ("annals_invalidation_handed", "Invalidations handed to the sink's queue", |s| {
            s.handed.load(Ordering::Relaxed)
        }),
        (
            "annals_invalidation_overflows",
            "Times the sink's queue was full and collapsed into whole-view invalidations",
            |s| s.overflows.load(Ordering::Relaxed),
        ),
        ("annals_invalidation_collapsed", "Invalidations replaced by whole-view ones when the queue overflowed", |s| {
            s.collapsed.load(Ordering::Relaxed)
        }),
        ("annals_invalidation_delivered", "Invalidations the sink accepted", |s| s.delivered.load(Ordering::Relaxed)),
        ("annals_invalidation_retries", "Deliveries to the sink retried after a failure", |s| {
            s.retries.load(Ordering::Relaxed)
        }),
    ];
    for (name, help, value) in figures {
        let _ = writeln!(text, "# HELP {name} {help}.\n# TYPE {name} gauge");
        for queue in &holding.queues {
            let _ = writeln!(text, "{name}{{sink=\"{}\"}} {}", queue.sink(), value(&queue.stats));
        }
    }
    let _ = writeln!(text, "# HELP annals_invalidation_queued Invalidations waiting for the sink.\n# TYPE annals_invalidation_queued gauge");
    for queue in &holding.queues {
        let _ = writeln!(text, "annals_invalidation_queued{{sink=\"{}\"}} {}", queue.sink(), queue.len());
    }
    ([("content-type", "text/plain; version=0.0.4")], text)
}
