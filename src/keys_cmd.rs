//! `annals keys create|list|revoke`: API key management through a running server's `/v1/keys`
//! (the store is the server's, and key management must leave its audit trail there). Needs an
//! operator key (any tenant) or a tenant's admin key (its own tenant): `--key` or `ANNALS_KEY`;
//! the server: `--url` or `ANNALS_URL`.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct KeysArgs {
    /// The server's base URL.
    #[arg(long, env = "ANNALS_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// An operator key, or an admin key of the tenant.
    #[arg(long, env = "ANNALS_KEY", hide_env_values = true, global = true)]
    key: Option<String>,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Create a key; prints it once.
    Create {
        #[arg(long)]
        tenant: String,
        /// writer, reader, admin (of the tenant) or operator (every tenant's keys and the
        /// projections; no tenant's data).
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List every key (without secrets).
    List,
    /// Revoke a key by id.
    Revoke { id: String },
}

pub async fn run(args: KeysArgs) -> anyhow::Result<()> {
    let key = args.key.context("an operator or admin key is needed: --key or ANNALS_KEY")?;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", args.url.trim_end_matches('/'));
    let request = match &args.command {
        KeysCommand::Create { tenant, role, name } => {
            client.post(url("/v1/keys")).json(&json!({ "tenant": tenant, "role": role, "name": name }))
        }
        KeysCommand::List => client.get(url("/v1/keys")),
        KeysCommand::Revoke { id } => client.delete(url(&format!("/v1/keys/{id}"))),
    };
    let response = request.bearer_auth(key).send().await.with_context(|| format!("cannot reach {}", args.url))?;
    let status = response.status();
    let body: Value = response.json().await.context("the server's answer is not JSON")?;
    if !status.is_success() {
        bail!("{status}: {}", body["detail"].as_str().unwrap_or("no detail"));
    }
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}
