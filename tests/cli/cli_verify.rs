//! `annals verify` end to end, with the real binary: an audit export taken over HTTP from a
//! running `annals serve` verifies offline with the served public key, and fails — naming the
//! line and position — after each way of tampering with it: a flipped byte of an event's data (in
//! the decoded fields, and in the event bytes), a deleted record, two records swapped, a duplicated
//! record, a changed tree size in the trailer, a tenant's event passed off as another tenant's.
//! Another tenant's export holds none of the first tenant's data and verifies too. A tree deleted
//! from the data directory is rebuilt from the log to the roots signed before.

use crate::serve_support;

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use serde_json::{json, Value};
use serve_support::{Serve, ADMIN_KEY};

struct Api {
    base: String,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Api {
    fn send(&self, method: reqwest::Method, path: &str, key: &str, body: Option<Value>) -> (u16, String) {
        self.rt.block_on(async {
            let mut request = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(key);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    }
    fn get(&self, path: &str, key: &str) -> String {
        let (status, body) = self.send(reqwest::Method::GET, path, key, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }
    fn key(&self, tenant: &str) -> String {
        let body = json!({ "tenant": tenant, "role": "admin", "name": "verify" });
        let (status, text) = self.send(reqwest::Method::POST, "/v1/keys", ADMIN_KEY, Some(body));
        assert_eq!(status, 201, "{text}");
        serde_json::from_str::<Value>(&text).unwrap()["key"].as_str().unwrap().to_owned()
    }
    fn append(&self, key: &str, stream: &str, kind: &str, data: Value) -> u64 {
        let body = json!({ "events": [{ "type": kind, "data": data }] });
        let (status, text) = self.send(reqwest::Method::POST, &format!("/v1/streams/{stream}/events"), key, Some(body));
        assert_eq!(status, 201, "{text}");
        serde_json::from_str::<Value>(&text).unwrap()["last_position"].as_u64().unwrap()
    }
    /// A fresh signed head once the tree covers `position`.
    fn head_covering(&self, key: &str, position: u64) -> String {
        for _ in 0..400 {
            let head = self.get("/v1/integrity/head?fresh=true", key);
            if serde_json::from_str::<Value>(&head).unwrap()["tree_size"].as_u64().unwrap() > position {
                return head;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("the tree never covered position {position}");
    }
}

fn audit(action: &str, target: &str) -> Value {
    json!({
        "actor": { "id": "user-1", "type": "user" },
        "action": action,
        "crud": "update",
        "target": { "type": "template", "id": target },
        "outcome": "success",
        "occurred_at": "2026-11-24T10:00:00Z"
    })
}

fn verify(export: &Path, key: &Path, previous: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_annals"));
    command.arg("verify").arg(export).arg("--public-key").arg(key);
    if let Some(previous) = previous {
        command.arg("--previous-head").arg(previous);
    }
    command.output().expect("run annals verify")
}

fn assert_fails(dir: &Path, key: &Path, name: &str, lines: &[String], expect: &str) {
    let path = dir.join(format!("{name}.ndjson"));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let out = verify(&path, key, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{name}: a tampered export verified");
    assert!(stderr.contains(expect), "{name}: expected {expect:?} in {stderr}");
}

#[test]
fn exports_verify_offline_and_every_tampering_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Serve::start(&tmp.path().join("data"), &[]);
    let api =
        Api { base: server.base.clone(), client: reqwest::Client::new(), rt: tokio::runtime::Runtime::new().unwrap() };
    let acme = api.key("acme");
    let globex = api.key("globex");
    api.append(&acme, "audit-a", "audit.recorded", audit("acme.secret.updated", "t-acme-1"));
    api.append(&globex, "audit-g", "audit.recorded", audit("globex.thing.updated", "t-globex-1"));
    api.append(&acme, "orders", "order.placed", json!({ "order": "acme-order-7" }));
    let mid = api.append(&acme, "audit-a", "audit.recorded", audit("acme.secret.deleted", "t-acme-2"));
    let previous_head = api.head_covering(&acme, mid);
    api.append(&globex, "audit-g", "audit.recorded", audit("globex.thing.deleted", "t-globex-2"));
    let last = api.append(&acme, "audit-a", "audit.recorded", audit("acme.secret.created", "t-acme-3"));
    api.head_covering(&acme, last);

    let key_path = tmp.path().join("public.key");
    let key: Value = serde_json::from_str(&api.get("/v1/integrity/public-key", &acme)).unwrap();
    std::fs::write(&key_path, key["public_key"].as_str().unwrap()).unwrap();
    let previous_path = tmp.path().join("previous-head.json");
    std::fs::write(&previous_path, &previous_head).unwrap();
    let previous_size = serde_json::from_str::<Value>(&previous_head).unwrap()["tree_size"].as_u64().unwrap();

    let text = api.get(&format!("/v1/audit/export?since_tree_size={previous_size}"), &acme);
    let export = tmp.path().join("acme.ndjson");
    std::fs::write(&export, &text).unwrap();
    let out = verify(&export, &key_path, Some(&previous_path));
    assert!(out.status.success(), "the untouched export: {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 records of tenant acme"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let parsed: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let records: Vec<usize> = (0..parsed.len()).filter(|&i| parsed[i]["kind"] == "record").collect();
    assert_eq!(records.len(), 3);
    let (r0, r1) = (records[0], records[1]);

    // One byte of an event's data, in the fields people read.
    let mut t = lines.clone();
    t[r1] = t[r1].replace("t-acme-2", "t-acme-3");
    assert_fails(tmp.path(), &key_path, "fields", &t, &format!("line {} (position", r1 + 1));
    // One byte of JSON whitespace in the data: the same value, not the bytes the event holds.
    let mut t = lines.clone();
    t[r1] = t[r1].replacen("\"data\":{", "\"data\":{ ", 1);
    assert_ne!(t[r1], lines[r1]);
    assert_fails(tmp.path(), &key_path, "whitespace", &t, &format!("line {} (position", r1 + 1));
    // One byte of an event's data, in its event bytes.
    let mut v = parsed[r1].clone();
    let mut bytes = base64::engine::general_purpose::STANDARD.decode(v["event_bytes"].as_str().unwrap()).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 1;
    v["event_bytes"] = json!(base64::engine::general_purpose::STANDARD.encode(&bytes));
    let mut t = lines.clone();
    t[r1] = v.to_string();
    assert_fails(tmp.path(), &key_path, "bytes", &t, &format!("line {} (position", r1 + 1));
    // A deleted record: the next line is named.
    let mut t = lines.clone();
    t.remove(r0);
    assert_fails(tmp.path(), &key_path, "deleted", &t, &format!("line {} (position", r0 + 1));
    // Two records swapped.
    let mut t = lines.clone();
    t.swap(r0, r1);
    assert_fails(tmp.path(), &key_path, "swapped", &t, &format!("line {} (position", r0 + 1));
    // A record repeated.
    let mut t = lines.clone();
    t.insert(r0 + 1, lines[r0].clone());
    assert_fails(tmp.path(), &key_path, "duplicated", &t, &format!("line {} (position", r0 + 2));
    // The trailer's size changed: its signature no longer holds.
    let mut t = lines.clone();
    let mut trailer = parsed.last().unwrap().clone();
    trailer["head"]["tree_size"] = json!(trailer["head"]["tree_size"].as_u64().unwrap() - 1);
    *t.last_mut().unwrap() = trailer.to_string();
    assert_fails(tmp.path(), &key_path, "trailer", &t, &format!("line {}", t.len()));
    // A record of the tenant passed off as another tenant's leaf.
    let mut t = lines.clone();
    let bytes = base64::engine::general_purpose::STANDARD.decode(parsed[r0]["event_bytes"].as_str().unwrap()).unwrap();
    let digest: String = <sha2::Sha256 as sha2::Digest>::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    let leaf = format!("{}{digest}", trailer["tag"].as_str().unwrap());
    t[r0] = json!({ "kind": "foreign", "position": parsed[r0]["position"], "leaf": leaf }).to_string();
    assert_fails(tmp.path(), &key_path, "hidden", &t, &format!("line {} (position", r0 + 1));
    // Cut short: no trailer.
    assert_fails(tmp.path(), &key_path, "cut", &lines[..lines.len() - 1], "cut short");

    // Without a consistency proof, the previous head cannot be checked: verify says what to fetch.
    let plain = tmp.path().join("plain.ndjson");
    std::fs::write(&plain, api.get("/v1/audit/export", &acme)).unwrap();
    let out = verify(&plain, &key_path, Some(&previous_path));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("since_tree_size={previous_size}")));

    // Tenant B's export holds none of A's data, and verifies.
    let theirs = api.get("/v1/audit/export", &globex);
    for secret in ["acme", "t-acme", "order"] {
        assert!(!theirs.contains(secret), "globex's export shows {secret:?}: {theirs}");
    }
    let path = tmp.path().join("globex.ndjson");
    std::fs::write(&path, &theirs).unwrap();
    let out = verify(&path, &key_path, None);
    assert!(out.status.success(), "globex's export: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 records of tenant globex"));
}

fn export_cli(base: &str, key: &str, output: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(["export", "audit", "--output"])
        .arg(output)
        .env("ANNALS_URL", base)
        .env("ANNALS_KEY", key)
        .output()
        .expect("run annals export")
}

#[test]
fn the_cli_downloads_an_export_and_resumes_a_broken_one_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Serve::start(&tmp.path().join("data"), &[]);
    let api =
        Api { base: server.base.clone(), client: reqwest::Client::new(), rt: tokio::runtime::Runtime::new().unwrap() };
    let acme = api.key("acme");
    let mut last = 0;
    for i in 0..30 {
        last = api.append(&acme, "audit-a", "audit.recorded", audit("acme.secret.updated", &format!("t-{i}")));
    }
    api.head_covering(&acme, last);
    let key_path = tmp.path().join("public.key");
    let key: Value = serde_json::from_str(&api.get("/v1/integrity/public-key", &acme)).unwrap();
    std::fs::write(&key_path, key["public_key"].as_str().unwrap()).unwrap();

    let output = tmp.path().join("audit.ndjson");
    let out = export_cli(&server.base, &acme, &output);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let full = std::fs::read(&output).unwrap();
    let out = verify(&output, &key_path, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!tmp.path().join("audit.ndjson.export.json").exists(), "the state file goes once complete");
    // A complete file is not overwritten.
    assert!(!export_cli(&server.base, &acme, &output).status.success());

    // A download broken in the middle of a line, at the head it started against, is resumed to
    // the very same bytes, although the log has grown since.
    api.append(&acme, "audit-a", "audit.recorded", audit("acme.secret.updated", "later"));
    let text = String::from_utf8(full.clone()).unwrap();
    let tree_size = serde_json::from_str::<Value>(text.lines().last().unwrap()).unwrap()["head"]["tree_size"].clone();
    std::fs::write(&output, &full[..full.len() / 2]).unwrap();
    std::fs::write(tmp.path().join("audit.ndjson.export.json"), json!({ "tree_size": tree_size }).to_string()).unwrap();
    let out = export_cli(&server.base, &acme, &output);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(&output).unwrap() == full, "the resumed file is the unbroken export");
}

#[test]
fn after_kill_9_the_tree_is_re_fed_from_the_log_and_extends_the_heads_signed_before() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Serve::start(&data, &[]);
    let api =
        Api { base: server.base.clone(), client: reqwest::Client::new(), rt: tokio::runtime::Runtime::new().unwrap() };
    let acme = api.key("acme");
    let mut last = 0;
    for i in 0..20 {
        last = api.append(&acme, "audit-a", "audit.recorded", audit("acme.secret.updated", &format!("t-{i}")));
    }
    let before = api.head_covering(&acme, last);
    let key: Value = serde_json::from_str(&api.get("/v1/integrity/public-key", &acme)).unwrap();
    // SIGKILL: no shutdown sync of the tree (it syncs every 10 s), so it is re-fed from the log.
    drop(server);

    let server = Serve::start(&data, &[]);
    let api = Api { base: server.base.clone(), ..api };
    let last = api.append(&acme, "audit-a", "audit.recorded", audit("acme.secret.updated", "after"));
    api.head_covering(&acme, last);
    let key_after: Value = serde_json::from_str(&api.get("/v1/integrity/public-key", &acme)).unwrap();
    assert_eq!(key, key_after, "the signing key survives");
    let key_path = tmp.path().join("public.key");
    std::fs::write(&key_path, key["public_key"].as_str().unwrap()).unwrap();
    let previous = tmp.path().join("before.json");
    std::fs::write(&previous, &before).unwrap();
    let size = serde_json::from_str::<Value>(&before).unwrap()["tree_size"].as_u64().unwrap();
    let export = tmp.path().join("after.ndjson");
    std::fs::write(&export, api.get(&format!("/v1/audit/export?since_tree_size={size}"), &acme)).unwrap();
    let out = verify(&export, &key_path, Some(&previous));
    assert!(
        out.status.success(),
        "the new head extends the one signed before the kill: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `*.seg` file under `dir`.
fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(segments(&path));
        } else if path.extension().is_some_and(|e| e == "seg") {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_log_rewritten_on_disk_no_longer_makes_the_signed_head() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Serve::start(&data, &[]);
    let api =
        Api { base: server.base.clone(), client: reqwest::Client::new(), rt: tokio::runtime::Runtime::new().unwrap() };
    let acme = api.key("acme");
    api.append(&acme, "audit-a", "audit.recorded", audit("acme.secret.updated", "t-acme-1"));
    let target = api.append(&acme, "audit-a", "audit.recorded", audit("acme.secret.updated", "t-rewrite-me"));
    let last = api.append(&acme, "audit-a", "audit.recorded", audit("acme.secret.updated", "t-acme-3"));
    api.head_covering(&acme, last);
    let key: Value = serde_json::from_str(&api.get("/v1/integrity/public-key", &acme)).unwrap();
    server.terminate();

    // Rewrite one byte of the event's data on disk, with a valid record checksum (a careful
    // forger), so that the store opens and serves the forged event.
    let needle = b"t-rewrite-me";
    let (path, mut bytes, at) = segments(&data)
        .into_iter()
        .find_map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            let at = bytes.windows(needle.len()).position(|w| w == needle)?;
            Some((path, bytes, at))
        })
        .expect("the event is in a segment");
    bytes[at] = b'T';
    let start = (0..at)
        .rev()
        .find(|&s| {
            s + 16 <= bytes.len()
                && u64::from_le_bytes(bytes[s + 8..s + 16].try_into().unwrap()) == target
                && s + u32::from_le_bytes(bytes[s..s + 4].try_into().unwrap()) as usize + 8 > at
        })
        .expect("the record's start");
    let total = u32::from_le_bytes(bytes[start..start + 4].try_into().unwrap()) as usize + 8;
    let crc = crc32c::crc32c(&bytes[start + 8..start + total]);
    bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();

    let server = Serve::start(&data, &[]);
    let api = Api { base: server.base.clone(), ..api };
    let text = api.get("/v1/audit/export", &acme);
    assert!(text.contains("T-rewrite-me"), "the store serves the forged event");
    let key_path = tmp.path().join("public.key");
    std::fs::write(&key_path, key["public_key"].as_str().unwrap()).unwrap();
    let export = tmp.path().join("forged.ndjson");
    std::fs::write(&export, &text).unwrap();
    let out = verify(&export, &key_path, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an export of a rewritten log verified");
    // The first bad record is named: its line and position, proven against the signed head.
    assert!(stderr.contains(&format!("line {} (position {target})", target + 1)), "{stderr}");
    assert!(stderr.contains("which the signed head holds"), "{stderr}");
}

#[test]
fn a_deleted_tree_is_rebuilt_from_the_log_to_the_roots_signed_before() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Serve::start(&data, &[]);
    let api =
        Api { base: server.base.clone(), client: reqwest::Client::new(), rt: tokio::runtime::Runtime::new().unwrap() };
    let acme = api.key("acme");
    let mut last = 0;
    for i in 0..25 {
        last = api.append(&acme, "audit-a", "audit.recorded", audit("acme.secret.updated", &format!("t-{i}")));
    }
    let before = api.head_covering(&acme, last);
    let key: Value = serde_json::from_str(&api.get("/v1/integrity/public-key", &acme)).unwrap();
    server.terminate();
    // The tree is derived data: without it, the next start rebuilds it from the log.
    std::fs::remove_dir_all(data.join("integrity").join("tree")).unwrap();

    let server = Serve::start(&data, &[]);
    let api = Api { base: server.base.clone(), ..api };
    let last = api.append(&acme, "audit-a", "audit.recorded", audit("acme.secret.updated", "after"));
    api.head_covering(&acme, last);
    let key_path = tmp.path().join("public.key");
    std::fs::write(&key_path, key["public_key"].as_str().unwrap()).unwrap();
    let previous = tmp.path().join("before.json");
    std::fs::write(&previous, &before).unwrap();
    let size = serde_json::from_str::<Value>(&before).unwrap()["tree_size"].as_u64().unwrap();
    let export = tmp.path().join("rebuilt.ndjson");
    std::fs::write(&export, api.get(&format!("/v1/audit/export?since_tree_size={size}"), &acme)).unwrap();
    let out = verify(&export, &key_path, Some(&previous));
    assert!(
        out.status.success(),
        "the rebuilt tree extends the head signed before it was deleted: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
