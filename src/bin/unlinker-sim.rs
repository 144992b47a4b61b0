//! `unlinker-sim`: the vendor simulator as a program. Parses the flags, binds 127.0.0.1, prints
//! `listening on http://127.0.0.1:PORT` as its only stdout line, and serves until SIGINT/SIGTERM.
//! Logs go to stderr (`RUST_LOG`, default `warn`).

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use unlinker::sim::{Sim, SimArgs};

fn main() -> ExitCode {
    let args = SimArgs::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("unlinker-sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args));
    // Slow answers may still be sleeping: do not wait for them.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unlinker-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: SimArgs) -> anyhow::Result<()> {
    let port = args.port;
    let sim = Sim::new(args.into())?;
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    tokio::select! {
        result = sim.serve(listener) => result,
        () = shutdown_signal() => Ok(()),
    }
}

/// SIGINT or SIGTERM (Ctrl-C elsewhere).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
