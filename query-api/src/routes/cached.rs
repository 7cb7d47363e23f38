//! Answering a cacheable route through the response cache (`crate::cache`): a fresh entry is
//! served as stored; otherwise the view's checkpoint is read *before* the answer (the entry's
//! version, see the cache's module doc), the route computes its answer as it would uncached, and
//! the cache keeps it unless an invalidation newer than that checkpoint came meanwhile.

use std::future::Future;

use axum::response::Response;

use crate::cache::CacheKey;
use crate::error::ApiError;
use crate::state::AppState;

/// The answer for `key` (`None`: this request is not cacheable, e.g. `min_position` or
/// `as_of`), computed by `compute` on a miss.
pub(super) async fn answer<F, Fut>(
    state: &AppState,
    view: &annals_projectors::HostedView,
    key: Option<CacheKey>,
    compute: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Response, ApiError>>,
{
    let Some(key) = key.filter(|_| state.cache.is_on()) else { return compute().await };
    if let Some(hit) = state.cache.lookup(&key).await {
        return Ok(hit);
    }
    let version = view.checkpoint().await?.map(|c| c.position);
    let response = compute().await?;
    Ok(state.cache.fill(key, version, response).await)
}
