//! The read path on the wire: the `_search` body of every filter kind (golden), routing and the
//! tenant filter on every read, totals and facets from the answer, `search_after` paging, the
//! reader's checkpoint as of the last refresh, and error bodies.

use annals_projectors::view_store::elasticsearch::WriteMode;
use annals_projectors::view_store::testsuite::{at, query, T};
use annals_projectors::view_store::{Cursor, Filter, Query, Sort};
use annals_projectors::ViewError;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::server::{answer, golden, routine, unexpected, MockEs};
use super::writes::open;

const INDEX: &str = "annals-conformance-000001";

fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().expect("in range")
}

/// A search answer shaped like `_global/search/examples/200_response/SearchResponseExample1.yaml`
/// (`took`, `timed_out`, `_shards`, `hits.total {value, relation}`, `hits.hits[]`), with `sort`
/// values on each hit (`_global/search/_types/hits.ts`, `Hit.sort`) and `terms` aggregates
/// (`_types/aggregations/Aggregate.ts`: `doc_count_error_upper_bound`, `sum_other_doc_count`,
/// `buckets[{key, doc_count}]`).
fn search_answer(ids: &[(&str, i64)], total: u64, other: u64) -> (u16, String) {
    let hits: Vec<Value> = ids
        .iter()
        .map(|(id, seconds)| {
            json!({
                "_index": INDEX, "_id": format!("4:acme:{id}"), "_score": null,
                "_source": { "id": id, "version": 7, "source": { "id": id } },
                "sort": [nanos(at(*seconds)), id]
            })
        })
        .collect();
    answer(
        200,
        json!({
            "took": 5, "timed_out": false,
            "_shards": { "total": 1, "successful": 1, "skipped": 0, "failed": 0 },
            "hits": { "total": { "value": total, "relation": "eq" }, "max_score": null, "hits": hits },
            "aggregations": {
                "status": { "doc_count_error_upper_bound": 0, "sum_other_doc_count": other,
                            "buckets": [ { "key": "SENT", "doc_count": 3 }, { "key": "FAILED", "doc_count": 1 } ] },
                "tags": { "doc_count_error_upper_bound": 0, "sum_other_doc_count": 0, "buckets": [ { "key": "beta", "doc_count": 2 } ] }
            }
        }),
    )
}

fn every_filter() -> Query {
    Query {
        filters: vec![
            Filter::Term { field: "status", values: vec!["SENT".into(), "FAILED".into()] },
            Filter::Prefix { field: "channel", prefix: "em".into() },
            Filter::TimeRange { field: "sent_at", from: Some(at(10)), to: Some(at(20)) },
            Filter::TimeRange { field: "at", from: None, to: Some(at(30)) },
            Filter::Bool { field: "has_errors", value: true },
        ],
        text: Some("Hello wörld".into()),
        sort: Sort { field: "at", descending: false },
        limit: 2,
        after: Some(Cursor { time: at(5) + chrono::Duration::nanoseconds(123), id: "m0".into() }),
        facets: vec!["status", "tags"],
        ..query(T)
    }
}

#[tokio::test]
async fn every_filter_kind_becomes_the_golden_search_body_routed_by_tenant() {
    let server = MockEs::start(|r, _| routine(r).unwrap_or_else(|| search_answer(&[("m1", 6), ("m2", 7)], 4, 0))).await;
    let view = open(&server, WriteMode::ExternalVersion).await;
    let page = view.reader.search(&every_filter()).await.expect("search");
    let searches = server.to("POST", &format!("/{INDEX}/_search"));
    assert_eq!(searches.len(), 1);
    assert_eq!(searches[0].query, "routing=acme", "every read routes by tenant");
    golden("search_every_filter.json", &searches[0].body);
    let body = searches[0].json();
    assert_eq!(
        body["query"]["bool"]["filter"][0],
        json!({ "term": { "tenant": "acme" } }),
        "every read filters by tenant"
    );

    assert_eq!(page.docs.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["m1", "m2"]);
    assert_eq!(page.total, 4);
    assert_eq!(page.facets["status"], [("FAILED".to_owned(), 1), ("SENT".to_owned(), 3)].into_iter().collect());
    assert_eq!(page.facets["tags"], [("beta".to_owned(), 2)].into_iter().collect());
    assert_eq!(page.next, Some(Cursor { time: at(7), id: "m2".into() }), "a full page's last hit is the cursor");
}

#[tokio::test]
async fn search_after_pages_from_the_last_hit_of_the_previous_page() {
    let server = MockEs::start(|r, before| {
        routine(r).unwrap_or_else(|| match before.iter().filter(|r| r.path.ends_with("/_search")).count() {
            0 => search_answer(&[("m9", 9), ("m8", 8)], 3, 0),
            1 => search_answer(&[("m7", 7)], 3, 0),
            _ => unexpected(r),
        })
    })
    .await;
    let view = open(&server, WriteMode::ExternalVersion).await;
    let first = view.reader.search(&Query { limit: 2, ..query(T) }).await.expect("page 1");
    let second = view.reader.search(&Query { limit: 2, after: first.next.clone(), ..query(T) }).await.expect("page 2");
    assert_eq!(second.next, None, "a page shorter than the limit is the last");
    let searches = server.to("POST", &format!("/{INDEX}/_search"));
    let (one, two) = (searches[0].json(), searches[1].json());
    assert!(one.get("search_after").is_none());
    assert_eq!(two["search_after"], json!([nanos(at(8)), "m8"]));
    assert_eq!(
        two["sort"],
        json!([{ "at": { "order": "desc" } }, { "id": { "order": "desc" } }]),
        "a stable sort: time, then id"
    );
    assert_eq!(two["track_total_hits"], json!(true), "totals are exact");
    assert!(searches.iter().all(|r| r.query == "routing=acme"));
}

#[tokio::test]
async fn a_facet_with_uncounted_values_is_an_error_not_a_wrong_count() {
    let server = MockEs::start(|r, _| routine(r).unwrap_or_else(|| search_answer(&[], 4, 2))).await;
    let view = open(&server, WriteMode::ExternalVersion).await;
    let err = view.reader.search(&Query { facets: vec!["status"], ..query(T) }).await.expect_err("inexact facet");
    assert!(err.to_string().contains("facet"), "{err}");
}

#[tokio::test]
async fn bad_queries_are_refused_before_any_request() {
    let server = MockEs::start(|r, _| routine(r).unwrap_or_else(|| unexpected(r))).await;
    let view = open(&server, WriteMode::ExternalVersion).await;
    let bad = [
        Query { filters: vec![Filter::Term { field: "nope", values: vec![] }], ..query(T) },
        Query { filters: vec![Filter::Prefix { field: "at", prefix: "x".into() }], ..query(T) },
        Query { filters: vec![Filter::Bool { field: "status", value: true }], ..query(T) },
        Query { sort: Sort { field: "status", descending: true }, ..query(T) },
        Query { facets: vec!["subject"], ..query(T) },
    ];
    for q in bad {
        let err = view.reader.search(&q).await.expect_err("bad query");
        assert!(matches!(err, ViewError::BadQuery { .. }), "{err}");
    }
    assert!(server.to("POST", &format!("/{INDEX}/_search")).is_empty());
}

#[tokio::test]
async fn get_routes_by_tenant_and_the_readers_checkpoint_is_as_of_the_last_refresh() {
    let server = MockEs::start(|r, _| {
        if r.method == "GET" && r.path == format!("/{INDEX}/_doc/checkpoint") {
            // `_global/get/GetResponse.ts`.
            return answer(200, json!({ "_index": INDEX, "_id": "checkpoint", "_version": 42, "_seq_no": 3, "_primary_term": 1, "found": true,
                                       "_source": { "id": "checkpoint", "version": 42, "source": { "position": 42 } } }));
        }
        if r.method == "GET" && r.path.starts_with(&format!("/{INDEX}/_doc/")) {
            return answer(404, json!({ "_index": INDEX, "_id": "x", "found": false }));
        }
        routine(r).unwrap_or_else(|| unexpected(r))
    })
    .await;
    let view = open(&server, WriteMode::ExternalVersion).await;
    assert_eq!(view.reader.checkpoint().await.expect("checkpoint").map(|c| c.position.code()), Some(42));
    assert_eq!(view.writer.checkpoint().await.expect("checkpoint").map(|c| c.position.code()), Some(42));
    assert_eq!(view.reader.get("acme", "a/b c").await.expect("get"), None);
    let gets: Vec<_> = server.requests().into_iter().filter(|r| r.method == "GET").collect();
    assert_eq!(gets[0].query, "realtime=false", "a reader sees the checkpoint of its last refresh (guarantee 4)");
    assert_eq!(gets[1].query, "", "the writer resumes from the real-time checkpoint");
    assert_eq!(
        (gets[2].path.as_str(), gets[2].query.as_str()),
        (&*format!("/{INDEX}/_doc/4%3Aacme%3Aa%2Fb%20c"), "routing=acme")
    );
}

#[tokio::test]
async fn an_error_body_becomes_a_backend_error_with_its_type_and_reason() {
    let server = MockEs::start(|r, _| {
        routine(r).unwrap_or_else(|| {
            // `ErrorResponseBase` (`_types/Base.ts`) with an `ErrorCause` (`_types/Errors.ts`).
            answer(400, json!({ "error": {
                "root_cause": [{ "type": "query_shard_exception", "reason": "failed to create query", "index": INDEX }],
                "type": "search_phase_execution_exception", "reason": "all shards failed", "phase": "query", "grouped": true,
                "failed_shards": []
            }, "status": 400 }))
        })
    })
    .await;
    let view = open(&server, WriteMode::ExternalVersion).await;
    let err = view.reader.search(&query(T)).await.expect_err("an error answer");
    assert!(
        matches!(&err, ViewError::Backend { reason, .. } if reason.contains("400 search_phase_execution_exception: all shards failed")),
        "{err}"
    );
}
