//! The bounded queue between the projectors and each invalidation sink: the projector hands an
//! invalidation over and goes on, whatever the sink is doing. Why bounded and never blocking: a
//! dead or slow sink (Redis down) must not slow the projection (issue 15), and an unbounded
//! queue would grow for as long as it is down. Why collapse instead of drop: a dropped key would
//! leave a cache serving a stale answer for ever (until its TTL); a whole-view invalidation per
//! affected tenant costs the caches a refill but loses nothing (guarantee 4 of `mod.rs`).
//!
//! One [`SinkQueue`] per sink, each drained by its own dispatcher (`dispatch.rs`), so a slow
//! sink collapses only its own queue. [`Invalidations`] is the handle the projectors hold: it
//! hands each invalidation to every sink's queue.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::warn;

use super::{FlushReason, Invalidation, Scope};

/// An invalidation waiting for its sink, not to be delivered before `not_before` (a view whose
/// commits are visible only within a second of returning, `Capabilities::visible_on_return`).
#[derive(Clone, Debug)]
pub struct Queued {
    pub invalidation: Invalidation,
    pub not_before: Option<Instant>,
}

/// Figures of one sink's queue and dispatcher, for `/metrics`.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Invalidations handed to the queue.
    pub handed: AtomicU64,
    /// Times the queue was full and collapsed into whole-view invalidations.
    pub overflows: AtomicU64,
    /// Invalidations replaced by those collapses.
    pub collapsed: AtomicU64,
    /// Invalidations the sink accepted.
    pub delivered: AtomicU64,
    /// Deliveries that failed and were retried.
    pub retries: AtomicU64,
}

/// The queue of one sink, at most `capacity` invalidations.
#[derive(Debug)]
pub struct SinkQueue {
    sink: &'static str,
    capacity: usize,
    items: Mutex<VecDeque<Queued>>,
    ready: Notify,
    pub stats: SinkStats,
}

impl SinkQueue {
    pub fn new(sink: &'static str, capacity: usize) -> Arc<SinkQueue> {
        Arc::new(SinkQueue {
            sink,
            capacity: capacity.max(1),
            items: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            stats: SinkStats::default(),
        })
    }

    /// The sink's name (`in_process`, `redis`).
    pub fn sink(&self) -> &'static str {
        self.sink
    }

    /// Adds `item` without waiting; a full queue is collapsed first (see the module doc).
    pub fn push(&self, item: Queued) {
        self.stats.handed.fetch_add(1, Ordering::Relaxed);
        {
            let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
            if items.len() >= self.capacity {
                let before = items.len();
                collapse(&mut items, self.capacity);
                self.stats.overflows.fetch_add(1, Ordering::Relaxed);
                self.stats.collapsed.fetch_add(before as u64, Ordering::Relaxed);
                let flushes: Vec<String> = items.iter().map(|q| describe(&q.invalidation)).collect();
                warn!(
                    sink = self.sink,
                    capacity = self.capacity,
                    collapsed = before,
                    flushes = ?flushes,
                    "invalidation queue full; collapsed into whole-view invalidations"
                );
            }
            items.push_back(item);
        }
        self.ready.notify_one();
    }

    /// Takes up to `max` invalidations from the front, waiting for one if there is none.
    pub async fn take(&self, max: usize) -> Vec<Queued> {
        loop {
            let notified = self.ready.notified();
            {
                let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
                if !items.is_empty() {
                    let n = items.len().min(max.max(1));
                    return items.drain(..n).collect();
                }
            }
            notified.await;
        }
    }

    /// Invalidations waiting.
    pub fn len(&self) -> usize {
        self.items.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn describe(i: &Invalidation) -> String {
    format!("{}/{}@{}", i.view, i.tenant.as_deref().unwrap_or("*"), i.position)
}

/// Replaces everything queued by one whole-view invalidation per (view, tenant) it touched, at
/// the last position queued for that view: position order per view holds, since everything
/// pushed later has a later position. When even that is more than `capacity` (many tenants),
/// one whole-view invalidation per view for every tenant (`tenant: None`).
fn collapse(items: &mut VecDeque<Queued>, capacity: usize) {
    let mut views: BTreeMap<String, (BTreeSet<Option<String>>, Queued)> = BTreeMap::new();
    for queued in items.drain(..) {
        let entry = views.entry(queued.invalidation.view.clone()).or_insert_with(|| (BTreeSet::new(), queued.clone()));
        entry.0.insert(queued.invalidation.tenant.clone());
        if queued.invalidation.position >= entry.1.invalidation.position {
            entry.1.invalidation.position = queued.invalidation.position;
        }
        // The latest wait applies to the whole collapse.
        entry.1.not_before = entry.1.not_before.max(queued.not_before);
    }
    let per_tenant: usize = views.values().map(|(tenants, _)| tenants.len()).sum();
    let whole = |last: &Queued, tenant: Option<String>| Queued {
        invalidation: Invalidation {
            tenant,
            view: last.invalidation.view.clone(),
            position: last.invalidation.position,
            scope: Scope::WholeView { reason: FlushReason::Overflow },
        },
        not_before: last.not_before,
    };
    for (_, (tenants, last)) in views {
        if per_tenant >= capacity || tenants.contains(&None) {
            items.push_back(whole(&last, None));
        } else {
            items.extend(tenants.into_iter().map(|tenant| whole(&last, tenant)));
        }
    }
}

/// What the projectors hold: hands each invalidation to every sink's queue, never waiting.
/// With no sink it does nothing (a process whose invalidations go nowhere).
#[derive(Clone, Debug, Default)]
pub struct Invalidations {
    queues: Arc<Vec<Arc<SinkQueue>>>,
}

impl Invalidations {
    pub fn new(queues: Vec<Arc<SinkQueue>>) -> Invalidations {
        Invalidations { queues: Arc::new(queues) }
    }

    /// Whether any sink takes invalidations.
    pub fn is_active(&self) -> bool {
        !self.queues.is_empty()
    }

    pub fn queues(&self) -> &[Arc<SinkQueue>] {
        &self.queues
    }

    pub fn hand(&self, invalidation: Invalidation, not_before: Option<Instant>) {
        for queue in self.queues.iter() {
            queue.push(Queued { invalidation: invalidation.clone(), not_before });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invalidation::{InvalidatedKey, KeyKind};
    use annals_store::Position;

    fn keys(tenant: &str, view: &str, at: u64) -> Queued {
        Queued {
            invalidation: Invalidation {
                tenant: Some(tenant.into()),
                view: view.into(),
                position: Position::from_code(at),
                scope: Scope::Keys { keys: vec![InvalidatedKey { kind: KeyKind::Message, value: format!("m{at}") }] },
            },
            not_before: None,
        }
    }

    #[test]
    fn a_full_queue_collapses_into_one_flush_per_view_and_tenant_at_the_last_position() {
        let queue = SinkQueue::new("test", 4);
        for (i, tenant) in ["a", "b", "a", "a"].into_iter().enumerate() {
            queue.push(keys(tenant, "messages", i as u64));
        }
        assert_eq!(queue.len(), 4);
        queue.push(keys("c", "messages", 9));
        let items: Vec<Invalidation> = queue.items.lock().unwrap().iter().map(|q| q.invalidation.clone()).collect();
        let flush = |t: &str| Invalidation {
            tenant: Some(t.into()),
            view: "messages".into(),
            position: Position::from_code(3),
            scope: Scope::WholeView { reason: FlushReason::Overflow },
        };
        assert_eq!(items, vec![flush("a"), flush("b"), keys("c", "messages", 9).invalidation]);
        assert_eq!(queue.stats.overflows.load(Ordering::Relaxed), 1);
        assert_eq!(queue.stats.collapsed.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn too_many_tenants_collapse_into_one_flush_of_every_tenant() {
        let queue = SinkQueue::new("test", 2);
        queue.push(keys("a", "audit", 1));
        queue.push(keys("b", "audit", 2));
        queue.push(keys("c", "audit", 3));
        let items: Vec<Invalidation> = queue.items.lock().unwrap().iter().map(|q| q.invalidation.clone()).collect();
        assert_eq!(items[0].tenant, None);
        assert_eq!(items[0].position, Position::from_code(2));
        assert_eq!(items.len(), 2);
    }
}
