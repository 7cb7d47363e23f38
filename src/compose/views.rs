//! Opens the views that `[views]` names and hosts their projectors. Kept thin on purpose: the
//! views are turning into an async reader (what an `api` process opens) and writer (what a
//! `projector` process hosts), and this file is where that split is wired.
//!
//! Elasticsearch: every role opens the same hostings (`messages` written with external versions,
//! `audit` with create-once documents) after the startup check (`health::check`), which stops
//! `annals serve` with the setting to fix when the cluster is unreachable, too old, or the
//! credentials lack a privilege. An `api` process follows the projector processes' generations
//! through the same read alias and indices; `all` may pair them with the embedded store.

use std::sync::Arc;

use annals_query_api::{OpenViews, Views};
use annals_store::EventStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use annals_projectors::host::ViewHosting;
use annals_projectors::view_store::elasticsearch::health::{self, Access};
use annals_projectors::view_store::elasticsearch::{EsAuth, EsConfig, EsHosting, Url, WriteMode};
use annals_projectors::{AuditProjection, MessagesProjection, Projection};

use super::invalidations::Wiring;
use crate::settings::{ProjectorSettings, Settings, ViewsKind, ViewsSettings};
use crate::Error;

/// Opens (or creates) the views of `settings`, projectors not started.
pub async fn open(settings: &Settings) -> Result<OpenViews, Error> {
    match settings.views.kind {
        ViewsKind::Tantivy => {
            // Before the views open: their threads (and tantivy's) take it when they start.
            annals_projectors::background::set_priority(settings.projectors.priority);
            Ok(Views::open(&settings.views_dir()).await?)
        }
        ViewsKind::Elasticsearch => {
            let (messages, audit) = elasticsearch(&settings.views, Access::Write).await?;
            Ok(Views::open_hosted(messages, audit).await?)
        }
    }
}

/// Starts a projector per view (with its rebuilds) handing its invalidations to `wiring`'s
/// sinks, and a dispatcher per sink; returns the views to read and the host that stops them.
pub async fn start_projectors(
    opened: OpenViews,
    store: &Arc<dyn EventStore>,
    settings: &ProjectorSettings,
    wiring: &Wiring,
) -> Result<(Views, ProjectorHost), Error> {
    let stop = CancellationToken::new();
    // Read before the projectors start: a sink's `Resumed` flush then precedes what they queue.
    let checkpoints = opened.checkpoints().await?;
    let opened = opened.invalidations(wiring.out());
    let (views, mut tasks) = opened.start(store, settings.config(), &stop);
    tasks.extend(wiring.dispatch(Box::pin(std::future::ready(checkpoints)), &stop));
    Ok((views, ProjectorHost { stop, tasks }))
}

/// Opens the views of `settings` to read only (an `api` process, beside projector processes);
/// returns the views and the host of their followers.
pub async fn follow(settings: &Settings, store: &Arc<dyn EventStore>) -> Result<(Views, ProjectorHost), Error> {
    match settings.views.kind {
        ViewsKind::Tantivy => {
            let stop = CancellationToken::new();
            let (views, tasks) = Views::follow(&settings.views_dir(), store, &stop).await?;
            Ok((views, ProjectorHost { stop, tasks }))
        }
        ViewsKind::Elasticsearch => {
            // An `api` process only reads: a read-only key is enough.
            let (messages, audit) = elasticsearch(&settings.views, Access::Read).await?;
            let stop = CancellationToken::new();
            let (views, tasks) = Views::follow_hosted(messages, audit, store, &stop).await?;
            Ok((views, ProjectorHost { stop, tasks }))
        }
    }
}

/// The cluster `[views]` names, as the backend's configuration.
pub fn es_config(views: &ViewsSettings) -> Result<EsConfig, Error> {
    let invalid = |setting: &str, value: &str, reason: String| Error::InvalidSetting {
        setting: setting.to_owned(),
        value: value.to_owned(),
        reason,
    };
    let urls = views
        .urls
        .iter()
        .map(|u| Url::parse(u).map_err(|e| invalid("views.urls (ANNALS_VIEWS__URLS)", u, e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let first = urls.first().cloned().ok_or_else(|| Error::Combination {
        setting: "views.urls (ANNALS_VIEWS__URLS)".into(),
        reason: "[views] kind = \"elasticsearch\" needs the cluster's URLs".into(),
    })?;
    let mut config = EsConfig::new(first);
    config.urls = urls;
    config.auth = match (&views.username, &views.password, &views.api_key) {
        (Some(username), Some(password), _) => EsAuth::Basic { username: username.clone(), password: password.clone() },
        (_, _, Some(key)) => EsAuth::EncodedApiKey(key.clone()),
        _ => EsAuth::None,
    };
    config.tls.ca_certificate = views.ca_certificate.clone();
    config.tls.verify = views.tls_verify.unwrap_or(true);
    if let Some(prefix) = &views.index_prefix {
        config.index_prefix = prefix.clone();
    }
    if let Some(n) = views.bulk_max_docs {
        config.bulk_max_docs = n;
    }
    if let Some(n) = views.bulk_max_bytes {
        config.bulk_max_bytes = n;
    }
    if let Some(n) = views.replicas {
        config.replicas = n;
    }
    Ok(config)
}

/// Checks the cluster, then the hostings of `messages` and `audit` on it.
async fn elasticsearch(
    views: &ViewsSettings,
    access: Access,
) -> Result<(Arc<dyn ViewHosting>, Arc<dyn ViewHosting>), Error> {
    let config = Arc::new(es_config(views)?);
    let failed = |e: annals_projectors::ViewError| Error::Api(annals_query_api::Error::Views(e.to_string()));
    let version = health::check(&config, access).await.map_err(failed)?;
    tracing::info!(version = %version, urls = ?views.urls, "elasticsearch views");
    let messages =
        EsHosting::new(Arc::clone(&config), MessagesProjection.schema(), WriteMode::ExternalVersion).map_err(failed)?;
    let audit = EsHosting::new(config, AuditProjection.schema(), WriteMode::Create).map_err(failed)?;
    Ok((Arc::new(messages), Arc::new(audit)))
}

/// The projectors of this process (or, in an `api` process, the followers of its views).
#[derive(Debug)]
pub struct ProjectorHost {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl ProjectorHost {
    /// Tasks that stop, committing what they hold, when `stop` fires.
    pub fn new(stop: CancellationToken, tasks: Vec<JoinHandle<()>>) -> ProjectorHost {
        ProjectorHost { stop, tasks }
    }

    /// Stops every projector once it has committed the batch in hand.
    pub async fn stop(mut self) {
        self.stop.cancel();
        for task in std::mem::take(&mut self.tasks) {
            if let Err(e) = task.await {
                warn!(error = %e, "a projector task failed");
            }
        }
    }
}

impl Drop for ProjectorHost {
    /// A host dropped without `stop` (a `Server` built and never run) still stops its projectors,
    /// which would otherwise keep the store open for ever.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
