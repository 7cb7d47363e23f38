//! Settings of the embedded engine, with the limits the contract promises typed errors for.

use std::path::PathBuf;

/// How an [`EmbeddedStore`](super::EmbeddedStore) is opened.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The data directory; created if missing.
    pub data_dir: PathBuf,
    /// A segment rolls once the next group would take it past this many bytes (a single group
    /// larger than this still goes in one segment).
    pub segment_size: u64,
    /// Largest event (type + data + metadata), in bytes.
    pub max_event_size: usize,
    /// Most events in one append.
    pub max_batch_events: usize,
    /// Most bytes (sum of event sizes) in one append.
    pub max_batch_bytes: usize,
    /// The writer stops adding appends to a group past this many bytes; it bounds the memory a
    /// group takes and the latency one sync adds.
    pub max_group_bytes: usize,
    /// Zero-fill each next segment ahead of use (module doc, "Preallocation"). Worth it on
    /// filesystems that overwrite in place (ext4, xfs); pointless on copy-on-write ones.
    pub preallocate: bool,
    /// Segment files open at once, at most; others are opened when read and closed again (the
    /// log may have far more segments than the process may have file descriptors).
    pub max_open_segments: usize,
    /// Appends are refused (`StorageFull`) while the data directory's filesystem has less than
    /// this many bytes free, before anything is written: the reserve keeps the index (whose
    /// failed commits cannot be retried in place) and the next segment's creation writable.
    /// 0 turns the check off (for filesystems whose free space `statvfs` misreports): a write
    /// that meets ENOSPC is still `StorageFull` and undone, but the index has no reserve.
    pub min_free_bytes: u64,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            segment_size: 256 * 1024 * 1024,
            max_event_size: 1024 * 1024,
            max_batch_events: 10_000,
            max_batch_bytes: 32 * 1024 * 1024,
            max_group_bytes: 8 * 1024 * 1024,
            preallocate: true,
            max_open_segments: 128,
            min_free_bytes: 128 * 1024 * 1024,
        }
    }

    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    pub fn min_free_bytes(mut self, bytes: u64) -> Self {
        self.min_free_bytes = bytes;
        self
    }

    pub fn max_open_segments(mut self, n: usize) -> Self {
        self.max_open_segments = n;
        self
    }

    pub fn preallocate(mut self, on: bool) -> Self {
        self.preallocate = on;
        self
    }

    pub fn max_event_size(mut self, bytes: usize) -> Self {
        self.max_event_size = bytes;
        self
    }

    pub fn max_batch_events(mut self, count: usize) -> Self {
        self.max_batch_events = count;
        self
    }
}
