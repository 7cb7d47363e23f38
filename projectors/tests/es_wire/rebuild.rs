//! A rebuild driven by the host (`annals_projectors::host`) on an Elasticsearch view, against a
//! recording server that keeps the state a cluster would (indices, the alias, checkpoints): the
//! new generation is built without refresh or replicas, its settings are restored once caught up,
//! then the alias moves in one `_aliases` request and the old index is deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals_projectors::runtime::control;
use annals_projectors::view_store::elasticsearch::{EsHosting, WriteMode};
use annals_projectors::{MessagesProjection, OpenView, Projection, ProjectorConfig};
use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{EventData, EventStore, ExpectedRevision, StreamId};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::server::{answer, bulk_answer, routine, unexpected, MockEs, Recorded};

const ALIAS: &str = "annals-messages";

/// What the mock cluster holds.
#[derive(Default)]
struct Cluster {
    indices: BTreeSet<String>,
    alias: Option<String>,
    checkpoints: BTreeMap<String, u64>,
}

fn respond(cluster: &Mutex<Cluster>, r: &Recorded) -> (u16, String) {
    let mut c = cluster.lock().expect("lock");
    let path = r.path.as_str();
    let index = path.trim_start_matches('/').split('/').next().unwrap_or("").to_owned();
    match (r.method.as_str(), path) {
        ("GET", p) if p == format!("/_alias/{ALIAS}") => match &c.alias {
            // `indices/get_alias/IndicesGetAliasResponse.ts`.
            Some(i) => answer(200, json!({ i.as_str(): { "aliases": { ALIAS: {} } } })),
            None => answer(404, json!({ "error": format!("alias [{ALIAS}] missing"), "status": 404 })),
        },
        ("HEAD", p) if p == format!("/_alias/{ALIAS}") => (if c.alias.is_some() { 200 } else { 404 }, String::new()),
        ("HEAD", p) if p.ends_with(&format!("/_alias/{ALIAS}")) => {
            (if c.alias.as_deref() == Some(index.as_str()) { 200 } else { 404 }, String::new())
        }
        ("HEAD", _) => (if c.indices.contains(&index) { 200 } else { 404 }, String::new()),
        ("PUT", p) if p.matches('/').count() == 1 && !p.starts_with("/_") => {
            c.indices.insert(index.clone());
            answer(200, json!({ "acknowledged": true, "shards_acknowledged": true, "index": index }))
        }
        ("POST", "/_aliases") => {
            let actions = r.json()["actions"].clone();
            for action in actions.as_array().expect("actions") {
                if let Some(add) = action.get("add") {
                    c.alias = add["index"].as_str().map(str::to_owned);
                }
            }
            answer(200, json!({ "acknowledged": true }))
        }
        ("PUT", p) if p.ends_with("/_doc/checkpoint") => {
            let version: u64 =
                r.query.split('&').find_map(|kv| kv.strip_prefix("version=")).expect("version").parse().expect("n");
            c.checkpoints.insert(index.clone(), version);
            answer(201, json!({ "_index": index, "_id": "checkpoint", "_version": version, "result": "created" }))
        }
        ("GET", p) if p.ends_with("/_doc/checkpoint") => match c.checkpoints.get(&index) {
            Some(v) => answer(
                200,
                json!({ "_index": index, "_id": "checkpoint", "found": true, "_source": { "id": "checkpoint", "version": v, "source": { "position": v } } }),
            ),
            None => answer(404, json!({ "_index": index, "_id": "checkpoint", "found": false })),
        },
        ("POST", "/_mget") => {
            let docs: Vec<Value> = r.json()["docs"]
                .as_array()
                .expect("docs")
                .iter()
                .map(|d| json!({ "_index": d["_index"], "_id": d["_id"], "found": false }))
                .collect();
            answer(200, json!({ "docs": docs }))
        }
        ("POST", "/_bulk") => bulk_answer(&r.body, |_, _| (201, None)),
        // `cat/indices/CatIndicesResponse.ts` rows with `h=index`.
        ("GET", p) if p.starts_with("/_cat/indices/") => {
            answer(200, Value::Array(c.indices.iter().map(|i| json!({ "index": i })).collect()))
        }
        ("DELETE", _) => {
            c.indices.remove(&index);
            answer(200, json!({ "acknowledged": true }))
        }
        _ => {
            drop(c);
            routine(r).unwrap_or_else(|| unexpected(r))
        }
    }
}

/// The `_index` a recorded `_bulk` body writes to.
fn bulk_index(r: &Recorded) -> String {
    let action: Value = serde_json::from_str(r.body.lines().next().expect("a line")).expect("JSON");
    action.as_object().and_then(|o| o.values().next()).expect("an action")["_index"]
        .as_str()
        .expect("_index")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_through_the_host_restores_settings_then_swaps_the_alias_then_deletes_the_old_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(EngineConfig::new(dir.path().join("store"))).await.expect("store");
    let mut last = None;
    for i in 0..40 {
        let data =
            json!({ "message_id": format!("r{i}"), "recipient": { "id": "u" }, "channel": "email", "subject": "s" });
        let stream = StreamId::new(format!("acme/message-r{i}")).expect("stream");
        let event = EventData::json("message.enqueued", &data).expect("event");
        last = Some(
            store.append_to_stream(&stream, ExpectedRevision::Any, vec![event]).await.expect("append").last_position,
        );
    }
    let last = last.expect("events");
    let cluster = Arc::new(Mutex::new(Cluster::default()));
    let state = Arc::clone(&cluster);
    let server = MockEs::start(move |r, _| respond(&state, r)).await;

    let hosting = EsHosting::new(Arc::new(server.config()), MessagesProjection.schema(), WriteMode::ExternalVersion)
        .expect("schema");
    let opened = OpenView::open(Arc::new(hosting), MessagesProjection).await.expect("open");
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    let shutdown = CancellationToken::new();
    // Small batches, so the rebuild writes while it catches up, not only once live.
    let config =
        ProjectorConfig { batch_size: 2, flush_interval: Duration::from_millis(5), ..ProjectorConfig::default() };
    let (hosted, task) = opened.start(Arc::clone(&shared), config, shutdown.clone());
    for _ in 0..1_000 {
        if hosted.serving().status.has_applied(last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(hosted.serving().status.has_applied(last), "generation 1 applied the log");

    assert_eq!(control::request_rebuild(shared.as_ref(), MessagesProjection::NAME).await.expect("request"), 2);
    for _ in 0..2_000 {
        if hosted.serving().number == 2 && cluster.lock().expect("lock").indices.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    task.await.expect("host");
    store.close().await.expect("close");

    let c = cluster.lock().expect("lock");
    assert_eq!(c.alias.as_deref(), Some("annals-messages-000002"), "the alias names the rebuilt generation");
    assert_eq!(c.indices.iter().collect::<Vec<_>>(), ["annals-messages-000002"], "the old index is deleted");
    assert!(c.checkpoints["annals-messages-000002"] >= last.code());

    let requests = server.requests();
    let at = |pred: &dyn Fn(&Recorded) -> bool| requests.iter().rposition(pred);
    let first = |pred: &dyn Fn(&Recorded) -> bool| requests.iter().position(pred);
    let settings = "/annals-messages-000002/_settings";
    let bulk_on = first(&|r| r.path == settings).expect("bulk-load settings");
    assert_eq!(requests[bulk_on].json(), json!({ "index": { "refresh_interval": "-1", "number_of_replicas": 0 } }));
    let restored = at(&|r| r.path == settings).expect("settings restored");
    assert_eq!(requests[restored].json(), json!({ "index": { "refresh_interval": "1s", "number_of_replicas": 1 } }));
    let gen2 = |r: &Recorded| r.path == "/_bulk" && bulk_index(r) == "annals-messages-000002";
    let first_write = first(&gen2).expect("generation 2 was written");
    let last_write = at(&gen2).expect("generation 2 was written");
    assert!(requests[first_write].query.is_empty(), "a rebuild's bulk asks for no refresh");
    let swap = at(&|r| r.path == "/_aliases").expect("the swap");
    assert_eq!(
        requests[swap].json(),
        json!({ "actions": [
            { "remove": { "index": "annals-messages-*", "alias": ALIAS, "must_exist": false } },
            { "add": { "index": "annals-messages-000002", "alias": ALIAS } }
        ] })
    );
    let delete = first(&|r| r.method == "DELETE").expect("the delete");
    assert_eq!(requests[delete].path, "/annals-messages-000001");
    assert!(
        bulk_on < first_write && first_write < restored && last_write < swap && restored < swap && swap < delete,
        "{bulk_on} {first_write} {last_write} {restored} {swap} {delete}"
    );
}
