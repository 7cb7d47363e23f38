//! The reference vectors of Certificate Transparency: the 8-leaf tree of RFC 6962's reference
//! implementation, as carried by transparency-dev/merkle `proof/verify_test.go` (Trillian's
//! successor; the same data is in certificate-transparency-go `merkle/log_verifier_test.go`): its
//! leaves, the roots of sizes 1–8, and its inclusion and consistency proofs. Both our generated
//! proofs and our verifier must agree with them, and the corruptions that file probes must fail.

use annals_integrity::{
    verify_consistency, verify_inclusion, ConsistencyProof, Hash, InclusionProof, IntegrityError, LeafIndex, MerkleLog,
    TreeHead, TreeSize,
};

const LEAVES: [&str; 8] =
    ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];

const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf index, tree size, path). verify_test.go numbers leaves from 1; these are 0-based.
const INCLUSION: [(u64, u64, &[&str]); 5] = [
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (from size, to size, path).
const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn h(s: &str) -> Hash {
    s.parse().unwrap()
}

fn path(hashes: &[&str]) -> Vec<Hash> {
    hashes.iter().map(|s| h(s)).collect()
}

fn tree() -> MerkleLog<annals_integrity::MemoryNodeStore> {
    let mut log = MerkleLog::in_memory();
    for leaf in LEAVES {
        log.append_leaf(&unhex(leaf)).unwrap();
    }
    log
}

fn head(size: u64) -> TreeHead {
    let root_hash = if size == 0 { Hash::empty() } else { h(ROOTS[size as usize - 1]) };
    TreeHead { tree_size: TreeSize::new(size), root_hash }
}

#[test]
fn the_empty_tree_and_the_empty_leaf_hash_as_published() {
    assert_eq!(Hash::empty().to_hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(Hash::leaf(b"").to_hex(), ROOTS[0]);
    assert_eq!(MerkleLog::in_memory().head().root_hash, Hash::empty());
}

#[test]
fn roots_of_every_size_match_the_reference_roots() {
    let log = tree();
    for size in 1..=8u64 {
        assert_eq!(log.root(TreeSize::new(size)).unwrap(), h(ROOTS[size as usize - 1]), "size {size}");
    }
    assert_eq!(log.head(), head(8));
}

#[test]
fn generated_inclusion_proofs_are_the_reference_proofs_and_verify() {
    let log = tree();
    for (index, size, expected) in INCLUSION {
        let proof = log.inclusion_proof(LeafIndex::new(index), TreeSize::new(size)).unwrap();
        assert_eq!(proof.inclusion_path, path(expected), "leaf {index} in {size}");
        let leaf = Hash::leaf(&unhex(LEAVES[index as usize]));
        verify_inclusion(&leaf, &proof, &head(size)).unwrap();
    }
}

#[test]
fn generated_consistency_proofs_are_the_reference_proofs_and_verify() {
    let log = tree();
    for (from, to, expected) in CONSISTENCY {
        let proof = log.consistency_proof(TreeSize::new(from), TreeSize::new(to)).unwrap();
        assert_eq!(proof.consistency_path, path(expected), "{from} → {to}");
        verify_consistency(&proof, &head(from), &head(to)).unwrap();
    }
}

/// The probes of verify_test.go's `corruptInclusionProof`: each must be refused.
#[test]
fn corrupted_reference_inclusion_proofs_fail() {
    for (index, size, hashes) in INCLUSION.into_iter().filter(|v| !v.2.is_empty()) {
        let leaf = Hash::leaf(&unhex(LEAVES[index as usize]));
        let good = InclusionProof {
            leaf_index: LeafIndex::new(index),
            tree_size: TreeSize::new(size),
            inclusion_path: path(hashes),
        };
        let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
        let mut probes: Vec<(InclusionProof, TreeHead, Hash, String)> = Vec::new();
        let mut with = |f: &dyn Fn(&mut InclusionProof, &mut TreeHead, &mut Hash), name: &str| {
            let (mut p, mut hd, mut l) = (good.clone(), head(size), leaf);
            f(&mut p, &mut hd, &mut l);
            probes.push((p, hd, l, name.to_string()));
        };
        with(&|p, _, _| p.leaf_index = LeafIndex::new(p.leaf_index.get().wrapping_sub(1)), "index - 1");
        with(&|p, _, _| p.leaf_index = LeafIndex::new(p.leaf_index.get() + 1), "index + 1");
        with(&|p, _, _| p.leaf_index = LeafIndex::new(p.leaf_index.get() ^ 2), "index ^ 2");
        with(
            &|p, hd, _| {
                p.tree_size = TreeSize::new(size * 2);
                hd.tree_size = p.tree_size
            },
            "size * 2",
        );
        with(
            &|p, hd, _| {
                p.tree_size = TreeSize::new(size / 2);
                hd.tree_size = p.tree_size
            },
            "size / 2",
        );
        with(&|_, _, l| *l = Hash::leaf(b"WrongLeaf"), "wrong leaf");
        with(&|_, hd, _| hd.root_hash = Hash::empty(), "empty root");
        with(&|_, hd, _| hd.root_hash = some, "random root");
        with(&|p, hd, _| p.inclusion_path.push(hd.root_hash), "trailing root");
        with(&|p, hd, _| p.inclusion_path.insert(0, hd.root_hash), "preceding root");
        with(
            &|p, _, _| {
                p.inclusion_path.pop();
            },
            "removed component",
        );
        with(&|p, _, _| p.inclusion_path.insert(1, some), "inserted component");
        for i in 0..hashes.len() {
            with(
                &|p, _, _| {
                    let mut b = *p.inclusion_path[i].as_bytes();
                    b[0] ^= 8;
                    p.inclusion_path[i] = Hash::from_bytes(b)
                },
                "bit flip",
            );
        }
        for (p, hd, l, name) in probes {
            assert!(verify_inclusion(&l, &p, &hd).is_err(), "leaf {index} in {size}: {name} verified");
        }
    }
}

/// The probes of verify_test.go's `corruptConsistencyProof`.
#[test]
fn corrupted_reference_consistency_proofs_fail() {
    for (from, to, hashes) in CONSISTENCY.into_iter().filter(|v| !v.2.is_empty()) {
        let good = ConsistencyProof {
            from_size: TreeSize::new(from),
            to_size: TreeSize::new(to),
            consistency_path: path(hashes),
        };
        let sized = |p: &ConsistencyProof, from: u64, to: u64| ConsistencyProof {
            from_size: TreeSize::new(from),
            to_size: TreeSize::new(to),
            consistency_path: p.consistency_path.clone(),
        };
        let with_root = |size: u64, root: Hash| TreeHead { tree_size: TreeSize::new(size), root_hash: root };
        let mut probes = vec![
            (sized(&good, from - 1, to), with_root(from - 1, head(from).root_hash), head(to), "from - 1"),
            (sized(&good, from + 1, to), with_root(from + 1, head(from).root_hash), head(to), "from + 1"),
            (sized(&good, from ^ 2, to), with_root(from ^ 2, head(from).root_hash), head(to), "from ^ 2"),
            (sized(&good, from, to * 2), head(from), with_root(to * 2, head(to).root_hash), "to * 2"),
            (sized(&good, from, to / 2), head(from), with_root(to / 2, head(to).root_hash), "to / 2"),
            (good.clone(), with_root(from, Hash::leaf(b"WrongRoot")), head(to), "wrong old root"),
            (good.clone(), head(from), with_root(to, Hash::leaf(b"WrongRoot")), "wrong new root"),
            (good.clone(), with_root(from, head(to).root_hash), with_root(to, head(from).root_hash), "swapped roots"),
            (
                sized(&ConsistencyProof { consistency_path: vec![], ..good.clone() }, from, to),
                head(from),
                head(to),
                "empty proof",
            ),
        ];
        let mut edit = |f: &dyn Fn(&mut Vec<Hash>), name: &'static str| {
            let mut p = good.clone();
            f(&mut p.consistency_path);
            probes.push((p, head(from), head(to), name));
        };
        edit(&|v| v.push(head(from).root_hash), "trailing old root");
        edit(&|v| v.push(head(to).root_hash), "trailing new root");
        edit(&|v| v.insert(0, head(from).root_hash), "preceding old root");
        edit(&|v| v.insert(0, head(to).root_hash), "preceding new root");
        edit(&|v| v.insert(0, v[0]), "preceding proof[0]");
        edit(
            &|v| {
                v.pop();
            },
            "truncated proof",
        );
        for i in 0..hashes.len() {
            let flip = move |v: &mut Vec<Hash>| {
                let mut b = *v[i].as_bytes();
                b[0] ^= 16;
                v[i] = Hash::from_bytes(b)
            };
            let mut p = good.clone();
            flip(&mut p.consistency_path);
            probes.push((p, head(from), head(to), "bit flip"));
        }
        for (p, old, new, name) in probes {
            assert!(verify_consistency(&p, &old, &new).is_err(), "{from} → {to}: {name} verified");
        }
    }
}

#[test]
fn errors_say_what_failed() {
    let log = tree();
    let proof = log.inclusion_proof(LeafIndex::new(5), TreeSize::new(8)).unwrap();
    let leaf = Hash::leaf(&unhex(LEAVES[5]));
    let mut short = proof.clone();
    short.inclusion_path.pop();
    assert!(matches!(
        verify_inclusion(&leaf, &short, &head(8)),
        Err(IntegrityError::ProofLength { expected: 3, actual: 2, .. })
    ));
    assert!(matches!(
        verify_inclusion(&Hash::leaf(b"x"), &proof, &head(8)),
        Err(IntegrityError::InclusionRootMismatch { .. })
    ));
    assert!(matches!(verify_inclusion(&leaf, &proof, &head(7)), Err(IntegrityError::ProofForOtherSize { .. })));
    let outside = InclusionProof { leaf_index: LeafIndex::new(8), ..proof };
    assert!(matches!(verify_inclusion(&leaf, &outside, &head(8)), Err(IntegrityError::LeafOutsideTree { .. })));

    let c = log.consistency_proof(TreeSize::new(6), TreeSize::new(8)).unwrap();
    let bad_old = TreeHead { root_hash: head(5).root_hash, ..head(6) };
    assert!(matches!(verify_consistency(&c, &bad_old, &head(8)), Err(IntegrityError::OldRootMismatch { .. })));
    let bad_new = TreeHead { root_hash: head(7).root_hash, ..head(8) };
    assert!(matches!(verify_consistency(&c, &head(6), &bad_new), Err(IntegrityError::NewRootMismatch { .. })));
    assert!(matches!(
        log.consistency_proof(TreeSize::new(8), TreeSize::new(6)),
        Err(IntegrityError::SizesOutOfOrder { .. })
    ));
    assert!(matches!(log.root(TreeSize::new(9)), Err(IntegrityError::SizeBeyondTree { .. })));
}

#[test]
fn the_empty_tree_is_a_prefix_of_every_tree_and_only_with_its_own_root() {
    let log = tree();
    let proof = log.consistency_proof(TreeSize::ZERO, TreeSize::new(8)).unwrap();
    assert!(proof.consistency_path.is_empty());
    verify_consistency(&proof, &head(0), &head(8)).unwrap();
    let wrong = TreeHead { tree_size: TreeSize::ZERO, root_hash: head(1).root_hash };
    assert!(verify_consistency(&proof, &wrong, &head(8)).is_err());
    let same = log.consistency_proof(TreeSize::new(8), TreeSize::new(8)).unwrap();
    verify_consistency(&same, &head(8), &head(8)).unwrap();
    let other = TreeHead { root_hash: head(7).root_hash, ..head(8) };
    assert!(verify_consistency(&same, &head(8), &other).is_err());
}

#[test]
fn hashes_are_hex_in_json() {
    let json = serde_json::to_string(&head(8)).unwrap();
    assert_eq!(json, format!(r#"{{"tree_size":8,"root_hash":"{}"}}"#, ROOTS[7]));
    assert_eq!(serde_json::from_str::<TreeHead>(&json).unwrap(), head(8));
    assert!(serde_json::from_str::<Hash>(r#""abc""#).is_err());
}
