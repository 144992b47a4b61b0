//! Guard rails: job-file errors, exit codes for usage, every shipped job parses, README = --help.

use crate::support::*;

#[test]
fn missing_variable_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        "user_id,provider,identity_user_id\nauth0|a,github,1\n",
    );
    let job = auth0_job(dir.path(), "http://127.0.0.1:9", "in.csv", "");
    let run = unlinker(&["run", job.to_str().unwrap(), "--no-progress"], &[]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("TEST_TOKEN"), "{}", run.stderr);
    assert!(run.stderr.contains("vendors.auth0.token"), "{}", run.stderr);
    assert!(
        !dir.path().join("report.csv").exists(),
        "refused before writing anything"
    );
}

#[test]
fn insecure_base_url_is_refused_before_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        "user_id,provider,identity_user_id\nauth0|a,github,1\n",
    );
    // A listener that would see any connection attempt.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let job = auth0_job(dir.path(), "http://tenant.example.com", "in.csv", "");
    let run = unlinker(
        &["run", job.to_str().unwrap(), "--no-progress"],
        &[("TEST_TOKEN", TOKEN)],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("vendors.auth0.base_url"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("https"), "{}", run.stderr);
    assert!(!dir.path().join("report.csv").exists());
}

#[test]
fn unknown_job_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", "user_id,provider,identity_user_id\n");
    let job = auth0_job(dir.path(), "https://t.example", "in.csv", "jitter = true");
    let run = unlinker(
        &["validate", job.to_str().unwrap()],
        &[("TEST_TOKEN", TOKEN)],
    );
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("jitter"), "{}", run.stderr);
    assert!(
        run.stderr.contains("job.toml"),
        "names the file: {}",
        run.stderr
    );
}

#[test]
fn bad_usage_exits_2() {
    assert_eq!(unlinker(&["run"], &[]).code, 2);
    assert_eq!(unlinker(&["frobnicate"], &[]).code, 2);
    assert_eq!(
        unlinker(&["run", "j.toml", "--check"], &[]).code,
        2,
        "--check needs --dry-run"
    );
    assert_eq!(unlinker(&["run", "j.toml", "--rate", "0"], &[]).code, 2);
    assert_eq!(
        unlinker(&["run", "j.toml", "--concurrency", "0"], &[]).code,
        2
    );
}

#[test]
fn vendors_lists_every_adapter() {
    let run = unlinker(&["vendors"], &[]);
    assert_eq!(run.code, 0);
    for needle in [
        "auth0",
        "fusionauth",
        "gigya",
        "newspark",
        "identity_user_id",
        "identity_provider_id",
        "external_id_provider_name",
        "{user_id}/{provider}/{identity_user_id}",
        "delete_unlinked_user",
        "last_identity_handling",
        "default 50",
    ] {
        assert!(
            run.stdout.contains(needle),
            "`{needle}` missing from:\n{}",
            run.stdout
        );
    }
}

/// Every variable a shipped job uses, with harmless values.
const JOB_ENV: &[(&str, &str)] = &[
    ("AUTH0_DOMAIN", "acme.eu.auth0.com"),
    ("AUTH0_MGMT_TOKEN", "t"),
    ("AUTH0_CLIENT_ID", "c"),
    ("AUTH0_CLIENT_SECRET", "s"),
    ("FUSIONAUTH_URL", "https://auth.example.com"),
    ("FUSIONAUTH_API_KEY", "k"),
    (
        "FUSIONAUTH_TENANT_ID",
        "0b2a3a5e-8f3c-4a53-9d1c-3f0e2d4c5b6a",
    ),
    ("GIGYA_API_KEY", "k"),
    ("GIGYA_USER_KEY", "u"),
    ("GIGYA_SECRET", "c2VjcmV0"),
    ("NEWSPARK_URL", "https://news.example.com"),
    ("NEWSPARK_SESSION", "session=s"),
    ("NEWSPARK_FORM_TOKEN", "f"),
    ("SIM_URL", "http://127.0.0.1:8787"),
    ("FIREBASE_PROJECT_ID", "demo-unlinker"),
    (
        "FIREBASE_SERVICE_ACCOUNT",
        include_str!("../fixtures/firebase-service-account.json"),
    ),
];

#[test]
fn every_shipped_job_parses_and_its_sample_validates() {
    let jobs = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/jobs")).unwrap();
    let mut seen = 0;
    for entry in jobs {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        seen += 1;
        let run = unlinker(&["validate", path.to_str().unwrap()], JOB_ENV);
        // 0 = all rows valid, 3 = the sample deliberately holds invalid rows; never 1.
        assert!(
            run.code == 0 || run.code == 3,
            "{} does not load: {}{}",
            path.display(),
            run.stdout,
            run.stderr
        );
    }
    assert!(
        seen >= 5,
        "one job per vendor plus the multi-vendor job, found {seen}"
    );
}

#[test]
fn readme_usage_matches_help() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for (args, marker) in [
        (&["--help"][..], "unlinker --help"),
        (&["run", "--help"][..], "unlinker run --help"),
    ] {
        let help = unlinker(args, &[]).stdout;
        let start = readme
            .find(&format!("$ {marker}\n"))
            .unwrap_or_else(|| panic!("README has no `$ {marker}` block"));
        let block = &readme[start + marker.len() + 3..];
        let block = &block[..block.find("```").unwrap()];
        assert_eq!(
            block.trim_end(),
            help.trim_end(),
            "README's `{marker}` block is out of date"
        );
    }
}
