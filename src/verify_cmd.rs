//! `annals verify EXPORT --public-key KEY [--previous-head FILE]`: checks an NDJSON export offline,
//! with nothing but the file and the log's public key (`GET /v1/integrity/public-key`, base64 or
//! PEM): the signed head, every line's leaf, completeness of the exported range, and consistency
//! with a head saved earlier. Names the first bad line and position; exits non-zero on any.

use std::path::PathBuf;

use annals_integrity::TreePublicKey;
use annals_query_api::integrity::verify_export::{parse_head, verify_export};
use anyhow::{bail, Context};
use clap::Args;

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The export file (NDJSON, as `GET /v1/audit/export` wrote it, uncompressed).
    export: PathBuf,
    /// The log's public key: a file holding its base64 or PEM (`GET /v1/integrity/public-key`).
    #[arg(long)]
    public_key: PathBuf,
    /// A signed head saved earlier (the JSON of `GET /v1/integrity/head`): the export's head must
    /// extend it (the export then needs `since_tree_size=` that head's size).
    #[arg(long)]
    previous_head: Option<PathBuf>,
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.public_key)
        .with_context(|| format!("cannot read the public key {}", args.public_key.display()))?;
    // The JSON of `GET /v1/integrity/public-key` is taken as well as the bare key.
    let key_text = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["public_key"].as_str().map(str::to_owned))
        .unwrap_or(text);
    let key = TreePublicKey::parse(&key_text).context("the public key")?;
    let previous = match &args.previous_head {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            Some(
                parse_head(&text)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("{} is not a head", path.display()))?,
            )
        }
        None => None,
    };
    let export = args.export.clone();
    let verified = tokio::task::spawn_blocking(move || verify_export(&export, &key, previous.as_ref())).await?;
    match verified {
        Ok(v) => {
            println!(
                "ok: {} records of tenant {} (and {} other events of it, {} events of other tenants) at positions {}..{}, complete against the signed head of size {}",
                v.records, v.tenant, v.other, v.foreign, v.from_position, v.tree_size, v.tree_size
            );
            Ok(())
        }
        Err(failure) => bail!("{} does not verify: {failure}", args.export.display()),
    }
}
