//! The bare HTTP load loop the benchmark suite (`bench/run.sh`) compares `unlinker` with: the
//! least a Rust program can do to send the same Auth0 unlink calls — no limiter, no checkpoint, no
//! report, no retries. Its rows/s is the ceiling of "client + simulator" on this machine.
//!
//! ```text
//! cargo run --release --example bare_loop -- URL INPUT.csv CONCURRENCY [TOKEN]
//! ```
//!
//! `INPUT.csv` is the benchmark's generated Auth0 input (`user_id,provider,identity_user_id`, no
//! quoting). Every row is sent once as
//! `DELETE URL/api/v2/users/{user_id}/identities/{provider}/{identity_user_id}` with
//! `Authorization: Bearer TOKEN` (default `sim-token`) by CONCURRENCY tasks sharing one client. The
//! file is read before the clock starts. Prints one JSON line:
//! `{"rows":…,"elapsed_s":…,"rows_per_s":…,"ok":…,"not_ok":…,"errors":…}`.
//!
//! Only loopback URLs are accepted: this is a load generator.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// Percent-encode a path segment the way the Auth0 adapter does (RFC 3986 unreserved kept).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: bare_loop URL INPUT.csv CONCURRENCY [TOKEN]");
        std::process::exit(2);
    }
    let base = args[1].trim_end_matches('/').to_string();
    let host = base
        .strip_prefix("http://")
        .ok_or("URL must be http://127.0.0.1:PORT or http://localhost:PORT")?;
    if !(host.starts_with("127.") || host.starts_with("localhost")) {
        return Err("refusing a non-loopback URL".into());
    }
    let concurrency: usize = args[3].parse()?;
    let token = args.get(4).map(String::as_str).unwrap_or("sim-token");
    let auth = format!("Bearer {token}");

    // Build every URL before the clock starts.
    let text = std::fs::read_to_string(&args[2])?;
    let urls: Vec<String> = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            format!(
                "{base}/api/v2/users/{}/identities/{}/{}",
                encode(f[0]),
                encode(f[1]),
                encode(f[2])
            )
        })
        .collect();
    let urls = Arc::new(urls);

    let client = reqwest::Client::builder().build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let not_ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));

    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (client, urls, next) = (client.clone(), urls.clone(), next.clone());
        let (ok, not_ok, errors) = (ok.clone(), not_ok.clone(), errors.clone());
        let auth = auth.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(url) = urls.get(i) else { break };
                match client
                    .delete(url.as_str())
                    .header("Authorization", auth.as_str())
                    .send()
                    .await
                {
                    Ok(resp) => {
                        let success = resp.status().is_success();
                        // Read the whole answer, as a real client must.
                        match resp.bytes().await {
                            Ok(_) if success => ok.fetch_add(1, Ordering::Relaxed),
                            Ok(_) => not_ok.fetch_add(1, Ordering::Relaxed),
                            Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rows = urls.len();
    println!(
        "{{\"rows\":{rows},\"elapsed_s\":{elapsed:.4},\"rows_per_s\":{:.1},\"ok\":{},\"not_ok\":{},\"errors\":{}}}",
        rows as f64 / elapsed,
        ok.load(Ordering::Relaxed),
        not_ok.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}
