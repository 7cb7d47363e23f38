//! Shared by the root package's tests of the `annals` binary (`tests/*.rs` next to the
//! `annals-tests` crate): `annals serve` as a child process on a free port, with a known admin
//! key, killed when dropped.

// Each test file uses a subset.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN_KEY: &str = "annals_0123456789abcdef_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

pub struct Serve {
    pub child: Child,
    /// `http://127.0.0.1:{port}`
    pub base: String,
}

impl Serve {
    /// Starts `annals serve` on `data_dir` with `env` added, and waits until it accepts connections.
    pub fn start(data_dir: &std::path::Path, env: &[(&str, String)]) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_annals"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data_dir)
            .env("ANNALS_ADMIN_KEY", ADMIN_KEY)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run annals serve");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "annals serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Serve { child, base: format!("http://127.0.0.1:{port}") }
    }

    /// SIGTERM, then waits: the server shuts down cleanly (spans flushed, store closed).
    pub fn terminate(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
