//! The application as a value: `Application::build(settings, deps)` takes the store and views
//! that the composition root (`annals serve`, `src/compose/`) opened, binds the listener (port 0
//! picks a free one, which is how tests run many servers side by side), and `run_until_stopped`
//! serves (`server.rs`) until the cancellation token fires, then lets requests in flight finish.
//! Closing the store and stopping the projectors is the composition root's part: it made them.

use std::net::SocketAddr;
use std::sync::Arc;

use annals_store::EventStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::{KeyRing, Tenant};
use crate::cache::{InvalidationDeps, ResponseCache};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::routes;
use crate::settings::ApiSettings;
use crate::state::{AppState, Shared};
use crate::views::Views;
use annals_schemas::Registry;

/// What `annals serve` builds and hands to the API: the backends, already open. The API knows
/// them only by their contracts; which backend each is, and who keeps the views (a projector host
/// in this process, or another process), is the composition root's business (`src/compose/`).
pub struct Deps {
    /// The event store: appends, reads, subscriptions, the key ring's stream.
    pub store: Arc<dyn EventStore>,
    /// The read views the query routes serve.
    pub views: Views,
    /// The invalidations this process follows and hands out (issue 15).
    pub invalidations: InvalidationDeps,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps").field("views", &self.views).finish_non_exhaustive()
    }
}

/// A built, not yet serving, application.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    store: Arc<dyn EventStore>,
    settings: Arc<ApiSettings>,
    keys: Arc<KeyRing>,
    views: Views,
    invalidations: InvalidationDeps,
    bootstrap_key: Option<String>,
}

/// The tenant of the operator key made on first start (a label: operator keys read no tenant).
pub const BOOTSTRAP_TENANT: &str = "default";

impl Application {
    /// Binds `settings.listen` over the store and views of `deps`, then loads the API keys
    /// (making an operator key if there is none active: `settings.admin_key`, or a new one, see
    /// `bootstrap_key`).
    pub async fn build(settings: ApiSettings, deps: Deps) -> Result<Application, Error> {
        if let Some(key) = &settings.admin_key {
            if !crate::auth::is_well_formed(key) {
                return Err(Error::AdminKey(format!(
                    "a key must look like annals_<16 hex digits>_<64 hex digits>, for example {}",
                    crate::auth::generate_token()
                )));
            }
        }
        let Deps { store, views, invalidations } = deps;
        let listener =
            TcpListener::bind(settings.listen).await.map_err(|source| Error::Bind { addr: settings.listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind { addr: settings.listen, source })?;
        // Last, once nothing else can fail: a first admin key stored before a failed start (a
        // port in use, say) would never be shown, and the next start, finding a key, would make
        // none — a store nobody could administer.
        let keys = KeyRing::load(&*store).await?;
        let mut bootstrap_key = None;
        // An operator key when the store has none active: at its first start, and once on a store
        // of an earlier version whose operator key was revoked (`KeyRing::ensure_operator`).
        let had_keys = !keys.is_empty();
        let tenant = Tenant::new(BOOTSTRAP_TENANT).expect("a valid tenant");
        let given = settings.admin_key.as_deref();
        let made = keys
            .ensure_operator(&*store, tenant, given)
            .await
            .map_err(|e| Error::AdminKey(format!("cannot store the first operator key: {e}")))?;
        match made {
            Some(key) => {
                info!(key_id = %key.info.id, had_keys, "created an operator key");
                if given.is_none() {
                    bootstrap_key = Some(key.key);
                }
            }
            None if given.is_some() => {
                warn!("ANNALS_ADMIN_KEY is ignored: the store has an operator key already; manage keys with /v1/keys");
            }
            None => {}
        }
        Ok(Application {
            listener,
            addr,
            store,
            settings: Arc::new(settings),
            keys,
            views,
            invalidations,
            bootstrap_key,
        })
    }

    /// The operator key generated on the first start of a store (no active operator key, no
    /// `ANNALS_ADMIN_KEY`): to be shown to the operator once. Only its hash is kept.
    pub fn bootstrap_key(&self) -> Option<&str> {
        self.bootstrap_key.as_deref()
    }

    /// The address it listens on (the real port when the settings said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` is cancelled; then finishes the requests in flight. The store and
    /// the views stay open: whoever built them (`annals serve`) closes them once this returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), Error> {
        let store = self.store;
        let views = self.views;
        self.keys.follow(Arc::clone(&store), shutdown.clone());
        let integrity =
            crate::integrity::Integrity::open(&self.settings.data_dir).map_err(|e| Error::Integrity(e.to_string()))?;
        let integrity_task = crate::integrity::follow(Arc::clone(&integrity), Arc::clone(&store), shutdown.clone());
        let metrics = Metrics::new();
        // Off without a feed: a cache that cannot be invalidated must never serve.
        let cache = match &self.invalidations.feed {
            Some(feed) if self.settings.cache.max_bytes > 0 => {
                let cache = Arc::new(ResponseCache::new(self.settings.cache, Arc::clone(&metrics)));
                crate::cache::follow::start(Arc::clone(&cache), Arc::clone(feed), shutdown.clone());
                cache
            }
            _ => Arc::new(ResponseCache::off()),
        };
        let state = AppState(Arc::new(Shared {
            store,
            settings: Arc::clone(&self.settings),
            keys: Arc::clone(&self.keys),
            metrics,
            cache,
            invalidations: self.invalidations,
            schemas: Arc::new(Registry::new()),
            openapi: Arc::default(),
            shutdown: shutdown.clone(),
            views,
            catchup_tails: Arc::new(tokio::sync::Semaphore::new(self.settings.max_catchup_tails)),
            integrity,
        }));
        let router = routes::router(state);
        info!(addr = %self.addr, data_dir = %self.settings.data_dir.display(), "serving");
        let limits = crate::server::Limits {
            header_timeout: self.settings.header_timeout,
            idle_timeout: self.settings.idle_timeout,
            max_connections: self.settings.max_connections,
            shutdown_grace: self.settings.shutdown_grace,
        };
        // Returns after the shutdown signal, once requests in flight are done or the grace is
        // over (those still running then are cut off: the store closes cleanly rather than
        // being killed).
        crate::server::serve(self.listener, router, limits, shutdown.clone()).await;
        if let Err(e) = integrity_task.await {
            warn!(error = %e, "the integrity task failed");
        }
        info!("stopped serving");
        Ok(())
    }
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("addr", &self.addr)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
