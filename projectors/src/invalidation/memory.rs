//! The in-process sink and feed (role `all`): the last `retain` invalidations of each view in a
//! ring, live ones to followers through a broadcast channel. What it exists for: the API's
//! response cache and `GET /v1/invalidations` of the same process, with no backend to run.
//!
//! No follower ever blocks the sink: `deliver` pushes into the ring and the broadcast channel
//! and returns. A follower that falls behind the channel resumes from the ring at the last
//! position it was given (again: it may have been given only some of that position's
//! invalidations, one per tenant of a batch); one whose resume point is older than the ring holds (or a resume
//! after trimmed entries) gets a [`FlushReason::Trimmed`] whole-view invalidation first, never a
//! silent gap (guarantee 4). Nothing survives a restart: the ring starts empty, its checkpoint
//! is `None`, and the dispatcher's start flushes the view ([`FlushReason::Resumed`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use annals_store::Position;
use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::broadcast;

use super::{FlushReason, Invalidation, InvalidationError, InvalidationFeed, InvalidationSink, Scope};

/// Invalidations of one view.
#[derive(Debug)]
struct Ring {
    retained: VecDeque<Invalidation>,
    /// The position of the last invalidation pushed out of the ring.
    trimmed_through: Option<Position>,
    checkpoint: Option<Position>,
    live: broadcast::Sender<Invalidation>,
}

/// The in-process sink and feed; clones share one ring per view.
#[derive(Clone, Debug)]
pub struct MemoryInvalidations {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    retain: usize,
    views: Mutex<HashMap<String, Ring>>,
}

impl MemoryInvalidations {
    /// Keeps the last `retain` invalidations per view (at least one).
    pub fn new(retain: usize) -> MemoryInvalidations {
        MemoryInvalidations { inner: Arc::new(Inner { retain: retain.max(1), views: Mutex::new(HashMap::new()) }) }
    }

    fn with_ring<T>(&self, view: &str, f: impl FnOnce(&mut Ring) -> T) -> T {
        let retain = self.inner.retain;
        let mut views = self.inner.views.lock().unwrap_or_else(|p| p.into_inner());
        let ring = views.entry(view.to_owned()).or_insert_with(|| Ring {
            retained: VecDeque::new(),
            trimmed_through: None,
            checkpoint: None,
            // Room for bursts; a follower further behind resumes from the ring.
            live: broadcast::channel(retain.clamp(16, 4096)).0,
        });
        f(ring)
    }

    /// What a follower resuming after `after` gets first (the ring's part), and the channel it
    /// goes on with: taken under one lock, so nothing falls between the two. `again`: the
    /// invalidations at `after` itself too — a follower that fell behind in the middle of a
    /// position's invalidations (one per tenant of a batch) has seen only some of them.
    fn resume(
        &self,
        view: &str,
        after: Option<Position>,
        again: bool,
    ) -> (Vec<Invalidation>, broadcast::Receiver<Invalidation>) {
        self.with_ring(view, |ring| {
            let receiver = ring.live.subscribe();
            let Some(after) = after else { return (Vec::new(), receiver) };
            let wanted = |p: Position| p > after || (again && p == after);
            let mut first = Vec::new();
            if let Some(trimmed) = ring.trimmed_through.filter(|&t| wanted(t)) {
                first.push(Invalidation {
                    tenant: None,
                    view: view.to_owned(),
                    position: trimmed,
                    scope: Scope::WholeView { reason: FlushReason::Trimmed },
                });
            }
            first.extend(ring.retained.iter().filter(|i| wanted(i.position)).cloned());
            (first, receiver)
        })
    }
}

#[async_trait]
impl InvalidationSink for MemoryInvalidations {
    fn name(&self) -> &'static str {
        "in_process"
    }

    async fn deliver(&self, batch: &[Invalidation]) -> Result<(), InvalidationError> {
        for invalidation in batch {
            self.with_ring(&invalidation.view, |ring| {
                // A redelivery (the contract allows it) adds nothing: an invalidation before the
                // checkpoint was delivered, and one at it was if the ring holds it already (a
                // position's invalidations may come in two calls).
                let at = Some(invalidation.position);
                let seen = at < ring.checkpoint
                    || (at == ring.checkpoint
                        && ring
                            .retained
                            .iter()
                            .rev()
                            .take_while(|r| Some(r.position) == at)
                            .any(|r| r == invalidation));
                if seen {
                    return;
                }
                if ring.retained.len() >= self.inner.retain {
                    if let Some(out) = ring.retained.pop_front() {
                        ring.trimmed_through = Some(out.position);
                    }
                }
                ring.retained.push_back(invalidation.clone());
                ring.checkpoint = ring.checkpoint.max(Some(invalidation.position));
                // No receiver is not an error: nobody follows yet.
                let _ = ring.live.send(invalidation.clone());
            });
        }
        Ok(())
    }

    async fn checkpoint(&self, view: &str) -> Result<Option<Position>, InvalidationError> {
        Ok(self.with_ring(view, |ring| ring.checkpoint))
    }
}

/// A follower's state between items.
struct Following {
    feed: MemoryInvalidations,
    view: String,
    pending: VecDeque<Invalidation>,
    live: broadcast::Receiver<Invalidation>,
    last: Option<Position>,
}

#[async_trait]
impl InvalidationFeed for MemoryInvalidations {
    async fn follow(
        &self,
        view: &str,
        after: Option<Position>,
    ) -> Result<BoxStream<'static, Result<Invalidation, InvalidationError>>, InvalidationError> {
        let (first, live) = self.resume(view, after, false);
        let state = Following { feed: self.clone(), view: view.to_owned(), pending: first.into(), live, last: after };
        Ok(stream::unfold(state, next).boxed())
    }
}

async fn next(mut s: Following) -> Option<(Result<Invalidation, InvalidationError>, Following)> {
    loop {
        if let Some(item) = s.pending.pop_front() {
            s.last = s.last.max(Some(item.position));
            return Some((Ok(item), s));
        }
        match s.live.recv().await {
            // Already given from the ring (a resume overlaps the channel by design).
            Ok(item) if s.last.is_some_and(|last| item.position < last) => continue,
            Ok(item) => s.pending.push_back(item),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Behind the channel: start again from the ring at the last position given, which
                // may have had more invalidations than were given (given twice at worst: harmless;
                // a flush first if the ring no longer holds all that came from there).
                let from = s.last.unwrap_or(Position::from_code(0));
                let (first, live) = s.feed.resume(&s.view, Some(from), true);
                s.pending = first.into();
                s.live = live;
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}
