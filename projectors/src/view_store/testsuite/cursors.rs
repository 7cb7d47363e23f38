//! Sorting and cursors (guarantee 5): (time, id) order in both directions, walks that visit every
//! document once, and walks that stay exact while documents are written between pages.

use std::collections::BTreeSet;

use super::fixtures::*;
use super::Make;
use crate::view_store::{Filter, Query, Sort, ViewHalves};

// ---------------------------------------------------------------------------------------------
// Sorting and cursors (guarantee 5)

pub async fn sorts_both_directions_with_time_ties_broken_by_id(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    commit(
        &store,
        batch(
            [
                Doc::new(T, "b", 1, 20),
                Doc::new(T, "a", 2, 20),
                Doc::new(T, "c", 3, 20),
                Doc::new(T, "z", 4, 10),
                Doc::new(T, "y", 5, 30),
            ],
            None,
        ),
    )
    .await;
    // Separate commits put documents of one time in different segments.
    commit(&store, batch([Doc::new(T, "bb", 6, 20), Doc::new(T, "0", 7, 30)], None)).await;
    let desc = query(T);
    assert_eq!(ids(&store, &desc).await, ["y", "0", "c", "bb", "b", "a", "z"]);
    let asc = Query { sort: Sort { field: "at", descending: false }, ..query(T) };
    assert_eq!(ids(&store, &asc).await, ["z", "a", "b", "bb", "c", "0", "y"]);
    // Sorting by another Time field.
    commit(
        &store,
        batch([Doc::new(T, "s1", 8, 1).time("sent_at", at(2)), Doc::new(T, "s2", 9, 2).time("sent_at", at(1))], None),
    )
    .await;
    let by_sent = Query { sort: Sort { field: "sent_at", descending: true }, ..query(T) };
    assert_eq!(ids(&store, &by_sent).await, ["s1", "s2"], "only documents with the sort field");
}

/// Walks every page of `q`, checking each page's order and that `next` is set on full pages.
async fn walk(store: &ViewHalves, mut q: Query) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let page = search(store, &q).await;
        assert!(page.docs.len() <= q.limit);
        assert_eq!(page.next.is_some(), page.docs.len() == q.limit, "next is set exactly on full pages");
        out.extend(page.docs.into_iter().map(|d| d.id));
        match page.next {
            Some(next) => q.after = Some(next),
            None => return out,
        }
    }
    panic!("pagination does not end");
}

pub async fn cursors_visit_every_document_exactly_once(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    // 60 documents on 7 distinct times (many ties), written in three commits.
    for part in 0..3u64 {
        let docs = (0..20u64).map(|i| {
            let n = part * 20 + i;
            Doc::new(T, &format!("id-{:02}", (n * 37) % 60), n, (n % 7) as i64)
        });
        commit(&store, batch(docs, None)).await;
    }
    for descending in [true, false] {
        let full = ids(&store, &Query { sort: Sort { field: "at", descending }, ..query(T) }).await;
        assert_eq!(full.len(), 60);
        for limit in [1, 2, 7, 59, 60, 61] {
            let q = Query { limit, sort: Sort { field: "at", descending }, ..query(T) };
            assert_eq!(walk(&store, q).await, full, "descending={descending}, limit={limit}");
        }
    }
    // A filtered walk keeps the filter on every page.
    let q = Query {
        limit: 4,
        filters: vec![Filter::TimeRange { field: "at", from: Some(at(2)), to: Some(at(5)) }],
        ..query(T)
    };
    let walked = walk(&store, q.clone()).await;
    assert_eq!(walked, ids(&store, &Query { limit: 1000, ..q }).await);
    assert!(!walked.is_empty());
}

pub async fn cursors_are_stable_under_concurrent_writes(make: &Make) {
    let dir = tempdir();
    let store = make(dir.path().to_owned(), schema()).await;
    // 40 documents at times 100..=119, two per time.
    let initial: Vec<Doc> = (0..40u64).map(|i| Doc::new(T, &format!("d{i:02}"), i, 100 + (i / 2) as i64)).collect();
    commit(&store, batch(initial, None)).await;
    let mut q = Query { limit: 6, ..query(T) };
    let mut seen = Vec::new();
    let mut expected_extra = BTreeSet::new();
    let mut version = 100;
    for round in 0.. {
        let page = search(&store, &q).await;
        seen.extend(page.docs.iter().map(|d| d.id.clone()));
        let Some(cursor) = page.next else { break };
        // Between pages: a newer document (before the cursor: never seen by this walk), one at
        // the cursor's time on each side of its id, an older one (after the cursor: seen), and
        // a re-write of an already seen and a not yet seen document that keeps their times.
        let tag = format!("r{round:02}");
        version += 10;
        let mut writes = vec![
            Doc::new(T, &format!("new-{tag}"), version, 1000),
            Doc::at(T, &format!("{}~{tag}", cursor.id), version + 1, cursor.time),
            Doc::at(T, &format!("{tag}-before"), version + 2, cursor.time),
            Doc::new(T, &format!("old-{tag}"), version + 3, 50 - round),
        ];
        let seen_id = seen[0].clone();
        let seen_time = 100 + seen_id[1..].parse::<i64>().expect("a seeded id") / 2;
        writes.push(Doc::new(T, &seen_id, version + 4, seen_time).kw("status", "rewritten"));
        writes.push(Doc::new(T, "d00", version + 5, 100).kw("status", "rewritten"));
        // Strictly after the cursor in descending (time, id) order: the older one, and the one
        // at the cursor's time if its id is smaller (`{cursor.id}~…` is always larger).
        expected_extra.insert(format!("old-{tag}"));
        let before = format!("{tag}-before");
        if before < cursor.id {
            expected_extra.insert(before);
        }
        commit(&store, batch(writes, None)).await;
        q.after = Some(cursor);
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no document is seen twice: {seen:?}");
    let initial_ids: BTreeSet<String> = (0..40).map(|i| format!("d{i:02}")).collect();
    assert!(initial_ids.is_subset(&unique), "no document that did not move is skipped");
    assert!(unique.iter().all(|id| !id.starts_with("new-")), "newer documents are not seen");
    let extras: BTreeSet<String> = unique.difference(&initial_ids).cloned().collect();
    assert_eq!(extras, expected_extra, "exactly the writes after the cursor are seen");
}
