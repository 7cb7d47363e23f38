//! The one error type of the integrity crate. Three kinds, told apart by variant: a proof or
//! signature that does not verify (the data's fault: the variant says which check failed), a
//! request the tree cannot answer (the caller's fault), and the tree's own files (I/O is transient,
//! a checksum mismatch is permanent until the tree is rebuilt from the log).

use std::path::PathBuf;

use crate::hash::Hash;
use crate::types::{LeafIndex, TreeSize};

#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    // --- verification: the proof, head or signature is not what it claims --------------------
    /// RFC 9162 §2.1.3.2 step 1: the leaf is not in a tree of that size.
    #[error("leaf index {index} is not below tree size {tree_size}")]
    LeafOutsideTree { index: LeafIndex, tree_size: TreeSize },

    /// The proof does not have the number of hashes the sizes (and index) call for.
    #[error("the {proof} proof has {actual} hashes where {expected} are needed")]
    ProofLength { proof: &'static str, expected: usize, actual: usize },

    /// The proof is for another tree size than the head it is checked against.
    #[error("the {proof} proof is for tree size {proof_size}, the tree head has size {head_size}")]
    ProofForOtherSize { proof: &'static str, proof_size: TreeSize, head_size: TreeSize },

    /// The proof recomputes to another root than the one it was checked against.
    #[error("the inclusion proof of leaf {index} leads to root {computed}, not {expected}")]
    InclusionRootMismatch { index: LeafIndex, expected: Hash, computed: Hash },

    /// The consistency proof does not reproduce the older tree's root.
    #[error("the consistency proof reproduces {computed} as the root of size {size}, not {expected}")]
    OldRootMismatch { size: TreeSize, expected: Hash, computed: Hash },

    /// The consistency proof does not reproduce the newer tree's root.
    #[error("the consistency proof reproduces {computed} as the root of size {size}, not {expected}")]
    NewRootMismatch { size: TreeSize, expected: Hash, computed: Hash },

    /// A consistency proof was asked for, or checked, from a larger tree to a smaller one.
    #[error("tree size {from} is larger than tree size {to}")]
    SizesOutOfOrder { from: TreeSize, to: TreeSize },

    /// The leaves given are not exactly leaves `first..=last` of the tree head (one is missing,
    /// added, changed or out of place), or the range proof is not theirs.
    #[error("leaves {first}..={last} do not match the tree head: {detail}")]
    RangeMismatch { first: LeafIndex, last: LeafIndex, detail: String },

    /// The signature over a tree head does not verify with the given public key.
    #[error("the signature of the tree head of size {tree_size} does not verify with key {key_id}")]
    BadSignature { tree_size: TreeSize, key_id: String },

    // --- requests the tree cannot answer ----------------------------------------------------
    /// A proof or root for a tree larger than the tree holds so far.
    #[error("tree size {requested} is beyond the {available} leaves the tree holds")]
    SizeBeyondTree { requested: TreeSize, available: TreeSize },

    /// Text that should be a hash, a key or a signature is not.
    #[error("malformed {what}: {detail}")]
    Format { what: &'static str, detail: String },

    // --- the tree's and the key's files -----------------------------------------------------
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    /// A stored node failed its checksum, or a file is not one of ours. Permanent: rebuild the
    /// tree from the log (`MerkleLog::truncate` to before it, then re-feed).
    #[error("corrupt tree file {path} at offset {offset}: {detail}")]
    Corrupt { path: PathBuf, offset: u64, detail: String },

    /// An append failed part way (a write to a level file); the tree refuses appends until it is
    /// reopened, which recovers it from its files.
    #[error("an earlier append to the tree failed at leaf {at}; reopen the tree to recover it")]
    Poisoned { at: LeafIndex },

    /// A private key file that others could read, or that is not a key.
    #[error("signing key {path}: {detail}")]
    KeyFile { path: PathBuf, detail: String },
}

impl From<crate::hash::HexError> for IntegrityError {
    fn from(e: crate::hash::HexError) -> Self {
        IntegrityError::Format { what: "hash", detail: e.to_string() }
    }
}

impl IntegrityError {
    /// Whether retrying the same operation later may succeed (I/O); everything else is permanent.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Io { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
