//! The write path on the wire: `_bulk` bodies (golden), per-item statuses, the bounds of a
//! request, the checkpoint document, and `_mget`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use annals_projectors::host::ViewHosting;
use annals_projectors::view_store::elasticsearch::{EsHosting, WriteMode};
use annals_projectors::view_store::testsuite::{at, batch, schema, Doc, OTHER, T};
use annals_projectors::view_store::ViewHalves;
use annals_projectors::ViewError;
use serde_json::json;

use super::server::{answer, bulk_answer, bulk_ids, golden, item_error, routine, unexpected, MockEs, Recorded};

const INDEX: &str = "annals-conformance-000001";

/// A view on `server`, opened (template, index, alias) as a projector opens it.
pub async fn open(server: &MockEs, mode: WriteMode) -> ViewHalves {
    open_with(server, server.config(), mode).await
}

pub async fn open_with(
    _server: &MockEs,
    config: annals_projectors::view_store::elasticsearch::EsConfig,
    mode: WriteMode,
) -> ViewHalves {
    let hosting = EsHosting::new(Arc::new(config), schema(), mode).expect("a valid schema");
    hosting.open(1).await.expect("open generation 1")
}

/// Documents of every field kind, several values, and text that needs escaping.
pub fn docs() -> Vec<Doc> {
    vec![
        Doc::new(T, "m1", 17, 1)
            .kw("status", "SENT")
            .kw("channel", "email")
            .kw("tags", "welcome")
            .kw("tags", "beta")
            .text("subject", "Hello \"world\"\nline two")
            .time("sent_at", at(2))
            .flag("has_errors", false)
            .source(json!({ "id": "m1", "timeline": [{ "type": "message.sent", "at": "2026-11-23T17:00:02Z" }], "x": { "deeply": { "nested": [1, 2, 3] } } })),
        Doc::new(T, "m2", 18, 3).kw("status", "DELIVERED").flag("has_errors", true),
        Doc::new(OTHER, "m1", 19, 4).kw("status", "SENT"),
        Doc::new(T, "m:4", 20, 5).kw("status", "FAILED"),
    ]
}

fn is_bulk(r: &Recorded) -> bool {
    r.method == "POST" && r.path == "/_bulk"
}

#[tokio::test]
async fn bulk_bodies_are_golden_ndjson_with_external_versions_routing_and_refresh_wait_for() {
    let server = MockEs::start(|r, _| {
        routine(r).unwrap_or_else(|| if is_bulk(r) { bulk_answer(&r.body, |_, _| (201, None)) } else { unexpected(r) })
    })
    .await;
    let view = open(&server, WriteMode::ExternalVersion).await;
    let outcome = view.writer.commit(Arc::new(batch(docs(), None))).await.expect("commit");
    assert!(outcome.rejected.is_empty());
    let bulks = server.to("POST", "/_bulk");
    assert_eq!(bulks.len(), 1);
    assert_eq!(bulks[0].query, "refresh=wait_for", "a live batch is searchable when commit returns");
    assert_eq!(bulks[0].content_type, "application/x-ndjson");
    golden("bulk_external_version.ndjson", &bulks[0].body);
}

#[tokio::test]
async fn create_once_views_write_create_actions_without_versions() {
    let server = MockEs::start(|r, _| {
        routine(r).unwrap_or_else(|| if is_bulk(r) { bulk_answer(&r.body, |_, _| (201, None)) } else { unexpected(r) })
    })
    .await;
    let view = open(&server, WriteMode::Create).await;
    view.writer.commit(Arc::new(batch(docs().into_iter().take(2), None))).await.expect("commit");
    golden("bulk_create.ndjson", &server.to("POST", "/_bulk")[0].body);
}

/// The batch of `docs()` answered: `201`, `409` (already applied), `429` (pushed back), `400`
/// `document_parsing_exception` (the document's fault). Only the `429` item is sent again; the
/// `400` comes back as rejected with Elasticsearch's reason.
#[tokio::test]
async fn only_the_failed_items_are_retried_and_a_400_is_reported_rejected() {
    let server = MockEs::start(|r, before| {
        if let Some(a) = routine(r) {
            return a;
        }
        if !is_bulk(r) {
            return unexpected(r);
        }
        let attempt = before.iter().filter(|r| is_bulk(r)).count();
        bulk_answer(&r.body, |n, _| match (attempt, n) {
            (0, 0) => (201, None),
            (0, 1) => (
                409,
                Some(item_error(
                    INDEX,
                    "version_conflict_engine_exception",
                    "[4:acme:m2]: version conflict, current version [18] is higher or equal to the one provided [18]",
                )),
            ),
            (0, 2) => (
                429,
                Some(item_error(
                    INDEX,
                    "es_rejected_execution_exception",
                    "rejected execution of coordinating operation",
                )),
            ),
            (0, 3) => (
                400,
                Some(item_error(
                    INDEX,
                    "document_parsing_exception",
                    "[1:52] failed to parse field [status] of type [keyword]",
                )),
            ),
            // The retry: the 429 item alone, answered 503 once, then written.
            (1, _) => (503, Some(item_error(INDEX, "unavailable_shards_exception", "primary shard is not active"))),
            _ => (201, None),
        })
    })
    .await;
    let view = open(&server, WriteMode::ExternalVersion).await;
    let outcome = view.writer.commit(Arc::new(batch(docs(), None))).await.expect("commit");
    let sent: Vec<Vec<String>> = server.to("POST", "/_bulk").iter().map(|r| bulk_ids(&r.body)).collect();
    assert_eq!(
        sent,
        vec![
            vec!["4:acme:m1".to_owned(), "4:acme:m2".into(), "6:globex:m1".into(), "4:acme:m:4".into()],
            vec!["6:globex:m1".to_owned()],
            vec!["6:globex:m1".to_owned()],
        ],
        "only the pushed-back item is sent again"
    );
    assert_eq!(outcome.rejected.len(), 1, "{outcome:?}");
    let rejected = &outcome.rejected[0];
    assert_eq!((rejected.tenant.as_str(), rejected.id.as_str(), rejected.version.code()), (T, "m:4", 20));
    assert!(
        rejected.reason.contains("document_parsing_exception")
            && rejected.reason.contains("failed to parse field [status]"),
        "{}",
        rejected.reason
    );
}

#[tokio::test]
async fn a_whole_request_answered_429_is_sent_again_whole() {
    let server = MockEs::start(|r, before| {
        if let Some(a) = routine(r) {
            return a;
        }
        match before.iter().filter(|r| is_bulk(r)).count() {
            // `ErrorResponseBase` (`_types/Base.ts`): `{"error": ErrorCause, "status"}`.
            0 => answer(429, json!({ "error": { "root_cause": [{ "type": "es_rejected_execution_exception", "reason": "rejected execution" }], "type": "es_rejected_execution_exception", "reason": "rejected execution" }, "status": 429 })),
            _ => bulk_answer(&r.body, |_, _| (201, None)),
        }
    })
    .await;
    let view = open(&server, WriteMode::ExternalVersion).await;
    let outcome = view.writer.commit(Arc::new(batch(docs(), None))).await.expect("commit");
    assert!(outcome.rejected.is_empty());
    let bulks = server.to("POST", "/_bulk");
    assert_eq!(bulks.len(), 2);
    assert_eq!(bulks[0].body, bulks[1].body);
}

/// An item that keeps failing fails the commit after the policy's retries, so the runtime never
/// sends the checkpoint after it.
#[tokio::test]
async fn an_item_failing_past_the_retries_fails_the_commit() {
    let server = MockEs::start(|r, _| {
        routine(r).unwrap_or_else(|| {
            bulk_answer(&r.body, |_, id| match id {
                "4:acme:m2" => (429, Some(item_error(INDEX, "es_rejected_execution_exception", "rejected execution"))),
                _ => (201, None),
            })
        })
    })
    .await;
    let view = open(&server, WriteMode::ExternalVersion).await;
    let err = view.writer.commit(Arc::new(batch(docs(), None))).await.expect_err("a document is not durable");
    assert!(
        matches!(&err, ViewError::Backend { reason, .. } if reason.contains("es_rejected_execution_exception")),
        "{err}"
    );
    let bulks = server.to("POST", "/_bulk");
    assert_eq!(bulks.len(), 1 + 4, "the first request and the policy's 4 retries");
    assert!(bulks[1..].iter().all(|r| bulk_ids(&r.body) == ["4:acme:m2"]));
    assert!(server.to("PUT", &format!("/{INDEX}/_doc/checkpoint")).is_empty());
}

#[tokio::test]
async fn other_item_errors_fail_the_commit_and_other_400s_are_not_parked() {
    for (status, kind) in
        [(404, "index_not_found_exception"), (403, "security_exception"), (400, "action_request_validation_exception")]
    {
        let server = MockEs::start(move |r, _| {
            routine(r).unwrap_or_else(|| {
                bulk_answer(
                    &r.body,
                    |n, _| if n == 0 { (status, Some(item_error(INDEX, kind, "no"))) } else { (201, None) },
                )
            })
        })
        .await;
        let view = open(&server, WriteMode::ExternalVersion).await;
        let err = view.writer.commit(Arc::new(batch(docs(), None))).await.expect_err("not the document's fault");
        assert!(err.to_string().contains(kind), "{err}");
    }
}

#[tokio::test]
async fn bulk_requests_are_bounded_by_count_and_by_bytes() {
    let server = MockEs::start(|r, _| routine(r).unwrap_or_else(|| bulk_answer(&r.body, |_, _| (201, None)))).await;
    let mut config = server.config();
    config.bulk_max_docs = 3;
    let view = open_with(&server, config, WriteMode::ExternalVersion).await;
    let many: Vec<Doc> = (0..7).map(|i| Doc::new(T, &format!("d{i}"), 10 + i, i as i64)).collect();
    view.writer.commit(Arc::new(batch(many.clone(), None))).await.expect("commit");
    let counts: Vec<usize> = server.to("POST", "/_bulk").iter().map(|r| bulk_ids(&r.body).len()).collect();
    assert_eq!(counts, [3, 3, 1]);

    let server = MockEs::start(|r, _| routine(r).unwrap_or_else(|| bulk_answer(&r.body, |_, _| (201, None)))).await;
    let mut config = server.config();
    config.bulk_max_bytes = 600;
    let view = open_with(&server, config, WriteMode::ExternalVersion).await;
    view.writer.commit(Arc::new(batch(many, None))).await.expect("commit");
    let bulks = server.to("POST", "/_bulk");
    assert!(bulks.len() > 1, "600 bytes hold fewer than 7 documents");
    assert!(bulks.iter().all(|r| r.body.len() <= 600), "{:?}", bulks.iter().map(|r| r.body.len()).collect::<Vec<_>>());
    assert_eq!(bulks.iter().map(|r| bulk_ids(&r.body).len()).sum::<usize>(), 7);
}

#[tokio::test]
async fn the_checkpoint_is_a_document_with_the_position_as_external_version() {
    let puts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&puts);
    let server = MockEs::start(move |r, _| {
        if r.method == "PUT" && r.path == format!("/{INDEX}/_doc/checkpoint") {
            // The second write of an older checkpoint conflicts, which is "already there".
            return match counter.fetch_add(1, Ordering::SeqCst) {
                0 => answer(201, json!({ "_index": INDEX, "_id": "checkpoint", "_version": 42, "result": "created", "_shards": { "total": 2, "successful": 1, "failed": 0 }, "_seq_no": 0, "_primary_term": 1 })),
                _ => answer(409, json!({ "error": { "root_cause": [], "type": "version_conflict_engine_exception", "reason": "[checkpoint]: version conflict, current version [42] is higher or equal to the one provided [41]" }, "status": 409 })),
            };
        }
        routine(r).unwrap_or_else(|| unexpected(r))
    })
    .await;
    let view = open(&server, WriteMode::ExternalVersion).await;
    view.writer.commit(Arc::new(batch([], Some(42)))).await.expect("checkpoint");
    view.writer.commit(Arc::new(batch([], Some(41)))).await.expect("an older checkpoint is a no-op");
    let writes = server.to("PUT", &format!("/{INDEX}/_doc/checkpoint"));
    assert_eq!(writes[0].query, "version=42&version_type=external&refresh=wait_for");
    golden("checkpoint.json", &writes[0].body);
    assert_eq!(puts.load(Ordering::SeqCst), 2);

    let err =
        view.writer.commit(Arc::new(batch(docs(), Some(50)))).await.expect_err("documents and checkpoint together");
    assert!(matches!(err, ViewError::BadQuery { .. }), "{err}");
}

#[tokio::test]
async fn get_many_is_one_real_time_mget_routed_by_tenant() {
    let server = MockEs::start(|r, _| {
        routine(r).unwrap_or_else(|| {
            // `_global/mget/MultiGetResponse.ts`: `docs[]` of `GetResult` (`found`, `_source`, `_version`).
            answer(200, json!({ "docs": [
                { "_index": INDEX, "_id": "4:acme:m1", "_version": 17, "_seq_no": 0, "_primary_term": 1, "found": true,
                  "_source": { "tenant": "acme", "id": "m1", "version": 17, "status": "SENT", "source": { "id": "m1" } } },
                { "_index": INDEX, "_id": "6:globex:m1", "found": false }
            ] }))
        })
    })
    .await;
    let view = open(&server, WriteMode::ExternalVersion).await;
    let keys = [(T.to_owned(), "m1".to_owned()), (OTHER.to_owned(), "m1".to_owned())];
    let got = view.writer.get_many(&keys).await.expect("mget");
    assert_eq!(
        got[0].as_ref().map(|d| (d.id.as_str(), d.version.code(), d.source.clone())),
        Some(("m1", 17, json!({ "id": "m1" })))
    );
    assert_eq!(got[1], None);
    let mget = server.to("POST", "/_mget");
    assert_eq!(mget.len(), 1);
    assert_eq!(mget[0].query, "", "real time: no realtime=false");
    golden("mget.json", &mget[0].body);
}

/// A document the schema does not allow is a projection bug: the whole batch is refused before
/// anything is sent, so nothing of it is written (the contract's `BadQuery`).
#[tokio::test]
async fn a_document_the_schema_does_not_allow_refuses_the_batch_before_any_request() {
    use annals_projectors::view_store::FieldValue;
    let server = MockEs::start(|r, _| routine(r).unwrap_or_else(|| bulk_answer(&r.body, |_, _| (201, None)))).await;
    let view = open(&server, WriteMode::ExternalVersion).await;
    let invalid = |field: &'static str, values: Vec<FieldValue>| {
        let mut doc = Doc::new(T, "c", 3, 3);
        doc.0.fields.insert(field, values);
        doc
    };
    for doc in [
        invalid("no_such_field", vec![FieldValue::Str("x".into())]),
        invalid("sent_at", vec![FieldValue::Str("yesterday".into())]),
        invalid("status", vec![FieldValue::Bool(true)]),
        invalid("sent_at", vec![FieldValue::Time(at(1)), FieldValue::Time(at(2))]),
    ] {
        let err = view.writer.commit(Arc::new(batch([Doc::new(T, "b", 2, 2), doc], None))).await.expect_err("refused");
        assert!(matches!(err, ViewError::BadQuery { .. }), "{err}");
    }
    assert!(server.to("POST", "/_bulk").is_empty());
}
