//! `annals serve` as an operator meets it (tests of the `annals` binary itself): a bad setting
//! stops startup with a message naming it and where it came from, and the first start of a new
//! store prints its operator key once.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `annals serve` on a fresh store with `args` and `env`, expecting it to refuse to start;
/// returns what it wrote to stderr. A server that starts anyway is stopped and fails the test
/// (rather than hanging it).
pub(crate) fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_annals"))
        .arg("serve")
        .args(["--data-dir", tmp.path().to_str().unwrap()])
        .args(args)
        .env_remove("ANNALS_ADMIN_KEY")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run annals serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("annals serve started with {args:?} {env:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!status.success(), "annals serve succeeded with {args:?} {env:?}: {stderr}");
    stderr
}

#[test]
fn a_bad_setting_stops_startup_and_names_the_setting() {
    let err = refused(&["--listen", "localhost"], &[]);
    assert!(err.contains("--listen") && err.contains("localhost"), "{err}");
    let err = refused(&["--listen", "127.0.0.1:0"], &[("ANNALS_MAX_PAGE", "0")]);
    assert!(err.contains("ANNALS_MAX_PAGE") && err.contains("at least 1"), "{err}");
    let err = refused(&["--listen", "127.0.0.1:0"], &[("ANNALS_ADMIN_KEY", "hunter2")]);
    assert!(err.contains("ANNALS_ADMIN_KEY") && !err.contains("hunter2"), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("annals.toml");
    std::fs::write(&config, "max_pgae = 10\n").unwrap();
    let err = refused(&["--listen", "127.0.0.1:0", "--config", config.to_str().unwrap()], &[]);
    assert!(err.contains("annals.toml") && err.contains("max_pgae"), "{err}");
}

#[test]
fn the_first_start_prints_the_operator_key_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut server, lines) = serve(tmp.path());
    let shown = lines.iter().position(|l| l.contains("created an operator key")).expect("the key is announced");
    let key = lines[shown + 1].trim().to_owned();
    let base = lines.last().unwrap().rsplit(' ').next().unwrap().to_owned();
    let list = Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(["keys", "list"])
        .env("ANNALS_URL", &base)
        .env("ANNALS_KEY", &key)
        .output()
        .unwrap();
    assert!(list.status.success(), "the printed key works: {}", String::from_utf8_lossy(&list.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed["keys"][0]["role"], "operator", "{listed}");
    stop(&mut server);

    let (mut server, lines) = serve(tmp.path());
    assert!(!lines.iter().any(|l| l.contains("operator key") || l.contains(&key)), "shown once only: {lines:?}");
    stop(&mut server);
}

/// Starts `annals serve` on a free port without `ANNALS_ADMIN_KEY`; returns it and what it wrote
/// to stderr up to the line saying where it listens.
fn serve(data_dir: &std::path::Path) -> (Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("ANNALS_ADMIN_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run annals serve");
    let mut lines = Vec::new();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    while !lines.last().is_some_and(|l: &String| l.starts_with("annals listening on")) {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "annals serve ended before listening: {lines:?}");
        lines.push(line.trim_end().to_owned());
    }
    // Keep reading so the server never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (child, lines)
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    assert!(child.wait().unwrap().success(), "a clean shutdown on SIGTERM");
}
