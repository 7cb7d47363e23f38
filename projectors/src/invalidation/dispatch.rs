//! One dispatcher task per sink: drains the sink's [`SinkQueue`] in order and calls
//! [`InvalidationSink::deliver`], retrying transient failures with jittered backoff (the
//! projection never waits on it: the queue in front collapses instead, `queue.rs`). A permanent
//! failure (a sink refusing its configuration) is logged and the batch dropped after a
//! whole-view invalidation is tried in its place, so a consumer sees a flush, not a gap.
//!
//! At start it compares the sink's checkpoint with each view's: a sink behind the view (a
//! restart lost what was queued, or the sink is new) first gets one [`FlushReason::Resumed`]
//! whole-view invalidation of every tenant at the view's checkpoint (guarantee 4).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use annals_store::Position;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::queue::SinkQueue;
use super::{FlushReason, Invalidation, InvalidationError, InvalidationSink, Scope};
use crate::backoff::Backoff;

/// Invalidations delivered in one call at most.
const BATCH: usize = 256;

/// Starts the dispatcher of `sink`, fed by `queue`. `views` gives the views whose invalidations
/// it carries, with their committed checkpoints at start (read before their projectors start,
/// so the `Resumed` flush comes before anything queued). It stops when `shutdown` fires (what is
/// still queued then is lost with the process: the next start's checkpoint comparison flushes
/// it).
pub fn start(
    sink: Arc<dyn InvalidationSink>,
    queue: Arc<SinkQueue>,
    views: impl Future<Output = Vec<(String, Option<Position>)>> + Send + 'static,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            _ = async { run(sink, queue, views.await, &shutdown).await } => {}
            _ = shutdown.cancelled() => {}
        }
    })
}

async fn run(
    sink: Arc<dyn InvalidationSink>,
    queue: Arc<SinkQueue>,
    views: Vec<(String, Option<Position>)>,
    shutdown: &CancellationToken,
) {
    for (view, checkpoint) in views {
        let Some(at) = checkpoint else { continue };
        let behind = match with_retry(&queue, shutdown, || sink.checkpoint(&view)).await {
            Some(Ok(delivered)) => delivered.is_none_or(|d| d < at),
            Some(Err(e)) => {
                error!(sink = queue.sink(), view, error = %e, "cannot read the sink's checkpoint; flushing the view");
                true
            }
            None => return,
        };
        if behind {
            info!(sink = queue.sink(), view, position = %at, "sink behind the view; flushing it");
            let flush = [whole_view(&view, None, at, FlushReason::Resumed)];
            deliver(sink.as_ref(), &queue, &flush, shutdown).await;
        }
    }
    loop {
        let batch = queue.take(BATCH).await;
        if let Some(at) = batch.iter().filter_map(|q| q.not_before).max() {
            tokio::time::sleep_until(at).await;
        }
        let batch: Vec<Invalidation> = batch.into_iter().map(|q| q.invalidation).collect();
        deliver(sink.as_ref(), &queue, &batch, shutdown).await;
    }
}

fn whole_view(view: &str, tenant: Option<String>, position: Position, reason: FlushReason) -> Invalidation {
    Invalidation { tenant, view: view.to_owned(), position, scope: Scope::WholeView { reason } }
}

/// Delivers `batch` until it lands (transient failures) or is refused (then a flush per view
/// in its place, once).
async fn deliver(sink: &dyn InvalidationSink, queue: &SinkQueue, batch: &[Invalidation], shutdown: &CancellationToken) {
    match with_retry(queue, shutdown, || sink.deliver(batch)).await {
        Some(Ok(())) => {
            queue.stats.delivered.fetch_add(batch.len() as u64, Ordering::Relaxed);
            debug!(sink = queue.sink(), count = batch.len(), "invalidations delivered");
        }
        Some(Err(e)) => {
            error!(sink = queue.sink(), error = %e, count = batch.len(), "sink refused invalidations; flushing their views instead");
            let mut flushes: Vec<Invalidation> = Vec::new();
            for i in batch {
                match flushes.iter_mut().find(|f| f.view == i.view) {
                    Some(f) => f.position = f.position.max(i.position),
                    None => flushes.push(whole_view(&i.view, None, i.position, FlushReason::Overflow)),
                }
            }
            if let Some(Err(e)) = with_retry(queue, shutdown, || sink.deliver(&flushes)).await {
                error!(sink = queue.sink(), error = %e, "sink refused the flush too");
            }
        }
        None => {}
    }
}

/// Calls `call` until it succeeds or fails permanently; `None` once shutdown is asked for.
async fn with_retry<T, F, Fut>(
    queue: &SinkQueue,
    shutdown: &CancellationToken,
    mut call: F,
) -> Option<Result<T, InvalidationError>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, InvalidationError>>,
{
    let mut backoff = Backoff::default();
    loop {
        match call().await {
            Ok(value) => return Some(Ok(value)),
            Err(e) if e.is_transient() => {
                queue.stats.retries.fetch_add(1, Ordering::Relaxed);
                let delay = backoff.next_delay();
                warn!(sink = queue.sink(), error = %e, delay_ms = delay.as_millis() as u64, "invalidation sink failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return None,
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
}
