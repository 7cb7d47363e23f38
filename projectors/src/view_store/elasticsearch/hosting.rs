//! [`ViewHosting`] on Elasticsearch: one concrete index per generation
//! (`{prefix}{view}-{N:06}`), made from the view's template, and the read alias `{prefix}{view}`
//! naming the serving one.
//!
//! - `current`: the index the alias points at (`GET /_alias/{alias}`); no alias yet is
//!   generation 1.
//! - `switch`: one `POST /_aliases` with a `remove` of the alias from every generation and an
//!   `add` to the new one. Elasticsearch applies the actions of one request atomically, so a
//!   reader of the alias sees the old generation or the new one, never none or both
//!   (elasticsearch-specification `indices/update_aliases`: `Action` with `add`/`remove`,
//!   `must_exist`; answer `AcknowledgedResponseBase`, `{"acknowledged": true}`).
//! - `remove_others`: deletes the generations not kept once `old_index_grace` has passed after
//!   the call (readers opened on the old index finish their pages meanwhile).
//!
//! Readers read their generation's index; the alias is what `current` reads and what operators'
//! tools (Kibana, `_search` by hand) read.

use std::sync::Arc;

use async_trait::async_trait;
use elasticsearch::http::Method;
use serde_json::json;
use tokio::sync::OnceCell;
use tracing::{info, warn};

use super::bulk::WriteMode;
use super::config::EsConfig;
use super::mapping;
use super::reader::EsViewReader;
use super::writer::EsViewWriter;
use super::{alias_name, generation_of, index_name, Client};
use crate::error::ViewError;
use crate::host::ViewHosting;
use crate::view_store::{ViewHalves, ViewReader, ViewSchema};

/// The generations of one Elasticsearch view.
#[derive(Debug)]
pub struct EsHosting {
    client: Client,
    config: Arc<EsConfig>,
    schema: ViewSchema,
    mode: WriteMode,
    /// The template is put once per process, before the first index is made.
    template: OnceCell<()>,
}

impl EsHosting {
    /// The view of `schema` on the cluster `config` names, written as `mode` says. Sends
    /// nothing: the startup check (`health.rs`) is what talks to the cluster first.
    pub fn new(config: Arc<EsConfig>, schema: ViewSchema, mode: WriteMode) -> Result<Self, ViewError> {
        mapping::check(&schema)?;
        let client = Client::new(config.transport()?, schema.name);
        Ok(EsHosting { client, config, schema, mode, template: OnceCell::new() })
    }

    fn prefix(&self) -> &str {
        &self.config.index_prefix
    }

    fn index(&self, generation: u64) -> String {
        index_name(self.prefix(), self.schema.name, generation)
    }

    fn alias(&self) -> String {
        alias_name(self.prefix(), self.schema.name)
    }

    async fn put_template(&self) -> Result<(), ViewError> {
        let body = mapping::index_template(&self.schema, self.prefix(), self.config.shards, self.config.replicas);
        let path = format!("/_index_template/{}", self.alias());
        self.client.json(Method::Put, &path, &[], Some(&body), "put index template").await.map(drop)
    }

    /// Creates the index of `generation` unless it exists.
    async fn create_index(&self, generation: u64) -> Result<(), ViewError> {
        self.template.get_or_try_init(|| self.put_template()).await?;
        let path = format!("/{}", self.index(generation));
        let reply = self.client.send(Method::Put, &path, &[], Some(b"{}".to_vec()), false, "create index").await?;
        let exists = reply.status == 400 && reply.error().contains("resource_already_exists_exception");
        if reply.ok() || exists {
            Ok(())
        } else {
            Err(ViewError::Backend { view: self.schema.name, op: "create index", reason: reply.error() })
        }
    }

    /// The indices of this view's generations, by name.
    async fn generations(&self) -> Result<Vec<(u64, String)>, ViewError> {
        let path = format!("/_cat/indices/{}-*", self.alias());
        let query = [("format", "json".to_owned()), ("h", "index".to_owned())];
        let rows = self.client.json(Method::Get, &path, &query, None, "list indices").await?;
        let mut out: Vec<(u64, String)> = rows
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|row| row["index"].as_str())
            .filter_map(|name| generation_of(self.prefix(), self.schema.name, name).map(|g| (g, name.to_owned())))
            .collect();
        out.sort();
        Ok(out)
    }

    fn halves(&self, generation: u64) -> ViewHalves {
        let index = self.index(generation);
        let writer = EsViewWriter::new(
            self.client.clone(),
            index.clone(),
            self.alias(),
            self.mode,
            self.schema.clone(),
            Arc::clone(&self.config),
        );
        let reader = EsViewReader::new(self.client.clone(), index, self.schema.clone());
        ViewHalves { reader: Arc::new(reader), writer: Arc::new(writer) }
    }
}

#[async_trait]
impl ViewHosting for EsHosting {
    fn name(&self) -> &'static str {
        self.schema.name
    }

    async fn current(&self) -> Result<u64, ViewError> {
        let view = self.schema.name;
        let path = format!("/_alias/{}", self.alias());
        let reply = self.client.send(Method::Get, &path, &[], None, false, "read alias").await?;
        match reply.status {
            404 => Ok(1),
            200 => {
                // `{"<index>": {"aliases": {"<alias>": {}}}}`: one index, if annals set it.
                let body = reply.json(view)?;
                let indices: Vec<&String> = body.as_object().map(|o| o.keys().collect()).unwrap_or_default();
                match indices.as_slice() {
                    [one] => generation_of(self.prefix(), view, one).ok_or_else(|| ViewError::Corrupt {
                        view,
                        reason: format!("the alias {} names {one}, not a generation of the view", self.alias()),
                    }),
                    _ => Err(ViewError::Corrupt {
                        view,
                        reason: format!("the alias {} names {indices:?}", self.alias()),
                    }),
                }
            }
            _ => Err(ViewError::Backend { view, op: "read alias", reason: reply.error() }),
        }
    }

    async fn open(&self, generation: u64) -> Result<ViewHalves, ViewError> {
        self.create_index(generation).await?;
        // A view never switched has no alias yet: its first generation gets it, so reads of the
        // alias work from the start.
        let path = format!("/_alias/{}", self.alias());
        let reply = self.client.send(Method::Head, &path, &[], None, false, "read alias").await?;
        if reply.status == 404 && generation == 1 {
            self.switch(1).await?;
        }
        Ok(self.halves(generation))
    }

    async fn open_reader(&self, generation: u64) -> Result<Arc<dyn ViewReader>, ViewError> {
        Ok(self.halves(generation).reader)
    }

    async fn exists(&self, generation: u64) -> Result<bool, ViewError> {
        let path = format!("/{}", self.index(generation));
        let reply = self.client.send(Method::Head, &path, &[], None, false, "check index").await?;
        match reply.status {
            200 => Ok(true),
            404 => Ok(false),
            status => Err(ViewError::Backend {
                view: self.schema.name,
                op: "check index",
                reason: format!("HEAD answered {status}"),
            }),
        }
    }

    async fn switch(&self, generation: u64) -> Result<(), ViewError> {
        let alias = self.alias();
        let body = json!({ "actions": [
            { "remove": { "index": format!("{alias}-*"), "alias": alias, "must_exist": false } },
            { "add": { "index": self.index(generation), "alias": alias } }
        ] });
        let answer = self.client.json(Method::Post, "/_aliases", &[], Some(&body), "swap alias").await?;
        if answer["acknowledged"].as_bool() != Some(true) {
            return Err(ViewError::Backend { view: self.schema.name, op: "swap alias", reason: answer.to_string() });
        }
        info!(view = self.schema.name, generation, alias = %alias, "read alias switched");
        Ok(())
    }

    async fn remove_others(&self, keep: &[u64]) -> Result<Vec<String>, ViewError> {
        let doomed: Vec<String> =
            self.generations().await?.into_iter().filter(|(g, _)| !keep.contains(g)).map(|(_, name)| name).collect();
        if doomed.is_empty() {
            return Ok(doomed);
        }
        let (client, grace, names) = (self.client.clone(), self.config.old_index_grace, doomed.clone());
        let delete = async move {
            tokio::time::sleep(grace).await;
            for name in names {
                match client.send(Method::Delete, &format!("/{name}"), &[], None, false, "delete index").await {
                    Ok(reply) if reply.ok() || reply.status == 404 => info!(index = %name, "old generation deleted"),
                    Ok(reply) => {
                        warn!(index = %name, error = %reply.error(), "deleting an old generation failed; the next rebuild retries")
                    }
                    Err(e) => {
                        warn!(index = %name, error = %e, "deleting an old generation failed; the next rebuild retries")
                    }
                }
            }
        };
        if grace.is_zero() {
            delete.await;
        } else {
            // A process that stops before the grace ends leaves the index; the next
            // `remove_others` (every rebuild's end, every start) deletes it.
            tokio::spawn(delete);
        }
        Ok(doomed)
    }
}
