//! The `annals` library: the settings of `annals serve` (`settings/`) and the composition root
//! (`compose/`) that opens the backends they name and hands them to the HTTP API. A library
//! beside the binary so that the black-box tests start their servers exactly as `annals serve`
//! does (ARCHITECTURE.md, "The composition root").

pub mod compose;
mod error;
pub mod settings;

pub use error::Error;
