//! The integration tests, one binary: one module per behaviour, helpers in [`support`].
//!
//! They start the real `unlinker` and `unlinker-sim` binaries against real HTTP servers on
//! 127.0.0.1 (the simulator, or a scripted wiremock server where an exact sequence of answers is
//! needed). One binary links once, and its tests share one pool of test threads.

mod support;

mod audit;
mod auth0;
mod check;
mod cli;
mod crash;
mod deploy;
mod emulator;
mod evidence;
mod firebase;
mod input_limits;
mod input_rows;
mod jobfile;
mod layout;
mod no_false_outcome;
mod operator;
mod pacing;
mod paths;
mod resume;
mod runs_log;
mod sim;
mod status;
mod unexpected;
mod vendors;
mod wildcard;
