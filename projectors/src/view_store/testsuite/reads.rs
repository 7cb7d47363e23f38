//! The read side of the contract: each filter kind alone and combined, full-text search, facet
//! counts, and the queries a backend must refuse as `BadQuery`.

use std::collections::{BTreeMap, BTreeSet};

use super::fixtures::*;
use super::Make;
use crate::view_store::{Filter, Query, Sort};
use chrono::{DateTime, Duration, Utc};

// ---------------------------------------------------------------------------------------------
// Filters

pub async fn term_filter_matches_any_of_its_values(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    seed(&store).await;
    let term = |field, values: &[&str]| {
        with_filter(Filter::Term { field, values: values.iter().map(|s| (*s).to_owned()).collect() })
    };
    assert_eq!(id_set(&store, &term("status", &["SENT"])).await, set(&["m1", "m4"]));
    assert_eq!(id_set(&store, &term("status", &["SENT", "DELIVERED"])).await, set(&["m1", "m2", "m4"]));
    assert_eq!(id_set(&store, &term("tags", &["orders"])).await, set(&["m1", "m2"]), "multi-valued");
    assert_eq!(id_set(&store, &term("tags", &["transactional", "marketing"])).await, set(&["m1", "m3"]));
    assert!(id_set(&store, &term("status", &["sent"])).await.is_empty(), "keywords are exact");
    assert!(id_set(&store, &term("status", &["SEN"])).await.is_empty(), "whole values only");
}

pub async fn prefix_filter_matches_value_prefixes_only(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    seed(&store).await;
    commit(
        &store,
        batch(
            [
                Doc::new(T, "x1", 10, 50).kw("action", "a.*[b]"),
                Doc::new(T, "x2", 11, 51).kw("action", "a.*[c]"),
                Doc::new(T, "x3", 12, 52).kw("action", "ab"),
                Doc::new(T, "x4", 13, 53).kw("action", "émoji✓"),
                Doc::new(T, "x5", 14, 54).kw("action", "émoji✓+"),
                Doc::new(T, "x6", 15, 55).kw("action", "x\u{7f}"),
                Doc::new(T, "x7", 16, 56).kw("action", "x\u{80}"),
            ],
            None,
        ),
    )
    .await;
    let prefix = |p: &str| with_filter(Filter::Prefix { field: "action", prefix: p.to_owned() });
    assert_eq!(id_set(&store, &prefix("template.")).await, set(&["m1", "m2"]));
    assert_eq!(id_set(&store, &prefix("template")).await, set(&["m1", "m2", "m3"]));
    assert_eq!(id_set(&store, &prefix("template.created")).await, set(&["m1"]));
    assert!(id_set(&store, &prefix("updated")).await.is_empty(), "not a substring match");
    assert!(id_set(&store, &prefix("Template")).await.is_empty(), "case-sensitive");
    assert_eq!(id_set(&store, &prefix("a.*[")).await, set(&["x1", "x2"]), "no pattern syntax");
    assert_eq!(id_set(&store, &prefix("a")).await, set(&["x1", "x2", "x3"]));
    assert_eq!(id_set(&store, &prefix("émoji✓")).await, set(&["x4", "x5"]));
    assert_eq!(id_set(&store, &prefix("x\u{7f}")).await, set(&["x6"]));
    assert_eq!(id_set(&store, &prefix("")).await.len(), 11, "the empty prefix: any value");
}

pub async fn time_range_includes_from_and_excludes_to(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    seed(&store).await;
    // Sub-second precision matters at the edges.
    let nanos = at(40) + Duration::nanoseconds(1);
    commit(&store, batch([Doc::at(T, "n", 10, nanos)], None)).await;
    let range = |from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>| {
        with_filter(Filter::TimeRange { field: "at", from, to })
    };
    assert_eq!(id_set(&store, &range(Some(at(20)), Some(at(40)))).await, set(&["m2", "m3"]));
    assert_eq!(id_set(&store, &range(Some(at(20)), None)).await, set(&["m2", "m3", "m4", "n"]));
    assert_eq!(id_set(&store, &range(None, Some(at(20)))).await, set(&["m1"]));
    assert_eq!(id_set(&store, &range(None, None)).await.len(), 5);
    assert_eq!(id_set(&store, &range(Some(nanos), None)).await, set(&["n"]));
    assert_eq!(id_set(&store, &range(Some(at(40)), Some(nanos))).await, set(&["m4"]));
    assert!(id_set(&store, &range(Some(at(30)), Some(at(30)))).await.is_empty());
    assert!(id_set(&store, &range(Some(at(40)), Some(at(20)))).await.is_empty(), "an inverted range");
    // Another Time field than the sort field.
    commit(&store, batch([Doc::new(T, "s", 11, 60).time("sent_at", at(5))], None)).await;
    let sent = with_filter(Filter::TimeRange { field: "sent_at", from: None, to: Some(at(6)) });
    assert_eq!(id_set(&store, &sent).await, set(&["s"]));
}

pub async fn bool_filter(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    seed(&store).await;
    let errors = |value| with_filter(Filter::Bool { field: "has_errors", value });
    assert_eq!(id_set(&store, &errors(true)).await, set(&["m3"]));
    assert_eq!(id_set(&store, &errors(false)).await, set(&["m1", "m2", "m4"]));
}

pub async fn filters_combine_with_and(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    seed(&store).await;
    let q = Query {
        filters: vec![
            Filter::Term { field: "channel", values: vec!["email".into(), "sms".into()] },
            Filter::Prefix { field: "action", prefix: "template".into() },
            Filter::TimeRange { field: "at", from: Some(at(15)), to: None },
            Filter::Bool { field: "has_errors", value: false },
        ],
        ..query(T)
    };
    assert_eq!(id_set(&store, &q).await, set(&["m2"]));
    let with_text = Query { text: Some("delivered".into()), ..q.clone() };
    assert_eq!(id_set(&store, &with_text).await, set(&["m2"]));
    let excluded = Query { text: Some("shipped".into()), ..q };
    assert!(id_set(&store, &excluded).await.is_empty());
}

pub async fn text_search_is_case_insensitive_and_needs_every_term(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    seed(&store).await;
    let text = |t: &str| Query { text: Some(t.to_owned()), ..query(T) };
    assert_eq!(id_set(&store, &text("shipped")).await, set(&["m1"]));
    assert_eq!(id_set(&store, &text("ORDER")).await, set(&["m1", "m2", "m4"]));
    assert_eq!(id_set(&store, &text("order SHIPPED")).await, set(&["m1"]));
    assert!(id_set(&store, &text("order digest")).await.is_empty(), "every term must match");
    // Terms may match in different Text fields.
    assert_eq!(id_set(&store, &text("ada digest")).await, set(&["m3"]));
    assert_eq!(id_set(&store, &text("ada")).await, set(&["m1", "m3"]));
    // Query syntax is not interpreted, and never an error.
    for hostile in ["order AND (", "\"shipped", "subject:order", "order*", "-digest", "a:b:c ]["] {
        search(&store, &text(hostile)).await;
    }
    assert_eq!(id_set(&store, &text("subject:order")).await, BTreeSet::new(), "`subject` is a term");
    assert_eq!(id_set(&store, &text("(order)  ,")).await, set(&["m1", "m2", "m4"]));
}

/// A word is found whatever its length, and a search whose words cannot match (or that has no
/// word at all) matches nothing, never everything (issue 13: words of 40 bytes or more were
/// dropped from the query, which then matched every document).
pub async fn long_words_are_found_and_never_match_everything(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    seed(&store).await;
    let forty = "a".repeat(40);
    let long = format!("Trk{}", "0123456789".repeat(30)); // 303 bytes
    let huge = "Zz".repeat(40_000); // 80 kB: past tantivy's own limit for one term
    commit(
        &store,
        batch(
            [
                Doc::new(T, "w1", 100, 100).text("subject", &format!("parcel {forty}")),
                Doc::new(T, "w2", 101, 101).text("subject", &format!("tracking {long} issued")),
                Doc::new(T, "w3", 102, 102).text("recipient", &huge),
            ],
            None,
        ),
    )
    .await;
    let text = |t: &str| Query { text: Some(t.to_owned()), ..query(T) };
    assert_eq!(id_set(&store, &text(&forty)).await, set(&["w1"]));
    assert_eq!(id_set(&store, &text(&long.to_uppercase())).await, set(&["w2"]), "case-insensitive, all pieces");
    assert_eq!(id_set(&store, &text(&format!("{long} tracking"))).await, set(&["w2"]));
    assert_eq!(id_set(&store, &text(&huge)).await, set(&["w3"]));
    for nowhere in [
        "b".repeat(40),
        "b".repeat(41),
        format!("Trk{}", "0123456789".repeat(29)), // a prefix of a stored long word is another word
        format!("{long}x"),
        "Zy".repeat(40_000),
        format!("parcel {}", "c".repeat(300)),
    ] {
        let page = search(&store, &text(&nowhere)).await;
        assert_eq!(page.total, 0, "{:.60}… matches nothing: {:?}", nowhere, page.docs);
    }
    for no_word in ["!!!", " ,;- ", "…"] {
        assert_eq!(search(&store, &text(no_word)).await.total, 0, "{no_word:?} has no word and matches nothing");
    }
}

// ---------------------------------------------------------------------------------------------
// Facets

pub async fn facets_count_every_matching_document(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    seed(&store).await;
    let q = Query { limit: 1, facets: vec!["status", "tags", "channel"], ..query(T) };
    let page = search(&store, &q).await;
    assert_eq!(page.total, 4);
    let counts =
        |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> { pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect() };
    assert_eq!(page.facets["status"], counts(&[("DELIVERED", 1), ("SENT", 2), ("UNDELIVERABLE", 1)]));
    assert_eq!(page.facets["tags"], counts(&[("marketing", 1), ("orders", 2), ("transactional", 1)]));
    assert_eq!(page.facets["channel"], counts(&[("email", 2), ("push", 1), ("sms", 1)]));
    // The same on the next page: facets and total ignore the cursor.
    let next = search(&store, &Query { after: page.next.clone(), ..q.clone() }).await;
    assert_eq!((next.total, &next.facets), (page.total, &page.facets));
    // And they follow the filters and the text.
    let filtered = Query { text: Some("order".into()), facets: vec!["channel"], ..query(T) };
    let page = search(&store, &filtered).await;
    assert_eq!(page.total, 3);
    assert_eq!(page.facets["channel"], counts(&[("email", 1), ("push", 1), ("sms", 1)]));
    assert_eq!(page.facets.len(), 1, "only the requested facets");
    // A huge limit is just "everything".
    let everything = search(&store, &Query { limit: usize::MAX, ..query(T) }).await;
    assert_eq!((everything.docs.len(), everything.next), (4, None));
    // A zero limit asks for counts only.
    let counts_only = search(&store, &Query { limit: 0, ..filtered }).await;
    assert!(counts_only.docs.is_empty() && counts_only.next.is_none());
    assert_eq!(counts_only.total, 3);
    // A value repeated within a document counts the document once.
    commit(&store, batch([Doc::new(T, "dup", 20, 5).kw("tags", "x").kw("tags", "x")], None)).await;
    let page = search(&store, &Query { facets: vec!["tags"], ..query(T) }).await;
    assert_eq!(page.facets["tags"]["x"], 1);
}

// ---------------------------------------------------------------------------------------------
// Errors

pub async fn bad_queries_are_rejected(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    seed(&store).await;
    let filtered = |filter| try_search(&store, with_filter(filter));
    let term = |field| Filter::Term { field, values: vec!["x".into()] };
    assert_bad_query(filtered(term("nope")).await, "unknown term field");
    assert_bad_query(filtered(term("subject")).await, "term on a Text field");
    assert_bad_query(filtered(term("at")).await, "term on a Time field");
    assert_bad_query(filtered(Filter::Prefix { field: "at", prefix: "2".into() }).await, "prefix on Time");
    assert_bad_query(filtered(Filter::Prefix { field: "nope", prefix: "2".into() }).await, "prefix, unknown");
    assert_bad_query(filtered(Filter::TimeRange { field: "status", from: None, to: None }).await, "range on Keyword");
    assert_bad_query(filtered(Filter::Bool { field: "status", value: true }).await, "bool on Keyword");
    let sort = |field| try_search(&store, Query { sort: Sort { field, descending: true }, ..query(T) });
    assert_bad_query(sort("status").await, "sort by a Keyword field");
    assert_bad_query(sort("nope").await, "sort by an unknown field");
    let facet = |field| try_search(&store, Query { facets: vec![field], ..query(T) });
    assert_bad_query(facet("subject").await, "facet on a Text field");
    assert_bad_query(facet("nope").await, "facet on an unknown field");
}
