//! The embedded [`ViewStore`] backend: one tantivy index per view, in a directory of its own.
//!
//! tantivy keeps guarantee 1 natively (a commit is atomic and carries the checkpoint as its
//! payload), rule 2 is a version check against the committed index before each write, and
//! guarantee 3 is stronger than asked: the reader is reloaded before `commit` returns, so a
//! committed batch is visible to the very next read in this process (other processes opening the
//! directory see it within the reload policy's delay, well under a second).
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
use std::sync::Mutex;

use tantivy::directory::MmapDirectory;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Index, IndexReader, ReloadPolicy};

use crate::view_store::{Checkpoint, Query, SearchPage, StoredDoc, ViewBatch, ViewSchema, ViewStore};
use crate::ViewError;
use lookup::KnownKeys;
use schema::{backend, Fields};
use write::{Outcome, Writer};

/// The indexing memory of the single writer thread (tantivy's minimum is 15 MB). Segments end at
/// each commit long before this is spent, and every new segment writer sizes (and zeroes) its
/// hash table by it: at 64 MB that zeroing was 13% of a rebuild's CPU (perf, 2026-11-30).
const WRITER_MEMORY_BYTES: usize = 16 * 1024 * 1024;

/// Segments merged at once while bulk loading (tantivy's default is 8).
const BULK_MERGE_SEGMENTS: usize = 32;

/// A view kept in an embedded tantivy index. Cheap to share behind an `Arc`: reads take a
/// searcher and never block on the writer; commits are serialized by the writer's lock.
pub struct TantivyViewStore {
    view: &'static str,
    dir: PathBuf,
    fields: Fields,
    index: Index,
    reader: IndexReader,
    /// One writer per index is all tantivy allows (it holds a lock file), and the version checks
    /// of a batch must not interleave with another batch's writes.
    writer: Mutex<Writer>,
    /// The tokenizer of the Text fields, so query text is split like the documents were.
    analyzer: TextAnalyzer,
    known: KnownKeys,
}

impl std::fmt::Debug for TantivyViewStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TantivyViewStore").field("view", &self.view).field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl TantivyViewStore {
    /// Opens the view's index in `dir`, creating the directory and an empty index if needed.
    /// An existing index must have been created with the same schema (a changed schema needs a
    /// rebuild into a new directory), and no other writer may hold it.
    pub fn open(dir: &Path, view_schema: ViewSchema) -> Result<Self, ViewError> {
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
        let inner = index.writer_with_num_threads(1, WRITER_MEMORY_BYTES).map_err(backend(view, "open writer"))?;
        let checkpoint = write::load_checkpoint(view, &index)?;
        // Reloads in this process are explicit (after each commit); the policy is the fallback
        // that keeps readers fresh when another process writes the directory.
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()
            .map_err(backend(view, "open reader"))?;
        Ok(TantivyViewStore {
            view,
            dir: dir.to_owned(),
            fields,
            index,
            reader,
            writer: Mutex::new(Writer { inner, checkpoint, broken: None, bulk: false, counts: Default::default() }),
            analyzer,
            known: KnownKeys::default(),
        })
    }

    /// The directory the index lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl ViewStore for TantivyViewStore {
    fn commit(&self, batch: &ViewBatch) -> Result<(), ViewError> {
        let view = self.view;
        let mut writer = match self.writer.lock() {
            Ok(writer) => writer,
            // A batch panicked midway: drop whatever it staged so no later commit publishes half
            // of it, then carry on (the committed state is intact either way).
            Err(poisoned) => {
                let mut writer = poisoned.into_inner();
                write::rollback(&mut writer);
                self.writer.clear_poison();
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

    fn checkpoint(&self) -> Result<Option<Checkpoint>, ViewError> {
        write::load_checkpoint(self.view, &self.index)
    }

    /// Fewer merges while bulk loading: a rebuild makes a segment per commit, and merging them
    /// as they come rewrites every document once per merge level (a quarter of a rebuild's CPU
    /// with tantivy's default policy). Merging 32 segments at a time instead of 8 rewrites each
    /// document about half as often and still bounds the segments a search visits. Back to the
    /// default afterwards, started by an empty commit (tantivy looks for merges after commits)
    /// that keeps the checkpoint. A bulk load into an empty index also remembers the keys it
    /// writes ([`KnownKeys`]).
    fn bulk_load(&self, on: bool) -> Result<(), ViewError> {
        let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
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

    fn get(&self, tenant: &str, id: &str) -> Result<Option<StoredDoc>, ViewError> {
        read::get(self.view, &self.fields, &self.reader.searcher(), &self.known, tenant, id)
    }

    fn get_many(&self, keys: &[(&str, &str)]) -> Result<Vec<Option<StoredDoc>>, ViewError> {
        read::get_many(self.view, &self.fields, &self.reader.searcher(), &self.known, keys)
    }

    fn search(&self, query: &Query) -> Result<SearchPage, ViewError> {
        let mut analyzer = self.analyzer.clone();
        read::search(self.view, &self.fields, &self.reader.searcher(), &mut analyzer, query)
    }
}
