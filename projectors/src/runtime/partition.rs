//! Partitioned workers: a projection with `parallelism` N folds each batch in N jobs at once,
//! each worker owning the streams whose name hashes to it (a stream consumer's parallelization
//! factor), with its own document cache.
//!
//! # Why this keeps the projector contract
//! - **Per-stream order**: all events of a stream go to one worker, in the order of the batch
//!   (log order), and a worker folds its share in that order. Documents never span streams (the
//!   [`Projection`] contract), so a document is only ever folded by one worker.
//! - **Checkpoints**: the workers' outputs are committed together, in one atomic
//!   `ViewWriter::commit` with the batch's last position as checkpoint (or, for a view without
//!   an atomic checkpoint, all workers' documents first and then that checkpoint). The
//!   checkpoint therefore passes a position only when every worker's effects up to it are
//!   durable; no worker's output is committed without the others'.
//! - **The pipelined commit** needs the documents of the batch in flight to stay cached while the
//!   next batch folds (`mod.rs`). A worker's share of a batch can be the whole batch (one hot
//!   stream), so every worker's cache keeps the full capacity the runtime asks for, not a share:
//!   memory for cached documents grows with `parallelism`.

use std::sync::Arc;

use annals_store::{RecordedEvent, StreamId};

use crate::background;
use crate::view_store::ViewWriter;

use super::fold::{apply, gather, DocCache, Gathered, Order, Prepared};
use super::projection::Projection;

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
        view: &Arc<dyn ViewWriter>,
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
            let part = slot.take().ok_or("a worker's cache was lost")?;
            jobs.push(tokio::spawn(fold_part(Arc::clone(projection), Arc::clone(view), part, order)));
        }
        let mut all = Prepared { upserts: Vec::new(), parked: Vec::new(), keys: Vec::new() };
        let mut failure = None;
        for (slot, job) in self.parts.iter_mut().zip(jobs) {
            match job.await {
                Ok(Ok((prepared, part))) => {
                    *slot = Some(part);
                    all.upserts.extend(prepared.upserts);
                    all.parked.extend(prepared.parked);
                    all.keys.extend(prepared.keys);
                }
                Ok(Err(e)) => failure = Some(e),
                Err(_) => failure = Some("a fold job panicked".to_owned()),
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

/// One worker's share: what the cache knows (on a projector thread), the misses from the view
/// (one `get_many`), then the fold (on a projector thread). Without misses — every new message
/// of live traffic — it folds in the first job. A failure loses the worker's cache, and the
/// runtime starts over with new workers.
async fn fold_part<P: Projection>(
    projection: Arc<P>,
    view: Arc<dyn ViewWriter>,
    mut part: Part<P::Doc>,
    order: Order,
) -> Result<(Prepared, Part<P::Doc>), String> {
    let lost = || "a fold job panicked".to_owned();
    let first = Arc::clone(&projection);
    let gathered = background::run(move || {
        let gathered = gather(first.as_ref(), &mut part.cache, &part.events, order);
        if !gathered.misses.is_empty() {
            return FirstJob::Lookup(gathered, part);
        }
        let prepared = apply(first.as_ref(), &mut part.cache, &part.events, gathered, Vec::new());
        part.events.clear();
        FirstJob::Folded(prepared, part)
    })
    .await
    .ok_or_else(lost)?;
    let (gathered, mut part) = match gathered {
        FirstJob::Folded(prepared, part) => return Ok((prepared, part)),
        FirstJob::Lookup(gathered, part) => (gathered, part),
    };
    let keys: Vec<(String, String)> = gathered.misses.iter().map(|k| (k.tenant.clone(), k.id.clone())).collect();
    let stored = view.get_many(&keys).await.map_err(|e| e.to_string())?;
    background::run(move || {
        let prepared = apply(projection.as_ref(), &mut part.cache, &part.events, gathered, stored);
        part.events.clear();
        (prepared, part)
    })
    .await
    .ok_or_else(lost)
}

/// What a worker's first job ends with: its share folded, or what to look up first.
enum FirstJob<D> {
    Folded(Prepared, Part<D>),
    Lookup(Gathered<D>, Part<D>),
}

/// The worker of `stream` among `count`, by a hash of the name that is stable across processes
/// and builds (a restart routes a stream to the same worker for cache warmth, not correctness).
pub(crate) fn partition(stream: &StreamId, count: usize) -> usize {
    (super::hash::stable_hash(stream.as_str()) % count.max(1) as u64) as usize
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
