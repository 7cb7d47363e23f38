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

use super::counts::{self, Combo, SegmentCombos, TenantCounts};
use super::lookup::{KnownKeys, Lookup};
use super::schema::{self, backend, corrupt, Fields};
use crate::error::ViewError;
use crate::view_store::{Checkpoint, ViewBatch};

/// The single writer of a view and the checkpoint of its last commit.
pub(crate) struct Writer {
    pub(crate) inner: IndexWriter<TantivyDocument>,
    /// The payload of the last commit; a batch without a checkpoint carries it forward.
    pub(crate) checkpoint: Option<Checkpoint>,
    /// Set when a failed batch could not be rolled back: its staged documents might be published
    /// by the next commit, so the writer refuses to commit until the store is reopened.
    pub(crate) broken: Option<String>,
    /// Whether merges are off for a bulk load (`ViewWriter::bulk_load`).
    pub(crate) bulk: bool,
    /// The committed counts of the tenants written since the view was opened (`counts`).
    pub(crate) counts: HashMap<String, TenantCounts>,
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
    let mut latest: HashMap<(&str, &str), (u64, TantivyDocument, Combo)> = HashMap::with_capacity(batch.upserts.len());
    let mut order = Vec::with_capacity(batch.upserts.len());
    for doc in &batch.upserts {
        let converted = schema::to_document(view, fields, doc)?;
        let combo = counts::combo_of(fields, doc);
        match latest.entry((doc.tenant.as_str(), doc.id.as_str())) {
            Entry::Occupied(mut e) => {
                if doc.version.code() > e.get().0 {
                    e.insert((doc.version.code(), converted, combo));
                }
            }
            Entry::Vacant(e) => {
                order.push(*e.key());
                e.insert((doc.version.code(), converted, combo));
            }
        }
    }
    // A checkpoint never moves back, so replaying an old batch is a no-op for it too.
    let checkpoint = match (writer.checkpoint, batch.checkpoint) {
        (Some(old), Some(new)) => Some(if new.position > old.position { new } else { old }),
        (old, new) => new.or(old),
    };

    let mut writes = 0usize;
    // Per tenant written: the change of its counts, then its counts after this batch.
    let mut deltas: HashMap<&str, Vec<(Combo, i64)>> = HashMap::new();
    let mut counted: HashMap<String, TenantCounts> = HashMap::new();
    let staged = (|| -> Result<(), ViewError> {
        let lookup = Lookup::new(view, fields, searcher, known)?;
        let mut combos: Vec<Option<SegmentCombos>> = (0..searcher.segment_readers().len()).map(|_| None).collect();
        for (tenant, id) in order {
            let Some((version, doc, combo)) = latest.remove(&(tenant, id)) else { continue };
            let delta = deltas.entry(tenant).or_default();
            match lookup.find(tenant, id)? {
                Some(stored) if stored.version >= version => continue,
                Some(stored) => {
                    writer.inner.delete_term(Term::from_field_text(fields.key, &schema::key(tenant, id)));
                    let ord = stored.addr.segment_ord as usize;
                    let segment = match &mut combos[ord] {
                        Some(segment) => segment,
                        slot => slot.insert(SegmentCombos::open(view, fields, searcher.segment_reader(ord as u32))?),
                    };
                    delta.push((segment.combo(view, stored.addr.doc_id)?, -1));
                }
                None => {}
            }
            delta.push((combo, 1));
            known.insert(tenant, id);
            writer.inner.add_document(doc).map_err(backend(view, "add document"))?;
            writes += 1;
        }
        // Each tenant's counts document, replaced in the same commit as the documents.
        for (tenant, delta) in &deltas {
            if delta.is_empty() {
                continue;
            }
            let mut tenant_counts = match writer.counts.get(*tenant) {
                Some(c) => c.clone(),
                None => match counts::load(view, fields, searcher, tenant)? {
                    Some(c) => c,
                    None => counts::scan(view, fields, searcher, tenant)?,
                },
            };
            for (combo, n) in delta {
                tenant_counts
                    .add(combo.clone(), *n)
                    .map_err(|e| corrupt(view, format!("counts of {tenant:?}: {e}")))?;
            }
            writer.inner.delete_term(Term::from_field_text(fields.key, &counts::key(tenant)));
            let doc = counts::to_document(view, fields, tenant, &tenant_counts)?;
            writer.inner.add_document(doc).map_err(backend(view, "add counts"))?;
            counted.insert((*tenant).to_owned(), tenant_counts);
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
    writer.counts.extend(counted);
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
    // Whether a failed commit reached the disk is unknown: counts are read again from the index.
    writer.counts.clear();
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
