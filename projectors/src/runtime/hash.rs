//! One stable hash for the runtime: ids derived from names (parked entries) and the routing of
//! streams to partitioned workers must agree across builds and processes.

/// FNV-1a: stable across builds and processes (unlike `DefaultHasher`).
pub(crate) fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
