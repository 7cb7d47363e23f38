//! The projectors tests, one binary: each module below was a test binary of its own, and
//! linking one binary instead of many keeps a cold build small and fast (see BENCHMARKS.md,
//! "Test build").

mod common;
#[macro_use]
mod view_store;
mod accepted_is_applied;
mod audit;
mod crash_restart;
mod errors;
mod messages;
mod order_independence;
mod replay;
mod runtime;
mod view_store_tantivy;
