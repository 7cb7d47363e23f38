//! The OpenAPI document states exactly what the server accepts and answers: schemathesis (PyPI;
//! `scripts/test.sh` installs it) generates requests from `/openapi.json` for every operation,
//! valid ones and invalid ones, and checks each answer. It fails on any `5xx`, any status, content
//! type or body the document does not give for the operation, any request the schema calls
//! invalid that the server accepts (`negative_data_rejection`) and any request it calls valid
//! that the server refuses (`positive_data_acceptance`). A failure prints schemathesis' report:
//! each finding with the request as a `curl` line.
//!
//! A mismatch is fixed where it is wrong: in the server's validation, or in the document
//! (`query-api/src/contract.rs` states what validation checks beyond the Rust types).
//!
//! Bounded for the test command: `ANNALS_FUZZ_EXAMPLES` (default 12) cases per operation and
//! phase, `ANNALS_FUZZ_SEED` (default fixed, so a run is repeatable; `random` for a new one).
//! A longer hunt: `ANNALS_FUZZ_EXAMPLES=200 ANNALS_FUZZ_SEED=random cargo test -p annals-tests
//! --test api_fuzz -- --nocapture`.

use crate::support;

use std::time::Duration;

use serde_json::json;
use support::{append_n, TestApp};

/// The seed of the default run; any other value of `ANNALS_FUZZ_SEED` is used as it is.
const DEFAULT_SEED: &str = "20261206";

/// What schemathesis is told besides the command line (its `schemathesis.toml`).
const CONFIG: &str = r#"
# Every check schemathesis has (`--checks all` on the command line).
[checks]
enabled = true

# A `422` from the replay of parked events names positions that are not parked events waiting
# (the state of the log, which no schema can know), not a body of the wrong shape: a position
# the schema allows is accepted as a request and refused for what it names, as a `404` would be.
[[operations]]
include-path = "/v1/projections/{name}/parked/replay"
checks.positive_data_acceptance.expected-statuses = ["2xx", 401, 403, 404, 409, 422]

# Tree sizes and positions are the log's state, which no schema can know: a `tree_size` past the
# tree, one no head was signed for, or a `from_size` above `to_size` is a `400` naming the parameter.
[[operations]]
include-path-regex = "^/v1/(integrity/proof/|audit/export|messages/export)"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403, 404]

# A live tail does not end: schemathesis reads its events until this timeout and checks those.
# A resume point past the log's head (`Last-Event-ID`, `from_position`) is a `400` naming it:
# whether a position is past the head is the log's state, which no schema can know; the shape
# of the request is valid, so it counts as accepted like the replay's `422` above.
[[operations]]
include-path = "/v1/events/live"
request-timeout = 1.5
max-stream-events = 5
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403, 404]

# The invalidation feed does not end either; a `Last-Event-ID` is a position, as above.
[[operations]]
include-path = "/v1/invalidations"
request-timeout = 1.5
max-stream-events = 5
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403, 404]

# Read-your-writes: a `min_position` the view has not applied after 5 s (any position past the
# log's head, which most generated ones are) is a documented `503` with `Retry-After`, by design.
[[operations]]
include-path-regex = "^/v1/(messages|audit)"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", 503]

# An operation that only ever got 401/403 tested nothing: the key would have been revoked.
[warnings]
fail-on = ["missing_auth"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_mismatch_between_the_document_and_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    seed(&app).await;
    let config = tmp.path().join("schemathesis.toml");
    std::fs::write(&config, CONFIG).unwrap();

    // `DELETE /v1/keys/{id}` goes last, with only `POST /v1/keys` (whose keys it revokes,
    // following the link): `GET /v1/keys` would hand the stateful phase the fuzzer's own key's
    // id, and once that is revoked every other operation answers only `401`.
    // The tenant's `admin` key reads, appends and manages its tenant's keys; the projections
    // (which span tenants) are the operator's, whose key reads no data: each role is fuzzed on
    // what it may do, and the reader's pass below checks the `403`s.
    let admin = app.key.clone();
    let everything_else = run(
        &app,
        &config,
        &admin,
        &["--exclude-operation-id", "revoke_key", "--exclude-path-regex", "^/v1/projections"],
    )
    .await;
    let revoke =
        run(&app, &config, &admin, &["--include-operation-id", "create_key", "--include-operation-id", "revoke_key"])
            .await;
    let projections = run(&app, &config, &app.operator, &["--include-path-regex", "^/v1/projections"]).await;
    // A reader's key: what its role may not do must be a documented `403` everywhere. Most
    // operations answer it nothing else, by design, so the "only 401/403" warning is off here.
    let (status, reader) =
        app.post("/v1/keys", &json!({ "tenant": "default", "role": "reader", "name": "schemathesis" })).await;
    assert!(status.is_success(), "{reader}");
    let reader = reader["key"].as_str().unwrap().to_owned();
    let as_reader = run(&app, &config, &reader, &["--warnings", "off"]).await;
    app.stop().await;
    for (what, (ok, report)) in [
        ("every operation but key revocation", everything_else),
        ("key revocation", revoke),
        ("the projections with an operator's key", projections),
        ("every operation with a reader's key", as_reader),
    ] {
        assert!(ok, "schemathesis found mismatches ({what}); its report, with each request as a curl line:\n{report}");
    }
}

/// Something for the reads to find: a message with a few events, an audit entry, events of an
/// unregistered type; the views have applied them before the fuzzer starts.
async fn seed(app: &TestApp) {
    for kind in ["message.enqueued", "message.sent", "message.delivered"] {
        append_n(app, "message-m-0", kind, 1).await;
    }
    append_n(app, "audit-template-t-0", "audit.recorded", 1).await;
    let last = append_n(app, "order-1", "order.placed", 3).await["last_position"].as_u64().unwrap();
    for view in ["messages", "audit"] {
        let (status, body) = app.get(&format!("/v1/{view}?min_position={last}")).await;
        assert!(status.is_success(), "{view}: {body}");
        assert_ne!(body["items"], json!([]), "{view} has its document");
    }
}

/// Runs `schemathesis run` against `app` with `key` and `extra` arguments; whether it passed,
/// and its output.
async fn run(app: &TestApp, config: &std::path::Path, key: &str, extra: &[&str]) -> (bool, String) {
    let examples = std::env::var("ANNALS_FUZZ_EXAMPLES").unwrap_or_else(|_| "12".into());
    let seed = match std::env::var("ANNALS_FUZZ_SEED") {
        Ok(s) if s == "random" => rand::random::<u64>().to_string(),
        Ok(s) => s,
        Err(_) => DEFAULT_SEED.to_owned(),
    };
    // Through the `python3` that `scripts/test.sh` installed it for, whatever the PATH holds.
    let mut command = tokio::process::Command::new("python3");
    command
        .args(["-m", "schemathesis.cli", "--config-file"])
        .arg(config)
        .args(["--no-color", "run", &format!("{}/openapi.json", app.base)])
        .args(["--checks", "all", "--max-examples", &examples, "--seed", &seed])
        // One worker: hypothesis' lambda introspection is not thread-safe on Python 3.11 (a
        // second worker made it fail with "AST constructor recursion depth mismatch").
        .args(["--workers", "1"])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        // A read-your-writes wait takes up to 5 s before its `503`.
        .args(["--request-timeout", "10", "--output-sanitize", "false"])
        // No example database in the working directory: a run depends on its seed alone.
        .args(["--generation-database", "none"])
        .args(extra)
        // Its caches go to the test's temporary directory, not the working tree.
        .current_dir(config.parent().expect("the config is in the temporary directory"))
        .kill_on_drop(true);
    let output = match tokio::time::timeout(Duration::from_secs(600), command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            panic!("cannot run python3 -m schemathesis.cli ({e}); scripts/test.sh installs it: python3 -m pip install 'schemathesis>=4.32,<5'")
        }
        Err(_) => panic!("schemathesis ran for more than 10 minutes"),
    };
    let report = format!(
        "seed {seed}, {examples} examples (ANNALS_FUZZ_SEED, ANNALS_FUZZ_EXAMPLES)\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{report}");
    (output.status.success(), report)
}
