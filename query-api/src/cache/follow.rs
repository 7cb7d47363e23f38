//! The cache's followers: one task per view follows the injected `InvalidationFeed` and applies
//! what it receives (`ResponseCache::apply`). While a view's feed is not connected the cache
//! neither serves nor fills it; after a failure it resumes after the last position it applied,
//! and the feed answers a resume point it no longer holds with a flush (guarantee 4).

use std::sync::Arc;
use std::time::Duration;

use annals_projectors::invalidation::InvalidationFeed;
use annals_store::Position;
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{ResponseCache, VIEWS};

/// Starts a follower per cached view; they end when `shutdown` fires.
pub fn start(
    cache: Arc<ResponseCache>,
    feed: Arc<dyn InvalidationFeed>,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    VIEWS
        .iter()
        .map(|view| {
            let (cache, feed, shutdown) = (Arc::clone(&cache), Arc::clone(&feed), shutdown.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = run(&cache, feed.as_ref(), view) => {}
                    _ = shutdown.cancelled() => {}
                }
                cache.set_connected(view, false);
            })
        })
        .collect()
}

async fn run(cache: &ResponseCache, feed: &dyn InvalidationFeed, view: &'static str) {
    let mut last: Option<Position> = None;
    let mut failures = 0u32;
    let mut was_connected = false;
    loop {
        match feed.follow(view, last).await {
            Ok(mut stream) => {
                if was_connected && last.is_none() {
                    // Nothing was received to resume after: what came meanwhile is unknown.
                    cache.clear();
                }
                cache.set_connected(view, true);
                was_connected = true;
                info!(view, after = ?last, "response cache follows the invalidation feed");
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(invalidation) => {
                            failures = 0;
                            cache.apply(view, &invalidation);
                            last = last.max(Some(invalidation.position));
                        }
                        Err(e) => {
                            warn!(view, error = %e, "invalidation feed failed; the cache stops serving the view until it resumes");
                            break;
                        }
                    }
                }
                cache.set_connected(view, false);
            }
            Err(e) => warn!(view, error = %e, "cannot follow the invalidation feed; the cache does not serve the view"),
        }
        failures += 1;
        let delay = Duration::from_millis(50u64.saturating_mul(1 << failures.min(7)).min(5_000));
        tokio::time::sleep(delay).await;
    }
}
