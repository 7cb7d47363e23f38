//! `annals projections list|rebuild NAME|parked NAME|replay NAME`: where each projection stands,
//! rebuilds on demand, and the events a view could not apply, through a running server's
//! `/v1/projections` (a rebuild or a replay is an event the server's projectors act on).
//! `rebuild` follows the new generation with a progress bar until it serves, `replay` waits until
//! the projection has passed the request and prints what each event did; `--no-wait` only asks.
//! Needs an operator key: `--key` or `ANNALS_KEY`. Parked events show their kind of error, never
//! the event's data (an operator key reads no tenant's data).

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::Value;

#[derive(Args, Debug)]
pub struct ProjectionsArgs {
    /// The server's base URL.
    #[arg(long, env = "ANNALS_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// An operator key.
    #[arg(long, env = "ANNALS_KEY", hide_env_values = true, global = true)]
    key: Option<String>,
    #[command(subcommand)]
    command: ProjectionsCommand,
}

#[derive(Subcommand, Debug)]
enum ProjectionsCommand {
    /// Every projection: generation, state, checkpoint, lag, parked events, rebuild.
    List,
    /// Rebuild a projection's view from the log into a new generation; the current one serves
    /// until the new one has caught up.
    Rebuild {
        /// `messages` or `audit`.
        name: String,
        /// Ask for the rebuild and return, without following it.
        #[arg(long)]
        no_wait: bool,
    },
    /// The events a projection could not apply and still waits on (with `--all`, replayed ones
    /// too), oldest first.
    Parked {
        /// `messages` or `audit`.
        name: String,
        #[arg(long)]
        all: bool,
    },
    /// Apply parked events again once their cause is fixed: all of them, or those at
    /// `--position`.
    Replay {
        /// `messages` or `audit`.
        name: String,
        /// A parked event's position (repeatable); default: every parked event.
        #[arg(long = "position")]
        positions: Vec<u64>,
        /// Ask for the replay and return, without waiting for it.
        #[arg(long)]
        no_wait: bool,
    },
}

pub async fn run(args: ProjectionsArgs) -> anyhow::Result<()> {
    let api = Api {
        client: reqwest::Client::new(),
        base: args.url.trim_end_matches('/').to_owned(),
        key: args.key.context("an operator key is needed: --key or ANNALS_KEY")?,
    };
    match args.command {
        ProjectionsCommand::List => {
            let list = api.send(api.client.get(api.url("/v1/projections"))).await?;
            println!(
                "{:<10} {:>4} {:<12} {:>12} {:>12} {:>9} {:>7}  rebuild",
                "name", "gen", "state", "checkpoint", "lag events", "lag s", "parked"
            );
            for p in list["projections"].as_array().into_iter().flatten() {
                let rebuild = match &p["rebuild"] {
                    Value::Null => "-".to_owned(),
                    r => format!("gen {} at {:.0}%", r["generation"], r["progress"].as_f64().unwrap_or(0.0) * 100.0),
                };
                println!(
                    "{:<10} {:>4} {:<12} {:>12} {:>12} {:>9.1} {:>7}  {rebuild}",
                    p["name"].as_str().unwrap_or("?"),
                    p["generation"],
                    p["state"].as_str().unwrap_or("?"),
                    p["checkpoint"],
                    p["lag_events"],
                    p["lag_seconds"].as_f64().unwrap_or(0.0),
                    p["parked_events"],
                );
            }
            Ok(())
        }
        ProjectionsCommand::Rebuild { name, no_wait } => {
            let accepted = api.send(api.client.post(api.url(&format!("/v1/projections/{name}/rebuild")))).await?;
            let generation = accepted["generation"].as_u64().context("the answer names no generation")?;
            println!("rebuilding {name} into generation {generation}");
            if no_wait {
                return Ok(());
            }
            follow(&api, &name, generation).await
        }
        ProjectionsCommand::Parked { name, all } => {
            let status = if all { "" } else { "&status=parked" };
            let mut path = format!("/v1/projections/{name}/parked?limit=1000{status}");
            println!("{:>12}  {:<9} {:<24} {:<40} error", "position", "status", "type", "stream");
            loop {
                let page = api.send(api.client.get(api.url(&path))).await?;
                for item in page["items"].as_array().into_iter().flatten() {
                    let entry = &item["entry"];
                    // The latest replay's error when there is one: it is the current reason.
                    let last_error =
                        item["replays"].as_array().and_then(|r| r.last()).and_then(|r| r["error_kind"].as_str());
                    println!(
                        "{:>12}  {:<9} {:<24} {:<40} {}",
                        entry["position"],
                        item["status"].as_str().unwrap_or("?"),
                        entry["event_type"].as_str().unwrap_or("?"),
                        entry["stream"].as_str().unwrap_or("?"),
                        last_error.or(entry["error_kind"].as_str()).unwrap_or(""),
                    );
                }
                match page["next"].as_str() {
                    Some(next) => path = next.to_owned(),
                    None => return Ok(()),
                }
            }
        }
        ProjectionsCommand::Replay { name, positions, no_wait } => {
            let body = if positions.is_empty() {
                serde_json::json!({})
            } else {
                serde_json::json!({ "positions": positions })
            };
            let url = api.url(&format!("/v1/projections/{name}/parked/replay"));
            let accepted = api.send(api.client.post(url).json(&body)).await?;
            let Some(at) = accepted["replay_position"].as_u64() else {
                println!("nothing is parked in {name}");
                return Ok(());
            };
            println!("replaying {} parked event(s) of {name} (request at position {at})", accepted["events"]);
            if no_wait {
                return Ok(());
            }
            replayed(&api, &name, at).await
        }
    }
}

/// Draws a progress bar on stderr until `generation` serves.
async fn follow(api: &Api, name: &str, generation: u64) -> anyhow::Result<()> {
    let mut stderr = std::io::stderr();
    loop {
        let p = api.send(api.client.get(api.url(&format!("/v1/projections/{name}")))).await?;
        if p["generation"].as_u64() >= Some(generation) {
            writeln!(stderr)?;
            println!("generation {generation} of {name} serves (checkpoint {})", p["checkpoint"]);
            return Ok(());
        }
        if let Some(r) = p["rebuild"].as_object() {
            let done = r.get("progress").and_then(Value::as_f64).unwrap_or(0.0).clamp(0.0, 1.0);
            let width = 30;
            let filled = (done * width as f64).round() as usize;
            let eta = r.get("eta_seconds").and_then(Value::as_f64).map_or("?".to_owned(), |s| format!("{s:.0} s"));
            let rate = r.get("events_per_second").and_then(Value::as_f64).unwrap_or(0.0);
            write!(
                stderr,
                "\r[{}{}] {:>5.1}%  {rate:>9.0} events/s  ETA {eta:<8}",
                "#".repeat(filled),
                " ".repeat(width - filled),
                done * 100.0
            )?;
            stderr.flush()?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the projection has passed the replay request at `at`, then counts its outcomes.
async fn replayed(api: &Api, name: &str, at: u64) -> anyhow::Result<()> {
    loop {
        let p = api.send(api.client.get(api.url(&format!("/v1/projections/{name}")))).await?;
        if p["checkpoint"].as_u64() >= Some(at) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut applied, mut failed) = (0, 0);
    let mut path = format!("/v1/projections/{name}/parked?limit=1000");
    loop {
        let page = api.send(api.client.get(api.url(&path))).await?;
        for item in page["items"].as_array().into_iter().flatten() {
            let outcome =
                item["replays"].as_array().into_iter().flatten().find(|r| r["replayed_at"].as_u64() == Some(at));
            match outcome.and_then(|r| r["outcome"].as_str()) {
                Some("applied") => applied += 1,
                Some(_) => failed += 1,
                None => {}
            }
        }
        match page["next"].as_str() {
            Some(next) => path = next.to_owned(),
            None => break,
        }
    }
    println!("replayed: {applied} applied, {failed} failed again (still parked; `annals projections parked {name}`)");
    Ok(())
}

struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response =
            request.bearer_auth(&self.key).send().await.with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status();
        let body: Value = response.json().await.context("the server's answer is not JSON")?;
        if !status.is_success() {
            bail!("{status}: {}", body["detail"].as_str().unwrap_or("no detail"));
        }
        Ok(body)
    }
}
