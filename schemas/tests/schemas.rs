//! The committed schema files are what the Rust types generate, published versions never change,
//! and the golden examples of every version are valid (and the invalid ones are not).

use std::path::{Path, PathBuf};

use annals_schemas::{generated, Registry, Violation};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn file_name(event_type: &str, version: u32) -> String {
    format!("{event_type}.v{version}.json")
}

#[test]
fn committed_schema_files_are_the_generated_ones() {
    let update = std::env::var("UPDATE_SCHEMAS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for (event_type, version, schema) in generated() {
        let path = dir("json").join(file_name(event_type, version));
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if update {
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "these schema files differ from what the Rust types generate (UPDATE_SCHEMAS=1 cargo test -p annals-schemas \
         rewrites them; a published version must not change, so add a new version instead): {stale:?}"
    );
}

#[test]
fn published_schema_versions_never_change() {
    let published = std::fs::read_to_string(dir("json").join("PUBLISHED")).unwrap();
    let mut checked = 0;
    for line in published.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let (hash, name) = line.split_once("  ").expect("`<sha256>  <file>` lines");
        let bytes = std::fs::read(dir("json").join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let actual: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(actual, hash, "{name} was published and must not change; make a new version of the type instead");
        checked += 1;
    }
    // Every version the registry serves is published (recorded here).
    for info in Registry::new().schemas() {
        assert!(
            published.contains(&file_name(&info.event_type, info.version)),
            "{} v{} is served but not in PUBLISHED",
            info.event_type,
            info.version
        );
    }
    assert_eq!(checked, Registry::new().schemas().len(), "PUBLISHED lists exactly the served versions");
}

#[test]
fn golden_examples_are_valid_and_bad_ones_are_not() {
    let registry = Registry::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(dir("examples")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let Some(stem) = name.strip_suffix(".json") else { continue };
        let (event_type, version) = stem.rsplit_once(".v").expect("{type}.v{n}.json");
        let version: u32 = version.parse().unwrap();
        let examples: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for valid in examples["valid"].as_array().unwrap() {
            if let Err(v) = registry.validate(event_type, Some(version), valid) {
                panic!("{name}: a valid example is refused: {v} — {valid}");
            }
            seen += 1;
        }
        for case in examples["invalid"].as_array().unwrap() {
            match registry.validate(event_type, Some(version), &case["data"]) {
                Err(Violation::Invalid { pointer, .. }) => {
                    assert_eq!(pointer, case["pointer"].as_str().unwrap(), "{name}: {}", case["data"])
                }
                other => panic!("{name}: an invalid example gives {other:?}: {}", case["data"]),
            }
        }
    }
    assert!(seen >= generated().len(), "every type has a golden example ({seen} valid examples)");
}

#[test]
fn the_rust_types_read_the_golden_examples() {
    use annals_schemas::{audit, message};
    let read = |name: &str| -> Vec<Value> {
        let examples: Value =
            serde_json::from_str(&std::fs::read_to_string(dir("examples").join(name)).unwrap()).unwrap();
        examples["valid"].as_array().unwrap().clone()
    };
    for v in read("message.enqueued.v1.json") {
        serde_json::from_value::<message::MessageEnqueued>(v).unwrap();
    }
    for v in read("message.undeliverable.v1.json") {
        serde_json::from_value::<message::MessageUndeliverable>(v).unwrap();
    }
    for v in read("audit.recorded.v1.json") {
        serde_json::from_value::<audit::AuditRecorded>(v).unwrap();
    }
}

#[test]
fn unknown_types_and_versions_are_told_apart() {
    let registry = Registry::new();
    let data = serde_json::json!({ "message_id": "m1" });
    assert!(matches!(registry.validate("thing.happened", None, &data), Err(Violation::UnknownType)));
    assert!(matches!(
        registry.validate("message.opened", Some(9), &data),
        Err(Violation::UnknownVersion { latest: 1 })
    ));
    assert!(registry.validate("message.opened", None, &data).is_ok(), "no version means version 1");
}
