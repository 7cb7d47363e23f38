//! Facet counts: for each requested Keyword field, how many matching documents hold each value.
//!
//! A custom collector over the fields' fast (columnar) string columns rather than tantivy's
//! aggregation framework: counts are exact (no shard-size truncation), counting is per term
//! ordinal inside a segment (no string work per document), and strings are resolved once per
//! segment at harvest time. It runs in the same pass as the total count.

use std::collections::BTreeMap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::StrColumn;
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader, TantivyError};

/// Per field (in request order): value → number of matching documents holding it.
pub(crate) type FacetCounts = Vec<BTreeMap<String, u64>>;

/// Counts the values of `fields`, which must be fast string columns (Keyword fields).
#[derive(Debug)]
pub(crate) struct FacetCollector {
    pub(crate) fields: Vec<&'static str>,
}

pub(crate) struct FacetSegmentCollector {
    /// Per field: its column in this segment (`None` if no document of the segment has a value)
    /// and a count per term ordinal.
    columns: Vec<(Option<StrColumn>, Vec<u64>)>,
    /// Scratch buffer for one document's ordinals, so a value repeated within a document
    /// counts that document once.
    ords: Vec<u64>,
}

impl Collector for FacetCollector {
    type Fruit = Result<FacetCounts, String>;
    type Child = FacetSegmentCollector;

    fn for_segment(&self, _segment: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<FacetSegmentCollector> {
        let mut columns = Vec::with_capacity(self.fields.len());
        for field in &self.fields {
            let column = reader.fast_fields().str(field)?;
            let terms = column.as_ref().map_or(0, |c| c.dictionary().num_terms());
            columns.push((column, vec![0; terms]));
        }
        Ok(FacetSegmentCollector { columns, ords: Vec::new() })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, segments: Vec<Self::Fruit>) -> tantivy::Result<Self::Fruit> {
        let mut merged: FacetCounts = vec![BTreeMap::new(); self.fields.len()];
        for segment in segments {
            let segment = segment.map_err(TantivyError::InternalError)?;
            for (into, counts) in merged.iter_mut().zip(segment) {
                for (value, n) in counts {
                    *into.entry(value).or_insert(0) += n;
                }
            }
        }
        Ok(Ok(merged))
    }
}

impl SegmentCollector for FacetSegmentCollector {
    type Fruit = Result<FacetCounts, String>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        for (column, counts) in &mut self.columns {
            let Some(column) = column else { continue };
            self.ords.clear();
            self.ords.extend(column.term_ords(doc));
            self.ords.sort_unstable();
            self.ords.dedup();
            for &ord in &self.ords {
                // Ordinals come from this segment's dictionary, which sized `counts`.
                if let Some(n) = usize::try_from(ord).ok().and_then(|o| counts.get_mut(o)) {
                    *n += 1;
                }
            }
        }
    }

    fn harvest(self) -> Self::Fruit {
        let mut out = Vec::with_capacity(self.columns.len());
        for (column, counts) in self.columns {
            let mut values = BTreeMap::new();
            if let Some(column) = column {
                for (ord, &n) in counts.iter().enumerate() {
                    if n == 0 {
                        continue;
                    }
                    let mut value = String::new();
                    let found = column
                        .ord_to_str(ord as u64, &mut value)
                        .map_err(|e| format!("facet term {ord} is unreadable: {e}"))?;
                    if !found {
                        return Err(format!("facet term {ord} is missing from its dictionary"));
                    }
                    values.insert(value, n);
                }
            }
            out.push(values);
        }
        Ok(out)
    }
}
