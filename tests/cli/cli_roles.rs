//! `annals serve --role …` and `[store] kind`: a combination that no process can run, or a store
//! that cannot be reached, stops startup with a message naming the setting and what to use
//! instead, before anything is opened; `--role all` is the default and serves as before.

use crate::cli_serve::refused;
use crate::serve_support::Serve;

#[test]
fn api_and_projector_roles_on_the_embedded_store_stop_startup() {
    for role in ["api", "projector"] {
        let err = refused(&["--listen", "127.0.0.1:0", "--role", role], &[]);
        assert!(err.contains("role") && err.contains(&format!("role \"{role}\"")), "{err}");
        assert!(err.contains("use role \"all\"") && err.contains("kind = \"postgres\""), "{err}");
        let err = refused(&["--listen", "127.0.0.1:0"], &[("ANNALS_ROLE", role)]);
        assert!(err.contains("ANNALS_ROLE") && err.contains("use role \"all\""), "{err}");
    }
}

#[test]
fn a_postgres_store_needs_a_url_and_says_so() {
    let err = refused(&["--listen", "127.0.0.1:0"], &[("ANNALS_STORE__KIND", "postgres")]);
    assert!(err.contains("store.url") && err.contains("ANNALS_STORE__URL") && err.contains("postgres://"), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("annals.toml");
    std::fs::write(&config, "[store]\nkind = \"embedded\"\nurl = \"postgres://annals@localhost/annals\"\n").unwrap();
    let err = refused(&["--listen", "127.0.0.1:0", "--config", config.to_str().unwrap()], &[]);
    assert!(err.contains("store.url") && err.contains("remove the url"), "{err}");
}

/// `kind = "postgres"` is in this build: a start whose database cannot be reached stops with
/// the store's reason (every role alike), rather than serving without a log.
#[test]
fn a_postgres_store_that_cannot_be_reached_stops_startup() {
    let url = ("ANNALS_STORE__URL", "postgres://annals@127.0.0.1:1/annals");
    let views = ("ANNALS_VIEWS__DIR", "/tmp/annals-shared-views");
    for role in ["all", "api", "projector"] {
        let err =
            refused(&["--listen", "127.0.0.1:0", "--role", role], &[("ANNALS_STORE__KIND", "postgres"), url, views]);
        assert!(err.contains("postgres") && err.contains("unavailable"), "{role}: {err}");
        assert!(!err.contains("not available in this build"), "{role}: {err}");
    }
}

/// An `api` or `projector` process shares the views with the others: without `[views] dir` it
/// would read (or write) views in its own data directory that no other process sees, so the
/// start stops, naming the setting.
#[test]
fn api_and_projector_roles_need_the_shared_views_dir() {
    let pg = [("ANNALS_STORE__KIND", "postgres"), ("ANNALS_STORE__URL", "postgres://annals@127.0.0.1:1/annals")];
    for role in ["api", "projector"] {
        let err = refused(&["--listen", "127.0.0.1:0", "--role", role], &pg);
        assert!(err.contains("views.dir") && err.contains("ANNALS_VIEWS__DIR"), "{err}");
        assert!(err.contains(&format!("role \"{role}\"")) && err.contains("set [views] dir"), "{err}");
    }
}

#[tokio::test]
async fn role_all_is_the_default_and_serves() {
    let tmp = tempfile::tempdir().unwrap();
    for role in [None, Some("all")] {
        let env: Vec<(&str, String)> = role.map(|r| ("ANNALS_ROLE", r.to_owned())).into_iter().collect();
        let mut server = Serve::start(tmp.path(), &env);
        let health = reqwest::get(format!("{}/healthz", server.base)).await.unwrap().status();
        assert_eq!(health, 200, "{role:?}");
        server.terminate();
    }
}
