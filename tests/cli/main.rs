//! The CLI's tests, one binary: real `annals` processes started from `CARGO_BIN_EXE_annals`,
//! which cargo gives only to the tests of the package that owns the binary (the root package).
//! One binary instead of one per file keeps a cold build small and fast.

mod cli_demo;
mod cli_export;
mod cli_keys;
mod cli_limits;
mod cli_roles;
mod cli_serve;
mod cli_settings;
mod cli_settings_es;
mod cli_verify;
mod compose_file;
mod otlp_export;
mod serve_support;
