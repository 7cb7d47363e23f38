//! What every handler shares, `AppState`, in a file of its own: routes, extractors and the edge
//! middleware read it, and `app.rs` (which builds it) is not theirs to import. Before, it lived
//! in `app.rs` next to `Application::build`, and twenty files imported each other through it.

use std::sync::Arc;

use annals_schemas::Registry;
use annals_store::EventStore;
use tokio_util::sync::CancellationToken;

use crate::auth::keys::KeyRing;
use crate::metrics::Metrics;
use crate::settings::ApiSettings;
use crate::views::Views;

/// What every handler shares: one `Arc`, since axum clones the state for every request (and
/// each extractor that takes it); cloning the fields one by one cost a dozen atomic increments
/// and a lock (the cancellation token's) per request.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The contents of `AppState`.
pub struct Shared {
    pub store: Arc<dyn EventStore>,
    pub settings: Arc<ApiSettings>,
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
    /// The response cache (off without an invalidation feed, `cache/`).
    pub cache: Arc<crate::cache::ResponseCache>,
    /// The invalidation feed (`GET /v1/invalidations`) and this process's queues (`/metrics`).
    pub invalidations: crate::cache::InvalidationDeps,
    /// The integrity tree over the log, its keys and signed heads (`crate::integrity`).
    pub integrity: Arc<crate::integrity::Integrity>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("settings", &self.settings).finish_non_exhaustive()
    }
}
