//! API keys, event-sourced: creating and revoking a key appends `key.created` / `key.revoked` to
//! the system stream `$keys`, so key management leaves its own audit trail (who created or revoked
//! which key, when). The `KeyRing` is the in-memory fold of that stream; every process follows the
//! stream, so a key created through one API process works on the others moments later.
//!
//! A key is `annals_<id>_<secret>`: `id` (16 hex digits) names it in lists and logs; `secret`
//! (32 random bytes, hex) is never stored — only its SHA-256 — and is compared in constant time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use annals_store::{
    Direction, EventData, EventStore, ExpectedRevision, ReadFrom, ReadStreamOutcome, RecordedEvent, Revision,
    StoreError, StreamId, SubscribeFrom, SubscriptionMessage,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::key_text::{generate_token, hex, parse_token, sha256, unhex, TOKEN_FORMAT};
use super::principal::{Principal, Tenant};
use super::role::{Action, Role};
use crate::error::ApiError;

/// How often, at most, the key ring looks for keys changed by other processes (`follow`).
const KEYS_PACE: std::time::Duration = std::time::Duration::from_millis(10);

/// The system stream that holds every key event.
const KEYS_STREAM: &str = "$keys";

/// What `$keys` holds, one variant per event type.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum KeyEvent {
    #[serde(rename = "key.created")]
    Created { key_id: String, tenant: Tenant, role: Role, name: String, secret_sha256: String, created_by: String },
    #[serde(rename = "key.revoked")]
    Revoked { key_id: String, revoked_by: String },
}

/// A key as lists show it (never its secret).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct KeyInfo {
    pub id: String,
    pub tenant: String,
    pub role: Role,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key just created: the only time its secret is seen.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct NewKey {
    #[serde(flatten)]
    pub info: KeyInfo,
    pub key: String,
}

#[derive(Clone, Debug)]
struct Record {
    info: KeyInfo,
    tenant: Tenant,
    secret_sha256: [u8; 32],
}

/// The secret live-tail tokens are signed with, once loaded (never shown by `Debug`); kept by
/// the key ring, used by `live_token.rs`.
#[derive(Default)]
pub(super) struct LiveSecret(pub(super) tokio::sync::OnceCell<[u8; 32]>);

impl std::fmt::Debug for LiveSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.initialized() { "LiveSecret(<loaded>)" } else { "LiveSecret(<not loaded>)" })
    }
}

impl Principal {
    /// Whether the caller may see (list, revoke) the key `info`. A key it may not see is, to
    /// it, a key that does not exist (`404` like an unknown id).
    pub fn sees_key(&self, info: &KeyInfo) -> bool {
        self.role.allows(Action::ManageAllKeys)
            || (self.role.allows(Action::ManageTenantKeys)
                && info.tenant == self.tenant.as_str()
                && info.role != Role::Operator)
    }
}

/// The keys, folded from `$keys`.
#[derive(Debug, Default)]
pub struct KeyRing {
    /// One lock for the keys and the revision they were folded to: a check on the keys and the
    /// revision it saw must be one snapshot (`append_checked`), and two locks would need an
    /// order that every caller keeps (taking them in opposite orders deadlocked).
    folded: RwLock<Folded>,
    /// The secret live-tail tokens are signed with (`live_token.rs`).
    pub(super) live_secret: LiveSecret,
}

#[derive(Debug, Default)]
struct Folded {
    keys: HashMap<String, Record>,
    /// The revision of `$keys` folded so far.
    applied: Option<Revision>,
}

impl KeyRing {
    /// Folds the whole of `$keys`.
    pub async fn load(store: &dyn EventStore) -> Result<Arc<KeyRing>, StoreError> {
        let ring = Arc::new(KeyRing::default());
        ring.catch_up(store).await?;
        Ok(ring)
    }

    /// Folds what `$keys` has past what is folded already.
    async fn catch_up(&self, store: &dyn EventStore) -> Result<(), StoreError> {
        let stream = keys_stream();
        let mut from = self.read().applied.map_or(ReadFrom::Start, |r| ReadFrom::At(r.next()));
        loop {
            let events = match store.read_stream(&stream, from, Direction::Forwards, 1000).await? {
                ReadStreamOutcome::StreamNotFound => return Ok(()),
                ReadStreamOutcome::Events(events) => events,
            };
            let Some(last) = events.last() else { return Ok(()) };
            from = ReadFrom::At(last.revision.next());
            for event in &events {
                self.apply(event);
            }
        }
    }

    /// Follows `$keys` from what is folded until `shutdown`, so keys made by other processes work
    /// here too. Applying is idempotent, so events this process appended (and applied at once)
    /// do no harm when they come by again.
    pub fn follow(self: &Arc<Self>, store: Arc<dyn EventStore>, shutdown: CancellationToken) {
        let ring = Arc::clone(self);
        tokio::spawn(async move {
            let from = ring.read().applied.map_or(SubscribeFrom::Start, SubscribeFrom::After);
            let mut subscription = match store.subscribe_to_stream(&keys_stream(), from).await {
                Ok(s) => s,
                Err(e) => return warn!(error = %e, "cannot follow $keys; keys made elsewhere need a restart"),
            };
            // Keys changed by this process are applied as they are made (`create`, `revoke`);
            // this only brings in other processes' changes, for which a few milliseconds do not
            // matter, and it saves a wake-up per group commit.
            subscription.pace(KEYS_PACE);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    message = subscription.next() => match message {
                        Ok(SubscriptionMessage::Event(event)) => ring.apply(&event),
                        Ok(SubscriptionMessage::CaughtUp) => {}
                        Err(e) => return info!(error = %e, "stopped following $keys"),
                    },
                }
            }
        });
    }

    /// Whether any key was ever created (revoked ones count: the store is not new).
    pub fn is_empty(&self) -> bool {
        self.read().keys.is_empty()
    }

    /// The caller behind `token`, or `401`.
    pub fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        let unknown = || ApiError::Unauthorized("the key is not valid".into());
        let (id, secret) = parse_token(token).ok_or_else(unknown)?;
        let folded = self.read();
        let keys = &folded.keys;
        let record = keys.get(id).ok_or_else(unknown)?;
        if !bool::from(record.secret_sha256.ct_eq(&sha256(secret))) {
            return Err(unknown());
        }
        if record.info.revoked_at.is_some() {
            return Err(ApiError::Unauthorized(format!("key {id} was revoked")));
        }
        Ok(Principal { key_id: id.to_owned(), tenant: record.tenant.clone(), role: record.info.role })
    }

    /// Key `id` as lists show it.
    pub fn key_info(&self, id: &str) -> Option<KeyInfo> {
        self.read().keys.get(id).map(|r| r.info.clone())
    }

    /// Whether key `id` exists and is not revoked (for responses that outlive their request).
    pub fn is_active(&self, id: &str) -> bool {
        self.read().keys.get(id).is_some_and(|r| r.info.revoked_at.is_none())
    }

    /// Creates a key: appends `key.created` and folds it. `token` gives the key's text (the
    /// bootstrap key from `ANNALS_ADMIN_KEY`); otherwise a new one is generated.
    pub async fn create(
        &self,
        store: &dyn EventStore,
        tenant: Tenant,
        role: Role,
        name: String,
        created_by: &str,
        token: Option<&str>,
    ) -> Result<NewKey, ApiError> {
        let created = self.create_unless(store, tenant, role, name, created_by, token, |_| false).await?;
        Ok(created.expect("made unconditionally"))
    }

    /// Makes an operator key unless an active one exists (checked against the keys as stored, so
    /// two processes starting at once make one): at the first start of a store, and at the first
    /// start of this version on a store whose operator keys are all revoked (see `folded_role`).
    /// `None`: there is an operator key already.
    pub async fn ensure_operator(
        &self,
        store: &dyn EventStore,
        tenant: Tenant,
        token: Option<&str>,
    ) -> Result<Option<NewKey>, ApiError> {
        let name = "bootstrap operator".to_owned();
        self.create_unless(store, tenant, Role::Operator, name, SYSTEM, token, |keys| {
            keys.values().any(|r| r.info.role == Role::Operator && r.info.revoked_at.is_none())
        })
        .await
    }

    #[allow(clippy::too_many_arguments)] // the fields of a key.created event, and the condition
    async fn create_unless(
        &self,
        store: &dyn EventStore,
        tenant: Tenant,
        role: Role,
        name: String,
        created_by: &str,
        token: Option<&str>,
        unless: impl Fn(&HashMap<String, Record>) -> bool,
    ) -> Result<Option<NewKey>, ApiError> {
        let token = match token {
            Some(t) => t.to_owned(),
            None => generate_token(),
        };
        let (id, secret) = parse_token(&token)
            .ok_or_else(|| ApiError::MalformedBody(format!("a key must look like {}", TOKEN_FORMAT)))?;
        let event = KeyEvent::Created {
            key_id: id.to_owned(),
            tenant,
            role,
            name,
            secret_sha256: hex(&sha256(secret)),
            created_by: created_by.to_owned(),
        };
        let made = self
            .append_checked(store, &event, |keys| match (unless(keys), keys.contains_key(id)) {
                (true, _) => Ok(false),
                (false, true) => Err(ApiError::MalformedBody(format!("key id {id} is taken"))),
                (false, false) => Ok(true),
            })
            .await?;
        if !made {
            return Ok(None);
        }
        let info = self.read().keys[id].info.clone();
        Ok(Some(NewKey { info, key: token }))
    }

    /// Revokes a key (again is a no-op). A key that `visible` hides from the caller (another
    /// tenant's, for a tenant admin) is `404`, as an unknown id is. Revoking the last active
    /// operator key is refused: nobody could manage every tenant's keys afterwards — also when
    /// two revocations race (see `append_checked`).
    pub async fn revoke(
        &self,
        store: &dyn EventStore,
        id: &str,
        revoked_by: &str,
        visible: impl Fn(&KeyInfo) -> bool,
    ) -> Result<KeyInfo, ApiError> {
        let event = KeyEvent::Revoked { key_id: id.to_owned(), revoked_by: revoked_by.to_owned() };
        self.append_checked(store, &event, |keys| {
            let record =
                keys.get(id).filter(|r| visible(&r.info)).ok_or_else(|| ApiError::KeyNotFound(id.to_owned()))?;
            if record.info.revoked_at.is_some() {
                return Ok(false);
            }
            let other_operators = keys
                .values()
                .filter(|r| r.info.id != id && r.info.role == Role::Operator && r.info.revoked_at.is_none())
                .count();
            match record.info.role == Role::Operator && other_operators == 0 {
                true => Err(ApiError::LastAdminKey(id.to_owned())),
                false => Ok(true),
            }
        })
        .await?;
        Ok(self.read().keys[id].info.clone())
    }

    /// Appends `event` if `check` passes on the keys as folded (`Ok(false)`: nothing to do, no
    /// event), and only right after the last
    /// event folded (an exact expected revision of `$keys`): a check made on keys that another
    /// request or process has changed meanwhile is made again on the caught-up keys. Without it,
    /// two revocations at once could each see the other's admin key active and revoke both.
    async fn append_checked(
        &self,
        store: &dyn EventStore,
        event: &KeyEvent,
        check: impl Fn(&HashMap<String, Record>) -> Result<bool, ApiError>,
    ) -> Result<bool, ApiError> {
        loop {
            let expected = {
                let folded = self.read();
                if !check(&folded.keys)? {
                    return Ok(false);
                }
                folded.applied.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact)
            };
            match append(store, event, expected).await {
                Ok(recorded) => {
                    self.apply(&recorded);
                    return Ok(true);
                }
                Err(StoreError::WrongExpectedRevision { .. }) => self.catch_up(store).await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Every key that `visible` shows, oldest first.
    pub fn list(&self, visible: impl Fn(&KeyInfo) -> bool) -> Vec<KeyInfo> {
        let mut keys: Vec<KeyInfo> =
            self.read().keys.values().map(|r| &r.info).filter(|i| visible(i)).cloned().collect();
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        keys
    }

    fn apply(&self, event: &RecordedEvent) {
        // Applying is idempotent (a key is created once, revoked at most once), so events may
        // arrive twice and in any order between this process's appends and the follower.
        let parsed = serde_json::from_value::<KeyEvent>(serde_json::json!({
            "type": event.event_type,
            "data": serde_json::from_slice::<serde_json::Value>(&event.data).unwrap_or_default(),
        }));
        let mut folded = self.folded.write().expect("keys lock");
        folded.applied = Some(folded.applied.map_or(event.revision, |r| r.max(event.revision)));
        let keys = &mut folded.keys;
        match parsed {
            Ok(KeyEvent::Created { key_id, tenant, role, name, secret_sha256, created_by }) => {
                let Some(hash) = unhex(&secret_sha256) else {
                    return warn!(key_id, "ignoring a key.created event with a malformed hash");
                };
                let info = KeyInfo {
                    id: key_id.clone(),
                    tenant: tenant.to_string(),
                    role: folded_role(role, &created_by),
                    name,
                    created_at: event.recorded_at,
                    created_by,
                    revoked_at: None,
                };
                keys.entry(key_id).or_insert(Record { info, tenant, secret_sha256: hash });
            }
            Ok(KeyEvent::Revoked { key_id, .. }) => {
                if let Some(record) = keys.get_mut(&key_id) {
                    record.info.revoked_at.get_or_insert(event.recorded_at);
                }
            }
            Err(e) => warn!(revision = event.revision.0, error = %e, "ignoring an unknown event in $keys"),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Folded> {
        self.folded.read().expect("keys lock")
    }
}

/// `created_by` of the keys the server makes itself (the bootstrap key); keys made through the
/// API name the key that made them (16 hex digits), so no client can make a key look like this.
const SYSTEM: &str = "system";

/// The role a `key.created` event gives its key. Before roles were split, every admin key could
/// manage every tenant; the one the server made at its first start (`created_by: "system"`) was
/// the operator's, so it is folded as an `operator` key, and every other `admin` key as the
/// tenant admin it was given to. Pure: every process and every version folds `$keys` the same.
fn folded_role(role: Role, created_by: &str) -> Role {
    match (role, created_by) {
        (Role::Admin, SYSTEM) => Role::Operator,
        (role, _) => role,
    }
}

async fn append(
    store: &dyn EventStore,
    event: &KeyEvent,
    expected: ExpectedRevision,
) -> Result<RecordedEvent, StoreError> {
    let value = serde_json::to_value(event).expect("key events serialize");
    let data = EventData::json(value["type"].as_str().expect("tagged"), &value["data"])?;
    let id = data.id();
    let result = store.append_to_stream(&keys_stream(), expected, vec![data]).await?;
    let events = store
        .read_stream(&keys_stream(), ReadFrom::At(result.first_revision), Direction::Forwards, 1)
        .await?
        .into_events();
    events
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| StoreError::Index("the key event just appended cannot be read".into()))
}

fn keys_stream() -> StreamId {
    StreamId::new(KEYS_STREAM).expect("a valid name")
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
