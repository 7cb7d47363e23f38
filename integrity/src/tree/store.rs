//! The narrow contract between the tree and where its nodes live: append the next node of a level,
//! read any node back, cut every level back to a tree size, make it durable. `MerkleLog` holds all
//! the tree logic (which nodes exist, recovery, proofs); a store only keeps 32-byte values in order.

use crate::error::IntegrityError;
use crate::hash::Hash;
use crate::types::TreeSize;

/// The most levels a tree of `u64` leaves can have (level 63 node 0 covers 2^63 leaves).
pub const MAX_LEVELS: u32 = 64;

/// A perfect subtree: level `k`, index `i` covers leaves `[i·2^k, (i+1)·2^k)`. Level 0 holds the
/// leaf hashes; the node exists once all its leaves are in the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeId {
    level: u32,
    index: u64,
}

impl NodeId {
    pub const fn new(level: u32, index: u64) -> Self {
        Self { level, index }
    }
    pub const fn level(self) -> u32 {
        self.level
    }
    /// The node's index within its level.
    pub const fn index(self) -> u64 {
        self.index
    }
}

/// How many nodes level `level` holds in a tree of `size` leaves: `⌊size / 2^level⌋`.
pub(crate) fn nodes_at(size: TreeSize, level: u32) -> u64 {
    size.get().checked_shr(level).unwrap_or(0)
}

/// Storage of the perfect subtrees' hashes, level by level, each level append-only.
pub trait NodeStore: std::fmt::Debug + Send + Sync {
    /// How many nodes level `level` holds now (for `MerkleLog`'s recovery at open).
    fn node_count(&self, level: u32) -> u64;

    /// The hash of a node this store holds.
    fn get(&self, node: NodeId) -> Result<Hash, IntegrityError>;

    /// The leaf hashes (level 0) at `first..first + count`, which this store holds; a store may
    /// read them at once (the file store: one read instead of one per leaf, for exports).
    fn leaf_run(&self, first: u64, count: u64) -> Result<Vec<Hash>, IntegrityError> {
        (first..first + count).map(|i| self.get(NodeId::new(0, i))).collect()
    }

    /// Appends `node`, which must be the next one of its level (`node.index() == node_count(level)`).
    fn push(&mut self, node: NodeId, hash: Hash) -> Result<(), IntegrityError>;

    /// Cuts every level back to the nodes of a tree of `size` leaves (and drops anything else).
    fn truncate(&mut self, size: TreeSize) -> Result<(), IntegrityError>;

    /// Makes every node pushed so far durable.
    fn sync(&mut self) -> Result<(), IntegrityError>;
}

/// A store in memory: for tests, and as the reference the file store is compared with.
#[derive(Debug, Default, Clone)]
pub struct MemoryNodeStore {
    levels: Vec<Vec<Hash>>,
}

impl MemoryNodeStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl NodeStore for MemoryNodeStore {
    fn node_count(&self, level: u32) -> u64 {
        self.levels.get(level as usize).map_or(0, |l| l.len() as u64)
    }

    fn get(&self, node: NodeId) -> Result<Hash, IntegrityError> {
        let missing = || IntegrityError::Corrupt {
            path: "memory".into(),
            offset: node.index,
            detail: format!("no node {} at level {}", node.index, node.level),
        };
        let level = self.levels.get(node.level as usize).ok_or_else(missing)?;
        usize::try_from(node.index).ok().and_then(|i| level.get(i)).copied().ok_or_else(missing)
    }

    fn push(&mut self, node: NodeId, hash: Hash) -> Result<(), IntegrityError> {
        let level = node.level as usize;
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        debug_assert_eq!(self.levels[level].len() as u64, node.index, "nodes are pushed in order");
        self.levels[level].push(hash);
        Ok(())
    }

    fn truncate(&mut self, size: TreeSize) -> Result<(), IntegrityError> {
        for (level, nodes) in self.levels.iter_mut().enumerate() {
            let keep = nodes_at(size, level as u32);
            nodes.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), IntegrityError> {
        Ok(())
    }
}
