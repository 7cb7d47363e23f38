//! The startup check of an Elasticsearch view backend: the cluster answers, is recent enough,
//! and the credentials hold every privilege the backend uses. Each failure is a
//! [`ViewError::Config`] naming the setting to change.
//!
//! Shapes: `GET /` answers `version.number` (elasticsearch-specification `_global/info`);
//! `POST /_security/user/_has_privileges` takes `cluster` and `index[{names, privileges}]` and
//! answers `has_all_requested`, `cluster{…}` and `index{name{privilege: bool}}`
//! (`security/has_privileges`). A cluster without security answers the latter with an error
//! whose type is `security_exception` / status `500` or `400` saying security is disabled: then
//! there is nothing to lack.

use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::config::EsConfig;
use super::Client;
use crate::error::ViewError;

/// The oldest major version the backend speaks to (composable templates, `date_nanos`,
/// `must_exist` in alias actions, `document_parsing_exception` naming).
pub const MIN_MAJOR: u64 = 8;

/// What a process does with the views: an `api` process only reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Cluster privileges a writer uses: templates, and `monitor` for `_cat/indices` and `GET /`.
pub const CLUSTER_PRIVILEGES: [&str; 2] = ["monitor", "manage_index_templates"];
/// Index privileges a writer uses on `{prefix}*`.
pub const INDEX_PRIVILEGES: [&str; 5] = ["create_index", "delete_index", "manage", "read", "write"];
/// What a reader uses: `GET /`, and searches and gets on `{prefix}*` (`view_index_metadata`
/// for the alias).
pub const READ_CLUSTER_PRIVILEGES: [&str; 1] = ["monitor"];
pub const READ_INDEX_PRIVILEGES: [&str; 2] = ["read", "view_index_metadata"];

/// Checks the cluster `config` names for a process that needs `access`; returns its version.
pub async fn check(config: &EsConfig, access: Access) -> Result<String, ViewError> {
    let client = Client::new(config.transport()?, "views");
    let urls: Vec<&str> = config.urls.iter().map(|u| u.as_str()).collect();
    let info = match client.send(Method::Get, "/", &[], None, false, "ping").await {
        Err(e) => {
            let reason = format!("no Elasticsearch answers at {urls:?}: {e}");
            return Err(ViewError::Config { setting: "views.urls (ANNALS_VIEWS__URLS)", reason });
        }
        Ok(reply) if reply.status == 401 => {
            return Err(ViewError::Config {
                setting: "views.api_key or views.username and views.password",
                reason: format!("the credentials were refused: {}", reply.error()),
            });
        }
        Ok(reply) if !reply.ok() => {
            return Err(ViewError::Config {
                setting: "views.urls (ANNALS_VIEWS__URLS)",
                reason: format!("GET / answered {}", reply.error()),
            });
        }
        Ok(reply) => reply.json("views")?,
    };
    let version = info["version"]["number"].as_str().unwrap_or("").to_owned();
    let major = version.split('.').next().and_then(|m| m.parse::<u64>().ok());
    match major {
        Some(m) if m >= MIN_MAJOR => {}
        _ => {
            let reason =
                format!("the cluster at {urls:?} runs Elasticsearch {version:?}; annals needs {MIN_MAJOR}.0 or newer");
            return Err(ViewError::Config { setting: "views.urls (ANNALS_VIEWS__URLS)", reason });
        }
    }
    let body = privileges_request(&config.index_prefix, access);
    let reply = client
        .send(
            Method::Post,
            "/_security/user/_has_privileges",
            &[],
            Some(body.to_string().into_bytes()),
            false,
            "check privileges",
        )
        .await?;
    if !reply.ok() {
        // Security disabled: every request is allowed.
        if reply.error().contains("security") {
            return Ok(version);
        }
        return Err(ViewError::Config {
            setting: "views.api_key or views.username and views.password",
            reason: format!("checking privileges failed: {}", reply.error()),
        });
    }
    let answer = reply.json("views")?;
    let missing = missing_privileges(&answer);
    if !missing.is_empty() {
        let reason = format!("the credentials lack {}", missing.join(", "));
        return Err(ViewError::Config { setting: "views.api_key or views.username and views.password", reason });
    }
    Ok(version)
}

/// The `_has_privileges` body for indices under `prefix`.
pub fn privileges_request(prefix: &str, access: Access) -> Value {
    let (cluster, index): (&[&str], &[&str]) = match access {
        Access::Write => (&CLUSTER_PRIVILEGES, &INDEX_PRIVILEGES),
        Access::Read => (&READ_CLUSTER_PRIVILEGES, &READ_INDEX_PRIVILEGES),
    };
    json!({
        "cluster": cluster,
        "index": [ { "names": [format!("{prefix}*")], "privileges": index } ]
    })
}

/// Every privilege the answer says is not held, as `cluster:monitor` or `index:{names}:write`.
pub fn missing_privileges(answer: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    for (name, held) in answer["cluster"].as_object().into_iter().flatten() {
        if held.as_bool() != Some(true) {
            missing.push(format!("cluster privilege {name}"));
        }
    }
    for (names, privileges) in answer["index"].as_object().into_iter().flatten() {
        for (name, held) in privileges.as_object().into_iter().flatten() {
            if held.as_bool() != Some(true) {
                missing.push(format!("index privilege {name} on {names}"));
            }
        }
    }
    if missing.is_empty() && answer["has_all_requested"].as_bool() == Some(false) {
        missing.push("a requested privilege".to_owned());
    }
    missing
}
