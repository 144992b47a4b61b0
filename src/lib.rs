//! `unlinker`: resumable, rate-limited bulk removal of external identity links.
//!
//! The binary is a thin shell over the library; everything lives here so tests can drive it.

pub mod checkpoint;
pub mod input;
pub mod report;
pub mod sim;
pub mod vendor;
