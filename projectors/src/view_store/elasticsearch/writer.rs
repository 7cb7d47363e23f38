//! [`ViewWriter`] on Elasticsearch: `_bulk` with per-item handling, the checkpoint document, and
//! `_mget` for the projector's loads.
//!
//! Item statuses (elasticsearch-specification `_global/bulk/BulkResponse.ts`, per-item `status`
//! and `error.type`; response examples `_global/bulk/examples/response/BulkResponseExample*.yaml`):
//! - `200`/`201`: written. `409` (`version_conflict_engine_exception`): the stored version is
//!   at least this one (external versions) or the document exists (`create`): already applied.
//! - `429` and `5xx`: retried alone, with jittered exponential backoff, never the whole batch.
//! - `400` of type `mapper_parsing_exception`, `document_parsing_exception` or
//!   `illegal_argument_exception`: the document's content is at fault; reported as rejected
//!   with Elasticsearch's reason so the runtime parks its event and goes on.
//! - anything else (`404` index missing, `403`): the commit fails, and nothing after it
//!   (the checkpoint) is written.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use annals_store::Position;
use async_trait::async_trait;
use elasticsearch::http::Method;
use serde_json::{json, Value};
use tracing::{debug, warn};

use super::bulk::{self, WriteMode, CHECKPOINT_ID};
use super::config::EsConfig;
use super::mapping;
use super::retry::Backoff;
use super::{Client, Reply};
use crate::error::ViewError;
use crate::view_store::{
    Capabilities, Checkpoint, CommitOutcome, RejectedDoc, StoredDoc, ViewBatch, ViewDoc, ViewSchema, ViewWriter,
};

/// Elasticsearch commits no batch atomically; a commit returns once a refresh shows its writes
/// (`refresh=wait_for` live, an explicit `_refresh` while bulk loading), so it is searchable
/// when `commit` returns.
pub const CAPABILITIES: Capabilities = Capabilities { atomic_checkpoint: false, visible_on_return: true };

/// The `400` error types that blame the document, not the cluster.
const REJECTING: [&str; 3] = ["mapper_parsing_exception", "document_parsing_exception", "illegal_argument_exception"];

/// The writer of one generation's index.
#[derive(Debug)]
pub struct EsViewWriter {
    client: Client,
    index: String,
    /// The read alias: an index it names is serving, and never bulk loads.
    alias: String,
    mode: WriteMode,
    schema: ViewSchema,
    config: Arc<EsConfig>,
    /// Set by `bulk_load(true)`: batches skip `refresh=wait_for` (the index does not refresh).
    bulk: AtomicBool,
}

/// What one item's status means.
#[derive(Clone)]
enum Item {
    Durable,
    Retry(String),
    Rejected(String),
    Fatal(String),
}

impl EsViewWriter {
    pub(crate) fn new(
        client: Client,
        index: String,
        alias: String,
        mode: WriteMode,
        schema: ViewSchema,
        config: Arc<EsConfig>,
    ) -> Self {
        EsViewWriter { client, index, alias, mode, schema, config, bulk: AtomicBool::new(false) }
    }

    /// The `refresh` of a live write: `wait_for` (answered once a refresh shows it). While bulk
    /// loading the index does not refresh by itself (`refresh_interval: -1`), so `_bulk`
    /// requests ask for nothing and [`refresh_now`](Self::refresh_now) ends each commit.
    fn refresh(&self) -> Vec<(&'static str, String)> {
        if self.bulk.load(Ordering::Acquire) {
            Vec::new()
        } else {
            vec![("refresh", "wait_for".to_owned())]
        }
    }

    /// While bulk loading: one explicit refresh at the end of a commit, so what it wrote is
    /// searchable when it returns (guarantees 3 and 4 hold during a rebuild too) at the cost
    /// of one refresh per batch instead of one per second and a wait per request.
    async fn refresh_now(&self) -> Result<(), ViewError> {
        if self.bulk.load(Ordering::Acquire) {
            let path = format!("/{}/_refresh", self.index);
            self.client.json(Method::Post, &path, &[], None, "refresh").await?;
        }
        Ok(())
    }

    /// Writes `docs` until every one is durable or rejected (see the module doc).
    async fn write_docs(&self, docs: &[ViewDoc]) -> Result<CommitOutcome, ViewError> {
        let view = self.client.view;
        let mut pending: Vec<usize> = (0..docs.len()).collect();
        let mut rejected = Vec::new();
        let mut backoff = Backoff::new(self.config.retry);
        loop {
            let mut retry = Vec::new();
            let mut last_reason = String::new();
            let bodies = bulk::bodies(
                &self.index,
                self.mode,
                docs,
                &pending,
                self.config.bulk_max_docs,
                self.config.bulk_max_bytes,
            );
            for body in bodies {
                let reply =
                    self.client.send(Method::Post, "/_bulk", &self.refresh(), Some(body.body), true, "bulk").await;
                let statuses = match reply {
                    Ok(reply) if reply.ok() => items(&reply, view, body.docs.len())?,
                    // The request as a whole was pushed back or failed on the way: all its items again.
                    Ok(reply) if reply.status == 429 || reply.status >= 500 => {
                        vec![Item::Retry(reply.error()); body.docs.len()]
                    }
                    Ok(reply) => return Err(ViewError::Backend { view, op: "bulk", reason: reply.error() }),
                    Err(e) => vec![Item::Retry(e.to_string()); body.docs.len()],
                };
                for (&i, item) in body.docs.iter().zip(statuses) {
                    match item {
                        Item::Durable => {}
                        Item::Retry(reason) => {
                            last_reason = reason;
                            retry.push(i);
                        }
                        Item::Rejected(reason) => rejected.push(RejectedDoc {
                            tenant: docs[i].tenant.clone(),
                            id: docs[i].id.clone(),
                            version: docs[i].version,
                            reason,
                        }),
                        Item::Fatal(reason) => return Err(ViewError::Backend { view, op: "bulk", reason }),
                    }
                }
            }
            if retry.is_empty() {
                return Ok(CommitOutcome { rejected });
            }
            let Some(delay) = backoff.next_delay() else {
                let reason = format!(
                    "{} documents still failing after {} retries: {last_reason}",
                    retry.len(),
                    backoff.attempts()
                );
                return Err(ViewError::Backend { view, op: "bulk", reason });
            };
            debug!(view, items = retry.len(), delay_ms = delay.as_millis() as u64, reason = %last_reason, "retrying the failed bulk items");
            tokio::time::sleep(delay).await;
            pending = retry;
        }
    }

    /// Writes the checkpoint document; a `409` means a checkpoint at least as far is stored.
    async fn write_checkpoint(&self, checkpoint: Checkpoint) -> Result<(), ViewError> {
        let code = checkpoint.position.code();
        let body = json!({ "id": CHECKPOINT_ID, "version": code, "source": { "position": code } });
        let mut query = vec![("version", code.to_string()), ("version_type", "external".to_owned())];
        query.extend(self.refresh());
        let path = format!("/{}/_doc/{CHECKPOINT_ID}", self.index);
        let body = serde_json::to_vec(&body).expect("a JSON value serializes");
        let reply = self.client.send(Method::Put, &path, &query, Some(body), false, "write checkpoint").await?;
        match reply.status {
            200 | 201 | 409 => Ok(()),
            _ => Err(ViewError::Backend { view: self.client.view, op: "write checkpoint", reason: reply.error() }),
        }
    }

    async fn set_settings(&self, settings: Value) -> Result<(), ViewError> {
        let path = format!("/{}/_settings", self.index);
        self.client.json(Method::Put, &path, &[], Some(&settings), "update index settings").await.map(drop)
    }
}

/// The statuses of a `_bulk` answer's items, in request order.
fn items(reply: &Reply, view: &'static str, expected: usize) -> Result<Vec<Item>, ViewError> {
    let body = reply.json(view)?;
    let items = body["items"].as_array().filter(|items| items.len() == expected).ok_or_else(|| ViewError::Backend {
        view,
        op: "bulk",
        reason: format!("the answer does not list the {expected} items sent"),
    })?;
    Ok(items
        .iter()
        .map(|item| {
            // Each item is `{"<action>": {"status": …, "error": {"type", "reason"}}}`.
            let result = item.as_object().and_then(|o| o.values().next()).cloned().unwrap_or_default();
            let status = result["status"].as_u64().unwrap_or(0);
            let kind = result["error"]["type"].as_str().unwrap_or("");
            let reason = format!("{status} {kind}: {}", result["error"]["reason"].as_str().unwrap_or(""));
            match status {
                200 | 201 | 409 => Item::Durable,
                429 | 500..=599 => Item::Retry(reason),
                400 if REJECTING.contains(&kind) => Item::Rejected(reason),
                _ => Item::Fatal(reason),
            }
        })
        .collect())
}

/// The document of a `_source` annals wrote (`bulk::write_source`).
pub(crate) fn stored_doc(view: &'static str, source: &Value) -> Result<StoredDoc, ViewError> {
    let corrupt = |what: &str| ViewError::Corrupt { view, reason: format!("a document without {what}") };
    Ok(StoredDoc {
        id: source["id"].as_str().ok_or_else(|| corrupt("id"))?.to_owned(),
        version: Position::from_code(source["version"].as_u64().ok_or_else(|| corrupt("version"))?),
        source: source.get("source").cloned().ok_or_else(|| corrupt("source"))?,
    })
}

/// The checkpoint of a `GET …/_doc/checkpoint` answer (`404`: none yet).
pub(crate) fn checkpoint_of(view: &'static str, reply: &Reply) -> Result<Option<Checkpoint>, ViewError> {
    match reply.status {
        404 => Ok(None),
        200 => {
            let body = reply.json(view)?;
            let code = body["_source"]["version"]
                .as_u64()
                .ok_or_else(|| ViewError::Corrupt { view, reason: "a checkpoint without a version".into() })?;
            Ok(Some(Checkpoint { position: Position::from_code(code) }))
        }
        _ => Err(ViewError::Backend { view, op: "read checkpoint", reason: reply.error() }),
    }
}

#[async_trait]
impl ViewWriter for EsViewWriter {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn commit(&self, batch: Arc<ViewBatch>) -> Result<CommitOutcome, ViewError> {
        if !batch.upserts.is_empty() && batch.checkpoint.is_some() {
            // Without an atomic checkpoint the runtime sends documents and checkpoint apart.
            let reason = "a batch with documents and a checkpoint: commit them separately".to_owned();
            return Err(ViewError::BadQuery { view: self.client.view, reason });
        }
        for doc in &batch.upserts {
            mapping::validate(&self.schema, doc)?;
        }
        let outcome =
            if batch.upserts.is_empty() { CommitOutcome::default() } else { self.write_docs(&batch.upserts).await? };
        if let Some(checkpoint) = batch.checkpoint {
            self.write_checkpoint(checkpoint).await?;
        }
        self.refresh_now().await?;
        Ok(outcome)
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>, ViewError> {
        let path = format!("/{}/_doc/{CHECKPOINT_ID}", self.index);
        let reply = self.client.send(Method::Get, &path, &[], None, false, "read checkpoint").await?;
        checkpoint_of(self.client.view, &reply)
    }

    /// One `_mget`, real-time (the default), each key routed by its tenant.
    async fn get_many(&self, keys: &[(String, String)]) -> Result<Vec<Option<StoredDoc>>, ViewError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let view = self.client.view;
        let docs: Vec<Value> = keys
            .iter()
            .map(|(tenant, id)| json!({ "_index": self.index, "_id": bulk::doc_id(tenant, id), "routing": tenant }))
            .collect();
        let body = json!({ "docs": docs });
        let answer = self.client.json(Method::Post, "/_mget", &[], Some(&body), "mget").await?;
        let found = answer["docs"].as_array().filter(|d| d.len() == keys.len()).ok_or_else(|| ViewError::Backend {
            view,
            op: "mget",
            reason: "the answer does not list every key asked".into(),
        })?;
        found
            .iter()
            .map(|doc| match doc["found"].as_bool() {
                Some(true) => stored_doc(view, &doc["_source"]).map(Some),
                Some(false) => Ok(None),
                None => Err(ViewError::Backend { view, op: "mget", reason: doc["error"].to_string() }),
            })
            .collect()
    }

    /// On, for an index that does not serve (a rebuild's): no refresh and no replicas while
    /// catching up. The serving index ignores the hint (dropping its replicas would cost their
    /// recovery, and its readers would stop seeing writes). Off: the template's settings again,
    /// and a refresh, so what was written is searchable before the view serves.
    async fn bulk_load(&self, on: bool) -> Result<(), ViewError> {
        if on == self.bulk.load(Ordering::Acquire) {
            return Ok(());
        }
        if on {
            let path = format!("/{}/_alias/{}", self.index, self.alias);
            let serving = self.client.send(Method::Head, &path, &[], None, false, "read alias").await?;
            if serving.status == 200 {
                return Ok(());
            }
            self.set_settings(json!({ "index": { "refresh_interval": "-1", "number_of_replicas": 0 } })).await?;
            self.bulk.store(true, Ordering::Release);
            Ok(())
        } else {
            self.bulk.store(false, Ordering::Release);
            let replicas = self.config.replicas;
            self.set_settings(json!({ "index": { "refresh_interval": "1s", "number_of_replicas": replicas } })).await?;
            let path = format!("/{}/_refresh", self.index);
            if let Err(e) = self.client.json(Method::Post, &path, &[], None, "refresh").await {
                warn!(view = self.client.view, error = %e, "refresh after a bulk load failed; the next refresh makes it visible");
            }
            Ok(())
        }
    }
}
