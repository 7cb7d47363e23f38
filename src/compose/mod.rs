//! The composition root: the one place that knows which backends exist. `Server::build` checks
//! the settings, opens the event store (`store.rs`) and the views (`views.rs`) that they name,
//! starts what the process's role runs, and injects the backends into
//! `annals_query_api::Application::build`, which knows them only by their contracts. Stopping is
//! the reverse: the HTTP server finishes its requests, the projectors commit their batch, the
//! store closes with every acknowledged append on disk.
//!
//! Roles: `all` runs HTTP, appends, the key ring, the views and their projectors in one process.
//! `api` is `Application::build` over a shared store and view *readers* that follow the
//! projector processes' switches of generation (`views::follow`), no projector and no writer
//! lock. `projector` runs the projections alone, one owner per view through a lease
//! (`projector.rs`, `lease.rs`), with `/healthz` and `/metrics` only (`health.rs`). Both need a
//! store several processes share (`Settings::check` refuses them on the embedded one).

mod health;
pub mod invalidations;
mod lease;
mod projector;
pub mod redis;
mod store;
mod views;

use std::net::SocketAddr;

use annals_query_api::{Application, Deps, InvalidationDeps};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use invalidations::{shared_feed, shared_probes, shared_sinks, Wiring};
pub use lease::{Boxed, Held, Lease, LeaseSource, Leases};
pub use projector::{
    lease_name, start as start_projectors_under_leases, start_with_sinks as start_projectors_with_sinks, Holding,
};
pub use store::OpenStore;
pub use views::{es_config, ProjectorHost};

use crate::settings::{Role, Settings};
use crate::Error;

/// A built, not yet serving, `annals serve`.
#[derive(Debug)]
pub struct Server {
    front: Front,
    projectors: ProjectorHost,
    store: OpenStore,
}

impl Server {
    /// Checks `settings`, opens the backends they name and builds what the role runs (binding
    /// the listener). Whatever was opened is closed again if a later step fails, so a failed
    /// start leaves the data directory free.
    pub async fn build(settings: Settings) -> Result<Server, Error> {
        settings.check()?;
        let store = store::open(&settings.store).await?;
        match settings.role {
            Role::All => Self::all(settings, store).await,
            Role::Api => Self::api(settings, store).await,
            Role::Projector => Self::projector(settings, store).await,
        }
    }

    /// The API over view readers: no projector, no view writer.
    async fn api(settings: Settings, store: OpenStore) -> Result<Server, Error> {
        let (views, followers) = match views::follow(&settings, &store.events()).await {
            Ok(followed) => followed,
            Err(e) => {
                close_after_failure(store).await;
                return Err(e);
            }
        };
        // Without a shared feed the response cache is off and `/v1/invalidations` is a 503.
        let shared =
            invalidations::shared_feed(&settings).and_then(|f| Ok((f, invalidations::shared_probes(&settings)?)));
        let (feed, probes) = match shared {
            Ok(shared) => shared,
            Err(e) => {
                followers.stop().await;
                close_after_failure(store).await;
                return Err(e);
            }
        };
        let invalidations = InvalidationDeps { feed, queues: Vec::new(), probes };
        match Application::build(settings.api(), Deps { store: store.events(), views, invalidations }).await {
            Ok(app) => Ok(Server { front: Front::Api(app), projectors: followers, store }),
            Err(e) => {
                followers.stop().await;
                close_after_failure(store).await;
                Err(e.into())
            }
        }
    }

    /// The projections under leases, and `/healthz` + `/metrics`.
    async fn projector(settings: Settings, store: OpenStore) -> Result<Server, Error> {
        let Some(leases) = store.leases() else {
            close_after_failure(store).await;
            return Err(Error::NotBuilt {
                setting: "role (ANNALS_ROLE, --role)",
                value: "projector",
                reason:
                    "this store has no leases to share views among projector processes: use [store] kind = \"postgres\"",
            });
        };
        let health = match health::HealthServer::bind(settings.http.listen, Default::default()).await {
            Ok(h) => h,
            Err(e) => {
                close_after_failure(store).await;
                return Err(e);
            }
        };
        match projector::start(&settings, store.events(), leases) {
            Ok((projectors, holding)) => {
                let health = health.holding(holding);
                Ok(Server { front: Front::Health(health), projectors, store })
            }
            Err(e) => {
                close_after_failure(store).await;
                Err(e)
            }
        }
    }

    /// Everything in one process: the views and their projectors, and the API over them.
    async fn all(settings: Settings, store: OpenStore) -> Result<Server, Error> {
        let opened = match views::open(&settings).await {
            Ok(opened) => opened,
            Err(e) => {
                close_after_failure(store).await;
                return Err(e);
            }
        };
        let shared =
            invalidations::shared_sinks(&settings).and_then(|s| Ok((s, invalidations::shared_probes(&settings)?)));
        let (shared, probes) = match shared {
            Ok(shared) => shared,
            Err(e) => {
                close_after_failure(store).await;
                return Err(e);
            }
        };
        let wiring = Wiring::in_process(&settings, shared);
        let started = views::start_projectors(opened, &store.events(), &settings.projectors, &wiring).await;
        let (views, projectors) = match started {
            Ok(started) => started,
            Err(e) => {
                close_after_failure(store).await;
                return Err(e);
            }
        };
        let invalidations = wiring.deps(probes);
        match Application::build(settings.api(), Deps { store: store.events(), views, invalidations }).await {
            Ok(app) => Ok(Server { front: Front::Api(app), projectors, store }),
            Err(e) => {
                projectors.stop().await;
                close_after_failure(store).await;
                Err(e.into())
            }
        }
    }

    /// The operator key made at the first start of a store, to be shown once (see
    /// `Application::bootstrap_key`).
    pub fn bootstrap_key(&self) -> Option<&str> {
        match &self.front {
            Front::Api(app) => app.bootstrap_key(),
            Front::Health(_) => None,
        }
    }

    /// The address it listens on (the real port when the settings said 0).
    pub fn local_addr(&self) -> SocketAddr {
        match &self.front {
            Front::Api(app) => app.local_addr(),
            Front::Health(health) => health.local_addr(),
        }
    }

    /// Stops a server that never served: its projectors commit and stop, the store closes (the
    /// data directory is free again when this returns). Dropping a `Server` instead only asks
    /// its projectors to stop, and the store is released when they have.
    pub async fn close(self) -> Result<(), Error> {
        drop(self.front);
        self.projectors.stop().await;
        self.store.close().await
    }

    /// Serves until `shutdown` is cancelled, then lets requests in flight finish, the
    /// projectors commit the batch in hand, and closes the store.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), Error> {
        let served = match self.front {
            Front::Api(app) => app.run_until_stopped(shutdown).await.map_err(Error::from),
            Front::Health(health) => health.run_until_stopped(shutdown).await,
        };
        info!("waiting for the projectors to commit");
        self.projectors.stop().await;
        info!("closing the store");
        self.store.close().await?;
        served
    }
}

/// What a process answers HTTP with.
#[derive(Debug)]
enum Front {
    /// The API (roles `all` and `api`).
    Api(Application),
    /// `/healthz` and `/metrics` (role `projector`).
    Health(health::HealthServer),
}

/// Closes a store opened by a start that failed afterwards; the start's own error is the one
/// to report, so a failure to close is logged.
async fn close_after_failure(store: OpenStore) {
    if let Err(e) = store.close().await {
        warn!(error = %e, "cannot close the store after a failed start");
    }
}
