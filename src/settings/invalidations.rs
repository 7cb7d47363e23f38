//! `[invalidations]`: the cache invalidations this process hands out and follows (issue 15) —
//! the bounded queue between the projectors and each sink, the in-process feed's ring, and the
//! API's response cache. A backend shared by several processes (Redis) adds its keys here.

use std::time::Duration;

use super::parse::{positive, seconds, Section};

/// `[invalidations]`.
#[derive(Clone, Debug)]
pub struct InvalidationSettings {
    /// `queue_capacity`: invalidations waiting for one sink at most (1 to 1,000,000, default
    /// 10,000); past it they collapse into one whole-view invalidation per affected tenant.
    pub queue_capacity: usize,
    /// `ring_size`: invalidations the in-process feed keeps per view for followers that resume
    /// (`Last-Event-ID`; 1 to 1,000,000, default 10,000); an older resume point gets a flush.
    pub ring_size: usize,
    /// `cache_max_bytes`: the API's response cache's size in bytes (default 64 MiB; 0 turns the cache off).
    pub cache_max_bytes: u64,
    /// `cache_ttl_secs`: how long an answer stays cached at most (default 300).
    pub cache_ttl: Duration,
}

impl Default for InvalidationSettings {
    fn default() -> Self {
        let cache = annals_query_api::CacheSettings::default();
        InvalidationSettings {
            queue_capacity: 10_000,
            ring_size: 10_000,
            cache_max_bytes: cache.max_bytes,
            cache_ttl: cache.ttl,
        }
    }
}

impl InvalidationSettings {
    /// The response cache's bounds.
    pub fn cache(&self) -> annals_query_api::CacheSettings {
        annals_query_api::CacheSettings { max_bytes: self.cache_max_bytes, ttl: self.cache_ttl }
    }
}

impl Section for InvalidationSettings {
    const NAME: &'static str = "invalidations";
    const KEYS: &'static [(&'static str, Option<&'static str>)] =
        &[("queue_capacity", None), ("ring_size", None), ("cache_max_bytes", None), ("cache_ttl_secs", None)];

    fn set(&mut self, key: &str, v: &str) -> Result<(), String> {
        let at_most = |n: usize| if n > 1_000_000 { Err("at most 1000000".to_owned()) } else { Ok(n) };
        match key {
            "queue_capacity" => self.queue_capacity = at_most(positive(v)?)?,
            "ring_size" => self.ring_size = at_most(positive(v)?)?,
            "cache_max_bytes" => {
                self.cache_max_bytes = v.trim().parse().map_err(|_| "not a number of bytes (0 or more)".to_owned())?
            }
            "cache_ttl_secs" => self.cache_ttl = seconds(v)?,
            _ => return Err("not a setting of this section".into()),
        }
        Ok(())
    }
}
