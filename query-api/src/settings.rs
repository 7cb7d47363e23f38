//! The typed settings of the HTTP API: what `Application::build` needs and nothing else. Where
//! they come from (defaults, a TOML file, `ANNALS_*` variables, flags) and how a wrong value is
//! named is the binary's business (`src/settings/`): the API takes them already checked.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What the HTTP layer needs, typed: `annals serve` builds it from its nested settings
/// (`[http]`, and the store's data directory for the integrity tree).
#[derive(Clone)]
pub struct ApiSettings {
    /// Address to listen on; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Where the API keeps its own files (the integrity tree): the store's data directory
    /// (`[store] data_dir`).
    pub data_dir: PathBuf,
    /// Largest request body accepted, in bytes (`413` past it).
    pub max_body_bytes: usize,
    /// Most events one read returns (a larger `limit` is capped to it).
    pub max_page: usize,
    /// Most bytes of events (type, data and metadata) one page of `GET /v1/events` holds
    /// (`ANNALS_MAX_PAGE_BYTES`, default 16 MiB); a page's first event is sent whatever its
    /// size, and `next` continues after the last event sent.
    pub max_page_bytes: usize,
    /// How often an idle live tail gets a heartbeat comment.
    pub sse_heartbeat: Duration,
    /// Refuse events of types that have no registered schema (otherwise stored as opaque JSON).
    pub strict_schemas: bool,
    /// The first admin key, used only when the store has no key yet (`ANNALS_ADMIN_KEY`).
    pub admin_key: Option<String>,
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
    /// The response cache's bounds (`[http] cache_max_bytes`, `cache_ttl_secs`); it is on only
    /// when the process has an invalidation feed.
    pub cache: crate::cache::CacheSettings,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            max_body_bytes: 16 * 1024 * 1024,
            max_page: 1000,
            max_page_bytes: 16 * 1024 * 1024,
            sse_heartbeat: Duration::from_secs(15),
            admin_key: None,
            strict_schemas: false,
            shutdown_grace: Duration::from_secs(20),
            cors_origins: Vec::new(),
            live_token_ttl: Duration::from_secs(300),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_catchup_tails: 64,
            cache: crate::cache::CacheSettings::default(),
        }
    }
}

impl std::fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSettings")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_page", &self.max_page)
            .field("max_page_bytes", &self.max_page_bytes)
            .field("sse_heartbeat", &self.sse_heartbeat)
            .field("strict_schemas", &self.strict_schemas)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("cors_origins", &self.cors_origins)
            .field("live_token_ttl", &self.live_token_ttl)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_catchup_tails", &self.max_catchup_tails)
            .field("cache", &self.cache)
            .field("admin_key", &self.admin_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Comma-separated exact origins (`scheme://host[:port]`, no path, no `*`): a browser sends
/// its page's origin in that form, and only an exact match gets CORS headers. The settings loader checks `cors_origins` with it.
pub fn parse_cors_origins(v: &str) -> Result<Vec<String>, String> {
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
