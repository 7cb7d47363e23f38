//! `[views]`: which backend keeps the read views, and where. A new backend is a `ViewsKind`
//! variant and its fields here, and its arm in `compose/views.rs`.

use std::path::PathBuf;

use super::parse::{positive, Section};

/// The view store backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ViewsKind {
    /// tantivy indexes in local directories (`dir`).
    #[default]
    Tantivy,
    /// An Elasticsearch cluster (`urls`), shared by every process of a deployment.
    Elasticsearch,
}

/// `[views]`.
#[derive(Clone, Debug, Default)]
pub struct ViewsSettings {
    /// `kind`: `tantivy` (default) or `elasticsearch`.
    pub kind: ViewsKind,
    /// `dir` (tantivy): where the views live; default `views` in `[store] data_dir`.
    pub dir: Option<PathBuf>,
    /// `urls` (elasticsearch): the nodes, comma-separated (`http://es1:9200,http://es2:9200`).
    pub urls: Vec<String>,
    /// `username` and `password` (elasticsearch): basic authentication.
    pub username: Option<String>,
    pub password: Option<String>,
    /// `api_key` (elasticsearch): an API key, as the `encoded` value Elasticsearch answers.
    pub api_key: Option<String>,
    /// `ca_certificate` (elasticsearch): a PEM file of the CA that signed the cluster's certificate.
    pub ca_certificate: Option<PathBuf>,
    /// `tls_verify` (elasticsearch): `false` accepts any certificate (a local test cluster only).
    pub tls_verify: Option<bool>,
    /// `index_prefix` (elasticsearch): of every index, alias and template; default `annals-`.
    pub index_prefix: Option<String>,
    /// `bulk_max_docs` and `bulk_max_bytes` (elasticsearch): the bounds of one `_bulk` request.
    pub bulk_max_docs: Option<usize>,
    pub bulk_max_bytes: Option<usize>,
    /// `replicas` (elasticsearch): replicas of a serving index; default 1.
    pub replicas: Option<u32>,
}

impl ViewsSettings {
    /// Whether any setting only the Elasticsearch backend reads is given (for `check`).
    pub fn elasticsearch_keys(&self) -> Option<&'static str> {
        let given = [
            (!self.urls.is_empty(), "views.urls (ANNALS_VIEWS__URLS)"),
            (self.username.is_some(), "views.username (ANNALS_VIEWS__USERNAME)"),
            (self.password.is_some(), "views.password (ANNALS_VIEWS__PASSWORD)"),
            (self.api_key.is_some(), "views.api_key (ANNALS_VIEWS__API_KEY)"),
            (self.ca_certificate.is_some(), "views.ca_certificate (ANNALS_VIEWS__CA_CERTIFICATE)"),
            (self.tls_verify.is_some(), "views.tls_verify (ANNALS_VIEWS__TLS_VERIFY)"),
            (self.index_prefix.is_some(), "views.index_prefix (ANNALS_VIEWS__INDEX_PREFIX)"),
            (self.bulk_max_docs.is_some(), "views.bulk_max_docs (ANNALS_VIEWS__BULK_MAX_DOCS)"),
            (self.bulk_max_bytes.is_some(), "views.bulk_max_bytes (ANNALS_VIEWS__BULK_MAX_BYTES)"),
            (self.replicas.is_some(), "views.replicas (ANNALS_VIEWS__REPLICAS)"),
        ];
        given.into_iter().find_map(|(set, name)| set.then_some(name))
    }
}

impl Section for ViewsSettings {
    const NAME: &'static str = "views";
    const KEYS: &'static [(&'static str, Option<&'static str>)] = &[
        ("kind", None),
        ("dir", None),
        ("urls", None),
        ("username", None),
        ("password", None),
        ("api_key", None),
        ("ca_certificate", None),
        ("tls_verify", None),
        ("index_prefix", None),
        ("bulk_max_docs", None),
        ("bulk_max_bytes", None),
        ("replicas", None),
    ];

    fn set(&mut self, key: &str, v: &str) -> Result<(), String> {
        let nonempty = |v: &str| if v.trim().is_empty() { Err("empty".to_owned()) } else { Ok(v.trim().to_owned()) };
        match key {
            "kind" => {
                self.kind = match v.trim() {
                    "tantivy" => ViewsKind::Tantivy,
                    "elasticsearch" => ViewsKind::Elasticsearch,
                    _ => return Err("must be tantivy or elasticsearch".into()),
                }
            }
            "dir" if v.is_empty() => return Err("empty".into()),
            "dir" => self.dir = Some(PathBuf::from(v)),
            "urls" => {
                let urls: Vec<String> =
                    v.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect();
                if urls.is_empty() {
                    return Err("empty".into());
                }
                for u in &urls {
                    if !(u.starts_with("http://") || u.starts_with("https://")) {
                        return Err(format!("{u:?} is not an http:// or https:// URL"));
                    }
                }
                self.urls = urls;
            }
            "username" => self.username = Some(nonempty(v)?),
            "password" if v.is_empty() => return Err("empty".into()),
            "password" => self.password = Some(v.to_owned()),
            "api_key" => self.api_key = Some(nonempty(v)?),
            "ca_certificate" => self.ca_certificate = Some(PathBuf::from(nonempty(v)?)),
            "tls_verify" => {
                self.tls_verify = Some(match v.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err("must be true or false".into()),
                })
            }
            "index_prefix" => {
                // Elasticsearch index names: lowercase, and none of `\/*?"<>| ,#:`.
                let ok = v.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
                if !ok || v.starts_with(['-', '_', '.']) {
                    return Err("lowercase letters, digits, - _ and . only, not starting with - _ or .".into());
                }
                self.index_prefix = Some(v.to_owned());
            }
            "bulk_max_docs" => self.bulk_max_docs = Some(positive(v)?),
            "bulk_max_bytes" => {
                let n = positive(v)?;
                if n < 64 * 1024 {
                    return Err("at least 65536 bytes".into());
                }
                self.bulk_max_bytes = Some(n);
            }
            "replicas" => self.replicas = Some(v.trim().parse().map_err(|e| format!("not a whole number ({e})"))?),
            _ => return Err("not a setting of this section".into()),
        }
        Ok(())
    }
}
