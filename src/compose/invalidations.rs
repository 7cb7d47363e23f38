//! Wiring the cache invalidations (issue 15): which sinks a process's projectors hand their
//! committed keys to, through one bounded queue and one dispatcher per sink, and which feed its
//! API's response cache and `GET /v1/invalidations` follow.
//!
//! - role `all`: the in-process sink and feed (`MemoryInvalidations`, a ring of `ring_size`
//!   per view), plus any shared sinks; the API follows the in-process feed.
//! - role `projector`: the shared sinks only ([`shared_sinks`]).
//! - role `api`: the shared feed ([`shared_feed`]); without one the response cache is off and
//!   `GET /v1/invalidations` answers `503`.
//!
//! The two hooks below open the shared backend `[invalidations]` names: Redis (`redis.rs`) when
//! `redis_url` is set, else none.

use std::sync::Arc;

use annals_projectors::invalidation::memory::MemoryInvalidations;
use annals_projectors::invalidation::queue::{Invalidations, SinkQueue};
use annals_projectors::invalidation::{dispatch, InvalidationFeed, InvalidationSink};
use annals_query_api::{BackendProbe, InvalidationDeps};
use annals_store::Position;
use futures::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;
use crate::Error;

/// The sinks shared with other processes that this process's projectors feed (role `all` and
/// `projector`): the Redis sink when `redis_url` is set.
pub fn shared_sinks(settings: &Settings) -> Result<Vec<Arc<dyn InvalidationSink>>, Error> {
    Ok(super::redis::redis_sink(settings)?.into_iter().map(|s| Arc::new(s) as Arc<dyn InvalidationSink>).collect())
}

/// The feed an `api` process follows, written by projector processes' sinks: the Redis feed
/// when `redis_url` is set.
pub fn shared_feed(settings: &Settings) -> Result<Option<Arc<dyn InvalidationFeed>>, Error> {
    Ok(super::redis::redis_feed(settings)?.map(|f| Arc::new(f) as Arc<dyn InvalidationFeed>))
}

/// The shared backends `/readyz` asks after: Redis when `redis_url` is set.
pub fn shared_probes(settings: &Settings) -> Result<Vec<Arc<dyn BackendProbe>>, Error> {
    Ok(super::redis::redis_probe(settings)?.into_iter().map(|p| Arc::new(p) as Arc<dyn BackendProbe>).collect())
}

/// The sinks of a process, each with its queue, not dispatched yet.
#[derive(Debug)]
pub struct Wiring {
    sinks: Vec<(Arc<dyn InvalidationSink>, Arc<SinkQueue>)>,
    feed: Option<Arc<dyn InvalidationFeed>>,
}

impl Wiring {
    /// Role `all`: the in-process sink and feed, then `shared` sinks.
    pub fn in_process(settings: &Settings, shared: Vec<Arc<dyn InvalidationSink>>) -> Wiring {
        let memory = MemoryInvalidations::new(settings.invalidations.ring_size);
        let mut sinks: Vec<Arc<dyn InvalidationSink>> = vec![Arc::new(memory.clone())];
        sinks.extend(shared);
        let feed: Arc<dyn InvalidationFeed> = Arc::new(memory);
        Wiring { feed: Some(feed), ..Wiring::sinks_only(settings, sinks) }
    }

    /// Role `projector`: `sinks`, and no feed.
    pub fn sinks_only(settings: &Settings, sinks: Vec<Arc<dyn InvalidationSink>>) -> Wiring {
        let capacity = settings.invalidations.queue_capacity;
        let sinks = sinks.into_iter().map(|s| (Arc::clone(&s), SinkQueue::new(s.name(), capacity))).collect();
        Wiring { sinks, feed: None }
    }

    /// What the projectors hand their invalidations to.
    pub fn out(&self) -> Invalidations {
        Invalidations::new(self.sinks.iter().map(|(_, q)| Arc::clone(q)).collect())
    }

    /// What the API follows and reports (`probes`: the shared backends `/readyz` asks after).
    pub fn deps(&self, probes: Vec<Arc<dyn BackendProbe>>) -> InvalidationDeps {
        let queues = self.sinks.iter().map(|(_, q)| Arc::clone(q)).collect();
        InvalidationDeps { feed: self.feed.clone(), queues, probes }
    }

    /// Starts a dispatcher per sink; `checkpoints` gives the views' checkpoints at start.
    pub fn dispatch(
        &self,
        checkpoints: BoxFuture<'static, Vec<(String, Option<Position>)>>,
        stop: &CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        let checkpoints = futures::future::FutureExt::shared(checkpoints);
        self.sinks
            .iter()
            .map(|(sink, queue)| {
                dispatch::start(Arc::clone(sink), Arc::clone(queue), checkpoints.clone(), stop.clone())
            })
            .collect()
    }
}
