//! The per-row evidence in the report: `input.columns.reference` on every row, the key parts an
//! invalid row gives, every call of a row in `request`, and a `--retry-failed` row naming its
//! earlier failure.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{
    Row, TOKEN, by_line, read_report, run_args, spawn_run, token_env, unlinker, unlinker_async,
    wait_for_requests, write,
};

/// An Auth0 job against `url` reading `input`, with `extra` appended (whole tables).
fn job(dir: &Path, url: &str, input: &str, timeout: &str, extra: &str) -> PathBuf {
    write(
        dir,
        "job.toml",
        &format!(
            r#"
name = "evidence"
[input]
path = "{input}"
[output]
report = "report.csv"
[vendors.auth0]
type = "auth0"
base_url = "{url}"
token = "${{TEST_TOKEN}}"
rate = 1000
burst = 1000
concurrency = 4
[retry]
base_delay = "10ms"
max_delay = "50ms"
timeout = "{timeout}"
{extra}
"#
        ),
    )
}

const REFERENCE: &str = "[input.columns]\nreference = \"ticket\"\n";

async fn ok_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    server
}

fn report(dir: &Path, name: &str) -> std::collections::BTreeMap<u64, Row> {
    by_line(&read_report(&dir.join(name)))
}

/// CSV: valid, invalid (a bad provider, a wrong field count), duplicate and over-long
/// references; the JSONL report of a dry run the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_column_reaches_every_row_of_a_csv_input() {
    let server = ok_server().await;
    let dir = tempfile::tempdir().unwrap();
    let long = format!("L{}", "x".repeat(400));
    write(
        dir.path(),
        "in.csv",
        &format!(
            "user_id,provider,identity_user_id,ticket\n\
             auth0|u1,github,1, T-1 \n\
             auth0|abc,badprov,123,T-2\n\
             auth0|u1,github,1,T-3\n\
             auth0|u4,github,4,T-4,extra\n\
             auth0|u5,github,5,{long}\n\
             auth0|u7,github,7,ref-{TOKEN}\n"
        ),
    );
    let job = job(dir.path(), &server.uri(), "in.csv", "5s", REFERENCE);
    let out = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    let rows = report(dir.path(), "report.csv");
    let refs: Vec<(&str, &str)> = rows
        .values()
        .map(|r| (r["outcome"].as_str(), r["reference"].as_str()))
        .collect();
    assert_eq!(
        refs[..4],
        [
            ("unlinked", "T-1"),
            ("invalid", "T-2"),
            ("duplicate", "T-3"),
            ("invalid", "T-4"),
        ]
    );
    let cut = &rows[&6]["reference"];
    assert_eq!(rows[&6]["outcome"], "unlinked");
    assert_eq!(cut.chars().count(), 200, "{cut}");
    assert!(cut.starts_with("Lxxx") && cut.ends_with('…'), "{cut}");
    // From the input, yet never a secret of the job.
    assert_eq!(rows[&7]["reference"], "ref-[redacted]");

    // A dry run (its own report) carries it too.
    let dry_report = dir.path().join("dry.jsonl");
    let dry_report = dry_report.to_str().unwrap();
    let dry = unlinker_async(
        run_args(&job, &["--dry-run", "--report", dry_report]),
        token_env(),
    )
    .await;
    assert_eq!(dry.code, 3, "{}", dry.stderr);
    let text = std::fs::read_to_string(dry_report).unwrap();
    let dry: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dry[0]["outcome"], "dry_run");
    assert_eq!(dry[0]["reference"], "T-1");
    assert_eq!(dry[1]["reference"], "T-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_key_reaches_every_row_of_a_jsonl_input() {
    let server = ok_server().await;
    let dir = tempfile::tempdir().unwrap();
    let input = [
        r#"{"user_id":"auth0|u1","provider":"github","identity_user_id":1,"ticket":"T-1"}"#,
        r#"{"user_id":"auth0|u2","provider":"github","identity_user_id":[2],"ticket":"T-2"}"#,
        r#"{"user_id":"auth0|u1","provider":"github","identity_user_id":"1","ticket":42}"#,
        r#"{"user_id":"auth0|u4","ticket":"T-4""#,
    ]
    .join("\n");
    write(dir.path(), "in.jsonl", &input);
    let job = job(dir.path(), &server.uri(), "in.jsonl", "5s", REFERENCE);
    let out = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    let rows = report(dir.path(), "report.csv");
    let got: Vec<(&str, &str)> = rows
        .values()
        .map(|r| (r["outcome"].as_str(), r["reference"].as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("unlinked", "T-1"),
            ("invalid", "T-2"), // a bad field: the reference is still read
            ("duplicate", "42"),
            ("invalid", ""), // not JSON at all: no reference
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_setting_the_reference_column_is_there_and_empty() {
    let server = ok_server().await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        "user_id,provider,identity_user_id,reference\nauth0|u1,github,1,T-1\n",
    );
    let job = job(dir.path(), &server.uri(), "in.csv", "5s", "");
    let out = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(dir.path().join("report.csv")).unwrap();
    assert!(
        text.starts_with("line,vendor,key,reference,outcome,"),
        "{text}"
    );
    assert_eq!(report(dir.path(), "report.csv")[&2]["reference"], "");
}

#[test]
fn a_reference_column_missing_from_the_csv_header_is_a_job_error() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        "user_id,provider,identity_user_id\nauth0|u1,github,1\n",
    );
    // Nothing is sent: the header is checked before any row.
    let job = job(dir.path(), "http://127.0.0.1:9", "in.csv", "5s", REFERENCE);
    let out = unlinker(
        &["run", job.to_str().unwrap(), "--no-progress"],
        &[("TEST_TOKEN", TOKEN)],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("column `ticket` (input.columns.reference) is not in the header"),
        "{}",
        out.stderr
    );
    let validate = unlinker(
        &["validate", job.to_str().unwrap()],
        &[("TEST_TOKEN", TOKEN)],
    );
    assert_eq!(validate.code, 1, "{}", validate.stderr);
}

/// `--limit` then a resume, then `--retry-failed`: every row recorded in any run keeps its
/// reference, and the retried row names its earlier failure whatever its new outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_and_retried_rows_keep_their_reference_and_retried_ones_name_the_failure() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path_regex("auth0%7Cu3/"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_string(r#"{"statusCode":400,"message":"temporarily refused"}"#),
        )
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("user_id,provider,identity_user_id,ticket\n");
    for i in 1..=4 {
        input.push_str(&format!("auth0|u{i},github,{i},T-{i}\n"));
    }
    write(dir.path(), "in.csv", &input);
    let job = job(dir.path(), &server.uri(), "in.csv", "5s", REFERENCE);
    let first = unlinker_async(run_args(&job, &["--limit", "1"]), token_env()).await;
    assert_eq!(first.code, 4, "{}", first.stderr);
    let rest = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(rest.code, 3, "{}", rest.stderr);
    let rows = report(dir.path(), "report.csv");
    for (line, r) in &rows {
        assert_eq!(r["reference"], format!("T-{}", line - 1), "{r:?}");
    }
    assert_eq!(rows[&4]["outcome"], "failed");
    let earlier = rows[&4]["message"].clone();
    assert!(earlier.contains("temporarily refused"), "{earlier}");

    server.reset().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    let retried = unlinker_async(run_args(&job, &["--retry-failed"]), token_env()).await;
    assert_eq!(retried.code, 0, "{}", retried.stderr);
    let rows = report(dir.path(), "report.csv");
    assert_eq!(rows.len(), 4);
    let r = &rows[&4];
    assert_eq!(r["outcome"], "unlinked");
    assert_eq!(r["reference"], "T-3");
    assert_eq!(
        r["message"],
        format!("failed before ({earlier}); now: unlinked")
    );
    for line in 2..=4 {
        assert_eq!(rows[&line]["reference"], format!("T-{}", line - 1));
    }
    assert_eq!(
        rows[&2]["message"], "",
        "rows not retried say nothing of it"
    );
}

/// Every vendor: an invalid row shows the key parts it gives; rows invalid before any adapter
/// (no vendor of the job, not JSON) have none.
#[test]
fn invalid_rows_show_the_key_parts_they_give_for_every_vendor() {
    let dir = tempfile::tempdir().unwrap();
    let uuid = "6F0A9B4E-2C1D-4E8F-9A3B-000000000001";
    let input = [
        r#"{"vendor":"auth0","user_id":"auth0|abc","provider":"badprov","identity_user_id":"123"}"#,
        r#"{"vendor":"auth0","user_id":"auth0|abc","identity_user_id":"123"}"#,
        &format!(
            r#"{{"vendor":"fusionauth","user_id":"{uuid}","identity_provider_id":"not-a-uuid","identity_provider_user_id":"fb-1"}}"#
        ),
        r#"{"vendor":"gigya","uid":"u-9"}"#,
        r#"{"vendor":"newspark","vhost":"12a","uid":4400124,"external_id_provider_name":"Gigya"}"#,
        r#"{"vendor":"okta","user_id":"00u1"}"#,
        r#"{"vendor":"auth0","user_id":"#,
    ]
    .join("\n");
    write(dir.path(), "in.jsonl", &input);
    // Nothing is sent: every row is invalid.
    let url = "http://127.0.0.1:9";
    write(
        dir.path(),
        "job.toml",
        &format!(
            r#"
name = "keys"
[input]
path = "in.jsonl"
[output]
report = "report.csv"
[vendors.auth0]
type = "auth0"
base_url = "{url}"
token = "t"
[vendors.fusionauth]
type = "fusionauth"
base_url = "{url}"
api_key = "k"
[vendors.gigya]
type = "gigya"
base_url = "{url}"
api_key = "a"
user_key = "u"
secret = "c2VjcmV0"
[vendors.newspark]
type = "newspark"
base_url = "{url}"
"#
        ),
    );
    let job = dir.path().join("job.toml");
    let out = unlinker(&["run", job.to_str().unwrap(), "--no-progress"], &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let rows = report(dir.path(), "report.csv");
    let got: Vec<(&str, &str, &str)> = rows
        .values()
        .map(|r| {
            assert_eq!(r["outcome"], "invalid", "{r:?}");
            (
                r["vendor"].as_str(),
                r["key"].as_str(),
                r["attempts"].as_str(),
            )
        })
        .collect();
    let fa_key = format!("{}/not-a-uuid/fb-1", uuid.to_lowercase());
    assert_eq!(
        got,
        [
            ("auth0", "auth0|abc/badprov/123", "0"),
            ("auth0", "auth0|abc//123", "0"),
            ("fusionauth", fa_key.as_str(), "0"),
            ("gigya", "u-9/", "0"),
            ("newspark", "12a/4400124/gigya/", "0"),
            ("", "", "0"),
            ("", "", "0"),
        ]
    );
}

/// Auth0 `delete_unlinked_user`: the unlink, then the user delete, in one `request`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_step_row_lists_both_calls_in_order() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/api/v2/users/auth0%7Cu1/identities/github/1"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/api/v2/users/github%7C1"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        "user_id,provider,identity_user_id\nauth0|u1,github,1\n",
    );
    let job = write(
        dir.path(),
        "job.toml",
        &format!(
            r#"
name = "two"
[input]
path = "in.csv"
[output]
report = "report.csv"
[vendors.auth0]
type = "auth0"
base_url = "{}"
token = "${{TEST_TOKEN}}"
delete_unlinked_user = true
"#,
            server.uri()
        ),
    );
    let out = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = &report(dir.path(), "report.csv")[&2];
    assert_eq!(r["outcome"], "unlinked", "{r:?}");
    let uri = server.uri();
    assert_eq!(
        r["request"],
        format!(
            "DELETE {uri}/api/v2/users/auth0%7Cu1/identities/github/1 ; DELETE {uri}/api/v2/users/github%7C1"
        )
    );
    assert_eq!(r["attempts"], "2");
}

/// A lost answer: the call, the read-back that found the link still there, and the resend, each
/// once in `request`, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_row_lists_the_call_the_read_and_the_resend() {
    let server = MockServer::start().await;
    let unlink = "/api/v2/users/auth0%7Cu1/identities/github/1";
    Mock::given(method("DELETE"))
        .and(path(unlink))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string("[]")
                .set_delay(Duration::from_secs(3)),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(unlink))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/users/auth0%7Cu1"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"user_id":"auth0|u1","identities":[{"provider":"auth0","user_id":"u1"},{"provider":"github","user_id":"1"}]}"#,
        ))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        "user_id,provider,identity_user_id\nauth0|u1,github,1\n",
    );
    let job = job(dir.path(), &server.uri(), "in.csv", "1s", "");
    let out = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = &report(dir.path(), "report.csv")[&2];
    assert_eq!(r["outcome"], "unlinked", "{r:?}");
    let uri = server.uri();
    assert_eq!(
        r["request"],
        format!("DELETE {uri}{unlink} ; GET {uri}/api/v2/users/auth0%7Cu1 ; DELETE {uri}{unlink}")
    );
    assert_eq!(r["attempts"], "3");
}

/// A run killed with its calls in flight: on resume, the row settled by read-back shows the
/// read, the row sent again shows the read then the resend; both keep their reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_doubt_rows_list_the_read_back_and_keep_their_reference() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string("[]")
                .set_delay(Duration::from_secs(30)),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in.csv",
        "user_id,provider,identity_user_id,ticket\nauth0|gone,github,1,T-1\nauth0|still,github,2,T-2\n",
    );
    let job = job(dir.path(), &server.uri(), "in.csv", "60s", REFERENCE);
    let mut child = spawn_run(&job, Stdio::null());
    wait_for_requests(&server, 2).await;
    child.kill().unwrap();
    child.wait().unwrap();

    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/users/auth0%7Cgone"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "user_id": "auth0|gone", "identities": [{"provider": "auth0", "user_id": "gone"}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/users/auth0%7Cstill"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "user_id": "auth0|still", "identities": [{"provider": "github", "user_id": 2}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    let resumed = unlinker_async(run_args(&job, &[]), token_env()).await;
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let rows = report(dir.path(), "report.csv");
    let uri = server.uri();
    assert_eq!(rows[&2]["outcome"], "absent");
    assert_eq!(rows[&2]["reference"], "T-1");
    assert_eq!(
        rows[&2]["request"],
        format!("GET {uri}/api/v2/users/auth0%7Cgone")
    );
    assert_eq!(rows[&3]["outcome"], "unlinked");
    assert_eq!(rows[&3]["reference"], "T-2");
    assert_eq!(
        rows[&3]["request"],
        format!(
            "GET {uri}/api/v2/users/auth0%7Cstill ; DELETE {uri}/api/v2/users/auth0%7Cstill/identities/github/2"
        )
    );
}
