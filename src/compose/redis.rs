//! The Redis invalidation backend built from `[invalidations]` (issue 15): the sink a projector
//! process's dispatcher delivers to, the feed an API process follows to invalidate its own
//! cache, and the probe `/readyz` asks. None of them when `redis_url` is not set. Building them
//! never connects: a Redis that is down at start makes the process degraded, not failed (the
//! sink answers `Unavailable` until Redis is back, and its dispatcher retries).
//!
//! Wiring (`invalidations.rs`): roles `all` and `projector` hand `sink` to an invalidation
//! dispatcher next to the in-process one; role `api` follows `feed` per view (its response cache
//! and `GET /v1/invalidations`); roles that serve the API report `probe` in `/readyz`.

use annals_projectors::invalidation::redis::{RedisFeed, RedisProbe, RedisSink};
use tracing::info;

use crate::settings::Settings;
use crate::Error;

/// What `[invalidations]` asks for.
#[derive(Clone, Debug)]
pub struct RedisInvalidations {
    pub sink: RedisSink,
    pub feed: RedisFeed,
    pub probe: RedisProbe,
}

/// The Redis sink, feed and probe of `settings`, or `None` without `redis_url`. Must be called
/// inside the tokio runtime.
pub fn redis(settings: &Settings) -> Result<Option<RedisInvalidations>, Error> {
    let config = match settings.invalidations.redis_config() {
        Ok(Some(config)) => config,
        Ok(None) => return Ok(None),
        Err((setting, reason)) => return Err(Error::Combination { setting, reason }),
    };
    let refused = |e: annals_projectors::invalidation::InvalidationError| Error::Combination {
        setting: "invalidations.redis_url (ANNALS_INVALIDATIONS__REDIS_URL)".to_owned(),
        reason: e.to_string(),
    };
    let sink = RedisSink::new(config.clone()).map_err(refused)?;
    let probe = RedisProbe::new(&config).map_err(refused)?;
    info!(url = %annals_projectors::invalidation::redis::config::redact(config.url()), "cache invalidations go to redis");
    Ok(Some(RedisInvalidations { sink, feed: RedisFeed::new(config), probe }))
}

/// The sink alone (roles that project).
pub fn redis_sink(settings: &Settings) -> Result<Option<RedisSink>, Error> {
    Ok(redis(settings)?.map(|r| r.sink))
}

/// The probe alone, as `/readyz` asks it (roles that serve the API).
pub fn redis_probe(settings: &Settings) -> Result<Option<ReadyProbe>, Error> {
    Ok(redis(settings)?.map(|r| ReadyProbe(r.probe)))
}

/// [`RedisProbe`] as the API's `/readyz` asks it.
#[derive(Debug)]
pub struct ReadyProbe(RedisProbe);

#[async_trait::async_trait]
impl annals_query_api::BackendProbe for ReadyProbe {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn check(&self) -> Result<(), String> {
        match self.0.check().await {
            annals_projectors::invalidation::redis::RedisHealth::Up => Ok(()),
            annals_projectors::invalidation::redis::RedisHealth::Degraded { reason } => Err(reason),
        }
    }
}

/// The feed alone (roles that serve the API from views another process projects).
pub fn redis_feed(settings: &Settings) -> Result<Option<RedisFeed>, Error> {
    Ok(redis(settings)?.map(|r| r.feed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Flags;
    use annals_projectors::invalidation::InvalidationSink;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Settings, Error> {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("annals.toml");
        std::fs::write(&file, toml).expect("write");
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        Settings::load(Some(&file), env, Flags::default())
    }

    #[tokio::test]
    async fn the_section_builds_a_sink_that_waits_for_redis_instead_of_failing() {
        let settings = load(
            "[invalidations]\nmaxlen = 5000\nmessage_key = \"app:{tenant}:m:{value}\"\n",
            &[("ANNALS_INVALIDATIONS__REDIS_URL", "unix:///nonexistent/annals-test-redis.sock")],
        )
        .expect("valid settings");
        let built = redis(&settings).expect("built").expect("redis is on");
        assert_eq!(built.sink.config().maxlen(), 5000);
        assert_eq!(
            built
                .sink
                .config()
                .template(annals_projectors::invalidation::KeyKind::Message)
                .expect("a template")
                .as_str(),
            "app:{tenant}:m:{value}"
        );
        let error = built.sink.checkpoint("messages").await.expect_err("nothing listens");
        assert!(error.is_transient(), "{error}");
        assert!(redis(&load("", &[]).expect("defaults")).expect("built").is_none(), "no url, no redis");
    }

    #[test]
    fn a_bad_section_is_refused_naming_the_setting() {
        let error = load("[invalidations]\nredis_url = \"redis://localhost\"\nstream = \"one:stream\"\n", &[])
            .expect_err("refused");
        assert!(error.to_string().contains("invalidations.stream (ANNALS_INVALIDATIONS__STREAM)"), "{error}");
        let error = load("", &[("ANNALS_INVALIDATIONS__MAXLEN", "0")]).expect_err("refused");
        assert!(error.to_string().contains("ANNALS_INVALIDATIONS__MAXLEN"), "{error}");
        let error = load("[invalidations]\nactor_key = \"x:{tenant}{value}\"\n", &[]).expect_err("refused");
        assert!(error.to_string().contains("invalidations.actor_key"), "{error}");
        let error = load("", &[("ANNALS_INVALIDATIONS__CHANNEL", "c")]).expect_err("refused");
        assert!(error.to_string().contains("redis_url"), "{error}");
    }
}
