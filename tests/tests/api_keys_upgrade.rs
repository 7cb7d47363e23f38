//! A data directory whose keys were made before the operator role existed (every admin key could
//! do everything): the key the server made at its first start serves as the operator key, every
//! other admin key as its own tenant's admin, and a store left without an operator key gets one
//! at the next start.

use crate::support;

use annals::compose::Server;
use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{EventData, EventStore, ExpectedRevision, StreamId};
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};
use support::{append_n, TestApp, ADMIN_KEY};

const ACME_ADMIN: &str = "annals_a1a2a3a4a5a6a7a8_ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

/// `$keys` as earlier versions wrote it: the server's first key, and an admin key of `acme` made
/// with it; and, if `revoked`, the first key revoked.
async fn old_keys(dir: &std::path::Path, revoked: bool) {
    let store = EmbeddedStore::open(EngineConfig::new(dir)).await.unwrap();
    let created = |token: &str, tenant: &str, name: &str, by: &str| {
        let (id, secret) = token.strip_prefix("annals_").unwrap().split_once('_').unwrap();
        let hash: String = Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        let data = json!({ "key_id": id, "tenant": tenant, "role": "admin", "name": name,
            "secret_sha256": hash, "created_by": by });
        EventData::json("key.created", &data).unwrap()
    };
    let first_id = &ADMIN_KEY[7..23];
    let mut events = vec![
        created(ADMIN_KEY, "default", "bootstrap admin", "system"),
        created(ACME_ADMIN, "acme", "acme ops", first_id),
    ];
    if revoked {
        let data = json!({ "key_id": first_id, "revoked_by": &ACME_ADMIN[7..23] });
        events.push(EventData::json("key.revoked", &data).unwrap());
    }
    let keys = StreamId::new("$keys").unwrap();
    store.append_to_stream(&keys, ExpectedRevision::NoStream, events).await.unwrap();
    store.close().await.unwrap();
}

#[tokio::test]
async fn the_first_key_of_an_earlier_version_is_the_operator_and_other_admins_keep_their_tenant() {
    let tmp = tempfile::tempdir().unwrap();
    old_keys(tmp.path(), false).await;
    // The test server makes its tenant admin key with the first key: it is the operator's.
    let app = TestApp::spawn(tmp.path()).await;
    let operator = app.as_operator();
    assert_eq!(operator.get("/v1/projections").await.0, StatusCode::OK);
    assert_eq!(operator.get("/v1/events").await.0, StatusCode::FORBIDDEN, "and reads no data");
    let (_, list) = operator.get("/v1/keys").await;
    let roles: Vec<(&str, &str)> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["tenant"].as_str().unwrap(), k["role"].as_str().unwrap()))
        .collect();
    assert_eq!(roles, [("default", "operator"), ("acme", "admin"), ("default", "admin")], "no key was added: {list}");

    let acme = app.with_key(ACME_ADMIN);
    let (_, list) = acme.get("/v1/keys").await;
    assert_eq!(list["keys"].as_array().unwrap().len(), 1, "acme's admin sees acme's keys: {list}");
    let (status, _) = acme.post("/v1/keys", &json!({ "tenant": "globex", "role": "reader" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    append_n(&acme, "message-1", "message.sent", 1).await;
    assert_eq!(acme.get("/v1/projections").await.0, StatusCode::FORBIDDEN);
    app.stop().await;
}

#[tokio::test]
async fn a_store_whose_first_key_was_revoked_gets_an_operator_key_at_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    old_keys(tmp.path(), true).await;
    let settings = || crate::support::test_settings(tmp.path());
    let app = Server::build(settings()).await.unwrap();
    let key = app.bootstrap_key().expect("an operator key is made and shown").to_owned();
    app.close().await.unwrap();
    let app = Server::build(settings()).await.unwrap();
    assert!(app.bootstrap_key().is_none(), "once");
    app.close().await.unwrap();
    let mut app = TestApp::spawn_with(tmp.path(), |s| s.admin_key = None).await;
    app.key = key;
    let (status, list) = app.get("/v1/keys").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let active: Vec<&str> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["revoked_at"].is_null())
        .map(|k| k["role"].as_str().unwrap())
        .collect();
    assert_eq!(active, ["admin", "operator"], "{list}");
    app.stop().await;
}
