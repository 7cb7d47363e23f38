//! What the engine's parts share: the published [`Head`] and [`Shared`] (configuration, segments,
//! the index behind its close lock, the head's `watch`, the poison flag, free space).
//!
//! Why a file of its own: the writer, the indexer, the readers and the subscriptions all work on
//! `Shared`; when it lived in `store.rs` next to the handle (`EmbeddedStore`), which imports all of
//! them, each imported it back from there and the engine's files formed a circle. Here it depends
//! on none of them.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use tokio::sync::watch;

use super::config::EngineConfig;
use super::index::Index;
use super::segment::{Segment, Segments};
use super::space::Space;
use crate::error::StoreError;
use crate::model::Position;

/// The published head: every event below `position` is durable, indexed and readable; the log's
/// data ends at `offset` of segment `segment` (past it: a group being written, or preallocated
/// zeros).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Head {
    pub position: Position,
    pub segment: u64,
    pub offset: u64,
}

/// What readers, the writer and subscriptions share.
#[derive(Debug)]
pub struct Shared {
    pub config: EngineConfig,
    pub log_dir: PathBuf,
    pub segments: Segments,
    /// `None` once the store is closed. Readers hold the read lock for the length of a read, so
    /// `close` (which takes it for writing) waits for them and then releases fjall's directory.
    index: RwLock<Option<Index>>,
    head: watch::Sender<Head>,
    /// Holds the `flock` on `DATA_DIR/LOCK` until `close` (or the last reference) drops it.
    lock: Mutex<Option<File>>,
    /// Set when a write, sync or index commit failed: what is on disk past the head is unknown,
    /// so no more appends are taken until a reopen lets recovery decide.
    poisoned: Mutex<Option<String>>,
    /// Free space on the data directory's filesystem, and whether appends wait for it.
    pub space: Space,
}

/// The open index, borrowed for one read or one group.
pub struct IndexGuard<'a>(RwLockReadGuard<'a, Option<Index>>);

impl std::ops::Deref for IndexGuard<'_> {
    type Target = Index;
    fn deref(&self) -> &Index {
        self.0.as_ref().expect("checked when the guard was made")
    }
}

impl Shared {
    pub fn new(
        config: EngineConfig,
        log_dir: PathBuf,
        segments: Segments,
        index: Index,
        head: watch::Sender<Head>,
        lock: File,
        space: Space,
    ) -> Shared {
        Shared {
            config,
            log_dir,
            segments,
            index: RwLock::new(Some(index)),
            head,
            lock: Mutex::new(Some(lock)),
            poisoned: Mutex::new(None),
            space,
        }
    }

    /// The index, or `StoreError::Closed`.
    pub fn index(&self) -> Result<IndexGuard<'_>, StoreError> {
        let guard = self.index.read().expect("index lock");
        match *guard {
            Some(_) => Ok(IndexGuard(guard)),
            None => Err(StoreError::Closed),
        }
    }

    pub fn poison(&self, reason: String) {
        self.poisoned.lock().expect("poison lock").get_or_insert(reason);
    }

    pub fn poisoned(&self) -> Option<String> {
        self.poisoned.lock().expect("poison lock").clone()
    }

    /// The error appends get once the store is poisoned.
    pub fn poisoned_error(&self) -> StoreError {
        let reason = self.poisoned().unwrap_or_else(|| "an earlier group failed".into());
        StoreError::Io {
            op: "append (the store must be reopened after a failed commit)",
            path: self.log_dir.clone(),
            source: std::io::Error::other(reason),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.index.read().expect("index lock").is_none()
    }

    /// Flushes and drops the index and releases the directory lock; wakes subscriptions so they
    /// see the store is closed.
    pub fn close(&self) -> Result<(), StoreError> {
        let index = self.index.write().expect("index lock").take();
        let result = index.as_ref().map_or(Ok(()), Index::persist);
        drop(index);
        self.lock.lock().expect("lock file").take();
        self.head.send_modify(|_| {});
        result
    }

    pub fn head(&self) -> Head {
        *self.head.borrow()
    }

    pub fn publish(&self, head: Head) {
        self.head.send_replace(head);
    }

    pub fn watch_head(&self) -> watch::Receiver<Head> {
        self.head.subscribe()
    }

    pub fn segment(&self, number: u64) -> Result<Arc<Segment>, StoreError> {
        self.segments.get(number).ok_or_else(|| StoreError::Index(format!("segment {number} is not open")))
    }
}
