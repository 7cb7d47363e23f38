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
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Principal, Role, Tenant};
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

/// The keys, folded from `$keys`.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: RwLock<HashMap<String, Record>>,
    /// The revision of `$keys` folded so far.
    applied: RwLock<Option<Revision>>,
}

impl KeyRing {
    /// Folds the whole of `$keys`.
    pub async fn load(store: &dyn EventStore) -> Result<Arc<KeyRing>, StoreError> {
        let ring = Arc::new(KeyRing::default());
        let stream = keys_stream();
        let mut from = ReadFrom::Start;
        loop {
            let events = match store.read_stream(&stream, from, Direction::Forwards, 1000).await? {
                ReadStreamOutcome::StreamNotFound => break,
                ReadStreamOutcome::Events(events) => events,
            };
            let Some(last) = events.last() else { break };
            from = ReadFrom::At(last.revision.next());
            for event in &events {
                ring.apply(event);
            }
        }
        Ok(ring)
    }

    /// Follows `$keys` from what is folded until `shutdown`, so keys made by other processes work
    /// here too. Applying is idempotent, so events this process appended (and applied at once)
    /// do no harm when they come by again.
    pub fn follow(self: &Arc<Self>, store: Arc<dyn EventStore>, shutdown: CancellationToken) {
        let ring = Arc::clone(self);
        tokio::spawn(async move {
            let from = ring.applied.read().expect("keys lock").map_or(SubscribeFrom::Start, SubscribeFrom::After);
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
        self.keys.read().expect("keys lock").is_empty()
    }

    /// The caller behind `token`, or `401`.
    pub fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        let unknown = || ApiError::Unauthorized("the key is not valid".into());
        let (id, secret) = parse_token(token).ok_or_else(unknown)?;
        let keys = self.keys.read().expect("keys lock");
        let record = keys.get(id).ok_or_else(unknown)?;
        if !bool::from(record.secret_sha256.ct_eq(&sha256(secret))) {
            return Err(unknown());
        }
        if record.info.revoked_at.is_some() {
            return Err(ApiError::Unauthorized(format!("key {id} was revoked")));
        }
        Ok(Principal { key_id: id.to_owned(), tenant: record.tenant.clone(), role: record.info.role })
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
        let token = match token {
            Some(t) => t.to_owned(),
            None => generate_token(),
        };
        let (id, secret) = parse_token(&token)
            .ok_or_else(|| ApiError::MalformedBody(format!("a key must look like {}", TOKEN_FORMAT)))?;
        if self.keys.read().expect("keys lock").contains_key(id) {
            return Err(ApiError::MalformedBody(format!("key id {id} is taken")));
        }
        let event = KeyEvent::Created {
            key_id: id.to_owned(),
            tenant,
            role,
            name,
            secret_sha256: hex(&sha256(secret)),
            created_by: created_by.to_owned(),
        };
        let recorded = append(store, &event).await?;
        self.apply(&recorded);
        let info = self.keys.read().expect("keys lock")[id].info.clone();
        Ok(NewKey { info, key: token })
    }

    /// Revokes a key (again is a no-op). Revoking the last active admin key is refused: nobody
    /// could manage keys afterwards.
    pub async fn revoke(&self, store: &dyn EventStore, id: &str, revoked_by: &str) -> Result<KeyInfo, ApiError> {
        {
            let keys = self.keys.read().expect("keys lock");
            let record = keys.get(id).ok_or_else(|| ApiError::KeyNotFound(id.to_owned()))?;
            if record.info.revoked_at.is_some() {
                return Ok(record.info.clone());
            }
            let other_admins = keys
                .values()
                .filter(|r| r.info.id != id && r.info.role == Role::Admin && r.info.revoked_at.is_none())
                .count();
            if record.info.role == Role::Admin && other_admins == 0 {
                return Err(ApiError::LastAdminKey(id.to_owned()));
            }
        }
        let event = KeyEvent::Revoked { key_id: id.to_owned(), revoked_by: revoked_by.to_owned() };
        let recorded = append(store, &event).await?;
        self.apply(&recorded);
        Ok(self.keys.read().expect("keys lock")[id].info.clone())
    }

    /// Every key, oldest first.
    pub fn list(&self) -> Vec<KeyInfo> {
        let mut keys: Vec<KeyInfo> = self.keys.read().expect("keys lock").values().map(|r| r.info.clone()).collect();
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        keys
    }

    fn apply(&self, event: &RecordedEvent) {
        // Applying is idempotent (a key is created once, revoked at most once), so events may
        // arrive twice and in any order between this process's appends and the follower.
        let mut applied = self.applied.write().expect("keys lock");
        *applied = Some(applied.map_or(event.revision, |r| r.max(event.revision)));
        let parsed = serde_json::from_value::<KeyEvent>(serde_json::json!({
            "type": event.event_type,
            "data": serde_json::from_slice::<serde_json::Value>(&event.data).unwrap_or_default(),
        }));
        let mut keys = self.keys.write().expect("keys lock");
        match parsed {
            Ok(KeyEvent::Created { key_id, tenant, role, name, secret_sha256, created_by }) => {
                let Some(hash) = unhex(&secret_sha256) else {
                    return warn!(key_id, "ignoring a key.created event with a malformed hash");
                };
                let info = KeyInfo {
                    id: key_id.clone(),
                    tenant: tenant.to_string(),
                    role,
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
}

const TOKEN_FORMAT: &str = "annals_<16 hex digits>_<64 hex digits>";

/// A new random key.
pub fn generate_token() -> String {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    format!("annals_{}_{}", hex(&id), hex(&secret))
}

/// `(id, secret)` of a well-formed key.
fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("annals_")?;
    let (id, secret) = rest.split_once('_')?;
    let is_hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (is_hex(id, 16) && is_hex(secret, 64)).then_some((id, secret))
}

/// Whether `token` is a well-formed key (for checking `ANNALS_ADMIN_KEY` at startup).
pub fn is_well_formed(token: &str) -> bool {
    parse_token(token).is_some()
}

async fn append(store: &dyn EventStore, event: &KeyEvent) -> Result<RecordedEvent, ApiError> {
    let value = serde_json::to_value(event).expect("key events serialize");
    let data = EventData::json(value["type"].as_str().expect("tagged"), &value["data"])?;
    let id = data.id();
    let result = store.append_to_stream(&keys_stream(), ExpectedRevision::Any, vec![data]).await?;
    let events = store
        .read_stream(&keys_stream(), ReadFrom::At(result.first_revision), Direction::Forwards, 1)
        .await?
        .into_events();
    events
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| ApiError::Store(StoreError::Index("the key event just appended cannot be read".into())))
}

fn keys_stream() -> StreamId {
    StreamId::new(KEYS_STREAM).expect("a valid name")
}

fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
