//! Every vendor end to end: the real `unlinker` against the real `unlinker-sim` on 127.0.0.1.
//!
//! Per vendor: a batch where most links exist and a few do not, the exact request on the wire
//! (from `/_sim/log`), the simulator's per-key counters, the vendor's validation rules and the
//! answer classes the simulator can produce (rate limits, 5xx, wrong data center, wrong
//! credentials). Then several vendors in one job: a rate-limited vendor does not hold up the
//! others, and Auth0's `delete_unlinked_user` second step.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::support::*;
use serde_json::Value;

const FA_KEY: &str = "sim-fusionauth-key";
const GIGYA_API_KEY: &str = "sim-api-key";
const GIGYA_USER_KEY: &str = "sim-user-key";
/// base64("sim-secret-key"): the simulator's default Gigya secret.
const GIGYA_SECRET: &str = "c2ltLXNlY3JldC1rZXk=";
/// The secret's prefix, which matches it raw and percent-encoded (`=` → `%3D`) alike.
const GIGYA_SECRET_STEM: &str = "c2ltLXNlY3JldC1rZXk";
const NS_COOKIE: &str = "session=sim-session";

/// Credentials reach the job through the environment, as they do in production.
const ENV: &[(&str, &str)] = &[
    ("A0_TOKEN", "sim-token"),
    ("A0_CLIENT_SECRET", "sim-client-secret"),
    ("FA_KEY", FA_KEY),
    ("GIGYA_SECRET", GIGYA_SECRET),
    ("NS_COOKIE", NS_COOKIE),
];

const IDP: &str = "82339786-3dff-42a6-aac6-1f1ceecb6c46";
const TENANT: &str = "30663132-6464-6665-3032-326466613934";

fn fa_user(i: usize) -> String {
    format!("6f0a9b4e-2c1d-4e8f-9a3b-{i:012x}")
}

/// A job with `vendors` (TOML tables) reading `input` and writing `report.csv`; fast retries.
fn job(dir: &Path, input: &str, vendors: &str) -> PathBuf {
    job_with(dir, input, vendors, 8)
}

fn job_with(dir: &Path, input: &str, vendors: &str, max_attempts: u32) -> PathBuf {
    write(
        dir,
        "job.toml",
        &format!(
            r#"
name = "vendors-e2e"
[input]
path = "{input}"
[output]
report = "report.csv"
{vendors}
[retry]
max_attempts = {max_attempts}
base_delay = "10ms"
max_delay = "200ms"
timeout = "5s"
"#
        ),
    )
}

fn auth0_table(url: &str) -> String {
    format!(
        r#"
[vendors.auth0]
type = "auth0"
base_url = "{url}"
token = "${{A0_TOKEN}}"
rate = 500
burst = 500
concurrency = 8
"#
    )
}

fn fusionauth_table(url: &str) -> String {
    format!(
        r#"
[vendors.fusionauth]
type = "fusionauth"
base_url = "{url}"
api_key = "${{FA_KEY}}"
tenant_id = "{TENANT}"
rate = 500
burst = 500
concurrency = 8
"#
    )
}

fn gigya_table(url: &str, auth: &str) -> String {
    format!(
        r#"
[vendors.gigya]
type = "gigya"
base_url = "{url}"
api_key = "{GIGYA_API_KEY}"
user_key = "{GIGYA_USER_KEY}"
secret = "${{GIGYA_SECRET}}"
auth = "{auth}"
rate = 500
burst = 500
concurrency = 8
"#
    )
}

fn newspark_table(url: &str) -> String {
    format!(
        r#"
[vendors.newspark]
type = "newspark"
base_url = "{url}"
rate = 500
burst = 500
concurrency = 4

[vendors.newspark.headers]
Cookie = "${{NS_COOKIE}}"

[vendors.newspark.form]
formToken = "${{NS_FORM_TOKEN}}"
"#
    )
}

fn run(job: &Path, extra: &[&str]) -> Run {
    run_env(job, extra, &[])
}

fn run_env(job: &Path, extra: &[&str], more_env: &[(&str, &str)]) -> Run {
    let job = job.display().to_string();
    let mut args = vec!["run", job.as_str(), "--no-progress"];
    args.extend_from_slice(extra);
    let mut env = ENV.to_vec();
    env.extend_from_slice(more_env);
    unlinker(&args, &env)
}

/// The simulator's log entries of one vendor.
fn log_of(sim: &Sim, vendor: &str) -> Vec<Value> {
    sim.log()
        .into_iter()
        .filter(|e| e["vendor"] == vendor)
        .collect()
}

fn header<'a>(entry: &'a Value, name: &str) -> &'a str {
    entry["headers"][name].as_str().unwrap_or_else(|| {
        panic!(
            "no {name} header in {}",
            serde_json::to_string_pretty(entry).unwrap()
        )
    })
}

/// The one log entry whose decoded form body holds every `name=value` of `want`.
fn entry_with_form<'a>(entries: &'a [Value], want: &[(&str, &str)]) -> &'a Value {
    let found: Vec<&Value> = entries
        .iter()
        .filter(|e| {
            let form = decode_pairs(e["body"].as_str().unwrap_or(""));
            want.iter()
                .all(|(n, v)| form.iter().any(|(k, x)| k == n && x == v))
        })
        .collect();
    assert_eq!(found.len(), 1, "one request with {want:?}: {found:#?}");
    found[0]
}

/// Outcome of every report line, for a one-glance comparison.
fn outcomes(rows: &BTreeMap<u64, Row>) -> BTreeMap<u64, String> {
    rows.iter()
        .map(|(l, r)| (*l, r["outcome"].clone()))
        .collect()
}

/// `vendor NAME: N requests, X requests/s, M rate-limit answers` (or `1 rate-limit answer`) → M.
fn rate_limit_answers(stderr: &str, vendor: &str) -> u64 {
    let prefix = format!("vendor {vendor}: ");
    let line = stderr
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` summary line in:\n{stderr}"));
    let before = line
        .strip_suffix(" rate-limit answers")
        .or_else(|| line.strip_suffix(" rate-limit answer"))
        .unwrap_or_else(|| panic!("unexpected summary line {line:?}"));
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

fn assert_invalid(rows: &BTreeMap<u64, Row>, line: u64, field: &str) {
    let r = &rows[&line];
    assert_eq!(r["outcome"], "invalid", "line {line}: {r:?}");
    assert!(
        r["message"].contains(&format!("`{field}`")),
        "line {line}: the message names `{field}`: {}",
        r["message"]
    );
    assert_eq!(r["http_status"], "", "nothing sent for line {line}");
    assert_eq!(r["attempts"], "0");
}

fn assert_duplicate_of(rows: &BTreeMap<u64, Row>, line: u64, first: u64) {
    let r = &rows[&line];
    assert_eq!(r["outcome"], "duplicate", "line {line}: {r:?}");
    assert!(
        r["message"].contains(&format!("line {first}")),
        "{}",
        r["message"]
    );
    assert_eq!(r["attempts"], "0");
}

// ---------------------------------------------------------------------------------------------
// 1. One vendor at a time: a batch, the wire, the counters, validation.
// ---------------------------------------------------------------------------------------------

#[test]
fn fusionauth_batch_wire_counters_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    let idp_user = |i: usize| {
        if i == 0 {
            "a|b c/d+e".to_string()
        } else {
            format!("fb-{i}")
        }
    };
    // Rows 0..25 are linked; 25..30 are not.
    let mut seed = String::from("vendor,user_id,identity_provider_id,identity_provider_user_id\n");
    for i in 0..25 {
        seed.push_str(&format!(
            "fusionauth,{},{IDP},{}\n",
            fa_user(i),
            idp_user(i)
        ));
    }
    let seed = write(dir.path(), "seed.csv", &seed);
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);
    assert_eq!(sim.links("fusionauth").len(), 25);

    let mut input = String::from("user_id,identity_provider_id,identity_provider_user_id\n");
    for i in 0..30 {
        // Line 7 spells its UUID in capitals: it is the same user.
        let user = if i == 5 {
            fa_user(i).to_uppercase()
        } else {
            fa_user(i)
        };
        input.push_str(&format!("{user},{IDP},{}\n", idp_user(i)));
    }
    input.push_str(&format!("not-a-uuid,{IDP},x\n")); // line 32
    input.push_str(&format!(
        "{},82339786-3dff-42a6-aac6-1f1ceecb6c4z,x\n",
        fa_user(1)
    )); // 33
    input.push_str(&format!("{},{IDP},\n", fa_user(1))); // 34
    input.push_str(&format!("{},{IDP},fb-1\n", fa_user(1).to_uppercase())); // 35: dup of 3
    write(dir.path(), "in.csv", &input);
    let job = job(dir.path(), "in.csv", &fusionauth_table(&sim.url));

    let out = run(&job, &[]);
    assert_eq!(out.code, 3, "invalid rows → exit 3\n{}", out.stderr);
    let rows = by_line(&read_report(&dir.path().join("report.csv")));
    assert_eq!(rows.len(), 34, "{:?}", outcomes(&rows));
    for i in 0..30 {
        let line = i as u64 + 2;
        let r = &rows[&line];
        assert_eq!(r["vendor"], "fusionauth");
        assert_eq!(
            r["key"],
            format!("{}/{IDP}/{}", fa_user(i), idp_user(i)),
            "UUIDs are lower-cased in the key"
        );
        assert_eq!(r["attempts"], "1", "line {line}");
        if i < 25 {
            assert_eq!(r["outcome"], "unlinked", "line {line}: {r:?}");
            assert_eq!(r["http_status"], "200");
            assert_eq!(r["message"], "");
        } else {
            assert_eq!(r["outcome"], "absent", "404 → absent, line {line}: {r:?}");
            assert_eq!(r["http_status"], "404");
            assert!(r["message"].contains("does not exist"), "{}", r["message"]);
        }
        assert!(!r["request"].contains(FA_KEY), "{}", r["request"]);
    }
    assert_invalid(&rows, 32, "user_id");
    assert_invalid(&rows, 33, "identity_provider_id");
    assert_invalid(&rows, 34, "identity_provider_user_id");
    assert_duplicate_of(&rows, 35, 3);

    // Each sent row reached the simulator exactly once; the seeded ones were removed.
    let counters = sim.counters();
    assert_eq!(counters["vendors"]["fusionauth"]["unlink_calls"], 30);
    assert_eq!(counters["vendors"]["fusionauth"]["requests"], 30);
    assert_eq!(counters["vendors"]["fusionauth"]["removed"], 25);
    let keys = &counters["keys"]["fusionauth"];
    assert_eq!(keys.as_object().unwrap().len(), 30, "{keys}");
    for i in 0..30 {
        let k = &keys[format!("{}/{IDP}/{}", fa_user(i), idp_user(i))];
        assert_eq!(k["unlink_calls"], 1, "row {i}: {k}");
        assert_eq!(k["removed"], u64::from(i < 25), "row {i}: {k}");
    }
    assert!(sim.links("fusionauth").is_empty());

    // The wire: DELETE with the encoded query, the bare key and the tenant header, no body.
    let log = log_of(&sim, "fusionauth");
    assert_eq!(log.len(), 30);
    let query0 = format!(
        "identityProviderId={IDP}&identityProviderUserId=a%7Cb%20c%2Fd%2Be&userId={}",
        fa_user(0)
    );
    let e = log
        .iter()
        .find(|e| e["query"] == query0.as_str())
        .unwrap_or_else(|| panic!("no request with query {query0}: {log:#?}"));
    assert_eq!(e["method"], "DELETE");
    assert_eq!(e["path"], "/api/identity-provider/link");
    assert_eq!(
        header(e, "authorization"),
        FA_KEY,
        "the bare key, no Bearer"
    );
    assert_eq!(header(e, "x-fusionauth-tenantid"), TENANT);
    assert_eq!(e["body"], "");
    assert_eq!(
        rows[&2]["request"],
        format!("DELETE {}/api/identity-provider/link?{query0}", sim.url)
    );
    // The capitalised row went out lower-cased.
    let q5 = format!(
        "identityProviderId={IDP}&identityProviderUserId=fb-5&userId={}",
        fa_user(5)
    );
    assert!(log.iter().any(|e| e["query"] == q5.as_str()), "{log:#?}");
    for e in &log {
        assert_eq!(e["method"], "DELETE");
        assert_eq!(header(e, "authorization"), FA_KEY);
        assert_eq!(header(e, "x-fusionauth-tenantid"), TENANT);
    }
}

/// Gigya rows: `g00x`..`g29x`, providers cycling; 0..25 linked, 25..30 unknown accounts.
fn gigya_provider(i: usize) -> &'static str {
    ["facebook", "googleplus", "twitter"][i % 3]
}

#[test]
fn gigya_secret_mode_batch_wire_counters_classes_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = String::from("vendor,uid,provider,site_login\n");
    for i in 0..25 {
        seed.push_str(&format!("gigya,g{i:02}x,{},\n", gigya_provider(i)));
    }
    // An account whose only identity is one social connection and no site login.
    seed.push_str("gigya,lonely,facebook,false\n");
    let seed = write(dir.path(), "seed.csv", &seed);
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);

    let mut input = String::from("uid,provider,cid,remove_login_id,last_identity_handling\n");
    for i in 0..30 {
        let line = match i {
            0 => "g00x,facebook,gdpr-1,true,".to_string(),
            // Provider names are lower-case on Gigya's side.
            1 => "g01x,GooglePlus,,,".to_string(),
            _ => format!("g{i:02}x,{},,,", gigya_provider(i)),
        };
        input.push_str(&line);
        input.push('\n');
    }
    input.push_str("g00x,linkedin,,,\n"); // 32: account exists, provider not connected
    input.push_str("lonely,facebook,,,\n"); // 33: last identity, lastIdentityHandling=fail
    input.push_str("g99x,,,,\n"); // 34: empty provider
    input.push_str(&format!("{},facebook,,,\n", "u".repeat(257))); // 35
    input.push_str(&format!("g98x,facebook,{},,\n", "c".repeat(101))); // 36
    input.push_str("g97x,facebook,,,maybe\n"); // 37
    input.push_str("g02x,twitter,,,\n"); // 38: dup of line 4
    write(dir.path(), "in.csv", &input);
    let job = job(dir.path(), "in.csv", &gigya_table(&sim.url, "secret"));

    let out = run(&job, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let rows = by_line(&read_report(&dir.path().join("report.csv")));
    assert_eq!(rows.len(), 37, "{:?}", outcomes(&rows));
    for i in 0..30 {
        let line = i as u64 + 2;
        let r = &rows[&line];
        assert_eq!(r["key"], format!("g{i:02}x/{}", gigya_provider(i)));
        assert_eq!(
            r["http_status"], "200",
            "Gigya answers 200 whatever the code"
        );
        assert_eq!(r["attempts"], "1");
        let id = &r["request_id"];
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "request_id is the callId: {id:?}"
        );
        if i < 25 {
            assert_eq!(r["outcome"], "unlinked", "line {line}: {r:?}");
            assert_eq!(r["vendor_code"], "0");
        } else {
            assert_eq!(r["outcome"], "absent", "unknown UID → absent: {r:?}");
            assert_eq!(r["vendor_code"], "403005");
            assert!(r["message"].contains("not found"), "{}", r["message"]);
        }
    }
    // Other error codes are final for the row, with Gigya's message and details.
    assert_eq!(rows[&32]["outcome"], "failed");
    assert_eq!(rows[&32]["vendor_code"], "400006");
    assert!(
        rows[&32]["message"].contains("not connected"),
        "{}",
        rows[&32]["message"]
    );
    assert_eq!(rows[&32]["attempts"], "1");
    assert_eq!(rows[&33]["outcome"], "failed");
    assert_eq!(rows[&33]["vendor_code"], "409030");
    assert!(
        rows[&33]["message"].contains("without a login identity"),
        "{}",
        rows[&33]["message"]
    );
    assert_invalid(&rows, 34, "provider");
    assert_invalid(&rows, 35, "uid");
    assert_invalid(&rows, 36, "cid");
    assert_invalid(&rows, 37, "last_identity_handling");
    assert_duplicate_of(&rows, 38, 4);
    // The secret is in no report column.
    for r in rows.values() {
        for (col, v) in r {
            assert!(!v.contains(GIGYA_SECRET_STEM), "{col}: {v}");
            assert!(
                !v.contains(GIGYA_API_KEY),
                "api_key is a credential: {col}: {v}"
            );
        }
    }
    assert!(
        rows[&2]["request"].contains("secret=[redacted]"),
        "{}",
        rows[&2]["request"]
    );

    let counters = sim.counters();
    assert_eq!(counters["vendors"]["gigya"]["unlink_calls"], 32);
    assert_eq!(counters["vendors"]["gigya"]["removed"], 25);
    for i in 0..30 {
        let key = format!("g{i:02}x/{}", gigya_provider(i));
        assert_eq!(
            sim_key(&counters, "gigya", &key, "unlink_calls"),
            1,
            "{key}"
        );
        assert_eq!(
            sim_key(&counters, "gigya", &key, "removed"),
            u64::from(i < 25),
            "{key}"
        );
    }
    assert_eq!(sim.links("gigya"), ["lonely/facebook"]);

    // The wire: a form POST; the secret only in the body, never in a URL.
    let log = log_of(&sim, "gigya");
    assert_eq!(log.len(), 32);
    for e in &log {
        assert_eq!(e["method"], "POST");
        assert_eq!(e["path"], "/socialize.removeConnection");
        assert!(e["query"].is_null(), "nothing in the query string: {e}");
        assert_eq!(
            header(e, "content-type"),
            "application/x-www-form-urlencoded"
        );
        let form = decode_pairs(e["body"].as_str().unwrap());
        assert!(!form.iter().any(|(k, _)| k == "sig" || k == "nonce"));
    }
    let e = entry_with_form(&log, &[("UID", "g00x"), ("provider", "facebook")]);
    assert_eq!(
        sorted_pairs(e["body"].as_str().unwrap()),
        pairs_of(&[
            ("apiKey", GIGYA_API_KEY),
            ("userKey", GIGYA_USER_KEY),
            ("secret", GIGYA_SECRET),
            ("UID", "g00x"),
            ("provider", "facebook"),
            ("lastIdentityHandling", "fail"),
            ("removeLoginID", "true"),
            ("cid", "gdpr-1"),
            ("format", "json"),
            ("httpStatusCodes", "false"),
        ])
    );
    let e = entry_with_form(&log, &[("UID", "g01x")]);
    assert_eq!(
        sorted_pairs(e["body"].as_str().unwrap()),
        pairs_of(&[
            ("apiKey", GIGYA_API_KEY),
            ("userKey", GIGYA_USER_KEY),
            ("secret", GIGYA_SECRET),
            ("UID", "g01x"),
            ("provider", "googleplus"),
            ("lastIdentityHandling", "fail"),
            ("format", "json"),
            ("httpStatusCodes", "false"),
        ]),
        "no removeLoginID or cid unless set"
    );
}

fn sim_key(counters: &Value, vendor: &str, key: &str, field: &str) -> u64 {
    counters["keys"][vendor][key][field].as_u64().unwrap_or(0)
}

#[test]
fn gigya_signed_mode_sends_sig_timestamp_nonce_and_never_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = String::from("vendor,uid,provider\n");
    for i in 0..17 {
        seed.push_str(&format!("gigya,s{i:02},facebook\n"));
    }
    let seed = write(dir.path(), "seed.csv", &seed);
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);
    let mut input = String::from("uid,provider,cid\n");
    for i in 0..20 {
        // A value the signature's RFC 3986 encoding must get right.
        let cid = if i == 3 { "a b+c/d~e*f" } else { "" };
        input.push_str(&format!("s{i:02},facebook,{cid}\n"));
    }
    write(dir.path(), "in.csv", &input);
    let job = job(dir.path(), "in.csv", &gigya_table(&sim.url, "signed"));

    let started = SystemTime::now();
    let out = run(&job, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = by_line(&read_report(&dir.path().join("report.csv")));
    assert_eq!(rows.len(), 20);
    for i in 0..20 {
        let r = &rows[&(i as u64 + 2)];
        // The simulator checks every signature: a wrong one would halt the run (400008).
        let want = if i < 17 { "unlinked" } else { "absent" };
        assert_eq!(r["outcome"], want, "row {i}: {r:?}");
        assert!(!r["request"].contains("secret="), "{}", r["request"]);
        assert!(r["request"].contains("sig=[redacted]"), "{}", r["request"]);
    }
    assert_eq!(sim.vendor_count("gigya", "unauthorized"), 0);
    assert_eq!(sim.vendor_count("gigya", "removed"), 17);

    let log = log_of(&sim, "gigya");
    assert_eq!(log.len(), 20);
    let now = SystemTime::now();
    let epoch = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let mut nonces = BTreeSet::new();
    for e in &log {
        assert!(e["query"].is_null(), "{e}");
        let body = e["body"].as_str().unwrap();
        assert!(!body.contains(GIGYA_SECRET_STEM), "{body}");
        let form = decode_pairs(body);
        let names: BTreeSet<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
        assert!(!names.contains("secret"), "{body}");
        for needed in ["sig", "timestamp", "nonce", "apiKey", "userKey", "UID"] {
            assert!(names.contains(needed), "{needed} missing: {body}");
        }
        let get = |name: &str| form.iter().find(|(k, _)| k == name).unwrap().1.clone();
        let ts: u64 = get("timestamp").parse().unwrap();
        assert!(
            ts + 2 >= epoch(started) && ts <= epoch(now) + 2,
            "timestamp {ts} is now"
        );
        assert!(nonces.insert(get("nonce")), "nonces are unique");
        assert_eq!(get("sig").len(), 28, "base64 of a 20-byte HMAC-SHA1");
    }
    let e = entry_with_form(&log, &[("cid", "a b+c/d~e*f")]);
    assert_eq!(
        decode_pairs(e["body"].as_str().unwrap())
            .into_iter()
            .find(|(k, _)| k == "UID")
            .unwrap()
            .1,
        "s03"
    );
}

#[test]
fn newspark_batch_wire_counters_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    let uid = |i: usize| 4_400_100 + i;
    let mut seed = String::from("vendor,vhost,uid,external_id_provider_name,sub_provider_name\n");
    for i in 0..16 {
        let (p, s) = if i == 1 {
            ("janrain", "twitter")
        } else {
            ("facebook", "none")
        };
        seed.push_str(&format!("newspark,12,{},{p},{s}\n", uid(i)));
    }
    let seed = write(dir.path(), "seed.csv", &seed);
    let sim = Sim::start(&[
        "--seed",
        seed.to_str().unwrap(),
        "--newspark-form-token",
        "TOK-5f1e",
    ]);

    let mut input = String::from("vhost,uid,external_id_provider_name,sub_provider_name\n");
    for i in 0..20 {
        match i {
            1 => input.push_str(&format!("12,{},Janrain,Twitter\n", uid(i))),
            _ => input.push_str(&format!("12,{},facebook,\n", uid(i))),
        }
    }
    input.push_str("12a,4400777,facebook,none\n"); // 22
    input.push_str("12,123456789012,facebook,none\n"); // 23
    input.push_str("12,4400778,,none\n"); // 24
    input.push_str("12,4400779,facebook,twitter\n"); // 25
    input.push_str(&format!("12,{},facebook,none\n", uid(2))); // 26: dup of 4
    write(dir.path(), "in.csv", &input);
    let job = job(dir.path(), "in.csv", &newspark_table(&sim.url));

    let out = run_env(&job, &[], &[("NS_FORM_TOKEN", "TOK-5f1e")]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let rows = by_line(&read_report(&dir.path().join("report.csv")));
    assert_eq!(rows.len(), 25, "{:?}", outcomes(&rows));
    for i in 0..20 {
        let r = &rows[&(i as u64 + 2)];
        let key = if i == 1 {
            format!("12/{}/janrain/twitter", uid(i))
        } else {
            format!("12/{}/facebook/none", uid(i))
        };
        assert_eq!(r["key"], key);
        assert_eq!(r["http_status"], "302");
        assert_eq!(r["attempts"], "1");
        if i < 16 {
            assert_eq!(r["outcome"], "unlinked", "row {i}: {r:?}");
        } else {
            assert_eq!(r["outcome"], "failed", "not linked → failed: {r:?}");
            assert!(
                r["message"].contains("/unlinker/failed?error=not_linked"),
                "the message holds the Location: {}",
                r["message"]
            );
        }
        assert!(r["request"].contains("formToken=[redacted]"));
        assert!(!r["request"].contains("TOK-5f1e"), "{}", r["request"]);
        assert!(!r["request"].contains("sim-session"), "{}", r["request"]);
    }
    assert_invalid(&rows, 22, "vhost");
    assert_invalid(&rows, 23, "uid");
    assert_invalid(&rows, 24, "external_id_provider_name");
    assert_invalid(&rows, 25, "sub_provider_name");
    assert_duplicate_of(&rows, 26, 4);

    let counters = sim.counters();
    assert_eq!(counters["vendors"]["newspark"]["unlink_calls"], 20);
    assert_eq!(counters["vendors"]["newspark"]["removed"], 16);
    assert_eq!(counters["vendors"]["newspark"]["unauthorized"], 0);
    for i in 0..20 {
        let key = rows[&(i as u64 + 2)]["key"].clone();
        assert_eq!(sim_key(&counters, "newspark", &key, "unlink_calls"), 1);
        assert_eq!(
            sim_key(&counters, "newspark", &key, "removed"),
            u64::from(i < 16)
        );
    }
    assert!(sim.links("newspark").is_empty());

    let log = log_of(&sim, "newspark");
    assert_eq!(log.len(), 20);
    for e in &log {
        assert_eq!(e["method"], "POST");
        assert_eq!(e["path"], "/action/v2/unlinkaccount");
        assert!(e["query"].is_null());
        assert_eq!(header(e, "cookie"), NS_COOKIE);
        assert_eq!(
            header(e, "content-type"),
            "application/x-www-form-urlencoded"
        );
    }
    let e = entry_with_form(&log, &[("uid", &uid(0).to_string())]);
    assert_eq!(
        sorted_pairs(e["body"].as_str().unwrap()),
        pairs_of(&[
            ("vhost", "12"),
            ("uid", "4400100"),
            ("redirectUrl", "/unlinker/done"),
            ("failRedirectUrl", "/unlinker/failed"),
            ("external_id_provider_name", "facebook"),
            ("sub_provider_name", "none"),
            ("formToken", "TOK-5f1e"),
        ])
    );
    let e = entry_with_form(&log, &[("uid", &uid(1).to_string())]);
    let form = decode_pairs(e["body"].as_str().unwrap());
    assert!(form.contains(&("external_id_provider_name".into(), "janrain".into())));
    assert!(form.contains(&("sub_provider_name".into(), "twitter".into())));
}

#[test]
fn auth0_batch_wire_counters_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    let provider = |i: usize| ["github", "google-oauth2", "facebook"][i % 3];
    let ident = |i: usize| {
        if i == 0 {
            "12 3/4+x".to_string()
        } else {
            format!("{i}00{i}")
        }
    };
    let mut seed = String::from("vendor,user_id,provider,identity_user_id\n");
    for i in 0..25 {
        seed.push_str(&format!(
            "auth0,auth0|u{i:02},{},{}\n",
            provider(i),
            ident(i)
        ));
    }
    let seed = write(dir.path(), "seed.csv", &seed);
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);

    let mut input = String::from("user_id,provider,identity_user_id\n");
    for i in 0..30 {
        input.push_str(&format!("auth0|u{i:02},{},{}\n", provider(i), ident(i)));
    }
    input.push_str("auth0|u90,myspace,1\n"); // 32
    input.push_str("auth0|u91,github,github|5\n"); // 33
    input.push_str(",github,5\n"); // 34
    input.push_str("auth0|u92,github,\n"); // 35
    input.push_str("auth0|u01,google-oauth2,1001\n"); // 36: dup of 3
    write(dir.path(), "in.csv", &input);
    let job = job(dir.path(), "in.csv", &auth0_table(&sim.url));

    let out = run(&job, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(!out.stderr.contains("sim-token"));
    let rows = by_line(&read_report(&dir.path().join("report.csv")));
    assert_eq!(rows.len(), 35, "{:?}", outcomes(&rows));
    for i in 0..30 {
        let r = &rows[&(i as u64 + 2)];
        assert_eq!(
            r["key"],
            format!("auth0|u{i:02}/{}/{}", provider(i), ident(i))
        );
        assert_eq!(r["attempts"], "1");
        assert!(!r["request"].contains("sim-token"), "{}", r["request"]);
        if i < 25 {
            assert_eq!(r["outcome"], "unlinked", "row {i}: {r:?}");
            assert_eq!(r["http_status"], "200");
        } else {
            assert_eq!(r["outcome"], "absent", "row {i}: {r:?}");
            assert_eq!(r["http_status"], "404");
            assert_eq!(r["vendor_code"], "inexistent_user");
            assert!(r["message"].contains("The user does not exist."));
        }
    }
    assert_invalid(&rows, 32, "provider");
    assert_invalid(&rows, 33, "identity_user_id");
    assert_invalid(&rows, 34, "user_id");
    assert_invalid(&rows, 35, "identity_user_id");
    assert_duplicate_of(&rows, 36, 3);

    let counters = sim.counters();
    assert_eq!(counters["vendors"]["auth0"]["unlink_calls"], 30);
    assert_eq!(counters["vendors"]["auth0"]["removed"], 25);
    assert_eq!(counters["vendors"]["auth0"]["token_calls"], 0);
    for i in 0..30 {
        let key = format!("auth0|u{i:02}/{}/{}", provider(i), ident(i));
        assert_eq!(
            sim_key(&counters, "auth0", &key, "unlink_calls"),
            1,
            "{key}"
        );
        assert_eq!(
            sim_key(&counters, "auth0", &key, "removed"),
            u64::from(i < 25)
        );
    }
    assert!(sim.links("auth0").is_empty());

    let log = log_of(&sim, "auth0");
    assert_eq!(log.len(), 30);
    let path0 = "/api/v2/users/auth0%7Cu00/identities/github/12%203%2F4%2Bx";
    let e = log
        .iter()
        .find(|e| e["path"] == path0)
        .unwrap_or_else(|| panic!("no DELETE {path0}: {log:#?}"));
    assert_eq!(e["method"], "DELETE");
    assert!(e["query"].is_null());
    assert_eq!(e["body"], "");
    assert_eq!(header(e, "authorization"), "Bearer sim-token");
    assert_eq!(rows[&2]["request"], format!("DELETE {}{path0}", sim.url));
    for e in &log {
        assert_eq!(e["method"], "DELETE");
        assert_eq!(header(e, "authorization"), "Bearer sim-token");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Answer classes the simulator produces on demand.
// ---------------------------------------------------------------------------------------------

#[test]
fn gigya_rate_limit_answers_are_waited_out_and_every_row_unlinks() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&["--all-linked", "--rate-limit", "gigya=5"]);
    let mut input = String::from("uid,provider\n");
    for i in 0..20 {
        input.push_str(&format!("r{i:02},facebook\n"));
    }
    write(dir.path(), "in.csv", &input);
    let job = job(dir.path(), "in.csv", &gigya_table(&sim.url, "secret"));
    let summary = dir.path().join("summary.json");

    let out = run(&job, &["--summary", summary.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = by_line(&read_report(&dir.path().join("report.csv")));
    assert_eq!(rows.len(), 20);
    assert!(
        rows.values().all(|r| r["outcome"] == "unlinked"),
        "{:?}",
        outcomes(&rows)
    );

    // The simulator answered 403048 inside HTTP 200; the runner read the errorCode.
    let limited = sim.vendor_count("gigya", "rate_limited");
    assert!(limited > 0, "the simulator rate-limited some calls");
    let log = log_of(&sim, "gigya");
    assert!(log.iter().all(|e| e["status"] == 200));
    let s = read_json(&summary);
    assert_eq!(s["vendors"]["gigya"]["rate_limited"], limited);
    assert_eq!(rate_limit_answers(&out.stderr, "gigya"), limited);
    // Every call is in some row's attempts; each link was removed exactly once.
    let attempts: u64 = rows
        .values()
        .map(|r| r["attempts"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(attempts, sim.vendor_count("gigya", "unlink_calls"));
    assert_eq!(s["vendors"]["gigya"]["requests"], attempts);
    let counters = sim.counters();
    for i in 0..20 {
        assert_eq!(
            sim_key(&counters, "gigya", &format!("r{i:02}/facebook"), "removed"),
            1
        );
    }
    assert_eq!(sim.vendor_count("gigya", "removed"), 20);
}

#[test]
fn unavailable_answers_are_retried_until_the_row_unlinks() {
    let dir = tempfile::tempdir().unwrap();
    // FusionAuth answers 503; Gigya answers HTTP 200 with errorCode 500001.
    let sim = Sim::start(&["--all-linked", "--error-rate", "0.5", "--fault-seed", "11"]);
    let mut input = String::new();
    for i in 0..20 {
        input.push_str(&format!(
            "{{\"vendor\":\"fusionauth\",\"user_id\":\"{}\",\"identity_provider_id\":\"{IDP}\",\"identity_provider_user_id\":\"e{i}\"}}\n",
            fa_user(i)
        ));
        input.push_str(&format!(
            "{{\"vendor\":\"gigya\",\"uid\":\"e{i:02}\",\"provider\":\"facebook\"}}\n"
        ));
    }
    write(dir.path(), "in.jsonl", &input);
    let vendors = format!(
        "{}{}",
        fusionauth_table(&sim.url),
        gigya_table(&sim.url, "secret")
    );
    let job = job_with(dir.path(), "in.jsonl", &vendors, 20);
    let out = run(&job, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = by_line(&read_report(&dir.path().join("report.csv")));
    assert_eq!(rows.len(), 40);
    assert!(
        rows.values().all(|r| r["outcome"] == "unlinked"),
        "{:?}",
        outcomes(&rows)
    );
    for vendor in ["fusionauth", "gigya"] {
        let errors = sim.vendor_count(vendor, "errors");
        assert!(errors > 0, "{vendor}: the simulator injected errors");
        let mine: Vec<&Row> = rows.values().filter(|r| r["vendor"] == vendor).collect();
        let attempts: u64 = mine
            .iter()
            .map(|r| r["attempts"].parse::<u64>().unwrap())
            .sum();
        assert_eq!(
            attempts,
            sim.vendor_count(vendor, "unlink_calls"),
            "{vendor}: every retry is an attempt of its row"
        );
        assert_eq!(attempts, 20 + errors, "{vendor}: one retry per error");
        assert!(mine.iter().any(|r| r["attempts"] != "1"));
        assert_eq!(sim.vendor_count(vendor, "removed"), 20);
    }
}

#[test]
fn gigya_wrong_data_center_halts_naming_the_right_one() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&["--all-linked", "--gigya-wrong-dc", "eu1"]);
    let mut input = String::from("uid,provider\n");
    for i in 0..6 {
        input.push_str(&format!("w{i},facebook\n"));
    }
    write(dir.path(), "in.csv", &input);
    let job = job(dir.path(), "in.csv", &gigya_table(&sim.url, "secret"));
    let out = run(&job, &["--concurrency", "1"]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(out.stderr.contains("eu1"), "{}", out.stderr);
    assert!(
        out.stderr.contains("data_center = \"eu1\""),
        "{}",
        out.stderr
    );
    assert!(read_report(&dir.path().join("report.csv")).is_empty());
    assert_eq!(
        sim.vendor_count("gigya", "unlink_calls"),
        1,
        "halted at once"
    );
    assert_eq!(sim.vendor_count("gigya", "removed"), 0);
    let status = unlinker(&["status", job.to_str().unwrap()], ENV);
    assert!(status.stdout.contains("pending    6"), "{}", status.stdout);
}

#[test]
fn wrong_credentials_halt_every_vendor_and_leave_rows_pending() {
    let sim = Sim::start(&["--all-linked"]);
    let auth0_client = format!(
        r#"
[vendors.auth0]
type = "auth0"
base_url = "{}"
client_id = "sim-client"
client_secret = "${{WRONG}}"
rate = 500
burst = 500
"#,
        sim.url
    );
    let a0 = "user_id,provider,identity_user_id\nauth0|h1,github,1\nauth0|h2,github,2\nauth0|h3,github,3\n";
    let fa = format!(
        "user_id,identity_provider_id,identity_provider_user_id\n{u},{IDP},1\n{u},{IDP},2\n{u},{IDP},3\n",
        u = fa_user(77)
    );
    let gi = "uid,provider\nh1,facebook\nh2,facebook\nh3,facebook\n";
    let ns = "vhost,uid,external_id_provider_name\n1,1,facebook\n1,2,facebook\n1,3,facebook\n";
    let wrong = "d3JvbmctYnV0LWJhc2U2NA==";
    // (case, vendor, job tables, input, variable overrides)
    type Case<'a> = (&'a str, &'a str, String, &'a str, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (
            "auth0 static token",
            "auth0",
            auth0_table(&sim.url),
            a0,
            vec![("A0_TOKEN", wrong)],
        ),
        (
            "auth0 client credentials",
            "auth0",
            auth0_client,
            a0,
            vec![("WRONG", wrong)],
        ),
        (
            "fusionauth",
            "fusionauth",
            fusionauth_table(&sim.url),
            &fa,
            vec![("FA_KEY", wrong)],
        ),
        (
            "gigya secret",
            "gigya",
            gigya_table(&sim.url, "secret"),
            gi,
            vec![("GIGYA_SECRET", wrong)],
        ),
        (
            "gigya signed",
            "gigya",
            gigya_table(&sim.url, "signed"),
            gi,
            vec![("GIGYA_SECRET", wrong)],
        ),
        (
            "newspark session",
            "newspark",
            newspark_table(&sim.url),
            ns,
            vec![
                ("NS_COOKIE", "session=expired-0001"),
                ("NS_FORM_TOKEN", "t"),
            ],
        ),
    ];
    for (case, vendor, table, input, vars) in cases {
        let before = sim.counters();
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "in.csv", input);
        let job = job(dir.path(), "in.csv", &table);
        let mut env = ENV.to_vec();
        env.retain(|(k, _)| !vars.iter().any(|(v, _)| v == k));
        env.extend(vars.iter().copied());
        let job_s = job.display().to_string();
        let out = unlinker(&["run", &job_s, "--no-progress"], &env);
        assert_eq!(out.code, 6, "{case}: halt → exit 6\n{}", out.stderr);
        assert!(out.stderr.contains("halted"), "{case}: {}", out.stderr);
        assert!(
            out.stderr.contains(&format!("vendor `{vendor}`")),
            "{case}: the message names the vendor: {}",
            out.stderr
        );
        assert!(!out.stderr.contains(wrong), "{case}: {}", out.stderr);
        assert!(
            !out.stderr.contains("expired-0001"),
            "{case}: {}",
            out.stderr
        );
        assert!(
            read_report(&dir.path().join("report.csv")).is_empty(),
            "{case}: no row gets an outcome"
        );
        let status = unlinker(&["status", &job_s], &env);
        assert!(
            status.stdout.contains("pending    3"),
            "{case}: {}",
            status.stdout
        );
        assert!(
            status.stdout.contains("failed     0"),
            "{case}: {}",
            status.stdout
        );
        let after = sim.counters();
        let delta = |field: &str| {
            after["vendors"][vendor][field].as_u64().unwrap()
                - before["vendors"][vendor][field].as_u64().unwrap()
        };
        assert!(delta("unauthorized") > 0, "{case}: the simulator refused");
        assert_eq!(delta("removed"), 0, "{case}");
        if case == "auth0 client credentials" {
            assert!(delta("token_calls") > 0, "{case}");
            assert_eq!(
                delta("unlink_calls"),
                0,
                "{case}: nothing sent without a token"
            );
        }
    }
}

#[test]
fn a_refused_client_secret_is_sent_once_and_halts() {
    let sim = Sim::start(&["--all-linked"]);
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("user_id,provider,identity_user_id\n");
    for i in 0..8 {
        input.push_str(&format!("auth0|t{i},github,{i}\n"));
    }
    write(dir.path(), "in.csv", &input);
    let table = format!(
        r#"
[vendors.auth0]
type = "auth0"
base_url = "{}"
client_id = "sim-client"
client_secret = "not-the-client-secret"
rate = 500
burst = 500
concurrency = 4
"#,
        sim.url
    );
    let job = job(dir.path(), "in.csv", &table);
    let out = run(&job, &[]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(out.stderr.contains("cannot get a token"), "{}", out.stderr);
    assert_eq!(sim.vendor_count("auth0", "unlink_calls"), 0);
    // SPEC 4: a halt stops new calls at once; docs/vendors.md: one token fetch, shared.
    assert_eq!(
        sim.vendor_count("auth0", "token_calls"),
        1,
        "the refused client secret was sent again after the halt"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Several vendors in one job.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_rate_limited_vendor_does_not_slow_the_others() {
    let dir = tempfile::tempdir().unwrap();
    // No budget headers: Auth0 learns the limit from its 429s, as a vendor without them.
    let sim = Sim::start(&[
        "--all-linked",
        "--rate-limit",
        "auth0=4",
        "--no-budget-headers",
    ]);
    let mut input = String::new();
    for i in 0..30 {
        input.push_str(&format!(
            "{{\"vendor\":\"auth0\",\"user_id\":\"auth0|m{i:02}\",\"provider\":\"github\",\"identity_user_id\":{i}}}\n"
        ));
        input.push_str(&format!(
            "{{\"vendor\":\"fusionauth\",\"user_id\":\"{}\",\"identity_provider_id\":\"{IDP}\",\"identity_provider_user_id\":\"m{i}\"}}\n",
            fa_user(i)
        ));
    }
    input.push_str("{\"vendor\":\"okta\",\"user_id\":\"x\"}\n"); // 61
    input.push_str("{\"user_id\":\"auth0|m00\",\"provider\":\"github\",\"identity_user_id\":1}\n"); // 62
    write(dir.path(), "in.jsonl", &input);
    // Auth0 is configured far above what the simulator allows, so it keeps hitting the limit.
    let vendors = format!(
        r#"
[vendors.auth0]
type = "auth0"
base_url = "{url}"
token = "${{A0_TOKEN}}"
rate = 50
burst = 50
concurrency = 4

[vendors.fusionauth]
type = "fusionauth"
base_url = "{url}"
api_key = "${{FA_KEY}}"
rate = 500
burst = 500
concurrency = 4
"#,
        url = sim.url
    );
    let job = job(dir.path(), "in.jsonl", &vendors);
    let summary = dir.path().join("summary.json");

    let started = SystemTime::now();
    let out = run(&job, &["--summary", summary.to_str().unwrap()]);
    assert_eq!(out.code, 3, "two invalid rows\n{}", out.stderr);
    let rows = by_line(&read_report(&dir.path().join("report.csv")));
    assert_eq!(rows.len(), 62);
    assert_invalid(&rows, 61, "vendor");
    assert!(rows[&61]["message"].contains("okta"));
    assert_invalid(&rows, 62, "vendor");

    let since = |r: &Row| {
        parse_time(&r["finished_at"])
            .duration_since(started)
            .unwrap_or(Duration::ZERO)
    };
    let mut fa: Vec<Duration> = Vec::new();
    let mut a0: Vec<Duration> = Vec::new();
    for r in rows.values().filter(|r| r["outcome"] != "invalid") {
        assert_eq!(r["outcome"], "unlinked", "{r:?}");
        match r["vendor"].as_str() {
            "fusionauth" => fa.push(since(r)),
            "auth0" => a0.push(since(r)),
            other => panic!("vendor {other}"),
        }
    }
    assert_eq!((fa.len(), a0.len()), (30, 30));
    fa.sort();
    a0.sort();
    let s = read_json(&summary);
    let limited = s["vendors"]["auth0"]["rate_limited"].as_u64().unwrap();
    assert!(limited > 0, "auth0 was rate limited: {s}");
    assert_eq!(s["vendors"]["fusionauth"]["rate_limited"], 0);
    let fa_last = *fa.last().unwrap();
    let a0_fifth_last = a0[a0.len() - 5];
    let a0_last = *a0.last().unwrap();
    eprintln!("FusionAuth last {fa_last:?}; Auth0 5th-to-last {a0_fifth_last:?}, last {a0_last:?}");
    // 30 FusionAuth calls take well under a second; 30 Auth0 calls at the simulator's 4/s
    // take about 7 s.
    assert!(
        fa_last + Duration::from_secs(2) < a0_fifth_last,
        "FusionAuth finished at {fa_last:?}, Auth0's 5th-to-last at {a0_fifth_last:?} \
         (last {a0_last:?}): the rate-limited vendor held up the other"
    );
    assert!(
        fa_last < Duration::from_secs(2),
        "FusionAuth's 30 rows took {fa_last:?}"
    );
    assert_eq!(sim.vendor_count("fusionauth", "rate_limited"), 0);
    assert_eq!(sim.vendor_count("fusionauth", "removed"), 30);
    assert_eq!(sim.vendor_count("auth0", "removed"), 30);
}

#[test]
fn erase_person_job_through_all_four_vendors_with_auth0_user_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let seed = [
        r#"{"vendor":"auth0","user_id":"auth0|p1","provider":"github","identity_user_id":"a b/c"}"#,
        r#"{"vendor":"auth0","user_id":"auth0|p1","provider":"google-oauth2","identity_user_id":"1035"}"#,
        r#"{"vendor":"auth0","user_id":"auth0|p2","provider":"facebook","identity_user_id":"1015"}"#,
        &format!(
            r#"{{"vendor":"fusionauth","user_id":"{}","identity_provider_id":"{IDP}","identity_provider_user_id":"1015"}}"#,
            fa_user(1)
        ),
        &format!(
            r#"{{"vendor":"fusionauth","user_id":"{}","identity_provider_id":"{IDP}","identity_provider_user_id":"1016"}}"#,
            fa_user(2)
        ),
        r#"{"vendor":"gigya","uid":"8e2f","provider":"facebook"}"#,
        r#"{"vendor":"gigya","uid":"8e2f","provider":"googleplus"}"#,
        r#"{"vendor":"newspark","vhost":12,"uid":4400123,"external_id_provider_name":"facebook"}"#,
        r#"{"vendor":"newspark","vhost":12,"uid":4400124,"external_id_provider_name":"gigya"}"#,
    ]
    .join("\n");
    let seed = write(dir.path(), "seed.jsonl", &seed);
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);
    let input = [
        r#"{"vendor": "auth0", "user_id": "auth0|p1", "provider": "github", "identity_user_id": "a b/c"}"#,
        &format!(
            r#"{{"vendor": "fusionauth", "user_id": "{}", "identity_provider_id": "{IDP}", "identity_provider_user_id": "1015"}}"#,
            fa_user(1)
        ),
        r#"{"vendor": "gigya", "uid": "8e2f", "provider": "facebook"}"#,
        r#"{"vendor": "newspark", "vhost": 12, "uid": 4400123, "external_id_provider_name": "facebook"}"#,
        r#"{"vendor": "auth0", "user_id": "auth0|p1", "identity": "google-oauth2|1035"}"#,
        r#"{"vendor": "auth0", "user_id": "auth0|p2", "provider": "facebook", "identity_user_id": 1015}"#,
        r#"{"vendor": "auth0", "user_id": "auth0|p3", "provider": "apple", "identity_user_id": "404"}"#,
        &format!(
            r#"{{"vendor": "fusionauth", "user_id": "{}", "identity_provider_id": "{IDP}", "identity_provider_user_id": "1016"}}"#,
            fa_user(2)
        ),
        &format!(
            r#"{{"vendor": "fusionauth", "user_id": "{}", "identity_provider_id": "{IDP}", "identity_provider_user_id": "404"}}"#,
            fa_user(3)
        ),
        r#"{"vendor": "gigya", "uid": "8e2f", "provider": "googleplus"}"#,
        r#"{"vendor": "gigya", "uid": "nobody", "provider": "facebook"}"#,
        r#"{"vendor": "newspark", "vhost": 12, "uid": 4400124, "external_id_provider_name": "Gigya"}"#,
        r#"{"vendor": "okta", "user_id": "00u1"}"#,
    ]
    .join("\n");
    write(dir.path(), "in.jsonl", &input);
    // Like jobs/erase-person.toml, with base_url pointing at the simulator.
    let vendors = format!(
        r#"
[vendors.auth0]
type = "auth0"
base_url = "{url}"
client_id = "sim-client"
client_secret = "${{A0_CLIENT_SECRET}}"
delete_unlinked_user = true
rate = 100
burst = 100
concurrency = 8

[vendors.fusionauth]
type = "fusionauth"
base_url = "{url}"
api_key = "${{FA_KEY}}"

[vendors.gigya]
type = "gigya"
base_url = "{url}"
api_key = "{GIGYA_API_KEY}"
user_key = "{GIGYA_USER_KEY}"
secret = "${{GIGYA_SECRET}}"

[vendors.newspark]
type = "newspark"
base_url = "{url}"
rate = 50
burst = 50

[vendors.newspark.headers]
Cookie = "${{NS_COOKIE}}"

[halt]
max_consecutive_failures = 10
"#,
        url = sim.url
    );
    let job = job(dir.path(), "in.jsonl", &vendors);
    let out = run(&job, &[]);
    assert_eq!(out.code, 3, "the okta row is invalid\n{}", out.stderr);
    assert!(!out.stderr.contains("sim-client-secret"));

    // Every line exactly once.
    let report = read_report(&dir.path().join("report.csv"));
    let lines: Vec<u64> = report.iter().map(|r| r["line"].parse().unwrap()).collect();
    let unique: BTreeSet<u64> = lines.iter().copied().collect();
    assert_eq!(lines.len(), 13, "{lines:?}");
    assert_eq!(unique, (1..=13).collect(), "each line once: {lines:?}");
    let rows = by_line(&report);
    let want: BTreeMap<u64, &str> = [
        (1, "unlinked"),
        (2, "unlinked"),
        (3, "unlinked"),
        (4, "unlinked"),
        (5, "unlinked"),
        (6, "unlinked"),
        (7, "absent"),
        (8, "unlinked"),
        (9, "absent"),
        (10, "unlinked"),
        (11, "absent"),
        (12, "unlinked"),
        (13, "invalid"),
    ]
    .into_iter()
    .collect();
    let got = outcomes(&rows);
    assert_eq!(
        got.iter()
            .map(|(l, o)| (*l, o.as_str()))
            .collect::<BTreeMap<_, _>>(),
        want
    );

    // Auth0: unlink, then delete the standalone user it leaves behind, in that order.
    let log = log_of(&sim, "auth0");
    let at = |method: &str, path: &str| -> f64 {
        let found: Vec<&Value> = log
            .iter()
            .filter(|e| e["method"] == method && e["path"] == path)
            .collect();
        assert_eq!(found.len(), 1, "one {method} {path}: {log:#?}");
        assert_eq!(
            header(found[0], "authorization").len(),
            "Bearer ".len() + 32
        );
        found[0]["at_ms"].as_f64().unwrap()
    };
    for (line, unlink, delete) in [
        (
            1,
            "/api/v2/users/auth0%7Cp1/identities/github/a%20b%2Fc",
            "/api/v2/users/github%7Ca%20b%2Fc",
        ),
        (
            5,
            "/api/v2/users/auth0%7Cp1/identities/google-oauth2/1035",
            "/api/v2/users/google-oauth2%7C1035",
        ),
        (
            6,
            "/api/v2/users/auth0%7Cp2/identities/facebook/1015",
            "/api/v2/users/facebook%7C1015",
        ),
    ] {
        assert!(
            at("DELETE", unlink) < at("DELETE", delete),
            "line {line}: unlink first"
        );
        let r = &rows[&line];
        assert_eq!(r["http_status"], "204", "the delete's status: {r:?}");
        assert_eq!(r["attempts"], "2", "{r:?}");
    }
    assert_eq!(rows[&7]["http_status"], "404");
    assert!(
        !log.iter().any(|e| e["path"] == "/api/v2/users/apple%7C404"),
        "nothing to delete when the link was absent"
    );
    let counters = sim.counters();
    assert_eq!(counters["vendors"]["auth0"]["token_calls"], 1, "one token");
    assert_eq!(counters["vendors"]["auth0"]["unlink_calls"], 4);
    assert_eq!(counters["vendors"]["auth0"]["user_deletes"], 3);
    assert_eq!(counters["vendors"]["auth0"]["requests"], 8);
    for (vendor, calls) in [("fusionauth", 3), ("gigya", 3), ("newspark", 2)] {
        assert_eq!(
            counters["vendors"][vendor]["unlink_calls"], calls,
            "{vendor}"
        );
    }
    for vendor in ["auth0", "fusionauth", "gigya", "newspark"] {
        assert!(
            sim.links(vendor).is_empty(),
            "{vendor}: {:?}",
            sim.links(vendor)
        );
    }
}
