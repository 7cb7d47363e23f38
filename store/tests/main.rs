//! The store tests, one binary: each module below was a test binary of its own, and
//! linking one binary instead of many keeps a cold build small and fast (see BENCHMARKS.md,
//! "Test build").

mod capabilities;
mod conformance_embedded;
mod conformance_postgres;
mod corruption;
mod full_disk;
mod index_layout;
mod model;
mod open_files;
mod sparse;

/// The embedded engine's positions are dense ([`annals_store::engine::DENSE`]): these tests of
/// the engine compute with them through this conversion, as nothing outside a backend may.
fn pos(index: u64) -> annals_store::Position {
    annals_store::engine::DENSE.position(index)
}

/// The index of an embedded position (see [`pos`]).
fn idx(position: annals_store::Position) -> u64 {
    annals_store::engine::DENSE.index(position)
}
