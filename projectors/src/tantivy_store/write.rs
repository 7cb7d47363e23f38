//! The write path: one batch, its version checks and its checkpoint, committed as one tantivy
//! commit whose payload is the checkpoint (guarantees 1 and 2).
//!
//! tantivy makes a commit atomic (a new `meta.json` names the segments and carries the payload,
//! or the old one stays), so the documents and the checkpoint cannot be seen apart, even after a
//! crash. Whatever fails before the commit is rolled back, so a failed batch leaves nothing
//! pending for a later commit to publish.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use tantivy::{Index, IndexWriter, Searcher, TantivyDocument, Term};

use super::lookup::{KnownKeys, Lookup};
use super::schema::{self, backend, corrupt, Fields};
use crate::view_store::{Checkpoint, ViewBatch};
use crate::ViewError;

/// The single writer of a view and the checkpoint of its last commit.
pub(crate) struct Writer {
    pub(crate) inner: IndexWriter<TantivyDocument>,
    /// The payload of the last commit; a batch without a checkpoint carries it forward.
    pub(crate) checkpoint: Option<Checkpoint>,
    /// Set when a failed batch could not be rolled back: its staged documents might be published
    /// by the next commit, so the writer refuses to commit until the store is reopened.
    pub(crate) broken: Option<String>,
    /// Whether merges are off for a bulk load (`ViewStore::bulk_load`).
    pub(crate) bulk: bool,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("checkpoint", &self.checkpoint)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// What a commit did: whether anything was committed (and the reader must reload).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Committed,
    Unchanged,
}

/// Applies `batch`. `searcher` must see the last commit (the caller reloads under the writer
/// lock), since the version checks read the stored versions from it.
pub(crate) fn commit(
    view: &'static str,
    fields: &Fields,
    writer: &mut Writer,
    searcher: &Searcher,
    known: &KnownKeys,
    batch: &ViewBatch,
) -> Result<Outcome, ViewError> {
    if let Some(reason) = &writer.broken {
        return Err(ViewError::Backend { view, op: "commit", reason: reason.clone() });
    }
    // Convert everything first: an invalid document fails the batch before anything is written.
    // Within the batch the highest version of each key wins (the first of equal versions), the
    // same result as applying the upserts one by one under rule 2.
    let mut latest: HashMap<(&str, &str), (u64, TantivyDocument)> = HashMap::with_capacity(batch.upserts.len());
    let mut order = Vec::with_capacity(batch.upserts.len());
    for doc in &batch.upserts {
        let converted = schema::to_document(view, fields, doc)?;
        match latest.entry((doc.tenant.as_str(), doc.id.as_str())) {
            Entry::Occupied(mut e) => {
                if doc.version.0 > e.get().0 {
                    e.insert((doc.version.0, converted));
                }
            }
            Entry::Vacant(e) => {
                order.push(*e.key());
                e.insert((doc.version.0, converted));
            }
        }
    }
    // A checkpoint never moves back, so replaying an old batch is a no-op for it too.
    let checkpoint = match (writer.checkpoint, batch.checkpoint) {
        (Some(old), Some(new)) => Some(if new.position > old.position { new } else { old }),
        (old, new) => new.or(old),
    };

    let mut writes = 0usize;
    let staged = (|| -> Result<(), ViewError> {
        let lookup = Lookup::new(view, fields, searcher, known)?;
        for (tenant, id) in order {
            let Some((version, doc)) = latest.remove(&(tenant, id)) else { continue };
            match lookup.find(tenant, id)? {
                Some(stored) if stored.version >= version => continue,
                Some(_) => {
                    writer.inner.delete_term(Term::from_field_text(fields.key, &schema::key(tenant, id)));
                }
                None => {}
            }
            known.insert(tenant, id);
            writer.inner.add_document(doc).map_err(backend(view, "add document"))?;
            writes += 1;
        }
        Ok(())
    })();
    if let Err(e) = staged {
        rollback(writer);
        return Err(e);
    }
    if writes == 0 && checkpoint == writer.checkpoint {
        return Ok(Outcome::Unchanged);
    }
    let committed = (|| -> Result<(), ViewError> {
        let mut prepared = writer.inner.prepare_commit().map_err(backend(view, "prepare commit"))?;
        if let Some(cp) = checkpoint {
            prepared.set_payload(&encode_checkpoint(view, cp)?);
        }
        prepared.commit().map_err(backend(view, "commit"))?;
        Ok(())
    })();
    if let Err(e) = committed {
        rollback(writer);
        return Err(e);
    }
    writer.checkpoint = checkpoint;
    Ok(Outcome::Committed)
}

/// A commit of nothing but the current checkpoint again: lets tantivy consider merges.
pub(crate) fn commit_unchanged(view: &'static str, writer: &mut Writer) -> Result<(), ViewError> {
    if let Some(reason) = &writer.broken {
        return Err(ViewError::Backend { view, op: "commit", reason: reason.clone() });
    }
    let mut prepared = writer.inner.prepare_commit().map_err(backend(view, "prepare commit"))?;
    if let Some(cp) = writer.checkpoint {
        prepared.set_payload(&encode_checkpoint(view, cp)?);
    }
    prepared.commit().map_err(backend(view, "commit")).map(drop)
}

fn encode_checkpoint(view: &'static str, checkpoint: Checkpoint) -> Result<String, ViewError> {
    serde_json::to_string(&checkpoint).map_err(|e| ViewError::Backend {
        view,
        op: "encode checkpoint",
        reason: e.to_string(),
    })
}

/// Drops what was staged. If even that fails, the writer is marked broken (see
/// [`Writer::broken`]); the batch's own error is still what the caller sees.
pub(crate) fn rollback(writer: &mut Writer) {
    if let Err(e) = writer.inner.rollback() {
        writer.broken = Some(format!("a failed batch could not be rolled back ({e}); reopen the view"));
    }
}

/// The checkpoint in the payload of the last commit of `index`.
pub(crate) fn load_checkpoint(view: &'static str, index: &Index) -> Result<Option<Checkpoint>, ViewError> {
    let metas = index.load_metas().map_err(backend(view, "load metas"))?;
    metas
        .payload
        .map(|p| {
            serde_json::from_str::<Checkpoint>(&p).map_err(|e| corrupt(view, format!("checkpoint payload {p:?}: {e}")))
        })
        .transpose()
}
