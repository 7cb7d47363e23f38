//! The response cache's promise, as a property over interleavings of fills (each read at some
//! view checkpoint, older or newer than the invalidations received meanwhile), invalidations of
//! keys, tenants and whole views, and lookups: it never serves an answer older than the last
//! invalidation it received for its key, and it does serve a fill made after that invalidation
//! at a newer checkpoint (so the first half is not won by never serving).

use std::collections::HashMap;

use annals_projectors::invalidation::{FlushReason, InvalidatedKey, Invalidation, KeyKind, Scope};
use annals_store::Position;
use axum::body::Bytes;
use axum::response::IntoResponse;
use proptest::prelude::*;

use super::{CacheKey, CacheSettings, ResponseCache};
use crate::metrics::Metrics;

#[derive(Clone, Debug)]
enum Op {
    Fill { key: usize, version: u64 },
    Invalidate { key: usize, position: u64 },
    FlushTenant { tenant: usize, position: u64 },
    FlushAll { position: u64 },
    Lookup { key: usize },
}

const TENANTS: [&str; 2] = ["acme", "other"];

/// Key `i`: tenant `i % 2`, message `i / 2` (so two tenants share message names).
fn cache_key(i: usize) -> CacheKey {
    CacheKey {
        view: "messages",
        tenant: TENANTS[i % 2].to_owned(),
        depends_on: InvalidatedKey { kind: KeyKind::Message, value: format!("m{}", i / 2) },
        variant: "detail".to_owned(),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..6usize, 0..40u64).prop_map(|(key, version)| Op::Fill { key, version }),
        3 => (0..6usize, 0..40u64).prop_map(|(key, position)| Op::Invalidate { key, position }),
        1 => (0..2usize, 0..40u64).prop_map(|(tenant, position)| Op::FlushTenant { tenant, position }),
        1 => (0..40u64).prop_map(|position| Op::FlushAll { position }),
        4 => (0..6usize).prop_map(|key| Op::Lookup { key }),
    ]
}

fn invalidation(tenant: Option<&str>, position: u64, scope: Scope) -> Invalidation {
    Invalidation {
        tenant: tenant.map(str::to_owned),
        view: "messages".to_owned(),
        position: Position::from_code(position),
        scope,
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let cache = ResponseCache::new(CacheSettings::default(), Metrics::new());
    cache.set_connected("messages", true);
    // The model: the last invalidation received per key, and the last fill that should serve.
    let mut floor: HashMap<usize, u64> = HashMap::new();
    let mut servable: HashMap<usize, u64> = HashMap::new();
    for op in ops {
        match op {
            Op::Fill { key, version } => {
                let body = format!("{{\"version\":{version}}}");
                let response = (axum::http::StatusCode::OK, body.clone()).into_response();
                let back = cache.fill(cache_key(key), Some(Position::from_code(version)), response).await;
                let bytes = axum::body::to_bytes(back.into_body(), usize::MAX).await.unwrap();
                prop_assert_eq!(bytes, Bytes::from(body), "a fill answers what it was given");
                if floor.get(&key).is_none_or(|f| version >= *f) {
                    servable.insert(key, version);
                }
            }
            Op::Invalidate { key, position } => {
                let k = cache_key(key);
                let scope = Scope::Keys { keys: vec![k.depends_on.clone()] };
                cache.apply("messages", &invalidation(Some(&k.tenant), position, scope));
                raise(&mut floor, &mut servable, key, position);
            }
            Op::FlushTenant { tenant, position } => {
                let scope = Scope::WholeView { reason: FlushReason::Overflow };
                cache.apply("messages", &invalidation(Some(TENANTS[tenant]), position, scope));
                for key in (0..6).filter(|k| k % 2 == tenant) {
                    raise(&mut floor, &mut servable, key, position);
                }
            }
            Op::FlushAll { position } => {
                let scope = Scope::WholeView { reason: FlushReason::Rebuild };
                cache.apply("messages", &invalidation(None, position, scope));
                for key in 0..6 {
                    raise(&mut floor, &mut servable, key, position);
                }
            }
            Op::Lookup { key } => {
                let hit = cache.lookup(&cache_key(key)).await;
                match hit {
                    Some(response) => {
                        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
                        let served: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                        let version = served["version"].as_u64().unwrap();
                        let last = floor.get(&key).copied();
                        prop_assert!(
                            last.is_none_or(|f| version >= f),
                            "served version {} of key {} after an invalidation at {:?}",
                            version,
                            key,
                            last
                        );
                    }
                    None => prop_assert!(
                        !servable.contains_key(&key),
                        "a fill at {:?} of key {} after its last invalidation is not served",
                        servable.get(&key),
                        key
                    ),
                }
            }
        }
    }
    Ok(())
}

/// An invalidation at `position`: the key's floor rises, and a fill below it no longer serves.
fn raise(floor: &mut HashMap<usize, u64>, servable: &mut HashMap<usize, u64>, key: usize, position: u64) {
    let f = floor.entry(key).or_insert(position);
    *f = (*f).max(position);
    if servable.get(&key).is_some_and(|v| v < f) {
        servable.remove(&key);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_serves_an_answer_older_than_the_last_invalidation_received(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops))?;
    }
}

#[tokio::test]
async fn a_cache_without_a_feed_never_serves() {
    let cache = ResponseCache::off();
    let response = (axum::http::StatusCode::OK, "x").into_response();
    let _ = cache.fill(cache_key(0), Some(Position::from_code(9)), response).await;
    assert!(cache.lookup(&cache_key(0)).await.is_none());
    // Nor does a cache whose follower is not connected.
    let cache = ResponseCache::new(CacheSettings::default(), Metrics::new());
    let response = (axum::http::StatusCode::OK, "x").into_response();
    let _ = cache.fill(cache_key(0), Some(Position::from_code(9)), response).await;
    assert!(cache.lookup(&cache_key(0)).await.is_none());
}
