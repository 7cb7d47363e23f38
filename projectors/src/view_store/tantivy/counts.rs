//! Counts kept at commit: per tenant, how many live documents hold each combination of values of
//! the view's counted fields (`ViewSchema::counted`) and which Time fields they have.
//!
//! A log UI opens on the unfiltered newest-first page with its total and facets; counted over
//! every match, that cost grew with the tenant's documents (p99 88–120 ms at 1 M messages). A
//! search whose filters are all terms on counted fields and whose facets are counted fields is
//! answered from these counts instead, at a cost independent of the number of matches.
//!
//! Exactness: the counts are one hidden document per tenant in the index itself (key
//! `!counts:{tenant key}`, no `_tenant`, no time: no search ever matches it), rewritten in the
//! same tantivy commit as the documents that change them. So a searcher sees the counts of
//! exactly the commit it searches — after a crash, a restart, a merge or a rebuild (a new
//! generation counts from its own empty index) — and partitioned workers, whose output is one
//! commit, change nothing. Each write subtracts the combination of the document it replaces
//! (read from the committed index's fast columns) and adds its own. A tenant without a counts
//! document (a view written before counts existed) is counted once from its documents at its
//! next write, and searched by counting until then.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use tantivy::columnar::{Column, StrColumn};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, DocSet, Searcher, SegmentReader, TantivyDocument, Term, TERMINATED};

use super::schema::{self, backend, corrupt, Fields};
use crate::error::ViewError;
use crate::view_store::{FieldValue, Filter, Query, ViewDoc};

/// The combination of one document: per counted field (schema order) its distinct values,
/// sorted; and a bit per Time field (schema order) it has a value for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct Combo {
    pub(crate) values: Vec<Vec<String>>,
    pub(crate) times: u64,
}

/// One tenant's counts: combination → live documents holding it (never 0: such entries go).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TenantCounts(pub(crate) HashMap<Combo, u64>);

impl TenantCounts {
    pub(crate) fn add(&mut self, combo: Combo, delta: i64) -> Result<(), String> {
        let entry = self.0.entry(combo).or_insert(0);
        let n = i64::try_from(*entry).unwrap_or(i64::MAX) + delta;
        if n < 0 {
            return Err(format!("a count went below zero ({n})"));
        }
        *entry = n as u64;
        self.0.retain(|_, n| *n > 0);
        Ok(())
    }
}

/// The key term text of `tenant`'s counts document (document keys start with a digit).
pub(crate) fn key(tenant: &str) -> String {
    format!("!counts:{}", schema::key(tenant, ""))
}

/// The combination of a document about to be written.
pub(crate) fn combo_of(fields: &Fields, doc: &ViewDoc) -> Combo {
    let values = fields
        .counted
        .iter()
        .map(|(name, _)| {
            let set: BTreeSet<String> = doc
                .fields
                .get(name)
                .into_iter()
                .flatten()
                .filter_map(|v| match v {
                    FieldValue::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            set.into_iter().collect()
        })
        .collect();
    let mut times = 0;
    for (bit, name) in fields.times.iter().enumerate() {
        if doc.fields.get(name).is_some_and(|v| !v.is_empty()) {
            times |= 1 << bit;
        }
    }
    Combo { values, times }
}

/// The columns a stored document's combination is read from, in one segment.
pub(crate) struct SegmentCombos {
    counted: Vec<Option<StrColumn>>,
    times: Vec<Option<Column<tantivy::DateTime>>>,
}

impl SegmentCombos {
    pub(crate) fn open(view: &'static str, fields: &Fields, segment: &SegmentReader) -> Result<Self, ViewError> {
        let ff = segment.fast_fields();
        let counted = fields
            .counted
            .iter()
            .map(|(name, _)| ff.str(name))
            .collect::<Result<_, _>>()
            .map_err(backend(view, "open counted column"))?;
        let times = fields
            .times
            .iter()
            .map(|name| ff.column_opt::<tantivy::DateTime>(name))
            .collect::<Result<_, _>>()
            .map_err(backend(view, "open time column"))?;
        Ok(SegmentCombos { counted, times })
    }

    pub(crate) fn combo(&self, view: &'static str, doc: DocId) -> Result<Combo, ViewError> {
        let mut values = Vec::with_capacity(self.counted.len());
        for column in &self.counted {
            let mut set = BTreeSet::new();
            if let Some(column) = column {
                for ord in column.term_ords(doc) {
                    let mut value = String::new();
                    let found = column.ord_to_str(ord, &mut value).map_err(|e| corrupt(view, e.to_string()))?;
                    if !found {
                        return Err(corrupt(view, format!("term {ord} is missing from a counted column")));
                    }
                    set.insert(value);
                }
            }
            values.push(set.into_iter().collect());
        }
        let mut times = 0;
        for (bit, column) in self.times.iter().enumerate() {
            if column.as_ref().is_some_and(|c| c.first(doc).is_some()) {
                times |= 1 << bit;
            }
        }
        Ok(Combo { values, times })
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    counts: Vec<(Combo, u64)>,
}

/// The counts document of `tenant` as `searcher` sees it; `None` when the tenant has none.
pub(crate) fn load(
    view: &'static str,
    fields: &Fields,
    searcher: &Searcher,
    tenant: &str,
) -> Result<Option<TenantCounts>, ViewError> {
    let term = Term::from_field_text(fields.key, &key(tenant));
    for (ord, segment) in searcher.segment_readers().iter().enumerate() {
        let inverted = segment.inverted_index(fields.key).map_err(backend(view, "open key index"))?;
        let Some(mut postings) = inverted
            .read_postings(&term, IndexRecordOption::Basic)
            .map_err(|e| backend(view, "read counts postings")(e.into()))?
        else {
            continue;
        };
        let mut doc = postings.doc();
        while doc != TERMINATED {
            if !segment.is_deleted(doc) {
                let stored: TantivyDocument =
                    searcher.doc(tantivy::DocAddress::new(ord as u32, doc)).map_err(backend(view, "load counts"))?;
                use tantivy::schema::Value;
                let text = stored.get_first(fields.source).and_then(|v| v.as_str().map(str::to_owned));
                let text = text.ok_or_else(|| corrupt(view, format!("counts of {tenant:?} have no source")))?;
                let stored: Stored =
                    serde_json::from_str(&text).map_err(|e| corrupt(view, format!("counts of {tenant:?}: {e}")))?;
                return Ok(Some(TenantCounts(stored.counts.into_iter().collect())));
            }
            doc = postings.advance();
        }
    }
    Ok(None)
}

/// Counts `tenant`'s live documents one by one: for a tenant that has no counts document yet.
pub(crate) fn scan(
    view: &'static str,
    fields: &Fields,
    searcher: &Searcher,
    tenant: &str,
) -> Result<TenantCounts, ViewError> {
    let mut counts = TenantCounts::default();
    let term = Term::from_field_text(fields.tenant, tenant);
    for segment in searcher.segment_readers() {
        let inverted = segment.inverted_index(fields.tenant).map_err(backend(view, "open tenant index"))?;
        let Some(mut postings) = inverted
            .read_postings(&term, IndexRecordOption::Basic)
            .map_err(|e| backend(view, "read tenant postings")(e.into()))?
        else {
            continue;
        };
        let combos = SegmentCombos::open(view, fields, segment)?;
        let mut doc = postings.doc();
        while doc != TERMINATED {
            if !segment.is_deleted(doc) {
                counts.add(combos.combo(view, doc)?, 1).map_err(|e| corrupt(view, e))?;
            }
            doc = postings.advance();
        }
    }
    Ok(counts)
}

/// The counts document of `tenant`.
pub(crate) fn to_document(
    view: &'static str,
    fields: &Fields,
    tenant: &str,
    counts: &TenantCounts,
) -> Result<TantivyDocument, ViewError> {
    let mut sorted: Vec<(Combo, u64)> = counts.0.iter().map(|(c, n)| (c.clone(), *n)).collect();
    sorted.sort();
    let text = serde_json::to_string(&Stored { counts: sorted }).map_err(|e| ViewError::Backend {
        view,
        op: "encode counts",
        reason: e.to_string(),
    })?;
    let mut doc = TantivyDocument::default();
    doc.add_text(fields.key, key(tenant));
    // Read by the version check of lookups, which every live document must answer.
    doc.add_u64(fields.version, 0);
    doc.add_text(fields.source, text);
    Ok(doc)
}

/// Whether `query`'s total and facets can be read off the counts: no text, only term filters on
/// counted fields, only counted facets, and a Time sort field.
pub(crate) fn answers(fields: &Fields, query: &Query) -> bool {
    let counted = |name: &str| fields.counted.iter().any(|(n, _)| *n == name);
    query.text.is_none()
        && query.filters.iter().all(|f| matches!(f, Filter::Term { field, .. } if counted(field)))
        && query.facets.iter().all(|f| counted(f))
        && fields.times.contains(&query.sort.field)
}

/// The total and facets of `query` (for which [`answers`] holds) from `counts`: what counting the
/// matching documents one by one gives.
pub(crate) fn answer(
    fields: &Fields,
    counts: &TenantCounts,
    query: &Query,
) -> (u64, BTreeMap<&'static str, BTreeMap<String, u64>>) {
    let index = |name: &str| fields.counted.iter().position(|(n, _)| *n == name);
    let sort_bit = fields.times.iter().position(|t| *t == query.sort.field).map_or(0, |b| 1u64 << b);
    let filters: Vec<(usize, &Vec<String>)> = query
        .filters
        .iter()
        .filter_map(|f| match f {
            Filter::Term { field, values } => index(field).map(|i| (i, values)),
            _ => None,
        })
        .collect();
    let facets: Vec<(&'static str, Option<usize>)> = query.facets.iter().map(|f| (*f, index(f))).collect();
    let mut total = 0;
    let mut out: BTreeMap<&'static str, BTreeMap<String, u64>> =
        facets.iter().map(|(f, _)| (*f, BTreeMap::new())).collect();
    for (combo, &n) in &counts.0 {
        if combo.times & sort_bit == 0 {
            continue;
        }
        if !filters.iter().all(|(i, values)| combo.values[*i].iter().any(|v| values.contains(v))) {
            continue;
        }
        total += n;
        for (name, i) in &facets {
            let Some(i) = i else { continue };
            let into = out.get_mut(name).expect("every facet has a map");
            for value in &combo.values[*i] {
                *into.entry(value.clone()).or_insert(0) += n;
            }
        }
    }
    (total, out)
}
