//! Range proofs on random trees: the proof is the one the recursion over the naive tree gives, it
//! verifies with exactly the range's leaves, and fails when any leaf is changed, missing, added or
//! out of place, when the range is shifted by one, or when any bit of the proof or root changes.

use crate::support;

use annals_integrity::{
    verify_range, Hash, IntegrityError, LeafIndex, MemoryNodeStore, MerkleLog, RangeProof, TreeHead, TreeSize,
};
use proptest::prelude::*;

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut b = *h.as_bytes();
    b[bit / 8] ^= 1 << (bit % 8);
    Hash::from_bytes(b)
}

/// Distinct leaves (an index in each), so that a moved leaf is a changed leaf.
fn leaves(n: usize, salt: u8) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("leaf {i} {salt}").into_bytes()).collect()
}

fn tree(leaves: &[Vec<u8>]) -> MerkleLog<MemoryNodeStore> {
    let mut log = MerkleLog::in_memory();
    for l in leaves {
        log.append_leaf(l).unwrap();
    }
    log
}

fn case() -> impl Strategy<Value = (usize, usize, usize, u8)> {
    (1usize..150)
        .prop_flat_map(|n| (Just(n), 0..n, any::<u8>()))
        .prop_flat_map(|(n, a, salt)| (Just(n), Just(a), a..n, Just(salt)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn range_proofs_verify_and_catch_every_change((n, a, b, salt) in case()) {
        let d = leaves(n + 1, salt);
        let log = tree(&d[..n]);
        let size = TreeSize::new(n as u64);
        let head = TreeHead { tree_size: size, root_hash: Hash::from_bytes(support::mth(&d[..n])) };
        let proof = log.range_proof(LeafIndex::new(a as u64), LeafIndex::new(b as u64), size).unwrap();
        let naive: Vec<Hash> = support::range_path(a, b + 1, &d[..n]).into_iter().map(Hash::from_bytes).collect();
        prop_assert_eq!(&proof.range_path, &naive);
        let hashes: Vec<Hash> = d[a..=b].iter().map(|l| Hash::leaf(l)).collect();
        prop_assert!(verify_range(&hashes, &proof, &head).is_ok());

        // Every bit of every proof hash and of the root.
        for i in 0..proof.range_path.len() {
            for bit in 0..256 {
                let mut p = proof.clone();
                p.range_path[i] = flip(&p.range_path[i], bit);
                prop_assert!(verify_range(&hashes, &p, &head).is_err(), "path[{}] bit {}", i, bit);
            }
        }
        for bit in (0..256).step_by(7) {
            let bad = TreeHead { root_hash: flip(&head.root_hash, bit), ..head };
            prop_assert!(verify_range(&hashes, &proof, &bad).is_err(), "root bit {}", bit);
        }
        // Each leaf changed (one bit), missing, or duplicated.
        for i in 0..hashes.len() {
            let mut h = hashes.clone();
            h[i] = flip(&h[i], i % 256);
            prop_assert!(verify_range(&h, &proof, &head).is_err(), "leaf {} changed", a + i);
            let mut h = hashes.clone();
            h.remove(i);
            prop_assert!(verify_range(&h, &proof, &head).is_err(), "leaf {} missing", a + i);
            let mut h = hashes.clone();
            h.insert(i, hashes[i]);
            prop_assert!(verify_range(&h, &proof, &head).is_err(), "leaf {} twice", a + i);
        }
        if hashes.len() > 1 {
            let mut h = hashes.clone();
            h.swap(0, hashes.len() - 1);
            prop_assert!(verify_range(&h, &proof, &head).is_err(), "first and last swapped");
        }
        // An extra leaf after the range, with the proof claiming one more.
        let mut longer = hashes.clone();
        longer.push(Hash::leaf(&d[n]));
        let p = RangeProof { last: LeafIndex::new(b as u64 + 1), ..proof.clone() };
        prop_assert!(verify_range(&longer, &p, &head).is_err(), "extra leaf");
        // The same leaves claimed one position off.
        for first in [a.wrapping_sub(1), a + 1] {
            let last = first.wrapping_add(b - a);
            let p = RangeProof { first: LeafIndex::new(first as u64), last: LeafIndex::new(last as u64), ..proof.clone() };
            prop_assert!(verify_range(&hashes, &p, &head).is_err(), "shifted to {}", first);
        }
    }
}

#[test]
fn the_verifier_streams_and_names_what_is_wrong() {
    let d = leaves(1000, 0);
    let log = tree(&d);
    let head = log.head();
    let proof = log.range_proof(LeafIndex::new(100), LeafIndex::new(899), head.tree_size).unwrap();
    assert!(proof.range_path.len() <= 2 * 10, "O(log n) hashes: {}", proof.range_path.len());
    let mut v = annals_integrity::RangeVerifier::new(LeafIndex::new(100));
    for l in &d[100..900] {
        v.push(Hash::leaf(l));
    }
    v.finish(&proof, &head).unwrap();

    let short: Vec<Hash> = d[100..899].iter().map(|l| Hash::leaf(l)).collect();
    let err = verify_range(&short, &proof, &head).unwrap_err();
    assert!(matches!(err, IntegrityError::RangeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("799 leaves"), "{err}");
    assert!(matches!(
        log.range_proof(LeafIndex::new(5), LeafIndex::new(4), head.tree_size),
        Err(IntegrityError::Format { .. })
    ));
    assert!(matches!(
        log.range_proof(LeafIndex::new(5), LeafIndex::new(1000), head.tree_size),
        Err(IntegrityError::LeafOutsideTree { .. })
    ));
    // The whole tree needs no proof hash at all.
    let all = log.range_proof(LeafIndex::new(0), LeafIndex::new(999), head.tree_size).unwrap();
    assert!(all.range_path.is_empty());
    let every: Vec<Hash> = d.iter().map(|l| Hash::leaf(l)).collect();
    verify_range(&every, &all, &head).unwrap();
}
