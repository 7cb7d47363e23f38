//! The read path: `get` by identity and `search` with sorting, cursors, totals and facets, all
//! against one searcher (one point-in-time view of the last reloaded commit), so a page, its
//! total and its facets always agree with each other.

use tantivy::collector::Count;
use tantivy::schema::Value;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{DocAddress, Searcher, TantivyDocument};

use super::counts;
use super::facets::FacetCollector;
use super::lookup::{KnownKeys, Lookup};
use super::schema::{backend, corrupt, from_tantivy_time, Fields};
use super::{query, topk};
use crate::error::ViewError;
use crate::view_store::{Cursor, Query, SearchPage, StoredDoc};
use annals_store::Position;

/// The document `id` of `tenant`: looked up by the `(tenant, id)` identity, so another tenant's
/// document of the same id is never returned.
pub(crate) fn get(
    view: &'static str,
    fields: &Fields,
    searcher: &Searcher,
    known: &KnownKeys,
    tenant: &str,
    id: &str,
) -> Result<Option<StoredDoc>, ViewError> {
    get_many(view, fields, searcher, known, &[(tenant, id)]).map(|mut docs| docs.pop().flatten())
}

/// [`get`] for many identities, with the segments' readers opened once.
pub(crate) fn get_many(
    view: &'static str,
    fields: &Fields,
    searcher: &Searcher,
    known: &KnownKeys,
    keys: &[(&str, &str)],
) -> Result<Vec<Option<StoredDoc>>, ViewError> {
    let lookup = Lookup::new(view, fields, searcher, known)?;
    keys.iter()
        .map(|(tenant, id)| lookup.find(tenant, id)?.map(|found| load(view, fields, searcher, found.addr)).transpose())
        .collect()
}

pub(crate) fn search(
    view: &'static str,
    fields: &Fields,
    searcher: &Searcher,
    analyzer: &mut TextAnalyzer,
    q: &Query,
) -> Result<SearchPage, ViewError> {
    let built = query::build(view, fields, analyzer, q)?;
    // The counts kept at commit answer the total and facets of a search filtered only by
    // counted terms (the landing page); any other search counts its matches.
    let counted = match counts::answers(fields, q) {
        true => counts::load(view, fields, searcher, &q.tenant)?.map(|c| counts::answer(fields, &c, q)),
        false => None,
    };
    let from_counts = counted.is_some();
    let (total, facets) = match counted {
        Some(answer) => answer,
        None => {
            // Without facets, `Count` alone can count from posting lists instead of visiting
            // documents.
            let facet_collector = (!q.facets.is_empty()).then(|| FacetCollector { fields: q.facets.clone() });
            let (total, facet_counts) =
                searcher.search(&*built.matching, &(Count, facet_collector)).map_err(backend(view, "count"))?;
            let facet_counts = facet_counts.transpose().map_err(|reason| corrupt(view, reason))?.unwrap_or_default();
            (total as u64, q.facets.iter().copied().zip(facet_counts).collect())
        }
    };

    let mut docs = Vec::new();
    let mut next = None;
    // tantivy's top-k needs a positive limit; a zero limit asks for the total and facets only,
    // and with no match at all there is no page to fetch.
    if q.limit > 0 && total > 0 {
        let sort_field = fields
            .declared
            .get(built.sort_field)
            .map(|(_, f)| *f)
            .ok_or_else(|| corrupt(view, format!("sort field {:?} vanished from the schema", built.sort_field)))?;
        let page = topk::Page {
            view,
            query: &*built.page,
            sort_name: built.sort_field,
            sort_field,
            descending: q.sort.descending,
            limit: q.limit,
            after: q.after.as_ref(),
            matches: from_counts.then_some(total),
            // No page holds more than `total` documents; capping keeps a huge `limit` from
            // sizing tantivy's top-k buffer.
            total: usize::try_from(total).unwrap_or(usize::MAX),
        };
        let hits = topk::top(searcher, &page)?;
        let full = hits.len() == q.limit;
        let mut last = None;
        for ((time, id), addr) in hits {
            docs.push(load(view, fields, searcher, addr)?);
            last = Some((time, id));
        }
        if full {
            next = match last {
                Some((Some(time), Some(id))) => Some(Cursor { time: from_tantivy_time(time), id }),
                // The query requires the sort field and every document has an id.
                _ => return Err(corrupt(view, "a result has no sort time or id".to_owned())),
            };
        }
    }
    Ok(SearchPage { docs, next, total, facets })
}

/// Reads the stored id, version and source of one document.
fn load(view: &'static str, fields: &Fields, searcher: &Searcher, addr: DocAddress) -> Result<StoredDoc, ViewError> {
    let doc: TantivyDocument = searcher.doc(addr).map_err(backend(view, "load document"))?;
    let id = doc.get_first(fields.id).and_then(|v| v.as_str().map(str::to_owned));
    let version = doc.get_first(fields.version).and_then(|v| v.as_u64());
    let source = doc.get_first(fields.source).and_then(|v| v.as_str().map(str::to_owned));
    let (Some(id), Some(version), Some(source)) = (id, version, source) else {
        return Err(corrupt(view, format!("document at {addr:?} lacks its id, version or source")));
    };
    let source = serde_json::from_str(&source).map_err(|e| corrupt(view, format!("source of document {id:?}: {e}")))?;
    Ok(StoredDoc { id, version: Position::from_code(version), source })
}
