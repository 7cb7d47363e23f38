//! The projectors tests, one binary: each module below was a test binary of its own, and
//! linking one binary instead of many keeps a cold build small and fast (see BENCHMARKS.md,
//! "Test build").

mod accepted_is_applied;
mod audit;
mod common;
mod crash_restart;
mod errors;
mod es_wire;
mod follow;
mod invalidation_redis;
mod invalidations;
mod messages;
mod non_atomic;
mod order_independence;
mod overlap;
mod replay;
mod runtime;
mod view_store_elasticsearch;
mod view_store_tantivy;
