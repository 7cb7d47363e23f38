//! The text of API keys and the hex they are stored in: `annals_<id>_<secret>`, where `id` is 16
//! hex digits (named in lists and logs) and `secret` 64 (32 random bytes, stored only as its
//! SHA-256). Apart from `keys.rs` so the key ring's fold stays readable.

use rand::RngCore;
use sha2::{Digest, Sha256};

pub(super) const TOKEN_FORMAT: &str = "annals_<16 hex digits>_<64 hex digits>";

/// A new random key.
pub fn generate_token() -> String {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    format!("annals_{}_{}", hex(&id), hex(&secret))
}

/// `(id, secret)` of a well-formed key.
pub(super) fn parse_token(token: &str) -> Option<(&str, &str)> {
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

pub(super) fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
