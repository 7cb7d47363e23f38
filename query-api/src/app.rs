//! The application as a value: `Application::build(settings)` opens the store and binds the
//! listener (port 0 picks a free one, which is how tests run many servers side by side), and
//! `run_until_stopped` serves (`server.rs`) until the cancellation token fires, then lets requests
//! in flight finish, lets the projectors commit their batch, and closes the store so that every
//! acknowledged append is on disk and the data directory is released.

use std::net::SocketAddr;
use std::sync::Arc;

use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::EventStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::{KeyRing, Tenant};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::routes;
use crate::settings::Settings;
use crate::views::{OpenViews, Views};
use annals_schemas::Registry;

/// What every handler shares: one `Arc`, since axum clones the state for every request (and
/// each extractor that takes it); cloning the fields one by one cost a dozen atomic increments
/// and a lock (the cancellation token's) per request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The contents of `AppState`.
pub struct Shared {
    pub store: Arc<dyn EventStore>,
    pub settings: Arc<Settings>,
    pub keys: Arc<KeyRing>,
    pub metrics: Arc<Metrics>,
    pub schemas: Arc<Registry>,
    /// The OpenAPI document, rendered once when the router is built.
    pub openapi: Arc<std::sync::OnceLock<String>>,
    /// Cancelled when the server stops: long-lived responses (live tails) end on it.
    pub shutdown: CancellationToken,
    /// The read views (`messages`, `audit`) and their projections' progress.
    pub views: Views,
    /// One permit per live tail reading history (`max_catchup_tails`).
    pub catchup_tails: Arc<tokio::sync::Semaphore>,
    /// The integrity tree over the log, its keys and signed heads (`crate::integrity`).
    pub integrity: Arc<crate::integrity::Integrity>,
}

/// A built, not yet serving, application.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    store: EmbeddedStore,
    settings: Arc<Settings>,
    keys: Arc<KeyRing>,
    views: OpenViews,
    bootstrap_key: Option<String>,
}

/// The tenant of the operator key made on first start (a label: operator keys read no tenant).
pub const BOOTSTRAP_TENANT: &str = "default";

impl Application {
    /// Opens the embedded store in `settings.data_dir` and the views, binds `settings.listen`,
    /// then loads the API keys (making an operator key if there is none active:
    /// `settings.admin_key`, or a new one, see `bootstrap_key`).
    pub async fn build(settings: Settings) -> Result<Application, Error> {
        if let Some(key) = &settings.admin_key {
            if !crate::auth::is_well_formed(key) {
                return Err(Error::AdminKey(format!(
                    "a key must look like annals_<16 hex digits>_<64 hex digits>, for example {}",
                    crate::auth::generate_token()
                )));
            }
        }
        let config = EngineConfig::new(&settings.data_dir).min_free_bytes(settings.min_free_bytes);
        let store = EmbeddedStore::open(config).await?;
        // Before the views open: their threads (and tantivy's) take it when they start.
        annals_projectors::background::set_priority(settings.projector_priority);
        let views = Views::open(&settings.data_dir).await?;
        let listener =
            TcpListener::bind(settings.listen).await.map_err(|source| Error::Bind { addr: settings.listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind { addr: settings.listen, source })?;
        // Last, once nothing else can fail: a first admin key stored before a failed start (a
        // port in use, say) would never be shown, and the next start, finding a key, would make
        // none — a store nobody could administer.
        let keys = KeyRing::load(&store).await?;
        let mut bootstrap_key = None;
        // An operator key when the store has none active: at its first start, and once on a store
        // of an earlier version whose operator key was revoked (`KeyRing::ensure_operator`).
        let had_keys = !keys.is_empty();
        let tenant = Tenant::new(BOOTSTRAP_TENANT).expect("a valid tenant");
        let given = settings.admin_key.as_deref();
        let made = keys
            .ensure_operator(&store, tenant, given)
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
        Ok(Application { listener, addr, store, settings: Arc::new(settings), keys, views, bootstrap_key })
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

    /// Serves until `shutdown` is cancelled; then finishes the requests in flight and closes the
    /// store.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), Error> {
        let store: Arc<dyn EventStore> = Arc::new(self.store.clone());
        self.keys.follow(Arc::clone(&store), shutdown.clone());
        let config = annals_projectors::ProjectorConfig {
            flush_interval: self.settings.projector_flush,
            parallelism: self.settings.projector_parallelism,
            batch_size: self.settings.projector_batch_size,
            ..annals_projectors::ProjectorConfig::default()
        };
        let (views, projectors) = self.views.start(&store, config, &shutdown);
        let integrity =
            crate::integrity::Integrity::open(&self.settings.data_dir).map_err(|e| Error::Integrity(e.to_string()))?;
        let integrity_task = crate::integrity::follow(Arc::clone(&integrity), Arc::clone(&store), shutdown.clone());
        let state = AppState(Arc::new(Shared {
            store,
            settings: Arc::clone(&self.settings),
            keys: Arc::clone(&self.keys),
            metrics: Metrics::new(),
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
        // Projectors commit the batch in hand when the token fires; the store outlives them.
        info!("stopped serving; waiting for the projectors to commit");
        for task in projectors {
            if let Err(e) = task.await {
                warn!(error = %e, "a projector task failed");
            }
        }
        if let Err(e) = integrity_task.await {
            warn!(error = %e, "the integrity task failed");
        }
        info!("closing the store");
        self.store.close().await?;
        Ok(())
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("settings", &self.settings).finish_non_exhaustive()
    }
}
