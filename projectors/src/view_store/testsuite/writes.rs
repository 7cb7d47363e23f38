//! The write side of the contract: checkpoints committed with their batch (guarantee 1),
//! idempotence by version (guarantee 2), tenant identity, durability across reopening,
//! near-real-time visibility (guarantee 3) and a reader's checkpoint (guarantee 4).

use std::collections::BTreeMap;
use std::time::{Duration as StdDuration, Instant};

use super::fixtures::*;
use super::Make;
use crate::error::ViewError;
use crate::view_store::{FieldValue, Filter, Query, ViewBatch};
use annals_store::Position;
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Checkpoints and batches (guarantee 1)

pub async fn empty_view_has_no_checkpoint(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    assert_eq!(checkpoint(&store).await, None);
    let page = search(&store, &query(T)).await;
    assert!(page.docs.is_empty() && page.next.is_none() && page.total == 0);
    assert_eq!(get(&store, T, "m1").await.expect("get"), None);
}

pub async fn commit_then_checkpoint(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    commit(&store, batch([Doc::new(T, "a", 3, 1)], Some(3))).await;
    assert_eq!(checkpoint(&store).await, Some(3));
    // A batch without a checkpoint keeps the previous one.
    commit(&store, batch([Doc::new(T, "b", 4, 2)], None)).await;
    assert_eq!(checkpoint(&store).await, Some(3));
    commit(&store, batch([], Some(9))).await;
    assert_eq!(checkpoint(&store).await, Some(9));
    assert_eq!(id_set(&store, &query(T)).await, set(&["a", "b"]));
}

pub async fn batch_writes_and_checkpoint_are_visible_together(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    commit(&store, batch((0..50).map(|i| Doc::new(T, &format!("d{i:02}"), i, i as i64)), Some(49))).await;
    assert_eq!(checkpoint(&store).await, Some(49));
    assert_eq!(search(&store, &query(T)).await.total, 50);
    for i in 0..50u64 {
        let doc = get(&store, T, &format!("d{i:02}")).await.expect("get").expect("every write of the batch");
        assert_eq!(doc.version, Position::from_code(i));
    }
}

pub async fn invalid_batch_writes_nothing(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    commit(&store, batch([Doc::new(T, "a", 1, 1)], Some(1))).await;
    let invalid = |field: &'static str, values: Vec<FieldValue>| {
        let mut doc = Doc::new(T, "c", 3, 3);
        doc.0.fields.insert(field, values);
        doc
    };
    for (why, doc) in [
        ("an undeclared field", invalid("no_such_field", vec![FieldValue::Str("x".into())])),
        ("a string in a Time field", invalid("sent_at", vec![FieldValue::Str("yesterday".into())])),
        ("a bool in a Keyword field", invalid("status", vec![FieldValue::Bool(true)])),
        ("two times in a Time field", invalid("sent_at", vec![FieldValue::Time(at(1)), FieldValue::Time(at(2))])),
    ] {
        match try_commit(&store, batch([Doc::new(T, "b", 2, 2), doc], Some(3))).await {
            Err(ViewError::BadQuery { .. }) => {}
            other => panic!("a document with {why}: expected BadQuery, got {other:?}"),
        }
        assert_eq!(checkpoint(&store).await, Some(1), "{why}");
        assert_eq!(get(&store, T, "b").await.expect("get"), None, "no write of a failed batch is visible ({why})");
    }
    // Nor does a later batch publish what the failed one staged.
    commit(&store, batch([Doc::new(T, "d", 4, 4)], Some(4))).await;
    assert_eq!(id_set(&store, &query(T)).await, set(&["a", "d"]));
}

// ---------------------------------------------------------------------------------------------
// Versions (guarantee 2)

pub async fn stale_version_is_ignored_and_equal_version_is_a_no_op(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    let v5 = Doc::new(T, "m", 5, 10).kw("status", "SENT").source(json!({ "v": 5 }));
    commit(&store, batch([v5], None)).await;
    let stale = Doc::new(T, "m", 3, 99).kw("status", "ENQUEUED").source(json!({ "v": 3 }));
    let equal = Doc::new(T, "m", 5, 99).kw("status", "OPENED").source(json!({ "v": "5 again" }));
    commit(&store, batch([stale], None)).await;
    commit(&store, batch([equal], None)).await;
    let doc = get(&store, T, "m").await.expect("get").expect("the document");
    assert_eq!((doc.version, doc.source), (Position::from_code(5), json!({ "v": 5 })));
    let sent = Filter::Term { field: "status", values: vec!["SENT".into()] };
    assert_eq!(id_set(&store, &with_filter(sent)).await, set(&["m"]), "fields are the v5 ones");
    commit(&store, batch([Doc::new(T, "m", 6, 10).source(json!({ "v": 6 }))], None)).await;
    assert_eq!(get(&store, T, "m").await.expect("get").expect("doc").source, json!({ "v": 6 }));
}

pub async fn last_version_wins_within_a_batch(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    let v = |version: u64| Doc::new(T, "m", version, 10).source(json!({ "v": version }));
    commit(&store, batch([v(2), v(7), v(4), v(7).source(json!({ "v": "7 again" }))], None)).await;
    let doc = get(&store, T, "m").await.expect("get").expect("doc");
    assert_eq!((doc.version, doc.source), (Position::from_code(7), json!({ "v": 7 })));
    assert_eq!(search(&store, &query(T)).await.total, 1, "one document per id");
}

pub async fn replaying_a_prefix_changes_nothing(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    // Ten batches of events on twelve documents: each event bumps its document's version.
    let batches: Vec<ViewBatch> = (0..10u64)
        .map(|b| {
            let docs = (0..6u64).map(move |i| {
                let position = b * 6 + i;
                let id = format!("d{}", (b * 7 + i * 5) % 12);
                Doc::new(T, &id, position, (position % 9) as i64)
                    .kw("status", if position % 2 == 0 { "SENT" } else { "OPENED" })
                    .source(json!({ "id": id, "last": position }))
            });
            batch(docs, Some(b * 6 + 5))
        })
        .collect();
    for b in &batches {
        commit(&store, b.clone()).await;
    }
    let before = (all_docs(&store, T).await, checkpoint(&store).await);
    assert_eq!(before.0.len(), 12);
    for prefix in [1, 4, 10] {
        for b in &batches[..prefix] {
            commit(&store, b.clone()).await;
        }
        assert_eq!((all_docs(&store, T).await, checkpoint(&store).await), before, "replaying {prefix} batches");
    }
}

pub async fn upsert_replaces_the_document_and_its_fields(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    commit(&store, batch([Doc::new(T, "m", 1, 10).kw("status", "SENT").kw("tags", "a")], None)).await;
    commit(&store, batch([Doc::new(T, "m", 2, 20).kw("status", "OPENED").source(json!("v2"))], None)).await;
    let status = |s: &str| with_filter(Filter::Term { field: "status", values: vec![s.to_owned()] });
    assert!(id_set(&store, &status("SENT")).await.is_empty(), "the old field values are gone");
    assert_eq!(id_set(&store, &status("OPENED")).await, set(&["m"]));
    let tag_a = with_filter(Filter::Term { field: "tags", values: vec!["a".into()] });
    assert!(id_set(&store, &tag_a).await.is_empty());
    assert_eq!(search(&store, &query(T)).await.total, 1);
    assert_eq!(get(&store, T, "m").await.expect("get").expect("doc").source, json!("v2"));
}

// ---------------------------------------------------------------------------------------------
// Tenants (guarantee 7)

pub async fn get_is_tenant_isolated(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    commit(&store, batch([Doc::new(T, "only-acme", 1, 1)], None)).await;
    assert!(get(&store, T, "only-acme").await.expect("get").is_some());
    assert_eq!(get(&store, OTHER, "only-acme").await.expect("get"), None);
    // The same id in two tenants: two documents with their own versions.
    commit(
        &store,
        batch(
            [
                Doc::new(T, "shared", 9, 1).source(json!("acme's")),
                Doc::new(OTHER, "shared", 2, 1).source(json!("globex's")),
            ],
            None,
        ),
    )
    .await;
    assert_eq!(get(&store, T, "shared").await.expect("get").expect("doc").source, json!("acme's"));
    assert_eq!(get(&store, OTHER, "shared").await.expect("get").expect("doc").source, json!("globex's"));
}

pub async fn get_many_answers_in_order_per_tenant(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    assert_eq!(get_many(&store, &[]).await.expect("get_many of nothing"), Vec::new());
    commit(
        &store,
        batch(
            [Doc::new(T, "a", 3, 1), Doc::new(T, "b", 4, 1), Doc::new(OTHER, "a", 5, 1).source(json!("globex's"))],
            None,
        ),
    )
    .await;
    // A newer version replaces the older: get_many sees only the live document.
    commit(&store, batch([Doc::new(T, "b", 8, 1).source(json!("b8"))], None)).await;
    let got =
        get_many(&store, &[(T, "b"), (T, "missing"), (OTHER, "a"), (T, "a"), (OTHER, "b")]).await.expect("get_many");
    let summary: Vec<_> = got.iter().map(|d| d.as_ref().map(|d| (d.id.as_str(), d.version.code()))).collect();
    assert_eq!(summary, [Some(("b", 8)), None, Some(("a", 5)), Some(("a", 3)), None]);
    assert_eq!(got[0].as_ref().expect("b").source, json!("b8"));
    assert_eq!(got[2].as_ref().expect("globex's a").source, json!("globex's"));
}

pub async fn search_is_tenant_isolated(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    seed(&store).await;
    assert_eq!(id_set(&store, &query(T)).await, set(&["m1", "m2", "m3", "m4"]));
    assert_eq!(id_set(&store, &query(OTHER)).await, set(&["o1"]));
    assert!(id_set(&store, &query("nobody")).await.is_empty());
    let text = Query { text: Some("shipped".into()), facets: vec!["status"], ..query(OTHER) };
    let page = search(&store, &text).await;
    assert_eq!(page.docs.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["o1"]);
    assert_eq!(page.facets["status"], BTreeMap::from([("SENT".to_owned(), 1)]));
}

// ---------------------------------------------------------------------------------------------
// Durability and near-real-time (guarantees 1 and 3)

pub async fn bulk_load_keeps_every_guarantee(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    store.writer.bulk_load(true).await.expect("bulk load on");
    for i in 1..=20u64 {
        commit(&store, batch([Doc::new(T, &format!("b{i}"), i, i as i64), Doc::new(T, "hot", i, 0)], Some(i))).await;
    }
    assert_eq!(checkpoint(&store).await, Some(20));
    assert_eq!(search(&store, &query(T)).await.total, 21, "visible while bulk loading");
    assert_eq!(get(&store, T, "hot").await.expect("get").expect("hot").version, Position::from_code(20));
    store.writer.bulk_load(false).await.expect("bulk load off");
    store.writer.bulk_load(false).await.expect("bulk load off twice");
    assert_eq!(checkpoint(&store).await, Some(20), "turning bulk load off keeps the checkpoint");
    assert_eq!(all_docs(&store, T).await.len(), 21);
    commit(&store, batch([Doc::new(T, "hot", 3, 0).source(json!("stale"))], None)).await;
    assert_eq!(get(&store, T, "hot").await.expect("get").expect("hot").version, Position::from_code(20));
}

pub async fn reopen_keeps_checkpoint_and_documents(make: &Make) {
    let dir = tempdir();
    let (before, facets) = {
        let store = make(dir.path().to_owned(), schema()).await;
        seed(&store).await;
        commit(&store, batch([Doc::new(T, "m5", 6, 50).kw("status", "SENT")], Some(6))).await;
        let facets = search(&store, &Query { facets: vec!["status"], ..query(T) }).await.facets;
        (all_docs(&store, T).await, facets)
    };
    let store = make(dir.path().to_owned(), schema()).await;
    assert_eq!(checkpoint(&store).await, Some(6));
    assert_eq!(all_docs(&store, T).await, before);
    assert_eq!(search(&store, &Query { facets: vec!["status"], ..query(T) }).await.facets, facets);
    assert_eq!(get(&store, OTHER, "o1").await.expect("get").expect("doc").version, Position::from_code(5));
    // Versions survive too: a stale write after reopening is still ignored.
    commit(&store, batch([Doc::new(T, "m5", 2, 50).source(json!("stale"))], None)).await;
    assert_ne!(get(&store, T, "m5").await.expect("get").expect("doc").source, json!("stale"));
    commit(&store, batch([Doc::new(T, "m6", 7, 60)], Some(7))).await;
    drop(store);
    let store = make(dir.path().to_owned(), schema()).await;
    assert_eq!(checkpoint(&store).await, Some(7));
    assert_eq!(search(&store, &query(T)).await.total, 6);
}

pub async fn committed_batch_is_searchable_within_a_second(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    for i in 0..5u64 {
        let id = format!("nrt-{i}");
        commit(&store, batch([Doc::new(T, &id, i, i as i64).text("subject", "fresh")], Some(i))).await;
        let committed = Instant::now();
        let q = Query { text: Some("fresh".into()), ..query(T) };
        loop {
            let found = ids(&store, &q).await.contains(&id) && get(&store, T, &id).await.expect("get").is_some();
            if found {
                break;
            }
            assert!(committed.elapsed() < StdDuration::from_secs(1), "{id} not visible within 1 s");
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        }
    }
}

pub async fn a_commit_is_visible_on_return_where_the_backend_says_so(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    if !store.writer.capabilities().visible_on_return {
        return;
    }
    for i in 0..20u64 {
        let id = format!("doc-{i}");
        commit(&store, batch([Doc::new(T, &id, i, i as i64).text("subject", "hot off the press")], Some(i))).await;
        // No waiting, no polling: the very next reads see the batch.
        assert!(get(&store, T, &id).await.expect("get").is_some(), "{id} by get");
        let q = Query { text: Some("press".into()), ..query(T) };
        assert_eq!(search(&store, &q).await.total, i + 1, "{id} by search");
        assert_eq!(checkpoint(&store).await, Some(i));
    }
}

pub async fn a_reader_sees_the_documents_of_its_checkpoint(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    // Commits run while the reader asks: whatever checkpoint it answers, the documents of the
    // commits up to it are already visible to it, with no wait.
    let writer = store.clone();
    let writes = tokio::spawn(async move {
        for i in 0..30u64 {
            commit(&writer, batch([Doc::new(T, &format!("r{i:02}"), i, i as i64)], Some(i))).await;
        }
    });
    let mut seen = None;
    while seen != Some(29) {
        let Some(c) = store.reader.checkpoint().await.expect("checkpoint") else {
            tokio::task::yield_now().await;
            continue;
        };
        let c = c.position.code();
        let total = search(&store, &query(T)).await.total;
        assert!(total > c, "checkpoint {c} with only {total} documents visible");
        for i in [0, c / 2, c] {
            assert!(get(&store, T, &format!("r{i:02}")).await.expect("get").is_some(), "r{i:02} under checkpoint {c}");
        }
        assert!(seen.is_none_or(|s| s <= c), "the checkpoint went back from {seen:?} to {c}");
        seen = Some(c);
    }
    writes.await.expect("the writes");
}
