//! `docker-compose.yml` cannot run here (no Docker, no Elasticsearch), so this checks what can
//! be checked without running it: every service it depends on exists, images are pinned (the
//! Elasticsearch one to a version the backend accepts), the annals services build from the
//! repository's Dockerfile and run a command the binary has, their environment is settings
//! annals reads and that load together for their role, and the URLs and ports they name are
//! the ones the other services publish.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use annals::settings::{Flags, Role, Settings, StoreKind, ViewsKind};
use annals_projectors::view_store::elasticsearch::health::MIN_MAJOR;
use serde_yaml::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn compose() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).expect("docker-compose.yml");
    let mut doc: Value = serde_yaml::from_str(&text).expect("docker-compose.yml is YAML");
    doc.apply_merge().expect("merge keys resolve");
    let services = doc["services"].as_mapping().expect("services").clone();
    services.into_iter().map(|(k, v)| (k.as_str().expect("a service name").to_owned(), v)).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
}

/// `"8081:8080"` → (8081, 8080).
fn ports(service: &Value) -> Vec<(u16, u16)> {
    strings(&service["ports"])
        .iter()
        .map(|p| {
            let (host, container) = p.split_once(':').expect("HOST:CONTAINER");
            (host.parse().expect("a port"), container.parse().expect("a port"))
        })
        .collect()
}

fn environment(service: &Value) -> Vec<(String, String)> {
    let env = service["environment"].as_mapping().expect("an environment mapping");
    env.iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => panic!("{k:?}: not a scalar: {other:?}"),
            };
            (k.as_str().expect("a name").to_owned(), value)
        })
        .collect()
}

/// `scheme://[user[:password]@]host:port/…` → (host, port).
fn host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").expect("a URL").1;
    let authority = rest.split('/').next().expect("an authority");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = host_port.rsplit_once(':').expect("an explicit port");
    (host.to_owned(), port.parse().expect("a port"))
}

#[test]
fn every_service_image_and_dependency_exists_and_images_are_pinned() {
    let services = compose();
    for name in ["postgres", "elasticsearch", "redis", "projector", "api-1", "api-2"] {
        assert!(services.contains_key(name), "service {name}");
    }
    for (name, service) in &services {
        for dependency in service["depends_on"].as_mapping().into_iter().flatten().map(|(k, _)| k.as_str().unwrap()) {
            assert!(services.contains_key(dependency), "{name} depends on {dependency}, which is no service");
        }
        match (service["image"].as_str(), service["build"].as_str()) {
            (Some(image), None) => {
                let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
                assert!(!tag.is_empty() && tag != "latest", "{name}: image {image} is not pinned");
            }
            (None, Some(context)) => {
                let dockerfile =
                    std::fs::read_to_string(root().join(context).join("Dockerfile")).expect("the Dockerfile");
                assert!(dockerfile.contains("ENTRYPOINT [\"annals\"]"), "{name} builds the annals binary");
                assert!(dockerfile.contains("--bin annals"));
            }
            other => panic!("{name}: an image or a build, not {other:?}"),
        }
    }
    let es = services["elasticsearch"]["image"].as_str().unwrap();
    let major: u64 = es.rsplit_once(':').unwrap().1.split('.').next().unwrap().parse().unwrap();
    assert!(major >= MIN_MAJOR, "{es} is older than the backend accepts");
}

#[test]
fn annals_services_run_a_command_the_binary_has_with_settings_it_reads() {
    let services = compose();
    let annals: Vec<(&String, &Value)> = services.iter().filter(|(_, s)| s["build"].is_string()).collect();
    assert_eq!(annals.len(), 3, "one projector and two API processes");
    let mut roles = Vec::new();
    for (name, service) in annals {
        let command = strings(&service["command"]);
        let help =
            Command::new(env!("CARGO_BIN_EXE_annals")).args(&command).arg("--help").output().expect("run annals");
        assert!(
            help.status.success(),
            "{name}: `annals {}` is not a command: {}",
            command.join(" "),
            String::from_utf8_lossy(&help.stderr)
        );

        let env = environment(service);
        for (key, _) in &env {
            assert!(
                key.contains("__") || ["ANNALS_ROLE", "ANNALS_ADMIN_KEY", "ANNALS_DATA_DIR"].contains(&key.as_str()),
                "{name}: {key} is no setting name"
            );
        }
        // Unknown nested names, invalid values and combinations no process can run are refused here.
        let settings = Settings::load(None, env.clone(), Flags::default())
            .unwrap_or_else(|e| panic!("{name}: its environment does not load: {e}"));
        settings.check().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(settings.store.kind, StoreKind::Postgres);
        assert_eq!(settings.views.kind, ViewsKind::Elasticsearch);
        roles.push(settings.role);

        // The services its URLs name exist and publish the port named.
        let var = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).expect(k);
        for (url, service_name) in
            [(var("ANNALS_STORE__URL"), "postgres"), (var("ANNALS_VIEWS__URLS"), "elasticsearch")]
        {
            let (host, port) = host_port(&url);
            assert_eq!(host, service_name, "{name}: {url}");
            assert!(ports(&services[service_name]).iter().any(|(_, c)| *c == port), "{service_name} publishes {port}");
        }
        // Its published port is the one it listens on.
        let listen = settings.http.listen.port();
        assert!(ports(service).iter().all(|(_, c)| *c == listen), "{name} listens on {listen}");
    }
    roles.sort_by_key(|r| r.as_str());
    assert_eq!(roles, [Role::Api, Role::Api, Role::Projector]);
}
