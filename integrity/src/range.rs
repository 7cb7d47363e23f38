//! Range proofs: that a run of consecutive leaves `first..=last` is exactly the leaves at those
//! indices in a tree head — nothing missing, nothing added, nothing reordered — with O(log n)
//! hashes whatever the run's length. What an export of a stretch of the log needs to prove it is
//! complete, where per-record inclusion proofs would cost O(k log n).
//!
//! RFC 9162 defines no such proof; this is the compact-range construction of Trillian, written
//! over RFC 9162's tree: walk the RFC recursion from the root; a subtree inside the range is
//! computed by the verifier from the leaves, a subtree disjoint from it is one proof hash
//! (left to right, depth first), and a subtree straddling a boundary splits as MTH does.
//!
//! The verifier streams: `RangeVerifier::push` takes the leaf hashes in order and keeps only the
//! maximal perfect subtrees built so far (at most two per level), so an export of any size checks
//! in O(log n) memory. Pure: no I/O.

use serde::{Deserialize, Serialize};

use crate::error::IntegrityError;
use crate::hash::Hash;
use crate::tree::{MerkleLog, NodeStore};
use crate::types::{LeafIndex, TreeHead, TreeSize};

/// The hashes that, with the leaves `first..=last`, give the root of the tree of `tree_size`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeProof {
    pub first: LeafIndex,
    pub last: LeafIndex,
    pub tree_size: TreeSize,
    pub range_path: Vec<Hash>,
}

fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Visits the RFC recursion over `[lo, hi)` for the range `[a, b)`: `disjoint` for each subtree
/// outside it, in proof order.
fn walk<E>(lo: u64, hi: u64, a: u64, b: u64, disjoint: &mut impl FnMut(u64, u64) -> Result<(), E>) -> Result<(), E> {
    if a <= lo && hi <= b {
        return Ok(());
    }
    if hi <= a || b <= lo {
        return disjoint(lo, hi);
    }
    let k = split(hi - lo);
    walk(lo, lo + k, a, b, disjoint)?;
    walk(lo + k, hi, a, b, disjoint)
}

fn check_range(first: LeafIndex, last: LeafIndex, size: TreeSize) -> Result<(), IntegrityError> {
    if first > last {
        return Err(IntegrityError::Format {
            what: "range",
            detail: format!("first leaf {first} is after last leaf {last}"),
        });
    }
    if !size.contains(last) {
        return Err(IntegrityError::LeafOutsideTree { index: last, tree_size: size });
    }
    Ok(())
}

fn range_path_len(first: LeafIndex, last: LeafIndex, size: TreeSize) -> usize {
    let mut n = 0;
    let _ = walk::<()>(0, size.get(), first.get(), last.get() + 1, &mut |_, _| {
        n += 1;
        Ok(())
    });
    n
}

impl<S: NodeStore> MerkleLog<S> {
    /// The range proof of leaves `first..=last` in the tree of the first `size` leaves.
    pub fn range_proof(&self, first: LeafIndex, last: LeafIndex, size: TreeSize) -> Result<RangeProof, IntegrityError> {
        self.check_size(size)?;
        check_range(first, last, size)?;
        let mut path = Vec::new();
        walk(0, size.get(), first.get(), last.get() + 1, &mut |lo, hi| {
            path.push(self.range_hash(lo, hi)?);
            Ok::<(), IntegrityError>(())
        })?;
        Ok(RangeProof { first, last, tree_size: size, range_path: path })
    }
}

/// Checks a range proof from the leaf hashes of the range, fed in order.
#[derive(Debug, Clone)]
pub struct RangeVerifier {
    first: LeafIndex,
    /// Leaves pushed so far.
    count: u64,
    /// Maximal perfect subtrees of `first..next`, left to right: (level, index, hash).
    stack: Vec<(u32, u64, Hash)>,
}

impl RangeVerifier {
    pub fn new(first: LeafIndex) -> Self {
        Self { first, count: 0, stack: Vec::new() }
    }

    /// The leaf hash of the next leaf of the range.
    pub fn push(&mut self, leaf_hash: Hash) {
        // Past the last possible index the range cannot be valid; `finish` says so.
        let Some(index) = self.first.get().checked_add(self.count) else {
            self.count = self.count.saturating_add(1);
            return;
        };
        let (mut level, mut index, mut hash) = (0u32, index, leaf_hash);
        while index & 1 == 1 {
            match self.stack.last() {
                Some(&(l, i, left)) if l == level && i == index - 1 => {
                    self.stack.pop();
                    hash = Hash::node(&left, &hash);
                    level += 1;
                    index >>= 1;
                }
                _ => break,
            }
        }
        self.stack.push((level, index, hash));
        self.count += 1;
    }

    /// Checks that the leaves pushed are exactly leaves `proof.first..=proof.last` of `head`.
    pub fn finish(self, proof: &RangeProof, head: &TreeHead) -> Result<(), IntegrityError> {
        if proof.tree_size != head.tree_size {
            return Err(IntegrityError::ProofForOtherSize {
                proof: "range",
                proof_size: proof.tree_size,
                head_size: head.tree_size,
            });
        }
        check_range(proof.first, proof.last, proof.tree_size)?;
        let pushed = self.count;
        let claimed = proof.last.get() - proof.first.get() + 1;
        if proof.first != self.first || pushed != claimed {
            return Err(IntegrityError::RangeMismatch {
                first: proof.first,
                last: proof.last,
                detail: format!("{pushed} leaves were given from leaf {}", self.first),
            });
        }
        let expected = range_path_len(proof.first, proof.last, proof.tree_size);
        if expected != proof.range_path.len() {
            return Err(IntegrityError::ProofLength { proof: "range", expected, actual: proof.range_path.len() });
        }
        let (a, b) = (proof.first.get(), proof.last.get() + 1);
        let mut path = proof.range_path.iter();
        let root = self.compute(0, head.tree_size.get(), a, b, &mut path)?;
        if root != head.root_hash {
            return Err(IntegrityError::RangeMismatch {
                first: proof.first,
                last: proof.last,
                detail: format!("the leaves and proof lead to root {root}, not {}", head.root_hash),
            });
        }
        Ok(())
    }

    fn compute(
        &self,
        lo: u64,
        hi: u64,
        a: u64,
        b: u64,
        path: &mut std::slice::Iter<'_, Hash>,
    ) -> Result<Hash, IntegrityError> {
        if a <= lo && hi <= b {
            return self.inside(lo, hi);
        }
        if hi <= a || b <= lo {
            // The length was checked against the same walk: there is one hash per disjoint subtree.
            return path.next().copied().ok_or(IntegrityError::ProofLength { proof: "range", expected: 0, actual: 0 });
        }
        let k = split(hi - lo);
        let left = self.compute(lo, lo + k, a, b, path)?;
        let right = self.compute(lo + k, hi, a, b, path)?;
        Ok(Hash::node(&left, &right))
    }

    /// MTH of `[lo, hi)` inside the range: a maximal perfect subtree of the stack, or (on the
    /// tree's ragged right edge) split as MTH does. The RFC walk only reaches inside subtrees whose
    /// parent straddles a boundary, which are exactly the stack's.
    fn inside(&self, lo: u64, hi: u64) -> Result<Hash, IntegrityError> {
        let n = hi - lo;
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            let (level, index) = (n.trailing_zeros(), lo / n);
            return self.stack.iter().find(|&&(l, i, _)| l == level && i == index).map(|&(_, _, h)| h).ok_or_else(
                || IntegrityError::RangeMismatch {
                    first: self.first,
                    last: LeafIndex::new(self.first.get().saturating_add(self.count).saturating_sub(1)),
                    detail: format!("no subtree of leaves {lo}..{hi} among the leaves given"),
                },
            );
        }
        let k = split(n);
        Ok(Hash::node(&self.inside(lo, lo + k)?, &self.inside(lo + k, hi)?))
    }
}

/// Checks in one call that `leaf_hashes` are leaves `proof.first..=proof.last` of `head`.
pub fn verify_range(leaf_hashes: &[Hash], proof: &RangeProof, head: &TreeHead) -> Result<(), IntegrityError> {
    let mut v = RangeVerifier::new(proof.first);
    for h in leaf_hashes {
        v.push(*h);
    }
    v.finish(proof, head)
}
