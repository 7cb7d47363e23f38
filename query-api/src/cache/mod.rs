//! The in-process response cache (issue 15): answers of message detail, message history and
//! audit-by-target, kept as the exact bytes the route answered (so a hit is byte-identical to a
//! miss), bounded by bytes and a TTL (moka), and invalidated by following an
//! `InvalidationFeed` (`follow.rs`). Without a feed the cache is off: a cache that cannot be
//! invalidated must never serve (invariant 43).
//!
//! # The position floor
//! Each entry is named by the invalidation key it depends on (a message id, an audit target) and
//! stamped with a **version**: the view's committed checkpoint read *before* the answer was
//! read. View-store guarantee 4 makes the answer at least as new as that checkpoint, and an
//! invalidation's position is the checkpoint of the commit it announces, so the two compare
//! exactly. (The document's own version would not: an invalidation carries its batch's last
//! position, which is past the version of every document of the batch but one, and a fresh fill
//! would be refused for ever.) The cache keeps, per key, per (view, tenant) and per view, the
//! last invalidation position it received — the **floor** — and
//! - refuses a fill whose version is below the floor (the slow reader that read before the
//!   invalidation and fills after it), counted as a refused stale fill;
//! - serves an entry only while its version is not below the floor, so an invalidation takes
//!   effect the moment it is received, whatever the entry's removal is doing.
//!
//! Floors per key are bounded: past `MAX_KEY_FLOORS` they are forgotten and the view's floor is
//! raised to the last position received, a flush of the view, which is conservative.
//! Until its follower of a view is connected (and after its feed failed, until it resumes), the
//! cache neither serves nor fills that view.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals_projectors::invalidation::queue::SinkQueue;
use annals_projectors::invalidation::{InvalidatedKey, Invalidation, InvalidationFeed, Scope};
use annals_store::Position;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::sync::watch;

use crate::metrics::Metrics;

pub mod follow;
#[cfg(test)]
mod tests;

/// What the API knows of invalidations: the feed its response cache and `GET /v1/invalidations`
/// follow, and this process's queues to sinks (for `/metrics`).
#[derive(Clone, Default)]
pub struct InvalidationDeps {
    /// `None`: the response cache is off and `GET /v1/invalidations` answers `503` (a process
    /// with no feed: role `api` without a shared backend).
    pub feed: Option<Arc<dyn InvalidationFeed>>,
    pub queues: Vec<Arc<SinkQueue>>,
    /// The shared backends (Redis) `/readyz` asks after: one that does not answer makes the
    /// process *degraded*, not unready — appends, queries and projections go on without it.
    pub probes: Vec<Arc<dyn BackendProbe>>,
}

impl std::fmt::Debug for InvalidationDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvalidationDeps")
            .field("feed", &self.feed.is_some())
            .field("queues", &self.queues.len())
            .field("probes", &self.probes.iter().map(|p| p.name()).collect::<Vec<_>>())
            .finish()
    }
}

/// Whether a shared backend answers, for `/readyz`.
#[async_trait::async_trait]
pub trait BackendProbe: Send + Sync {
    /// The backend as `/readyz` names it (`redis`).
    fn name(&self) -> &'static str;

    /// `Err(reason)` when it does not answer. The reason goes to the log, not to `/readyz`
    /// (which needs no key, and must not tell strangers about the deployment).
    async fn check(&self) -> Result<(), String>;
}

/// The views whose answers are cached.
pub const VIEWS: [&str; 2] = ["messages", "audit"];

/// Keys whose floors are remembered one by one before they collapse into a view's floor.
const MAX_KEY_FLOORS: usize = 100_000;

/// Most bytes of one answer kept; a larger answer is served but not cached.
const MAX_ENTRY_BYTES: usize = 4 * 1024 * 1024;

/// How the cache is bounded (`[http] cache_max_bytes`, `cache_ttl_secs`).
#[derive(Clone, Copy, Debug)]
pub struct CacheSettings {
    pub max_bytes: u64,
    pub ttl: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings { max_bytes: 64 * 1024 * 1024, ttl: Duration::from_secs(300) }
    }
}

/// One cached answer's name: the view, the tenant, the invalidation key it depends on, and the
/// route's variant (the route and its query string).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub view: &'static str,
    pub tenant: String,
    pub depends_on: InvalidatedKey,
    pub variant: String,
}

/// A cached answer: the response's parts as the route made them.
#[derive(Debug)]
struct Cached {
    version: Option<Position>,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Cached {
    fn response(&self) -> Response {
        let mut response = (self.status, self.body.clone()).into_response();
        *response.headers_mut() = self.headers.clone();
        response
    }
}

/// The last invalidation positions received (see the module doc).
#[derive(Debug, Default)]
struct Floors {
    keys: HashMap<(&'static str, String, InvalidatedKey), Position>,
    tenants: HashMap<(&'static str, String), Position>,
    views: HashMap<&'static str, Position>,
    /// The last position received per view: what a view's floor rises to when key floors are
    /// forgotten.
    latest: HashMap<&'static str, Position>,
}

impl Floors {
    fn of(&self, key: &CacheKey) -> Option<Position> {
        let k = self.keys.get(&(key.view, key.tenant.clone(), key.depends_on.clone())).copied();
        let t = self.tenants.get(&(key.view, key.tenant.clone())).copied();
        let v = self.views.get(key.view).copied();
        k.max(t).max(v)
    }

    fn raise<K: Eq + std::hash::Hash>(map: &mut HashMap<K, Position>, key: K, to: Position) {
        let floor = map.entry(key).or_insert(to);
        *floor = (*floor).max(to);
    }

    fn apply(&mut self, view: &'static str, i: &Invalidation) {
        Self::raise(&mut self.latest, view, i.position);
        match (&i.scope, &i.tenant) {
            (Scope::WholeView { .. }, None) => Self::raise(&mut self.views, view, i.position),
            (Scope::WholeView { .. }, Some(tenant)) => {
                Self::raise(&mut self.tenants, (view, tenant.clone()), i.position)
            }
            // Keys of no tenant say nothing the mod.rs guarantees: treat them as a flush.
            (Scope::Keys { .. }, None) => Self::raise(&mut self.views, view, i.position),
            (Scope::Keys { keys }, Some(tenant)) => {
                for key in keys {
                    Self::raise(&mut self.keys, (view, tenant.clone(), key.clone()), i.position);
                }
            }
        }
        if self.keys.len() > MAX_KEY_FLOORS {
            self.keys.clear();
            for (view, latest) in &self.latest {
                Self::raise(&mut self.views, *view, *latest);
            }
        }
    }
}

/// The response cache; [`ResponseCache::off`] when there is no feed.
#[derive(Debug)]
pub struct ResponseCache {
    inner: Option<Inner>,
}

#[derive(Debug)]
struct Inner {
    entries: moka::future::Cache<CacheKey, Arc<Cached>>,
    floors: Mutex<Floors>,
    /// Per view: whether its follower is connected, and the last position it applied.
    connected: HashMap<&'static str, AtomicBool>,
    applied: HashMap<&'static str, watch::Sender<Option<Position>>>,
    metrics: Arc<Metrics>,
}

impl ResponseCache {
    /// A cache that never serves and never fills.
    pub fn off() -> ResponseCache {
        ResponseCache { inner: None }
    }

    pub fn new(settings: CacheSettings, metrics: Arc<Metrics>) -> ResponseCache {
        let entries = moka::future::Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|k: &CacheKey, v: &Arc<Cached>| {
                let bytes = k.tenant.len() + k.variant.len() + k.depends_on.value.len() + v.body.len() + 256;
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .time_to_live(settings.ttl)
            .build();
        // Every series from the start, at 0.
        for view in VIEWS {
            let label = crate::metrics::CacheLabels { view };
            let c = &metrics.cache;
            for family in [&c.hits, &c.misses, &c.invalidations, &c.refused_fills] {
                let _ = family.get_or_create(&label);
            }
        }
        let connected = VIEWS.iter().map(|v| (*v, AtomicBool::new(false))).collect();
        let applied = VIEWS.iter().map(|v| (*v, watch::channel(None).0)).collect();
        ResponseCache { inner: Some(Inner { entries, floors: Mutex::default(), connected, applied, metrics }) }
    }

    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    fn serving(&self, view: &str) -> Option<&Inner> {
        let inner = self.inner.as_ref()?;
        inner.connected.get(view)?.load(Ordering::Acquire).then_some(inner)
    }

    /// The cached answer for `key`, if any is fresh (see the module doc); counts a hit or a miss.
    pub async fn lookup(&self, key: &CacheKey) -> Option<Response> {
        let inner = self.serving(key.view)?;
        let found = inner.entries.get(key).await;
        let fresh = found.filter(|cached| {
            let floor = inner.floors.lock().unwrap_or_else(|p| p.into_inner()).of(key);
            floor.is_none_or(|floor| cached.version >= Some(floor))
        });
        let label = crate::metrics::CacheLabels { view: key.view };
        match fresh {
            Some(cached) => {
                inner.metrics.cache.hits.get_or_create(&label).inc();
                Some(cached.response())
            }
            None => {
                inner.metrics.cache.misses.get_or_create(&label).inc();
                None
            }
        }
    }

    /// Keeps `response` (a `200` only) for `key`, read at view checkpoint `version`, unless an
    /// invalidation newer than `version` was received for the key; returns the same response.
    pub async fn fill(&self, key: CacheKey, version: Option<Position>, response: Response) -> Response {
        let Some(inner) = self.serving(key.view) else { return response };
        if response.status() != StatusCode::OK {
            return response;
        }
        let (parts, body) = response.into_parts();
        // Read up to an entry's size; past it, the answer is sent on as it comes, not cached.
        let mut stream = body.into_data_stream();
        let (mut chunks, mut size) = (Vec::new(), 0usize);
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let failed =
                        annals_projectors::ViewError::Backend { view: key.view, op: "answer", reason: e.to_string() };
                    return crate::error::ApiError::View(failed).into_response();
                }
            };
            size += chunk.len();
            chunks.push(Ok::<_, axum::Error>(chunk));
            if size > MAX_ENTRY_BYTES {
                let body = axum::body::Body::from_stream(futures::stream::iter(chunks).chain(stream));
                return Response::from_parts(parts, body);
            }
        }
        let body: Bytes = chunks.into_iter().filter_map(Result::ok).flatten().collect::<Vec<u8>>().into();
        let cached = Arc::new(Cached { version, status: parts.status, headers: parts.headers, body });
        let response = cached.response();
        let floor = inner.floors.lock().unwrap_or_else(|p| p.into_inner()).of(&key);
        if floor.is_some_and(|floor| version < Some(floor)) {
            let label = crate::metrics::CacheLabels { view: key.view };
            inner.metrics.cache.refused_fills.get_or_create(&label).inc();
            return response;
        }
        inner.entries.insert(key, cached).await;
        response
    }

    /// Applies one received invalidation of `view` (raises floors; the entries it outdates are
    /// never served again and age out).
    pub fn apply(&self, view: &'static str, invalidation: &Invalidation) {
        let Some(inner) = &self.inner else { return };
        inner.floors.lock().unwrap_or_else(|p| p.into_inner()).apply(view, invalidation);
        inner.metrics.cache.invalidations.get_or_create(&crate::metrics::CacheLabels { view }).inc();
        if let Some(applied) = inner.applied.get(view) {
            applied.send_modify(|a| *a = (*a).max(Some(invalidation.position)));
        }
    }

    /// Drops every entry (a follower that resumes without knowing what it missed).
    pub fn clear(&self) {
        if let Some(inner) = &self.inner {
            inner.entries.invalidate_all();
        }
    }

    /// Marks the follower of `view` connected (it serves and fills) or not.
    pub fn set_connected(&self, view: &str, connected: bool) {
        if let Some(flag) = self.inner.as_ref().and_then(|i| i.connected.get(view)) {
            flag.store(connected, Ordering::Release);
        }
    }

    /// Waits (at most `limit`) until the cache has applied `view`'s invalidations up to
    /// `position`: what the SSE route waits for before it tells a client, so the client's next
    /// query cannot hit an entry the invalidation outdates. At once when the cache is off.
    pub async fn applied(&self, view: &str, position: Position, limit: Duration) -> bool {
        let Some(applied) = self.inner.as_ref().and_then(|i| i.applied.get(view)) else { return true };
        let mut rx = applied.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|a| *a >= Some(position))).await.is_ok_and(|r| r.is_ok())
    }
}
