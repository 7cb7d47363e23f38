//! How annals reaches an Elasticsearch cluster: node URLs, credentials, TLS, the index prefix
//! and the bulk bounds. Plain data, filled by the settings layer (`[views]` with `kind = "elasticsearch"`) and by
//! tests; [`EsConfig::transport`] turns it into the client's transport.

use std::path::PathBuf;
use std::time::Duration;

use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::transport::{MultiNodeConnectionPool, SingleNodeConnectionPool, Transport, TransportBuilder};
pub use url::Url;

use crate::error::ViewError;

/// Everything the backend needs to know about the cluster.
#[derive(Clone)]
pub struct EsConfig {
    /// One or more node URLs (`http://es1:9200`); requests go round-robin over several.
    pub urls: Vec<Url>,
    pub auth: EsAuth,
    pub tls: EsTls,
    /// Prepended to every index, alias and template name (`annals-` gives `annals-messages-000002`).
    pub index_prefix: String,
    /// A `_bulk` request holds at most this many documents…
    pub bulk_max_docs: usize,
    /// …and at most this many bytes of body (one document larger than this goes alone).
    pub bulk_max_bytes: usize,
    /// Primary shards of a new generation's index. Reads route by tenant, so a tenant's documents
    /// live on one shard whatever this is, and facet counts stay exact.
    pub shards: u32,
    /// Replicas of a serving index (a rebuild writes with none and restores this when caught up).
    pub replicas: u32,
    pub request_timeout: Duration,
    /// Retries of the items a `_bulk` answered `429` or `5xx` for, before the commit fails.
    pub retry: RetryPolicy,
    /// How long an index a rebuild replaced is kept after the switch, for readers still on it.
    pub old_index_grace: Duration,
}

/// Credentials sent with every request.
#[derive(Clone, PartialEq, Eq)]
pub enum EsAuth {
    None,
    Basic {
        username: String,
        password: String,
    },
    /// An API key as its id and secret (`POST /_security/api_key` answers both)…
    ApiKey {
        id: String,
        key: String,
    },
    /// …or as the base64 `encoded` value that call also answers.
    EncodedApiKey(String),
}

/// How the server's certificate is checked on `https://` URLs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EsTls {
    /// A PEM CA certificate to trust besides the system's (a cluster's self-signed CA).
    pub ca_certificate: Option<PathBuf>,
    /// `false` accepts any certificate: for a local test cluster only.
    pub verify: bool,
}

/// Jittered exponential backoff of the retried items (`retry.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 8, base: Duration::from_millis(100), max: Duration::from_secs(10) }
    }
}

impl EsConfig {
    /// A configuration with the defaults for everything but the URL.
    pub fn new(url: Url) -> Self {
        EsConfig {
            urls: vec![url],
            auth: EsAuth::None,
            tls: EsTls { ca_certificate: None, verify: true },
            index_prefix: "annals-".to_owned(),
            bulk_max_docs: 1000,
            bulk_max_bytes: 5 * 1024 * 1024,
            shards: 1,
            replicas: 1,
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            old_index_grace: Duration::from_secs(300),
        }
    }

    /// The client transport these settings describe. Errors name the setting at fault.
    pub fn transport(&self) -> Result<Transport, ViewError> {
        let builder = match self.urls.as_slice() {
            [] => {
                return Err(ViewError::Config {
                    setting: "views.urls (ANNALS_VIEWS__URLS)",
                    reason: "no URL given".into(),
                })
            }
            [one] => TransportBuilder::new(SingleNodeConnectionPool::new(one.clone())),
            many => TransportBuilder::new(MultiNodeConnectionPool::round_robin(many.to_vec(), None)),
        };
        let mut builder = builder.timeout(self.request_timeout).enable_meta_header(false);
        builder = match &self.auth {
            EsAuth::None => builder,
            EsAuth::Basic { username, password } => {
                builder.auth(Credentials::Basic(username.clone(), password.clone()))
            }
            EsAuth::ApiKey { id, key } => builder.auth(Credentials::ApiKey(id.clone(), key.clone())),
            EsAuth::EncodedApiKey(encoded) => builder.auth(Credentials::EncodedApiKey(encoded.clone())),
        };
        let validation = match (&self.tls.ca_certificate, self.tls.verify) {
            (_, false) => CertificateValidation::None,
            (None, true) => CertificateValidation::Default,
            (Some(path), true) => {
                let pem = std::fs::read(path).map_err(|e| ViewError::Config {
                    setting: "views.ca_certificate (ANNALS_VIEWS__CA_CERTIFICATE)",
                    reason: format!("cannot read {}: {e}", path.display()),
                })?;
                let cert = Certificate::from_pem(&pem).map_err(|e| ViewError::Config {
                    setting: "views.ca_certificate (ANNALS_VIEWS__CA_CERTIFICATE)",
                    reason: format!("{} is not a PEM certificate: {e}", path.display()),
                })?;
                CertificateValidation::Full(cert)
            }
        };
        builder
            .cert_validation(validation)
            .build()
            .map_err(|e| ViewError::Config { setting: "views.urls (ANNALS_VIEWS__URLS)", reason: e.to_string() })
    }
}

/// Secrets stay out of logs.
impl std::fmt::Debug for EsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsConfig")
            .field("urls", &self.urls.iter().map(Url::as_str).collect::<Vec<_>>())
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("index_prefix", &self.index_prefix)
            .field("bulk_max_docs", &self.bulk_max_docs)
            .field("bulk_max_bytes", &self.bulk_max_bytes)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for EsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EsAuth::None => "None",
            EsAuth::Basic { .. } => "Basic(***)",
            EsAuth::ApiKey { .. } | EsAuth::EncodedApiKey(_) => "ApiKey(***)",
        })
    }
}
