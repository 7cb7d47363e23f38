//! `[invalidations]`: the cache invalidations this process hands out and follows (issue 15) —
//! the bounded queue between the projectors and each sink, the in-process feed's ring, the API's
//! response cache — and where they go besides this process. Today one shared backend, Redis: set
//! `redis_url` and the projectors' invalidations unlink the application's cached keys in Redis
//! and are appended to a stream per view there, which API processes follow
//! (`compose/invalidations.rs` builds the sink and the feed; the templates' rules are
//! `annals_projectors::invalidation::redis`). Every Redis key but `redis_url` has a default;
//! setting one without `redis_url` is refused, since it would do nothing.

use std::time::Duration;

use annals_projectors::invalidation::redis::{RedisConfig, RedisOptions};
use annals_projectors::invalidation::KeyKind;

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
    /// `redis_url`: `redis://HOST:PORT[/DB]`, `rediss://…` or `unix:///path/to/redis.sock`; none:
    /// no Redis.
    pub redis_url: Option<String>,
    /// `message_key`, `recipient_key`, `audit_target_key`, `actor_key`: the cache-key template of
    /// each kind (`{tenant}` and `{value}`, percent-encoded).
    pub templates: Vec<(KeyKind, String)>,
    /// `stream`: the stream of a view's invalidations (`{view}`).
    pub stream: Option<String>,
    /// `channel`: where each invalidation is published (`{view}` optional).
    pub channel: Option<String>,
    /// `maxlen`: entries each stream keeps at least (`XADD … MAXLEN ~`).
    pub maxlen: Option<u64>,
    /// `timeout_ms`: how long one Redis command may take before Redis counts as unavailable.
    pub timeout: Option<Duration>,
}

impl Default for InvalidationSettings {
    fn default() -> Self {
        let cache = annals_query_api::CacheSettings::default();
        InvalidationSettings {
            queue_capacity: 10_000,
            ring_size: 10_000,
            cache_max_bytes: cache.max_bytes,
            cache_ttl: cache.ttl,
            redis_url: None,
            templates: Vec::new(),
            stream: None,
            channel: None,
            maxlen: None,
            timeout: None,
        }
    }
}

/// The template keys, in the order the README lists them.
const TEMPLATE_KEYS: [(&str, KeyKind); 4] = [
    ("message_key", KeyKind::Message),
    ("recipient_key", KeyKind::Recipient),
    ("audit_target_key", KeyKind::AuditTarget),
    ("actor_key", KeyKind::Actor),
];

impl InvalidationSettings {
    /// The response cache's bounds.
    pub fn cache(&self) -> annals_query_api::CacheSettings {
        annals_query_api::CacheSettings { max_bytes: self.cache_max_bytes, ttl: self.cache_ttl }
    }

    /// The Redis backend's options, when `redis_url` is set: the defaults, with what was given.
    pub fn redis_options(&self) -> Option<RedisOptions> {
        let url = self.redis_url.as_ref()?;
        let mut options = RedisOptions::new(url.clone());
        for (kind, template) in &self.templates {
            options.templates.insert(*kind, template.clone());
        }
        if let Some(stream) = &self.stream {
            options.stream = stream.clone();
        }
        if let Some(channel) = &self.channel {
            options.channel = channel.clone();
        }
        if let Some(maxlen) = self.maxlen {
            options.maxlen = maxlen;
        }
        if let Some(timeout) = self.timeout {
            options.timeout = timeout;
        }
        Some(options)
    }

    /// The checked Redis configuration, or the setting at fault (`invalidations.KEY (ENV)`) and
    /// why.
    pub fn redis_config(&self) -> Result<Option<RedisConfig>, (String, String)> {
        let Some(options) = self.redis_options() else {
            let given = [
                self.stream.as_ref().map(|_| "stream"),
                self.channel.as_ref().map(|_| "channel"),
                self.maxlen.map(|_| "maxlen"),
                self.timeout.map(|_| "timeout_ms"),
            ];
            let key = given.into_iter().flatten().next().or_else(|| {
                self.templates
                    .first()
                    .and_then(|(kind, _)| TEMPLATE_KEYS.iter().find(|(_, k)| k == kind).map(|(key, _)| *key))
            });
            return match key {
                Some(key) => Err((
                    setting(key),
                    "configures the Redis invalidations, which are off without redis_url: set [invalidations] \
                     redis_url (ANNALS_INVALIDATIONS__REDIS_URL), or remove this setting"
                        .to_owned(),
                )),
                None => Ok(None),
            };
        };
        RedisConfig::new(&options).map(Some).map_err(|e| {
            let key = match e.option.as_str() {
                "url" => "redis_url",
                "timeout" => "timeout_ms",
                option => option
                    .strip_prefix("templates.")
                    .and_then(|kind| TEMPLATE_KEYS.iter().find(|(_, k)| k.to_string() == kind))
                    .map_or(option, |(key, _)| *key),
            };
            (setting(key), e.reason)
        })
    }
}

/// A key as errors name it: `invalidations.redis_url (ANNALS_INVALIDATIONS__REDIS_URL)`.
fn setting(key: &str) -> String {
    format!("invalidations.{key} ({})", super::env_name(InvalidationSettings::NAME, key))
}

impl Section for InvalidationSettings {
    const NAME: &'static str = "invalidations";
    const KEYS: &'static [(&'static str, Option<&'static str>)] = &[
        ("queue_capacity", None),
        ("ring_size", None),
        ("cache_max_bytes", None),
        ("cache_ttl_secs", None),
        ("redis_url", None),
        ("message_key", None),
        ("recipient_key", None),
        ("audit_target_key", None),
        ("actor_key", None),
        ("stream", None),
        ("channel", None),
        ("maxlen", None),
        ("timeout_ms", None),
    ];

    fn set(&mut self, key: &str, v: &str) -> Result<(), String> {
        let at_most = |n: usize| if n > 1_000_000 { Err("at most 1000000".to_owned()) } else { Ok(n) };
        let text = || {
            let v = v.trim();
            if v.is_empty() {
                Err("empty".to_owned())
            } else {
                Ok(v.to_owned())
            }
        };
        match key {
            "queue_capacity" => self.queue_capacity = at_most(positive(v)?)?,
            "ring_size" => self.ring_size = at_most(positive(v)?)?,
            "cache_max_bytes" => {
                self.cache_max_bytes = v.trim().parse().map_err(|_| "not a number of bytes (0 or more)".to_owned())?
            }
            "cache_ttl_secs" => self.cache_ttl = seconds(v)?,
            "redis_url" => self.redis_url = Some(text()?),
            "stream" => self.stream = Some(text()?),
            "channel" => self.channel = Some(text()?),
            "maxlen" => self.maxlen = Some(positive(v)? as u64),
            "timeout_ms" => {
                let ms = positive(v)?;
                if !(10..=600_000).contains(&ms) {
                    return Err("must be 10 to 600000 (ten minutes)".into());
                }
                self.timeout = Some(Duration::from_millis(ms as u64));
            }
            _ => {
                let Some((_, kind)) = TEMPLATE_KEYS.iter().find(|(k, _)| *k == key) else {
                    return Err("not a setting of this section".into());
                };
                let template = text()?;
                annals_projectors::invalidation::redis::KeyTemplate::parse(&template).map_err(|e| e.reason)?;
                self.templates.retain(|(k, _)| k != kind);
                self.templates.push((*kind, template));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_urls_are_checked_and_named() {
        let mut s = InvalidationSettings::default();
        assert!(s.set("message_key", "annals:{tenant}{value}").is_err(), "an undelimited template");
        s.set("message_key", "app:{tenant}:msg:{value}").expect("a template");
        let (setting, reason) = s.redis_config().expect_err("a template without a url");
        assert_eq!(setting, "invalidations.message_key (ANNALS_INVALIDATIONS__MESSAGE_KEY)");
        assert!(reason.contains("redis_url"), "{reason}");
        s.set("redis_url", "http://localhost").expect("text");
        let (setting, _) = s.redis_config().expect_err("not a redis url");
        assert_eq!(setting, "invalidations.redis_url (ANNALS_INVALIDATIONS__REDIS_URL)");
        s.set("redis_url", "unix:///run/redis/redis.sock").expect("text");
        s.set("stream", "app:invalidations").expect("text");
        let (setting, reason) = s.redis_config().expect_err("a stream shared by every view");
        assert_eq!(setting, "invalidations.stream (ANNALS_INVALIDATIONS__STREAM)", "{reason}");
        s.set("stream", "app:{view}:invalidations").expect("text");
        let config = s.redis_config().expect("valid").expect("redis is on");
        assert_eq!(config.template(KeyKind::Message).expect("a template").as_str(), "app:{tenant}:msg:{value}");
        assert_eq!(config.stream("audit"), "app:audit:invalidations");
        assert!(matches!(InvalidationSettings::default().redis_config(), Ok(None)), "no url, no redis");
    }
}
