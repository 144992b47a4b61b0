//! `run --dry-run --check`: read-only calls through the real binary against the real simulator.
//!
//! Each row is reported `dry_run` ("would be removed") or `absent` from the vendor's read API;
//! Newspark, which has none, is `dry_run` unchecked. Nothing that changes state is ever sent (the
//! simulator's log and links prove it), the real checkpoint and report are never touched, and the
//! summary estimates the real run's duration per vendor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::*;
use serde_json::Value;

const FA_KEY: &str = "sim-fusionauth-key";
const IDP: &str = "82339786-3dff-42a6-aac6-1f1ceecb6c46";
const TENANT: &str = "30663132-6464-6665-3032-326466613934";
const GIGYA_SECRET: &str = "c2ltLXNlY3JldC1rZXk=";

const ENV: &[(&str, &str)] = &[
    ("A0_TOKEN", "sim-token"),
    ("A0_CLIENT_SECRET", "sim-client-secret"),
    ("FA_KEY", FA_KEY),
    ("GIGYA_SECRET", GIGYA_SECRET),
    ("NS_COOKIE", "session=sim-session"),
];

fn fa_user(i: usize) -> String {
    format!("6f0a9b4e-2c1d-4e8f-9a3b-{i:012x}")
}

fn job(dir: &Path, input: &str, vendors: &str) -> PathBuf {
    write(
        dir,
        "job.toml",
        &format!(
            r#"
name = "check-e2e"
[input]
path = "{input}"
[output]
report = "report.csv"
{vendors}
[retry]
max_attempts = 20
base_delay = "10ms"
max_delay = "200ms"
timeout = "5s"
"#
        ),
    )
}

fn auth0_token_table(url: &str) -> String {
    format!(
        r#"
[vendors.auth0]
type = "auth0"
base_url = "{url}"
token = "${{A0_TOKEN}}"
rate = 500
burst = 500
"#
    )
}

fn auth0_client_table(url: &str) -> String {
    format!(
        r#"
[vendors.auth0]
type = "auth0"
base_url = "{url}"
client_id = "sim-client"
client_secret = "${{A0_CLIENT_SECRET}}"
rate = 500
burst = 500
"#
    )
}

fn fusionauth_table(url: &str, rate: u32, burst: u32) -> String {
    format!(
        r#"
[vendors.fusionauth]
type = "fusionauth"
base_url = "{url}"
api_key = "${{FA_KEY}}"
tenant_id = "{TENANT}"
rate = {rate}
burst = {burst}
concurrency = 8
"#
    )
}

fn gigya_table(url: &str) -> String {
    format!(
        r#"
[vendors.gigya]
type = "gigya"
base_url = "{url}"
api_key = "sim-api-key"
user_key = "sim-user-key"
secret = "${{GIGYA_SECRET}}"
rate = 500
burst = 500
"#
    )
}

fn newspark_table(url: &str, rate: u32, burst: u32) -> String {
    format!(
        r#"
[vendors.newspark]
type = "newspark"
base_url = "{url}"
rate = {rate}
burst = {burst}

[vendors.newspark.headers]
Cookie = "${{NS_COOKIE}}"

[vendors.newspark.form]
formToken = "form-token-77aa"
"#
    )
}

fn run(job: &Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let job = job.display().to_string();
    let mut args = vec!["run", job.as_str(), "--no-progress"];
    args.extend_from_slice(extra);
    unlinker(&args, env)
}

/// Every file in `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Is `entry` (from `/_sim/log`) a read-only call of the vendor's read API (or Auth0's token
/// endpoint)?
fn is_read(entry: &Value) -> bool {
    let method = entry["method"].as_str().unwrap();
    let path = entry["path"].as_str().unwrap();
    match entry["vendor"].as_str().unwrap() {
        "auth0" => {
            (method == "GET"
                && path
                    .strip_prefix("/api/v2/users/")
                    .is_some_and(|user| !user.is_empty() && !user.contains('/')))
                || (method == "POST" && path == "/oauth/token")
        }
        "fusionauth" => method == "GET" && path == "/api/identity-provider/link",
        "gigya" => method == "POST" && path == "/accounts.getAccountInfo",
        _ => false,
    }
}

/// The outcome of a `--dry-run --check` run, with what every such run must satisfy already
/// checked: only reads reached the simulator, no link changed, no checkpoint was made, the real
/// report was not written and the dry-run report sits beside it.
struct Checked {
    out: Run,
    rows: BTreeMap<u64, Row>,
    summary: Value,
    log: Vec<Value>,
}

fn check_run(sim: &Sim, dir: &Path, job: &Path, extra: &[&str], env: &[(&str, &str)]) -> Checked {
    const VENDORS: [&str; 4] = ["auth0", "fusionauth", "gigya", "newspark"];
    let links_before: Vec<Vec<String>> = VENDORS.iter().map(|v| sim.links(v)).collect();
    let mut files_before = snapshot(dir);
    // A dry run keeps its own runs log beside its report, appended by every dry run.
    files_before.remove("report.dry-run.csv.runs.jsonl");
    let logged_before = sim.log().len();
    let counters_before = sim.counters();
    let summary_path = dir.join("check-summary.json");
    let mut args = vec![
        "--dry-run",
        "--check",
        "--summary",
        summary_path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = run(job, &args, env);

    let log: Vec<Value> = sim.log().split_off(logged_before);
    for e in &log {
        assert!(is_read(e), "only reads may be sent: {e:#}");
    }
    let counters = sim.counters();
    for v in VENDORS {
        for field in ["unlink_calls", "removed", "user_deletes"] {
            assert_eq!(
                counters["vendors"][v][field], counters_before["vendors"][v][field],
                "no {v} {field}"
            );
        }
    }
    let links_after: Vec<Vec<String>> = VENDORS.iter().map(|v| sim.links(v)).collect();
    assert_eq!(links_before, links_after, "no link changed");

    // The dry-run report and its runs log are the only new files (besides the summary); nothing
    // else changed.
    let mut files_after = snapshot(dir);
    let report = files_after.remove("report.dry-run.csv");
    assert!(
        report.is_some(),
        "report at report.dry-run.csv\n{}",
        out.stderr
    );
    files_after.remove("check-summary.json");
    assert!(
        files_after
            .remove("report.dry-run.csv.runs.jsonl")
            .is_some()
    );
    assert_eq!(
        files_after.keys().collect::<Vec<_>>(),
        files_before.keys().collect::<Vec<_>>(),
        "no checkpoint, lock or real report is created"
    );
    assert!(files_after == files_before, "no existing file changed");

    let rows = by_line(&read_report(&dir.join("report.dry-run.csv")));
    let summary = if summary_path.exists() {
        read_json(&summary_path)
    } else {
        Value::Null
    };
    Checked {
        out,
        rows,
        summary,
        log,
    }
}

fn outcomes(rows: &BTreeMap<u64, Row>) -> BTreeMap<u64, &str> {
    rows.iter()
        .map(|(l, r)| (*l, r["outcome"].as_str()))
        .collect()
}

fn expect(list: &[(u64, &'static str)]) -> BTreeMap<u64, &'static str> {
    list.iter().copied().collect()
}

fn header<'a>(entry: &'a Value, name: &str) -> &'a str {
    entry["headers"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} header: {entry:#}"))
}

// ---------------------------------------------------------------------------------------------
// Per vendor: linked, absent, invalid and duplicate rows; only reads.
// ---------------------------------------------------------------------------------------------

const AUTH0_SEED: &str = "vendor,user_id,provider,identity_user_id\n\
    auth0,auth0|c0,github,100\n\
    auth0,auth0|c0,facebook,101\n\
    auth0,auth0|c1,github,110\n\
    auth0,auth0|c2,google-oauth2,120\n\
    auth0,auth0|c3,github,130\n";

/// Lines 2–6 linked; 7 a user without that identity; 8 no such user; 9 invalid; 10 duplicate.
const AUTH0_INPUT: &str = "user_id,provider,identity_user_id\n\
    auth0|c0,github,100\n\
    auth0|c0,facebook,101\n\
    auth0|c1,github,110\n\
    auth0|c2,google-oauth2,120\n\
    auth0|c3,github,130\n\
    auth0|c1,twitter,111\n\
    auth0|nobody,github,1\n\
    auth0|c1,myspace,1\n\
    auth0|c0,github,100\n";

fn auth0_expected() -> BTreeMap<u64, &'static str> {
    expect(&[
        (2, "dry_run"),
        (3, "dry_run"),
        (4, "dry_run"),
        (5, "dry_run"),
        (6, "dry_run"),
        (7, "absent"),
        (8, "absent"),
        (9, "invalid"),
        (10, "duplicate"),
    ])
}

fn assert_auth0_rows(sim: &Sim, c: &Checked) {
    assert_eq!(c.out.code, 3, "an invalid row → exit 3\n{}", c.out.stderr);
    assert_eq!(outcomes(&c.rows), auth0_expected());
    for line in 2..=6 {
        let r = &c.rows[&line];
        assert_eq!(r["message"], "would be removed", "{r:?}");
        assert_eq!(r["http_status"], "200");
        assert_eq!(r["attempts"], "1");
        assert!(
            r["request"].starts_with(&format!("DELETE {}/api/v2/users/auth0%7Cc", sim.url)),
            "the request a real run would send: {}",
            r["request"]
        );
    }
    assert_eq!(
        c.rows[&2]["request"],
        format!(
            "DELETE {}/api/v2/users/auth0%7Cc0/identities/github/100",
            sim.url
        )
    );
    assert_eq!(c.rows[&7]["http_status"], "200");
    assert!(
        c.rows[&7]["message"].contains("no such identity"),
        "{}",
        c.rows[&7]["message"]
    );
    assert_eq!(c.rows[&8]["http_status"], "404");
    assert_eq!(c.rows[&8]["vendor_code"], "inexistent_user");
    assert!(c.rows[&9]["message"].contains("`provider`"));
    assert!(c.rows[&10]["message"].contains("line 2"));
    for r in c.rows.values() {
        assert!(!r["request"].contains("sim-token"), "{}", r["request"]);
    }
    // One read per row sent, of the row's user.
    let reads: Vec<&Value> = c.log.iter().filter(|e| e["method"] == "GET").collect();
    assert_eq!(reads.len(), 7, "{:#?}", c.log);
    let counters = sim.counters();
    assert_eq!(counters["keys"]["auth0"]["auth0|c0"]["reads"], 2);
    assert_eq!(counters["keys"]["auth0"]["auth0|c1"]["reads"], 2);
    assert_eq!(counters["keys"]["auth0"]["auth0|nobody"]["reads"], 1);
    assert!(
        reads
            .iter()
            .any(|e| e["path"] == "/api/v2/users/auth0%7Cc0" && e["query"].is_null()),
        "{reads:#?}"
    );
    assert_eq!(c.summary["estimate"]["auth0"]["rows"], 5, "{}", c.summary);
}

#[test]
fn check_auth0_with_a_static_token_only_reads() {
    let dir = tempfile::tempdir().unwrap();
    let seed = write(dir.path(), "seed.csv", AUTH0_SEED);
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);
    write(dir.path(), "in.csv", AUTH0_INPUT);
    let job = job(dir.path(), "in.csv", &auth0_token_table(&sim.url));
    let c = check_run(&sim, dir.path(), &job, &[], ENV);
    assert_auth0_rows(&sim, &c);
    for e in &c.log {
        assert_eq!(header(e, "authorization"), "Bearer sim-token");
    }
    assert_eq!(sim.vendor_count("auth0", "token_calls"), 0);
}

#[test]
fn check_auth0_with_client_credentials_fetches_one_token_and_only_reads() {
    let dir = tempfile::tempdir().unwrap();
    let seed = write(dir.path(), "seed.csv", AUTH0_SEED);
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);
    write(dir.path(), "in.csv", AUTH0_INPUT);
    let job = job(dir.path(), "in.csv", &auth0_client_table(&sim.url));
    let c = check_run(&sim, dir.path(), &job, &[], ENV);
    assert_auth0_rows(&sim, &c);
    // The token fetch is the one POST, first; every read carries the fetched token.
    assert_eq!(c.log[0]["method"], "POST");
    assert_eq!(c.log[0]["path"], "/oauth/token");
    assert_eq!(sim.vendor_count("auth0", "token_calls"), 1);
    let form = decode_pairs(c.log[0]["body"].as_str().unwrap());
    assert!(form.contains(&("grant_type".into(), "client_credentials".into())));
    for e in &c.log[1..] {
        assert_eq!(e["method"], "GET");
        let auth = header(e, "authorization");
        assert!(
            auth.starts_with("Bearer ") && auth != "Bearer sim-token",
            "{auth}"
        );
    }
    assert!(!c.out.stderr.contains("sim-client-secret"));
}

#[test]
fn check_fusionauth_only_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = String::from("vendor,user_id,identity_provider_id,identity_provider_user_id\n");
    for i in 0..5 {
        seed.push_str(&format!("fusionauth,{},{IDP},fb-{i}\n", fa_user(i)));
    }
    let seed = write(dir.path(), "seed.csv", &seed);
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);
    let mut input = String::from("user_id,identity_provider_id,identity_provider_user_id\n");
    for i in 0..7 {
        input.push_str(&format!("{},{IDP},fb-{i}\n", fa_user(i))); // 2..=8; 7 and 8 absent
    }
    input.push_str(&format!("not-a-uuid,{IDP},x\n")); // 9
    input.push_str(&format!("{},{IDP},fb-0\n", fa_user(0).to_uppercase())); // 10: dup of 2
    write(dir.path(), "in.csv", &input);
    let job = job(dir.path(), "in.csv", &fusionauth_table(&sim.url, 500, 500));
    let c = check_run(&sim, dir.path(), &job, &[], ENV);
    assert_eq!(c.out.code, 3, "{}", c.out.stderr);
    assert_eq!(
        outcomes(&c.rows),
        expect(&[
            (2, "dry_run"),
            (3, "dry_run"),
            (4, "dry_run"),
            (5, "dry_run"),
            (6, "dry_run"),
            (7, "absent"),
            (8, "absent"),
            (9, "invalid"),
            (10, "duplicate"),
        ])
    );
    let query = |i: usize| {
        format!(
            "identityProviderId={IDP}&identityProviderUserId=fb-{i}&userId={}",
            fa_user(i)
        )
    };
    for i in 0..5 {
        let r = &c.rows[&(i as u64 + 2)];
        assert_eq!(r["message"], "would be removed");
        assert_eq!(r["http_status"], "200");
        assert_eq!(
            r["request"],
            format!("DELETE {}/api/identity-provider/link?{}", sim.url, query(i))
        );
    }
    assert_eq!(c.rows[&7]["http_status"], "404");
    assert!(c.rows[&9]["message"].contains("`user_id`"));
    assert_eq!(c.log.len(), 7);
    for (i, e) in c.log.iter().enumerate() {
        assert_eq!(e["method"], "GET", "{e:#}");
        assert_eq!(header(e, "authorization"), FA_KEY);
        assert_eq!(header(e, "x-fusionauth-tenantid"), TENANT);
        assert_eq!(e["body"], "", "entry {i}");
    }
    assert!(c.log.iter().any(|e| e["query"] == query(0).as_str()));
    let counters = sim.counters();
    for i in 0..7 {
        let key = format!("{}/{IDP}/fb-{i}", fa_user(i));
        assert_eq!(counters["keys"]["fusionauth"][&key]["reads"], 1, "{key}");
    }
    assert_eq!(c.summary["estimate"]["fusionauth"]["rows"], 5);
}

#[test]
fn check_gigya_only_reads_account_info() {
    let dir = tempfile::tempdir().unwrap();
    let seed = write(
        dir.path(),
        "seed.csv",
        "vendor,uid,provider\n\
         gigya,k0,facebook\n\
         gigya,k0,googleplus\n\
         gigya,k1,twitter\n\
         gigya,k2,facebook\n",
    );
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);
    write(
        dir.path(),
        "in.csv",
        "uid,provider\n\
         k0,facebook\n\
         k0,GooglePlus\n\
         k1,twitter\n\
         k2,facebook\n\
         k1,facebook\n\
         nobody,facebook\n\
         k2,\n\
         k0,facebook\n",
    );
    let job = job(dir.path(), "in.csv", &gigya_table(&sim.url));
    let c = check_run(&sim, dir.path(), &job, &[], ENV);
    assert_eq!(c.out.code, 3, "{}", c.out.stderr);
    assert_eq!(
        outcomes(&c.rows),
        expect(&[
            (2, "dry_run"),
            (3, "dry_run"),
            (4, "dry_run"),
            (5, "dry_run"),
            (6, "absent"),
            (7, "absent"),
            (8, "invalid"),
            (9, "duplicate"),
        ])
    );
    for line in 2..=5 {
        let r = &c.rows[&line];
        assert_eq!(r["message"], "would be removed");
        assert!(
            r["request"].contains("/socialize.removeConnection"),
            "{}",
            r["request"]
        );
        assert!(!r["request"].contains("c2ltLXNlY3JldC1rZXk"));
    }
    assert!(
        c.rows[&6]["message"].contains("no facebook connection"),
        "{}",
        c.rows[&6]["message"]
    );
    assert_eq!(c.rows[&7]["vendor_code"], "403005");
    assert!(c.rows[&7]["message"].contains("not found"));
    assert!(c.rows[&8]["message"].contains("`provider`"));
    assert_eq!(c.log.len(), 6);
    for e in &c.log {
        assert!(e["query"].is_null(), "no credentials in a URL: {e:#}");
        let form = decode_pairs(e["body"].as_str().unwrap());
        assert!(form.contains(&("include".into(), "identities-active".into())));
        assert!(!form.iter().any(|(k, _)| k == "provider"), "{form:?}");
    }
    assert_eq!(sim.counters()["keys"]["gigya"]["k0"]["reads"], 2);
    assert_eq!(c.summary["estimate"]["gigya"]["rows"], 4);
}

#[test]
fn check_newspark_rows_are_dry_run_unchecked_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&["--all-linked"]);
    write(
        dir.path(),
        "in.csv",
        "vhost,uid,external_id_provider_name,sub_provider_name\n\
         12,4400123,facebook,none\n\
         12,4400123,Janrain,Twitter\n\
         12,4400777,gigya,\n\
         12,4400123,facebook,none\n",
    );
    let job = job(dir.path(), "in.csv", &newspark_table(&sim.url, 2, 1));
    let c = check_run(&sim, dir.path(), &job, &[], ENV);
    assert_eq!(c.out.code, 0, "{}", c.out.stderr);
    assert_eq!(
        outcomes(&c.rows),
        expect(&[
            (2, "dry_run"),
            (3, "dry_run"),
            (4, "dry_run"),
            (5, "duplicate")
        ])
    );
    for line in 2..=4 {
        let r = &c.rows[&line];
        assert!(
            r["message"].contains("could not be checked"),
            "{}",
            r["message"]
        );
        assert_eq!(r["http_status"], "");
        assert_eq!(r["attempts"], "0");
        assert!(
            r["request"].starts_with(&format!("POST {}/action/v2/unlinkaccount ", sim.url)),
            "{}",
            r["request"]
        );
        assert!(r["request"].contains("formToken=[redacted]"));
        assert!(!r["request"].contains("form-token-77aa"));
    }
    assert!(c.log.is_empty(), "{:#?}", c.log);
    assert!(sim.log().is_empty());
    assert_eq!(sim.vendor_count("newspark", "requests"), 0);
    assert_eq!(c.summary["estimate"]["newspark"]["rows"], 3);
}

// ---------------------------------------------------------------------------------------------
// Rate limits, halts, the estimate and the real checkpoint.
// ---------------------------------------------------------------------------------------------

#[test]
fn check_waits_out_rate_limit_answers_retries_errors_and_still_only_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = String::from("vendor,user_id,identity_provider_id,identity_provider_user_id\n");
    let mut input = String::from("user_id,identity_provider_id,identity_provider_user_id\n");
    for i in 0..14 {
        seed.push_str(&format!("fusionauth,{},{IDP},r{i}\n", fa_user(i)));
        input.push_str(&format!("{},{IDP},r{i}\n", fa_user(i)));
    }
    let seed = write(dir.path(), "seed.csv", &seed);
    let sim = Sim::start(&[
        "--seed",
        seed.to_str().unwrap(),
        "--rate-limit",
        "fusionauth=5",
        "--error-rate",
        "0.5",
        "--fault-seed",
        "5",
    ]);
    write(dir.path(), "in.csv", &input);
    let job = job(dir.path(), "in.csv", &fusionauth_table(&sim.url, 50, 50));
    let c = check_run(&sim, dir.path(), &job, &[], ENV);
    assert_eq!(c.out.code, 0, "{}", c.out.stderr);
    assert_eq!(c.rows.len(), 14);
    assert!(
        c.rows.values().all(|r| r["outcome"] == "dry_run"),
        "{:?}",
        outcomes(&c.rows)
    );
    let limited = sim.vendor_count("fusionauth", "rate_limited");
    assert!(limited > 0, "the simulator rate-limited some reads");
    assert!(c.log.iter().any(|e| e["status"] == 429));
    // 503 answers are retried like in a real run.
    let errors = sim.vendor_count("fusionauth", "errors");
    assert!(errors > 0, "the simulator answered some reads 503");
    assert_eq!(
        c.log.iter().filter(|e| e["status"] == 503).count() as u64,
        errors
    );
    assert!(c.rows.values().any(|r| r["attempts"] != "1"));
    assert_eq!(c.summary["vendors"]["fusionauth"]["rate_limited"], limited);
    assert!(
        c.out.stderr.contains(&format!(
            "{limited} rate-limit answer{}",
            if limited == 1 { "" } else { "s" }
        )),
        "{}",
        c.out.stderr
    );
    // Every read, rate-limited or not, is in some row's attempts.
    let attempts: u64 = c
        .rows
        .values()
        .map(|r| r["attempts"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(attempts, c.log.len() as u64);
    assert_eq!(sim.vendor_count("fusionauth", "reads"), attempts);
}

#[test]
fn check_halts_on_a_refused_token_and_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let seed = write(dir.path(), "seed.csv", AUTH0_SEED);
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);
    write(dir.path(), "in.csv", AUTH0_INPUT);
    let job = job(dir.path(), "in.csv", &auth0_token_table(&sim.url));
    let env = [("A0_TOKEN", "revoked-token-4e1d")];
    let c = check_run(&sim, dir.path(), &job, &["--concurrency", "1"], &env);
    assert_eq!(c.out.code, 6, "{}", c.out.stderr);
    assert!(c.out.stderr.contains("halted"), "{}", c.out.stderr);
    assert!(c.out.stderr.contains("vendor `auth0`"), "{}", c.out.stderr);
    assert!(!c.out.stderr.contains("revoked-token-4e1d"));
    // The invalid and duplicate rows need no call, but no valid row got an outcome.
    assert!(
        c.rows
            .values()
            .all(|r| r["outcome"] == "invalid" || r["outcome"] == "duplicate"),
        "{:?}",
        outcomes(&c.rows)
    );
    assert_eq!(c.log.len(), 1, "halted at the first refusal: {:#?}", c.log);
    assert_eq!(c.log[0]["status"], 401);
    assert_eq!(sim.vendor_count("auth0", "unauthorized"), 1);
    let status = unlinker(&["status", job.to_str().unwrap()], &env);
    assert!(
        status.stdout.contains("nothing has run yet"),
        "{}",
        status.stdout
    );
}

#[test]
fn check_estimates_the_real_run_per_vendor() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = String::new();
    let mut input = String::new();
    for i in 0..6 {
        let a0 = format!(
            r#""vendor":"auth0","user_id":"auth0|e{i}","provider":"github","identity_user_id":"{i}""#
        );
        let fa = format!(
            r#""vendor":"fusionauth","user_id":"{}","identity_provider_id":"{IDP}","identity_provider_user_id":"e{i}""#,
            fa_user(i)
        );
        // The last row of each checked vendor is not linked.
        if i < 5 {
            seed.push_str(&format!("{{{a0}}}\n{{{fa}}}\n"));
        }
        input.push_str(&format!("{{{a0}}}\n{{{fa}}}\n"));
    }
    for i in 0..4 {
        input.push_str(&format!(
            "{{\"vendor\":\"newspark\",\"vhost\":3,\"uid\":{},\"external_id_provider_name\":\"facebook\"}}\n",
            100 + i
        ));
    }
    let seed = write(dir.path(), "seed.jsonl", &seed);
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);
    write(dir.path(), "in.jsonl", &input);
    let vendors = format!(
        r#"
[vendors.auth0]
type = "auth0"
base_url = "{url}"
token = "${{A0_TOKEN}}"
delete_unlinked_user = true
rate = 4
burst = 2
{fa}{ns}"#,
        url = sim.url,
        fa = fusionauth_table(&sim.url, 5, 1),
        ns = newspark_table(&sim.url, 2, 1),
    );
    let job = job(dir.path(), "in.jsonl", &vendors);
    let c = check_run(&sim, dir.path(), &job, &[], ENV);
    assert_eq!(c.out.code, 0, "{}", c.out.stderr);
    assert_eq!(c.rows.len(), 16);

    let dry_run = |vendor: &str| {
        c.rows
            .values()
            .filter(|r| r["vendor"] == vendor && r["outcome"] == "dry_run")
            .count() as u64
    };
    // (vendor, rows that would be sent, calls per row, rate, burst)
    for (vendor, rows, per_row, rate, burst) in [
        ("auth0", 5, 2, 4.0, 2),
        ("fusionauth", 5, 1, 5.0, 1),
        ("newspark", 4, 1, 2.0, 1),
    ] {
        assert_eq!(dry_run(vendor), rows, "{vendor}: {:?}", outcomes(&c.rows));
        let e = &c.summary["estimate"][vendor];
        assert_eq!(e["rows"], rows, "{vendor}: {e}");
        assert_eq!(e["calls"], rows * per_row, "{vendor}: {e}");
        assert_eq!(e["rate"], rate, "{vendor}: {e}");
        let seconds = (rows * per_row - burst) as f64 / rate;
        let got = e["seconds"].as_f64().unwrap();
        assert!(
            (got - seconds).abs() < 0.01,
            "{vendor}: {got} s, expected (calls − burst) / rate = {seconds}"
        );
        let s = |n: u64| if n == 1 { "" } else { "s" };
        let calls = rows * per_row;
        let line = format!(
            "estimate {vendor}: {rows} row{} would be sent ({calls} call{}) at {rate}/s",
            s(rows),
            s(calls)
        );
        assert!(c.out.stderr.contains(&line), "{line}\n{}", c.out.stderr);
    }
}

#[test]
fn check_never_touches_the_real_checkpoint_or_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = String::from("vendor,user_id,identity_provider_id,identity_provider_user_id\n");
    let mut input = String::from("user_id,identity_provider_id,identity_provider_user_id\n");
    for i in 0..6 {
        seed.push_str(&format!("fusionauth,{},{IDP},c{i}\n", fa_user(i)));
        input.push_str(&format!("{},{IDP},c{i}\n", fa_user(i)));
    }
    let seed = write(dir.path(), "seed.csv", &seed);
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);
    write(dir.path(), "in.csv", &input);
    let job = job(dir.path(), "in.csv", &fusionauth_table(&sim.url, 500, 500));

    // A real run that stops after two rows leaves a checkpoint and a report.
    let first = run(&job, &["--limit", "2", "--concurrency", "1"], ENV);
    assert_eq!(first.code, 4, "{}", first.stderr);
    assert!(dir.path().join("report.csv.ckpt").exists());
    assert_eq!(read_report(&dir.path().join("report.csv")).len(), 2);
    assert_eq!(sim.vendor_count("fusionauth", "unlink_calls"), 2);

    // check_run asserts that no file in the folder changed and only reads were sent.
    let c = check_run(&sim, dir.path(), &job, &[], ENV);
    assert_eq!(c.out.code, 0, "{}", c.out.stderr);
    assert_eq!(
        outcomes(&c.rows),
        expect(&[
            (2, "absent"),
            (3, "absent"),
            (4, "dry_run"),
            (5, "dry_run"),
            (6, "dry_run"),
            (7, "dry_run"),
        ]),
        "the dry run reads the vendor, not the checkpoint"
    );
    let status = unlinker(&["status", job.to_str().unwrap()], ENV);
    assert!(status.stdout.contains("unlinked   2"), "{}", status.stdout);
    assert!(status.stdout.contains("pending    4"), "{}", status.stdout);

    // The real run resumes where it stopped.
    let second = run(&job, &[], ENV);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let rows = by_line(&read_report(&dir.path().join("report.csv")));
    assert_eq!(rows.len(), 6);
    assert!(rows.values().all(|r| r["outcome"] == "unlinked"));
    assert_eq!(sim.vendor_count("fusionauth", "unlink_calls"), 6);
}
