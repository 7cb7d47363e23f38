//! The recording HTTP server the wire-level tests talk to, and the golden-file check.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals_projectors::view_store::elasticsearch::{EsConfig, RetryPolicy};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub authorization: Option<String>,
    pub body: String,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{} {} sent no JSON ({e}): {}", self.method, self.path, self.body))
    }

    /// `method path` for compact assertions on request sequences.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Answers a request: `(status, body)`, given it and the requests before it.
pub type Responder = dyn Fn(&Recorded, &[Recorded]) -> (u16, String) + Send + Sync;

#[derive(Clone)]
struct Shared {
    requests: Arc<Mutex<Vec<Recorded>>>,
    responder: Arc<Responder>,
}

/// A running server on 127.0.0.1 and a port the system chose.
pub struct MockEs {
    pub url: url::Url,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MockEs {
    pub async fn start(responder: impl Fn(&Recorded, &[Recorded]) -> (u16, String) + Send + Sync + 'static) -> MockEs {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let url = url::Url::parse(&format!("http://{}", listener.local_addr().expect("address"))).expect("a URL");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared { requests: Arc::clone(&requests), responder: Arc::new(responder) };
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the mock server runs");
        });
        MockEs { url, requests, task }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }

    /// The requests to `path` (exact), in order.
    pub fn to(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.method == method && r.path == path).collect()
    }

    /// A configuration for this server: quick retries, no grace before deletes.
    pub fn config(&self) -> EsConfig {
        let mut config = EsConfig::new(self.url.clone());
        config.retry = RetryPolicy { attempts: 4, base: Duration::from_millis(1), max: Duration::from_millis(5) };
        config.old_index_grace = Duration::ZERO;
        config.request_timeout = Duration::from_secs(10);
        config
    }
}

impl Drop for MockEs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(shared): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or("").to_owned(),
        content_type: header("content-type").unwrap_or_default(),
        authorization: header("authorization"),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let (status, body) = {
        let mut requests = shared.requests.lock().expect("lock");
        let answer = (shared.responder)(&recorded, &requests);
        requests.push(recorded);
        answer
    };
    let status = StatusCode::from_u16(status).expect("a status");
    (status, [("content-type", "application/json")], body).into_response()
}

/// Compares `actual` with the golden file `name`; with `UPDATE_GOLDEN=1`, writes it instead.
/// JSON files compare as JSON values (key order is not part of a request's meaning); any other
/// file (NDJSON bulk bodies) byte for byte.
pub fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/elasticsearch").join(name);
    let is_json = name.ends_with(".json");
    let rendered = if is_json {
        let value: Value = serde_json::from_str(actual).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {actual}"));
        serde_json::to_string_pretty(&value).expect("JSON") + "\n"
    } else {
        actual.to_owned()
    };
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, &rendered).expect("write the golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("golden file {} ({e}); run with UPDATE_GOLDEN=1 to create it", path.display()));
    if is_json {
        let (want, got): (Value, Value) =
            (serde_json::from_str(&expected).expect("golden JSON"), serde_json::from_str(actual).expect("JSON"));
        assert_eq!(got, want, "request body differs from {}:\n{rendered}", path.display());
    } else {
        assert_eq!(rendered, expected, "request body differs from {}", path.display());
    }
}

/// An answer of `status` with the JSON `body`.
pub fn answer(status: u16, body: Value) -> (u16, String) {
    (status, body.to_string())
}

/// A `_bulk` item error as `BulkResponseExample2.yaml` shows one (`type`, `reason`,
/// `index_uuid`, `shard`, `index`).
pub fn item_error(index: &str, kind: &str, reason: &str) -> Value {
    serde_json::json!({ "type": kind, "reason": reason, "index_uuid": "aAsFqTI0Tc2W0LCWgPNrOA", "shard": "0", "index": index })
}

/// The `_id`s of a recorded `_bulk` body's action lines, in order.
pub fn bulk_ids(body: &str) -> Vec<String> {
    body.lines()
        .step_by(2)
        .map(|line| {
            let action: Value = serde_json::from_str(line).expect("an action line");
            let (_, meta) = action.as_object().and_then(|o| o.iter().next()).expect("one action");
            meta["_id"].as_str().expect("an _id").to_owned()
        })
        .collect()
}

/// A bulk answer with one item per action line of `body`, each `(status, error)` from `item`.
/// Successful items follow `BulkResponseExample1.yaml`; failed ones `BulkResponseExample2.yaml`.
pub fn bulk_answer(body: &str, item: impl Fn(usize, &str) -> (u16, Option<Value>)) -> (u16, String) {
    let mut errors = false;
    let items: Vec<Value> = body
        .lines()
        .step_by(2)
        .enumerate()
        .map(|(n, line)| {
            let action: Value = serde_json::from_str(line).expect("an action line");
            let (op, meta) = action.as_object().and_then(|o| o.iter().next()).expect("one action");
            let (index, id) = (meta["_index"].as_str().unwrap_or(""), meta["_id"].as_str().unwrap_or(""));
            let (status, error) = item(n, id);
            let result = match error {
                Some(error) => {
                    errors = true;
                    serde_json::json!({ "_index": index, "_id": id, "status": status, "error": error })
                }
                None => serde_json::json!({
                    "_index": index, "_id": id, "_version": meta.get("version").cloned().unwrap_or(1.into()),
                    "result": "created", "_shards": { "total": 2, "successful": 1, "failed": 0 },
                    "_seq_no": n, "_primary_term": 1, "status": status
                }),
            };
            serde_json::json!({ op.as_str(): result })
        })
        .collect();
    answer(200, serde_json::json!({ "took": 30, "errors": errors, "items": items }))
}

/// What a cluster answers to the requests every test makes on the way (template, index,
/// aliases, settings, refresh, checkpoint reads of an empty view), or `None` for the rest.
/// `{"acknowledged": true}` is `AcknowledgedResponseBase` (`_types/Base.ts`); `PUT /{index}`
/// answers `indices/create/IndicesCreateResponse.ts`; a missing document's `GET` is `404` with
/// `found: false` (`_global/get/GetResponse.ts`).
pub fn routine(request: &Recorded) -> Option<(u16, String)> {
    let ack = || answer(200, serde_json::json!({ "acknowledged": true }));
    let path = request.path.as_str();
    match request.method.as_str() {
        "PUT" if path.starts_with("/_index_template/") => Some(ack()),
        "PUT" if path.ends_with("/_settings") => Some(ack()),
        "PUT" if path.matches('/').count() == 1 => {
            let index = path.trim_start_matches('/');
            Some(answer(200, serde_json::json!({ "acknowledged": true, "shards_acknowledged": true, "index": index })))
        }
        "POST" if path == "/_aliases" => Some(ack()),
        // `_global/index/IndexResponse.ts` (`WriteResponseBase`).
        "PUT" if path.ends_with("/_doc/checkpoint") => {
            let index = path.trim_start_matches('/').split('/').next().unwrap_or("");
            Some(answer(
                201,
                serde_json::json!({
                    "_index": index, "_id": "checkpoint", "_version": 1, "result": "created",
                    "_shards": { "total": 2, "successful": 1, "failed": 0 }, "_seq_no": 0, "_primary_term": 1
                }),
            ))
        }
        "POST" if path.ends_with("/_refresh") => {
            Some(answer(200, serde_json::json!({ "_shards": { "total": 1, "successful": 1, "failed": 0 } })))
        }
        "HEAD" if path.starts_with("/_alias/") || path.contains("/_alias/") => Some((404, String::new())),
        "GET" if path.ends_with("/_doc/checkpoint") => {
            let index = path.trim_start_matches('/').split('/').next().unwrap_or("");
            Some(answer(404, serde_json::json!({ "_index": index, "_id": "checkpoint", "found": false })))
        }
        _ => None,
    }
}

/// A request the test did not expect: answered like an unknown endpoint so the failure shows.
pub fn unexpected(request: &Recorded) -> (u16, String) {
    answer(
        400,
        serde_json::json!({
            "error": { "root_cause": [], "type": "illegal_state", "reason": format!("unexpected request {} {}", request.method, request.path) },
            "status": 400
        }),
    )
}
