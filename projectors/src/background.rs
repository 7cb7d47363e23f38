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

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use thread_priority::{ThreadPriority, ThreadPriorityValue};
use tracing::warn;

/// Threads of the pool: batches of different views fold and commit in parallel.
const THREADS: usize = 2;

/// The priority of projector threads on the crate's 0 (lowest) to 99 (highest) scale: a nice
/// value of about 10 for ordinary (non-real-time) threads.
const PRIORITY: u8 = 25;

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
        for i in 0..THREADS {
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
    let value = ThreadPriorityValue::try_from(PRIORITY).expect("a valid priority");
    if let Err(e) = thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(value)) {
        warn!(error = ?e, "cannot lower the priority of a projector thread; it runs at normal priority");
    }
}
