//! `annals-tests`: black-box tests of whole programs (in `tests/`) and the child processes they
//! drive (in `src/bin/`). The library holds what a child and its parent test must agree on.

/// The FNV-1a 64 offset basis: the hash of nothing.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a 64 of `bytes`, continuing from `hash`: tiny and dependency-free, so the crash writer
/// and the crash test checksum payloads identically.
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}
