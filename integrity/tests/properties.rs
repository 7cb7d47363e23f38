//! Property tests: on random trees, every proof the tree generates is the one the RFC's recursive
//! definition gives (an independent naive implementation, `support/`), verifies against the naive
//! root, and stops verifying after any single-bit change of a proof hash, the leaf, or a root, or
//! after an off-by-one index or size.

use crate::support;

use annals_integrity::{
    verify_consistency, verify_inclusion, ConsistencyProof, Hash, InclusionProof, LeafIndex, MemoryNodeStore,
    MerkleLog, TreeHead, TreeSize,
};
use proptest::prelude::*;

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut b = *h.as_bytes();
    b[bit / 8] ^= 1 << (bit % 8);
    Hash::from_bytes(b)
}

fn head(leaves: &[Vec<u8>], size: usize) -> TreeHead {
    TreeHead { tree_size: TreeSize::new(size as u64), root_hash: Hash::from_bytes(support::mth(&leaves[..size])) }
}

fn build(leaves: &[Vec<u8>]) -> MerkleLog<MemoryNodeStore> {
    let mut log = MerkleLog::in_memory();
    for l in leaves {
        log.append_leaf(l).unwrap();
    }
    log
}

/// A tree with one leaf more than the largest size probed, so `size + 1` has a true root too.
fn tree_and_pair() -> impl Strategy<Value = (Vec<Vec<u8>>, usize, usize)> {
    (1usize..140).prop_flat_map(|n| {
        (proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), n + 1), 0..n, Just(n))
            .prop_flat_map(|(leaves, a, n)| (Just(leaves), Just(a), a + 1..=n))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn roots_of_every_size_match_the_naive_mth(leaves in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 0..70)) {
        let log = build(&leaves);
        for size in 0..=leaves.len() {
            prop_assert_eq!(log.root(TreeSize::new(size as u64)).unwrap(), Hash::from_bytes(support::mth(&leaves[..size])));
        }
        prop_assert_eq!(log.head(), head(&leaves, leaves.len()));
    }

    #[test]
    fn inclusion_proofs_verify_and_every_bit_matters((leaves, index, size) in tree_and_pair()) {
        let log = build(&leaves);
        let proof = log.inclusion_proof(LeafIndex::new(index as u64), TreeSize::new(size as u64)).unwrap();
        let naive: Vec<Hash> = support::path(index, &leaves[..size]).into_iter().map(Hash::from_bytes).collect();
        prop_assert_eq!(&proof.inclusion_path, &naive);
        let leaf = Hash::leaf(&leaves[index]);
        let good = head(&leaves, size);
        prop_assert!(verify_inclusion(&leaf, &proof, &good).is_ok());

        for i in 0..proof.inclusion_path.len() {
            for bit in 0..256 {
                let mut p = proof.clone();
                p.inclusion_path[i] = flip(&p.inclusion_path[i], bit);
                prop_assert!(verify_inclusion(&leaf, &p, &good).is_err(), "path[{}] bit {}", i, bit);
            }
        }
        for bit in 0..256 {
            prop_assert!(verify_inclusion(&flip(&leaf, bit), &proof, &good).is_err(), "leaf bit {}", bit);
            let bad = TreeHead { root_hash: flip(&good.root_hash, bit), ..good };
            prop_assert!(verify_inclusion(&leaf, &proof, &bad).is_err(), "root bit {}", bit);
        }
        // Off by one: the same proof claimed for a neighbouring index, or for a neighbouring size
        // (checked against that size's true root).
        // A neighbouring claim is skipped only when it is true with this very proof (two equal
        // leaves side by side): that is no forgery.
        let true_claim = |i: usize, n: usize| {
            i < n && leaves[i] == leaves[index] && support::path(i, &leaves[..n]) == support::path(index, &leaves[..size])
        };
        for other in [index.wrapping_sub(1), index + 1] {
            if true_claim(other, size) {
                continue;
            }
            let p = InclusionProof { leaf_index: LeafIndex::new(other as u64), ..proof.clone() };
            prop_assert!(verify_inclusion(&leaf, &p, &good).is_err(), "index {} for {}", other, index);
        }
        for other in [size - 1, size + 1] {
            if true_claim(index, other) {
                continue;
            }
            let p = InclusionProof { tree_size: TreeSize::new(other as u64), ..proof.clone() };
            prop_assert!(verify_inclusion(&leaf, &p, &head(&leaves, other)).is_err(), "size {} for {}", other, size);
        }
    }

    #[test]
    fn consistency_proofs_verify_and_every_bit_matters((leaves, from, to) in tree_and_pair()) {
        let log = build(&leaves);
        let proof = log.consistency_proof(TreeSize::new(from as u64), TreeSize::new(to as u64)).unwrap();
        let naive: Vec<Hash> = if from == 0 {
            vec![]
        } else {
            support::proof(from, &leaves[..to]).into_iter().map(Hash::from_bytes).collect()
        };
        prop_assert_eq!(&proof.consistency_path, &naive);
        let (old, new) = (head(&leaves, from), head(&leaves, to));
        prop_assert!(verify_consistency(&proof, &old, &new).is_ok());

        for i in 0..proof.consistency_path.len() {
            for bit in 0..256 {
                let mut p = proof.clone();
                p.consistency_path[i] = flip(&p.consistency_path[i], bit);
                prop_assert!(verify_consistency(&p, &old, &new).is_err(), "path[{}] bit {}", i, bit);
            }
        }
        for bit in 0..256 {
            let bad_old = TreeHead { root_hash: flip(&old.root_hash, bit), ..old };
            prop_assert!(verify_consistency(&proof, &bad_old, &new).is_err(), "old root bit {}", bit);
            // From the empty tree there is nothing to prove about the new root: every tree extends
            // it (RFC 9162 needs 0 < first); the new root is checked whenever from > 0.
            if from > 0 {
                let bad_new = TreeHead { root_hash: flip(&new.root_hash, bit), ..new };
                prop_assert!(verify_consistency(&proof, &old, &bad_new).is_err(), "new root bit {}", bit);
            }
        }
        let sized = |f: usize, t: usize| ConsistencyProof {
            from_size: TreeSize::new(f as u64),
            to_size: TreeSize::new(t as u64),
            consistency_path: proof.consistency_path.clone(),
        };
        let mut neighbours = vec![(from + 1, to), (from, to + 1)];
        if from > 0 {
            neighbours.push((from - 1, to));
        }
        if to > from + 1 {
            neighbours.push((from, to - 1));
        }
        for (f, t) in neighbours {
            // Skipped only when this very proof is the true proof of the neighbouring claim (the
            // empty proof of 0 → 1 is also the proof of 1 → 1): no forgery.
            let true_proof = if f == 0 || f == t { vec![] } else { support::proof(f, &leaves[..t]) };
            if f <= t && true_proof == support::proof_or_empty(from, &leaves[..to]) {
                continue;
            }
            let r = verify_consistency(&sized(f, t), &head(&leaves, f), &head(&leaves, t));
            prop_assert!(r.is_err(), "{} → {} accepted for {} → {}", f, t, from, to);
        }
    }
}
