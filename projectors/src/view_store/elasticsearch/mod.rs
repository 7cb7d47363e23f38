//! The Elasticsearch backend of the view-store contract (feature `elasticsearch`): a view's
//! generations as indices of a cluster, written through `_bulk`, read through `_search`.
//!
//! # Format
//! - Generation N of view `v` is the index `{prefix}{v}-{N:06}` (`annals-messages-000002`),
//!   created from the composable template `{prefix}{v}` whose **strict** mappings come from the
//!   view's schema (`mapping.rs`). The alias `{prefix}{v}` names the serving generation; a
//!   rebuild moves it in one `_aliases` request (`hosting.rs`).
//! - A document's `_id` is `{len(tenant)}:{tenant}:{id}` and its routing is its tenant, so one
//!   tenant's documents share a shard: reads route by tenant, and terms aggregations over one
//!   shard count exactly. Its `_source` is `{tenant, id, version, <schema fields>, source}`, with
//!   the projection's JSON under `source` (not indexed).
//! - The checkpoint is the document `checkpoint` of the generation's index, written with
//!   `version_type=external` and the position's code as version (so it never moves back), and
//!   no `tenant` field (so no search ever matches it).
//!
//! # Recovery
//! Elasticsearch commits no batch atomically ([`Capabilities::atomic_checkpoint`] is `false`):
//! the runtime sends documents, then the checkpoint. A crash between them leaves documents ahead
//! of the checkpoint; the events are folded again on restart and their writes come back `409`
//! (external versions), which the writer counts as applied. The writer returns from a documents
//! commit only when every item is durable (`200`/`201`, or `409`: already applied) or rejected
//! (`400` for the document's content: reported in [`CommitOutcome`] so the runtime parks the
//! event); items answered `429`/`5xx` are retried alone with jittered backoff (`retry.rs`), and
//! if they keep failing the commit fails and the checkpoint is not written.
//!
//! # Visibility
//! Live batches are written with `refresh=wait_for`; while bulk loading (a rebuild, with
//! `refresh_interval: -1`) each commit ends with one explicit `_refresh`. Either way a commit is
//! searchable when it returns ([`Capabilities::visible_on_return`]). A reader reads the
//! checkpoint document with `realtime=false`, i.e. as of the last refresh, which holds the
//! documents written before it (guarantee 4).
//!
//! Files: `config.rs` (cluster settings), `mapping.rs` (schema → template), `bulk.rs` (NDJSON
//! bodies), `writer.rs` ([`ViewWriter`]), `reader.rs` ([`ViewReader`]), `query.rs` (the search
//! body), `hosting.rs` ([`ViewHosting`]), `health.rs` (the startup check), `retry.rs` (backoff).
//!
//! [`ViewWriter`]: crate::view_store::ViewWriter
//! [`ViewReader`]: crate::view_store::ViewReader
//! [`ViewHosting`]: crate::host::ViewHosting
//! [`Capabilities::atomic_checkpoint`]: crate::view_store::Capabilities::atomic_checkpoint
//! [`Capabilities::visible_on_return`]: crate::view_store::Capabilities::visible_on_return
//! [`CommitOutcome`]: crate::view_store::CommitOutcome

pub mod bulk;
pub mod config;
pub mod health;
pub mod hosting;
pub mod mapping;
mod query;
pub mod reader;
mod retry;
pub mod writer;

use bytes::Bytes;
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::Transport;
use elasticsearch::http::Method;

pub use bulk::WriteMode;
pub use config::{EsAuth, EsConfig, EsTls, RetryPolicy, Url};
pub use hosting::EsHosting;
pub use reader::EsViewReader;
pub use writer::EsViewWriter;

use crate::error::ViewError;

/// The concrete index of generation `generation` of `view`.
pub fn index_name(prefix: &str, view: &str, generation: u64) -> String {
    format!("{prefix}{view}-{generation:06}")
}

/// The read alias (and template name) of `view`.
pub fn alias_name(prefix: &str, view: &str) -> String {
    format!("{prefix}{view}")
}

/// The generation an index of `view` holds, if the name is one of its generations.
pub fn generation_of(prefix: &str, view: &str, index: &str) -> Option<u64> {
    let digits = index.strip_prefix(&alias_name(prefix, view))?.strip_prefix('-')?;
    (digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

/// An answer from the cluster: its status and body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
}

impl Reply {
    pub(crate) fn json(&self, view: &'static str) -> Result<serde_json::Value, ViewError> {
        serde_json::from_slice(&self.body).map_err(|e| ViewError::Backend {
            view,
            op: "decode a response",
            reason: e.to_string(),
        })
    }

    /// The `error.type` and `error.reason` of an error body (elasticsearch-specification
    /// `_types/Base.ts`, `ErrorResponseBase`: `{"error": {"type", "reason", …}, "status"}`).
    pub(crate) fn error(&self) -> String {
        let value: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        let kind = value["error"]["type"].as_str().unwrap_or("unknown");
        let reason = value["error"]["reason"].as_str().unwrap_or_else(|| std::str::from_utf8(&self.body).unwrap_or(""));
        format!("{} {kind}: {reason}", self.status)
    }

    pub(crate) fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The transport and the view it serves (for errors).
#[derive(Clone, Debug)]
pub(crate) struct Client {
    transport: Transport,
    pub(crate) view: &'static str,
}

impl Client {
    pub(crate) fn new(transport: Transport, view: &'static str) -> Self {
        Client { transport, view }
    }

    /// One request. `ndjson` sets the `_bulk` content type. A transport failure (refused,
    /// timed out) is a transient `Backend` error; statuses are the caller's to judge.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
        ndjson: bool,
        op: &'static str,
    ) -> Result<Reply, ViewError> {
        let mut headers = HeaderMap::new();
        if ndjson {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
        }
        let query = (!query.is_empty()).then_some(query);
        let response = self
            .transport
            .send(method, path, headers, query, body, None)
            .await
            .map_err(|e| ViewError::Backend { view: self.view, op, reason: e.to_string() })?;
        let status = response.status_code().as_u16();
        let body =
            response.bytes().await.map_err(|e| ViewError::Backend { view: self.view, op, reason: e.to_string() })?;
        Ok(Reply { status, body })
    }

    /// [`send`](Client::send) with a JSON body, failing on any status but 2xx.
    pub(crate) async fn json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
        op: &'static str,
    ) -> Result<serde_json::Value, ViewError> {
        let body = body.map(|b| serde_json::to_vec(b).expect("a JSON value serializes"));
        let reply = self.send(method, path, query, body, false, op).await?;
        if !reply.ok() {
            return Err(ViewError::Backend { view: self.view, op, reason: reply.error() });
        }
        reply.json(self.view)
    }
}
