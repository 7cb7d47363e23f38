//! The write path: one batch, its version checks and its checkpoint, committed as one tantivy
//! commit whose payload is the checkpoint (guarantees 1 and 2).
//!
//! tantivy makes a commit atomic (a new `meta.json` names the segments and carries the payload,
//! or the old one stays), so the documents and the checkpoint cannot be seen apart, even after a
//! crash. Whatever fails before the commit is rolled back, so a failed batch leaves nothing
//! pending for a later commit to publish.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use tantivy::collector::TopDocs;
use tantivy::query::TermQuery;
use tantivy::schema::IndexRecordOption;
use tantivy::{Index, IndexWriter, Order, Searcher, TantivyDocument, Term};

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
    batch: ViewBatch,
) -> Result<Outcome, ViewError> {
    if let Some(reason) = &writer.broken {
        return Err(ViewError::Backend { view, op: "commit", reason: reason.clone() });
    }
    // Convert everything first: an invalid document fails the batch before anything is written.
    // Within the batch the highest version of each key wins (the first of equal versions), the
    // same result as applying the upserts one by one under rule 2.
    let mut latest: HashMap<String, (u64, TantivyDocument)> = HashMap::new();
    let mut order = Vec::new();
    for doc in &batch.upserts {
        let converted = schema::to_document(view, fields, doc)?;
        match latest.entry(schema::key(&doc.tenant, &doc.id)) {
            Entry::Occupied(mut e) => {
                if doc.version.0 > e.get().0 {
                    e.insert((doc.version.0, converted));
                }
            }
            Entry::Vacant(e) => {
                order.push(e.key().clone());
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
    // A view being rebuilt starts empty: no document to compare with, so no lookups.
    let empty = searcher.num_docs() == 0;
    let staged = (|| -> Result<(), ViewError> {
        for key in order {
            let Some((version, doc)) = latest.remove(&key) else { continue };
            let term = Term::from_field_text(fields.key, &key);
            let stored = if empty { None } else { stored_version(view, searcher, &term)? };
            match stored {
                Some(stored) if stored >= version => continue,
                Some(_) => {
                    writer.inner.delete_term(term);
                }
                None => {}
            }
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
            let payload = serde_json::to_string(&cp).map_err(|e| ViewError::Backend {
                view,
                op: "encode checkpoint",
                reason: e.to_string(),
            })?;
            prepared.set_payload(&payload);
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

/// Drops what was staged. If even that fails, the writer is marked broken (see
/// [`Writer::broken`]); the batch's own error is still what the caller sees.
pub(crate) fn rollback(writer: &mut Writer) {
    if let Err(e) = writer.inner.rollback() {
        writer.broken = Some(format!("a failed batch could not be rolled back ({e}); reopen the view"));
    }
}

/// The version of the committed document with identity `key`, if any.
fn stored_version(view: &'static str, searcher: &Searcher, key: &Term) -> Result<Option<u64>, ViewError> {
    let query = TermQuery::new(key.clone(), IndexRecordOption::Basic);
    let top = TopDocs::with_limit(1).order_by_fast_field::<u64>(schema::VERSION, Order::Desc);
    let hits = searcher.search(&query, &top).map_err(backend(view, "read stored version"))?;
    match hits.first() {
        None => Ok(None),
        Some((Some(version), _)) => Ok(Some(*version)),
        Some((None, _)) => Err(corrupt(view, format!("document {key:?} has no version"))),
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
