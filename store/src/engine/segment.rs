//! Segment files: creating them durably (file and directory synced before first use), listing
//! and opening them, and positioned reads that never move a shared file cursor, so any number of
//! readers can use one open file while the writer appends to it.
//!
//! Also the preallocation of segments: a file zero-filled and synced ahead of use makes each
//! `fdatasync` of the writer a pure data flush, with no block allocation or file-size change to
//! journal — about twice the syncs per second of appending to a growing file on ext4 (see
//! "Preallocation" in the module doc of `engine`).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use bytes::{Bytes, BytesMut};

use super::format::{GroupHeader, HeaderError, SegmentHeader, GROUP_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::error::StoreError;
use crate::model::Position;

/// What a full `verify` found: every group and record checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub segments: usize,
    pub groups: u64,
    pub events: u64,
    pub bytes: u64,
}

/// One segment file. Its file handle is opened on first use and closed again when more than
/// the store's `max_open_segments` are open (see [`FileBudget`]): a log of many segments must not
/// run the process out of file descriptors.
#[derive(Debug)]
pub struct Segment {
    pub number: u64,
    pub first_position: Position,
    pub path: PathBuf,
    file: Slot,
    budget: Arc<FileBudget>,
}

/// A segment's open file, if any. Users clone the `Arc<File>` for the length of one operation,
/// so closing the slot never closes a file under a read, a write or its sync.
type Slot = Arc<SlotInner>;
type SlotInner = Mutex<Option<Arc<File>>>;

/// How many segment files may be open at once, and which were opened first. When one more is
/// opened past the limit, the handle opened longest ago is dropped (its file closes once the
/// operations using it finish; the segment reopens it when next used).
#[derive(Debug)]
pub struct FileBudget {
    capacity: usize,
    open: Mutex<VecDeque<Weak<SlotInner>>>,
}

impl FileBudget {
    pub fn new(capacity: usize) -> Arc<FileBudget> {
        Arc::new(FileBudget { capacity: capacity.max(1), open: Mutex::default() })
    }

    /// Counts a handle just opened; closes the oldest ones past the limit. Never called with a
    /// slot locked, and locks slots only after its own lock: no lock-order cycle.
    fn opened(&self, slot: &Slot) {
        let mut open = self.open.lock().expect("file budget lock");
        open.push_back(Arc::downgrade(slot));
        while open.len() > self.capacity {
            if let Some(slot) = open.pop_front().and_then(|oldest| oldest.upgrade()) {
                slot.lock().expect("segment file lock").take();
            }
        }
    }

    /// Handles open now (for tests and `info`).
    pub fn open_now(&self) -> usize {
        self.open
            .lock()
            .expect("file budget lock")
            .iter()
            .filter(|w| w.upgrade().is_some_and(|s| s.lock().expect("segment file lock").is_some()))
            .count()
    }
}

impl Segment {
    /// Creates segment `number` starting at `first_position`: writes and syncs its header, then
    /// syncs the directory so the new name survives a crash.
    pub fn create(
        log_dir: &Path,
        number: u64,
        first_position: Position,
        budget: &Arc<FileBudget>,
    ) -> Result<Segment, StoreError> {
        let path = segment_path(log_dir, number);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(StoreError::io("create segment", &path))?;
        let header = SegmentHeader { number, first_position };
        if let Err(e) = file.write_all_at(&header.encode(), 0) {
            // Nothing is in it: without its name, the next roll can create it again.
            drop(file);
            std::fs::remove_file(&path).map_err(StoreError::io("remove a segment that found no space", &path))?;
            return Err(match super::space::is_out_of_space(&e) {
                true => StoreError::StorageFull { path: path.clone(), detail: format!("creating a segment: {e}") },
                false => StoreError::Io { op: "write segment header", path, source: e },
            });
        }
        file.sync_all().map_err(StoreError::io("sync segment", &path))?;
        sync_dir(log_dir)?;
        Ok(Segment::with_file(number, first_position, path, file, budget))
    }

    /// Turns a [`Prepared`] file into segment `number`: writes and syncs its header, then gives it
    /// its name with a hard link (which, unlike `rename`, never replaces an existing file), drops
    /// the temporary name and syncs the directory. A crash leaves either no segment `number` or
    /// one with a durable header; a leftover temporary name is removed on the next open.
    pub fn create_prepared(
        log_dir: &Path,
        number: u64,
        first_position: Position,
        prepared: Prepared,
        budget: &Arc<FileBudget>,
    ) -> Result<Segment, StoreError> {
        let path = segment_path(log_dir, number);
        let Prepared { file, path: temp } = prepared;
        let header = SegmentHeader { number, first_position };
        file.write_all_at(&header.encode(), 0).map_err(StoreError::io("write segment header", &temp))?;
        file.sync_data().map_err(StoreError::io("sync segment", &temp))?;
        std::fs::hard_link(&temp, &path).map_err(StoreError::io("name segment", &path))?;
        std::fs::remove_file(&temp).map_err(StoreError::io("remove", &temp))?;
        sync_dir(log_dir)?;
        Ok(Segment::with_file(number, first_position, path, file, budget))
    }

    /// Opens an existing segment and checks its header.
    pub fn open(path: PathBuf, budget: &Arc<FileBudget>) -> Result<Segment, StoreError> {
        let file =
            OpenOptions::new().read(true).write(true).open(&path).map_err(StoreError::io("open segment", &path))?;
        let mut buf = [0u8; SEGMENT_HEADER_LEN];
        let n = read_up_to(&file, &mut buf, 0).map_err(StoreError::io("read segment header", &path))?;
        let header = SegmentHeader::decode(&buf[..n]).map_err(|e| match e {
            HeaderError::Damaged(reason) => StoreError::Corrupt { file: path.clone(), offset: 0, reason },
            HeaderError::Unknown(reason) => StoreError::UnsupportedFormat { file: path.clone(), reason },
        })?;
        Ok(Segment::with_file(header.number, header.first_position, path, file, budget))
    }

    fn with_file(number: u64, first_position: Position, path: PathBuf, file: File, budget: &Arc<FileBudget>) -> Self {
        let slot: Slot = Arc::new(Mutex::new(Some(Arc::new(file))));
        budget.opened(&slot);
        Segment { number, first_position, path, file: slot, budget: Arc::clone(budget) }
    }

    /// The open file, opening it again if the budget closed it.
    fn file(&self) -> Result<Arc<File>, StoreError> {
        let mut slot = self.file.lock().expect("segment file lock");
        if let Some(file) = slot.as_ref() {
            return Ok(Arc::clone(file));
        }
        let file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.path)
                .map_err(StoreError::io("open segment", &self.path))?,
        );
        *slot = Some(Arc::clone(&file));
        drop(slot);
        self.budget.opened(&self.file);
        Ok(file)
    }

    /// The first position of the segment's first group, if it has one whose header is intact:
    /// a cheap consistency check of the segment header against its content.
    pub fn first_group_position(&self) -> Result<Option<Position>, StoreError> {
        let bytes = self.read_up_to(SEGMENT_HEADER_LEN as u64, GROUP_HEADER_LEN)?;
        Ok(GroupHeader::decode(&bytes).ok().map(|h| h.first_position))
    }

    pub fn len(&self) -> Result<u64, StoreError> {
        Ok(self.file()?.metadata().map_err(StoreError::io("stat segment", &self.path))?.len())
    }

    /// Reads exactly `len` bytes at `offset`.
    pub fn read_exact(&self, offset: u64, len: usize) -> Result<Bytes, StoreError> {
        let mut buf = BytesMut::zeroed(len);
        self.file()?.read_exact_at(&mut buf, offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                StoreError::Corrupt {
                    file: self.path.clone(),
                    offset,
                    reason: format!("{len} bytes expected, file ends"),
                }
            } else {
                StoreError::Io { op: "read segment", path: self.path.clone(), source: e }
            }
        })?;
        Ok(buf.freeze())
    }

    /// Reads up to `len` bytes at `offset` (fewer at the end of the file).
    pub fn read_up_to(&self, offset: u64, len: usize) -> Result<Bytes, StoreError> {
        let mut buf = BytesMut::zeroed(len);
        let file = self.file()?;
        let n = read_up_to(&file, &mut buf, offset).map_err(StoreError::io("read segment", &self.path))?;
        buf.truncate(n);
        Ok(buf.freeze())
    }

    /// Writes `bytes` at `offset` and `fdatasync`s, through one handle: the sync must be on the
    /// file description that wrote, or a write-back error could go unreported.
    ///
    /// A `write` refused for lack of space (ENOSPC, EDQUOT) is `StorageFull` and leaves the file as
    /// it was before, as far as data goes: it is cut back to `offset`, so nothing of the group
    /// (possibly half written) stays past the data, and a later group can be written at `offset`
    /// again. Preallocated zeros past `offset` go with it. A failed `fdatasync` is an `Io` error:
    /// see "Full disk" in the module doc for why that one is not retried.
    pub fn write_and_sync(&self, bytes: &[u8], offset: u64) -> Result<(), StoreError> {
        let file = self.file()?;
        if let Err(e) = file.write_all_at(bytes, offset) {
            if !super::space::is_out_of_space(&e) {
                return Err(StoreError::Io { op: "write segment", path: self.path.clone(), source: e });
            }
            file.set_len(offset).map_err(StoreError::io("cut a write that found no space", &self.path))?;
            let detail = format!("writing {} bytes at offset {offset} of {}: {e}", bytes.len(), self.path.display());
            return Err(StoreError::StorageFull { path: self.path.clone(), detail });
        }
        file.sync_data().map_err(StoreError::io("fdatasync segment", &self.path))
    }

    /// Where the non-zero bytes of the file end, looking from `from` on: `None` if every byte from
    /// `from` to the end of the file is zero (preallocated space), else the offset just past the
    /// last non-zero byte.
    pub fn nonzero_end(&self, from: u64) -> Result<Option<u64>, StoreError> {
        const STEP: usize = 4 << 20;
        let mut found = None;
        let mut at = from;
        loop {
            let chunk = self.read_up_to(at, STEP)?;
            if chunk.is_empty() {
                return Ok(found);
            }
            if !all_zero(&chunk) {
                let last = chunk.iter().rposition(|b| *b != 0).expect("a non-zero byte");
                found = Some(at + last as u64 + 1);
            }
            at += chunk.len() as u64;
        }
    }

    /// Cuts a rolled segment's preallocated space off at `end`, where its data ends, so that a
    /// segment other than the last ends exactly with its last group (no-op if it already does).
    pub fn seal(&self, end: u64) -> Result<(), StoreError> {
        if self.len()? > end {
            self.truncate(end)?;
        }
        Ok(())
    }

    /// Cuts the file at `len` and syncs it (recovery of a torn tail, sealing a rolled segment).
    pub fn truncate(&self, len: u64) -> Result<(), StoreError> {
        let file = self.file()?;
        file.set_len(len).map_err(StoreError::io("truncate segment", &self.path))?;
        file.sync_all().map_err(StoreError::io("sync segment", &self.path))
    }
}

/// The segments, oldest first, and the budget of their open files. Readers clone the `Arc`s
/// they need and let go of the lock.
#[derive(Debug)]
pub struct Segments(RwLock<Vec<Arc<Segment>>>, Arc<FileBudget>);

impl Segments {
    pub fn new(list: Vec<Arc<Segment>>, budget: Arc<FileBudget>) -> Self {
        Segments(RwLock::new(list), budget)
    }

    pub fn budget(&self) -> &Arc<FileBudget> {
        &self.1
    }

    pub fn get(&self, number: u64) -> Option<Arc<Segment>> {
        let list = self.0.read().expect("segment list lock");
        let first = list.first()?.number;
        list.get(number.checked_sub(first)? as usize).cloned()
    }

    pub fn push(&self, segment: Arc<Segment>) {
        self.0.write().expect("segment list lock").push(segment);
    }

    pub fn all(&self) -> Vec<Arc<Segment>> {
        self.0.read().expect("segment list lock").clone()
    }
}

/// The temporary name of the segment file being prepared (never a segment; removed on open).
pub const PREPARED_NAME: &str = "next.seg.prep";

/// A zero-filled, synced file of a segment's size, waiting to become the next segment.
#[derive(Debug)]
pub struct Prepared {
    file: File,
    path: PathBuf,
}

/// Zero-fills a new `PREPARED_NAME` file of `size` bytes. `Ok(None)` if `cancel` was set
/// meanwhile (the store is closing); the file is removed then.
///
/// The zeros go with `O_DIRECT` where the filesystem allows it: through the page cache, zero-
/// filling costs about 1.6 s of CPU per GiB here (one of the machine's two cores during heavy
/// ingest), directly about 0.05 s. The writer then pads its writes to whole pages with zeros
/// (`Writer::write_group`), so the pages it writes into need not be read from disk first.
pub fn prepare(log_dir: &Path, size: u64, cancel: &AtomicBool) -> Result<Option<Prepared>, StoreError> {
    let path = log_dir.join(PREPARED_NAME);
    let prepared = prepare_file(&path, size, cancel);
    if prepared.is_err() {
        // A half-filled file would hold on to space that appends need (a full disk is the
        // usual cause); the roll makes a segment that grows as written instead.
        let _ = std::fs::remove_file(&path);
    }
    prepared
}

fn prepare_file(path: &Path, size: u64, cancel: &AtomicBool) -> Result<Option<Prepared>, StoreError> {
    const SYNC_EVERY: u64 = 64 << 20;
    let path = path.to_owned();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(StoreError::io("create", &path))?;
    // A second handle that bypasses the page cache, if the filesystem has `O_DIRECT`.
    let direct = OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(&path).ok();
    let mut zeros = vec![0u8; DIRECT_WRITE + DIRECT_ALIGN];
    // `O_DIRECT` wants the buffer aligned like the offsets and lengths; no `unsafe` needed.
    let skew = (DIRECT_ALIGN - zeros.as_ptr() as usize % DIRECT_ALIGN) % DIRECT_ALIGN;
    let zeros = &mut zeros[skew..skew + DIRECT_WRITE];
    let mut at = 0u64;
    while at < size {
        if cancel.load(Ordering::Relaxed) {
            drop((file, direct));
            std::fs::remove_file(&path).map_err(StoreError::io("remove", &path))?;
            return Ok(None);
        }
        let n = (size - at).min(DIRECT_WRITE as u64) as usize;
        let aligned = n - n % DIRECT_ALIGN;
        let written = match &direct {
            Some(direct) if aligned > 0 => direct.write_all_at(&zeros[..aligned], at).is_ok(),
            _ => false,
        };
        // The unaligned end of the file, or no `O_DIRECT` (or it refused): through the cache.
        let n = if written { aligned } else { n };
        if !written {
            file.write_all_at(&zeros[..n], at).map_err(StoreError::io("preallocate", &path))?;
        }
        at += n as u64;
        if at % SYNC_EVERY < n as u64 || at == size {
            file.sync_data().map_err(StoreError::io("sync", &path))?;
        }
    }
    Ok(Some(Prepared { file, path }))
}

/// Page size (and `O_DIRECT` alignment) the preallocation and the writer's padding assume.
pub const DIRECT_ALIGN: usize = 4096;
const DIRECT_WRITE: usize = 4 << 20;

/// Removes a prepared file left by a crash or an interrupted preparation.
pub fn remove_prepared(log_dir: &Path) -> Result<(), StoreError> {
    let path = log_dir.join(PREPARED_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_dir(log_dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::Io { op: "remove", path, source: e }),
    }
}

pub fn segment_path(log_dir: &Path, number: u64) -> PathBuf {
    log_dir.join(format!("{number:020}.seg"))
}

/// Segment files in `log_dir`, by number. Numbers must be contiguous: a gap means a lost file.
pub fn list_segments(log_dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(log_dir).map_err(StoreError::io("list", log_dir))? {
        let path = entry.map_err(StoreError::io("list", log_dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(number) = name.strip_suffix(".seg").and_then(|n| n.parse::<u64>().ok()) {
            found.push((number, path));
        }
    }
    found.sort();
    for pair in found.windows(2) {
        if pair[1].0 != pair[0].0 + 1 {
            return Err(StoreError::Corrupt {
                file: pair[1].1.clone(),
                offset: 0,
                reason: format!("segment {} is missing", pair[0].0 + 1),
            });
        }
    }
    Ok(found)
}

pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(StoreError::io("fsync directory", dir))
}

/// Whether every byte is zero, a word at a time (this scans the preallocated space on open).
fn all_zero(bytes: &[u8]) -> bool {
    let words = bytes.chunks_exact(8);
    let rest = words.remainder();
    words.into_iter().all(|w| u64::from_ne_bytes(w.try_into().expect("8 bytes")) == 0) && rest.iter().all(|b| *b == 0)
}

fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
