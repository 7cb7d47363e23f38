//! Unit tests of the key ring: races between revocations, and how old `$keys` events fold.

use annals_store::engine::{EmbeddedStore, EngineConfig};

use super::*;

#[tokio::test]
async fn two_revocations_at_once_never_revoke_the_last_operator_key() {
    let tmp = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EngineConfig::new(tmp.path())).await.unwrap();
    let ring = KeyRing::load(&store).await.unwrap();
    let tenant = || Tenant::new("acme").unwrap();
    let mut survivor = ring.create(&store, tenant(), Role::Operator, "a".into(), "test", None).await.unwrap().info.id;
    for round in 0..10 {
        let other = ring.create(&store, tenant(), Role::Operator, format!("b{round}"), "test", None).await.unwrap();
        // Both checks run before either append is folded: each sees the other operator active.
        let (first, second) = tokio::join!(
            ring.revoke(&store, &survivor, "test", |_| true),
            ring.revoke(&store, &other.info.id, "test", |_| true)
        );
        let outcomes = [first.is_ok(), second.is_ok()];
        assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "round {round}: {first:?} / {second:?}");
        let refused = if first.is_err() { first } else { second };
        assert!(matches!(refused, Err(ApiError::LastAdminKey(_))), "round {round}: {refused:?}");
        let active: Vec<KeyInfo> = ring.list(|_| true).into_iter().filter(|k| k.revoked_at.is_none()).collect();
        assert_eq!(active.len(), 1, "round {round}: one operator key is left");
        survivor = active[0].id.clone();
    }
    // The keys as stored say the same as the ring that made them.
    let reloaded = KeyRing::load(&store).await.unwrap();
    assert_eq!(reloaded.list(|_| true).iter().filter(|k| k.revoked_at.is_none()).count(), 1);
    store.close().await.unwrap();
}

/// `$keys` as a version before the operator role wrote it: the bootstrap key and a tenant's
/// admin key, both `admin`.
async fn append_old_keys(store: &dyn EventStore) -> (String, String) {
    let bootstrap = generate_token();
    let acme = generate_token();
    let events = [(&bootstrap, "default", "system"), (&acme, "acme", "0011223344556677")].map(|(token, tenant, by)| {
        let (id, secret) = parse_token(token).unwrap();
        let data = serde_json::json!({
            "key_id": id, "tenant": tenant, "role": "admin", "name": "old",
            "secret_sha256": hex(&sha256(secret)), "created_by": by,
        });
        EventData::json("key.created", &data).unwrap()
    });
    store.append_to_stream(&keys_stream(), ExpectedRevision::Any, events.into()).await.unwrap();
    (bootstrap, acme)
}

#[tokio::test]
async fn old_admin_keys_fold_as_the_operator_they_were_made_as_or_as_tenant_admins() {
    let tmp = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EngineConfig::new(tmp.path())).await.unwrap();
    let (bootstrap, acme) = append_old_keys(&store).await;
    for _ in 0..2 {
        // Twice: the fold is the same on every load.
        let ring = KeyRing::load(&store).await.unwrap();
        assert_eq!(ring.authenticate(&bootstrap).unwrap().role, Role::Operator, "the server's own first key");
        let principal = ring.authenticate(&acme).unwrap();
        assert_eq!((principal.role, principal.tenant.as_str()), (Role::Admin, "acme"), "an admin key of acme");
        // There is an operator: a start makes none.
        assert!(ring.ensure_operator(&store, Tenant::new("default").unwrap(), None).await.unwrap().is_none());
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_store_whose_operator_keys_are_all_revoked_gets_a_new_one_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EngineConfig::new(tmp.path())).await.unwrap();
    let (bootstrap, _) = append_old_keys(&store).await;
    let bootstrap_id = parse_token(&bootstrap).unwrap().0.to_owned();
    let revoked = serde_json::json!({ "key_id": bootstrap_id, "revoked_by": "0011223344556677" });
    let event = EventData::json("key.revoked", &revoked).unwrap();
    store.append_to_stream(&keys_stream(), ExpectedRevision::Any, vec![event]).await.unwrap();
    let ring = KeyRing::load(&store).await.unwrap();
    assert!(!ring.list(|_| true).iter().any(|k| k.role == Role::Operator && k.revoked_at.is_none()));
    let (first, second) = tokio::join!(
        ring.ensure_operator(&store, Tenant::new("default").unwrap(), None),
        ring.ensure_operator(&store, Tenant::new("default").unwrap(), None)
    );
    let made: Vec<NewKey> = [first.unwrap(), second.unwrap()].into_iter().flatten().collect();
    assert_eq!(made.len(), 1, "two starts at once make one operator key");
    assert_eq!(ring.authenticate(&made[0].key).unwrap().role, Role::Operator);
    store.close().await.unwrap();
}
