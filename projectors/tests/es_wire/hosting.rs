//! Generations on the wire: the template and index a generation is made from (golden), the
//! read alias, the rebuild's settings and their restoring, the atomic alias swap, and deleting
//! what a rebuild replaced.

use std::sync::Arc;

use annals_projectors::host::ViewHosting;
use annals_projectors::view_store::elasticsearch::{EsHosting, WriteMode};
use annals_projectors::view_store::testsuite::{batch, schema, Doc, T};
use annals_projectors::ViewError;
use serde_json::json;

use super::server::{answer, bulk_answer, golden, routine, unexpected, MockEs, Recorded};

fn hosting(server: &MockEs) -> EsHosting {
    EsHosting::new(Arc::new(server.config()), schema(), WriteMode::ExternalVersion).expect("a valid schema")
}

fn lines(requests: &[Recorded]) -> Vec<String> {
    requests.iter().map(|r| if r.query.is_empty() { r.line() } else { format!("{}?{}", r.line(), r.query) }).collect()
}

#[tokio::test]
async fn a_fresh_view_gets_its_template_its_first_index_and_the_read_alias() {
    let server = MockEs::start(|r, _| routine(r).unwrap_or_else(|| unexpected(r))).await;
    let view = hosting(&server);
    view.open(1).await.expect("open");
    let requests = server.requests();
    assert_eq!(
        lines(&requests),
        [
            "PUT /_index_template/annals-conformance",
            "PUT /annals-conformance-000001",
            "HEAD /_alias/annals-conformance",
            "POST /_aliases",
        ]
    );
    golden("index_template.json", &requests[0].body);
    golden("aliases_first.json", &requests[3].body);
}

#[tokio::test]
async fn an_existing_index_is_opened_not_recreated() {
    let server = MockEs::start(|r, _| {
        if r.method == "PUT" && r.path == "/annals-conformance-000002" {
            // `ErrorResponseBase` for an index that exists.
            return answer(400, json!({ "error": { "root_cause": [], "type": "resource_already_exists_exception", "reason": "index [annals-conformance-000002/x] already exists", "index": "annals-conformance-000002" }, "status": 400 }));
        }
        if r.method == "HEAD" && r.path == "/_alias/annals-conformance" {
            return (200, String::new());
        }
        routine(r).unwrap_or_else(|| unexpected(r))
    })
    .await;
    hosting(&server).open(2).await.expect("an existing generation opens");
    assert!(server.to("POST", "/_aliases").is_empty(), "only a view without an alias gets one on open");
}

#[tokio::test]
async fn current_is_the_generation_the_alias_names() {
    let server = MockEs::start(|_, before| {
        match before.len() {
            // `indices/get_alias/IndicesGetAliasResponse.ts`: index name → `{aliases: {name: {}}}`.
            0 => answer(200, json!({ "annals-conformance-000002": { "aliases": { "annals-conformance": {} } } })),
            1 => answer(404, json!({ "error": "alias [annals-conformance] missing", "status": 404 })),
            _ => answer(200, json!({ "someone-elses-index": { "aliases": { "annals-conformance": {} } } })),
        }
    })
    .await;
    let view = hosting(&server);
    assert_eq!(view.current().await.expect("current"), 2);
    assert_eq!(view.current().await.expect("no alias yet"), 1);
    assert!(matches!(view.current().await, Err(ViewError::Corrupt { .. })));
    assert!(server.requests().iter().all(|r| r.line() == "GET /_alias/annals-conformance"));
}

/// A rebuild of generation 2 as the host drives it: open, bulk load (no refresh, no replicas),
/// documents without `refresh=wait_for` and one explicit refresh per commit (so the rebuilding
/// generation keeps guarantees 3 and 4), caught up (settings restored, a refresh), the alias
/// swapped in one `_aliases` request, and generation 1 deleted.
#[tokio::test]
async fn a_rebuild_writes_without_refresh_and_replicas_restores_them_then_swaps_the_alias_atomically() {
    let server = MockEs::start(|r, _| {
        if let Some(a) = routine(r) {
            return a;
        }
        match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/_bulk") => bulk_answer(&r.body, |_, _| (201, None)),
            ("HEAD", "/_alias/annals-conformance") => (200, String::new()),
            // `cat/indices/CatIndicesResponse.ts` rows with `h=index`.
            ("GET", "/_cat/indices/annals-conformance-*") => answer(200, json!([
                { "index": "annals-conformance-000001" }, { "index": "annals-conformance-000002" }, { "index": "annals-conformance-0000x3" }
            ])),
            ("DELETE", _) => answer(200, json!({ "acknowledged": true })),
            _ => unexpected(r),
        }
    })
    .await;
    let view = hosting(&server);
    let generation = view.open(2).await.expect("open the new generation");
    generation.writer.bulk_load(true).await.expect("bulk load on");
    generation.writer.commit(Arc::new(batch([Doc::new(T, "m1", 5, 1)], None))).await.expect("commit");
    generation.writer.commit(Arc::new(batch([], Some(5)))).await.expect("checkpoint");
    generation.writer.bulk_load(false).await.expect("bulk load off");
    view.switch(2).await.expect("switch");
    let removed = view.remove_others(&[2]).await.expect("remove others");
    assert_eq!(removed, ["annals-conformance-000001"], "only generations of this view, and not the kept one");

    let requests = server.requests();
    assert_eq!(
        lines(&requests),
        [
            "PUT /_index_template/annals-conformance",
            "PUT /annals-conformance-000002",
            "HEAD /_alias/annals-conformance",
            "HEAD /annals-conformance-000002/_alias/annals-conformance",
            "PUT /annals-conformance-000002/_settings",
            "POST /_bulk",
            "POST /annals-conformance-000002/_refresh",
            "PUT /annals-conformance-000002/_doc/checkpoint?version=5&version_type=external",
            "POST /annals-conformance-000002/_refresh",
            "PUT /annals-conformance-000002/_settings",
            "POST /annals-conformance-000002/_refresh",
            "POST /_aliases",
            "GET /_cat/indices/annals-conformance-*?format=json&h=index",
            "DELETE /annals-conformance-000001",
        ]
    );
    golden("settings_bulk_load.json", &requests[4].body);
    golden("settings_restored.json", &requests[9].body);
    golden("aliases_swap.json", &requests[11].body);
}

/// The serving index ignores the bulk-load hint (a projector restarting on a live view): its
/// replicas stay, and its writes keep `refresh=wait_for`.
#[tokio::test]
async fn the_serving_index_is_never_bulk_loaded() {
    let server = MockEs::start(|r, _| {
        match (r.method.as_str(), r.path.as_str()) {
            ("HEAD", "/annals-conformance-000001/_alias/annals-conformance") => return (200, String::new()),
            ("POST", "/_bulk") => return bulk_answer(&r.body, |_, _| (201, None)),
            _ => {}
        }
        routine(r).unwrap_or_else(|| unexpected(r))
    })
    .await;
    let generation = hosting(&server).open(1).await.expect("open");
    generation.writer.bulk_load(true).await.expect("the hint");
    generation.writer.commit(Arc::new(batch([Doc::new(T, "m1", 5, 1)], None))).await.expect("commit");
    generation.writer.bulk_load(false).await.expect("off");
    assert!(server.requests().iter().all(|r| !r.path.ends_with("/_settings")), "no settings change on a serving index");
    assert_eq!(server.to("POST", "/_bulk")[0].query, "refresh=wait_for");
}
