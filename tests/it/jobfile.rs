//! The job file through the real binary (SPEC section 2): `${VAR}` in numbers and durations,
//! every missing variable named at once, names and base URLs that are refused, numbers that
//! would crash the limiter.

use std::path::{Path, PathBuf};

use crate::support::*;

/// A dry-run Auth0 job (no network) with `vendor` and `retry` lines added.
fn job(dir: &Path, name: &str, vendor: &str, retry: &str) -> PathBuf {
    write(dir, "in.csv", &rows_input(2));
    write(
        dir,
        "job.toml",
        &format!(
            r#"
name = "{name}"
[input]
path = "in.csv"
[output]
report = "report.csv"
[vendors.auth0]
type = "auth0"
base_url = "http://127.0.0.1:9"
token = "${{TEST_TOKEN}}"
{vendor}
[retry]
{retry}
"#
        ),
    )
}

fn dry_run(job: &Path, env: &[(&str, &str)]) -> Run {
    let mut all = vec![("TEST_TOKEN", TOKEN)];
    all.extend_from_slice(env);
    unlinker(
        &["run", job.to_str().unwrap(), "--dry-run", "--no-progress"],
        &all,
    )
}

#[test]
fn variables_work_in_durations_and_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(
        dir.path(),
        "vars",
        "rate = \"${RATE}\"\nburst = \"${BURST}\"\nconcurrency = \"${C}\"",
        "timeout = \"${T}\"\nmax_attempts = \"6\"",
    );
    let env = [("RATE", "12.5"), ("BURST", "3"), ("C", "2"), ("T", "7s")];
    let out = dry_run(&job, &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let validate = unlinker(
        &["validate", job.to_str().unwrap()],
        &[
            ("TEST_TOKEN", TOKEN),
            ("RATE", "1"),
            ("BURST", "1"),
            ("C", "1"),
            ("T", "1s"),
        ],
    );
    assert_eq!(validate.code, 0, "{}", validate.stderr);
}

#[test]
fn every_missing_variable_is_named_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(
        dir.path(),
        "missing",
        "rate = \"${RATE}\"",
        "timeout = \"${T}\"",
    );
    let out = unlinker(
        &["run", job.to_str().unwrap(), "--dry-run", "--no-progress"],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    for part in [
        "TEST_TOKEN (used by `vendors.auth0.token`)",
        "RATE (used by `vendors.auth0.rate`)",
        "T (used by `retry.timeout`)",
        "job.toml",
    ] {
        assert!(out.stderr.contains(part), "{part}: {}", out.stderr);
    }
}

#[test]
fn names_with_dot_segments_are_refused() {
    for name in ["..", ".", ".hidden"] {
        let dir = tempfile::tempdir().unwrap();
        let job = job(dir.path(), name, "", "");
        let out = dry_run(&job, &[]);
        assert_eq!(out.code, 1, "{name}: {}", out.stderr);
        assert!(out.stderr.contains("`name`"), "{}", out.stderr);
    }
}

#[test]
fn base_urls_with_user_info_query_or_fragment_are_refused_by_part() {
    for (url, part, hidden) in [
        (
            "http://admin:hunter22@127.0.0.1:9",
            "user information",
            "hunter22",
        ),
        (
            "http://127.0.0.1:9/?api_key=k3y-value",
            "query",
            "k3y-value",
        ),
        ("http://127.0.0.1:9/#frag-value", "fragment", "frag-value"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let job = job(dir.path(), "u", "", "");
        let text = std::fs::read_to_string(&job)
            .unwrap()
            .replace("http://127.0.0.1:9", url);
        std::fs::write(&job, text).unwrap();
        let out = dry_run(&job, &[]);
        assert_eq!(out.code, 1, "{url}: {}", out.stderr);
        assert!(
            out.stderr.contains(part) && out.stderr.contains("vendors.auth0.base_url"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains(hidden), "{}", out.stderr);
        assert!(!dir.path().join("report.dry-run.csv").exists());
    }
}

#[test]
fn numbers_that_would_crash_the_limiter_are_refused() {
    for (vendor, retry, key) in [
        ("rate = 1e300", "", "vendors.auth0.rate"),
        ("rate = \"${HUGE}\"", "", "vendors.auth0.rate"),
        ("burst = 0", "", "vendors.auth0.burst"),
        ("concurrency = 100000", "", "vendors.auth0.concurrency"),
        ("", "timeout = \"1000000000y\"", "retry.timeout"),
        ("", "max_delay = \"${LONG}\"", "retry.max_delay"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let job = job(dir.path(), "n", vendor, retry);
        let out = dry_run(&job, &[("HUGE", "1e300"), ("LONG", "500000000y")]);
        assert_eq!(out.code, 1, "{vendor}{retry}: {}", out.stderr);
        assert!(out.stderr.contains(key), "{}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}
