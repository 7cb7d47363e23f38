//! The incremental, persistent Merkle tree over the log: `MerkleLog`.
//!
//! # Design
//!
//! The tree is **derived from the log**, never the source of truth: leaf `i` is the hash of the
//! event at log ordinal `i`, and everything here can be deleted and rebuilt by feeding the log's
//! events again. What is stored is the hash of every *perfect* subtree: the node at level `k`,
//! index `i` covers leaves `[i·2^k, (i+1)·2^k)` and exists once all of them are in. Appending a
//! leaf stores its hash at level 0 and then, while the new node completes a pair, the parent —
//! amortised two hashes and two 36-byte records per leaf. The right edge of the tree (one node per
//! set bit of the size, the *frontier*) is also kept in memory, so the root of the current size
//! costs no read. Any other subtree RFC 9162 needs — the ragged right edge of an older size — is
//! computed from O(log n) stored perfect nodes, so a proof for any size reads O(log n) nodes.
//!
//! ```text
//! DIR/                      (e.g. DATA_DIR/merkle/, under the store's LOCK)
//!   level-00.nodes          leaf hashes, one record per leaf
//!   level-01.nodes          nodes covering 2 leaves
//!   …
//!   level-KK.nodes          up to the highest level with a node
//! ```
//!
//! ## On-disk format (integers little-endian)
//!
//! ```text
//! level file header (32): magic "ANNALSMT" (8) | format version u16 | level u8 | reserved (17)
//!                         | crc32c of the preceding 28 bytes u32
//! record (36):            hash [32] | crc32c of the hash u32
//! ```
//!
//! Record `i` of level `k` is node `(k, i)`, at offset `32 + 36·i`. A level of a tree of size `n`
//! holds exactly `⌊n / 2^k⌋` records. Records are buffered and appended in large writes; `sync`
//! writes what is buffered and `fdatasync`s each level written since (and the directory after a
//! level file was created). The tree needs no sync of its own per append: whatever a crash loses
//! is re-fed from the log.
//!
//! ## Recovery, on every open
//!
//! 1. Per level file: a missing or torn header (not exactly ours) drops the file; a whole header
//!    of a format version this build does not know refuses the open (never misread, never
//!    dropped); otherwise the level holds the records from the start up to the first one that is
//!    partial or fails its checksum (`c_k` of them).
//! 2. The tree's size is the largest `n` every level agrees on: `n ≤ c_0` and `⌊n / 2^k⌋ ≤ c_k`
//!    for every level. Every level is truncated to `⌊n / 2^k⌋` records — anything after a bad
//!    record, a torn tail, or nodes of leaves past `n` is cut — and the frontier is read back.
//! 3. The caller re-feeds leaves from the log from ordinal `size()` on. If the log is *shorter*
//!    than the tree (the tree saw events the log then lost), the caller `truncate`s the tree to the
//!    log's length first.
//!
//! So a crash at any point between level files — `kill -9` mid-append, a torn write, a level
//! written ahead of the one below — leaves at worst a shorter tree, never a wrong hash: every node
//! kept passed its checksum, and every kept node's leaves are kept. Nodes are checked again on
//! every read; a mismatch there (the disk changed under a running tree) is `Corrupt`, never a hash.
//! `tests/recovery.rs` truncates and garbles the files at random points and compares with a tree in
//! memory.

mod file;
mod proofs;
pub mod store;

pub use file::FileNodeStore;
pub use store::{MemoryNodeStore, NodeId, NodeStore};

use std::path::Path;

use crate::error::IntegrityError;
use crate::hash::Hash;
use crate::tree::store::MAX_LEVELS;
use crate::types::{LeafIndex, TreeHead, TreeSize};

/// An append-only Merkle tree (RFC 9162 §2.1) over a `NodeStore`.
///
/// Appends take `&mut self`; roots and proofs take `&self` and may run concurrently with each
/// other (behind an `RwLock`, say). A failed append leaves the tree unusable for appends until it
/// is reopened, which recovers it from its files.
#[derive(Debug)]
pub struct MerkleLog<S: NodeStore = FileNodeStore> {
    store: S,
    size: TreeSize,
    /// `frontier[k]` is node `(k, ⌊size / 2^k⌋ − 1)` when bit `k` of the size is set, else `None`.
    frontier: Vec<Option<Hash>>,
    poisoned: bool,
}

impl MerkleLog<FileNodeStore> {
    /// Opens the tree stored in `dir` (creating an empty one), recovering it as the module doc
    /// says. Re-feed leaves from `size()` on.
    pub fn open(dir: &Path) -> Result<Self, IntegrityError> {
        Self::with_store(FileNodeStore::open(dir)?)
    }
}

impl MerkleLog<MemoryNodeStore> {
    pub fn in_memory() -> Self {
        Self { store: MemoryNodeStore::new(), size: TreeSize::ZERO, frontier: vec![None; 64], poisoned: false }
    }
}

impl<S: NodeStore> MerkleLog<S> {
    /// A tree over `store`, cut back to the largest size all its levels agree on.
    pub fn with_store(store: S) -> Result<Self, IntegrityError> {
        let mut size = u128::from(store.node_count(0));
        for level in 1..MAX_LEVELS {
            // ⌊n / 2^k⌋ ≤ c_k  ⇔  n < (c_k + 1)·2^k
            let bound = ((u128::from(store.node_count(level)) + 1) << level) - 1;
            size = size.min(bound);
        }
        let size = TreeSize::new(size as u64);
        let mut log = Self { store, size: TreeSize::ZERO, frontier: vec![None; 64], poisoned: false };
        log.reset_to(size)?;
        if log.size.get() > 0 {
            tracing::debug!(size = log.size.get(), "merkle tree opened");
        }
        Ok(log)
    }

    /// The store, given back (to reopen it with `with_store`, say).
    pub fn into_store(self) -> S {
        self.store
    }

    /// The number of leaves: the next leaf appended gets this index.
    pub fn size(&self) -> TreeSize {
        self.size
    }

    /// The head of the tree as it is now.
    pub fn head(&self) -> TreeHead {
        TreeHead { tree_size: self.size, root_hash: self.frontier_root() }
    }

    /// Appends a leaf whose bytes are `bytes` (hashed as SHA-256(0x00 ‖ bytes)).
    pub fn append_leaf(&mut self, bytes: &[u8]) -> Result<LeafIndex, IntegrityError> {
        self.append_leaf_hash(Hash::leaf(bytes))
    }

    /// Appends a leaf by its leaf hash (`Hash::leaf` of its bytes), for callers that hashed it
    /// already (off the append path, say).
    pub fn append_leaf_hash(&mut self, leaf: Hash) -> Result<LeafIndex, IntegrityError> {
        if self.poisoned {
            return Err(IntegrityError::Poisoned { at: LeafIndex::new(self.size.get()) });
        }
        let index = LeafIndex::new(self.size.get());
        let result = self.push_leaf(leaf);
        if result.is_err() {
            self.poisoned = true;
        }
        result.map(|()| index)
    }

    fn push_leaf(&mut self, leaf: Hash) -> Result<(), IntegrityError> {
        let mut i = self.size.get();
        let mut level = 0u32;
        let mut hash = leaf;
        self.store.push(NodeId::new(0, i), hash)?;
        // The new node is a right child while its index is odd: merge with the frontier's left.
        while i & 1 == 1 {
            let left = self.frontier[level as usize].take().expect("frontier holds the left sibling");
            hash = Hash::node(&left, &hash);
            level += 1;
            i >>= 1;
            self.store.push(NodeId::new(level, i), hash)?;
        }
        self.frontier[level as usize] = Some(hash);
        self.size = TreeSize::new(self.size.get() + 1);
        Ok(())
    }

    /// The root of the tree of the first `size` leaves (`size ≤ self.size()`).
    pub fn root(&self, size: TreeSize) -> Result<Hash, IntegrityError> {
        self.check_size(size)?;
        if size == self.size {
            return Ok(self.frontier_root());
        }
        if size == TreeSize::ZERO {
            return Ok(Hash::empty());
        }
        self.range_hash(0, size.get())
    }

    /// The stored leaf hash at `index`.
    pub fn leaf_hash(&self, index: LeafIndex) -> Result<Hash, IntegrityError> {
        if !self.size.contains(index) {
            return Err(IntegrityError::LeafOutsideTree { index, tree_size: self.size });
        }
        self.store.get(NodeId::new(0, index.get()))
    }

    /// The stored leaf hashes at `first..first + count` (all inside the tree), read at once.
    pub fn leaf_hashes(&self, first: LeafIndex, count: u64) -> Result<Vec<Hash>, IntegrityError> {
        if count > 0 && !self.size.contains(LeafIndex::new(first.get() + count - 1)) {
            let index = LeafIndex::new(first.get() + count - 1);
            return Err(IntegrityError::LeafOutsideTree { index, tree_size: self.size });
        }
        self.store.leaf_run(first.get(), count)
    }

    /// Cuts the tree back to `size` leaves (when the log turned out shorter than the tree).
    pub fn truncate(&mut self, size: TreeSize) -> Result<(), IntegrityError> {
        self.check_size(size)?;
        self.reset_to(size)
    }

    /// Makes every leaf appended so far durable.
    pub fn sync(&mut self) -> Result<(), IntegrityError> {
        self.store.sync()
    }

    fn reset_to(&mut self, size: TreeSize) -> Result<(), IntegrityError> {
        self.store.truncate(size)?;
        let mut frontier = vec![None; 64];
        for (level, slot) in frontier.iter_mut().enumerate() {
            let count = store::nodes_at(size, level as u32);
            if count & 1 == 1 {
                *slot = Some(self.store.get(NodeId::new(level as u32, count - 1))?);
            }
        }
        self.frontier = frontier;
        self.size = size;
        self.poisoned = false;
        Ok(())
    }

    /// MTH of the whole tree from the frontier: the perfect subtrees of the right edge, folded
    /// from the smallest (rightmost) up, which is exactly RFC 9162's split at powers of two.
    fn frontier_root(&self) -> Hash {
        let mut acc: Option<Hash> = None;
        for node in self.frontier.iter().flatten() {
            acc = Some(match acc {
                None => *node,
                Some(right) => Hash::node(node, &right),
            });
        }
        acc.unwrap_or_else(Hash::empty)
    }

    pub(crate) fn check_size(&self, size: TreeSize) -> Result<(), IntegrityError> {
        if size > self.size {
            return Err(IntegrityError::SizeBeyondTree { requested: size, available: self.size });
        }
        Ok(())
    }
}
