//! The schemas tests, one binary: each module below was a test binary of its own, and
//! linking one binary instead of many keeps a cold build small and fast (see BENCHMARKS.md,
//! "Test build").

mod schemas;
mod structure;
