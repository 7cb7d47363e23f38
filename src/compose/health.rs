//! The one HTTP listener of a `projector` process: `GET /healthz` (the process runs) and
//! `GET /metrics` (which views this process holds the lease of, in Prometheus text), so a
//! supervisor and a scraper see it like an API process. Nothing else: the API lives in `api`
//! processes, and a projector takes no requests.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    ([("content-type", "text/plain; version=0.0.4")], text)
}
