//! Recovery of the file-backed tree: whatever happens to its files between runs — a torn tail, a
//! level written ahead of the one below, garbage anywhere, a lost file — reopening gives a tree
//! of some size `s` whose every root and proof is the in-memory tree's, and re-feeding the leaves
//! from `s` on gives the full tree back. At worst a shorter tree, never a wrong hash.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use annals_integrity::{IntegrityError, LeafIndex, MemoryNodeStore, MerkleLog, TreeSize};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn leaf(i: u64) -> Vec<u8> {
    format!("{{\"event\":{i},\"pad\":\"{}\"}}", "x".repeat((i % 7) as usize)).into_bytes()
}

fn reference(n: u64) -> MerkleLog<MemoryNodeStore> {
    let mut log = MerkleLog::in_memory();
    for i in 0..n {
        log.append_leaf(&leaf(i)).unwrap();
    }
    log
}

fn level_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// One random injury to one random level file.
fn injure(dir: &Path, rng: &mut StdRng) -> String {
    let files = level_files(dir);
    let path = &files[rng.gen_range(0..files.len())];
    let len = std::fs::metadata(path).unwrap().len();
    let file = OpenOptions::new().write(true).open(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    match rng.gen_range(0..4) {
        0 => {
            let at = rng.gen_range(0..=len);
            file.set_len(at).unwrap();
            format!("truncate {name} at {at}")
        }
        1 if len > 0 => {
            let at = rng.gen_range(0..len);
            let byte: u8 = rng.gen_range(1..=255);
            let mut old = [0u8];
            std::fs::File::open(path).unwrap().read_exact_at(&mut old, at).unwrap();
            file.write_all_at(&[old[0] ^ byte], at).unwrap();
            format!("garble {name} at {at}")
        }
        2 => {
            let junk: Vec<u8> = (0..rng.gen_range(1..80)).map(|_| rng.gen()).collect();
            file.write_all_at(&junk, len).unwrap();
            format!("append {} bytes of junk to {name}", junk.len())
        }
        _ => {
            drop(file);
            std::fs::remove_file(path).unwrap();
            format!("remove {name}")
        }
    }
}

fn assert_agrees(log: &MerkleLog, reference: &MerkleLog<MemoryNodeStore>, rng: &mut StdRng, what: &str) {
    let size = log.size();
    assert_eq!(log.head().root_hash, reference.root(size).unwrap(), "{what}: root of {size}");
    for _ in 0..8 {
        if size.get() == 0 {
            break;
        }
        let n = TreeSize::new(rng.gen_range(1..=size.get()));
        let i = LeafIndex::new(rng.gen_range(0..n.get()));
        let m = TreeSize::new(rng.gen_range(0..=n.get()));
        assert_eq!(log.root(n).unwrap(), reference.root(n).unwrap(), "{what}: root of {n}");
        assert_eq!(log.inclusion_proof(i, n).unwrap(), reference.inclusion_proof(i, n).unwrap(), "{what}: {i} in {n}");
        assert_eq!(log.consistency_proof(m, n).unwrap(), reference.consistency_proof(m, n).unwrap(), "{what}: {m}→{n}");
    }
}

#[test]
fn any_damage_leaves_a_shorter_tree_never_a_wrong_hash() {
    const MAX: u64 = 1500;
    let reference = reference(MAX);
    let mut rng = StdRng::seed_from_u64(0x5eed_0017);
    for round in 0..120 {
        let dir = tempfile::tempdir().unwrap();
        let n = rng.gen_range(1..=MAX);
        {
            let mut log = MerkleLog::open(dir.path()).unwrap();
            for i in 0..n {
                log.append_leaf(&leaf(i)).unwrap();
                if rng.gen_ratio(1, 400) {
                    log.sync().unwrap();
                }
            }
            // Dropped without a final sync: what is buffered is written, not synced.
        }
        let injuries: Vec<String> = (0..rng.gen_range(1..=3)).map(|_| injure(dir.path(), &mut rng)).collect();
        let what = format!("round {round}, {n} leaves, {injuries:?}");

        let mut log = MerkleLog::open(dir.path()).unwrap();
        assert!(log.size().get() <= n, "{what}");
        assert_agrees(&log, &reference, &mut rng, &what);
        for i in log.size().get()..n {
            log.append_leaf(&leaf(i)).unwrap();
        }
        assert_eq!(
            log.head(),
            reference
                .root(TreeSize::new(n))
                .map(|r| annals_integrity::TreeHead { tree_size: TreeSize::new(n), root_hash: r })
                .unwrap(),
            "{what}"
        );
        assert_agrees(&log, &reference, &mut rng, &what);
        log.sync().unwrap();
        drop(log);
        // And the re-fed tree reopens whole.
        let log = MerkleLog::open(dir.path()).unwrap();
        assert_eq!(log.size(), TreeSize::new(n), "{what}: reopened after re-feed");
        assert_agrees(&log, &reference, &mut rng, &what);
    }
}

#[test]
fn an_undamaged_tree_reopens_whole_with_or_without_sync() {
    let reference = reference(1000);
    let mut rng = StdRng::seed_from_u64(17);
    for sync in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MerkleLog::open(dir.path()).unwrap();
        for i in 0..1000 {
            log.append_leaf(&leaf(i)).unwrap();
        }
        if sync {
            log.sync().unwrap();
        }
        drop(log);
        let log = MerkleLog::open(dir.path()).unwrap();
        assert_eq!(log.size(), TreeSize::new(1000));
        assert_agrees(&log, &reference, &mut rng, "reopen");
    }
}

#[test]
fn a_node_damaged_under_a_running_tree_is_reported_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = MerkleLog::open(dir.path()).unwrap();
    for i in 0..64 {
        log.append_leaf(&leaf(i)).unwrap();
    }
    log.sync().unwrap();
    // Garble leaf 5's record (header 32 bytes, records of 36).
    let file = OpenOptions::new().write(true).open(dir.path().join("level-00.nodes")).unwrap();
    file.write_all_at(&[0xff], 32 + 36 * 5 + 3).unwrap();
    let err = log.inclusion_proof(LeafIndex::new(4), TreeSize::new(6)).unwrap_err();
    assert!(matches!(err, IntegrityError::Corrupt { .. }), "{err}");
    assert!(!err.is_transient());
    // Reopening cuts the tree before the damage; re-feeding makes it whole.
    drop(log);
    let mut log = MerkleLog::open(dir.path()).unwrap();
    assert_eq!(log.size(), TreeSize::new(5));
    for i in 5..64 {
        log.append_leaf(&leaf(i)).unwrap();
    }
    assert_eq!(log.head(), reference(64).head());
}

#[test]
fn truncate_cuts_the_tree_back_to_a_shorter_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = MerkleLog::open(dir.path()).unwrap();
    for i in 0..100 {
        log.append_leaf(&leaf(i)).unwrap();
    }
    log.truncate(TreeSize::new(37)).unwrap();
    assert_eq!(log.head(), reference(37).head());
    for i in 37..50 {
        log.append_leaf(&format!("other {i}").into_bytes()).unwrap();
    }
    log.sync().unwrap();
    drop(log);
    let log = MerkleLog::open(dir.path()).unwrap();
    assert_eq!(log.size(), TreeSize::new(50));
    let mut expect = reference(37);
    for i in 37..50 {
        expect.append_leaf(&format!("other {i}").into_bytes()).unwrap();
    }
    assert_eq!(log.head(), expect.head());
    assert!(matches!(log.root(TreeSize::new(51)), Err(IntegrityError::SizeBeyondTree { .. })));
}

/// A store whose `fail_at`-th push fails, as a full disk would.
#[derive(Debug)]
struct FailingStore {
    inner: MemoryNodeStore,
    pushes: u64,
    fail_at: u64,
}

impl annals_integrity::NodeStore for FailingStore {
    fn node_count(&self, level: u32) -> u64 {
        self.inner.node_count(level)
    }
    fn get(&self, node: annals_integrity::NodeId) -> Result<annals_integrity::Hash, IntegrityError> {
        self.inner.get(node)
    }
    fn push(&mut self, node: annals_integrity::NodeId, hash: annals_integrity::Hash) -> Result<(), IntegrityError> {
        self.pushes += 1;
        if self.pushes == self.fail_at {
            return Err(IntegrityError::Io { path: "level".into(), source: std::io::ErrorKind::StorageFull.into() });
        }
        self.inner.push(node, hash)
    }
    fn truncate(&mut self, size: TreeSize) -> Result<(), IntegrityError> {
        self.inner.truncate(size)
    }
    fn sync(&mut self) -> Result<(), IntegrityError> {
        self.inner.sync()
    }
}

#[test]
fn a_failed_append_poisons_the_tree_until_it_is_reopened_and_recovered() {
    use annals_integrity::NodeStore;
    let reference = reference(40);
    // Leaves 0..=10 take 19 pushes (one per leaf, one per completed pair); leaf 11 then pushes
    // itself (20) and its level-1 parent (21): failing 21 leaves the leaf without its parents.
    let store = FailingStore { inner: MemoryNodeStore::new(), pushes: 0, fail_at: 21 };
    let mut log = MerkleLog::with_store(store).unwrap();
    let mut failed_at = None;
    for i in 0..40 {
        if let Err(e) = log.append_leaf(&leaf(i)) {
            failed_at = Some(i);
            assert!(e.is_transient(), "{e}");
            break;
        }
    }
    let failed_at = failed_at.expect("an append failed");
    assert_eq!(failed_at, 11);
    let err = log.append_leaf(&leaf(failed_at)).unwrap_err();
    assert!(matches!(err, IntegrityError::Poisoned { .. }), "{err}");

    let inner = log.into_store();
    assert!(inner.inner.node_count(0) > failed_at, "the failed append left a partial leaf behind");
    let mut log = MerkleLog::with_store(inner).unwrap();
    assert_eq!(log.size(), TreeSize::new(failed_at), "recovery cuts the partial append");
    for i in failed_at..40 {
        log.append_leaf(&leaf(i)).unwrap();
    }
    assert_eq!(log.head(), reference.head());
}

#[test]
fn a_level_file_of_an_unknown_format_version_is_refused_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = MerkleLog::open(dir.path()).unwrap();
    log.append_leaf(b"a").unwrap();
    log.sync().unwrap();
    drop(log);
    let path = dir.path().join("level-00.nodes");
    let mut header = [0u8; 32];
    std::fs::File::open(&path).unwrap().read_exact_at(&mut header, 0).unwrap();
    header[8] = 2; // format version 2
    let crc = crc32c::crc32c(&header[..28]);
    header[28..].copy_from_slice(&crc.to_le_bytes());
    OpenOptions::new().write(true).open(&path).unwrap().write_all_at(&header, 0).unwrap();
    let err = MerkleLog::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("format version 2"), "{err}");
    assert!(path.exists());
}

#[test]
fn runs_of_leaf_hashes_are_the_single_reads_on_disk_and_pending_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = MerkleLog::open(dir.path()).unwrap();
    for i in 0..700 {
        log.append_leaf(&leaf(i)).unwrap();
    }
    log.sync().unwrap();
    // Some leaves written to disk, the last ones still pending.
    for i in 700..760 {
        log.append_leaf(&leaf(i)).unwrap();
    }
    let reference = reference(760);
    for (first, count) in [(0, 760), (0, 0), (5, 1), (650, 100), (700, 60), (759, 1), (100, 512)] {
        let run = log.leaf_hashes(LeafIndex::new(first), count).unwrap();
        let single: Vec<_> = (first..first + count).map(|i| reference.leaf_hash(LeafIndex::new(i)).unwrap()).collect();
        assert_eq!(run, single, "{first}+{count}");
    }
    assert!(log.leaf_hashes(LeafIndex::new(700), 61).is_err(), "past the tree");
    // A damaged record in a run is reported, never returned.
    let file = OpenOptions::new().write(true).open(dir.path().join("level-00.nodes")).unwrap();
    file.write_all_at(&[0xff], 32 + 36 * 5 + 3).unwrap();
    let err = log.leaf_hashes(LeafIndex::new(0), 10).unwrap_err();
    assert!(matches!(err, IntegrityError::Corrupt { .. }), "{err}");
}
