//! Live-tail tokens: how a browser opens `GET /v1/events/live` without an API key in a URL.
//! `EventSource` cannot send an `Authorization` header, so a page's backend (holding a reader or
//! admin key) mints a short-lived token (`POST /v1/live-tokens`) and the page passes it as
//! `?access_token=`. The token is accepted by the live tail only, reads only, and only the minting
//! key's tenant; it authorizes *opening* a tail until it expires (a tail opened in time runs on),
//! and revoking the minting key ends its tails and refuses its tokens at once (the tail's key is
//! the minting key, checked as for any tail).
//!
//! A token is `annals_live.<key id>.<tenant>.<expires, Unix seconds>.<HMAC-SHA256>`: nothing is
//! stored per token. The MAC's secret is 32 random bytes kept in the system stream
//! `$live-tokens`, made by the first process that needs it (an append expecting no stream, so
//! concurrent processes agree on one), so every process sharing the store checks every token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use annals_store::{
    Direction, EventData, EventStore, ExpectedRevision, ReadFrom, ReadStreamOutcome, StoreError, StreamId,
};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::key_text::{hex, unhex};
use super::keys::KeyRing;
use super::principal::{Principal, Tenant};
use super::role::{Action, Role};
use crate::error::ApiError;

const PREFIX: &str = "annals_live";
const SECRET_STREAM: &str = "$live-tokens";
const SECRET_EVENT: &str = "live-token.secret";

/// A token just minted.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LiveToken {
    /// Pass it as `GET /v1/events/live?access_token=…`.
    pub token: String,
    /// After this, the token opens no tail (a tail opened before runs on).
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// The key that minted it: revoking that key ends the tails opened with it.
    pub key_id: String,
}

#[derive(Serialize, Deserialize)]
struct SecretEvent {
    secret: String,
}

impl KeyRing {
    /// A token for `principal`'s tenant, valid for `ttl`.
    pub async fn mint_live_token(
        &self,
        store: &dyn EventStore,
        principal: &Principal,
        ttl: Duration,
    ) -> Result<LiveToken, ApiError> {
        principal.require(Action::MintLiveToken)?;
        let secret = self.live_secret(store).await?;
        let expires = unix_now() + ttl.as_secs();
        let mac = mac(&secret, &principal.key_id, &principal.tenant, expires);
        let token = format!("{PREFIX}.{}.{}.{expires}.{}", principal.key_id, principal.tenant, hex(&mac));
        let expires_at = chrono::DateTime::from_timestamp(expires as i64, 0).expect("a time in range");
        Ok(LiveToken { token, expires_at, key_id: principal.key_id.clone() })
    }

    /// The caller a live-tail token stands for: a reader of the minting key's tenant, under the
    /// minting key's id (so the tail ends when that key is revoked). `401` for anything else.
    pub async fn authenticate_live_token(&self, store: &dyn EventStore, token: &str) -> Result<Principal, ApiError> {
        let invalid = || ApiError::Unauthorized("the live-tail token is not valid".into());
        let mut parts = token.split('.');
        let (Some(PREFIX), Some(key_id), Some(tenant), Some(expires), Some(given), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let tenant = Tenant::new(tenant).map_err(|_| invalid())?;
        let expires: u64 = expires.parse().map_err(|_| invalid())?;
        let given = unhex(given).ok_or_else(invalid)?;
        // Read, never made, here: a request without a key writes nothing to the log.
        let secret = match self.live_secret.0.get() {
            Some(secret) => *secret,
            None => match read_secret(store).await? {
                Some(secret) => *self.live_secret.0.get_or_init(|| async { secret }).await,
                None => return Err(invalid()),
            },
        };
        if !bool::from(mac(&secret, key_id, &tenant, expires).ct_eq(&given)) {
            return Err(invalid());
        }
        if unix_now() >= expires {
            return Err(ApiError::Unauthorized("the live-tail token has expired; mint another".into()));
        }
        // The minting key, as it is now: revoked (or gone) keys' tokens open nothing.
        let key = self.key_info(key_id).filter(|k| k.revoked_at.is_none() && k.tenant == tenant.as_str());
        match key {
            Some(key) if key.role.allows(Action::MintLiveToken) => {
                Ok(Principal { key_id: key_id.to_owned(), tenant, role: Role::Reader })
            }
            _ => Err(ApiError::Unauthorized(format!("key {key_id}, which minted the live-tail token, was revoked"))),
        }
    }

    /// The MAC secret, read from `$live-tokens` or made there once (by the first mint).
    async fn live_secret(&self, store: &dyn EventStore) -> Result<[u8; 32], ApiError> {
        let secret = self
            .live_secret
            .0
            .get_or_try_init(|| async {
                loop {
                    if let Some(secret) = read_secret(store).await? {
                        return Ok::<_, StoreError>(secret);
                    }
                    let mut secret = [0u8; 32];
                    rand::rngs::OsRng.fill_bytes(&mut secret);
                    let event = EventData::json(SECRET_EVENT, &SecretEvent { secret: hex(&secret) })?;
                    match store.append_to_stream(&secret_stream(), ExpectedRevision::NoStream, vec![event]).await {
                        Ok(_) => return Ok(secret),
                        // Another process made it first: use theirs.
                        Err(StoreError::WrongExpectedRevision { .. }) => continue,
                        Err(e) => return Err(e),
                    }
                }
            })
            .await?;
        Ok(*secret)
    }
}

async fn read_secret(store: &dyn EventStore) -> Result<Option<[u8; 32]>, StoreError> {
    let events = match store.read_stream(&secret_stream(), ReadFrom::Start, Direction::Forwards, 1).await? {
        ReadStreamOutcome::StreamNotFound => return Ok(None),
        ReadStreamOutcome::Events(events) => events,
    };
    let parsed = events.first().and_then(|e| serde_json::from_slice::<SecretEvent>(&e.data).ok());
    parsed
        .and_then(|s| unhex(&s.secret))
        .map(Some)
        .ok_or_else(|| StoreError::Index(format!("{SECRET_STREAM} holds no readable secret")))
}

fn secret_stream() -> StreamId {
    StreamId::new(SECRET_STREAM).expect("a valid name")
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What the token's MAC covers: every field it carries, under a label of its own.
fn mac(secret: &[u8; 32], key_id: &str, tenant: &Tenant, expires: u64) -> [u8; 32] {
    hmac_sha256(secret, format!("annals-live-token-v1\n{key_id}\n{tenant}\n{expires}").as_bytes())
}

/// HMAC-SHA256 (RFC 2104) for keys of at most one block (ours are 32 bytes).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    assert!(key.len() <= 64, "an HMAC key of at most one SHA-256 block");
    let mut inner_pad = [0x36u8; 64];
    let mut outer_pad = [0x5cu8; 64];
    for (i, byte) in key.iter().enumerate() {
        inner_pad[i] ^= byte;
        outer_pad[i] ^= byte;
    }
    let inner = Sha256::new().chain_update(inner_pad).chain_update(message).finalize();
    Sha256::new().chain_update(outer_pad).chain_update(inner).finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
