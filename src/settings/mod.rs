//! The settings of `annals serve`, nested by section, read alike from a TOML file and from the
//! environment: `[store] kind = "postgres"` is `ANNALS_STORE__KIND=postgres` (section and key
//! joined by a double underscore, as keys hold single ones), and the top-level `role` is
//! `ANNALS_ROLE`. Each section is a file of this folder that owns its fields, their defaults,
//! their parsing and their older flat names (`ANNALS_MAX_PAGE`, still read): adding a field or a
//! backend touches that file. `load.rs` merges the layers; `check` refuses the combinations no
//! process can run, naming the setting and what to use instead.

mod http;
mod invalidations;
mod load;
mod parse;
mod projectors;
mod store;
mod views;

use std::path::PathBuf;

pub use http::HttpSettings;
pub use invalidations::InvalidationSettings;
pub use load::{env_name, Flags};
pub use projectors::ProjectorSettings;
pub use store::{StoreKind, StoreSettings};
pub use views::{ViewsKind, ViewsSettings};

use crate::Error;

/// Every setting of `annals serve`.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// What this process runs (`role`, `ANNALS_ROLE`, `--role`).
    pub role: Role,
    /// The first operator key, used only when the store has none yet (`ANNALS_ADMIN_KEY`: a
    /// secret, so from the environment only, never a file or a flag, which `ps` shows).
    pub admin_key: Option<String>,
    pub store: StoreSettings,
    pub views: ViewsSettings,
    pub http: HttpSettings,
    pub projectors: ProjectorSettings,
    pub invalidations: InvalidationSettings,
}

/// What one `annals serve` process runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// Everything in one process: the HTTP API and the projectors (today's only mode).
    #[default]
    All,
    /// The HTTP API, appends and the key ring, reading views that projector processes keep.
    Api,
    /// The projectors alone, keeping the views of a store that API processes share.
    Projector,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Api => "api",
            Role::Projector => "projector",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "all" => Ok(Role::All),
            "api" => Ok(Role::Api),
            "projector" => Ok(Role::Projector),
            _ => Err("must be all, api or projector".into()),
        }
    }
}

impl Settings {
    /// Defaults, then the TOML `file`, then the `ANNALS_*` variables of `env`, then `flags`; then
    /// [`check`](Settings::check).
    pub fn load(
        file: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: Flags,
    ) -> Result<Settings, Error> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let mut settings = Settings::default();
        for g in load::given(file, &env, flags)? {
            settings.set(g.section, g.key, &g.value).map_err(|reason| Error::InvalidSetting {
                setting: g.origin,
                value: g.value,
                reason,
            })?;
        }
        settings.admin_key =
            env.iter().find(|(k, _)| k == "ANNALS_ADMIN_KEY").map(|(_, v)| v.clone()).filter(|k| !k.is_empty());
        settings.check()?;
        Ok(settings)
    }

    /// Sets one key of one section (`""`: the top level) from its text.
    fn set(&mut self, section: &str, key: &str, value: &str) -> Result<(), String> {
        use parse::Section;
        match section {
            StoreSettings::NAME => self.store.set(key, value),
            ViewsSettings::NAME => self.views.set(key, value),
            HttpSettings::NAME => self.http.set(key, value),
            ProjectorSettings::NAME => self.projectors.set(key, value),
            InvalidationSettings::NAME => self.invalidations.set(key, value),
            _ => {
                self.role = value.parse()?;
                Ok(())
            }
        }
    }

    /// Refuses a combination that no process can run, naming the setting at fault and what to
    /// use instead. `annals serve` (and the tests' servers) check before opening anything.
    pub fn check(&self) -> Result<(), Error> {
        let refuse = |setting: &str, reason: String| Err(Error::Combination { setting: setting.to_owned(), reason });
        if self.role != Role::All && self.store.kind == StoreKind::Embedded {
            return refuse(
                "role (ANNALS_ROLE, --role)",
                format!(
                    "role \"{}\" runs beside other annals processes on one shared store, and the embedded store belongs \
                     to the one process that opened it: use role \"all\" with the embedded store, or \
                     [store] kind = \"postgres\" (ANNALS_STORE__KIND) with a url",
                    self.role.as_str()
                ),
            );
        }
        if let Some(reason) = self.check_views() {
            return Err(reason);
        }
        if self.role != Role::All && self.views.kind == ViewsKind::Tantivy && self.views.dir.is_none() {
            return refuse(
                "views.dir (ANNALS_VIEWS__DIR)",
                format!(
                    "role \"{}\" shares the views with the other processes of the deployment (projector processes \
                     write them, api processes read them): set [views] dir to the directory they share; the default, \
                     views in this process's own data_dir, is read by no other process",
                    self.role.as_str()
                ),
            );
        }
        match (self.store.kind, &self.store.url) {
            (StoreKind::Postgres, None) => {
                return refuse(
                    "store.url (ANNALS_STORE__URL)",
                    "[store] kind = \"postgres\" needs the database's URL: set url = \"postgres://USER@HOST/DB\", \
                     or use kind = \"embedded\""
                        .into(),
                )
            }
            (StoreKind::Embedded, Some(_)) => {
                return refuse(
                    "store.url (ANNALS_STORE__URL)",
                    "a url is for kind = \"postgres\"; the embedded store keeps its log in [store] data_dir: \
                     set [store] kind = \"postgres\" (ANNALS_STORE__KIND), or remove the url"
                        .into(),
                )
            }
            _ => {}
        }
        if let Err((setting, reason)) = self.invalidations.redis_config() {
            return refuse(&setting, reason);
        }
        if self.store.kind == StoreKind::Embedded && self.store.pool_size.is_some() {
            return refuse(
                "store.pool_size (ANNALS_STORE__POOL_SIZE)",
                "a pool is for kind = \"postgres\": remove pool_size, or set [store] kind = \"postgres\"".into(),
            );
        }
        if self.store.kind == StoreKind::Embedded && self.store.parallel_insert_min_events.is_some() {
            return refuse(
                "store.parallel_insert_min_events (ANNALS_STORE__PARALLEL_INSERT_MIN_EVENTS)",
                "it chooses how PostgreSQL appends insert: remove it, or set [store] kind = \"postgres\"".into(),
            );
        }
        Ok(())
    }

    /// The `[views]` settings that do not fit together. The embedded store with Elasticsearch
    /// views is allowed (role `all` only, as the embedded store requires): one process, its
    /// views in a cluster that other tools (Kibana) read too.
    fn check_views(&self) -> Option<Error> {
        let refuse = |setting: &str, reason: String| Some(Error::Combination { setting: setting.to_owned(), reason });
        let v = &self.views;
        match v.kind {
            ViewsKind::Tantivy => v.elasticsearch_keys().and_then(|name| {
                refuse(name, "is a setting of [views] kind = \"elasticsearch\" (ANNALS_VIEWS__KIND); tantivy views live in [views] dir".into())
            }),
            ViewsKind::Elasticsearch if v.urls.is_empty() => refuse(
                "views.urls (ANNALS_VIEWS__URLS)",
                "[views] kind = \"elasticsearch\" needs the cluster: set urls = \"http://HOST:9200\" (several: comma-separated)".into(),
            ),
            ViewsKind::Elasticsearch if v.dir.is_some() => refuse(
                "views.dir (ANNALS_VIEWS__DIR)",
                "a directory is for kind = \"tantivy\"; Elasticsearch views live in the cluster [views] urls names".into(),
            ),
            ViewsKind::Elasticsearch if v.username.is_some() != v.password.is_some() => refuse(
                if v.username.is_some() { "views.password (ANNALS_VIEWS__PASSWORD)" } else { "views.username (ANNALS_VIEWS__USERNAME)" },
                "basic authentication needs both username and password".into(),
            ),
            ViewsKind::Elasticsearch if v.username.is_some() && v.api_key.is_some() => refuse(
                "views.api_key (ANNALS_VIEWS__API_KEY)",
                "set either an api_key or a username and password, not both".into(),
            ),
            ViewsKind::Elasticsearch => None,
        }
    }

    /// Where the views live: `[views] dir`, or `views` in the store's data directory.
    pub fn views_dir(&self) -> PathBuf {
        self.views.dir.clone().unwrap_or_else(|| self.store.data_dir.join("views"))
    }

    /// What the HTTP layer needs, typed.
    pub fn api(&self) -> annals_query_api::ApiSettings {
        let h = &self.http;
        annals_query_api::ApiSettings {
            listen: h.listen,
            data_dir: self.store.data_dir.clone(),
            max_body_bytes: h.max_body_bytes,
            max_page: h.max_page,
            max_page_bytes: h.max_page_bytes,
            sse_heartbeat: h.sse_heartbeat,
            strict_schemas: h.strict_schemas,
            admin_key: self.admin_key.clone(),
            shutdown_grace: h.shutdown_grace,
            cors_origins: h.cors_origins.clone(),
            live_token_ttl: h.live_token_ttl,
            header_timeout: h.header_timeout,
            body_timeout: h.body_timeout,
            idle_timeout: h.idle_timeout,
            max_connections: h.max_connections,
            max_catchup_tails: h.max_catchup_tails,
            cache: self.invalidations.cache(),
        }
    }
}
