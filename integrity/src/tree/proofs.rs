//! Proof generation from the stored perfect subtrees: RFC 9162 §2.1.3.1 (`PATH`) and §2.1.4.1
//! (`PROOF`/`SUBPROOF`), written as loops that walk down from the root, and MTH of any range the
//! recursion needs, read from stored nodes where the range is a perfect aligned subtree.

use crate::error::IntegrityError;
use crate::hash::Hash;
use crate::tree::store::{NodeId, NodeStore};
use crate::tree::MerkleLog;
use crate::types::{ConsistencyProof, InclusionProof, LeafIndex, TreeSize};

/// The largest power of two smaller than `n` (`n > 1`): RFC 9162's split point `k`.
fn split(n: u64) -> u64 {
    debug_assert!(n > 1);
    1 << (63 - (n - 1).leading_zeros())
}

impl<S: NodeStore> MerkleLog<S> {
    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: LeafIndex, size: TreeSize) -> Result<InclusionProof, IntegrityError> {
        self.check_size(size)?;
        if !size.contains(index) {
            return Err(IntegrityError::LeafOutsideTree { index, tree_size: size });
        }
        let m = index.get();
        let (mut lo, mut hi) = (0, size.get());
        let mut path = Vec::new();
        // PATH(m, D[lo:hi]) = PATH(m, D[lo:lo+k]) : MTH(D[lo+k:hi])  if m < lo + k
        //                   = PATH(m, D[lo+k:hi]) : MTH(D[lo:lo+k])  otherwise
        while hi - lo > 1 {
            let k = split(hi - lo);
            if m < lo + k {
                path.push(self.range_hash(lo + k, hi)?);
                hi = lo + k;
            } else {
                path.push(self.range_hash(lo, lo + k)?);
                lo += k;
            }
        }
        path.reverse();
        Ok(InclusionProof { leaf_index: index, tree_size: size, inclusion_path: path })
    }

    /// The consistency proof from the tree of `from` leaves to the tree of `to` leaves. Empty when
    /// `from` is 0 or equal to `to` (see `verify::verify_consistency`).
    pub fn consistency_proof(&self, from: TreeSize, to: TreeSize) -> Result<ConsistencyProof, IntegrityError> {
        self.check_size(to)?;
        if from > to {
            return Err(IntegrityError::SizesOutOfOrder { from, to });
        }
        let mut path = Vec::new();
        if from != TreeSize::ZERO && from != to {
            let m = from.get();
            let (mut lo, mut hi) = (0, to.get());
            // Whether the current range is the whole tree (RFC: SUBPROOF's `b`).
            let mut whole = true;
            loop {
                if m == hi {
                    // SUBPROOF(m, D[m], b): {} if whole, else {MTH(D[lo:hi])}.
                    if !whole {
                        path.push(self.range_hash(lo, hi)?);
                    }
                    break;
                }
                let k = split(hi - lo);
                if m <= lo + k {
                    path.push(self.range_hash(lo + k, hi)?);
                    hi = lo + k;
                } else {
                    path.push(self.range_hash(lo, lo + k)?);
                    lo += k;
                    whole = false;
                }
            }
            path.reverse();
        }
        Ok(ConsistencyProof { from_size: from, to_size: to, consistency_path: path })
    }

    /// MTH(D[lo:hi]), `lo < hi ≤ size`: a stored node when the range is a perfect subtree aligned
    /// on its size, else RFC 9162's split. The ranges proofs ask for start on a multiple of a power
    /// of two at least their length, so this reads one node per set bit of `hi − lo`.
    pub(crate) fn range_hash(&self, lo: u64, hi: u64) -> Result<Hash, IntegrityError> {
        let n = hi - lo;
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            return self.store.get(NodeId::new(n.trailing_zeros(), lo / n));
        }
        let k = split(n);
        let left = self.range_hash(lo, lo + k)?;
        let right = self.range_hash(lo + k, hi)?;
        Ok(Hash::node(&left, &right))
    }
}
