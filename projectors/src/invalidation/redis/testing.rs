//! `RedisServer`: a throwaway `redis-server` for tests and benchmarks (features `redis` and
//! `testsuite`).
//!
//! Why this exists: the Redis sink is tested against a real server (Debian's `redis-server`,
//! or `ANNALS_REDIS_SERVER`), and no test may need a system service. Each server lives in a
//! temporary directory, listens on a Unix socket there (or on a free loopback port), and keeps
//! an AOF synced at every write (`appendfsync always`), so a test can `kill -9` it and start it
//! again on the same socket and directory and find every acknowledged write: the outage tests
//! need a Redis that loses nothing, as the README asks operators to run. A watcher process
//! kills the server and removes the directory when the test process is gone, however it ends.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

static SERVERS: AtomicU64 = AtomicU64::new(0);

/// Where a server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Listen {
    Unix,
    Tcp(u16),
}

/// A running `redis-server`; killed and its directory removed on drop.
#[derive(Debug)]
pub struct RedisServer {
    dir: PathBuf,
    listen: Listen,
    child: Mutex<Option<Child>>,
    /// Extra `redis-server` arguments (a benchmark's `--appendfsync everysec`).
    extra: Vec<String>,
}

impl RedisServer {
    /// A server on a Unix socket in its directory.
    pub fn start() -> Result<RedisServer, Error> {
        Self::start_listening(Listen::Unix, &[])
    }

    /// A server on a Unix socket with extra `redis-server` arguments, which override the
    /// harness's (`["--appendfsync", "everysec"]`).
    pub fn start_with(extra: &[&str]) -> Result<RedisServer, Error> {
        Self::start_listening(Listen::Unix, extra)
    }

    /// A server on a free loopback TCP port (for `redis://` URLs).
    pub fn start_tcp() -> Result<RedisServer, Error> {
        // The port is free when asked; another process taking it before the server binds makes
        // the start fail loudly, never a test talk to a stranger's server.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Self::start_listening(Listen::Tcp(port), &[])
    }

    fn start_listening(listen: Listen, extra: &[&str]) -> Result<RedisServer, Error> {
        let n = SERVERS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("annals-redis-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let extra = extra.iter().map(|a| (*a).to_owned()).collect();
        let server = RedisServer { dir, listen, child: Mutex::new(None), extra };
        server.watch_parent()?;
        server.start_server()?;
        Ok(server)
    }

    /// The server's URL: `unix:///…/redis.sock` or `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        match self.listen {
            Listen::Unix => format!("unix://{}", self.socket().display()),
            Listen::Tcp(port) => format!("redis://127.0.0.1:{port}"),
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the server as a crash would (`SIGKILL`: no shutdown, no final save).
    pub fn kill(&self) {
        let mut child = self.child.lock().expect("redis child lock");
        if let Some(mut child) = child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed server again on the same socket (or port) and directory; it reloads its
    /// AOF before it answers.
    pub fn restart(&self) -> Result<(), Error> {
        self.kill();
        self.start_server()
    }

    /// Starts the server and waits until it answers `PING` (not `LOADING`).
    pub fn start_server(&self) -> Result<(), Error> {
        let mut command = Command::new(server_program());
        command
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no"])
            .args(["--bind", "127.0.0.1", "--protected-mode", "no", "--databases", "2"])
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .arg("--pidfile")
            .arg(self.dir.join("redis.pid"));
        match self.listen {
            Listen::Unix => {
                let _ = std::fs::remove_file(self.socket());
                command.args(["--port", "0", "--unixsocketperm", "700", "--unixsocket"]).arg(self.socket());
            }
            Listen::Tcp(port) => {
                command.arg("--port").arg(port.to_string());
            }
        }
        command.args(&self.extra);
        let child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().map_err(|e| {
            format!("start {}: {e} (install redis-server, or set ANNALS_REDIS_SERVER)", server_program().display())
        })?;
        *self.child.lock().expect("redis child lock") = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.ping() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                return Err(format!("redis-server did not answer within 30 s: {log}").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server answers `PING` with `PONG` now.
    pub fn ping(&self) -> bool {
        fn ask(mut stream: impl Read + Write) -> bool {
            let mut answer = [0u8; 7];
            stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok()
                && stream.read_exact(&mut answer).is_ok()
                && &answer == b"+PONG\r\n"
        }
        let timeout = Some(Duration::from_secs(1));
        match self.listen {
            Listen::Unix => std::os::unix::net::UnixStream::connect(self.socket())
                .map(|s| {
                    let _ = s.set_read_timeout(timeout);
                    ask(s)
                })
                .unwrap_or(false),
            Listen::Tcp(port) => std::net::TcpStream::connect(("127.0.0.1", port))
                .map(|s| {
                    let _ = s.set_read_timeout(timeout);
                    ask(s)
                })
                .unwrap_or(false),
        }
    }

    /// A detached shell that waits for this process to end, then kills the server and removes
    /// its directory.
    fn watch_parent(&self) -> Result<(), Error> {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill -9 $(cat '{dir}/redis.pid' 2>/dev/null) 2>/dev/null; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self.dir.display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `ANNALS_REDIS_SERVER`, else `redis-server` on the `PATH`.
fn server_program() -> PathBuf {
    std::env::var_os("ANNALS_REDIS_SERVER").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// The Redis client crate, for tests that look into the server (what keys and entries it holds).
pub use ::redis;
