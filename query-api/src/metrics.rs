//! Prometheus metrics (OpenMetrics text at `GET /metrics`), one registry per application so that
//! several servers in one process (the tests) never share counters. The names are part of the
//! API: dashboards and alerts depend on them, so they only ever gain siblings, never change.
//!
//! - `annals_appends_total{outcome}` — append requests by outcome: `ok`, `conflict` (409),
//!   `rejected` (4xx: malformed, too large, bad stream name, a role that may not append), `error`
//!   (5xx); a request without a valid key (401) is refused before it is an append, uncounted
//! - `annals_appended_events_total`, `annals_appended_bytes_total` — events (and their bytes of
//!   data and metadata) in successful appends; an idempotent retry counts again, as it is
//!   answered again
//! - `annals_append_duration_seconds` — histogram of append latency, from body to answer
//! - `annals_store_head_position` — the position of the last event (-1 for an empty store)
//! - `annals_live_subscribers` — open live tails
//! - `annals_projection_checkpoint{projection}` — position of the last event applied (-1: none)
//! - `annals_projection_lag_events{projection}`, `annals_projection_lag_seconds{projection}` —
//!   positions behind the head, and the age of the oldest event waiting (0 when none waits)
//! - `annals_projection_applied_events{projection}` — events applied since the process started
//! - `annals_projection_parked_events{projection}` — parked events of the serving generation that
//!   no replay has applied (it goes down when a replay applies them)
//! - `annals_projection_events_per_second{projection}` — events applied per second, lately
//! - `annals_projection_generation{projection}` — the generation that serves reads
//! - `annals_projection_rebuild_progress{projection}` — a rebuild's progress from 0 to 1 (-1: none
//!   runs), and `annals_projection_rebuild_eta_seconds{projection}` (-1: none or unknown)
//! - `annals_cache_hits_total{view}`, `annals_cache_misses_total{view}`,
//!   `annals_cache_invalidations_total{view}` (invalidations received),
//!   `annals_cache_refused_fills_total{view}` (fills older than the key's last invalidation) —
//!   the response cache (`cache/`)
//! - `annals_invalidation_handed{sink}`, `…_overflows{sink}`, `…_collapsed{sink}`,
//!   `…_delivered{sink}`, `…_retries{sink}`, `…_queued{sink}` — this process's invalidation
//!   queues and dispatchers, since it started (`annals_projectors::invalidation::queue`)

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// What became of an append request, as `annals_appends{outcome}` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    Ok,
    Conflict,
    Rejected,
    Error,
}

impl AppendOutcome {
    const ALL: [AppendOutcome; 4] =
        [AppendOutcome::Ok, AppendOutcome::Conflict, AppendOutcome::Rejected, AppendOutcome::Error];

    fn label(self) -> &'static str {
        match self {
            AppendOutcome::Ok => "ok",
            AppendOutcome::Conflict => "conflict",
            AppendOutcome::Rejected => "rejected",
            AppendOutcome::Error => "error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectionLabels {
    pub projection: String,
}

/// The `annals_projection_*` gauges, set from `Progress` when metrics are scraped.
#[derive(Debug, Default)]
pub struct ProjectionMetrics {
    pub checkpoint: Family<ProjectionLabels, Gauge>,
    pub lag_events: Family<ProjectionLabels, Gauge>,
    pub lag_seconds: Family<ProjectionLabels, Gauge<f64, AtomicU64>>,
    pub applied_events: Family<ProjectionLabels, Gauge>,
    pub parked_events: Family<ProjectionLabels, Gauge>,
    pub generation: Family<ProjectionLabels, Gauge>,
    pub events_per_second: Family<ProjectionLabels, Gauge<f64, AtomicU64>>,
    pub rebuild_progress: Family<ProjectionLabels, Gauge<f64, AtomicU64>>,
    pub rebuild_eta_seconds: Family<ProjectionLabels, Gauge<f64, AtomicU64>>,
}

impl ProjectionMetrics {
    pub fn set(&self, p: &crate::views::Progress) {
        let labels = ProjectionLabels { projection: p.name.clone() };
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.checkpoint.get_or_create(&labels).set(p.checkpoint.map_or(-1, int));
        self.lag_events.get_or_create(&labels).set(int(p.lag_events));
        self.lag_seconds.get_or_create(&labels).set(p.lag_seconds);
        self.applied_events.get_or_create(&labels).set(int(p.applied_events));
        self.parked_events.get_or_create(&labels).set(int(p.parked_events));
        self.generation.get_or_create(&labels).set(int(p.generation));
        self.events_per_second.get_or_create(&labels).set(p.events_per_second);
        let rebuild = p.rebuild.as_ref();
        self.rebuild_progress.get_or_create(&labels).set(rebuild.map_or(-1.0, |r| r.progress));
        self.rebuild_eta_seconds.get_or_create(&labels).set(rebuild.and_then(|r| r.eta_seconds).unwrap_or(-1.0));
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub view: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: &'static str,
}

/// The response cache's counters.
#[derive(Debug, Default)]
pub struct CacheMetrics {
    pub hits: Family<CacheLabels, Counter>,
    pub misses: Family<CacheLabels, Counter>,
    pub invalidations: Family<CacheLabels, Counter>,
    pub refused_fills: Family<CacheLabels, Counter>,
}

/// The invalidation queues' figures, set from their atomics when metrics are scraped.
#[derive(Debug, Default)]
pub struct InvalidationMetrics {
    pub handed: Family<SinkLabels, Gauge>,
    pub overflows: Family<SinkLabels, Gauge>,
    pub collapsed: Family<SinkLabels, Gauge>,
    pub delivered: Family<SinkLabels, Gauge>,
    pub retries: Family<SinkLabels, Gauge>,
    pub queued: Family<SinkLabels, Gauge>,
}

impl InvalidationMetrics {
    pub fn set(&self, queue: &annals_projectors::invalidation::queue::SinkQueue) {
        use std::sync::atomic::Ordering::Relaxed;
        let labels = SinkLabels { sink: queue.sink() };
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let s = &queue.stats;
        self.handed.get_or_create(&labels).set(int(s.handed.load(Relaxed)));
        self.overflows.get_or_create(&labels).set(int(s.overflows.load(Relaxed)));
        self.collapsed.get_or_create(&labels).set(int(s.collapsed.load(Relaxed)));
        self.delivered.get_or_create(&labels).set(int(s.delivered.load(Relaxed)));
        self.retries.get_or_create(&labels).set(int(s.retries.load(Relaxed)));
        self.queued.get_or_create(&labels).set(int(queue.len() as u64));
    }
}

/// The application's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `annals_appends` by outcome, resolved once: the family's lookup (a lock and a hash) per
    /// append showed in profiles, and every outcome is exported from the start, at 0.
    appends: [Counter; 4],
    pub appended_events: Counter,
    pub appended_bytes: Counter,
    pub append_duration: Histogram,
    pub head_position: Gauge,
    pub live_subscribers: Gauge,
    pub projections: ProjectionMetrics,
    pub cache: CacheMetrics,
    pub invalidations: InvalidationMetrics,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::default();
        let appends = Family::<OutcomeLabels, Counter>::default();
        registry.register("annals_appends", "Append requests by outcome", appends.clone());
        let appended_events = Counter::default();
        registry.register("annals_appended_events", "Events stored by appends", appended_events.clone());
        let appended_bytes = Counter::default();
        registry.register(
            "annals_appended_bytes",
            "Bytes of event data and metadata stored by appends",
            appended_bytes.clone(),
        );
        // 100 µs to ~3.3 s.
        let append_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register("annals_append_duration_seconds", "Append latency", append_duration.clone());
        let head_position = Gauge::default();
        registry.register(
            "annals_store_head_position",
            "Position of the last event in the store",
            head_position.clone(),
        );
        let live_subscribers = Gauge::default();
        registry.register("annals_live_subscribers", "Open live tails", live_subscribers.clone());
        let projections = ProjectionMetrics::default();
        registry.register(
            "annals_projection_checkpoint",
            "Position of the last event applied to the view",
            projections.checkpoint.clone(),
        );
        registry.register("annals_projection_lag_events", "Positions behind the head", projections.lag_events.clone());
        registry.register(
            "annals_projection_lag_seconds",
            "Age of the oldest event waiting to be applied",
            projections.lag_seconds.clone(),
        );
        registry.register(
            "annals_projection_applied_events",
            "Events applied since the process started",
            projections.applied_events.clone(),
        );
        registry.register(
            "annals_projection_parked_events",
            "Events parked because they cannot be applied",
            projections.parked_events.clone(),
        );
        registry.register(
            "annals_projection_generation",
            "The generation serving reads",
            projections.generation.clone(),
        );
        registry.register(
            "annals_projection_events_per_second",
            "Events applied per second over the last seconds",
            projections.events_per_second.clone(),
        );
        registry.register(
            "annals_projection_rebuild_progress",
            "Progress of the running rebuild, 0 to 1 (-1: none)",
            projections.rebuild_progress.clone(),
        );
        registry.register(
            "annals_projection_rebuild_eta_seconds",
            "Seconds until the running rebuild catches up (-1: none or unknown)",
            projections.rebuild_eta_seconds.clone(),
        );
        let cache = CacheMetrics::default();
        registry.register("annals_cache_hits", "Answers served from the response cache", cache.hits.clone());
        registry.register(
            "annals_cache_misses",
            "Cacheable answers not found fresh in the cache",
            cache.misses.clone(),
        );
        registry.register(
            "annals_cache_invalidations",
            "Invalidations the response cache received",
            cache.invalidations.clone(),
        );
        registry.register(
            "annals_cache_refused_fills",
            "Fills refused because the answer was older than its key's last invalidation",
            cache.refused_fills.clone(),
        );
        let invalidations = InvalidationMetrics::default();
        registry.register(
            "annals_invalidation_handed",
            "Invalidations handed to the sink's queue",
            invalidations.handed.clone(),
        );
        registry.register(
            "annals_invalidation_overflows",
            "Times the sink's queue was full and collapsed into whole-view invalidations",
            invalidations.overflows.clone(),
        );
        registry.register(
            "annals_invalidation_collapsed",
            "Invalidations replaced by whole-view ones when the queue overflowed",
            invalidations.collapsed.clone(),
        );
        registry.register(
            "annals_invalidation_delivered",
            "Invalidations the sink accepted",
            invalidations.delivered.clone(),
        );
        registry.register(
            "annals_invalidation_retries",
            "Deliveries to the sink retried after a failure",
            invalidations.retries.clone(),
        );
        registry.register(
            "annals_invalidation_queued",
            "Invalidations waiting for the sink",
            invalidations.queued.clone(),
        );
        let appends = AppendOutcome::ALL
            .map(|outcome| appends.get_or_create(&OutcomeLabels { outcome: outcome.label() }).clone());
        Arc::new(Metrics {
            registry,
            appends,
            appended_events,
            appended_bytes,
            append_duration,
            head_position,
            live_subscribers,
            projections,
            cache,
            invalidations,
        })
    }

    /// Counts one append request.
    pub fn count_append(&self, outcome: AppendOutcome) {
        // `ALL` lists the variants in declaration order, so the discriminant is the index.
        self.appends[outcome as usize].inc();
    }

    /// The registry in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// Counts an open live tail until dropped.
#[derive(Debug)]
pub struct LiveGuard(Arc<Metrics>);

impl LiveGuard {
    pub fn new(metrics: Arc<Metrics>) -> LiveGuard {
        metrics.live_subscribers.inc();
        LiveGuard(metrics)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live_subscribers.dec();
    }
}
