//! The hash vocabulary of RFC 9162 §2.1.1 over SHA-256: one `Hash` type and the three ways to make
//! one (empty tree, leaf, interior node), so that no other file ever concatenates prefixes itself.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Domain separation of RFC 9162 §2.1.1: a leaf can never be mistaken for an interior node.
const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// A SHA-256 output: a leaf hash, an interior node, or a tree's root. Hex (lowercase) in serde and
/// `Display`, so JSON carries it as a 64-character string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash([u8; 32]);

impl Hash {
    pub const LEN: usize = 32;

    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// MTH({}) = SHA-256() — the root of the tree of size 0.
    pub fn empty() -> Self {
        Self(Sha256::digest([]).into())
    }

    /// MTH({d}) = SHA-256(0x00 ‖ d): the hash of one leaf, here the exact bytes of one event.
    pub fn leaf(bytes: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update([LEAF_PREFIX]);
        h.update(bytes);
        Self(h.finalize().into())
    }

    /// SHA-256(0x01 ‖ left ‖ right): an interior node.
    pub fn node(left: &Hash, right: &Hash) -> Self {
        let mut h = Sha256::new();
        h.update([NODE_PREFIX]);
        h.update(left.0);
        h.update(right.0);
        Self(h.finalize().into())
    }

    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(DIGITS[usize::from(b >> 4)] as char);
            s.push(DIGITS[usize::from(b & 0x0f)] as char);
        }
        s
    }

    pub fn from_hex(hex: &str) -> Result<Self, HexError> {
        let bad = || HexError(hex.to_owned());
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return Err(bad());
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (digit(pair[0]).ok_or_else(bad)? << 4) | digit(pair[1]).ok_or_else(bad)?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

/// Text that is not a hash's 64 hex digits. Its own type, so that this file needs nothing of
/// `error.rs` (which names hashes in its variants); it becomes `IntegrityError::Format`.
#[derive(Debug, thiserror::Error)]
#[error("expected 64 hex digits, got {0:?}")]
pub struct HexError(pub String);

impl FromStr for Hash {
    type Err = HexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s).map_err(serde::de::Error::custom)
    }
}
