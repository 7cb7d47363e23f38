//! The projectors' own threads, at a lower CPU priority than the rest of the process.
//!
//! Appends are latency-bound: an append waits for its group's `fdatasync`, so the store's writer
//! thread and the API's workers must run the moment they are ready. Indexing is throughput work
//! that comes in bursts (a batch folded and committed every flush interval, tantivy's indexing
//! and merge threads behind it). On the same two cores, those bursts delayed the critical path
//! and halved single-event appends while a core sat idle (BENCHMARKS.md, 2026-11-30 evening).
//! So the projector's blocking work runs here, on threads with a raised nice value, and views are
//! opened from such a thread, because Linux threads inherit their creator's nice value: tantivy's
//! indexing and merge threads then run at the same low priority. Niceness only orders who runs
//! first when the CPU is short; an idle machine gives the projectors all of it.
//!
//! How low is a [`Priority`], set once per process before the first view opens
//! (`ANNALS_PROJECTOR_PRIORITY`): `low` (nice ≈ 10, the default) still gives the projectors a
//! share of a saturated machine, so views keep moving under any load; `idle` (`SCHED_IDLE`)
//! gives them only what nothing else wants — appends first, and views that fall behind while the
//! machine is saturated (BENCHMARKS.md has both under load); `normal` turns the ordering off.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy};
use tracing::warn;

/// How projector threads yield the CPU to the rest of the process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Priority {
    /// `SCHED_IDLE`: only CPU time nothing else wants.
    Idle,
    /// A nice value of about 10.
    #[default]
    Low,
    /// As the rest of the process.
    Normal,
}

impl std::str::FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "idle" => Ok(Priority::Idle),
            "low" => Ok(Priority::Low),
            "normal" => Ok(Priority::Normal),
            _ => Err("must be idle, low or normal".to_owned()),
        }
    }
}

/// Sets the priority of projector threads started from now on (the pool starts with the first
/// view, so: before opening views). Process-wide.
pub fn set_priority(priority: Priority) {
    PRIORITY_SETTING.store(priority as u8, Ordering::Relaxed);
}

static PRIORITY_SETTING: AtomicU8 = AtomicU8::new(Priority::Low as u8);

/// Threads of the pool, at least 2: batches of different views, and the partitioned workers of
/// one view, fold and commit in parallel.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).max(2)
}

/// `Low` on the crate's 0 (lowest) to 99 (highest) scale: a nice value of about 10 for
/// ordinary (non-real-time) threads.
const LOW: u8 = 25;

type Job = Box<dyn FnOnce() + Send>;

/// Runs `job` on a projector thread and waits for its result without blocking the async
/// runtime. `None` if the job panicked.
pub async fn run<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(job());
    });
    if pool().send(job).is_err() {
        return None;
    }
    rx.await.ok()
}

/// Runs `f` on a new thread of projector priority and returns its result: for opening views, so
/// the threads they start inherit the priority.
pub fn spawn_lowered<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let handle = std::thread::Builder::new()
        .name("annals-view-open".into())
        .spawn(move || {
            lower_priority();
            f()
        })
        .expect("a thread can be started");
    match handle.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn pool() -> &'static mpsc::Sender<Job> {
    static POOL: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..threads() {
            let rx = std::sync::Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("annals-projector-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        };
                        // A panicking job drops its result sender; the caller sees `None`.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .expect("a thread can be started");
        }
        tx
    })
}

fn lower_priority() {
    let result = match PRIORITY_SETTING.load(Ordering::Relaxed) {
        p if p == Priority::Normal as u8 => return,
        p if p == Priority::Idle as u8 => thread_priority::set_thread_priority_and_policy(
            thread_priority::thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        ),
        _ => {
            let value = ThreadPriorityValue::try_from(LOW).expect("a valid priority");
            thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(value))
        }
    };
    if let Err(e) = result {
        warn!(error = ?e, "cannot lower the priority of a projector thread; it runs at normal priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_take_the_priority_set_for_the_process() {
        use thread_priority::unix::thread_schedule_policy;
        set_priority(Priority::Idle);
        let idle = spawn_lowered(|| thread_schedule_policy().unwrap());
        set_priority(Priority::Low);
        let low = spawn_lowered(|| thread_schedule_policy().unwrap());
        assert_eq!(idle, ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle));
        assert_eq!(low, ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other));
        assert!("high".parse::<Priority>().is_err());
        assert_eq!("idle".parse::<Priority>(), Ok(Priority::Idle));
    }
}
