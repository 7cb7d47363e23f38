//! `PgCluster`: a throwaway PostgreSQL cluster for tests and benchmarks (feature `testsuite`).
//!
//! Why this exists: the PostgreSQL backend is tested against a real server, and no test may
//! need a system service or a TCP port. `initdb` + `pg_ctl` (Debian's `postgresql-15`, or
//! `ANNALS_PG_BIN`) make a cluster in a temporary directory that listens only on a Unix socket
//! in that directory, with `fsync` on (the tests check durability). `initdb` refuses to run as
//! root, so as root the server programs run as the `postgres` user (`runuser`), which owns the
//! directory. A watcher process stops the cluster and removes the directory when the test
//! process is gone, however it ends: the shared cluster is a `static`, which is never dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use tokio_postgres::{Client, NoTls};

/// A running cluster; stopped (immediate mode) and removed on drop.
#[derive(Debug)]
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    /// As root: the owner the server programs run as.
    run_as: Option<String>,
    next_database: AtomicU64,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

static SHARED: OnceLock<PgCluster> = OnceLock::new();
static CLUSTERS: AtomicU64 = AtomicU64::new(0);

impl PgCluster {
    /// The cluster every test of this process shares, started on first use.
    pub fn shared() -> &'static PgCluster {
        SHARED.get_or_init(|| PgCluster::start().unwrap_or_else(|e| panic!("start a PostgreSQL test cluster: {e}")))
    }

    /// A cluster of its own (for tests that restart or stop it).
    pub fn start() -> Result<PgCluster, Error> {
        Self::start_with("")
    }

    /// A cluster of its own with extra `postgresql.conf` lines (a benchmark's memory sizes).
    pub fn start_with(settings: &str) -> Result<PgCluster, Error> {
        let bin = server_bin()?;
        let n = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("annals-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let run_as = is_root().then(|| "postgres".to_owned());
        let cluster = PgCluster { dir, bin, run_as, next_database: AtomicU64::new(0) };
        if let Some(user) = &cluster.run_as {
            let status = Command::new("chown").arg(format!("{user}:")).arg(&cluster.dir).status()?;
            if !status.success() {
                return Err(format!("chown {} to {user} failed", cluster.dir.display()).into());
            }
        }
        cluster.watch_parent()?;
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                // Only initdb's own files are not synced; the server runs with fsync on.
                "--no-sync".as_ref(),
            ],
        )?;
        let conf = format!(
            "\n# annals test cluster\nlisten_addresses = ''\nunix_socket_directories = '{}'\nfsync = on\n\
             synchronous_commit = on\nmax_connections = 400\nshared_buffers = 128MB\nmax_wal_size = 1GB\n",
            cluster.dir.display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path)?;
        text.push_str(&conf);
        text.push_str(settings);
        std::fs::write(&conf_path, text)?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// The directory of the Unix socket (the `host` of a connection string).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// A connection string for `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("host={} port=5432 user=postgres dbname={database}", self.dir.display())
    }

    /// Creates a fresh, empty database and returns its connection string.
    pub async fn create_database(&self) -> String {
        let n = self.next_database.fetch_add(1, Ordering::Relaxed);
        let name = format!("annals_test_{n}");
        let client = self.connect("postgres").await;
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap_or_else(|e| panic!("create {name}: {e}"));
        self.url(&name)
    }

    /// A plain client on `database` (its connection runs on a spawned task).
    pub async fn connect(&self, database: &str) -> Client {
        let (client, connection) = tokio_postgres::connect(&self.url(database), NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to test database {database}: {e}"));
        tokio::spawn(connection);
        client
    }

    /// Stops the server as a crash would (`-m immediate`: no shutdown checkpoint, WAL replay at
    /// the next start) and starts it again.
    pub fn restart(&self) -> Result<(), Error> {
        self.stop()?;
        self.start_server()
    }

    /// Stops the server (immediate mode).
    pub fn stop(&self) -> Result<(), Error> {
        let data = self.data_dir();
        self.run("pg_ctl", &["-D".as_ref(), data.as_os_str(), "-m".as_ref(), "immediate".as_ref(), "stop".as_ref()])
    }

    /// Starts a stopped server and waits until it takes connections.
    pub fn start_server(&self) -> Result<(), Error> {
        let data = self.data_dir();
        let log = self.dir.join("server.log");
        let args = ["-D".as_ref(), data.as_os_str(), "-l".as_ref(), log.as_os_str()];
        self.run("pg_ctl", &[&args[..], &["-w".as_ref(), "-t".as_ref(), "60".as_ref(), "start".as_ref()]].concat())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            None => Command::new(path),
        }
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<(), Error> {
        let output = self.command(program).args(args).stdin(Stdio::null()).output()?;
        if !output.status.success() {
            return Err(format!(
                "{program} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        Ok(())
    }

    /// A detached shell that waits for this process to end, then stops the cluster and removes
    /// its directory.
    fn watch_parent(&self) -> Result<(), Error> {
        let stop = self.command("pg_ctl");
        let mut line = vec![stop.get_program().to_string_lossy().into_owned()];
        line.extend(stop.get_args().map(|a| a.to_string_lossy().into_owned()));
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} -D '{data}' -m immediate stop; rm -rf '{dir}'",
            pid = std::process::id(),
            stop = line.join(" "),
            data = self.data_dir().display(),
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

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `ANNALS_PG_BIN`, else PostgreSQL 15's server programs, else the newest installed.
fn server_bin() -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os("ANNALS_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let preferred = PathBuf::from("/usr/lib/postgresql/15/bin");
    if preferred.join("initdb").exists() {
        return Ok(preferred);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|b| b.join("initdb").exists()).collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().ok_or_else(|| "no PostgreSQL server programs (install postgresql-15, or set ANNALS_PG_BIN)".into())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}
