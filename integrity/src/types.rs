//! The typed vocabulary of the tree: which leaf (`LeafIndex`), how big a tree (`TreeSize`), a tree's
//! head, and the two proofs. Bare integers stay inside the arithmetic; the public API names them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::hash::Hash;

/// The index of a leaf: the ordinal of its event in the log (leaf `i` = the event at log
/// position `i`), counted from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeafIndex(u64);

impl LeafIndex {
    pub const fn new(index: u64) -> Self {
        Self(index)
    }
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for LeafIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The number of leaves of a tree. A tree of size `n` holds leaves `0..n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TreeSize(u64);

impl TreeSize {
    pub const ZERO: Self = Self(0);

    pub const fn new(size: u64) -> Self {
        Self(size)
    }
    pub const fn get(self) -> u64 {
        self.0
    }
    /// Whether `index` is a leaf of a tree of this size.
    pub const fn contains(self, index: LeafIndex) -> bool {
        index.0 < self.0
    }
    /// The size of the tree right after `index` was appended.
    pub const fn after(index: LeafIndex) -> Self {
        Self(index.0 + 1)
    }
}

impl fmt::Display for TreeSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A tree head: a size and the Merkle Tree Hash of the first `tree_size` leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHead {
    pub tree_size: TreeSize,
    pub root_hash: Hash,
}

/// RFC 9162 §2.1.3: the audit path of `leaf_index` in the tree of `tree_size` leaves, the leaf's
/// sibling first and the child of the root last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub leaf_index: LeafIndex,
    pub tree_size: TreeSize,
    pub inclusion_path: Vec<Hash>,
}

/// RFC 9162 §2.1.4: the hashes that prove the tree of `from_size` leaves is a prefix of the tree of
/// `to_size` leaves, in the order of `SUBPROOF`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    pub from_size: TreeSize,
    pub to_size: TreeSize,
    pub consistency_path: Vec<Hash>,
}
