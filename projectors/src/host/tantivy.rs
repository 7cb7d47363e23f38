//! [`ViewHosting`] for the embedded backend: where the generations of a tantivy view live on
//! disk, and which one serves.
//!
//! # Layout
//! `DATA_DIR/views/{name}/gen-{N}/` holds generation N's index (its checkpoint is inside, in the
//! index's commit payload). `DATA_DIR/views/{name}/CURRENT` names the serving generation
//! (`gen-N\n`), replaced atomically (written to `CURRENT.tmp`, fsynced, renamed over, and the
//! directory fsynced), so a crash leaves either the old name or the new one.
//!
//! # Recovery
//! On open: no `CURRENT` means generation 1 (a fresh view, or one from before generations, whose
//! index files directly under `views/{name}/` are removed: a view is derived data, rebuilt from
//! the log). A generation directory that is neither serving nor being rebuilt (per the control
//! stream) is a finished rebuild's predecessor or an abandoned attempt, and is removed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::hosting::ViewHosting;
use crate::background;
use crate::error::ViewError;
use crate::view_store::tantivy::TantivyViewStore;
use crate::view_store::{ViewHalves, ViewReader, ViewSchema};

/// The generations of one tantivy view: `gen-N` directories and a `CURRENT` file.
#[derive(Debug)]
pub struct TantivyHosting {
    generations: Generations,
    schema: ViewSchema,
}

impl TantivyHosting {
    /// The view of `schema` in `dir` (`DATA_DIR/views/{name}`), created if missing.
    pub fn open(dir: &Path, schema: ViewSchema) -> Result<Self, ViewError> {
        let generations = Generations::open(dir).map_err(io(schema.name, "open view directory"))?;
        Ok(TantivyHosting { generations, schema })
    }

    /// The directory of generation `generation`'s index.
    pub fn path(&self, generation: u64) -> PathBuf {
        self.generations.path(generation)
    }

    /// Runs blocking file work off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(Generations) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, ViewError> {
        let generations = self.generations.clone();
        let view = self.schema.name;
        match tokio::task::spawn_blocking(move || f(generations)).await {
            Ok(result) => result.map_err(io(view, op)),
            Err(e) => Err(ViewError::Backend { view, op, reason: e.to_string() }),
        }
    }
}

fn io(view: &'static str, op: &'static str) -> impl Fn(std::io::Error) -> ViewError {
    move |e| ViewError::Backend { view, op, reason: e.to_string() }
}

#[async_trait]
impl ViewHosting for TantivyHosting {
    fn name(&self) -> &'static str {
        self.schema.name
    }

    async fn current(&self) -> Result<u64, ViewError> {
        self.blocking("read CURRENT", |g| g.current()).await
    }

    /// Opened from a thread of projector priority, so tantivy's indexing and merge threads
    /// inherit it (`background`).
    async fn open(&self, generation: u64) -> Result<ViewHalves, ViewError> {
        let (path, schema) = (self.generations.path(generation), self.schema.clone());
        let view = schema.name;
        let opened = tokio::task::spawn_blocking(move || {
            background::spawn_lowered(move || TantivyViewStore::open(&path, schema))
        })
        .await
        .map_err(|e| ViewError::Backend { view, op: "open index", reason: e.to_string() })??;
        let store = Arc::new(opened);
        Ok(ViewHalves { reader: Arc::clone(&store) as _, writer: store })
    }

    async fn open_reader(&self, generation: u64) -> Result<Arc<dyn ViewReader>, ViewError> {
        let (path, schema) = (self.generations.path(generation), self.schema.clone());
        let view = schema.name;
        let reader = tokio::task::spawn_blocking(move || TantivyViewStore::open_reader(&path, schema))
            .await
            .map_err(|e| ViewError::Backend { view, op: "open index", reason: e.to_string() })??;
        Ok(Arc::new(reader))
    }

    async fn exists(&self, generation: u64) -> Result<bool, ViewError> {
        // An index exists once its first `meta.json` is written (tantivy writes it atomically).
        self.blocking("look for generation", move |g| g.path(generation).join("meta.json").try_exists()).await
    }

    async fn switch(&self, generation: u64) -> Result<(), ViewError> {
        self.blocking("write CURRENT", move |g| g.set_current(generation)).await
    }

    async fn remove_others(&self, keep: &[u64]) -> Result<Vec<String>, ViewError> {
        let keep = keep.to_vec();
        let removed = self.blocking("remove generations", move |g| g.remove_others(&keep)).await?;
        Ok(removed.into_iter().map(|p| p.display().to_string()).collect())
    }
}

/// One view's directory of generations.
#[derive(Clone, Debug)]
struct Generations {
    dir: PathBuf,
}

impl Generations {
    /// `dir` is the view's directory (`DATA_DIR/views/{name}`); created if missing.
    fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Generations { dir: dir.to_owned() })
    }

    /// The serving generation: what `CURRENT` names, or 1.
    fn current(&self) -> std::io::Result<u64> {
        match std::fs::read_to_string(self.dir.join("CURRENT")) {
            Ok(text) => parse(text.trim()).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {text:?} does not name a generation", self.dir.join("CURRENT").display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(1),
            Err(e) => Err(e),
        }
    }

    /// Makes `generation` the serving one, durably.
    fn set_current(&self, generation: u64) -> std::io::Result<()> {
        let tmp = self.dir.join("CURRENT.tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(format!("gen-{generation}\n").as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.dir.join("CURRENT"))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// The directory of generation `generation`'s index.
    fn path(&self, generation: u64) -> PathBuf {
        self.dir.join(format!("gen-{generation}"))
    }

    /// Removes every generation but `keep`, and index files of a view from before generations.
    fn remove_others(&self, keep: &[u64]) -> std::io::Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name == "CURRENT" || name == "CURRENT.tmp" {
                continue;
            }
            match parse(&name) {
                Some(g) if keep.contains(&g) => continue,
                Some(_) => std::fs::remove_dir_all(&path)?,
                None if entry.file_type()?.is_dir() => std::fs::remove_dir_all(&path)?,
                None => std::fs::remove_file(&path)?,
            }
            removed.push(path);
        }
        Ok(removed)
    }
}

fn parse(name: &str) -> Option<u64> {
    name.strip_prefix("gen-")?.parse().ok().filter(|&g| g > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::projection::Projection;

    #[test]
    fn current_defaults_to_one_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let generations = Generations::open(&dir.path().join("messages")).unwrap();
        assert_eq!(generations.current().unwrap(), 1);
        generations.set_current(3).unwrap();
        assert_eq!(Generations::open(&dir.path().join("messages")).unwrap().current().unwrap(), 3);
        assert_eq!(generations.path(3), dir.path().join("messages/gen-3"));
    }

    #[test]
    fn remove_others_keeps_only_what_is_named_and_clears_a_view_from_before_generations() {
        let dir = tempfile::tempdir().unwrap();
        let generations = Generations::open(dir.path()).unwrap();
        for g in [1, 2, 3] {
            std::fs::create_dir_all(generations.path(g)).unwrap();
            std::fs::write(generations.path(g).join("meta.json"), "{}").unwrap();
        }
        std::fs::write(dir.path().join("meta.json"), "{}").unwrap();
        std::fs::write(dir.path().join("abc.idx"), "").unwrap();
        generations.set_current(2).unwrap();
        let mut removed = generations.remove_others(&[2, 3]).unwrap();
        removed.sort();
        assert_eq!(removed, [dir.path().join("abc.idx"), dir.path().join("gen-1"), dir.path().join("meta.json")]);
        assert!(generations.path(2).join("meta.json").exists() && generations.path(3).exists());
        assert_eq!(generations.current().unwrap(), 2);
    }

    /// The hosting contract on directories: a new view serves generation 1; a switch is what
    /// the next open finds; removal keeps the serving generation's index.
    #[tokio::test]
    async fn tantivy_hosting_switches_and_removes_generations() {
        let dir = tempfile::tempdir().unwrap();
        let schema = crate::runtime::projection::MessagesProjection.schema();
        let hosting = TantivyHosting::open(dir.path(), schema.clone()).unwrap();
        assert_eq!(hosting.current().await.unwrap(), 1);
        let first = hosting.open(1).await.unwrap();
        let second = hosting.open(2).await.unwrap();
        let checkpoint = crate::view_store::Checkpoint { position: annals_store::Position::from_code(7) };
        let batch = crate::view_store::ViewBatch { upserts: Vec::new(), checkpoint: Some(checkpoint) };
        second.writer.commit(Arc::new(batch)).await.unwrap();
        hosting.switch(2).await.unwrap();
        drop(first);
        let reopened = TantivyHosting::open(dir.path(), schema).unwrap();
        assert_eq!(reopened.current().await.unwrap(), 2);
        let removed = reopened.remove_others(&[2]).await.unwrap();
        assert_eq!(removed, [dir.path().join("gen-1").display().to_string()]);
        let reader = reopened.open_reader(2).await.unwrap();
        assert_eq!(reader.checkpoint().await.unwrap(), Some(checkpoint));
    }

    /// One writer per generation: a second `open` (another projector process after a takeover,
    /// while the first still stops) is refused as busy, which the host retries; a reader
    /// beside it is not refused, and `exists` sees the generation once it is made.
    #[tokio::test]
    async fn a_second_writer_is_busy_and_a_reader_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let schema = crate::runtime::projection::MessagesProjection.schema();
        let hosting = TantivyHosting::open(dir.path(), schema).unwrap();
        assert!(!hosting.exists(1).await.unwrap());
        let first = hosting.open(1).await.unwrap();
        assert!(hosting.exists(1).await.unwrap());
        let second = hosting.open(1).await.expect_err("the writer is held");
        assert!(super::super::writer_busy(&second), "{second}");
        hosting.open_reader(1).await.unwrap();
        drop(first);
        hosting.open(1).await.expect("free again once the first writer is dropped");
    }

    #[test]
    fn a_damaged_current_is_an_error_not_a_silent_generation_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("CURRENT"), "nonsense").unwrap();
        assert!(Generations::open(dir.path()).unwrap().current().is_err());
    }
}
