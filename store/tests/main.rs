//! The store tests, one binary: each module below was a test binary of its own, and
//! linking one binary instead of many keeps a cold build small and fast (see BENCHMARKS.md,
//! "Test build").

mod conformance_embedded;
mod conformance_postgres;
mod corruption;
mod full_disk;
mod index_layout;
mod model;
mod open_files;
