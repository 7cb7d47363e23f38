//! `annals keys create|list|revoke` against a running `annals serve` (tests of the `annals`
//! binary itself, like `otlp_export.rs`): the CLI manages keys through the API with an operator
//! key (every tenant) or a tenant's admin key (its own).

use crate::serve_support;

use std::process::{Command, Output};

use serde_json::Value;
use serve_support::{Serve, ADMIN_KEY};

fn annals(base: &str, key: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_annals"));
    command.arg("keys").args(args).env("ANNALS_URL", base).env_remove("ANNALS_KEY");
    if let Some(key) = key {
        command.env("ANNALS_KEY", key);
    }
    command.output().expect("run annals keys")
}

fn json(output: &Output) -> Value {
    assert!(output.status.success(), "annals keys failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[test]
fn keys_are_created_listed_and_revoked_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Serve::start(tmp.path(), &[]);
    let base = server.base.clone();

    let created =
        json(&annals(&base, Some(ADMIN_KEY), &["create", "--tenant", "acme", "--role", "reader", "--name", "ui"]));
    assert_eq!(
        (&created["tenant"], &created["role"], &created["name"]),
        (&"acme".into(), &"reader".into(), &"ui".into())
    );
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(created["key"].as_str().unwrap().starts_with("annals_"));

    let listed = json(&annals(&base, Some(ADMIN_KEY), &["list"]));
    assert!(listed["keys"].as_array().unwrap().iter().any(|k| k["id"] == id.as_str()), "{listed}");

    let revoked = json(&annals(&base, Some(ADMIN_KEY), &["revoke", &id]));
    assert!(revoked["revoked_at"].is_string(), "{revoked}");

    // Errors are said plainly, with a failing exit status.
    let no_key = annals(&base, None, &["list"]);
    assert!(!no_key.status.success());
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("ANNALS_KEY"));
    let reader = annals(&base, Some(created["key"].as_str().unwrap()), &["list"]);
    assert!(!reader.status.success());
    assert!(String::from_utf8_lossy(&reader.stderr).contains("401"), "{}", String::from_utf8_lossy(&reader.stderr));
    let bad_role = annals(&base, Some(ADMIN_KEY), &["create", "--tenant", "acme", "--role", "owner"]);
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("400"));
}

#[test]
fn operators_and_tenant_admins_are_made_and_scoped_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Serve::start(tmp.path(), &[]);
    let base = server.base.clone();
    let operator = json(&annals(&base, Some(ADMIN_KEY), &["create", "--tenant", "ops", "--role", "operator"]));
    assert_eq!(operator["role"], "operator", "{operator}");
    let admin = json(&annals(&base, Some(ADMIN_KEY), &["create", "--tenant", "acme", "--role", "admin"]));
    let admin_key = admin["key"].as_str().unwrap();
    // The tenant's admin makes its own tenant's keys, lists only them, and no other tenant's.
    json(&annals(&base, Some(admin_key), &["create", "--tenant", "acme", "--role", "writer"]));
    let listed = json(&annals(&base, Some(admin_key), &["list"]));
    assert!(listed["keys"].as_array().unwrap().iter().all(|k| k["tenant"] == "acme"), "{listed}");
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2, "{listed}");
    let other = annals(&base, Some(admin_key), &["create", "--tenant", "globex", "--role", "reader"]);
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("403"), "{}", String::from_utf8_lossy(&other.stderr));
    // The new operator key manages every tenant's keys.
    let all = json(&annals(&base, Some(operator["key"].as_str().unwrap()), &["list"]));
    assert_eq!(all["keys"].as_array().unwrap().len(), 4, "{all}");
}
