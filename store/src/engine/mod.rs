//! The embedded event-store engine: `annals serve` runs on it with nothing else installed.
//!
//! # Design
//!
//! The **log is the source of truth**; everything else in the data directory is derived from it
//! and can be rebuilt by deleting it.
//!
//! ```text
//! DATA_DIR/
//!   LOCK                        held (flock) by the one process that has the store open
//!   log/00000000000000000000.seg   segment files, numbered from 0, never rewritten once rolled
//!   log/next.seg.prep           the next segment being zero-filled (never holds data)
//!   index/                      fjall database: derived indexes and the position they reflect
//! ```
//!
//! ## On-disk format (all integers little-endian)
//!
//! A **segment** starts with a 32-byte header, then holds commit groups back to back:
//!
//! ```text
//! segment header: magic "ANNALSEG" (8) | format version u16 | reserved u16 | segment number u64
//!                 | first position u64 | crc32c of the preceding 28 bytes u32
//! ```
//!
//! A **commit group** is what one `write` + one `fdatasync` puts on disk: every append the writer
//! took from its queue in one turn. Appends never span groups, so a group being whole or not is
//! what makes appends atomic.
//!
//! ```text
//! group header (32): magic "ANLG" u32 | version u8 | flags u8 | reserved u16 | payload length u32
//!                    | event count u32 | first position u64 | reserved u32 | crc32c of the first 28 bytes u32
//! payload:           event count event records, back to back
//! event record:      length u32 (of what follows the checksum) | crc32c of what follows u32
//!                    | position u64 | revision u64 | recorded_at µs since epoch i64 | id [16]
//!                    | stream len u16 | type len u16 | metadata len u32 | data len u32
//!                    | stream | type | metadata | data
//! ```
//!
//! The last segment may be longer than its data: past the last group it holds zeros
//! (preallocated space, see below). A group never starts with a zero byte (its magic), so 32 zero
//! bytes where a group header would be mark the end of the data when only zeros follow them.
//! Every segment but the last ends exactly with its last group.
//!
//! Each record carries its own checksum so a single event can be read and verified without reading
//! its whole group. Version fields let later formats add fields; this build refuses versions it
//! does not know rather than misreading them.
//!
//! ## Invariants
//!
//! 1. An append is acknowledged only after the `fdatasync` of the group that holds it returned, and
//!    after a new segment file was created its directory was `fsync`ed.
//! 2. Positions are contiguous from 0 along the log; a group's first position is the previous
//!    group's first position plus its event count; revisions of a stream are contiguous from 0.
//! 3. At most one group, the last one written, can be incomplete on disk after a crash: the writer
//!    does not start writing a group before the previous one is synced.
//! 4. Readers never look past the **published head** (position, segment, end offset), which moves
//!    only after a group is durable and indexed; bytes past it may be a group being written.
//! 5. The index reflects a prefix of the log: it stores, in the same atomic batch as its entries,
//!    the position and file offset up to which it has applied the log. It is written without
//!    fsync: after a crash it may be behind the log, never ahead of what the log had durably.
//!
//! ## Write path (`writer.rs`, then `indexer.rs`)
//!
//! A two-stage pipeline. Callers send `(stream, expected revision, events)` through a channel to
//! the **writer thread**, which takes every request waiting (up to `max_group_bytes`), checks each
//! against the stream's current revision and the stored event ids (idempotent retries answer
//! from the index without writing), encodes the accepted ones into one group, writes it and
//! `fdatasync`s. It hands the durable group to the **indexer thread**, which commits the group's
//! index entries, publishes the new head, and only then answers the callers — while the writer is
//! already syncing the next group. With many concurrent writers one sync serves them all (group
//! commit); with two stages, the index work no longer adds to the time between syncs.
//!
//! Checks of the next group need the effects of groups that are durable but not yet indexed, so
//! the writer keeps an overlay of their streams and ids, pruned as the published head passes them.
//! The writer still never starts writing a group before the previous one is synced (invariant 3).
//! A failed sync or index commit, or a failed write other than for lack of space, poisons the
//! store: later appends fail until a reopen lets recovery decide what is on disk ("Full disk"). A segment rolls when the next group would take it past
//! `segment_size`.
//!
//! ## Full disk (`space.rs`)
//!
//! Running out of space must cost availability only, never data, and must heal by itself:
//!
//! - Before writing a group the writer asks the filesystem (`statvfs`) how much is free; below
//!   `min_free_bytes` (default 128 MiB) plus the group's size it refuses the group's appends
//!   with `StorageFull` (transient) and writes nothing. The reserve is for the writes that
//!   cannot be retried in place: the index commit (fjall's journal; a failed commit poisons,
//!   below) and a new segment's header. `/readyz` answers 503 while appends are refused, and
//!   checks afresh on each call; the first group after space is freed goes through.
//! - A `write` of a group that still meets ENOSPC or EDQUOT (another process took the space
//!   meanwhile, or `statvfs` cannot tell) is `StorageFull` too, and safe to retry: nothing of
//!   the group was answered, the segment is cut back to where the group began (so nothing torn
//!   stays in the middle of the log), the group is taken back out of the writer's overlay, and
//!   the next group is written at the same offset. A roll whose new segment cannot be created
//!   is handled the same way (the empty file is removed). The zero-filling of the next segment
//!   is skipped when the disk lacks room for it besides the reserve, and its file removed if it
//!   fails, so preallocation never holds the space appends need.
//! - A failed `fdatasync` (EIO, or ENOSPC reported by a delayed allocation) still poisons the
//!   store, as does a failed index commit. After a failed `fsync` Linux may have marked the
//!   unwritten pages clean and dropped the error: a second `fdatasync` can return success for
//!   data that never reached the disk (the "fsyncgate" of PostgreSQL, 2018), so retrying would
//!   risk acknowledging a lost group. Only a reopen, whose recovery reads back what is on disk,
//!   can decide; `/readyz` answers 503 meanwhile.
//!
//! ## Preallocation (`segment.rs`)
//!
//! On ext4 (and xfs), an `fdatasync` after writing past the end of a file must also commit the
//! block allocation and the new size to the filesystem journal; after overwriting blocks that
//! were written before, it is a plain data flush. Measured here, that is about twice the syncs
//! per second at every write size from 4 KiB to 4 MiB (BENCHMARKS.md). So once the current
//! segment is half full, a helper thread writes the next segment's `segment_size` bytes of zeros
//! to `log/next.seg.prep`, syncing every 16 MiB. At the roll the writer seals the full segment
//! (cuts its unused zeros off and syncs it), waits for the helper if it is still running, writes
//! and syncs the new segment's header, links the file to its segment name (a link, unlike a
//! rename, never replaces a file), removes the temporary name and syncs the directory — all
//! before the first group in it is acknowledged. The first segment of a new store, and a roll
//! whose preparation failed, use a file that grows as written instead: slower, equally correct.
//! `preallocate: false` in the config turns this off (for copy-on-write filesystems).
//!
//! ## Indexes (`index.rs`, fjall; chosen over redb by measurement, see BENCHMARKS.md)
//!
//! - `streams`: stream name → stream number, last revision
//! - `stream_chunks`: stream number, first revision → position, segment, offset, count, bytes of a
//!   run of the stream's consecutive revisions that is contiguous in the log (up to 64 KiB)
//! - `event_ids`: namespace, 0, event id → stream number, revision, position (idempotency;
//!   ids are unique per namespace, the stream name up to its first `/`)
//! - `namespace_chunks`: namespace, 0, first position → segment, offset, count, bytes of a run of
//!   one namespace's consecutive events in one group (up to 64 KiB): `$all` reads filtered to one
//!   namespace (a tenant) read these runs instead of the whole log
//!   (a namespace never holds a zero byte: names refuse control characters)
//! - `groups`: first position of each group → segment, offset, event count (seeks into `$all`)
//! - `meta`: the applied watermark (next position, segment, offset), the next stream number and
//!   the index's layout (`index::LAYOUT`): an index of another layout, or without the marker
//!   (written before it existed), is deleted and rebuilt from the log on open
//!
//! ## Read path (`reader.rs`)
//!
//! Stream reads find the chunks holding the revisions in `stream_chunks` and read each chunk with
//! one positioned read (`pread`); `$all` reads (`all.rs`) seek with `groups` and then read segments
//! sequentially, or, when the filter pins one namespace (`EventFilter::namespace`, the API's
//! tenant), read that namespace's `namespace_chunks` one `pread` each, so a tenant's read costs
//! its own events, not the log's. Pages stop at a bound of events, bytes or events examined
//! (`PageLimits`) and say where to read on. Readers
//! share open segment files and never take the writer's lock: they run on the blocking pool while
//! the writer syncs. At most `max_open_segments` segment files are open at once (`FileBudget` in
//! `segment.rs`): a handle is opened on use and the oldest is closed past the limit, so a log of
//! any number of segments fits the process's file-descriptor limit; a write and its `fdatasync`
//! always go through one handle, so a write-back error is reported to the sync that covers it. Every record read is checksum-verified; a mismatch is `StoreError::Corrupt`
//! naming the file and offset. Subscriptions (`subscribe.rs`) are reads in a loop that wait on the
//! published head, so a slow subscriber is just a reader that is further behind.
//!
//! ## Recovery (`recovery.rs`), on every open
//!
//! 1. Take the `LOCK`; list segments; check every segment header (magic, version, checksum,
//!    numbering, first positions agreeing with the groups).
//! 2. Scan from the earlier of the index's applied watermark and the start of the last segment to
//!    the end of the log, verifying every group and record, and index what the index lacks.
//! 3. The log ends where the last segment's file ends, or where only zeros remain in it. A group
//!    that fails its checks *at the tail* of the last segment — nothing valid follows it; zeros in
//!    place of its header with non-zero bytes after them count as such a group — is a torn write
//!    of an unacknowledged group (invariant 3): the file is truncated at the group's start (its
//!    preallocated space goes with it), synced, and the open reports `TruncatedTail` with the
//!    segment, offset, position and bytes dropped. If a valid group header follows the bad bytes, or the bad group is in an
//!    earlier segment, the damage is not a torn write: open refuses with `StoreError::Corrupt`
//!    naming the file and offset, and changes nothing.
//! 4. If the index is ahead of the log (its watermark lies past the truncated or shortened tail),
//!    it is rebuilt from position 0.
//! 5. Remove `next.seg.prep` if a crash left it (only after the checks above passed: an open
//!    that refuses changes nothing).
//!
//! Earlier segments are verified by reads as they happen and in full by `verify` (CLI:
//! `annals store verify`), so an open costs time proportional to the last segment (its groups and
//! its preallocated zeros, both read in full) plus the unindexed tail, not to the size of the log — plus fjall's replay of its own journal, which the index caps
//! at 64 MiB (a 10 M-event store opens in about 3.6 s; BENCHMARKS.md).

mod all;
mod config;
mod format;
mod index;
mod indexer;
mod keys;
mod reader;
mod recovery;
mod retry;
mod segment;
mod shared;
mod space;
mod store;
mod subscribe;
mod writer;

pub use config::EngineConfig;
pub use recovery::{RecoveryReport, TruncatedTail};
pub use segment::VerifyReport;
pub use store::{EmbeddedStore, StoreInfo};

/// The embedded engine's positions are dense (0 for the first event, then contiguous): the proof
/// and the conversion between positions and indexes, for code that knows it reads an embedded
/// log (its own tests, tools that read a data directory) without a store at hand. Everything
/// else asks [`EventStore::capabilities`](crate::EventStore::capabilities).
pub const DENSE: crate::DensePositions = crate::capabilities::DENSE;
