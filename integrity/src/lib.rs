//! Verifiable integrity for the log: an RFC 9162 (Certificate Transparency v2) Merkle tree over the
//! log's events, its proofs, and signed tree heads.
//!
//! - `hash` and `types`: the vocabulary — `Hash` (SHA-256, hex in JSON), `LeafIndex`, `TreeSize`,
//!   `TreeHead`, `InclusionProof`, `ConsistencyProof`.
//! - `verify`: pure proof verification (RFC 9162 §2.1.3.2, §2.1.4.2) — no I/O, for the offline
//!   verifier as much as for the server.
//! - `tree`: `MerkleLog`, the incremental tree an append path maintains (amortised O(1) hashes
//!   per leaf), persisted in append-only level files, answering roots and proofs for any size up
//!   to its own from O(log n) stored nodes. Derived from the log, rebuilt from it after a crash.
//! - `range`: range proofs — a run of consecutive leaves is exactly those leaves of a head, in
//!   O(log n) hashes, checked streaming in O(log n) memory (Trillian's compact ranges).
//! - `signing`: Ed25519 signed tree heads, their canonical signed bytes, and key files.
//!
//! Knows nothing of events, the store, tenants or HTTP: a leaf is bytes, an index is an ordinal.

pub mod error;
pub mod hash;
pub mod range;
pub mod signing;
pub mod tree;
pub mod types;
pub mod verify;

pub use error::IntegrityError;
pub use hash::Hash;
pub use range::{verify_range, RangeProof, RangeVerifier};
pub use signing::{SignedTreeHead, Timestamp, TreeHeadSignature, TreePublicKey, TreeSigner};
pub use tree::{FileNodeStore, MemoryNodeStore, MerkleLog, NodeId, NodeStore};
pub use types::{ConsistencyProof, InclusionProof, LeafIndex, TreeHead, TreeSize};
pub use verify::{root_from_inclusion_proof, verify_consistency, verify_inclusion};
