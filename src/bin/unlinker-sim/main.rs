//! `unlinker-sim`: the vendor simulator as a program. Parses the flags, binds 127.0.0.1, prints
//! `listening on http://127.0.0.1:PORT` as its only stdout line, and serves until SIGINT/SIGTERM.
//! Logs go to stderr (`RUST_LOG`, default `warn`).
//!
//! A real HTTP server on loopback that speaks every vendor's unlink API (plus the reads and the
//! Auth0 token endpoint the runner uses), keeps state, misbehaves on demand and tells what it
//! received. Tests, benchmarks and the README's demo run against it instead of real tenants. It is
//! written from docs/vendors.md and imports nothing from the `unlinker` library (a test checks this), so
//! a test against it checks the client adapters rather than agreeing with them by construction.
//! It is its own binary's modules, built only with the `sim` feature, so the product never links
//! its HTTP server.
//!
//! All vendors share one port (their paths do not collide). Each is one file implementing
//! [`vendor::Vendor`] and one line in [`Sim::new`]'s list; the pipeline in
//! [`vendor::Endpoint::dispatch`] applies counting and faults to all of them alike.
//!
//! Introspection, under `/_sim/`: `GET /_sim/counters[?keys=false]`, `GET /_sim/log` (the last
//! 10,000 vendor requests), `GET /_sim/links?vendor=NAME` (keys currently linked) and
//! `POST /_sim/reset-counters` (counters and per-key counters; the log and links stay). With a
//! `--rate-limit`, `/_sim/counters` also shows each bucket under `buckets.VENDOR`: its `limit`,
//! `rate`, `remaining` tokens, what `--background` traffic took and was refused, and `samples`,
//! `[ms since start, tokens]` every 100 ms (the last 10 minutes).

mod auth0;
mod conn;
mod faults;
mod firebase;
mod fusionauth;
mod gigya;
mod newspark;
mod seed;
mod state;
mod vendor;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Parser;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use auth0::Auth0Options;
use faults::{Background, RateLimit};
use firebase::FirebaseOptions;
use fusionauth::FusionAuthOptions;
use gigya::GigyaOptions;
use newspark::NewsparkOptions;

use conn::{CuttableListener, Cutter};
use faults::{Bucket, Dice};
use state::{Log, LogEntry, Store};
use vendor::{Endpoint, Fate, Request};

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

/// How many vendor requests `/_sim/log` keeps.
pub(crate) const DEFAULT_LOG_CAPACITY: usize = 10_000;
/// `--slow`: long enough to be past any sensible client timeout.
pub(crate) const DEFAULT_SLOW: Duration = Duration::from_secs(120);
/// Largest request body read.
const MAX_BODY: usize = 1 << 20;
/// How much of a body `/_sim/log` keeps (bounds the log's memory).
const MAX_LOGGED_BODY: usize = 64 << 10;

/// A duration flag: whole seconds (`86400`) or a humantime duration (`50ms`, `2m`).
pub(crate) fn duration_arg(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e} (e.g. 50ms, 2s, 120)"))
}

/// A share between 0 and 1.
fn share_arg(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or_else(|| format!("`{s}`: must be a number from 0 to 1"))
}

/// Which links exist at the start.
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
#[command(next_help_heading = "Links")]
pub(crate) struct LinkOptions {
    /// Links to start with: CSV with a header, or JSONL (.jsonl/.ndjson); repeatable
    ///
    /// Each record has a `vendor` field (auth0, fusionauth, gigya, newspark, firebase) and that
    /// vendor's input fields as the runner reads them (Gigya also takes an optional `site_login`,
    /// default true; Firebase takes `provider_id = password` / `phone` for a password or phone number).
    #[arg(long = "seed", value_name = "FILE")]
    pub seeds: Vec<PathBuf>,
    /// Vendor type of seed records without a `vendor` field
    #[arg(long, value_name = "VENDOR")]
    pub seed_vendor: Option<String>,
    /// Every link exists until it is removed once
    ///
    /// Reads (Auth0 users, Gigya accounts) then list the links the simulator has been sent or
    /// seeded and has not removed; every account exists.
    #[arg(long)]
    pub all_linked: bool,
}

/// Misbehaviour on demand.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Faults")]
pub(crate) struct FaultOptions {
    /// Added to every vendor answer, e.g. 50ms
    #[arg(long, value_name = "DUR", default_value = "0ms", value_parser = duration_arg)]
    pub latency: Duration,
    /// Server-side token bucket for a vendor type, answered with that vendor's rate-limit answer;
    /// BURST defaults to max(1, RATE); repeatable
    #[arg(long = "rate-limit", value_name = "VENDOR=RATE[/BURST]")]
    pub rate_limits: Vec<RateLimit>,
    /// Other clients' traffic (production logins) taking RATE requests per second from that
    /// vendor's --rate-limit bucket, evenly spaced; repeatable
    #[arg(long = "background", value_name = "VENDOR=RATE")]
    pub background: Vec<Background>,
    /// HTTP 429 rate-limit answers also carry Retry-After (seconds, rounded up)
    #[arg(long)]
    pub retry_after: bool,
    /// Send no budget headers (Auth0 `x-ratelimit-*`) under a --rate-limit: a client then learns
    /// the limit only from rate-limit answers
    #[arg(long)]
    pub no_budget_headers: bool,
    /// Share of vendor calls answered 503 (Gigya: errorCode 500001) without any change
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = share_arg)]
    pub error_rate: f64,
    /// Share of vendor calls whose change is applied but whose connection is cut without an answer
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = share_arg)]
    pub drop_rate: f64,
    /// Share of vendor calls whose change is applied and whose answer is delayed by --slow
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = share_arg)]
    pub slow_rate: f64,
    /// Delay of a slow answer
    #[arg(long, value_name = "DUR", default_value = "120s", value_parser = duration_arg)]
    pub slow: Duration,
    /// Seed of the fault dice, so runs can be reproduced
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub fault_seed: u64,
    /// Refuse every unlink of this key with the vendor's "failed" answer (Auth0 and FusionAuth:
    /// their documented 400), changing nothing; repeatable
    #[arg(long = "fail-key", value_name = "VENDOR=KEY")]
    pub fail_keys: Vec<String>,
}

impl Default for FaultOptions {
    fn default() -> Self {
        FaultOptions {
            latency: Duration::ZERO,
            rate_limits: Vec::new(),
            background: Vec::new(),
            retry_after: false,
            no_budget_headers: false,
            error_rate: 0.0,
            drop_rate: 0.0,
            slow_rate: 0.0,
            slow: DEFAULT_SLOW,
            fault_seed: 0,
            fail_keys: Vec::new(),
        }
    }
}

/// Everything the simulator can be told. `Default` is: no links, no faults, the default
/// credentials of every vendor.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SimConfig {
    pub links: LinkOptions,
    pub faults: FaultOptions,
    pub auth0: Auth0Options,
    pub fusionauth: FusionAuthOptions,
    pub gigya: GigyaOptions,
    pub newspark: NewsparkOptions,
    pub firebase: FirebaseOptions,
}

/// `unlinker-sim`'s command line.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "unlinker-sim",
    version,
    about = "Vendor simulator for unlinker: Auth0, FusionAuth, Gigya, Newspark and Firebase on one loopback port",
    long_about = None
)]
pub(crate) struct SimArgs {
    /// Port on 127.0.0.1 (0 = any free port); the first stdout line names it
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    #[command(flatten)]
    pub links: LinkOptions,
    #[command(flatten)]
    pub faults: FaultOptions,
    #[command(flatten)]
    pub auth0: Auth0Options,
    #[command(flatten)]
    pub fusionauth: FusionAuthOptions,
    #[command(flatten)]
    pub gigya: GigyaOptions,
    #[command(flatten)]
    pub newspark: NewsparkOptions,
    #[command(flatten)]
    pub firebase: FirebaseOptions,
}

impl From<SimArgs> for SimConfig {
    fn from(args: SimArgs) -> Self {
        SimConfig {
            links: args.links,
            faults: args.faults,
            auth0: args.auth0,
            fusionauth: args.fusionauth,
            gigya: args.gigya,
            newspark: args.newspark,
            firebase: args.firebase,
        }
    }
}

/// One vendor with its state and limit.
struct Slot {
    endpoint: Box<dyn Endpoint>,
    store: Store,
    bucket: Option<Bucket>,
    /// `--background` requests per second taken from `bucket`.
    background: Option<f64>,
}

struct Inner {
    slots: Vec<Slot>,
    dice: Dice,
    latency: Duration,
    slow: Duration,
    log: Log,
    started: Instant,
}

impl Inner {
    fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.endpoint.name() == name)
    }

    fn names(&self) -> Vec<&'static str> {
        self.slots.iter().map(|s| s.endpoint.name()).collect()
    }
}

/// A configured simulator with its seeds loaded, ready to serve.
pub(crate) struct Sim {
    inner: Arc<Inner>,
}

impl Sim {
    /// Check the configuration and load the seed files; errors name the flag, file or line.
    pub(crate) fn new(config: SimConfig) -> anyhow::Result<Sim> {
        // Every simulated vendor: adding one is its file plus a line here.
        let endpoints: Vec<Box<dyn Endpoint>> = vec![
            Box::new(auth0::Auth0::new(&config.auth0)),
            Box::new(fusionauth::FusionAuth::new(&config.fusionauth)),
            Box::new(gigya::Gigya::new(&config.gigya)),
            Box::new(newspark::Newspark::new(&config.newspark)),
            Box::new(firebase::Firebase::new(&config.firebase)?),
        ];
        let faults = &config.faults;
        let mut slots: Vec<Slot> = endpoints
            .into_iter()
            .map(|endpoint| Slot {
                store: Store::new(config.links.all_linked, endpoint.owner_len()),
                bucket: None,
                background: None,
                endpoint,
            })
            .collect();
        let names: Vec<&str> = slots.iter().map(|s| s.endpoint.name()).collect();
        let known = names.join(", ");
        for limit in &faults.rate_limits {
            let Some(slot) = slots.iter_mut().find(|s| s.endpoint.name() == limit.vendor) else {
                bail!(
                    "--rate-limit {}: unknown vendor (one of: {known})",
                    limit.vendor
                );
            };
            let mut bucket = Bucket::new(limit, faults.retry_after);
            bucket.headers = !faults.no_budget_headers;
            slot.bucket = Some(bucket);
        }
        for fail in &faults.fail_keys {
            let (vendor, key) = fail.split_once('=').unwrap_or((fail, ""));
            let Some(slot) = slots.iter_mut().find(|s| s.endpoint.name() == vendor) else {
                bail!("--fail-key {fail}: expected VENDOR=KEY with a vendor of: {known}");
            };
            if key.is_empty() {
                bail!("--fail-key {fail}: expected VENDOR=KEY (the key is empty)");
            }
            slot.store.fail_key(key.to_string());
        }
        for bg in &faults.background {
            let Some(slot) = slots.iter_mut().find(|s| s.endpoint.name() == bg.vendor) else {
                bail!(
                    "--background {}: unknown vendor (one of: {known})",
                    bg.vendor
                );
            };
            if slot.bucket.is_none() {
                bail!(
                    "--background {0}: needs a server-side limit to consume (--rate-limit {0}=RATE[/BURST])",
                    bg.vendor
                );
            }
            slot.background = Some(bg.rate);
        }
        let default_vendor = config.links.seed_vendor.as_deref();
        if let Some(v) = default_vendor
            && !slots.iter().any(|s| s.endpoint.name() == v)
        {
            bail!("--seed-vendor {v}: unknown vendor (one of: {known})");
        }
        for path in &config.links.seeds {
            let loaded = seed::load(path, default_vendor, |vendor, record| {
                let slot = slots
                    .iter()
                    .find(|s| s.endpoint.name() == vendor)
                    .ok_or_else(|| format!("unknown vendor `{vendor}` (one of: {known})"))?;
                let link = slot.endpoint.seed(record)?;
                slot.store.with(|links| links.seed(link));
                Ok(())
            })?;
            tracing::info!("seeded {loaded} links from {}", path.display());
        }
        let inner = Inner {
            slots,
            dice: Dice::new(
                faults.fault_seed,
                faults.error_rate,
                faults.drop_rate,
                faults.slow_rate,
            ),
            latency: faults.latency,
            slow: faults.slow,
            log: Log::new(DEFAULT_LOG_CAPACITY),
            started: Instant::now(),
        };
        Ok(Sim {
            inner: Arc::new(inner),
        })
    }

    /// Serve on `listener` until the task is dropped.
    pub(crate) async fn serve(self, listener: TcpListener) -> anyhow::Result<()> {
        let _tasks = self.start_buckets();
        let app = Router::new()
            .route("/_sim/counters", get(counters))
            .route("/_sim/log", get(log))
            .route("/_sim/links", get(links))
            .route("/_sim/reset-counters", post(reset_counters))
            .fallback(vendor_call)
            .with_state(self.inner);
        axum::serve(
            CuttableListener(listener),
            app.into_make_service_with_connect_info::<Cutter>(),
        )
        .await
        .context("the simulator's server failed")
    }
}

impl Sim {
    /// The `--background` traffic and the bucket sampler, stopped when the guard is dropped.
    fn start_buckets(&self) -> AbortOnDrop {
        let mut tasks = Vec::new();
        for (i, slot) in self.inner.slots.iter().enumerate() {
            if slot.bucket.is_none() {
                continue;
            }
            let sim = self.inner.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(SAMPLE_EVERY);
                loop {
                    tick.tick().await;
                    let at_ms = sim.started.elapsed().as_secs_f64() * 1000.0;
                    if let Some(b) = &sim.slots[i].bucket {
                        b.sample(at_ms);
                    }
                }
            }));
            if let Some(rate) = slot.background {
                let sim = self.inner.clone();
                tasks.push(tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                    loop {
                        tick.tick().await;
                        if let Some(b) = &sim.slots[i].bucket {
                            b.take_background();
                        }
                    }
                }));
            }
        }
        AbortOnDrop(tasks)
    }
}

/// How often a bucket's tokens are sampled for `/_sim/counters`.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Background tasks that end with the server.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Every request that is not introspection: a vendor call, or a 404 when no vendor owns the path.
async fn vendor_call(
    State(sim): State<Arc<Inner>>,
    ConnectInfo(cutter): ConnectInfo<Cutter>,
    request: axum::extract::Request,
) -> Response {
    let at = sim.started.elapsed();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let Some(slot) = sim.slots.iter().find(|s| s.endpoint.owns(&path)) else {
        return (
            StatusCode::NOT_FOUND,
            "no simulated vendor serves this path\n",
        )
            .into_response();
    };
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response();
    };
    let req = Request {
        method: parts.method,
        path,
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
    };
    let (answer, fate) = slot
        .endpoint
        .dispatch(&req, &slot.store, slot.bucket.as_ref(), &sim.dice);
    let status = (fate != Fate::Drop).then_some(answer.status.as_u16());
    sim.log
        .push(log_entry(at, slot.endpoint.name(), req, status));
    let delay = match fate {
        Fate::Slow => sim.latency + sim.slow,
        Fate::Send | Fate::Drop => sim.latency,
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if fate == Fate::Drop {
        cutter.cut();
    }
    answer.into_response()
}

fn log_entry(at: Duration, vendor: &'static str, req: Request, status: Option<u16>) -> LogEntry {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &req.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    LogEntry {
        at_ms: at.as_secs_f64() * 1000.0,
        vendor,
        method: req.method.to_string(),
        path: req.path,
        query: req.query,
        headers,
        body: String::from_utf8_lossy(&req.body[..req.body.len().min(MAX_LOGGED_BODY)])
            .into_owned(),
        status,
    }
}

async fn counters(
    State(sim): State<Arc<Inner>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut vendors = serde_json::Map::new();
    let mut keys = serde_json::Map::new();
    for slot in &sim.slots {
        let name = slot.endpoint.name().to_string();
        vendors.insert(name.clone(), slot.store.counters_json());
        keys.insert(name, slot.store.keys_json());
    }
    let mut body = json!({"vendors": vendors});
    let buckets: serde_json::Map<String, Value> = sim
        .slots
        .iter()
        .filter_map(|s| Some((s.endpoint.name().to_string(), s.bucket.as_ref()?.to_json())))
        .collect();
    if !buckets.is_empty() {
        body["buckets"] = Value::Object(buckets);
    }
    if query.get("keys").map(String::as_str) != Some("false") {
        body["keys"] = Value::Object(keys);
    }
    axum::Json(body).into_response()
}

async fn log(State(sim): State<Arc<Inner>>) -> Response {
    axum::Json(sim.log.to_json()).into_response()
}

async fn links(
    State(sim): State<Arc<Inner>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let vendor = query.get("vendor").map(String::as_str).unwrap_or("");
    match sim.slot(vendor) {
        Some(slot) => axum::Json(slot.store.link_keys()).into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"error": format!("?vendor= must be one of: {}", sim.names().join(", "))}),
            ),
        )
            .into_response(),
    }
}

async fn reset_counters(State(sim): State<Arc<Inner>>) -> StatusCode {
    for slot in &sim.slots {
        slot.store.reset_counters();
    }
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn durations() {
        assert_eq!(duration_arg("86400"), Ok(Duration::from_secs(86_400)));
        assert_eq!(duration_arg("50ms"), Ok(Duration::from_millis(50)));
        assert_eq!(duration_arg("2m"), Ok(Duration::from_secs(120)));
        assert!(duration_arg("soon").is_err());
    }

    #[test]
    fn default_args_are_the_default_config() {
        let args = SimArgs::try_parse_from(["unlinker-sim"]).unwrap();
        assert_eq!(args.port, 0);
        assert_eq!(SimConfig::from(args), SimConfig::default());
    }

    #[test]
    fn args_convert() {
        let args = SimArgs::try_parse_from([
            "unlinker-sim",
            "--rate-limit",
            "auth0=2/5",
            "--rate-limit",
            "gigya=1",
            "--error-rate",
            "0.25",
            "--latency",
            "50ms",
            "--gigya-wrong-dc",
            "eu1",
            "--all-linked",
        ])
        .unwrap();
        let config = SimConfig::from(args);
        assert_eq!(config.faults.rate_limits.len(), 2);
        assert_eq!(config.faults.error_rate, 0.25);
        assert_eq!(config.faults.latency, Duration::from_millis(50));
        assert_eq!(config.gigya.wrong_dc.as_deref(), Some("eu1"));
        assert!(config.links.all_linked);
        assert!(SimArgs::try_parse_from(["unlinker-sim", "--drop-rate", "1.5"]).is_err());
    }

    #[test]
    fn unknown_vendors_are_refused() {
        let mut config = SimConfig::default();
        config.faults.rate_limits = vec!["okta=1".parse().unwrap()];
        let err = Sim::new(config).err().unwrap().to_string();
        assert_eq!(
            err,
            "--rate-limit okta: unknown vendor (one of: auth0, fusionauth, gigya, newspark, firebase)"
        );
        let mut config = SimConfig::default();
        config.links.seed_vendor = Some("okta".into());
        assert!(Sim::new(config).is_err());
        let mut config = SimConfig::default();
        config.faults.background = vec!["auth0=20".parse().unwrap()];
        let err = Sim::new(config).err().unwrap().to_string();
        assert!(err.contains("needs a server-side limit"), "{err}");
        config = SimConfig::default();
        config.faults.background = vec!["okta=20".parse().unwrap()];
        assert!(Sim::new(config).is_err());
    }
}
