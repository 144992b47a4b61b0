//! Malformed rows, duplicates and line numbers, through the real binary (dry runs: no network).

use crate::support::*;

fn dry_run(
    dir: &std::path::Path,
    input_name: &str,
    input: &[u8],
    extra_job: &str,
) -> (Run, Vec<Row>) {
    std::fs::write(dir.join(input_name), input).unwrap();
    let job = auth0_job(dir, "https://tenant.example", input_name, extra_job);
    let run = unlinker(
        &["run", job.to_str().unwrap(), "--dry-run", "--no-progress"],
        &[("TEST_TOKEN", TOKEN)],
    );
    let rows = read_report(&dir.join("report.dry-run.csv"));
    (run, rows)
}

#[test]
fn malformed_csv_rows_are_isolated_with_their_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = Vec::new();
    input.extend_from_slice("\u{feff}user_id,provider,identity_user_id\r\n".as_bytes());
    input.extend_from_slice(b"auth0|a,github,1\r\n"); // line 2
    input.extend_from_slice(b"\r\n"); // line 3: blank
    input.extend_from_slice(b"\"auth0|b\",github,\"multi\nline\"\r\n"); // lines 4-5
    input.extend_from_slice(b"auth0|c,github\r\n"); // line 6: too few fields
    input.extend_from_slice(b"auth0|d,github,\xff\xfe\r\n"); // line 7: invalid UTF-8
    input.extend_from_slice(b"auth0|e,myspace,5\r\n"); // line 8: unknown provider
    input.extend_from_slice(b"  auth0|f  , github , 6 \r\n"); // line 9: trimmed
    input.extend_from_slice(b"auth0|a,github,1\r\n"); // line 10: duplicate of line 2
    let (run, rows) = dry_run(dir.path(), "in.csv", &input, "");
    assert_eq!(run.code, 3, "invalid rows → exit 3\n{}", run.stderr);
    let rows = by_line(&rows);
    assert_eq!(
        rows.keys().copied().collect::<Vec<_>>(),
        vec![2, 4, 6, 7, 8, 9, 10]
    );
    assert_eq!(rows[&2]["outcome"], "dry_run");
    assert_eq!(rows[&4]["outcome"], "dry_run");
    assert_eq!(rows[&4]["key"], "auth0|b/github/multi\nline");
    assert_eq!(rows[&6]["outcome"], "invalid");
    assert!(
        rows[&6]["message"].contains("fields"),
        "{}",
        rows[&6]["message"]
    );
    assert_eq!(rows[&7]["outcome"], "invalid");
    assert!(
        rows[&7]["message"].contains("identity_user_id") && rows[&7]["message"].contains("UTF-8"),
        "{}",
        rows[&7]["message"]
    );
    assert_eq!(rows[&8]["outcome"], "invalid");
    assert!(
        rows[&8]["message"].contains("provider"),
        "{}",
        rows[&8]["message"]
    );
    assert_eq!(rows[&9]["key"], "auth0|f/github/6");
    assert_eq!(rows[&10]["outcome"], "duplicate");
    assert!(
        rows[&10]["message"].contains("line 2"),
        "{}",
        rows[&10]["message"]
    );
}

#[test]
fn malformed_jsonl_rows_are_isolated_with_their_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let input = concat!(
        "{\"user_id\":\"auth0|a\",\"provider\":\"github\",\"identity_user_id\":1}\n", // 1
        "\n",                                                                         // 2
        "{\"user_id\":\"auth0|b\",\"provider\":\"github\"\n",                         // 3: bad JSON
        "[1,2]\n",                                                // 4: not an object
        "{\"user_id\":\"auth0|c\",\"identity\":\"github|77\"}\n", // 5
        "{\"user_id\":\"auth0|a\",\"provider\":\"github\",\"identity_user_id\":\"1\"}\n", // 6: dup of 1
    );
    let (run, rows) = dry_run(dir.path(), "in.jsonl", input.as_bytes(), "");
    assert_eq!(run.code, 3, "{}", run.stderr);
    let rows = by_line(&rows);
    assert_eq!(
        rows.keys().copied().collect::<Vec<_>>(),
        vec![1, 3, 4, 5, 6]
    );
    assert_eq!(
        rows[&1]["key"], "auth0|a/github/1",
        "numeric ids are accepted"
    );
    assert_eq!(rows[&3]["outcome"], "invalid");
    assert!(
        rows[&3]["message"].contains("JSON"),
        "{}",
        rows[&3]["message"]
    );
    assert_eq!(rows[&4]["outcome"], "invalid");
    assert_eq!(rows[&5]["key"], "auth0|c/github/77");
    assert_eq!(rows[&6]["outcome"], "duplicate");
    assert!(rows[&6]["message"].contains("line 1"));
}

#[test]
fn column_renames_and_defaults_apply() {
    let dir = tempfile::tempdir().unwrap();
    let input = "PrimaryUserId,SocialId,provider\nauth0|a,9,\nauth0|b,8,github\n";
    let extra = "[input.columns]\nuser_id = \"PrimaryUserId\"\nidentity_user_id = \"SocialId\"\n";
    // [defaults] has to precede the tables that follow it in the file, so add it via replace.
    std::fs::write(dir.path().join("in.csv"), input).unwrap();
    let job = auth0_job(dir.path(), "https://tenant.example", "in.csv", "");
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "[output]",
        &format!("{extra}\n[defaults]\nprovider = \"facebook\"\n\n[output]"),
    );
    std::fs::write(&job, text).unwrap();
    let run = unlinker(
        &["run", job.to_str().unwrap(), "--dry-run", "--no-progress"],
        &[("TEST_TOKEN", TOKEN)],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows = by_line(&read_report(&dir.path().join("report.dry-run.csv")));
    assert_eq!(rows[&2]["key"], "auth0|a/facebook/9");
    assert_eq!(rows[&3]["key"], "auth0|b/github/8");
}

#[test]
fn validate_lists_invalid_rows_by_line_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.csv"),
        "user_id,provider,identity_user_id\nauth0|a,github,1\nauth0|b,nope,2\nauth0|a,github,1\n",
    )
    .unwrap();
    let job = auth0_job(dir.path(), "https://tenant.example", "in.csv", "");
    let run = unlinker(
        &["validate", job.to_str().unwrap()],
        &[("TEST_TOKEN", TOKEN)],
    );
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("line 3: invalid: field `provider`"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("line 4: duplicate"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("3 rows: 1 valid, 1 invalid, 1 duplicate"),
        "{}",
        run.stdout
    );
    assert!(
        !dir.path().join("report.csv").exists(),
        "validate writes nothing"
    );

    std::fs::write(
        dir.path().join("in.csv"),
        "user_id,provider,identity_user_id\nauth0|a,github,1\n",
    )
    .unwrap();
    let ok = unlinker(
        &["validate", job.to_str().unwrap()],
        &[("TEST_TOKEN", TOKEN)],
    );
    assert_eq!(ok.code, 0, "{}", ok.stdout);
}

#[test]
fn unreadable_input_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let job = auth0_job(dir.path(), "https://tenant.example", "missing.csv", "");
    let run = unlinker(
        &["run", job.to_str().unwrap(), "--dry-run", "--no-progress"],
        &[("TEST_TOKEN", TOKEN)],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("missing.csv"), "{}", run.stderr);
}

/// `*` in a link field asks for every link (a wildcard row): a plain dry run reads nothing, so
/// it says the row would remove every matching link, with the read a real run starts with.
#[test]
fn a_wildcard_row_in_a_plain_dry_run_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let input = b"user_id,provider,identity_user_id\nauth0|a,github,*\nauth0|b,github,2\n";
    let (run, rows) = dry_run(dir.path(), "in.csv", input, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows = by_line(&rows);
    assert_eq!(rows[&2]["outcome"], "dry_run");
    assert_eq!(
        rows[&2]["message"],
        "would remove every matching link (not read)"
    );
    assert!(
        rows[&2]["request"].starts_with("GET ")
            && rows[&2]["request"].ends_with("/api/v2/users/auth0%7Ca"),
        "{:?}",
        rows[&2]
    );
    assert_eq!(rows[&2]["key"], "auth0|a/github/*");
    assert_eq!(rows[&3]["outcome"], "dry_run");
}
