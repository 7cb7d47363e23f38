//! `annals export audit|messages [filters] --output FILE`: downloads the tenant's audit or message
//! export (`GET /v1/audit/export`, `GET /v1/messages/export`, with the filters of the search
//! routes) to a file, with a progress bar on stderr (positions written of the head's size), and
//! resumes a broken download — after a dropped connection in the same run (a few retries), or in a
//! later run of the same command on the same file — with `after_position` at the head the download
//! started against, so that the file ends up byte-identical to an unbroken export. Needs a reader
//! or admin key: `--key` or `ANNALS_KEY`.
//!
//! While a download is incomplete, `FILE.export.json` holds what resuming needs (the tree size,
//! the route and its query); it is removed once the trailer is in the file. A later run with other
//! filters or format is refused rather than appending another export's lines.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The server's base URL.
    #[arg(long, env = "ANNALS_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// A reader or admin key of the tenant.
    #[arg(long, env = "ANNALS_KEY", hide_env_values = true, global = true)]
    key: Option<String>,
    #[command(subcommand)]
    what: ExportWhat,
}

#[derive(Subcommand, Debug)]
enum ExportWhat {
    /// The audit trail (`GET /v1/audit/export`), filtered as `GET /v1/audit`.
    Audit {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        filters: Box<AuditFilters>,
    },
    /// The message log (`GET /v1/messages/export`), filtered as `GET /v1/messages`.
    Messages {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        filters: Box<MessageFilters>,
    },
}

#[derive(Args, Debug)]
struct Common {
    /// Where to write it; an incomplete download there is resumed.
    #[arg(long)]
    output: PathBuf,
    /// `ndjson` (what `annals verify` checks) or `csv`.
    #[arg(long, default_value = "ndjson")]
    format: String,
    /// Carry the consistency proof from this earlier tree size (see `annals verify --previous-head`).
    #[arg(long)]
    since_tree_size: Option<u64>,
    /// Cut the export at the signed head of this size (default: the tree now).
    #[arg(long)]
    tree_size: Option<u64>,
}

/// The filters of `GET /v1/audit` (the server checks them, as the search does).
#[derive(Args, Debug)]
struct AuditFilters {
    /// The actor's id.
    #[arg(long)]
    actor: Option<String>,
    /// An action, or every action under a prefix (`template.*`).
    #[arg(long)]
    action: Option<String>,
    #[arg(long)]
    target_type: Option<String>,
    #[arg(long)]
    target_id: Option<String>,
    /// `success` or `failure`.
    #[arg(long)]
    outcome: Option<String>,
    /// Full text over action, actor name, target name and reason.
    #[arg(long)]
    q: Option<String>,
    /// Recorded at or after this time (RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Recorded before this time (RFC 3339).
    #[arg(long)]
    to: Option<String>,
}

/// The filters of `GET /v1/messages` (the server checks them, as the search does).
#[derive(Args, Debug)]
struct MessageFilters {
    /// Comma-separated statuses (`SENT,DELIVERED`).
    #[arg(long)]
    status: Option<String>,
    /// A recipient id, email or phone, exactly.
    #[arg(long)]
    recipient: Option<String>,
    #[arg(long)]
    channel: Option<String>,
    #[arg(long)]
    provider: Option<String>,
    /// A template id.
    #[arg(long)]
    template: Option<String>,
    #[arg(long)]
    tag: Option<String>,
    /// `true`: messages with a delivery error; `false`: without.
    #[arg(long)]
    has_errors: Option<bool>,
    /// Full text over subject, recipient and template.
    #[arg(long)]
    q: Option<String>,
    /// Created at or after this time (RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Created before this time (RFC 3339).
    #[arg(long)]
    to: Option<String>,
}

/// The route and the query (format, filters, `since_tree_size`) of the download.
fn request_of(what: ExportWhat) -> (&'static str, PathBuf, Vec<(&'static str, String)>) {
    let pairs = |pairs: Vec<(&'static str, Option<String>)>| -> Vec<(&'static str, String)> {
        pairs.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect()
    };
    let (path, common, filters) = match what {
        ExportWhat::Audit { common, filters: f } => (
            "/v1/audit/export",
            common,
            pairs(vec![
                ("actor", f.actor),
                ("action", f.action),
                ("target_type", f.target_type),
                ("target_id", f.target_id),
                ("outcome", f.outcome),
                ("q", f.q),
                ("from", f.from),
                ("to", f.to),
            ]),
        ),
        ExportWhat::Messages { common, filters: f } => (
            "/v1/messages/export",
            common,
            pairs(vec![
                ("status", f.status),
                ("recipient", f.recipient),
                ("channel", f.channel),
                ("provider", f.provider),
                ("template", f.template),
                ("tag", f.tag),
                ("has_errors", f.has_errors.map(|b| b.to_string())),
                ("q", f.q),
                ("from", f.from),
                ("to", f.to),
            ]),
        ),
    };
    let mut query = vec![("format", common.format)];
    query.extend(common.since_tree_size.map(|s| ("since_tree_size", s.to_string())));
    query.extend(common.tree_size.map(|s| ("tree_size", s.to_string())));
    query.extend(filters);
    (path, common.output, query)
}

/// Retries of a dropped download within one run.
const RETRIES: u32 = 5;

pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    let key = args.key.context("no key: pass --key or set ANNALS_KEY")?;
    let (path, output, base_query) = request_of(args.what);
    let request = Request { url: format!("{}{path}", args.url.trim_end_matches('/')), key, path };
    let state_path = sidecar(&output);
    // Identity encoding, whatever features other crates turn on in reqwest (the Elasticsearch
    // client enables gzip): a resume restarts at a byte offset of what the server sent.
    let client = reqwest::Client::builder().no_gzip().build().context("an HTTP client")?;
    let mut attempt = 0;
    loop {
        let resume = resume_point(&output, &state_path, path, &base_query)?;
        let mut query = base_query.clone();
        match &resume {
            Resume::Complete => {
                let _ = std::fs::remove_file(&state_path);
                eprintln!("{} is complete", output.display());
                return Ok(());
            }
            Resume::Fresh => {}
            Resume::After { position, tree_size } => {
                // The head the download started against, whatever `--tree-size` said.
                query.retain(|(k, _)| *k != "tree_size");
                query.extend(position.map(|p| ("after_position", p.to_string())));
                query.push(("tree_size", tree_size.to_string()));
            }
        }
        match download(&client, &request, &query, &output, &state_path, &base_query, &resume).await {
            Ok(()) => {
                let _ = std::fs::remove_file(&state_path);
                eprintln!("\nwrote {}", output.display());
                return Ok(());
            }
            Err(e) if attempt < RETRIES && e.downcast_ref::<reqwest::Error>().is_some() => {
                attempt += 1;
                eprintln!("\nthe download broke ({e:#}); resuming (attempt {attempt} of {RETRIES})");
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One progress bar on stderr, redrawn in place: `[#####     ]  50% 1,234 of 2,468 positions, 3.1 MiB`.
fn progress(done: u64, total: u64, bytes: u64) {
    const WIDTH: u64 = 30;
    let done = done.min(total);
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    let bar: String = (0..WIDTH).map(|i| if i < filled { '#' } else { ' ' }).collect();
    eprint!("\r[{bar}] {percent:>3}% {done} of {total} positions, {:.1} MiB", bytes as f64 / 1_048_576.0);
}

/// The length of the file up to its last newline, and its last complete line, reading backwards
/// from the end only as far as that line starts (memory: one line, whatever the file's size).
fn last_complete_line(file: &mut std::fs::File) -> std::io::Result<(u64, Option<String>)> {
    const BLOCK: u64 = 64 * 1024;
    let len = file.metadata()?.len();
    let (mut start, mut tail) = (len, Vec::new());
    loop {
        let from = start.saturating_sub(BLOCK);
        let mut block = vec![0; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&tail);
        tail = block;
        start = from;
        if let Some(end) = tail.iter().rposition(|&b| b == b'\n') {
            let begin = tail[..end].iter().rposition(|&b| b == b'\n').map(|i| i + 1);
            if begin.is_some() || start == 0 {
                let line = String::from_utf8_lossy(&tail[begin.unwrap_or(0)..end]).into_owned();
                return Ok((start + end as u64 + 1, Some(line)));
            }
        } else if start == 0 {
            return Ok((0, None));
        }
    }
}

fn sidecar(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".export.json");
    PathBuf::from(name)
}

enum Resume {
    Fresh,
    Complete,
    /// Continue after `position` (none: no line yet) at the head of `tree_size`.
    After {
        position: Option<u64>,
        tree_size: u64,
    },
}

/// Where a download goes.
struct Request {
    url: String,
    key: String,
    path: &'static str,
}

/// What the file and its sidecar say: a fresh download, a complete one, or where to go on.
/// A partial last line is cut off. A sidecar of another route or query is refused.
fn resume_point(
    output: &Path,
    state_path: &Path,
    path: &str,
    query: &[(&'static str, String)],
) -> anyhow::Result<Resume> {
    let Ok(state) = std::fs::read_to_string(state_path) else {
        if output.exists() {
            bail!(
                "{} exists and is no incomplete download of `annals export`; choose another --output",
                output.display()
            );
        }
        return Ok(Resume::Fresh);
    };
    let state: Value = serde_json::from_str(&state).context("the download's state file")?;
    let tree_size = state["tree_size"].as_u64().context("the state file has no tree_size")?;
    if let Some(started) = state.get("request") {
        if *started != request_json(path, query) {
            bail!(
                "{} is an incomplete download of another export ({started}); run that command again or choose another --output",
                output.display()
            );
        }
    }
    let mut file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(output)?;
    let (complete, last) = last_complete_line(&mut file)?;
    file.set_len(complete)?;
    let Some(last) = last else { return Ok(Resume::After { position: None, tree_size }) };
    let last = last.trim_end();
    if last.starts_with(",trailer,") || last.contains("\"kind\":\"trailer\"") {
        return Ok(Resume::Complete);
    }
    let position = match serde_json::from_str::<Value>(last) {
        Ok(line) => line["position"].as_u64(),
        // CSV: the position is the first cell (none in the header row).
        Err(_) => last.split(',').next().and_then(|cell| cell.parse().ok()),
    };
    Ok(Resume::After { position, tree_size })
}

/// The route and query a sidecar records, to refuse resuming with another.
fn request_json(path: &str, query: &[(&'static str, String)]) -> Value {
    json!({ "path": path, "query": query.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>() })
}

async fn download(
    client: &reqwest::Client,
    request: &Request,
    query: &[(&str, String)],
    output: &Path,
    state_path: &Path,
    base_query: &[(&'static str, String)],
    resume: &Resume,
) -> anyhow::Result<()> {
    let mut response = client.get(&request.url).bearer_auth(&request.key).query(query).send().await?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        bail!("the server answered {status}: {body}");
    }
    let tree_size: u64 = response
        .headers()
        .get("annals-export-tree-size")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .context("the response has no Annals-Export-Tree-Size header")?;
    if matches!(resume, Resume::Fresh) {
        let state = json!({ "tree_size": tree_size, "request": request_json(request.path, base_query) });
        std::fs::write(state_path, state.to_string())?;
    }
    let mut file = std::fs::OpenOptions::new().append(true).create(true).open(output)?;
    // Progress: the export has one line per position up to the head's size, so lines written
    // (after the position resumed from) over that size is the share done.
    let mut done = match resume {
        Resume::After { position: Some(p), .. } => p + 1,
        _ => 0,
    };
    let (mut written, mut shown) = (0u64, Instant::now());
    while let Some(chunk) = response.chunk().await? {
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
        done += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        if shown.elapsed() > Duration::from_millis(250) {
            progress(done, tree_size, written);
            shown = Instant::now();
        }
    }
    file.sync_all()?;
    progress(tree_size, tree_size, written);
    match resume_point(output, state_path, request.path, base_query)? {
        Resume::Complete => Ok(()),
        _ => bail!("the export ended without its trailer; run the same command again to resume"),
    }
}
