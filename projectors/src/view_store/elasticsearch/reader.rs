//! [`ViewReader`] on Elasticsearch: `_search` routed by tenant, `GET _doc` for one document,
//! and the checkpoint document as of the last refresh.
//!
//! Answer shapes: elasticsearch-specification `_global/search/SearchResponse.ts` (`hits.total`
//! `{value, relation}`, `hits.hits[]` with `_source` and `sort`, `aggregations.{name}.buckets[]`
//! `{key, doc_count}` and `sum_other_doc_count` of `_types/aggregations/Aggregate.ts`),
//! `_global/get/GetResponse.ts` (`found`, `_source`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::DateTime;
use elasticsearch::http::Method;

use super::bulk::{self, CHECKPOINT_ID};
use super::query::{page_size, search_body};
use super::writer::{checkpoint_of, stored_doc};
use super::Client;
use crate::error::ViewError;
use crate::view_store::{Checkpoint, Cursor, Query, SearchPage, StoredDoc, ViewReader, ViewSchema};

/// The reader of one generation's index (or of the read alias).
#[derive(Debug)]
pub struct EsViewReader {
    client: Client,
    /// The index (or alias) read.
    target: String,
    schema: ViewSchema,
}

impl EsViewReader {
    pub(crate) fn new(client: Client, target: String, schema: ViewSchema) -> Self {
        EsViewReader { client, target, schema }
    }
}

#[async_trait]
impl ViewReader for EsViewReader {
    /// `realtime=false`: the checkpoint as of the last refresh, whose documents that refresh
    /// also holds (they were written before it): guarantee 4.
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, ViewError> {
        let path = format!("/{}/_doc/{CHECKPOINT_ID}", self.target);
        let query = [("realtime", "false".to_owned())];
        let reply = self.client.send(Method::Get, &path, &query, None, false, "read checkpoint").await?;
        checkpoint_of(self.client.view, &reply)
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<StoredDoc>, ViewError> {
        let view = self.client.view;
        let path = format!("/{}/_doc/{}", self.target, encode(&bulk::doc_id(tenant, id)));
        let query = [("routing", tenant.to_owned())];
        let reply = self.client.send(Method::Get, &path, &query, None, false, "get").await?;
        match reply.status {
            404 => Ok(None),
            200 => {
                let body = reply.json(view)?;
                match body["found"].as_bool() {
                    Some(true) => stored_doc(view, &body["_source"]).map(Some),
                    _ => Ok(None),
                }
            }
            _ => Err(ViewError::Backend { view, op: "get", reason: reply.error() }),
        }
    }

    async fn search(&self, query: &Query) -> Result<SearchPage, ViewError> {
        let view = self.client.view;
        let body = search_body(&self.schema, query)?;
        let path = format!("/{}/_search", self.target);
        let params = [("routing", query.tenant.clone())];
        let answer = self.client.json(Method::Post, &path, &params, Some(&body), "search").await?;
        let corrupt = |reason: &str| ViewError::Corrupt { view, reason: reason.to_owned() };
        let total =
            answer["hits"]["total"]["value"].as_u64().ok_or_else(|| corrupt("a search answer without a total"))?;
        let hits = answer["hits"]["hits"].as_array().cloned().unwrap_or_default();
        let mut docs = Vec::with_capacity(hits.len());
        let mut last = None;
        for hit in &hits {
            docs.push(stored_doc(view, &hit["_source"])?);
            last = Some(&hit["sort"]);
        }
        let size = page_size(query);
        let next = match last {
            Some(sort) if size > 0 && hits.len() == size => {
                let nanos = sort[0].as_i64().ok_or_else(|| corrupt("a hit without its sort time"))?;
                let id = sort[1].as_str().ok_or_else(|| corrupt("a hit without its sort id"))?;
                Some(Cursor { time: DateTime::from_timestamp_nanos(nanos), id: id.to_owned() })
            }
            _ => None,
        };
        let mut facets = BTreeMap::new();
        for facet in &query.facets {
            let agg = &answer["aggregations"][*facet];
            if agg["sum_other_doc_count"].as_u64().unwrap_or(0) > 0 {
                let reason =
                    format!("facet {facet:?} has more values than the {} counted", super::query::FACET_BUCKETS);
                return Err(ViewError::Backend { view, op: "search", reason });
            }
            let mut counts = BTreeMap::new();
            for bucket in agg["buckets"].as_array().ok_or_else(|| corrupt("a facet without buckets"))? {
                let key = bucket["key"].as_str().ok_or_else(|| corrupt("a facet bucket without a key"))?;
                counts.insert(key.to_owned(), bucket["doc_count"].as_u64().unwrap_or(0));
            }
            facets.insert(*facet, counts);
        }
        Ok(SearchPage { docs, next, total, facets })
    }
}

/// Percent-encodes a document id for a URL path segment.
pub(crate) fn encode(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>().replace('+', "%20")
}
