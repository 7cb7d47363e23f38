//! Totals, facets and pages against a model, on random data (issue 13): a backend may answer a
//! search's total and facets from counts it keeps at commit and find a page without visiting
//! every match, but what it answers must be exactly what counting and sorting every matching
//! document gives — after inserts, updates that change counted values and times, stale writes,
//! a reopen (restart), and a rebuild of the same documents into a new view (bulk loaded, in
//! another order).

use std::collections::{BTreeMap, BTreeSet};

use super::fixtures::*;
use super::Make;
use crate::view_store::{FieldValue, Filter, Query, Sort, ViewDoc, ViewHalves};
use chrono::{DateTime, Duration, Utc};

/// A small deterministic generator (xorshift), so a failure replays with its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

const STATUSES: [&str; 4] = ["ENQUEUED", "SENT", "DELIVERED", "BOUNCED"];
const CHANNELS: [&str; 3] = ["email", "sms", "push"];
const TAGS: [&str; 3] = ["orders", "marketing", "security"];
const ACTIONS: [&str; 2] = ["a.x", "a.y"];

fn random_doc(rng: &mut Rng, tenant: &str, id: &str, version: u64) -> Doc {
    // Times spread over ~2 hours with sub-second parts, often several in one second.
    let at = at(rng.below(7_200) as i64) + Duration::nanoseconds(rng.below(3) as i64 * 333_333_333);
    let mut doc = Doc::at(tenant, id, version, at).kw("status", rng.pick(&STATUSES)).kw("action", rng.pick(&ACTIONS));
    if rng.below(4) > 0 {
        doc = doc.kw("channel", rng.pick(&CHANNELS));
    }
    for _ in 0..rng.below(3) {
        doc = doc.kw("tags", rng.pick(&TAGS));
    }
    if rng.below(3) > 0 {
        doc = doc.time("sent_at", at + Duration::seconds(rng.below(600) as i64));
    }
    doc.text("subject", rng.pick(&["parcel shipped", "password reset", "weekly digest"]))
}

fn strs(doc: &ViewDoc, field: &str) -> BTreeSet<String> {
    doc.fields
        .get(field)
        .into_iter()
        .flatten()
        .filter_map(|v| match v {
            FieldValue::Str(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn time(doc: &ViewDoc, field: &str) -> Option<DateTime<Utc>> {
    doc.fields.get(field).and_then(|v| v.first()).and_then(|v| match v {
        FieldValue::Time(t) => Some(*t),
        _ => None,
    })
}

/// What a search must answer, computed from the live documents one by one.
fn expected(
    live: &BTreeMap<(String, String), ViewDoc>,
    q: &Query,
) -> (Vec<String>, BTreeMap<&'static str, BTreeMap<String, u64>>) {
    let mut matching: Vec<(DateTime<Utc>, String)> = Vec::new();
    let mut facets: BTreeMap<&'static str, BTreeMap<String, u64>> =
        q.facets.iter().map(|f| (*f, BTreeMap::new())).collect();
    for ((tenant, id), doc) in live {
        let Some(t) = time(doc, q.sort.field).filter(|_| *tenant == q.tenant) else { continue };
        let ok =
            q.filters.iter().all(|f| match f {
                Filter::Term { field, values } => strs(doc, field).iter().any(|v| values.contains(v)),
                _ => unreachable!("the model uses term filters only"),
            }) && q.text.as_ref().is_none_or(|w| strs(doc, "subject").iter().any(|s| s.split(' ').any(|x| x == w)));
        if !ok {
            continue;
        }
        matching.push((t, id.clone()));
        for f in &q.facets {
            for v in strs(doc, f) {
                *facets.get_mut(f).expect("facet").entry(v).or_insert(0) += 1;
            }
        }
    }
    matching.sort();
    if q.sort.descending {
        matching.reverse();
    }
    (matching.into_iter().map(|(_, id)| id).collect(), facets)
}

fn queries(rng: &mut Rng) -> Vec<Query> {
    let mut out = Vec::new();
    for tenant in [T, OTHER] {
        let filter_sets: Vec<Vec<Filter>> = vec![
            vec![],
            vec![Filter::Term { field: "status", values: vec!["SENT".into()] }],
            vec![Filter::Term { field: "status", values: vec!["SENT".into(), "BOUNCED".into()] }],
            vec![Filter::Term { field: "channel", values: vec!["sms".into()] }],
            vec![Filter::Term { field: "tags", values: vec!["orders".into()] }],
            vec![
                Filter::Term { field: "status", values: vec!["DELIVERED".into()] },
                Filter::Term { field: "channel", values: vec!["email".into(), "push".into()] },
            ],
            // Not counted: answered by counting.
            vec![Filter::Term { field: "action", values: vec!["a.x".into()] }],
        ];
        for filters in filter_sets {
            for (field, descending) in [("at", true), ("at", false), ("sent_at", true)] {
                let limit = [1, 7, 40][rng.below(3) as usize];
                let facets =
                    if rng.below(4) == 0 { vec!["status", "action"] } else { vec!["status", "channel", "tags"] };
                out.push(Query {
                    tenant: tenant.to_owned(),
                    filters: filters.clone(),
                    text: None,
                    sort: Sort { field, descending },
                    limit,
                    after: None,
                    facets,
                });
            }
        }
        out.push(Query { text: Some("parcel".into()), facets: vec!["status", "channel"], limit: 9, ..query(tenant) });
    }
    out
}

/// Every query's total, facets and pages (walked to the end) against the model.
async fn check(store: &ViewHalves, live: &BTreeMap<(String, String), ViewDoc>, qs: &[Query], when: &str) {
    for q in qs {
        let (ids, facets) = expected(live, q);
        let mut walked = Vec::new();
        let mut page_q = q.clone();
        loop {
            let page = search(store, &page_q).await;
            assert_eq!(page.total, ids.len() as u64, "{when}: total of {q:?}");
            assert_eq!(page.facets, facets, "{when}: facets of {q:?}");
            walked.extend(page.docs.into_iter().map(|d| d.id));
            match page.next {
                Some(cursor) => page_q.after = Some(cursor),
                None => break,
            }
        }
        assert_eq!(walked, ids, "{when}: the pages of {q:?}");
    }
}

pub async fn totals_facets_and_pages_match_a_model_on_random_data(make: &Make) {
    for seed in [0x9E37_79B9_7F4A_7C15u64, 42, 7_777_777] {
        let mut rng = Rng(seed);
        let dir = tempdir();
        let store = make(dir.path().to_owned(), schema()).await;
        let mut live: BTreeMap<(String, String), ViewDoc> = BTreeMap::new();
        let mut version = 0u64;
        for round in 0..12 {
            let mut docs = Vec::new();
            for _ in 0..40 {
                version += 1;
                let tenant = if rng.below(5) == 0 { OTHER } else { T };
                // New documents early on, then mostly updates of existing ones.
                let n = if round < 4 { rng.below(400) } else { rng.below(120) };
                let id = format!("d{n:03}");
                // Now and then a stale write, which must change nothing.
                let v = if rng.below(8) == 0 { version.saturating_sub(500) } else { version };
                docs.push(random_doc(&mut rng, tenant, &id, v));
            }
            for doc in &docs {
                let key = (doc.0.tenant.clone(), doc.0.id.clone());
                if live.get(&key).is_none_or(|old| old.version < doc.0.version) {
                    live.insert(key, doc.0.clone());
                }
            }
            commit(&store, batch(docs, Some(version))).await;
        }
        let qs = queries(&mut rng);
        check(&store, &live, &qs, &format!("seed {seed}")).await;
        drop(store);
        let store = make(dir.path().to_owned(), schema()).await;
        check(&store, &live, &qs, &format!("seed {seed}, reopened")).await;

        // A rebuild: the same documents into a new view, bulk loaded, in another order.
        let rebuilt_dir = tempdir();
        let rebuilt = make(rebuilt_dir.path().to_owned(), schema()).await;
        rebuilt.writer.bulk_load(true).await.expect("bulk load on");
        let mut docs: Vec<ViewDoc> = live.values().cloned().collect();
        docs.reverse();
        for chunk in docs.chunks(64) {
            commit(&rebuilt, batch(chunk.iter().cloned().map(Doc), Some(version))).await;
        }
        rebuilt.writer.bulk_load(false).await.expect("bulk load off");
        check(&rebuilt, &live, &qs, &format!("seed {seed}, rebuilt")).await;
    }
}
