//! Proof verification, RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency), step by step as
//! the RFC writes them. Pure: no file, no clock, no tree — only hashes in, a verdict out — so the
//! offline verifier (`annals verify`) and a browser-side port can use exactly this code.
//!
//! Each check returns the first thing that failed as an `IntegrityError` variant: a leaf outside
//! the tree, a proof of the wrong length, a proof for another tree size than the head, or the root
//! it leads to. The expected length of a proof is computed up front from the sizes, so a proof with
//! a hash too many or too few is reported as such rather than as a root mismatch.

use crate::error::IntegrityError;
use crate::hash::Hash;
use crate::types::{ConsistencyProof, InclusionProof, TreeHead, TreeSize};

/// Checks that the leaf whose hash is `leaf_hash` is at `proof.leaf_index` in the tree `head`.
pub fn verify_inclusion(leaf_hash: &Hash, proof: &InclusionProof, head: &TreeHead) -> Result<(), IntegrityError> {
    same_size("inclusion", proof.tree_size, head.tree_size)?;
    let computed = root_from_inclusion_proof(leaf_hash, proof)?;
    if computed != head.root_hash {
        return Err(IntegrityError::InclusionRootMismatch {
            index: proof.leaf_index,
            expected: head.root_hash,
            computed,
        });
    }
    Ok(())
}

/// The root that `proof` leads to from `leaf_hash` (§2.1.3.2 steps 1–4), for callers that compare
/// it with a head themselves.
pub fn root_from_inclusion_proof(leaf_hash: &Hash, proof: &InclusionProof) -> Result<Hash, IntegrityError> {
    let (index, size) = (proof.leaf_index.get(), proof.tree_size.get());
    // Step 1.
    if index >= size {
        return Err(IntegrityError::LeafOutsideTree { index: proof.leaf_index, tree_size: proof.tree_size });
    }
    let expected = inclusion_path_len(index, size);
    check_len("inclusion", expected, proof.inclusion_path.len())?;
    // Steps 2 and 3.
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf_hash;
    // Step 4.
    for p in &proof.inclusion_path {
        if sn == 0 {
            return Err(len_error("inclusion", expected, proof.inclusion_path.len()));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = Hash::node(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = Hash::node(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5 (the root comparison is the caller's).
    if sn != 0 {
        return Err(len_error("inclusion", expected, proof.inclusion_path.len()));
    }
    Ok(r)
}

/// Checks that `old` is a prefix of `new`: the tree of `old.tree_size` leaves with root
/// `old.root_hash` is the first `old.tree_size` leaves of the tree `new`.
///
/// Beyond §2.1.4.2, which covers `0 < first < second`: equal sizes need an empty proof and equal
/// roots; the empty tree is a prefix of every tree, with an empty proof, provided `old` carries
/// the empty tree's root (SHA-256 of nothing).
pub fn verify_consistency(proof: &ConsistencyProof, old: &TreeHead, new: &TreeHead) -> Result<(), IntegrityError> {
    same_size("consistency", proof.from_size, old.tree_size)?;
    same_size("consistency", proof.to_size, new.tree_size)?;
    let (first, second) = (old.tree_size.get(), new.tree_size.get());
    let path = &proof.consistency_path;
    if first > second {
        return Err(IntegrityError::SizesOutOfOrder { from: old.tree_size, to: new.tree_size });
    }
    if first == 0 || first == second {
        check_len("consistency", 0, path.len())?;
        let expected_old = if first == 0 { Hash::empty() } else { new.root_hash };
        if old.root_hash != expected_old {
            return Err(IntegrityError::OldRootMismatch {
                size: old.tree_size,
                expected: old.root_hash,
                computed: expected_old,
            });
        }
        return Ok(());
    }
    let expected = consistency_path_len(first, second);
    // Step 1 (an empty path) is one case of a wrong length.
    check_len("consistency", expected, path.len())?;
    // Step 2: a power-of-two first tree is a node of the second, so the proof omits it.
    let mut hashes: Vec<&Hash> = Vec::with_capacity(path.len() + 1);
    if first.is_power_of_two() {
        hashes.push(&old.root_hash);
    }
    hashes.extend(path.iter());
    // Steps 3 and 4.
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5.
    let (mut fr, mut sr) = (*hashes[0], *hashes[0]);
    // Step 6.
    for c in &hashes[1..] {
        if sn == 0 {
            return Err(len_error("consistency", expected, path.len()));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = Hash::node(c, &fr);
            sr = Hash::node(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = Hash::node(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 7.
    if sn != 0 {
        return Err(len_error("consistency", expected, path.len()));
    }
    if fr != old.root_hash {
        return Err(IntegrityError::OldRootMismatch { size: old.tree_size, expected: old.root_hash, computed: fr });
    }
    if sr != new.root_hash {
        return Err(IntegrityError::NewRootMismatch { size: new.tree_size, expected: new.root_hash, computed: sr });
    }
    Ok(())
}

/// The number of hashes in the inclusion proof of `index` in a tree of `size` leaves: the
/// iterations of §2.1.3.2 step 4 until `sn` reaches 0. Requires `index < size`.
pub(crate) fn inclusion_path_len(index: u64, size: u64) -> usize {
    let (mut fn_, mut sn) = (index, size - 1);
    let mut n = 0;
    while sn != 0 {
        if fn_ & 1 == 0 && fn_ == sn {
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        }
        fn_ >>= 1;
        sn >>= 1;
        n += 1;
    }
    n
}

/// The number of hashes in the consistency proof from `first` to `second` leaves, `0 < first <
/// second`: one per iteration of §2.1.4.2 step 6, plus the first hash unless it is the old root.
pub(crate) fn consistency_path_len(first: u64, second: u64) -> usize {
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut n = usize::from(!first.is_power_of_two());
    while sn != 0 {
        if fn_ & 1 == 0 && fn_ == sn {
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        }
        fn_ >>= 1;
        sn >>= 1;
        n += 1;
    }
    n
}

fn same_size(proof: &'static str, proof_size: TreeSize, head_size: TreeSize) -> Result<(), IntegrityError> {
    if proof_size != head_size {
        return Err(IntegrityError::ProofForOtherSize { proof, proof_size, head_size });
    }
    Ok(())
}

fn check_len(proof: &'static str, expected: usize, actual: usize) -> Result<(), IntegrityError> {
    if expected != actual {
        return Err(len_error(proof, expected, actual));
    }
    Ok(())
}

fn len_error(proof: &'static str, expected: usize, actual: usize) -> IntegrityError {
    IntegrityError::ProofLength { proof, expected, actual }
}
