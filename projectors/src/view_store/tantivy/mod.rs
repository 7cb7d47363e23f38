//! The embedded view-store backend: one tantivy index per view generation, in a directory of
//! its own, keeping both halves of the contract ([`ViewReader`], [`ViewWriter`]).
//!
//! tantivy keeps guarantee 1 natively (a commit is atomic and carries the checkpoint as its
//! payload: `atomic_checkpoint`), rule 2 is a version check against the committed index before
//! each write, and guarantee 3 is stronger than asked: the reader is reloaded before `commit`
//! returns, so a committed batch is visible to the very next read in this process
//! (`visible_on_return`; other processes opening the directory see it within the reload
//! policy's delay, well under a second).
//!
//! tantivy's API blocks, so the async methods move their work off the async workers: reads to
//! tokio's blocking pool (the API's latency), the writer's work to the projectors' own threads
//! of lowered priority (`crate::background`), as before the contract became async.
//!
//! Files: [`schema`] maps a [`ViewSchema`] to tantivy; [`write`] commits batches; [`read`]
//! answers `get` and `search`, building queries in [`query`] and counting facets in [`facets`];
//! [`analyzer`] splits Text fields into words; [`counts`] keeps totals and facets at commit,
//! and [`topk`] finds a page of many matches without visiting them all.

pub(crate) mod analyzer;
mod counts;
mod facets;
mod lookup;
mod query;
mod read;
mod schema;
mod topk;
mod write;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use tantivy::directory::MmapDirectory;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Index, IndexReader, ReloadPolicy};

use crate::background;
use crate::error::ViewError;
use crate::view_store::{
    Capabilities, Checkpoint, CommitOutcome, Query, SearchPage, StoredDoc, ViewBatch, ViewReader, ViewSchema,
    ViewWriter,
};
use lookup::KnownKeys;
use schema::{backend, Fields};
use write::{Outcome, Writer};

/// The indexing memory of the single writer thread (tantivy's minimum is 15 MB). Segments end at
/// each commit long before this is spent, and every new segment writer sizes (and zeroes) its
/// hash table by it: at 64 MB that zeroing was 13% of a rebuild's CPU (perf, 2026-11-30).
const WRITER_MEMORY_BYTES: usize = 16 * 1024 * 1024;

/// Segments merged at once while bulk loading (tantivy's default is 8).
const BULK_MERGE_SEGMENTS: usize = 32;

/// What tantivy promises beyond every backend's guarantees.
pub const CAPABILITIES: Capabilities = Capabilities { atomic_checkpoint: true, visible_on_return: true };

/// A view kept in an embedded tantivy index. Cheap to clone (clones share the index): reads
/// take a searcher and never block on the writer; commits are serialized by the writer's lock.
#[derive(Clone)]
pub struct TantivyViewStore {
    inner: Arc<Inner>,
}

struct Inner {
    view: &'static str,
    dir: PathBuf,
    fields: Fields,
    index: Index,
    reader: IndexReader,
    /// One writer per index is all tantivy allows (it holds a lock file), and the version checks
    /// of a batch must not interleave with another batch's writes. `None` when opened to read.
    writer: Option<Mutex<Writer>>,
    /// The tokenizer of the Text fields, so query text is split like the documents were.
    analyzer: TextAnalyzer,
    known: KnownKeys,
}

impl std::fmt::Debug for TantivyViewStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = &self.inner;
        f.debug_struct("TantivyViewStore").field("view", &inner.view).field("dir", &inner.dir).finish_non_exhaustive()
    }
}

impl TantivyViewStore {
    /// Opens the view's index in `dir`, creating the directory and an empty index if needed.
    /// An existing index must have been created with the same schema (a changed schema needs a
    /// rebuild into a new directory), and no other writer may hold it.
    pub fn open(dir: &Path, view_schema: ViewSchema) -> Result<Self, ViewError> {
        Self::open_as(dir, view_schema, true)
    }

    /// Opens the view's index in `dir` for reading only, beside the process that writes it (an
    /// API process that runs no projector): it takes no writer lock, and its reads and
    /// checkpoint follow the writer's commits (guarantees 3 and 4).
    pub fn open_reader(dir: &Path, view_schema: ViewSchema) -> Result<TantivyViewReader, ViewError> {
        Self::open_as(dir, view_schema, false).map(TantivyViewReader)
    }

    fn open_as(dir: &Path, view_schema: ViewSchema, writable: bool) -> Result<Self, ViewError> {
        let view = view_schema.name;
        let (tantivy_schema, fields) = schema::build(&view_schema)?;
        std::fs::create_dir_all(dir).map_err(|e| ViewError::Backend {
            view,
            op: "create index directory",
            reason: format!("{}: {e}", dir.display()),
        })?;
        let directory = MmapDirectory::open(dir).map_err(|e| ViewError::Backend {
            view,
            op: "open index directory",
            reason: format!("{}: {e}", dir.display()),
        })?;
        let index = Index::open_or_create(directory, tantivy_schema).map_err(backend(view, "open index"))?;
        // Before the writer exists, so every segment it writes splits words this way.
        let analyzer = analyzer::text_analyzer();
        index.tokenizers().register("default", analyzer.clone());
        let checkpoint = write::load_checkpoint(view, &index)?;
        let writer = match writable {
            true => {
                let inner =
                    index.writer_with_num_threads(1, WRITER_MEMORY_BYTES).map_err(backend(view, "open writer"))?;
                let counts = Default::default();
                Some(Mutex::new(Writer { inner, checkpoint, broken: None, bulk: false, counts }))
            }
            false => None,
        };
        // Reloads in this process are explicit (after each commit); the policy is the fallback
        // that keeps readers fresh when another process writes the directory.
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()
            .map_err(backend(view, "open reader"))?;
        let inner =
            Inner { view, dir: dir.to_owned(), fields, index, reader, writer, analyzer, known: KnownKeys::default() };
        Ok(TantivyViewStore { inner: Arc::new(inner) })
    }

    /// The directory the index lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// `search` on the calling thread, blocking: for benchmarks that measure the index's own
    /// cost on one thread (the contract's async methods move the work to other threads).
    pub fn search_blocking(&self, query: &Query) -> Result<SearchPage, ViewError> {
        let inner = &self.inner;
        read::search(inner.view, &inner.fields, &inner.reader.searcher(), &mut inner.analyzer.clone(), query)
    }

    /// `commit` on the calling thread, blocking (see [`TantivyViewStore::search_blocking`]).
    pub fn commit_blocking(&self, batch: &ViewBatch) -> Result<(), ViewError> {
        self.inner.commit(batch)
    }

    /// `bulk_load` on the calling thread, blocking (see [`TantivyViewStore::search_blocking`]).
    pub fn bulk_load_blocking(&self, on: bool) -> Result<(), ViewError> {
        self.inner.bulk_load(on)
    }

    /// Runs a read on tokio's blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Inner) -> Result<T, ViewError> + Send + 'static,
    ) -> Result<T, ViewError> {
        let inner = Arc::clone(&self.inner);
        let view = inner.view;
        tokio::task::spawn_blocking(move || op(&inner))
            .await
            .unwrap_or_else(|e| Err(ViewError::Backend { view, op: "read", reason: e.to_string() }))
    }

    /// Runs the writer's work on the projectors' threads.
    async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Inner) -> Result<T, ViewError> + Send + 'static,
    ) -> Result<T, ViewError> {
        let inner = Arc::clone(&self.inner);
        let view = inner.view;
        background::run(move || op(&inner)).await.unwrap_or_else(|| {
            Err(ViewError::Backend { view, op: "write", reason: "the view's task panicked".to_owned() })
        })
    }
}

#[async_trait]
impl ViewReader for TantivyViewStore {
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, ViewError> {
        self.read(Inner::visible_checkpoint).await
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<StoredDoc>, ViewError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.read(move |inner| {
            read::get(inner.view, &inner.fields, &inner.reader.searcher(), &inner.known, &tenant, &id)
        })
        .await
    }

    async fn search(&self, query: &Query) -> Result<SearchPage, ViewError> {
        let query = query.clone();
        self.read(move |inner| {
            let mut analyzer = inner.analyzer.clone();
            read::search(inner.view, &inner.fields, &inner.reader.searcher(), &mut analyzer, &query)
        })
        .await
    }
}

/// A tantivy view opened to read only ([`TantivyViewStore::open_reader`]).
#[derive(Clone, Debug)]
pub struct TantivyViewReader(TantivyViewStore);

#[async_trait]
impl ViewReader for TantivyViewReader {
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, ViewError> {
        ViewReader::checkpoint(&self.0).await
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<StoredDoc>, ViewError> {
        self.0.get(tenant, id).await
    }

    async fn search(&self, query: &Query) -> Result<SearchPage, ViewError> {
        self.0.search(query).await
    }
}

#[async_trait]
impl ViewWriter for TantivyViewStore {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    /// Tantivy indexes any value, so it rejects no document.
    async fn commit(&self, batch: Arc<ViewBatch>) -> Result<CommitOutcome, ViewError> {
        self.write(move |inner| inner.commit(&batch)).await.map(|()| CommitOutcome::default())
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>, ViewError> {
        self.write(|inner| write::load_checkpoint(inner.view, &inner.index)).await
    }

    async fn get_many(&self, keys: &[(String, String)]) -> Result<Vec<Option<StoredDoc>>, ViewError> {
        let keys = keys.to_vec();
        self.write(move |inner| {
            let keys: Vec<(&str, &str)> = keys.iter().map(|(t, i)| (t.as_str(), i.as_str())).collect();
            read::get_many(inner.view, &inner.fields, &inner.reader.searcher(), &inner.known, &keys)
        })
        .await
    }

    async fn bulk_load(&self, on: bool) -> Result<(), ViewError> {
        self.write(move |inner| inner.bulk_load(on)).await
    }
}

impl Inner {
    /// The committed checkpoint, read before the reader reloads so that the searchers this
    /// process takes afterwards see at least that commit (guarantee 4, also for a directory
    /// another process writes).
    fn visible_checkpoint(&self) -> Result<Option<Checkpoint>, ViewError> {
        let checkpoint = write::load_checkpoint(self.view, &self.index)?;
        self.reader.reload().map_err(backend(self.view, "reload reader"))?;
        Ok(checkpoint)
    }

    fn writer(&self) -> Result<&Mutex<Writer>, ViewError> {
        self.writer.as_ref().ok_or(ViewError::Backend { view: self.view, op: "write", reason: "opened to read".into() })
    }

    fn commit(&self, batch: &ViewBatch) -> Result<(), ViewError> {
        let view = self.view;
        let lock = self.writer()?;
        let mut writer = match lock.lock() {
            Ok(writer) => writer,
            // A batch panicked midway: drop whatever it staged so no later commit publishes half
            // of it, then carry on (the committed state is intact either way).
            Err(poisoned) => {
                let mut writer = poisoned.into_inner();
                write::rollback(&mut writer);
                lock.clear_poison();
                writer
            }
        };
        // The version checks must see every earlier commit, including one whose post-commit
        // reload failed.
        self.reader.reload().map_err(backend(view, "reload reader"))?;
        let searcher = self.reader.searcher();
        match write::commit(view, &self.fields, &mut writer, &searcher, &self.known, batch)? {
            Outcome::Unchanged => Ok(()),
            // Visible to reads before commit returns. If this fails the batch is committed
            // anyway; a retry is a no-op by version, and the next commit reloads first.
            Outcome::Committed => self.reader.reload().map_err(backend(view, "reload reader")),
        }
    }

    /// Fewer merges while bulk loading: a rebuild makes a segment per commit, and merging them
    /// as they come rewrites every document once per merge level (a quarter of a rebuild's CPU
    /// with tantivy's default policy). Merging 32 segments at a time instead of 8 rewrites each
    /// document about half as often and still bounds the segments a search visits. Back to the
    /// default afterwards, started by an empty commit (tantivy looks for merges after commits)
    /// that keeps the checkpoint. A bulk load into an empty index also remembers the keys it
    /// writes ([`KnownKeys`]).
    fn bulk_load(&self, on: bool) -> Result<(), ViewError> {
        let mut writer = self.writer()?.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if writer.bulk == on {
            return Ok(());
        }
        writer.bulk = on;
        if on {
            let mut policy = tantivy::indexer::LogMergePolicy::default();
            policy.set_min_num_segments(BULK_MERGE_SEGMENTS);
            writer.inner.set_merge_policy(Box::new(policy));
            self.reader.reload().map_err(backend(self.view, "reload reader"))?;
            if self.reader.searcher().num_docs() == 0 {
                self.known.start();
            }
            return Ok(());
        }
        self.known.stop();
        writer.inner.set_merge_policy(Box::new(tantivy::indexer::LogMergePolicy::default()));
        write::commit_unchanged(self.view, &mut writer)
    }
}
