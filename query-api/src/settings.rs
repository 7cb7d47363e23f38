//! Typed settings of `annals serve`. Four layers, each overriding the one before: defaults, a
//! TOML file (`--config FILE`), `ANNALS_*` environment variables, command-line flags. A setting
//! that is invalid stops startup with an error that names the setting and where it came from, so
//! an operator never has to guess which of the four layers to fix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::Error;

/// Everything `Application::build` needs.
#[derive(Clone)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// The embedded store's data directory.
    pub data_dir: PathBuf,
    /// Largest request body accepted, in bytes (`413` past it).
    pub max_body_bytes: usize,
    /// Most events one read returns (a larger `limit` is capped to it).
    pub max_page: usize,
    /// Most bytes of events (type, data and metadata) one page of `GET /v1/events` holds
    /// (`ANNALS_MAX_PAGE_BYTES`, default 16 MiB); a page's first event is sent whatever its
    /// size, and `next` continues after the last event sent.
    pub max_page_bytes: usize,
    /// Appends are refused with `507` while the data directory's filesystem has less than this
    /// many bytes free (`ANNALS_MIN_FREE_BYTES`, default 128 MiB): the reserve keeps the store's
    /// index writable, so appends resume by themselves once space is freed.
    pub min_free_bytes: u64,
    /// How often an idle live tail gets a heartbeat comment.
    pub sse_heartbeat: Duration,
    /// Refuse events of types that have no registered schema (otherwise stored as opaque JSON).
    pub strict_schemas: bool,
    /// The first admin key, used only when the store has no key yet (`ANNALS_ADMIN_KEY`).
    pub admin_key: Option<String>,
    /// How long a projector gathers live events before it commits them to its view
    /// (`ANNALS_PROJECTOR_FLUSH_MS`): the delay before a write is searchable, against the rate
    /// of view commits (each one syncs files on the disk the log also syncs to).
    pub projector_flush: Duration,
    /// Events per view commit at most (`ANNALS_PROJECTOR_BATCH_SIZE`, 1 to 100,000, default
    /// 20,000): bounds a catching-up projector's memory and commit size; live traffic fills a
    /// batch by the flush interval first.
    pub projector_batch_size: usize,
    /// Partitioned workers per projection (`ANNALS_PROJECTOR_PARALLELISM`, 1 to 64): a batch is
    /// folded by this many jobs at once, each owning the streams that hash to it.
    pub projector_parallelism: usize,
    /// The CPU priority of projector threads against the API's (`ANNALS_PROJECTOR_PRIORITY`):
    /// `low` (a nice value of about 10, the default), `idle` (only CPU nothing else wants:
    /// appends first, views lag while the machine is saturated) or `normal`.
    pub projector_priority: annals_projectors::background::Priority,
    /// How long a shutdown waits for requests in flight (`ANNALS_SHUTDOWN_GRACE_SECS`, default
    /// 20): a stalled upload must not keep the store from closing cleanly before a supervisor's
    /// kill (Kubernetes waits 30 s). Appends cut off are safe to retry with the same ids.
    pub shutdown_grace: Duration,
    /// Origins whose browser pages may call the API (`ANNALS_CORS_ORIGINS`, comma-separated exact
    /// origins such as `https://logs.example.com`; none by default: no CORS headers at all).
    pub cors_origins: Vec<String>,
    /// How long a live-tail token opens tails (`ANNALS_LIVE_TOKEN_TTL_SECS`, 1 to 3600, default
    /// 300).
    pub live_token_ttl: Duration,
    /// How long a client has to send a whole request head, from when its connection opens or
    /// its next request's first byte arrives (`ANNALS_HEADER_TIMEOUT_SECS`, default 10).
    pub header_timeout: Duration,
    /// How long a request's body has, in all, to arrive (`ANNALS_BODY_TIMEOUT_SECS`, default 60).
    pub body_timeout: Duration,
    /// How long a kept-alive connection with nothing in flight stays open
    /// (`ANNALS_IDLE_TIMEOUT_SECS`, default 60). Live tails are in flight: never idle.
    pub idle_timeout: Duration,
    /// Connections served at once (`ANNALS_MAX_CONNECTIONS`, default 1,024); more wait in the
    /// kernel's backlog. `annals serve` lowers it to fit the descriptor limit.
    pub max_connections: usize,
    /// Live tails reading history at once (`ANNALS_MAX_CATCHUP_TAILS`, default 64); one more
    /// is a `503` with `Retry-After`. A tail stops counting once it has caught up.
    pub max_catchup_tails: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            max_body_bytes: 16 * 1024 * 1024,
            max_page: 1000,
            max_page_bytes: 16 * 1024 * 1024,
            min_free_bytes: 128 * 1024 * 1024,
            sse_heartbeat: Duration::from_secs(15),
            admin_key: None,
            strict_schemas: false,
            projector_flush: Duration::from_millis(200),
            projector_batch_size: 20_000,
            projector_parallelism: 1,
            projector_priority: annals_projectors::background::Priority::Low,
            shutdown_grace: Duration::from_secs(20),
            cors_origins: Vec::new(),
            live_token_ttl: Duration::from_secs(300),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_catchup_tails: 64,
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_page", &self.max_page)
            .field("max_page_bytes", &self.max_page_bytes)
            .field("min_free_bytes", &self.min_free_bytes)
            .field("sse_heartbeat", &self.sse_heartbeat)
            .field("strict_schemas", &self.strict_schemas)
            .field("projector_flush", &self.projector_flush)
            .field("projector_batch_size", &self.projector_batch_size)
            .field("projector_parallelism", &self.projector_parallelism)
            .field("projector_priority", &self.projector_priority)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("cors_origins", &self.cors_origins)
            .field("live_token_ttl", &self.live_token_ttl)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_catchup_tails", &self.max_catchup_tails)
            .field("admin_key", &self.admin_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One layer of settings: every field optional. Flags are given as a layer too. Values are kept
/// as text until every layer is merged, so each is parsed (and its error named) in one place.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsLayer {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    #[serde(default, deserialize_with = "scalar")]
    pub max_body_bytes: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub max_page: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub sse_heartbeat_secs: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub strict_schemas: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub projector_flush_ms: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub projector_batch_size: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub projector_parallelism: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub projector_priority: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub shutdown_grace_secs: Option<String>,
    pub cors_origins: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub live_token_ttl_secs: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub max_page_bytes: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub min_free_bytes: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub header_timeout_secs: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub body_timeout_secs: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub idle_timeout_secs: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub max_connections: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub max_catchup_tails: Option<String>,
}

/// The environment variable of each setting.
const ENV: [(&str, &str); 20] = [
    ("listen", "ANNALS_LISTEN"),
    ("data_dir", "ANNALS_DATA_DIR"),
    ("max_body_bytes", "ANNALS_MAX_BODY_BYTES"),
    ("max_page", "ANNALS_MAX_PAGE"),
    ("sse_heartbeat_secs", "ANNALS_SSE_HEARTBEAT_SECS"),
    ("strict_schemas", "ANNALS_STRICT_SCHEMAS"),
    ("projector_flush_ms", "ANNALS_PROJECTOR_FLUSH_MS"),
    ("projector_parallelism", "ANNALS_PROJECTOR_PARALLELISM"),
    ("projector_priority", "ANNALS_PROJECTOR_PRIORITY"),
    ("projector_batch_size", "ANNALS_PROJECTOR_BATCH_SIZE"),
    ("shutdown_grace_secs", "ANNALS_SHUTDOWN_GRACE_SECS"),
    ("cors_origins", "ANNALS_CORS_ORIGINS"),
    ("live_token_ttl_secs", "ANNALS_LIVE_TOKEN_TTL_SECS"),
    ("max_page_bytes", "ANNALS_MAX_PAGE_BYTES"),
    ("min_free_bytes", "ANNALS_MIN_FREE_BYTES"),
    ("header_timeout_secs", "ANNALS_HEADER_TIMEOUT_SECS"),
    ("body_timeout_secs", "ANNALS_BODY_TIMEOUT_SECS"),
    ("idle_timeout_secs", "ANNALS_IDLE_TIMEOUT_SECS"),
    ("max_connections", "ANNALS_MAX_CONNECTIONS"),
    ("max_catchup_tails", "ANNALS_MAX_CATCHUP_TAILS"),
];

impl Settings {
    /// Defaults, then `file`, then the `ANNALS_*` variables of `env`, then `flags`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: SettingsLayer,
    ) -> Result<Settings, Error> {
        let mut settings = Settings::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::Config { path: path.to_owned(), reason: e.to_string() })?;
            let layer: SettingsLayer =
                toml::from_str(&text).map_err(|e| Error::Config { path: path.to_owned(), reason: e.to_string() })?;
            settings.apply(layer, &|name| format!("{name} in {}", path.display()))?;
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        let var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let from_env = SettingsLayer {
            listen: var(ENV[0].1),
            data_dir: var(ENV[1].1).map(PathBuf::from),
            max_body_bytes: var(ENV[2].1),
            max_page: var(ENV[3].1),
            sse_heartbeat_secs: var(ENV[4].1),
            strict_schemas: var(ENV[5].1),
            projector_flush_ms: var(ENV[6].1),
            projector_parallelism: var(ENV[7].1),
            projector_priority: var(ENV[8].1),
            projector_batch_size: var(ENV[9].1),
            shutdown_grace_secs: var(ENV[10].1),
            cors_origins: var("ANNALS_CORS_ORIGINS"),
            live_token_ttl_secs: var("ANNALS_LIVE_TOKEN_TTL_SECS"),
            max_page_bytes: var("ANNALS_MAX_PAGE_BYTES"),
            min_free_bytes: var("ANNALS_MIN_FREE_BYTES"),
            header_timeout_secs: var("ANNALS_HEADER_TIMEOUT_SECS"),
            body_timeout_secs: var("ANNALS_BODY_TIMEOUT_SECS"),
            idle_timeout_secs: var("ANNALS_IDLE_TIMEOUT_SECS"),
            max_connections: var("ANNALS_MAX_CONNECTIONS"),
            max_catchup_tails: var("ANNALS_MAX_CATCHUP_TAILS"),
        };
        settings.apply(from_env, &|name| {
            ENV.iter().find(|(n, _)| *n == name).map_or_else(|| name.to_owned(), |(_, v)| (*v).to_owned())
        })?;
        settings.apply(flags, &|name| format!("--{}", name.replace('_', "-")))?;
        // A secret: from the environment only, never from a file or a flag (which `ps` shows).
        settings.admin_key = var("ANNALS_ADMIN_KEY").filter(|k| !k.is_empty());
        Ok(settings)
    }

    fn apply(&mut self, layer: SettingsLayer, origin: &dyn Fn(&str) -> String) -> Result<(), Error> {
        let invalid = |name: &str, value: &str, reason: String| Error::InvalidSetting {
            setting: origin(name),
            value: value.to_owned(),
            reason,
        };
        if let Some(v) = layer.listen {
            self.listen =
                v.parse().map_err(|e| invalid("listen", &v, format!("not an address like 127.0.0.1:8080 ({e})")))?;
        }
        if let Some(v) = layer.data_dir {
            if v.as_os_str().is_empty() {
                return Err(invalid("data_dir", "", "empty".into()));
            }
            self.data_dir = v;
        }
        if let Some(v) = layer.max_body_bytes {
            self.max_body_bytes = positive(&v).map_err(|reason| invalid("max_body_bytes", &v, reason))?;
        }
        if let Some(v) = layer.max_page {
            self.max_page = positive(&v).map_err(|reason| invalid("max_page", &v, reason))?;
        }
        if let Some(v) = layer.min_free_bytes {
            self.min_free_bytes =
                v.trim().parse().map_err(|e| invalid("min_free_bytes", &v, format!("not a number of bytes ({e})")))?;
        }
        if let Some(v) = layer.max_page_bytes {
            self.max_page_bytes = positive(&v).map_err(|reason| invalid("max_page_bytes", &v, reason))?;
        }
        if let Some(v) = layer.sse_heartbeat_secs {
            let secs = positive(&v).map_err(|reason| invalid("sse_heartbeat_secs", &v, reason))?;
            self.sse_heartbeat = Duration::from_secs(secs as u64);
        }
        if let Some(v) = layer.shutdown_grace_secs {
            let secs = positive(&v).map_err(|reason| invalid("shutdown_grace_secs", &v, reason))?;
            self.shutdown_grace = Duration::from_secs(secs as u64);
        }
        let seconds = |name: &str, v: &str| -> Result<Duration, Error> {
            let secs = positive(v).map_err(|reason| invalid(name, v, reason))?;
            Ok(Duration::from_secs(secs as u64))
        };
        if let Some(v) = layer.header_timeout_secs {
            self.header_timeout = seconds("header_timeout_secs", &v)?;
        }
        if let Some(v) = layer.body_timeout_secs {
            self.body_timeout = seconds("body_timeout_secs", &v)?;
        }
        if let Some(v) = layer.idle_timeout_secs {
            self.idle_timeout = seconds("idle_timeout_secs", &v)?;
        }
        if let Some(v) = layer.max_connections {
            self.max_connections = positive(&v).map_err(|reason| invalid("max_connections", &v, reason))?;
        }
        if let Some(v) = layer.max_catchup_tails {
            self.max_catchup_tails = positive(&v).map_err(|reason| invalid("max_catchup_tails", &v, reason))?;
        }
        if let Some(v) = layer.projector_flush_ms {
            let ms = positive(&v).map_err(|reason| invalid("projector_flush_ms", &v, reason))?;
            if ms > 60_000 {
                return Err(invalid("projector_flush_ms", &v, "at most 60000 (a minute)".into()));
            }
            self.projector_flush = Duration::from_millis(ms as u64);
        }
        if let Some(v) = layer.projector_batch_size {
            let n = positive(&v).map_err(|reason| invalid("projector_batch_size", &v, reason))?;
            if n > 100_000 {
                return Err(invalid("projector_batch_size", &v, "at most 100000".into()));
            }
            self.projector_batch_size = n;
        }
        if let Some(v) = layer.projector_parallelism {
            let n = positive(&v).map_err(|reason| invalid("projector_parallelism", &v, reason))?;
            if n > 64 {
                return Err(invalid("projector_parallelism", &v, "at most 64".into()));
            }
            self.projector_parallelism = n;
        }
        if let Some(v) = layer.projector_priority {
            self.projector_priority =
                v.trim().parse().map_err(|reason: String| invalid("projector_priority", &v, reason))?;
        }
        if let Some(v) = layer.cors_origins {
            self.cors_origins = cors_origins(&v).map_err(|reason| invalid("cors_origins", &v, reason))?;
        }
        if let Some(v) = layer.live_token_ttl_secs {
            let secs = positive(&v).map_err(|reason| invalid("live_token_ttl_secs", &v, reason))?;
            if secs > 3600 {
                return Err(invalid("live_token_ttl_secs", &v, "at most 3600 (an hour)".into()));
            }
            self.live_token_ttl = Duration::from_secs(secs as u64);
        }
        if let Some(v) = layer.strict_schemas {
            self.strict_schemas = match v.trim() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => return Err(invalid("strict_schemas", &v, "must be true or false".into())),
            };
        }
        Ok(())
    }
}

/// Comma-separated exact origins (`scheme://host[:port]`, no path, no `*`): a browser sends
/// its page's origin in that form, and only an exact match gets CORS headers.
fn cors_origins(v: &str) -> Result<Vec<String>, String> {
    let mut origins = Vec::new();
    for origin in v.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let rest = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
        let host_ok = rest.is_some_and(|r| !r.is_empty() && !r.contains(['/', '*', '?', '#', ' ']));
        if !host_ok || axum::http::HeaderValue::from_str(origin).is_err() {
            return Err(format!(
                "{origin:?} is not an origin like https://logs.example.com or http://127.0.0.1:3000 (exact, no path, no *)"
            ));
        }
        origins.push(origin.to_owned());
    }
    Ok(origins)
}

fn positive(v: &str) -> Result<usize, String> {
    match v.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a whole number ({e})")),
    }
}

/// A value in the config file: a number or a boolean may be written bare (`max_page = 50`,
/// `strict_schemas = true`) or quoted, as in the environment.
fn scalar<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a string, a number or a boolean")]
    enum Scalar {
        Text(String),
        Integer(i64),
        Float(f64),
        Boolean(bool),
    }
    Ok(Option::<Scalar>::deserialize(deserializer)?.map(|value| match value {
        Scalar::Text(text) => text,
        Scalar::Integer(n) => n.to_string(),
        Scalar::Float(x) => x.to_string(),
        Scalar::Boolean(b) => b.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_layers_override_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("annals.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\ndata_dir = \"/from/file\"\nmax_page = \"50\"\n").unwrap();
        let env = [("ANNALS_DATA_DIR".to_owned(), "/from/env".to_owned())];
        let flags = SettingsLayer { max_page: Some("7".into()), ..SettingsLayer::default() };
        let s = Settings::load(Some(&file), env, flags).unwrap();
        assert_eq!(s.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(s.data_dir, PathBuf::from("/from/env"));
        assert_eq!(s.max_page, 7);
        assert_eq!(s.max_body_bytes, Settings::default().max_body_bytes);
    }

    #[test]
    fn the_config_file_takes_numbers_and_booleans_bare_or_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("annals.toml");
        std::fs::write(&file, "max_page = 50\nstrict_schemas = true\nsse_heartbeat_secs = \"3\"\n").unwrap();
        let s = Settings::load(Some(&file), [], SettingsLayer::default()).unwrap();
        assert_eq!((s.max_page, s.strict_schemas, s.sse_heartbeat), (50, true, Duration::from_secs(3)));
        std::fs::write(&file, "max_page = [1]\n").unwrap();
        let err = Settings::load(Some(&file), [], SettingsLayer::default()).unwrap_err().to_string();
        assert!(err.contains("max_page") && err.contains("a string, a number or a boolean"), "{err}");
        std::fs::write(&file, "max_page = 0\n").unwrap();
        let err = Settings::load(Some(&file), [], SettingsLayer::default()).unwrap_err().to_string();
        assert!(err.contains("max_page") && err.contains("at least 1"), "{err}");
    }

    #[test]
    fn an_invalid_setting_is_named_with_where_it_came_from() {
        let env = [("ANNALS_LISTEN".to_owned(), "localhost".to_owned())];
        let err = Settings::load(None, env, SettingsLayer::default()).unwrap_err().to_string();
        assert!(err.contains("ANNALS_LISTEN") && err.contains("localhost"), "{err}");

        let flags = SettingsLayer { max_page: Some("0".into()), ..SettingsLayer::default() };
        let err = Settings::load(None, [], flags).unwrap_err().to_string();
        assert!(err.contains("--max-page") && err.contains("at least 1"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("annals.toml");
        std::fs::write(&file, "listn = \"127.0.0.1:1\"\n").unwrap();
        let err = Settings::load(Some(&file), [], SettingsLayer::default()).unwrap_err().to_string();
        assert!(err.contains("annals.toml") && err.contains("listn"), "{err}");

        for (name, value, expected) in [
            ("ANNALS_PROJECTOR_PARALLELISM", "65", "at most 64"),
            ("ANNALS_PROJECTOR_PARALLELISM", "0", "at least 1"),
            ("ANNALS_PROJECTOR_BATCH_SIZE", "100001", "at most 100000"),
            ("ANNALS_PROJECTOR_PRIORITY", "high", "idle, low or normal"),
        ] {
            let env = [(name.to_owned(), value.to_owned())];
            let err = Settings::load(None, env, SettingsLayer::default()).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(expected), "{err}");
        }
    }

    #[test]
    fn cors_origins_and_the_live_token_lifetime_are_read_and_checked() {
        let env = [
            ("ANNALS_CORS_ORIGINS".to_owned(), "https://logs.example.com, http://127.0.0.1:3000".to_owned()),
            ("ANNALS_LIVE_TOKEN_TTL_SECS".to_owned(), "60".to_owned()),
        ];
        let s = Settings::load(None, env, SettingsLayer::default()).unwrap();
        assert_eq!(s.cors_origins, ["https://logs.example.com", "http://127.0.0.1:3000"]);
        assert_eq!(s.live_token_ttl, Duration::from_secs(60));
        assert!(Settings::default().cors_origins.is_empty(), "none by default");
        for (name, value, expected) in [
            ("ANNALS_CORS_ORIGINS", "*", "not an origin"),
            ("ANNALS_CORS_ORIGINS", "https://logs.example.com/ui", "not an origin"),
            ("ANNALS_CORS_ORIGINS", "logs.example.com", "not an origin"),
            ("ANNALS_LIVE_TOKEN_TTL_SECS", "3601", "at most 3600"),
        ] {
            let env = [(name.to_owned(), value.to_owned())];
            let err = Settings::load(None, env, SettingsLayer::default()).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(expected), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("annals.toml");
        std::fs::write(&file, "cors_origins = \"https://a.example\"\nlive_token_ttl_secs = 30\n").unwrap();
        let s = Settings::load(Some(&file), [], SettingsLayer::default()).unwrap();
        assert_eq!((s.cors_origins, s.live_token_ttl), (vec!["https://a.example".to_owned()], Duration::from_secs(30)));
    }

    #[test]
    fn connection_limits_are_read_from_the_environment_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("annals.toml");
        std::fs::write(&file, "header_timeout_secs = 3\nmax_connections = 100\nmax_page_bytes = 4096\n").unwrap();
        let env = [
            ("ANNALS_BODY_TIMEOUT_SECS".to_owned(), "7".to_owned()),
            ("ANNALS_IDLE_TIMEOUT_SECS".to_owned(), "9".to_owned()),
            ("ANNALS_MAX_CATCHUP_TAILS".to_owned(), "5".to_owned()),
        ];
        let s = Settings::load(Some(&file), env, SettingsLayer::default()).unwrap();
        assert_eq!((s.header_timeout, s.body_timeout, s.idle_timeout), (secs(3), secs(7), secs(9)));
        assert_eq!((s.max_connections, s.max_catchup_tails, s.max_page_bytes), (100, 5, 4096));
        let env = [("ANNALS_MAX_CONNECTIONS".to_owned(), "0".to_owned())];
        let err = Settings::load(None, env, SettingsLayer::default()).unwrap_err().to_string();
        assert!(err.contains("ANNALS_MAX_CONNECTIONS") && err.contains("at least 1"), "{err}");
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn projector_settings_are_read() {
        let env = [
            ("ANNALS_PROJECTOR_PARALLELISM".to_owned(), "4".to_owned()),
            ("ANNALS_PROJECTOR_PRIORITY".to_owned(), "idle".to_owned()),
            ("ANNALS_PROJECTOR_BATCH_SIZE".to_owned(), "500".to_owned()),
        ];
        let s = Settings::load(None, env, SettingsLayer::default()).unwrap();
        assert_eq!(s.projector_parallelism, 4);
        assert_eq!(s.projector_batch_size, 500);
        assert_eq!(s.projector_priority, annals_projectors::background::Priority::Idle);
    }
}
