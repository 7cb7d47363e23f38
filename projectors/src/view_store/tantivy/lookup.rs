//! Finding documents by identity (`_key`) without running a query: a term lookup in each
//! segment's dictionary, skipping deleted documents, and the version read from its fast column.
//!
//! Every document of every batch is looked up (the version check on write, and the projector's
//! load before applying), so a lookup must cost a dictionary probe per segment — not what a
//! `TermQuery` through a collector costs (scoring weights, a heap, per-call setup), which was
//! most of a rebuild's time before this module.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use tantivy::columnar::Column;
use tantivy::index::InvertedIndexReader;
use tantivy::schema::IndexRecordOption;
use tantivy::{DocAddress, DocSet, Searcher, Term, TERMINATED};

use super::schema::{self, backend, corrupt, Fields};
use crate::error::ViewError;

/// During a bulk load into an index that was empty when it began: the hashes of every key
/// written since. A key whose hash is not there was never written, so its lookup is answered
/// without probing a single segment — which matters because a bulk load turns merges off and
/// the segments pile up (a probe per segment per document made a 1 M-message rebuild 30% slower
/// than a 100 k one). A superset of the committed keys (a failed batch leaves some extra hashes,
/// which only cost a probe), so a miss is always right.
#[derive(Debug, Default)]
pub(crate) struct KnownKeys(RwLock<Option<HashSet<u64>>>);

impl KnownKeys {
    pub(crate) fn start(&self) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(HashSet::new());
    }

    pub(crate) fn stop(&self) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(crate) fn insert(&self, tenant: &str, id: &str) {
        if let Some(keys) = self.0.write().unwrap_or_else(|p| p.into_inner()).as_mut() {
            keys.insert(hash(tenant, id));
        }
    }

    fn may_exist(&self, tenant: &str, id: &str) -> bool {
        self.0.read().unwrap_or_else(|p| p.into_inner()).as_ref().is_none_or(|keys| keys.contains(&hash(tenant, id)))
    }
}

/// SipHash with fixed keys: the same in every run (collisions only cost a probe).
fn hash(tenant: &str, id: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    (tenant, id).hash(&mut hasher);
    hasher.finish()
}

/// The readers of one searcher's segments, opened once for many lookups.
pub(crate) struct Lookup<'a> {
    view: &'static str,
    searcher: &'a Searcher,
    known: &'a KnownKeys,
    field: tantivy::schema::Field,
    segments: Vec<(Arc<InvertedIndexReader>, Column<u64>)>,
}

/// A live document: where it is and its version.
pub(crate) struct Found {
    pub(crate) addr: DocAddress,
    pub(crate) version: u64,
}

impl<'a> Lookup<'a> {
    pub(crate) fn new(
        view: &'static str,
        fields: &Fields,
        searcher: &'a Searcher,
        known: &'a KnownKeys,
    ) -> Result<Self, ViewError> {
        let segments = searcher
            .segment_readers()
            .iter()
            .map(|segment| {
                let inverted = segment.inverted_index(fields.key).map_err(backend(view, "open key index"))?;
                let versions = segment.fast_fields().u64(schema::VERSION).map_err(backend(view, "open versions"))?;
                Ok((inverted, versions))
            })
            .collect::<Result<_, ViewError>>()?;
        Ok(Lookup { view, searcher, known, field: fields.key, segments })
    }

    /// The live document of `(tenant, id)`. Writes replace a document by deleting the old one,
    /// so at most one is live; the first found is it.
    pub(crate) fn find(&self, tenant: &str, id: &str) -> Result<Option<Found>, ViewError> {
        if !self.known.may_exist(tenant, id) {
            return Ok(None);
        }
        let term = Term::from_field_text(self.field, &schema::key(tenant, id));
        for (ord, (inverted, versions)) in self.segments.iter().enumerate() {
            let Some(mut postings) = inverted
                .read_postings(&term, IndexRecordOption::Basic)
                .map_err(|e| ViewError::Backend { view: self.view, op: "read key postings", reason: e.to_string() })?
            else {
                continue;
            };
            let segment = self.searcher.segment_reader(ord as u32);
            let mut doc = postings.doc();
            while doc != TERMINATED {
                if !segment.is_deleted(doc) {
                    let version = versions
                        .first(doc)
                        .ok_or_else(|| corrupt(self.view, format!("document {id:?} of {tenant:?} has no version")))?;
                    return Ok(Some(Found { addr: DocAddress::new(ord as u32, doc), version }));
                }
                doc = postings.advance();
            }
        }
        Ok(None)
    }
}
