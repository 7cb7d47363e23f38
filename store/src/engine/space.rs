//! Free space on the data directory's filesystem, and what the engine does when it runs out.
//!
//! Why this exists: on a full disk every write fails, and not all failures are equal. A failed
//! `write` of a group (ENOSPC) leaves nothing acknowledged and can be retried at the same offset;
//! a failed index commit (fjall's journal) or `fdatasync` cannot (module doc, "Full disk"). So the
//! writer refuses a group *before* writing it while the filesystem has less than
//! `EngineConfig::min_free_bytes` free: the reserve keeps the index, the views and the next
//! segment's header able to write, and appends fail as `StorageFull` until space comes back.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::StoreError;

/// Asks the filesystem of a directory how much space is free, and remembers whether appends are
/// blocked by the lack of it (what `/readyz` reports).
#[derive(Debug)]
pub struct Space {
    dir: PathBuf,
    reserve: u64,
    /// Why appends were last refused, until a probe finds the reserve free again.
    blocked: Mutex<Option<String>>,
}

impl Space {
    pub fn new(dir: &Path, reserve: u64) -> Self {
        Space { dir: dir.to_owned(), reserve, blocked: Mutex::new(None) }
    }

    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Bytes an unprivileged writer may still use on the filesystem; `None` if the filesystem
    /// cannot say (then nothing is refused on a guess: writes report a full disk themselves).
    pub fn available(&self) -> Option<u64> {
        match rustix::fs::statvfs(&self.dir) {
            Ok(stat) => Some(stat.f_bavail.saturating_mul(stat.f_frsize)),
            Err(e) => {
                tracing::debug!(error = %e, dir = %self.dir.display(), "statvfs failed");
                None
            }
        }
    }

    /// `Ok` if `needed` bytes can be written and the reserve still be free; else why not, and
    /// appends count as blocked until a later check passes.
    pub fn check(&self, needed: u64) -> Result<(), String> {
        let Some(available) = self.available() else { return Ok(()) };
        if available >= self.reserve.saturating_add(needed) {
            self.blocked.lock().expect("space lock").take();
            return Ok(());
        }
        let detail = format!(
            "{available} bytes free on the data directory's filesystem, {} needed with the reserve of {} \
             (min_free_bytes) that keeps the index writable; free space and retry",
            self.reserve.saturating_add(needed),
            self.reserve
        );
        self.refused(detail.clone());
        Err(detail)
    }

    /// Records that appends are blocked for lack of space (also after ENOSPC or EDQUOT from a
    /// write).
    pub fn refused(&self, detail: String) {
        self.blocked.lock().expect("space lock").replace(detail);
    }

    /// `StorageFull` while appends are blocked by space, checked afresh: freeing space unblocks
    /// without an append having to try first.
    pub fn writable(&self) -> Result<(), StoreError> {
        if self.blocked.lock().expect("space lock").is_none() {
            return Ok(());
        }
        // Room for a small group besides the reserve (with no reserve, a disk with 0 bytes free
        // would otherwise pass).
        self.check(64 * 1024).map_err(|detail| StoreError::StorageFull { path: self.dir.clone(), detail })
    }
}

/// Whether an I/O error means the filesystem is out of space (or of the user's quota).
pub fn is_out_of_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == libc::ENOSPC || code == libc::EDQUOT)
}
