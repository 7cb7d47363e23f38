//! What the Merkle tree costs at scale (issue 17's targets): proof generation and verification at
//! 10 million leaves (< 1 ms), and the upkeep per appended leaf next to its physical floor — one
//! SHA-256 of a typical event's bytes — measured in the same run.
//!
//! `cargo bench -p annals-integrity --bench merkle` (release). `ANNALS_MERKLE_BENCH_LEAVES` sets
//! the tree size (default 10,000,000); the tree is built in a temporary directory (≈ 720 MB).

use std::hint::black_box;
use std::time::{Duration, Instant};

use annals_integrity::{verify_consistency, verify_inclusion, Hash, LeafIndex, MerkleLog, TreeHead, TreeSize};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

/// A typical audit event as the store frames it: ~450 bytes of JSON data and metadata.
fn events() -> Vec<Vec<u8>> {
    (0..1024u32)
        .map(|i| {
            format!(
                r#"{{"stream":"acme/audit-{i}","type":"audit.recorded","metadata":{{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","recorded_by":"key-{i}"}},"data":{{"actor":{{"id":"user-{i}","kind":"user"}},"action":"invoice.approved","target":{{"kind":"invoice","id":"inv-{i:08}"}},"outcome":"success","occurred_at":"2026-12-06T10:00:00.000Z","context":{{"ip":"10.0.0.{}","user_agent":"annals-bench/1.0"}}}}}}"#,
                i % 250
            )
            .into_bytes()
        })
        .collect()
}

fn per_item(total: Duration, n: u64) -> f64 {
    total.as_nanos() as f64 / n as f64
}

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    format!("p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs", at(0.5), at(0.99), at(1.0))
}

fn main() {
    let n: u64 = std::env::var("ANNALS_MERKLE_BENCH_LEAVES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let events = events();
    let mean_len = events.iter().map(Vec::len).sum::<usize>() / events.len();
    println!("merkle bench: {n} leaves, events of {mean_len} bytes on average");

    // Upkeep: append_leaf of each event to the file-backed tree (leaf hash, node hashes,
    // checksummed records, buffered writes), then one sync. The floor, SHA-256 of the same events
    // and nothing else, is timed in blocks interleaved with the appends, so both see the same
    // machine (2 shared cores): the ratio is the median of the blocks' ratios.
    const BLOCK: u64 = 100_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = MerkleLog::open(dir.path()).expect("open");
    let (mut floor_total, mut build) = (Duration::ZERO, Duration::ZERO);
    let mut ratios = Vec::new();
    let mut i = 0;
    while i < n {
        let end = (i + BLOCK).min(n);
        let start = Instant::now();
        for j in i..end {
            black_box(Sha256::digest(&events[(j % 1024) as usize]));
        }
        let f = start.elapsed();
        let start = Instant::now();
        for j in i..end {
            log.append_leaf(&events[(j % 1024) as usize]).expect("append");
        }
        let b = start.elapsed();
        floor_total += f;
        build += b;
        ratios.push(b.as_secs_f64() / f.as_secs_f64());
        i = end;
    }
    let start = Instant::now();
    log.sync().expect("sync");
    let sync = start.elapsed();
    let floor = per_item(floor_total, n);
    let upkeep = per_item(build, n);
    ratios.sort_by(f64::total_cmp);
    let median_ratio = ratios[ratios.len() / 2];

    // The same appends past the leaf hash: what the tree adds when the caller hashed the leaf.
    let extra_n = n.min(2_000_000);
    let leaf_hashes: Vec<Hash> = events.iter().map(|e| Hash::leaf(e)).collect();
    let mut mem = MerkleLog::in_memory();
    let start = Instant::now();
    for i in 0..extra_n {
        mem.append_leaf_hash(leaf_hashes[(i % 1024) as usize]).expect("append");
    }
    let tree_only = per_item(start.elapsed(), extra_n);
    drop(mem);
    // One interior node (SHA-256 of 65 bytes): the tree hashes one per leaf, amortised.
    let start = Instant::now();
    let mut acc = leaf_hashes[0];
    for i in 0..extra_n {
        acc = Hash::node(&acc, &leaf_hashes[(i % 1024) as usize]);
    }
    black_box(acc);
    let node = per_item(start.elapsed(), extra_n);

    println!("floor  SHA-256 of an event:            {floor:>8.1} ns/event");
    println!(
        "upkeep append_leaf (file tree):        {upkeep:>8.1} ns/leaf = {:.2} × floor (median of {} blocks: {median_ratio:.2})",
        upkeep / floor,
        ratios.len()
    );
    println!("       of which past the leaf hash:    {tree_only:>8.1} ns/leaf (in-memory store)");
    println!("       one interior node hash:         {node:>8.1} ns");
    println!("build  {n} leaves: {:.2} s; final sync {:.1} ms", build.as_secs_f64(), sync.as_secs_f64() * 1e3);

    drop(log);
    let start = Instant::now();
    let log = MerkleLog::open(dir.path()).expect("reopen");
    println!("reopen (checksum scan of every level): {:.2} s, size {}", start.elapsed().as_secs_f64(), log.size());
    assert_eq!(log.size(), TreeSize::new(n));

    let size = log.size();
    let mut rng = StdRng::seed_from_u64(17);
    let heads: Vec<TreeHead> = (0..64)
        .map(|_| {
            let s = TreeSize::new(rng.gen_range(n / 2..=n));
            TreeHead { tree_size: s, root_hash: log.root(s).expect("root") }
        })
        .chain(std::iter::once(log.head()))
        .collect();
    let rounds = 20_000;

    let (mut gen, mut ver) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for r in 0..rounds {
        let head = heads[r % heads.len()];
        let index = LeafIndex::new(rng.gen_range(0..head.tree_size.get()));
        let t = Instant::now();
        let proof = log.inclusion_proof(index, head.tree_size).expect("proof");
        gen.push(t.elapsed());
        let leaf = log.leaf_hash(index).expect("leaf");
        let t = Instant::now();
        verify_inclusion(&leaf, &proof, &head).expect("verifies");
        ver.push(t.elapsed());
    }
    println!("inclusion   proof generation at {size}: {}", percentiles(gen));
    println!("inclusion   verification:               {}", percentiles(ver));

    let (mut gen, mut ver) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for r in 0..rounds {
        let new = heads[r % heads.len()];
        let from = TreeSize::new(rng.gen_range(1..=new.tree_size.get()));
        let old = TreeHead { tree_size: from, root_hash: log.root(from).expect("root") };
        let t = Instant::now();
        let proof = log.consistency_proof(from, new.tree_size).expect("proof");
        gen.push(t.elapsed());
        let t = Instant::now();
        verify_consistency(&proof, &old, &new).expect("verifies");
        ver.push(t.elapsed());
    }
    println!("consistency proof generation at {size}: {}", percentiles(gen));
    println!("consistency verification:               {}", percentiles(ver));

    // Range proofs (export completeness): generation for random runs, and streaming verification
    // of one run of 1M leaves (leaf hashes given, as a verifier has them after hashing records).
    let mut gen = Vec::with_capacity(rounds);
    for r in 0..rounds {
        let head = heads[r % heads.len()];
        let first = rng.gen_range(0..head.tree_size.get());
        let last = rng.gen_range(first..head.tree_size.get());
        let t = Instant::now();
        black_box(log.range_proof(LeafIndex::new(first), LeafIndex::new(last), head.tree_size).expect("proof"));
        gen.push(t.elapsed());
    }
    println!("range       proof generation at {size}: {}", percentiles(gen));
    let run = n.min(1_000_000);
    let first = (n - run) / 3;
    let leaves: Vec<Hash> = (first..first + run).map(|i| log.leaf_hash(LeafIndex::new(i)).expect("leaf")).collect();
    let proof = log.range_proof(LeafIndex::new(first), LeafIndex::new(first + run - 1), size).expect("proof");
    let t = Instant::now();
    annals_integrity::verify_range(&leaves, &proof, &log.head()).expect("verifies");
    let took = t.elapsed();
    println!(
        "range       verification of {run} leaves: {:.1} ms = {:.0} leaves/s ({} proof hashes)",
        took.as_secs_f64() * 1e3,
        run as f64 / took.as_secs_f64(),
        proof.range_path.len()
    );

    let mut roots = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let s = TreeSize::new(rng.gen_range(1..=n));
        let t = Instant::now();
        black_box(log.root(s).expect("root"));
        roots.push(t.elapsed());
    }
    println!("root of an older size:                  {}", percentiles(roots));
}
