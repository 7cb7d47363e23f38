//! `[http]`: the API's listener, timeouts and limits, and what its requests may do. Each key also
//! answers to its flat name of earlier versions (`ANNALS_MAX_PAGE`, `max_page` at the top of a
//! file), which the README and scripts use.

use std::net::SocketAddr;
use std::time::Duration;

use super::parse::{positive, seconds, Section};

/// `[http]`; the fields' meaning is `annals_query_api::ApiSettings`'s.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub max_page: usize,
    pub max_page_bytes: usize,
    pub sse_heartbeat: Duration,
    pub strict_schemas: bool,
    pub shutdown_grace: Duration,
    pub cors_origins: Vec<String>,
    pub live_token_ttl: Duration,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_catchup_tails: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        let api = annals_query_api::ApiSettings::default();
        HttpSettings {
            listen: api.listen,
            max_body_bytes: api.max_body_bytes,
            max_page: api.max_page,
            max_page_bytes: api.max_page_bytes,
            sse_heartbeat: api.sse_heartbeat,
            strict_schemas: api.strict_schemas,
            shutdown_grace: api.shutdown_grace,
            cors_origins: api.cors_origins,
            live_token_ttl: api.live_token_ttl,
            header_timeout: api.header_timeout,
            body_timeout: api.body_timeout,
            idle_timeout: api.idle_timeout,
            max_connections: api.max_connections,
            max_catchup_tails: api.max_catchup_tails,
        }
    }
}

impl Section for HttpSettings {
    const NAME: &'static str = "http";
    const KEYS: &'static [(&'static str, Option<&'static str>)] = &[
        ("listen", Some("ANNALS_LISTEN")),
        ("max_body_bytes", Some("ANNALS_MAX_BODY_BYTES")),
        ("max_page", Some("ANNALS_MAX_PAGE")),
        ("max_page_bytes", Some("ANNALS_MAX_PAGE_BYTES")),
        ("sse_heartbeat_secs", Some("ANNALS_SSE_HEARTBEAT_SECS")),
        ("strict_schemas", Some("ANNALS_STRICT_SCHEMAS")),
        ("shutdown_grace_secs", Some("ANNALS_SHUTDOWN_GRACE_SECS")),
        ("cors_origins", Some("ANNALS_CORS_ORIGINS")),
        ("live_token_ttl_secs", Some("ANNALS_LIVE_TOKEN_TTL_SECS")),
        ("header_timeout_secs", Some("ANNALS_HEADER_TIMEOUT_SECS")),
        ("body_timeout_secs", Some("ANNALS_BODY_TIMEOUT_SECS")),
        ("idle_timeout_secs", Some("ANNALS_IDLE_TIMEOUT_SECS")),
        ("max_connections", Some("ANNALS_MAX_CONNECTIONS")),
        ("max_catchup_tails", Some("ANNALS_MAX_CATCHUP_TAILS")),
    ];

    fn set(&mut self, key: &str, v: &str) -> Result<(), String> {
        match key {
            "listen" => {
                self.listen = v.trim().parse().map_err(|e| format!("not an address like 127.0.0.1:8080 ({e})"))?
            }
            "max_body_bytes" => self.max_body_bytes = positive(v)?,
            "max_page" => self.max_page = positive(v)?,
            "max_page_bytes" => self.max_page_bytes = positive(v)?,
            "sse_heartbeat_secs" => self.sse_heartbeat = seconds(v)?,
            "strict_schemas" => {
                self.strict_schemas = match v.trim() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => return Err("must be true or false".into()),
                }
            }
            "shutdown_grace_secs" => self.shutdown_grace = seconds(v)?,
            "cors_origins" => self.cors_origins = annals_query_api::parse_cors_origins(v)?,
            "live_token_ttl_secs" => {
                let ttl = seconds(v)?;
                if ttl > Duration::from_secs(3600) {
                    return Err("at most 3600 (an hour)".into());
                }
                self.live_token_ttl = ttl;
            }
            "header_timeout_secs" => self.header_timeout = seconds(v)?,
            "body_timeout_secs" => self.body_timeout = seconds(v)?,
            "idle_timeout_secs" => self.idle_timeout = seconds(v)?,
            "max_connections" => self.max_connections = positive(v)?,
            "max_catchup_tails" => self.max_catchup_tails = positive(v)?,
            _ => return Err("not a setting of this section".into()),
        }
        Ok(())
    }
}
