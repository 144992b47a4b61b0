//! Wildcard rows (SPEC section 3) through the real binary against the real simulator: a row
//! naming a user with `*` in its link fields reads the user's links, removes each match as its
//! own journaled call, and ends with one outcome listing them. The simulator's log and counters
//! prove which calls went out; its links prove what is left (the primary identity included).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::Value;

const FA_KEY: &str = "sim-fusionauth-key";
const IDP: &str = "82339786-3dff-42a6-aac6-1f1ceecb6c46";
const IDP2: &str = "0b6d9a52-7c1e-4f3a-9e2d-5a8c1b7e4f60";

fn fa_user(i: usize) -> String {
    format!("6f0a9b4e-2c1d-4e8f-9a3b-{i:012x}")
}

/// An Auth0 job (static token) with `extra` in its vendor table.
fn auth0_job(dir: &Path, url: &str, extra: &str, retry: &str) -> PathBuf {
    write(
        dir,
        "job.toml",
        &format!(
            r#"
name = "wild"
[input]
path = "in.csv"
[output]
report = "report.csv"
[vendors.auth0]
type = "auth0"
base_url = "{url}"
token = "${{TEST_TOKEN}}"
rate = 1000
burst = 1000
{extra}
[retry]
base_delay = "10ms"
max_delay = "100ms"
timeout = "5s"
{retry}
"#
        ),
    )
}

fn fusionauth_job(dir: &Path, url: &str) -> PathBuf {
    write(
        dir,
        "job.toml",
        &format!(
            r#"
name = "wild-fa"
[input]
path = "in.csv"
[output]
report = "report.csv"
[vendors.fusionauth]
type = "fusionauth"
base_url = "{url}"
api_key = "{FA_KEY}"
rate = 1000
burst = 1000
[retry]
base_delay = "10ms"
max_delay = "100ms"
timeout = "5s"
"#
        ),
    )
}

/// `run JOB --no-progress EXTRA...`; a relative path in `EXTRA` (`--report x.csv`) is taken
/// in the job's folder.
fn run(job: &Path, extra: &[&str]) -> Run {
    let dir = job.parent().unwrap();
    let extra: Vec<String> = extra
        .iter()
        .map(|a| {
            if a.ends_with(".csv") || a.ends_with(".json") {
                dir.join(a).display().to_string()
            } else {
                a.to_string()
            }
        })
        .collect();
    let mut args = vec!["run", job.to_str().unwrap(), "--no-progress"];
    args.extend(extra.iter().map(String::as_str));
    unlinker(&args, &[("TEST_TOKEN", "sim-token")])
}

fn report(dir: &Path) -> BTreeMap<u64, Row> {
    by_line(&read_report(&dir.join("report.csv")))
}

/// The simulator's log as `METHOD path[?query]` lines.
fn calls(sim: &Sim) -> Vec<String> {
    sim.log()
        .iter()
        .map(|e| {
            let path = e["path"].as_str().unwrap_or("");
            match e["query"].as_str() {
                Some(q) => format!("{} {path}?{q}", e["method"].as_str().unwrap()),
                None => format!("{} {path}", e["method"].as_str().unwrap()),
            }
        })
        .collect()
}

/// Auth0 seed: `auth0|u0` has no link, `auth0|u1` one facebook identity, `auth0|u2` two
/// facebook and one github identity, `auth0|u30` thirty facebook identities, `auth0|m` one of
/// each of three providers.
fn auth0_seed(dir: &Path) -> PathBuf {
    let mut seed = String::from("vendor,user_id,provider,identity_user_id\n");
    seed.push_str("auth0,auth0|u1,facebook,1001\n");
    seed.push_str("auth0,auth0|u2,facebook,2001\nauth0,auth0|u2,facebook,2002\n");
    seed.push_str("auth0,auth0|u2,github,2003\n");
    for i in 0..30 {
        seed.push_str(&format!("auth0,auth0|u30,facebook,30{i:02}\n"));
    }
    seed.push_str("auth0,auth0|m,facebook,m1\nauth0,auth0|m,github,m2\nauth0,auth0|m,twitter,m3\n");
    // A user with no secondary identity still exists: seeded through another user's link.
    seed.push_str("auth0,auth0|u0,google-oauth2,keep\n");
    write(dir, "seed.csv", &seed)
}

#[test]
fn auth0_wildcards_remove_every_matching_secondary_identity_and_never_the_primary() {
    let dir = tempfile::tempdir().unwrap();
    let seed = auth0_seed(dir.path());
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);
    write(
        dir.path(),
        "in.csv",
        "user_id,provider,identity_user_id\n\
         auth0|u0,facebook,*\n\
         auth0|u1,facebook,*\n\
         auth0|u2,facebook,*\n\
         auth0|u30,facebook,*\n\
         auth0|m,*,*\n\
         auth0|nobody,*,*\n\
         auth0|u2,facebook,*\n",
    );
    let job = auth0_job(dir.path(), &sim.url, "", "");
    let out = run(&job, &["--summary", "s.json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = report(dir.path());
    assert_eq!(rows.len(), 7);
    assert_eq!(rows[&2]["outcome"], "absent", "{:?}", rows[&2]);
    assert!(
        rows[&2]["message"].contains("no link matched"),
        "{:?}",
        rows[&2]
    );
    assert_eq!(rows[&2]["key"], "auth0|u0/facebook/*");
    assert_eq!(rows[&3]["outcome"], "unlinked");
    assert_eq!(rows[&3]["message"], "removed 1: facebook/1001");
    assert_eq!(rows[&3]["attempts"], "2");
    assert_eq!(rows[&4]["outcome"], "unlinked");
    assert_eq!(
        rows[&4]["message"],
        "removed 2: facebook/2001, facebook/2002"
    );
    assert_eq!(rows[&4]["attempts"], "3");
    let ids: Vec<String> = (0..30).map(|i| format!("facebook/30{i:02}")).collect();
    assert_eq!(rows[&5]["outcome"], "unlinked");
    assert_eq!(
        rows[&5]["message"],
        format!("removed 30: {}", ids.join(", "))
    );
    assert_eq!(rows[&5]["attempts"], "31");
    assert_eq!(rows[&6]["outcome"], "unlinked");
    assert_eq!(
        rows[&6]["message"],
        "removed 3: facebook/m1, github/m2, twitter/m3"
    );
    assert_eq!(rows[&6]["key"], "auth0|m/*/*");
    assert_eq!(rows[&7]["outcome"], "absent");
    assert!(
        rows[&7]["message"].contains("does not exist"),
        "{:?}",
        rows[&7]
    );
    assert_eq!(rows[&8]["outcome"], "duplicate");
    // `request` lists every call of the row: the read, then each removal.
    let request = &rows[&4]["request"];
    assert_eq!(
        request,
        &format!(
            "GET {0}/api/v2/users/auth0%7Cu2 ; DELETE {0}/api/v2/users/auth0%7Cu2/identities/facebook/2001 ; DELETE {0}/api/v2/users/auth0%7Cu2/identities/facebook/2002",
            sim.url
        )
    );

    // Exactly these calls, one read per row and one DELETE per matching identity.
    let mut got = calls(&sim);
    got.sort();
    let mut want = vec![
        "GET /api/v2/users/auth0%7Cu0".to_string(),
        "GET /api/v2/users/auth0%7Cu1".into(),
        "GET /api/v2/users/auth0%7Cu2".into(),
        "GET /api/v2/users/auth0%7Cu30".into(),
        "GET /api/v2/users/auth0%7Cm".into(),
        "GET /api/v2/users/auth0%7Cnobody".into(),
        "DELETE /api/v2/users/auth0%7Cu1/identities/facebook/1001".into(),
        "DELETE /api/v2/users/auth0%7Cu2/identities/facebook/2001".into(),
        "DELETE /api/v2/users/auth0%7Cu2/identities/facebook/2002".into(),
        "DELETE /api/v2/users/auth0%7Cm/identities/facebook/m1".into(),
        "DELETE /api/v2/users/auth0%7Cm/identities/github/m2".into(),
        "DELETE /api/v2/users/auth0%7Cm/identities/twitter/m3".into(),
    ];
    for i in 0..30 {
        want.push(format!(
            "DELETE /api/v2/users/auth0%7Cu30/identities/facebook/30{i:02}"
        ));
    }
    want.sort();
    assert_eq!(got, want);
    // What is left: the github identity the facebook row did not match, and u0's own link.
    assert_eq!(
        sim.links("auth0"),
        ["auth0|u0/google-oauth2/keep", "auth0|u2/github/2003"]
    );
    // No call named a primary identity (`auth0|u2` is `auth0/u2` as an identity).
    assert!(!got.iter().any(|c| c.contains("/identities/auth0/")));

    // The summary and the runs log count links apart from rows.
    let summary = read_json(&dir.path().join("s.json"));
    assert_eq!(summary["links_removed"], 36, "{summary}");
    assert_eq!(summary["this_run"]["unlinked"], 4, "{summary}");
    assert!(out.stderr.contains("36 links removed"), "{}", out.stderr);
    let runs = std::fs::read_to_string(dir.path().join("report.csv.runs.jsonl")).unwrap();
    let end: Value = serde_json::from_str(runs.lines().last().unwrap()).unwrap();
    assert_eq!(end["this_run"]["links_removed"], 36, "{end}");
}

#[test]
fn auth0_wildcards_delete_each_unlinked_user_with_delete_unlinked_user() {
    let dir = tempfile::tempdir().unwrap();
    let seed = auth0_seed(dir.path());
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);
    write(
        dir.path(),
        "in.csv",
        "user_id,identity\nauth0|u2,facebook|*\n",
    );
    let job = auth0_job(dir.path(), &sim.url, "delete_unlinked_user = true", "");
    let out = run(&job, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = report(dir.path());
    assert_eq!(rows[&2]["outcome"], "unlinked", "{:?}", rows[&2]);
    assert_eq!(rows[&2]["attempts"], "5");
    let deletes: Vec<String> = calls(&sim)
        .into_iter()
        .filter(|c| c.starts_with("DELETE /api/v2/users/facebook"))
        .collect();
    assert_eq!(
        deletes,
        [
            "DELETE /api/v2/users/facebook%7C2001",
            "DELETE /api/v2/users/facebook%7C2002"
        ]
    );
}

#[test]
fn fusionauth_wildcards_remove_every_link_of_one_provider_or_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = String::from("vendor,user_id,identity_provider_id,identity_provider_user_id\n");
    // user 1: one link to IDP; user 2: two to IDP and one to IDP2; user 3: 30 to IDP.
    seed.push_str(&format!("fusionauth,{},{IDP},a1\n", fa_user(1)));
    seed.push_str(&format!("fusionauth,{},{IDP},b1\n", fa_user(2)));
    seed.push_str(&format!("fusionauth,{},{IDP},b2\n", fa_user(2)));
    seed.push_str(&format!("fusionauth,{},{IDP2},b3\n", fa_user(2)));
    for i in 0..30 {
        seed.push_str(&format!("fusionauth,{},{IDP},c{i:02}\n", fa_user(3)));
    }
    seed.push_str(&format!("fusionauth,{},{IDP},d1\n", fa_user(4)));
    seed.push_str(&format!("fusionauth,{},{IDP2},d2\n", fa_user(4)));
    let seed = write(dir.path(), "seed.csv", &seed);
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);
    let mut input = String::from("user_id,identity_provider_id,identity_provider_user_id\n");
    input.push_str(&format!("{},{IDP},*\n", fa_user(0))); // 2: nothing
    input.push_str(&format!("{},{IDP},*\n", fa_user(1))); // 3: one
    input.push_str(&format!("{},{IDP},*\n", fa_user(2))); // 4: two of three
    input.push_str(&format!("{},{IDP},*\n", fa_user(3))); // 5: thirty
    input.push_str(&format!("{},*,*\n", fa_user(4))); // 6: every link
    input.push_str(&format!("{},*,x\n", fa_user(4))); // 7: invalid
    input.push_str(&format!("{},{IDP2},\n", fa_user(4))); // 8: empty stays invalid
    write(dir.path(), "in.csv", &input);
    let job = fusionauth_job(dir.path(), &sim.url);
    let out = run(&job, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let rows = report(dir.path());
    assert_eq!(rows[&2]["outcome"], "absent", "{:?}", rows[&2]);
    assert_eq!(rows[&3]["message"], format!("removed 1: {IDP}/a1"));
    assert_eq!(
        rows[&4]["message"],
        format!("removed 2: {IDP}/b1, {IDP}/b2")
    );
    assert_eq!(rows[&5]["outcome"], "unlinked");
    assert!(
        rows[&5]["message"].starts_with(&format!("removed 30: {IDP}/c00, ")),
        "{:?}",
        rows[&5]
    );
    assert_eq!(rows[&5]["attempts"], "31");
    // The simulator lists links in key order: IDP2's UUID sorts first.
    assert_eq!(
        rows[&6]["message"],
        format!("removed 2: {IDP2}/d2, {IDP}/d1")
    );
    assert_eq!(rows[&6]["key"], format!("{}/*/*", fa_user(4)));
    assert_eq!(rows[&7]["outcome"], "invalid");
    assert!(
        rows[&7]["message"].contains("identity_provider_id"),
        "{:?}",
        rows[&7]
    );
    assert_eq!(rows[&8]["outcome"], "invalid");
    let got = calls(&sim);
    let reads: Vec<&String> = got.iter().filter(|c| c.starts_with("GET")).collect();
    assert_eq!(reads.len(), 5, "{reads:#?}");
    assert!(got.contains(&format!(
        "GET /api/identity-provider/link?userId={}&identityProviderId={IDP}",
        fa_user(2)
    )));
    assert!(got.contains(&format!(
        "GET /api/identity-provider/link?userId={}",
        fa_user(4)
    )));
    let deletes = got.iter().filter(|c| c.starts_with("DELETE")).count();
    assert_eq!(deletes, 1 + 2 + 30 + 2);
    assert_eq!(
        sim.links("fusionauth"),
        [format!("{}/{IDP2}/b3", fa_user(2))]
    );
}

#[test]
fn a_failure_on_the_second_of_three_links_fails_the_row_and_says_what_was_removed() {
    let dir = tempfile::tempdir().unwrap();
    let seed = write(
        dir.path(),
        "seed.csv",
        "vendor,user_id,provider,identity_user_id\n\
         auth0,auth0|f,facebook,1\nauth0,auth0|f,facebook,2\nauth0,auth0|f,facebook,3\n",
    );
    let sim = Sim::start(&[
        "--seed",
        seed.to_str().unwrap(),
        "--fail-key",
        "auth0=auth0|f/facebook/2",
    ]);
    write(
        dir.path(),
        "in.csv",
        "user_id,provider,identity_user_id\nauth0|f,facebook,*\n",
    );
    let job = auth0_job(dir.path(), &sim.url, "", "");
    let out = run(&job, &["--summary", "s.json"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let rows = report(dir.path());
    let row = &rows[&2];
    assert_eq!(row["outcome"], "failed", "{row:?}");
    assert!(
        row["message"].starts_with("removed 2: facebook/1, facebook/3; failed 1: facebook/2 ("),
        "{row:?}"
    );
    assert!(row["message"].contains("cannot be unlinked"), "{row:?}");
    assert_eq!(row["attempts"], "4");
    assert_eq!(sim.links("auth0"), ["auth0|f/facebook/2"]);
    let summary = read_json(&dir.path().join("s.json"));
    assert_eq!(summary["links_removed"], 2, "{summary}");
}

#[test]
fn dry_run_check_lists_exactly_what_the_real_run_then_removes() {
    let dir = tempfile::tempdir().unwrap();
    let seed = auth0_seed(dir.path());
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);
    write(
        dir.path(),
        "in.csv",
        "user_id,provider,identity_user_id\nauth0|u2,*,*\nauth0|u30,facebook,*\nauth0|u0,facebook,*\n",
    );
    let job = auth0_job(dir.path(), &sim.url, "", "");
    // Without --check nothing is read.
    let plain = run(&job, &["--dry-run", "--report", "plain.csv"]);
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    let plain_rows = by_line(&read_report(&dir.path().join("plain.csv")));
    assert_eq!(plain_rows[&2]["outcome"], "dry_run");
    assert_eq!(
        plain_rows[&2]["message"],
        "would remove every matching link (not read)"
    );
    assert!(sim.log().is_empty(), "{:?}", sim.log());

    let check = run(
        &job,
        &[
            "--dry-run",
            "--check",
            "--report",
            "check.csv",
            "--summary",
            "c.json",
        ],
    );
    assert_eq!(check.code, 0, "{}", check.stderr);
    let checked = by_line(&read_report(&dir.path().join("check.csv")));
    assert!(
        calls(&sim).iter().all(|c| c.starts_with("GET")),
        "{:?}",
        calls(&sim)
    );
    assert_eq!(checked[&4]["outcome"], "absent");
    // The estimate counts the reads and every link's call: 2 reads + 3 + 30 removals.
    let summary = read_json(&dir.path().join("c.json"));
    assert_eq!(summary["estimate"]["auth0"]["links"], 33, "{summary}");
    assert_eq!(summary["estimate"]["auth0"]["calls"], 35, "{summary}");

    let real = run(&job, &[]);
    assert_eq!(real.code, 0, "{}", real.stderr);
    let done = report(dir.path());
    for line in [2u64, 3] {
        let would = checked[&line]["message"]
            .strip_prefix("would remove ")
            .unwrap_or_else(|| panic!("{:?}", checked[&line]))
            .to_string();
        assert_eq!(checked[&line]["outcome"], "dry_run");
        assert_eq!(done[&line]["message"], format!("removed {would}"));
    }
    assert_eq!(done[&4]["outcome"], "absent");
}

/// Kill the real binary (SIGKILL) while a 30-link row is half done, then resume: every link is
/// removed once, the row is recorded once, and its message lists all 30.
#[test]
fn a_kill_in_the_middle_of_a_wildcard_row_resumes_after_the_links_already_removed() {
    let dir = tempfile::tempdir().unwrap();
    let seed = auth0_seed(dir.path());
    let sim = Sim::start(&["--seed", seed.to_str().unwrap(), "--latency", "40ms"]);
    write(
        dir.path(),
        "in.csv",
        "user_id,provider,identity_user_id\nauth0|u30,facebook,*\nauth0|u1,facebook,*\n",
    );
    let job = auth0_job(dir.path(), &sim.url, "concurrency = 1", "");
    let mut child = Command::new(UNLINKER)
        .args(["run", job.to_str().unwrap(), "--no-progress"])
        .env("TEST_TOKEN", "sim-token")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while sim.vendor_count("auth0", "removed") < 8 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let removed_before = sim.vendor_count("auth0", "removed");
    assert!(
        (8..30).contains(&removed_before),
        "killed too late: {removed_before}"
    );
    // At most the one call in flight at the kill is in doubt (almost always exactly one: the
    // simulator holds each answer 40 ms after applying the change).
    let status = unlinker(&["status", job.to_str().unwrap()], &[]);
    let in_doubt = status
        .stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("in doubt"))
        .map(|n| n.trim().parse::<u64>().unwrap());
    assert!(in_doubt.is_some_and(|n| n <= 1), "{}", status.stdout);

    let out = run(&job, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = read_report(&dir.path().join("report.csv"));
    assert_eq!(rows.len(), 2, "every line once: {rows:?}");
    let rows = by_line(&rows);
    let ids: Vec<String> = (0..30).map(|i| format!("facebook/30{i:02}")).collect();
    assert_eq!(rows[&2]["outcome"], "unlinked", "{:?}", rows[&2]);
    assert!(
        rows[&2]["message"].contains(&format!("removed 30: {}", ids.join(", "))),
        "{:?}",
        rows[&2]
    );
    // No removal went out twice: the call in flight at the kill was settled by the new list.
    for i in 0..30 {
        let key = format!("auth0|u30/facebook/30{i:02}");
        assert_eq!(sim.key_count("auth0", &key, "unlink_calls"), 1, "{key}");
    }
    assert_eq!(sim.vendor_count("auth0", "removed"), 31);
    assert_eq!(rows[&3]["message"], "removed 1: facebook/1001");
}

/// A halt in the middle of a wildcard row (the vendor names a wait longer than allowed) leaves
/// the row pending with its finished links journaled; a resume finishes it without sending any
/// removal twice.
#[test]
fn a_halt_during_a_wildcard_row_leaves_it_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = String::from("vendor,user_id,provider,identity_user_id\n");
    for i in 0..5 {
        seed.push_str(&format!("auth0,auth0|h,facebook,{i}\n"));
    }
    let seed = write(dir.path(), "seed.csv", &seed);
    // 1 request per second after a burst of 3, without budget headers (so the client does not
    // pace itself): the read and two removals pass, then a 429 naming a wait (Retry-After: 1)
    // longer than max_rate_limit_wait.
    let sim = Sim::start(&[
        "--seed",
        seed.to_str().unwrap(),
        "--rate-limit",
        "auth0=1/3",
        "--retry-after",
        "--no-budget-headers",
    ]);
    write(
        dir.path(),
        "in.csv",
        "user_id,provider,identity_user_id\nauth0|h,facebook,*\n",
    );
    let job = auth0_job(dir.path(), &sim.url, "", "max_rate_limit_wait = \"500ms\"");
    let out = run(&job, &[]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(read_report(&dir.path().join("report.csv")).is_empty());
    let status = unlinker(&["status", job.to_str().unwrap()], &[]);
    let pending = status
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("pending"));
    assert_eq!(
        pending.map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["pending", "1"]),
        "{}",
        status.stdout
    );
    let removed_before = sim.vendor_count("auth0", "removed");
    assert_eq!(removed_before, 2);

    let job = auth0_job(dir.path(), &sim.url, "", "max_rate_limit_wait = \"30s\"");
    let out = run(&job, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = report(dir.path());
    assert_eq!(rows[&2]["outcome"], "unlinked", "{:?}", rows[&2]);
    assert_eq!(
        rows[&2]["message"],
        "removed 5: facebook/0, facebook/1, facebook/2, facebook/3, facebook/4"
    );
    for i in 0..5 {
        let key = format!("auth0|h/facebook/{i}");
        assert_eq!(sim.key_count("auth0", &key, "removed"), 1, "{key}");
    }
    // The links removed before the halt were never sent again (the others may have met 429s).
    for i in 0..2 {
        let key = format!("auth0|h/facebook/{i}");
        assert_eq!(sim.key_count("auth0", &key, "unlink_calls"), 1, "{key}");
    }
}

#[test]
fn a_star_is_refused_where_the_vendor_or_field_takes_none() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&["--all-linked"]);
    write(
        dir.path(),
        "in.csv",
        "user_id,provider,identity_user_id\n*,facebook,1\nauth0|a,*,1\nauth0|a,facebook,\n",
    );
    let job = auth0_job(dir.path(), &sim.url, "", "");
    let out = run(&job, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let rows = report(dir.path());
    for line in 2..=4u64 {
        assert_eq!(rows[&line]["outcome"], "invalid", "{:?}", rows[&line]);
    }
    assert!(rows[&2]["message"].contains("`user_id`"), "{:?}", rows[&2]);
    assert!(
        rows[&3]["message"].contains("identity_user_id `*`"),
        "{:?}",
        rows[&3]
    );
    assert!(sim.log().is_empty());
}

#[test]
fn defaults_may_give_the_star_for_a_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let seed = auth0_seed(dir.path());
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);
    write(dir.path(), "in.csv", "user_id\nauth0|m\nauth0|u1\n");
    let job = auth0_job(dir.path(), &sim.url, "", "");
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "[output]",
        "[defaults]\nprovider = \"*\"\nidentity_user_id = \"*\"\n[output]",
    );
    std::fs::write(&job, text).unwrap();
    let out = run(&job, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = report(dir.path());
    assert_eq!(
        rows[&2]["message"],
        "removed 3: facebook/m1, github/m2, twitter/m3"
    );
    assert_eq!(rows[&3]["message"], "removed 1: facebook/1001");
}

/// A wildcard row and an explicit row for a link it covers are both processed: whichever comes
/// second finds the link gone.
#[test]
fn a_wildcard_and_an_explicit_row_for_the_same_link_are_both_processed() {
    let dir = tempfile::tempdir().unwrap();
    let seed = auth0_seed(dir.path());
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);
    write(
        dir.path(),
        "in.csv",
        "user_id,provider,identity_user_id\nauth0|u1,facebook,1001\nauth0|u1,facebook,*\n",
    );
    let job = auth0_job(dir.path(), &sim.url, "concurrency = 1", "");
    let out = run(&job, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = report(dir.path());
    assert_eq!(rows[&2]["outcome"], "unlinked");
    assert_eq!(rows[&3]["outcome"], "absent", "{:?}", rows[&3]);
    assert_eq!(
        sim.key_count("auth0", "auth0|u1/facebook/1001", "removed"),
        1
    );
}

/// Gigya and Newspark have no wildcard rows: a `*` there is `invalid`, never sent. (Gigya's own
/// "every connection" is an empty `provider`, its documented form.)
#[test]
fn a_star_is_invalid_for_a_vendor_without_wildcards() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "uid,provider\nk1,*\n");
    let job = write(
        dir.path(),
        "job.toml",
        r#"
name = "g"
[input]
path = "in.csv"
[output]
report = "report.csv"
[vendors.gigya]
type = "gigya"
base_url = "http://127.0.0.1:9"
api_key = "k"
user_key = "u"
secret = "c2VjcmV0"
"#,
    );
    let out = run(&job, &["--dry-run", "--report", "d.csv"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let rows = by_line(&read_report(&dir.path().join("d.csv")));
    assert_eq!(rows[&2]["outcome"], "invalid");
    assert!(
        rows[&2]["message"].contains("field `provider`"),
        "{:?}",
        rows[&2]
    );
}

/// A halt between a link's unlink and the deletion of the user it leaves (Auth0
/// `delete_unlinked_user`): the resume deletes that user first (the list no longer shows the
/// link), then goes on with the other links.
#[test]
fn a_resume_finishes_the_second_step_of_the_link_it_stopped_in() {
    let dir = tempfile::tempdir().unwrap();
    let seed = write(
        dir.path(),
        "seed.csv",
        "vendor,user_id,provider,identity_user_id\nauth0,auth0|s,facebook,1\nauth0,auth0|s,facebook,2\n",
    );
    // A burst of 2: the read and the first unlink pass; the user deletion meets a 429 naming a
    // wait longer than allowed, and the run halts.
    let sim = Sim::start(&[
        "--seed",
        seed.to_str().unwrap(),
        "--rate-limit",
        "auth0=1/2",
        "--retry-after",
        "--no-budget-headers",
    ]);
    write(
        dir.path(),
        "in.csv",
        "user_id,provider,identity_user_id\nauth0|s,facebook,*\n",
    );
    let extra = "delete_unlinked_user = true";
    let job = auth0_job(
        dir.path(),
        &sim.url,
        extra,
        "max_rate_limit_wait = \"500ms\"",
    );
    let out = run(&job, &[]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert_eq!(sim.links("auth0"), ["auth0|s/facebook/2"]);

    let job = auth0_job(dir.path(), &sim.url, extra, "max_rate_limit_wait = \"30s\"");
    let out = run(&job, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = report(dir.path());
    assert_eq!(rows[&2]["outcome"], "unlinked", "{:?}", rows[&2]);
    assert_eq!(rows[&2]["message"], "removed 2: facebook/1, facebook/2");
    let log = calls(&sim);
    let deletes: Vec<&String> = log.iter().filter(|c| c.starts_with("DELETE")).collect();
    // The unlink made before the halt was not sent again (the resume's calls may meet 429s).
    let first = "DELETE /api/v2/users/auth0%7Cs/identities/facebook/1";
    assert_eq!(
        deletes.iter().filter(|c| c.as_str() == first).count(),
        1,
        "{deletes:#?}"
    );
    assert_eq!(sim.key_count("auth0", "auth0|s/facebook/1", "removed"), 1);
    // Both standalone users were deleted: the first one's deletion, refused with a 429 before
    // the halt, was made again by the resume.
    let user_one = "DELETE /api/v2/users/facebook%7C1";
    assert!(
        deletes.iter().filter(|c| c.as_str() == user_one).count() >= 2,
        "{deletes:#?}"
    );
    assert!(
        deletes
            .iter()
            .any(|c| c.as_str() == "DELETE /api/v2/users/facebook%7C2"),
        "{deletes:#?}"
    );
}
