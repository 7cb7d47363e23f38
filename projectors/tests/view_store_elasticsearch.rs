//! The view-store conformance suite stamped for the Elasticsearch backend, against a real
//! cluster: it runs only when `ELASTICSEARCH_URL` names one (`ELASTICSEARCH_USERNAME` and
//! `ELASTICSEARCH_PASSWORD` for basic auth); otherwise every case prints why it was skipped and
//! checks nothing. No cluster can run on the machines that test annals, so a passing run there
//! says nothing about this backend: the wire-level tests (`es_wire`) are what run there.
//!
//! Each case's view gets its own index prefix (from its temporary directory), so cases run in
//! parallel on one cluster and a reopened view finds its index again. Indices are left behind
//! (`annals-test-*`): delete them with `DELETE /annals-test-*` after a run.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use annals_projectors::host::ViewHosting;
use annals_projectors::view_store::elasticsearch::{EsAuth, EsConfig, EsHosting, WriteMode};
use annals_projectors::view_store::{ViewHalves, ViewSchema};

fn cluster() -> Option<String> {
    std::env::var("ELASTICSEARCH_URL").ok().filter(|u| !u.is_empty())
}

fn cluster_configured() -> Option<String> {
    match cluster() {
        Some(_) => None,
        None => Some("ELASTICSEARCH_URL is not set: the Elasticsearch conformance suite needs a cluster (README, \"Elasticsearch views\")".into()),
    }
}

async fn open(dir: PathBuf, schema: ViewSchema) -> ViewHalves {
    let url = cluster().expect("the guard checked ELASTICSEARCH_URL");
    let mut config = EsConfig::new(url::Url::parse(&url).expect("ELASTICSEARCH_URL is a URL"));
    if let (Ok(username), Ok(password)) =
        (std::env::var("ELASTICSEARCH_USERNAME"), std::env::var("ELASTICSEARCH_PASSWORD"))
    {
        config.auth = EsAuth::Basic { username, password };
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut hasher);
    config.index_prefix = format!("annals-test-{:016x}-", hasher.finish());
    // One node: replicas would never be assigned.
    config.replicas = 0;
    let hosting = EsHosting::new(Arc::new(config), schema, WriteMode::ExternalVersion).expect("a valid schema");
    hosting.open(1).await.expect("open the Elasticsearch view")
}

annals_projectors::view_store_test_suite!(open, skip_unless = cluster_configured);
