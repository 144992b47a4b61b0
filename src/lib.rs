//! `unlinker`: resumable, rate-limited bulk removal of external identity links.
//!
//! The binary is a thin shell over [`cli::main`]; everything lives here so tests can drive it.

pub mod checkpoint;
pub mod cli;
pub mod dedupe;
pub mod fsutil;
pub mod input;
pub mod job;
pub mod limit;
pub mod progress;
pub mod report;
pub mod retry;
pub mod runner;
pub mod stop;
pub mod summary;
pub mod vendor;
