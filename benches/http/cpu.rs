//! Where the CPU goes during a measure of the HTTP bench: the server's seconds by part (from its
//! threads' names), the load generator's, and what the hypervisor stole from the machine, all
//! from `/proc`. Kept apart from the load itself so that `http.rs` reads as the measures.

use std::time::Instant;

/// CPU seconds used by the server and by this process (the load generator) since a point.
pub struct Cpu {
    server: f64,
    generator: f64,
    /// The machine's steal and total ticks (`/proc/stat`): time the hypervisor gave this VM's
    /// vCPUs to others, which is what makes this machine's speed vary from minute to minute.
    steal: (u64, u64),
    /// The server's CPU seconds by part: API (tokio's workers), store (its writer, indexer,
    /// segment preallocation and fjall's threads), views (projectors and tantivy's threads).
    parts: [f64; 3],
    wall: Instant,
    /// Seconds between two points, set by `since`.
    elapsed: f64,
}

impl Cpu {
    /// The counters now, for the server process `server`.
    pub fn now(server: u32) -> anyhow::Result<Cpu> {
        Ok(Cpu {
            server: proc_cpu_secs(&format!("/proc/{server}/stat"))?,
            generator: proc_cpu_secs("/proc/self/stat")?,
            steal: machine_steal()?,
            parts: server_parts(server),
            wall: Instant::now(),
            elapsed: 0.0,
        })
    }

    pub fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            server: self.server - before.server,
            generator: self.generator - before.generator,
            steal: (self.steal.0 - before.steal.0, self.steal.1 - before.steal.1),
            parts: std::array::from_fn(|i| self.parts[i] - before.parts[i]),
            wall: before.wall,
            elapsed: (self.wall - before.wall).as_secs_f64(),
        }
    }

    /// Cores busy on average over the measure: server, generator. (Until 2026-11-30 evening
    /// this divided by the time until the row was printed, after the in-process measure too,
    /// which about halved both figures.)
    pub fn cores(&self) -> (f64, f64) {
        (self.server / self.elapsed, self.generator / self.elapsed)
    }

    /// Server CPU per appended event by part: API / store / views / threads that ended during
    /// the measure (tantivy starts a document-store compressor per new segment, tokio's blocking
    /// pool lets idle threads go), in µs.
    pub fn per_event(&self, events_per_sec: f64) -> String {
        let events = events_per_sec * self.elapsed;
        let [api, store, views] = self.parts.map(|p| p / events * 1e6);
        let ended = (self.server - self.parts.iter().sum::<f64>()) / events * 1e6;
        format!("{api:.0} / {store:.0} / {views:.0} / {ended:.0}")
    }

    /// The share of the machine's CPU time stolen by the hypervisor over the measure.
    pub fn steal(&self) -> f64 {
        self.steal.0 as f64 / self.steal.1.max(1) as f64
    }
}

/// The server's CPU seconds so far by part (see `Cpu::parts`), from its threads' names. A thread
/// that exited since the last look takes its seconds with it: the parts are read around a
/// measure, over which the server's threads live on.
fn server_parts(pid: u32) -> [f64; 3] {
    let mut parts = [0.0; 3];
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return parts };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let name = stat.split_once('(').and_then(|(_, rest)| rest.rsplit_once(')')).map_or("", |(n, _)| n);
        let part = match name {
            "tokio-rt-worker" => 0,
            n if n.starts_with("annals-writer")
                || n.starts_with("annals-indexer")
                || n.starts_with("annals-prealloc")
                || n.starts_with("fjall") =>
            {
                1
            }
            _ => 2,
        };
        parts[part] += proc_cpu_secs(&task.path().join("stat").to_string_lossy()).unwrap_or(0.0);
    }
    parts
}

/// Steal ticks and all ticks of the machine, from the `cpu` line of `/proc/stat`.
fn machine_steal() -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().ok_or_else(|| anyhow::anyhow!("empty /proc/stat"))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).map(str::parse).collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal (guest time is counted in user already)
    Ok((ticks.get(7).copied().unwrap_or(0), ticks.iter().take(8).sum()))
}

/// utime + stime of a process, from /proc (in USER_HZ ticks, 100 per second on Linux).
fn proc_cpu_secs(path: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(path)?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').ok_or_else(|| anyhow::anyhow!("malformed {path}"))? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}
