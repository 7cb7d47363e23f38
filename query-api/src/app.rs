//! The application as a value: `Application::build(settings)` opens the store and binds the
//! listener (port 0 picks a free one, which is how tests run many servers side by side), and
//! `run_until_stopped` serves until the cancellation token fires, then lets requests in flight
//! finish and closes the store so that every acknowledged append is on disk and the data
//! directory is released.

use std::net::SocketAddr;
use std::sync::Arc;

use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::EventStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::error::Error;
use crate::routes;
use crate::settings::Settings;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub settings: Arc<Settings>,
    /// Cancelled when the server stops: long-lived responses (live tails) end on it.
    pub shutdown: CancellationToken,
}

/// A built, not yet serving, application.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    store: EmbeddedStore,
    settings: Arc<Settings>,
}

impl Application {
    /// Opens the embedded store in `settings.data_dir` and binds `settings.listen`.
    pub async fn build(settings: Settings) -> Result<Application, Error> {
        let store = EmbeddedStore::open(EngineConfig::new(&settings.data_dir)).await?;
        let listener =
            TcpListener::bind(settings.listen).await.map_err(|source| Error::Bind { addr: settings.listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind { addr: settings.listen, source })?;
        Ok(Application { listener, addr, store, settings: Arc::new(settings) })
    }

    /// The address it listens on (the real port when the settings said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` is cancelled; then finishes the requests in flight and closes the
    /// store.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), Error> {
        let state = AppState {
            store: Arc::new(self.store.clone()),
            settings: Arc::clone(&self.settings),
            shutdown: shutdown.clone(),
        };
        let router = routes::router(state);
        info!(addr = %self.addr, data_dir = %self.settings.data_dir.display(), "serving");
        axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(Error::Serve)?;
        info!("stopped serving; closing the store");
        self.store.close().await?;
        Ok(())
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("settings", &self.settings).finish_non_exhaustive()
    }
}
