//! `[views] kind = "elasticsearch"`: its settings read alike from a file and the environment,
//! become the backend's configuration, and every combination that cannot run is refused naming
//! the setting; `annals serve` stops at startup, naming the setting, when the cluster does not
//! answer.

use std::path::Path;

use annals::compose::{es_config, Server};
use annals::settings::{Flags, Settings, ViewsKind};
use annals_projectors::view_store::elasticsearch::EsAuth;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn error(vars: &[(&str, &str)]) -> String {
    Settings::load(None, env(vars), Flags::default()).unwrap_err().to_string()
}

const ES: (&str, &str) = ("ANNALS_VIEWS__KIND", "elasticsearch");
const URLS: (&str, &str) = ("ANNALS_VIEWS__URLS", "http://es1:9200,http://es2:9200");

#[test]
fn elasticsearch_settings_read_alike_from_the_file_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("annals.toml");
    std::fs::write(
        &path,
        "[views]\nkind = \"elasticsearch\"\nurls = [\"http://es1:9200\", \"http://es2:9200\"]\nusername = \"annals\"\n\
         password = \"s3cret\"\nindex_prefix = \"prod-annals-\"\nbulk_max_docs = 500\nbulk_max_bytes = 1048576\nreplicas = 2\n\
         ca_certificate = \"/etc/annals/ca.pem\"\n",
    )
    .unwrap();
    let from_file = Settings::load(Some(&path), [], Flags::default()).unwrap();
    let from_env = Settings::load(
        None,
        env(&[
            ES,
            URLS,
            ("ANNALS_VIEWS__USERNAME", "annals"),
            ("ANNALS_VIEWS__PASSWORD", "s3cret"),
            ("ANNALS_VIEWS__INDEX_PREFIX", "prod-annals-"),
            ("ANNALS_VIEWS__BULK_MAX_DOCS", "500"),
            ("ANNALS_VIEWS__BULK_MAX_BYTES", "1048576"),
            ("ANNALS_VIEWS__REPLICAS", "2"),
            ("ANNALS_VIEWS__CA_CERTIFICATE", "/etc/annals/ca.pem"),
        ]),
        Flags::default(),
    )
    .unwrap();
    for s in [from_file, from_env] {
        assert_eq!(s.views.kind, ViewsKind::Elasticsearch);
        let config = es_config(&s.views).unwrap();
        let urls: Vec<&str> = config.urls.iter().map(|u| u.as_str()).collect();
        assert_eq!(urls, ["http://es1:9200/", "http://es2:9200/"]);
        assert_eq!(config.auth, EsAuth::Basic { username: "annals".into(), password: "s3cret".into() });
        assert_eq!(config.index_prefix, "prod-annals-");
        assert_eq!((config.bulk_max_docs, config.bulk_max_bytes, config.replicas), (500, 1_048_576, 2));
        assert_eq!(config.tls.ca_certificate.as_deref(), Some(Path::new("/etc/annals/ca.pem")));
        assert!(config.tls.verify);
        assert!(!format!("{config:?}").contains("s3cret"), "secrets stay out of logs");
    }
    let s = Settings::load(
        None,
        env(&[ES, URLS, ("ANNALS_VIEWS__API_KEY", "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==")]),
        Flags::default(),
    )
    .unwrap();
    assert!(matches!(es_config(&s.views).unwrap().auth, EsAuth::EncodedApiKey(_)));
}

#[test]
fn elasticsearch_combinations_that_cannot_run_name_the_setting() {
    let err = error(&[ES]);
    assert!(err.contains("views.urls") && err.contains("ANNALS_VIEWS__URLS"), "{err}");
    let err = error(&[URLS]);
    assert!(err.contains("views.urls") && err.contains("kind = \"elasticsearch\""), "a URL for tantivy views: {err}");
    let err = error(&[ES, URLS, ("ANNALS_VIEWS__USERNAME", "annals")]);
    assert!(err.contains("views.password"), "{err}");
    let err = error(&[
        ES,
        URLS,
        ("ANNALS_VIEWS__USERNAME", "a"),
        ("ANNALS_VIEWS__PASSWORD", "b"),
        ("ANNALS_VIEWS__API_KEY", "k"),
    ]);
    assert!(err.contains("views.api_key") && err.contains("not both"), "{err}");
    let err = error(&[ES, URLS, ("ANNALS_VIEWS__DIR", "/srv/views")]);
    assert!(err.contains("views.dir") && err.contains("tantivy"), "{err}");
    let err = error(&[ES, ("ANNALS_VIEWS__URLS", "es1:9200")]);
    assert!(err.contains("ANNALS_VIEWS__URLS") && err.contains("http://"), "{err}");
    let err = error(&[ES, URLS, ("ANNALS_VIEWS__INDEX_PREFIX", "Annals*")]);
    assert!(err.contains("ANNALS_VIEWS__INDEX_PREFIX") && err.contains("lowercase"), "{err}");
    let err = error(&[("ANNALS_VIEWS__KIND", "solr")]);
    assert!(err.contains("ANNALS_VIEWS__KIND") && err.contains("elasticsearch"), "{err}");
}

/// API and projector processes share Elasticsearch views: no `[views] dir` is needed, and the
/// embedded store with Elasticsearch views is a valid single process (role `all`).
#[test]
fn roles_share_elasticsearch_views_without_a_directory() {
    let pg = [("ANNALS_STORE__KIND", "postgres"), ("ANNALS_STORE__URL", "postgres://annals@db/annals")];
    for role in ["api", "projector"] {
        let mut vars = vec![ES, URLS, ("ANNALS_ROLE", role)];
        vars.extend(pg);
        let s = Settings::load(None, env(&vars), Flags::default());
        assert!(s.is_ok(), "role {role} on postgres and Elasticsearch: {s:?}");
    }
    assert!(Settings::load(None, env(&[ES, URLS]), Flags::default()).is_ok());
}

#[tokio::test]
async fn serve_stops_at_startup_naming_the_setting_when_the_cluster_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let data = dir.path().to_string_lossy().into_owned();
    let settings = Settings::load(
        None,
        env(&[ES, ("ANNALS_VIEWS__URLS", &url), ("ANNALS_DATA_DIR", &data), ("ANNALS_HTTP__LISTEN", "127.0.0.1:0")]),
        Flags::default(),
    )
    .unwrap();
    let err = Server::build(settings).await.map(drop).unwrap_err().to_string();
    assert!(err.contains("views.urls") && err.contains("no Elasticsearch answers"), "{err}");
}
