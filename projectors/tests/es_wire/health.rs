//! The startup check on the wire: an unreachable cluster, one too old, refused credentials and
//! missing privileges each give a `Config` error naming the setting to change.

use annals_projectors::view_store::elasticsearch::health::{check, privileges_request, Access};
use annals_projectors::view_store::elasticsearch::EsAuth;
use annals_projectors::ViewError;
use serde_json::{json, Value};

use super::server::{answer, MockEs};

/// `GET /` as `_global/info/examples/response` shows it: `name`, `cluster_name`,
/// `version.number`, `tagline`.
fn info(version: &str) -> (u16, String) {
    answer(
        200,
        json!({
            "name": "node-1", "cluster_name": "annals", "cluster_uuid": "oGyhUfdRTNSEIKwUIJd2kA",
            "version": { "number": version, "build_flavor": "default", "lucene_version": "9.12.0",
                         "minimum_wire_compatibility_version": "7.17.0", "minimum_index_compatibility_version": "7.0.0" },
            "tagline": "You Know, for Search"
        }),
    )
}

/// `security/has_privileges/examples/response/SecurityHasPrivilegesResponseExample1.yaml`'s shape.
fn privileges(write: bool) -> (u16, String) {
    answer(
        200,
        json!({
            "username": "annals", "has_all_requested": write,
            "cluster": { "monitor": true, "manage_index_templates": true },
            "index": { "annals-*": { "create_index": true, "delete_index": true, "manage": true, "read": true, "write": write } },
            "application": {}
        }),
    )
}

fn setting(err: ViewError) -> (&'static str, String) {
    match err {
        ViewError::Config { setting, reason } => (setting, reason),
        other => panic!("not a configuration error: {other}"),
    }
}

#[tokio::test]
async fn a_healthy_cluster_passes_and_is_asked_for_every_privilege_used() {
    let server = MockEs::start(|r, _| if r.path == "/" { info("8.15.3") } else { privileges(true) }).await;
    let mut config = server.config();
    config.auth = EsAuth::Basic { username: "annals".into(), password: "s3cret".into() };
    assert_eq!(check(&config, Access::Write).await.expect("healthy"), "8.15.3");
    let requests = server.requests();
    assert_eq!(requests[1].line(), "POST /_security/user/_has_privileges");
    assert_eq!(requests[1].json(), privileges_request("annals-", Access::Write));
    // Basic auth, base64 of `annals:s3cret`.
    assert_eq!(requests[0].authorization.as_deref(), Some("Basic YW5uYWxzOnMzY3JldA=="));
}

#[tokio::test]
async fn missing_privileges_name_the_auth_setting_and_the_privilege() {
    let server = MockEs::start(|r, _| if r.path == "/" { info("9.0.1") } else { privileges(false) }).await;
    let (name, reason) = setting(check(&server.config(), Access::Write).await.expect_err("lacks write"));
    assert_eq!(name, "views.api_key or views.username and views.password");
    assert!(reason.contains("index privilege write on annals-*"), "{reason}");
}

#[tokio::test]
async fn too_old_a_cluster_names_the_urls_setting() {
    let server = MockEs::start(|_, _| info("7.17.9")).await;
    let (name, reason) = setting(check(&server.config(), Access::Write).await.expect_err("too old"));
    assert_eq!(name, "views.urls (ANNALS_VIEWS__URLS)");
    assert!(reason.contains("7.17.9") && reason.contains("8.0"), "{reason}");
}

#[tokio::test]
async fn refused_credentials_name_the_auth_setting() {
    let server = MockEs::start(|_, _| {
        answer(401, json!({ "error": { "root_cause": [], "type": "security_exception", "reason": "unable to authenticate user [annals] for REST request [/]" }, "status": 401 }))
    })
    .await;
    let (name, _) = setting(check(&server.config(), Access::Write).await.expect_err("refused"));
    assert_eq!(name, "views.api_key or views.username and views.password");
}

#[tokio::test]
async fn an_unreachable_cluster_names_the_urls_setting() {
    // A port that was just free: nothing listens on it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = url::Url::parse(&format!("http://{}", listener.local_addr().expect("address"))).expect("URL");
    drop(listener);
    let mut config = annals_projectors::view_store::elasticsearch::EsConfig::new(url);
    config.request_timeout = std::time::Duration::from_secs(5);
    let (name, reason) = setting(check(&config, Access::Write).await.expect_err("unreachable"));
    assert_eq!(name, "views.urls (ANNALS_VIEWS__URLS)");
    assert!(reason.contains("no Elasticsearch answers"), "{reason}");
}

#[tokio::test]
async fn a_cluster_without_security_needs_no_privileges() {
    let server = MockEs::start(|r, _| {
        if r.path == "/" {
            return info("8.11.0");
        }
        let body: Value = json!({ "error": { "root_cause": [], "type": "security_exception", "reason": "Security must be explicitly enabled when using a [basic] license. Enable security by setting [xpack.security.enabled] to [true] in the elasticsearch.yml file and restart the node." }, "status": 500 });
        answer(500, body)
    })
    .await;
    check(&server.config(), Access::Write).await.expect("security disabled: nothing to lack");
}

/// An `api` process only reads the views: a read-only key passes, and only read privileges are
/// asked for.
#[tokio::test]
async fn a_reader_is_asked_for_read_privileges_only() {
    let server = MockEs::start(|r, _| {
        if r.path == "/" {
            return info("8.15.3");
        }
        let asked = r.json();
        let held = asked["index"][0]["privileges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p.as_str().unwrap().to_owned(), json!(true)));
        answer(
            200,
            json!({ "username": "reader", "has_all_requested": true, "cluster": { "monitor": true },
                            "index": { "annals-*": Value::Object(held.collect()) }, "application": {} }),
        )
    })
    .await;
    check(&server.config(), Access::Read).await.expect("a read-only key reads");
    let asked = server.requests()[1].json();
    assert_eq!(
        asked,
        json!({ "cluster": ["monitor"], "index": [{ "names": ["annals-*"], "privileges": ["read", "view_index_metadata"] }] })
    );
}
