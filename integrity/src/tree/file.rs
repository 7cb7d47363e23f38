//! The file-backed `NodeStore`: one append-only file of checksummed 32-byte hashes per level, the
//! format and recovery rule of which `tree/mod.rs` states. Nodes are buffered in memory and written
//! in large appends (amortised: one `write` per level per MiB of nodes), read back with one `pread`
//! each, and checked against their CRC32C on every read.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::IntegrityError;
use crate::hash::Hash;
use crate::tree::store::{nodes_at, NodeId, NodeStore, MAX_LEVELS};
use crate::types::TreeSize;

const MAGIC: &[u8; 8] = b"ANNALSMT";
const FORMAT_VERSION: u16 = 1;
pub(crate) const HEADER_LEN: u64 = 32;
pub(crate) const RECORD_LEN: u64 = 36;
/// Pending nodes are written out once they reach this many bytes across all levels.
const FLUSH_BYTES: usize = 1 << 20;

/// The file of level `level` in `dir`.
pub(crate) fn level_path(dir: &Path, level: u32) -> PathBuf {
    dir.join(format!("level-{level:02}.nodes"))
}

fn header(level: u32) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[10] = level as u8;
    let crc = crc32c::crc32c(&h[..28]);
    h[28..].copy_from_slice(&crc.to_le_bytes());
    h
}

fn record(hash: &Hash) -> [u8; RECORD_LEN as usize] {
    let mut r = [0u8; RECORD_LEN as usize];
    r[..32].copy_from_slice(hash.as_bytes());
    r[32..].copy_from_slice(&crc32c::crc32c(hash.as_bytes()).to_le_bytes());
    r
}

/// The hash in `bytes` if its checksum holds.
fn decode(bytes: &[u8]) -> Option<Hash> {
    let hash: [u8; 32] = bytes[..32].try_into().ok()?;
    let crc = u32::from_le_bytes(bytes[32..36].try_into().ok()?);
    (crc32c::crc32c(&hash) == crc).then_some(Hash::from_bytes(hash))
}

#[derive(Debug)]
struct Level {
    path: PathBuf,
    file: File,
    /// Records written to the file (all checksum-valid at open).
    written: u64,
    /// Encoded records not yet written, after `written`.
    pending: Vec<u8>,
    /// Written since the last `sync`.
    dirty: bool,
}

impl Level {
    fn pending_count(&self) -> u64 {
        self.pending.len() as u64 / RECORD_LEN
    }

    fn flush(&mut self) -> Result<(), IntegrityError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let offset = HEADER_LEN + self.written * RECORD_LEN;
        self.file.write_all_at(&self.pending, offset).map_err(IntegrityError::io(&self.path))?;
        self.written += self.pending_count();
        self.pending.clear();
        self.dirty = true;
        Ok(())
    }
}

/// Level files in a directory of their own (e.g. `DATA_DIR/merkle/`). One process at a time: the
/// caller holds the lock of the directory it lives in (the store's `LOCK`).
#[derive(Debug)]
pub struct FileNodeStore {
    dir: PathBuf,
    levels: Vec<Option<Level>>,
    pending_bytes: usize,
    /// A level file was created since the last `sync`: the directory needs an fsync too.
    dir_dirty: bool,
}

impl FileNodeStore {
    /// Opens (creating if need be) the level files in `dir` and counts, per level, the records
    /// from the start that are whole and pass their checksum. A file whose header is not ours or
    /// is torn is removed: its level is empty. `MerkleLog` then cuts every level to one tree size.
    pub fn open(dir: &Path) -> Result<Self, IntegrityError> {
        std::fs::create_dir_all(dir).map_err(IntegrityError::io(dir))?;
        let mut levels = Vec::new();
        for level in 0..MAX_LEVELS {
            levels.push(open_level(dir, level)?);
        }
        Ok(Self { dir: dir.to_path_buf(), levels, pending_bytes: 0, dir_dirty: false })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn flush(&mut self) -> Result<(), IntegrityError> {
        for level in self.levels.iter_mut().flatten() {
            level.flush()?;
        }
        self.pending_bytes = 0;
        Ok(())
    }

    fn create_level(&mut self, level: u32) -> Result<&mut Level, IntegrityError> {
        let path = level_path(&self.dir, level);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(IntegrityError::io(&path))?;
        file.write_all_at(&header(level), 0).map_err(IntegrityError::io(&path))?;
        self.dir_dirty = true;
        Ok(self.levels[level as usize].insert(Level { path, file, written: 0, pending: Vec::new(), dirty: true }))
    }
}

fn open_level(dir: &Path, level: u32) -> Result<Option<Level>, IntegrityError> {
    let path = level_path(dir, level);
    let file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(IntegrityError::Io { path, source: e }),
    };
    let len = file.metadata().map_err(IntegrityError::io(&path))?.len();
    let mut head = [0u8; HEADER_LEN as usize];
    let whole_header = len >= HEADER_LEN && file.read_exact_at(&mut head, 0).is_ok();
    let checksum_holds = whole_header && crc32c::crc32c(&head[..28]).to_le_bytes() == head[28..];
    if checksum_holds && &head[..8] == MAGIC && head[8..10] != FORMAT_VERSION.to_le_bytes() {
        // Written by another build: refused rather than misread, and not dropped either (a
        // downgrade would otherwise rebuild a tree the newer build will want back).
        return Err(IntegrityError::Corrupt {
            path,
            offset: 8,
            detail: format!("format version {} is not known to this build", u16::from_le_bytes([head[8], head[9]])),
        });
    }
    if !checksum_holds || head != header(level) {
        // Torn at creation, or not a file of this format: the level is rebuilt from the log.
        tracing::warn!(path = %path.display(), "tree level file has no valid header, dropping it");
        drop(file);
        std::fs::remove_file(&path).map_err(IntegrityError::io(&path))?;
        return Ok(None);
    }
    let whole = (len - HEADER_LEN) / RECORD_LEN;
    let mut reader = BufReader::with_capacity(1 << 20, &file);
    std::io::copy(&mut (&mut reader).take(HEADER_LEN), &mut std::io::sink()).map_err(IntegrityError::io(&path))?;
    let mut valid = 0;
    let mut buf = [0u8; RECORD_LEN as usize];
    while valid < whole {
        reader.read_exact(&mut buf).map_err(IntegrityError::io(&path))?;
        if decode(&buf).is_none() {
            tracing::warn!(path = %path.display(), record = valid, "tree node fails its checksum, the level ends before it");
            break;
        }
        valid += 1;
    }
    drop(reader);
    Ok(Some(Level { path, file, written: valid, pending: Vec::new(), dirty: false }))
}

impl NodeStore for FileNodeStore {
    fn node_count(&self, level: u32) -> u64 {
        match self.levels.get(level as usize) {
            Some(Some(l)) => l.written + l.pending_count(),
            _ => 0,
        }
    }

    fn get(&self, node: NodeId) -> Result<Hash, IntegrityError> {
        let Some(Some(level)) = self.levels.get(node.level() as usize) else {
            return Err(IntegrityError::Corrupt {
                path: level_path(&self.dir, node.level()),
                offset: 0,
                detail: format!("level {} has no node {}", node.level(), node.index()),
            });
        };
        let offset = HEADER_LEN + node.index() * RECORD_LEN;
        if node.index() < level.written {
            let mut buf = [0u8; RECORD_LEN as usize];
            level.file.read_exact_at(&mut buf, offset).map_err(IntegrityError::io(&level.path))?;
            return decode(&buf).ok_or_else(|| IntegrityError::Corrupt {
                path: level.path.clone(),
                offset,
                detail: "node fails its checksum".into(),
            });
        }
        let at = ((node.index() - level.written) * RECORD_LEN) as usize;
        level.pending.get(at..at + RECORD_LEN as usize).and_then(decode).ok_or_else(|| IntegrityError::Corrupt {
            path: level.path.clone(),
            offset,
            detail: format!("level {} has no node {}", node.level(), node.index()),
        })
    }

    fn leaf_run(&self, first: u64, count: u64) -> Result<Vec<Hash>, IntegrityError> {
        let Some(Some(level)) = self.levels.first() else {
            return (first..first + count).map(|i| self.get(NodeId::new(0, i))).collect();
        };
        // The written part in one read, each record still checked; the rest from `get`.
        let on_disk = level.written.clamp(first, first + count) - first;
        let mut buf = vec![0u8; (on_disk * RECORD_LEN) as usize];
        let offset = HEADER_LEN + first * RECORD_LEN;
        level.file.read_exact_at(&mut buf, offset).map_err(IntegrityError::io(&level.path))?;
        let mut out = Vec::with_capacity(count as usize);
        for (i, record) in buf.chunks_exact(RECORD_LEN as usize).enumerate() {
            out.push(decode(record).ok_or_else(|| IntegrityError::Corrupt {
                path: level.path.clone(),
                offset: offset + i as u64 * RECORD_LEN,
                detail: "node fails its checksum".into(),
            })?);
        }
        for i in first + on_disk..first + count {
            out.push(self.get(NodeId::new(0, i))?);
        }
        Ok(out)
    }

    fn push(&mut self, node: NodeId, hash: Hash) -> Result<(), IntegrityError> {
        debug_assert_eq!(self.node_count(node.level()), node.index(), "nodes are pushed in order");
        let level = match self.levels[node.level() as usize] {
            Some(ref mut level) => level,
            None => self.create_level(node.level())?,
        };
        level.pending.extend_from_slice(&record(&hash));
        self.pending_bytes += RECORD_LEN as usize;
        if self.pending_bytes >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn truncate(&mut self, size: TreeSize) -> Result<(), IntegrityError> {
        self.flush()?;
        for (k, level) in self.levels.iter_mut().enumerate() {
            let Some(level) = level else { continue };
            let keep = nodes_at(size, k as u32).min(level.written);
            let len = HEADER_LEN + keep * RECORD_LEN;
            let actual = level.file.metadata().map_err(IntegrityError::io(&level.path))?.len();
            if actual != len {
                level.file.set_len(len).map_err(IntegrityError::io(&level.path))?;
                level.dirty = true;
            }
            level.written = keep;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), IntegrityError> {
        self.flush()?;
        for level in self.levels.iter_mut().flatten() {
            if level.dirty {
                level.file.sync_data().map_err(IntegrityError::io(&level.path))?;
                level.dirty = false;
            }
        }
        if self.dir_dirty {
            File::open(&self.dir).and_then(|d| d.sync_all()).map_err(IntegrityError::io(&self.dir))?;
            self.dir_dirty = false;
        }
        Ok(())
    }
}

impl Drop for FileNodeStore {
    /// Writes what is buffered (no fsync): a clean shutdown that forgot `sync` loses nothing but
    /// durability, and a failure here only means more leaves to re-feed at the next open.
    fn drop(&mut self) {
        if let Err(error) = self.flush() {
            tracing::warn!(%error, "could not write buffered tree nodes at close");
        }
    }
}
