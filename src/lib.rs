//! `unlinker`: resumable, rate-limited bulk removal of external identity links.
//!
//! The binary (`src/main.rs`) parses the command line and runs a command from [`commands`];
//! everything lives here so tests can drive it. The layers, from the bottom:
//!
//! - [`row`], [`stop`], [`report`], [`fsutil`]: small leaves (fields and keys of a row, the stop
//!   flag, report rows and writers, owner-only no-follow file creation);
//! - [`input`] (CSV and JSONL streaming) and [`adapter`] (one file per vendor: build a request,
//!   classify an answer) only know [`row`];
//! - [`client`]: one vendor's call policy (limiter, token, send, retry, settle, halt), the only
//!   code that touches reqwest's client and governor;
//! - [`runslog`] (the runs log's hash chain: writer and checker, knowing only [`fsutil`]);
//! - [`checkpoint`] (the journal), [`job`] (job file → settings), [`summary`], [`progress`],
//!   [`metrics`];
//! - [`pipeline`]: a run, wiring reader → lanes → consumer;
//! - [`commands`] and [`cli`].
//!
//! The simulator, `unlinker-sim`, is a binary of its own (`src/bin/unlinker-sim/`, behind the
//! default `sim` feature) and shares no code with the library.

pub mod adapter;
pub mod audit;
pub mod checkpoint;
pub mod cli;
pub mod client;
pub mod commands;
pub mod dedupe;
pub mod fsutil;
pub mod input;
pub mod job;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod row;
pub mod runslog;
pub mod stop;
pub mod summary;
