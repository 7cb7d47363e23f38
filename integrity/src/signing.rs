//! Signed tree heads: the log's Ed25519 key, what exactly is signed, and how anyone holding the
//! public half checks a head.
//!
//! # What is signed
//!
//! The signature covers a fixed-length, domain-separated encoding of the head (integers
//! big-endian, 65 bytes), never JSON, so that no serializer's choices can change what a signature
//! means:
//!
//! ```text
//! "annals-tree-head" (16 ASCII bytes) | format version u8 = 1 | tree_size u64
//!   | timestamp, milliseconds since the Unix epoch, i64 | root_hash [32]
//! ```
//!
//! The context string keeps a signature over a tree head from being valid as anything else this
//! key might ever sign; the version lets a later format add fields.
//!
//! # Keys
//!
//! The private key file holds the raw 32-byte Ed25519 seed (RFC 8032 §5.1.5) and nothing else, mode
//! 0600: `load` refuses a file that group or others may read, as ssh does. It is created once
//! (`load_or_create`): written to a temporary name, synced, then linked to its name (a link never
//! replaces an existing key) and the directory synced. The public half is exported as a PEM
//! `PUBLIC KEY` (SubjectPublicKeyInfo, RFC 8410) or as base64 of the raw 32 bytes; `parse` takes
//! either. A key's id is the hex SHA-256 of its raw 32 bytes.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signer, Verifier};
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::error::IntegrityError;
use crate::hash::Hash;
use crate::types::{TreeHead, TreeSize};

pub const SIGNATURE_CONTEXT: &[u8; 16] = b"annals-tree-head";
pub const SIGNED_FORMAT_VERSION: u8 = 1;
pub const SIGNED_LEN: usize = 16 + 1 + 8 + 8 + 32;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410 §4): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (0 unused bits) } — the 32 key bytes follow.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// When a head was signed: milliseconds since the Unix epoch (RFC 3339 in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
    }
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }
    pub const fn as_millis(self) -> i64 {
        self.0
    }
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_datetime().to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let t = DateTime::parse_from_rfc3339(&s).map_err(serde::de::Error::custom)?;
        Ok(Self(t.timestamp_millis()))
    }
}

/// An Ed25519 signature, base64 in JSON.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TreeHeadSignature([u8; 64]);

impl TreeHeadSignature {
    pub const fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }
    pub const fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

impl fmt::Debug for TreeHeadSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreeHeadSignature({})", BASE64.encode(self.0))
    }
}

impl Serialize for TreeHeadSignature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for TreeHeadSignature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = BASE64.decode(s.trim()).map_err(serde::de::Error::custom)?;
        let bytes: [u8; 64] = bytes.try_into().map_err(|_| serde::de::Error::custom("a signature is 64 bytes"))?;
        Ok(Self(bytes))
    }
}

/// A tree head with the log's signature over it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTreeHead {
    pub tree_size: TreeSize,
    pub root_hash: Hash,
    pub timestamp: Timestamp,
    pub signature: TreeHeadSignature,
}

impl SignedTreeHead {
    pub fn head(&self) -> TreeHead {
        TreeHead { tree_size: self.tree_size, root_hash: self.root_hash }
    }
}

/// The exact bytes the log signs for a head (see the module doc).
pub fn signed_message(tree_size: TreeSize, timestamp: Timestamp, root_hash: &Hash) -> [u8; SIGNED_LEN] {
    let mut m = [0u8; SIGNED_LEN];
    m[..16].copy_from_slice(SIGNATURE_CONTEXT);
    m[16] = SIGNED_FORMAT_VERSION;
    m[17..25].copy_from_slice(&tree_size.get().to_be_bytes());
    m[25..33].copy_from_slice(&timestamp.as_millis().to_be_bytes());
    m[33..].copy_from_slice(root_hash.as_bytes());
    m
}

/// The log's private key.
pub struct TreeSigner {
    key: ed25519_dalek::SigningKey,
}

impl fmt::Debug for TreeSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreeSigner({})", self.public_key().key_id())
    }
}

impl TreeSigner {
    /// A new key from the operating system's random source.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self { key: ed25519_dalek::SigningKey::from_bytes(&seed) }
    }

    /// Loads the key at `path`, creating it first if there is none.
    pub fn load_or_create(path: &Path) -> Result<Self, IntegrityError> {
        match fs::symlink_metadata(path) {
            Ok(_) => Self::load(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let signer = Self::generate();
                match signer.create(path) {
                    Ok(()) => Ok(signer),
                    // Another process created it first: use theirs.
                    Err(IntegrityError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load(path)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(IntegrityError::Io { path: path.into(), source: e }),
        }
    }

    /// Loads a key file: exactly 32 bytes, not readable by group or others.
    pub fn load(path: &Path) -> Result<Self, IntegrityError> {
        let key_error = |detail: String| IntegrityError::KeyFile { path: path.into(), detail };
        let mode = fs::metadata(path).map_err(IntegrityError::io(path))?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(key_error(format!("mode {:o} lets others read it; chmod 600", mode & 0o777)));
        }
        let bytes = fs::read(path).map_err(IntegrityError::io(path))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| key_error(format!("{} bytes where a raw Ed25519 seed has 32", b.len())))?;
        Ok(Self::from_seed(seed))
    }

    /// Writes this key to `path`, which must not exist (see the module doc for how).
    pub fn create(&self, path: &Path) -> Result<(), IntegrityError> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp = path.with_extension("tmp");
        let _ = fs::remove_file(&tmp);
        let mut file =
            OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(IntegrityError::io(&tmp))?;
        file.write_all(self.key.as_bytes()).and_then(|()| file.sync_all()).map_err(IntegrityError::io(&tmp))?;
        drop(file);
        let linked = fs::hard_link(&tmp, path).map_err(IntegrityError::io(path));
        let _ = fs::remove_file(&tmp);
        linked?;
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(IntegrityError::io(dir))?;
        Ok(())
    }

    pub fn public_key(&self) -> TreePublicKey {
        TreePublicKey(self.key.verifying_key())
    }

    /// Signs `head` as of `timestamp`.
    pub fn sign(&self, head: &TreeHead, timestamp: Timestamp) -> SignedTreeHead {
        let message = signed_message(head.tree_size, timestamp, &head.root_hash);
        let signature = self.key.sign(&message).to_bytes();
        SignedTreeHead {
            tree_size: head.tree_size,
            root_hash: head.root_hash,
            timestamp,
            signature: TreeHeadSignature(signature),
        }
    }
}

/// The public half of the log's key: what a verifier holds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TreePublicKey(ed25519_dalek::VerifyingKey);

impl fmt::Debug for TreePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreePublicKey({})", self.key_id())
    }
}

impl TreePublicKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, IntegrityError> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|e| IntegrityError::Format { what: "public key", detail: e.to_string() })
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Hex SHA-256 of the raw 32 key bytes.
    pub fn key_id(&self) -> String {
        Hash::from_bytes(Sha256::digest(self.0.as_bytes()).into()).to_hex()
    }

    /// Base64 of the raw 32 bytes.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0.as_bytes())
    }

    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo, RFC 8410), as `openssl pkey -pubin` reads it.
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.0.as_bytes());
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", BASE64.encode(der))
    }

    /// Reads a key as `to_pem` or `to_base64` write it.
    pub fn parse(text: &str) -> Result<Self, IntegrityError> {
        let bad = |detail: &str| IntegrityError::Format { what: "public key", detail: detail.into() };
        let text = text.trim();
        let bytes = if let Some(body) = text.strip_prefix("-----BEGIN PUBLIC KEY-----") {
            let body =
                body.trim_end().strip_suffix("-----END PUBLIC KEY-----").ok_or_else(|| bad("unterminated PEM"))?;
            let body: String = body.split_whitespace().collect();
            let der = BASE64.decode(body).map_err(|e| bad(&e.to_string()))?;
            der.strip_prefix(&SPKI_PREFIX[..]).ok_or_else(|| bad("not an Ed25519 SubjectPublicKeyInfo"))?.to_vec()
        } else {
            BASE64.decode(text).map_err(|e| bad(&e.to_string()))?
        };
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad("an Ed25519 public key is 32 bytes"))?;
        Self::from_bytes(&bytes)
    }

    /// Checks the signature of `sth`; on success, the head it vouches for.
    pub fn verify(&self, sth: &SignedTreeHead) -> Result<TreeHead, IntegrityError> {
        let message = signed_message(sth.tree_size, sth.timestamp, &sth.root_hash);
        let signature = ed25519_dalek::Signature::from_bytes(&sth.signature.0);
        self.0
            .verify(&message, &signature)
            .map_err(|_| IntegrityError::BadSignature { tree_size: sth.tree_size, key_id: self.key_id() })?;
        Ok(sth.head())
    }
}
