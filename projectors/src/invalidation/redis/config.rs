//! What the Redis sink and feed are told: where Redis is, which cache keys an invalidation
//! names, where the per-view streams and the channel are, and how long the streams grow.
//!
//! Why the checks live here and not in the settings layer: the sink and the feed are also built
//! by tests and benchmarks, and a template that could let one tenant's value name another's key
//! must be refused whoever builds the config. The settings layer maps a [`ConfigError`] to the
//! setting's name.

use std::collections::BTreeMap;
use std::time::Duration;

use super::keys::{KeyTemplate, TemplateError, ViewTemplate};
use crate::invalidation::KeyKind;

/// The Redis backend's configuration, checked ([`RedisConfig::new`]).
#[derive(Clone, Debug)]
pub struct RedisConfig {
    url: String,
    templates: BTreeMap<KeyKind, KeyTemplate>,
    stream: ViewTemplate,
    channel: ViewTemplate,
    maxlen: u64,
    timeout: Duration,
    block: Duration,
}

/// The unchecked form, with the defaults an operator overrides (the settings' shape).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisOptions {
    /// `redis://HOST[:PORT][/DB]`, `rediss://…`, or `unix:///path/to/socket` (`redis+unix://`).
    pub url: String,
    /// One template per key kind; a kind without one is not unlinked (its invalidations still
    /// go to the stream and the channel).
    pub templates: BTreeMap<KeyKind, String>,
    /// The stream of a view's invalidations; `{view}` is the view's name.
    pub stream: String,
    /// The channel invalidations are published on; `{view}` is optional.
    pub channel: String,
    /// Entries a stream keeps at least (`XADD … MAXLEN ~`): how far back a feed can resume.
    pub maxlen: u64,
    /// How long one command may take before the backend counts as unavailable.
    pub timeout: Duration,
    /// How long a feed's `XREAD BLOCK` waits for entries before asking again.
    pub block: Duration,
}

impl RedisOptions {
    /// The defaults, with `url`.
    pub fn new(url: impl Into<String>) -> RedisOptions {
        let templates = [
            (KeyKind::Message, "annals:{tenant}:message:{value}"),
            (KeyKind::Recipient, "annals:{tenant}:recipient:{value}"),
            (KeyKind::AuditTarget, "annals:{tenant}:audit_target:{value}"),
            (KeyKind::Actor, "annals:{tenant}:actor:{value}"),
        ];
        RedisOptions {
            url: url.into(),
            templates: templates.into_iter().map(|(k, t)| (k, t.to_owned())).collect(),
            stream: "annals:invalidations:{view}".to_owned(),
            channel: "annals:invalidations".to_owned(),
            maxlen: 100_000,
            timeout: Duration::from_secs(2),
            block: Duration::from_secs(5),
        }
    }
}

/// A refused option: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {reason}")]
pub struct ConfigError {
    /// The option's name in [`RedisOptions`] (`url`, `templates.message`, `stream`, …).
    pub option: String,
    pub reason: String,
}

impl RedisConfig {
    pub fn new(options: &RedisOptions) -> Result<RedisConfig, ConfigError> {
        let refuse = |option: &str, reason: String| ConfigError { option: option.to_owned(), reason };
        let template_error = |option: String| move |e: TemplateError| ConfigError { option, reason: e.to_string() };
        redis::Client::open(options.url.as_str())
            .map_err(|e| refuse("url", format!("{:?}: {e}", redact(&options.url))))?;
        let mut templates = BTreeMap::new();
        for (kind, text) in &options.templates {
            let option = format!("templates.{kind}");
            templates.insert(*kind, KeyTemplate::parse(text).map_err(template_error(option))?);
        }
        let stream = ViewTemplate::parse(&options.stream).map_err(template_error("stream".to_owned()))?;
        if !options.stream.contains("{view}") {
            return Err(refuse("stream", "needs {view}: each view has a stream of its own".to_owned()));
        }
        let channel = ViewTemplate::parse(&options.channel).map_err(template_error("channel".to_owned()))?;
        if options.maxlen == 0 {
            return Err(refuse("maxlen", "must be at least 1".to_owned()));
        }
        for (option, value) in [("timeout", options.timeout), ("block", options.block)] {
            if value < Duration::from_millis(10) || value > Duration::from_secs(600) {
                return Err(refuse(option, format!("{value:?} is outside 10 ms to 600 s")));
            }
        }
        Ok(RedisConfig {
            url: options.url.clone(),
            templates,
            stream,
            channel,
            maxlen: options.maxlen,
            timeout: options.timeout,
            block: options.block,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn template(&self, kind: KeyKind) -> Option<&KeyTemplate> {
        self.templates.get(&kind)
    }

    /// The stream holding `view`'s invalidations.
    pub fn stream(&self, view: &str) -> String {
        self.stream.render(view)
    }

    /// The channel `view`'s invalidations are published on.
    pub fn channel(&self, view: &str) -> String {
        self.channel.render(view)
    }

    pub fn maxlen(&self) -> u64 {
        self.maxlen
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn block(&self) -> Duration {
        self.block
    }

    pub(super) fn client(&self) -> redis::Client {
        redis::Client::open(self.url.as_str()).expect("checked in RedisConfig::new")
    }
}

/// The URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((credentials, host)) => {
                let user = credentials.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}
