//! Partitioned workers: a projection with `parallelism` N folds each batch in N jobs at once,
//! each worker owning the streams whose name hashes to it (a stream consumer's parallelization
//! factor), with its own document cache.
//!
//! # Why this keeps the projector contract
//! - **Per-stream order**: all events of a stream go to one worker, in the order of the batch
//!   (log order), and a worker folds its share in that order. Documents never span streams (the
//!   [`Projection`] contract), so a document is only ever folded by one worker.
//! - **Checkpoints**: the workers' outputs are committed together, in one atomic
//!   `ViewStore::commit` with the batch's last position as checkpoint. The checkpoint therefore
//!   passes a position only when every worker's effects up to it are durable; no worker's output
//!   is committed without the others'.
//! - **The pipelined commit** needs the documents of the batch in flight to stay cached while the
//!   next batch folds (`runtime.rs`). A worker's share of a batch can be the whole batch (one hot
//!   stream), so every worker's cache keeps the full capacity the runtime asks for, not a share:
//!   memory for cached documents grows with `parallelism`.

use std::sync::Arc;

use annals_store::{RecordedEvent, StreamId};

use crate::batch::{prepare, DocCache, Order, Prepared};
use crate::projection::Projection;
use crate::view_store::ViewStore;

/// The workers of one subscription (after a failure the runtime starts over with new ones, so
/// nothing uncommitted is served from a cache).
pub(crate) struct Workers<D> {
    /// `None` while lent to a job, and for good if the job failed.
    parts: Vec<Option<Part<D>>>,
}

struct Part<D> {
    cache: DocCache<D>,
    /// This worker's share of the batch; the buffer is reused from batch to batch.
    events: Vec<RecordedEvent>,
}

impl<D: Send + 'static> Workers<D> {
    pub(crate) fn new(parallelism: usize, cache_docs: usize) -> Self {
        let parts = (0..parallelism.max(1))
            .map(|_| Some(Part { cache: DocCache::new(cache_docs), events: Vec::new() }))
            .collect();
        Workers { parts }
    }

    /// Folds `events` (drained; the caller keeps the buffer) into the documents they change:
    /// each worker's share in a job of its own, all at once. Upserts come sorted by document,
    /// parked events in log order.
    pub(crate) async fn fold<P: Projection<Doc = D>>(
        &mut self,
        projection: &Arc<P>,
        view: &Arc<dyn ViewStore>,
        events: &mut Vec<RecordedEvent>,
        order: Order,
    ) -> Result<Prepared, String> {
        let count = self.parts.len();
        for event in events.drain(..) {
            let part = partition(&event.stream, count);
            self.part(part)?.events.push(event);
        }
        let mut jobs = Vec::with_capacity(count);
        for slot in &mut self.parts {
            let mut part = slot.take().ok_or("a worker's cache was lost")?;
            let (projection, view) = (Arc::clone(projection), Arc::clone(view));
            jobs.push(tokio::spawn(crate::background::run(move || {
                let prepared = prepare(projection.as_ref(), view.as_ref(), &mut part.cache, &part.events, order);
                part.events.clear();
                (prepared, part)
            })));
        }
        let mut all = Prepared { upserts: Vec::new(), parked: Vec::new() };
        let mut failure = None;
        for (slot, job) in self.parts.iter_mut().zip(jobs) {
            match job.await {
                Ok(Some((Ok(prepared), part))) => {
                    *slot = Some(part);
                    all.upserts.extend(prepared.upserts);
                    all.parked.extend(prepared.parked);
                }
                Ok(Some((Err(e), _))) => failure = Some(e.to_string()),
                Ok(None) | Err(_) => failure = Some("a fold job panicked".to_owned()),
            }
        }
        if let Some(failure) = failure {
            return Err(failure);
        }
        if count > 1 {
            all.upserts.sort_unstable_by(|a, b| (&a.tenant, &a.id).cmp(&(&b.tenant, &b.id)));
            all.parked.sort_unstable_by_key(|(event, _)| event.position);
        }
        Ok(all)
    }

    fn part(&mut self, index: usize) -> Result<&mut Part<D>, String> {
        self.parts[index].as_mut().ok_or_else(|| "a worker's cache was lost".to_owned())
    }
}

/// The worker of `stream` among `count`, by a hash of the name that is stable across processes
/// and builds (a restart routes a stream to the same worker for cache warmth, not correctness).
pub(crate) fn partition(stream: &StreamId, count: usize) -> usize {
    (crate::stable_hash(stream.as_str()) % count.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_always_goes_to_the_same_worker_and_streams_spread() {
        let streams: Vec<StreamId> = (0..1_000).map(|i| StreamId::new(format!("acme/message-{i}")).unwrap()).collect();
        let mut counts = [0usize; 4];
        for s in &streams {
            let p = partition(s, 4);
            assert_eq!(p, partition(s, 4));
            counts[p] += 1;
        }
        assert!(counts.iter().all(|&c| c > 150), "uneven spread: {counts:?}");
        assert!(streams.iter().all(|s| partition(s, 1) == 0));
    }
}
