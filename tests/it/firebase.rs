//! Firebase end to end: the real binary against a scripted server (wiremock) for the exact wire,
//! every answer class and the service-account token flow, and against `unlinker-sim` for the
//! token endpoint's JWT check, seeds and `--all-linked`. The emulator scenario is in
//! `emulator.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::*;

const ACCOUNTS: &str = "/v1/projects/demo-p/accounts";
/// A key made for the tests only (tests/fixtures/).
const TEST_KEY: &str = include_str!("../fixtures/firebase-test-key.pem");
const TEST_PUBLIC_KEY: &str = "tests/fixtures/firebase-test-key.pub.pem";
const EMAIL: &str = "unlinker-test@demo-p.iam.gserviceaccount.com";
const STATIC_TOKEN: &str = "fb-static-token-7c2e";

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Write a service-account key file naming `token_uri`.
fn key_file(dir: &Path, token_uri: &str) -> PathBuf {
    let key = json!({
        "type": "service_account",
        "project_id": "demo-p",
        "private_key_id": "kid-0001-test",
        "private_key": TEST_KEY,
        "client_email": EMAIL,
        "token_uri": token_uri,
    });
    let path = write(dir, "sa.json", &key.to_string());
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&path, perms).unwrap();
    path
}

enum Auth<'a> {
    Static,
    Account(&'a Path),
}

fn job(dir: &Path, base_url: &str, auth: Auth<'_>, extra: &str) -> PathBuf {
    let auth = match auth {
        Auth::Static => format!("token = \"{STATIC_TOKEN}\""),
        Auth::Account(key) => format!("service_account = \"${{file:{}}}\"", key.display()),
    };
    write(
        dir,
        "job.toml",
        &format!(
            r#"
name = "fb"
[input]
path = "in.csv"
[output]
report = "report.csv"
[vendors.fb]
type = "firebase"
base_url = "{base_url}"
project_id = "demo-p"
{auth}
rate = 1000
burst = 1000
concurrency = 1
{extra}
[retry]
base_delay = "10ms"
max_delay = "100ms"
timeout = "5s"
"#
        ),
    )
}

fn input(dir: &Path, rows: &[(&str, &str)]) {
    let mut s = String::from("uid,provider_id\n");
    for (uid, provider) in rows {
        s.push_str(&format!("{uid},{provider}\n"));
    }
    write(dir, "in.csv", &s);
}

fn report(dir: &Path) -> std::collections::BTreeMap<String, Row> {
    read_report(&dir.join("report.csv"))
        .into_iter()
        .map(|r| (r["key"].clone(), r))
        .collect()
}

fn lookup_answer(uid: &str, providers: &[&str], extra: Value) -> Value {
    let info: Vec<Value> = providers
        .iter()
        .map(|p| json!({"providerId": p, "rawId": format!("{p}-{uid}")}))
        .collect();
    let mut user = json!({"localId": uid, "providerUserInfo": info, "emailVerified": false});
    if let (Value::Object(u), Value::Object(e)) = (&mut user, extra) {
        u.extend(e);
    }
    json!({"kind": "identitytoolkit#GetAccountInfoResponse", "users": [user]})
}

fn google_error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": {"code": status, "message": message,
                  "errors": [{"message": message, "reason": "invalid", "domain": "global"}]}
    }))
}

/// A scripted Identity Toolkit: users by uid (lookup answers), update answers computed from
/// them, per-uid overrides, and the bearer tokens it accepts.
struct Script {
    users: Mutex<std::collections::HashMap<String, Vec<String>>>,
    /// uid → a fixed answer to every call naming it.
    fixed: Vec<(&'static str, ResponseTemplate)>,
    /// uid → a fixed answer to its update only.
    fixed_update: Vec<(&'static str, ResponseTemplate)>,
    accepted: Mutex<Vec<String>>,
}

impl Script {
    fn new(users: &[(&str, &[&str])]) -> Script {
        Script {
            users: Mutex::new(
                users
                    .iter()
                    .map(|(u, ps)| (u.to_string(), ps.iter().map(|p| p.to_string()).collect()))
                    .collect(),
            ),
            fixed: Vec::new(),
            fixed_update: Vec::new(),
            accepted: Mutex::new(vec![STATIC_TOKEN.to_string()]),
        }
    }
}

impl Respond for Script {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let bearer = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !self.accepted.lock().unwrap().iter().any(|t| t == bearer) {
            return google_error(401, "Request had invalid authentication credentials.");
        }
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let update = req.url.path().ends_with(":update");
        let uid = if update {
            body["localId"].as_str().unwrap().to_string()
        } else {
            body["localId"][0].as_str().unwrap().to_string()
        };
        if let Some((_, answer)) = self.fixed.iter().find(|(u, _)| *u == uid) {
            return answer.clone();
        }
        if update && let Some((_, answer)) = self.fixed_update.iter().find(|(u, _)| *u == uid) {
            return answer.clone();
        }
        let mut users = self.users.lock().unwrap();
        let Some(providers) = users.get_mut(&uid) else {
            return match update {
                true => google_error(400, "USER_NOT_FOUND"),
                false => ResponseTemplate::new(200)
                    .set_body_json(json!({"kind": "identitytoolkit#GetAccountInfoResponse"})),
            };
        };
        if update {
            let gone: Vec<&str> = body["deleteProvider"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect();
            providers.retain(|p| !gone.contains(&p.as_str()));
            let info: Vec<Value> = providers
                .iter()
                .map(|p| json!({"providerId": p, "rawId": "r"}))
                .collect();
            return ResponseTemplate::new(200).set_body_json(json!({
                "kind": "identitytoolkit#SetAccountInfoResponse", "localId": uid,
                "providerUserInfo": info
            }));
        }
        let providers: Vec<&str> = providers.iter().map(String::as_str).collect();
        let extra = if uid.starts_with("pw-") {
            json!({"passwordHash": "aGFzaA=="})
        } else {
            json!({})
        };
        ResponseTemplate::new(200).set_body_json(lookup_answer(&uid, &providers, extra))
    }
}

async fn mount(server: &MockServer, script: Script) {
    Mock::given(method("POST"))
        .and(wiremock::matchers::path_regex(
            "^/v1/projects/demo-p/accounts:",
        ))
        .respond_with(script)
        .mount(server)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_is_a_lookup_then_an_update_with_exact_json_and_the_bearer() {
    let server = MockServer::start().await;
    mount(
        &server,
        Script::new(&[("u 1/é", &["google.com", "facebook.com"])]),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), &[("\"u 1/é\"", "google.com")]);
    let job = job(dir.path(), &server.uri(), Auth::Static, "");
    let run = unlinker_async(run_args(&job, &[]), vec![]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].url.path(), format!("{ACCOUNTS}:lookup"));
    assert_eq!(reqs[1].url.path(), format!("{ACCOUNTS}:update"));
    let bodies: Vec<Value> = reqs
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(bodies[0], json!({"localId": ["u 1/é"]}));
    assert_eq!(
        bodies[1],
        json!({"localId": "u 1/é", "deleteProvider": ["google.com"]})
    );
    assert_eq!(
        std::str::from_utf8(&reqs[1].body).unwrap(),
        r#"{"deleteProvider":["google.com"],"localId":"u 1/é"}"#
    );
    for r in &reqs {
        assert_eq!(
            r.headers.get("authorization").unwrap(),
            &format!("Bearer {STATIC_TOKEN}")
        );
        assert_eq!(r.headers.get("content-type").unwrap(), "application/json");
    }
    let rows = report(dir.path());
    let row = &rows["u 1/é/google.com"];
    assert_eq!(row["outcome"], "unlinked");
    assert_eq!(row["attempts"], "2");
    assert!(row["request"].contains("accounts:lookup {\"localId\":[\"u 1/é\"]} ; POST"));
    assert!(!row["request"].contains(STATIC_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_class_lands_in_the_right_outcome() {
    let server = MockServer::start().await;
    let mut script = Script::new(&[
        ("two", &["google.com", "apple.com"]),
        ("last", &["google.com"]),
        ("pw-last", &["google.com"]),
        ("other", &["apple.com"]),
        ("gone-later", &["google.com", "apple.com"]),
    ]);
    script.fixed = vec![
        ("not-found", google_error(400, "USER_NOT_FOUND")),
        ("bad", google_error(400, "INVALID_ARGUMENT : bad uid")),
    ];
    script.fixed_update = vec![("gone-later", google_error(400, "USER_NOT_FOUND"))];
    mount(&server, script).await;
    let dir = tempfile::tempdir().unwrap();
    input(
        dir.path(),
        &[
            ("two", "google.com"),
            ("last", "google.com"),
            ("pw-last", "google.com"),
            ("other", "google.com"),
            ("nobody", "google.com"),
            ("not-found", "google.com"),
            ("bad", "google.com"),
            ("gone-later", "google.com"),
            ("x", "password"),
            ("x", "phone"),
        ],
    );
    let job = job(dir.path(), &server.uri(), Auth::Static, "");
    let run = unlinker_async(run_args(&job, &[]), vec![]).await;
    let rows = report(dir.path());
    let outcome = |key: &str| rows[key]["outcome"].as_str();
    assert_eq!(outcome("two/google.com"), "unlinked", "{}", run.stderr);
    assert_eq!(outcome("last/google.com"), "failed");
    assert!(rows["last/google.com"]["message"].contains("without a way to sign in"));
    assert_eq!(outcome("pw-last/google.com"), "unlinked");
    assert_eq!(outcome("other/google.com"), "absent");
    assert!(rows["other/google.com"]["message"].contains("no google.com link"));
    assert_eq!(outcome("nobody/google.com"), "absent");
    assert_eq!(outcome("not-found/google.com"), "absent");
    assert_eq!(outcome("bad/google.com"), "failed");
    assert_eq!(rows["bad/google.com"]["vendor_code"], "INVALID_ARGUMENT");
    assert_eq!(outcome("gone-later/google.com"), "failed");
    assert!(rows["gone-later/google.com"]["message"].contains("deleted between"));
    assert_eq!(outcome("x/password"), "invalid");
    assert_eq!(outcome("x/phone"), "invalid");
    // Updates went only to the rows the lookup cleared.
    let updates: Vec<Value> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with(":update"))
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["localId"].clone())
        .collect();
    let mut updates: Vec<&str> = updates.iter().map(|v| v.as_str().unwrap()).collect();
    updates.sort();
    assert_eq!(updates, ["gone-later", "pw-last", "two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_that_still_lists_the_provider_halts_and_the_row_stays_pending() {
    let server = MockServer::start().await;
    let mut script = Script::new(&[("stuck", &["google.com", "apple.com"])]);
    script.fixed_update = vec![(
        "stuck",
        ResponseTemplate::new(200).set_body_json(json!({
            "kind": "identitytoolkit#SetAccountInfoResponse", "localId": "stuck",
            "providerUserInfo": [{"providerId": "google.com", "rawId": "g"}]
        })),
    )];
    mount(&server, script).await;
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), &[("stuck", "google.com")]);
    let job = job(dir.path(), &server.uri(), Auth::Static, "");
    let run = unlinker_async(run_args(&job, &[]), vec![]).await;
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("still lists google.com"),
        "{}",
        run.stderr
    );
    let rows = report(dir.path());
    assert!(!rows.contains_key("stuck/google.com"), "{rows:?}");
}

/// The token endpoint: checks the grant and the assertion, hands out T1, T2, ...
struct Tokens {
    calls: Arc<AtomicU32>,
    assertions: Arc<Mutex<Vec<String>>>,
    expires_in: u64,
}

impl Respond for Tokens {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let form = decode_pairs(std::str::from_utf8(&req.body).unwrap());
        let get = |name: &str| {
            form.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            get("grant_type"),
            "urn:ietf:params:oauth:grant-type:jwt-bearer"
        );
        self.assertions.lock().unwrap().push(get("assertion"));
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200).set_body_json(json!({
            "access_token": format!("ya29.test-token-{n}"), "expires_in": self.expires_in,
            "token_type": "Bearer"
        }))
    }
}

/// Verify an RS256 JWT with the test public key, independently of the product: OpenSSL when
/// it is installed, else the jsonwebtoken crate. Returns the claims.
fn verify_jwt(jwt: &str) -> Value {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let header: Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], "kid-0001-test");
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "input", &format!("{}.{}", parts[0], parts[1]));
    let sig = dir.path().join("sig");
    std::fs::write(&sig, b64.decode(parts[2]).unwrap()).unwrap();
    let openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(fixture(TEST_PUBLIC_KEY))
        .arg("-signature")
        .arg(&sig)
        .arg(&input)
        .output();
    match openssl {
        Ok(out) => assert!(
            out.status.success(),
            "openssl rejects the assertion: {}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(_) => {
            let key = jsonwebtoken::DecodingKey::from_rsa_pem(
                &std::fs::read(fixture(TEST_PUBLIC_KEY)).unwrap(),
            )
            .unwrap();
            let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            v.validate_aud = false;
            jsonwebtoken::decode::<Value>(jwt, &key, &v).expect("a valid RS256 signature");
        }
    }
    serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_token_is_fetched_once_shared_and_refreshed_after_a_401() {
    let server = MockServer::start().await;
    let calls = Arc::new(AtomicU32::new(0));
    let assertions = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(Tokens {
            calls: calls.clone(),
            assertions: assertions.clone(),
            expires_in: 3600,
        })
        .mount(&server)
        .await;
    let script = Script::new(&[
        ("a", &["google.com", "apple.com"]),
        ("b", &["google.com", "apple.com"]),
        ("c", &["google.com", "apple.com"]),
    ]);
    // The first token is refused once it has been used for one row: the runner must fetch a
    // second one (with a new assertion) and carry on.
    *script.accepted.lock().unwrap() = vec!["ya29.test-token-1".into()];
    let accepted = Arc::new(script);
    let refuse_after = Arc::new(AtomicU32::new(0));
    struct Shared(Arc<Script>, Arc<AtomicU32>);
    impl Respond for Shared {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            if self.1.fetch_add(1, Ordering::SeqCst) == 2 {
                *self.0.accepted.lock().unwrap() = vec!["ya29.test-token-2".into()];
            }
            self.0.respond(req)
        }
    }
    Mock::given(method("POST"))
        .and(wiremock::matchers::path_regex(
            "^/v1/projects/demo-p/accounts:",
        ))
        .respond_with(Shared(accepted, refuse_after))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    input(
        dir.path(),
        &[
            ("a", "google.com"),
            ("b", "google.com"),
            ("c", "google.com"),
        ],
    );
    let key = key_file(dir.path(), &format!("{}/token", server.uri()));
    let job = job(dir.path(), &server.uri(), Auth::Account(&key), "");
    let run = unlinker_async(run_args(&job, &[]), vec![]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows = report(dir.path());
    for uid in ["a", "b", "c"] {
        assert_eq!(rows[&format!("{uid}/google.com")]["outcome"], "unlinked");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one fetch, one refresh");
    let assertions = assertions.lock().unwrap().clone();
    // Each fetch signs anew (equal bytes within one second: RS256 is deterministic and `iat`
    // counts seconds; the unit tests show a later `iat` signs differently).
    assert_eq!(assertions.len(), 2);
    for jwt in &assertions {
        let claims = verify_jwt(jwt);
        assert_eq!(claims["iss"], EMAIL);
        assert_eq!(claims["aud"], format!("{}/token", server.uri()));
        assert_eq!(
            claims["scope"],
            "https://www.googleapis.com/auth/identitytoolkit"
        );
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            3600
        );
    }
    let text = std::fs::read_to_string(dir.path().join("report.csv")).unwrap() + &run.stderr;
    assert!(!text.contains("ya29.test-token"), "{text}");
    assert!(!text.contains("PRIVATE KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refused_again_after_refreshing_halts_and_never_shows_the_token() {
    let server = MockServer::start().await;
    let calls = Arc::new(AtomicU32::new(0));
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(Tokens {
            calls: calls.clone(),
            assertions: Arc::default(),
            expires_in: 3600,
        })
        .mount(&server)
        .await;
    // Every call is refused, with the token echoed in the message.
    struct Echo;
    impl Respond for Echo {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            let auth = req.headers.get("authorization").unwrap().to_str().unwrap();
            google_error(401, &format!("token {auth} is not valid"))
        }
    }
    Mock::given(method("POST"))
        .and(wiremock::matchers::path_regex("^/v1/projects/"))
        .respond_with(Echo)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), &[("a", "google.com")]);
    let key = key_file(dir.path(), &format!("{}/token", server.uri()));
    let job = job(dir.path(), &server.uri(), Auth::Account(&key), "");
    let run = unlinker_async(run_args(&job, &[]), vec![]).await;
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("refused again after refreshing"),
        "{}",
        run.stderr
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(!run.stderr.contains("ya29.test-token"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_token_is_refreshed_before_it_expires() {
    let sim = Sim::start(&[
        "--firebase-token-ttl",
        "1",
        "--firebase-public-key",
        fixture(TEST_PUBLIC_KEY).to_str().unwrap(),
        "--all-linked",
    ]);
    let dir = tempfile::tempdir().unwrap();
    // 8 calls at 2 per second take at least 3.5 s: a 1 s token must be fetched again.
    input(
        dir.path(),
        &[
            ("a", "google.com"),
            ("b", "google.com"),
            ("c", "google.com"),
            ("d", "google.com"),
        ],
    );
    let key = key_file(dir.path(), &sim.url("/token"));
    let job = job(dir.path(), &sim.url, Auth::Account(&key), "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("rate = 1000\nburst = 1000", "rate = 2\nburst = 1");
    std::fs::write(&job, text).unwrap();
    let run = unlinker_async(run_args(&job, &[]), vec![]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(sim.vendor_count("firebase", "token_calls") >= 2);
    assert_eq!(sim.vendor_count("firebase", "unauthorized"), 0);
    assert_eq!(sim.vendor_count("firebase", "removed"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_checks_the_assertion_signature() {
    // The simulator is given another public key: the signature does not verify.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.pub.pem");
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(dir.path().join("other.pem"))
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(dir.path().join("other.pem"))
            .arg("-out")
            .arg(&other)
            .status()
            .is_ok_and(|s| s.success());
    if !made {
        eprintln!("note: openssl is not installed; the wrong-key check is skipped");
        return;
    }
    let sim = Sim::start(&[
        "--firebase-public-key",
        other.to_str().unwrap(),
        "--all-linked",
    ]);
    input(dir.path(), &[("a", "google.com")]);
    let key = key_file(dir.path(), &sim.url("/token"));
    let job = job(dir.path(), &sim.url, Auth::Account(&key), "");
    let run = unlinker_async(run_args(&job, &[]), vec![]).await;
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("Invalid JWT Signature"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("BEGIN PRIVATE KEY"));
    assert_eq!(sim.vendor_count("firebase", "removed"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_and_all_linked_on_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let seed = write(
        dir.path(),
        "seed.csv",
        "vendor,uid,provider_id\nfirebase,s1,google.com\nfirebase,s1,apple.com\n\
         firebase,s2,google.com\nfirebase,s3,github.com\nfirebase,s3,password\n",
    );
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);
    input(
        dir.path(),
        &[
            ("s1", "google.com"),
            ("s2", "google.com"),
            ("s3", "github.com"),
            ("s4", "google.com"),
        ],
    );
    let token_job = job(dir.path(), &sim.url, Auth::Static, "");
    let text = std::fs::read_to_string(&token_job)
        .unwrap()
        .replace(STATIC_TOKEN, "owner");
    std::fs::write(&token_job, text).unwrap();
    let run = unlinker_async(run_args(&token_job, &[]), vec![]).await;
    let rows = report(dir.path());
    let outcome = |key: &str| rows[key]["outcome"].clone();
    assert_eq!(outcome("s1/google.com"), "unlinked", "{}", run.stderr);
    assert_eq!(outcome("s2/google.com"), "failed");
    assert_eq!(outcome("s3/github.com"), "unlinked");
    assert_eq!(outcome("s4/google.com"), "absent");
    assert_eq!(
        sim.links("firebase"),
        ["s1/apple.com", "s2/google.com", "s3/password"]
    );

    // With --all-linked every user has a password and the usual providers.
    let all = Sim::start(&["--all-linked"]);
    let dir = tempfile::tempdir().unwrap();
    input(
        dir.path(),
        &[("any", "google.com"), ("any", "oidc.corp"), ("other", "*")],
    );
    let job = job(dir.path(), &all.url, Auth::Static, "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace(STATIC_TOKEN, "owner");
    std::fs::write(&job, text).unwrap();
    let run = unlinker_async(run_args(&job, &[]), vec![]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows = report(dir.path());
    assert_eq!(rows["any/google.com"]["outcome"], "unlinked");
    assert_eq!(rows["any/oidc.corp"]["outcome"], "absent");
    let wild = &rows["other/*"];
    assert_eq!(wild["outcome"], "unlinked");
    assert!(wild["message"].contains("removed 4:"), "{wild:?}");
    assert!(!wild["message"].contains("password"), "{wild:?}");
}

#[test]
fn token_uri_must_be_https_or_loopback_and_the_key_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), &[("a", "google.com")]);
    let key = key_file(dir.path(), "http://oauth2.example.com/token");
    let job = job(
        dir.path(),
        "https://identitytoolkit.googleapis.com",
        Auth::Account(&key),
        "",
    );
    let run = unlinker(&["run", job.to_str().unwrap(), "--no-progress"], &[]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("plain http"), "{}", run.stderr);
    assert!(run.stderr.contains("token_uri"), "{}", run.stderr);
    assert!(run.stderr.contains("service_account"), "{}", run.stderr);
    let body: String = TEST_KEY.lines().nth(1).unwrap().to_string();
    assert!(!run.stderr.contains(&body), "{}", run.stderr);
    assert!(!run.stderr.contains("PRIVATE KEY"), "{}", run.stderr);
}

/// Half of all answers lost after the simulator acted: a lost lookup is simply asked again (it
/// changed nothing), a lost update is settled by a lookup, as every vendor's lost answer is:
/// the provider gone means `absent` "this run most likely removed it" (counted apart), still
/// there means the update is sent again. Every link is removed exactly once, and every row ends
/// `unlinked` or `absent` after a lost answer, never a plain `absent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_never_remove_twice_or_claim_a_false_outcome() {
    let sim = Sim::start(&["--all-linked", "--drop-rate", "0.5", "--fault-seed", "11"]);
    let dir = tempfile::tempdir().unwrap();
    let uids: Vec<String> = (0..16).map(|i| format!("u{i}")).collect();
    let rows: Vec<(&str, &str)> = uids.iter().map(|u| (u.as_str(), "google.com")).collect();
    input(dir.path(), &rows);
    let job = job(dir.path(), &sim.url, Auth::Static, "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace(STATIC_TOKEN, "owner")
        .replace("timeout = \"5s\"", "timeout = \"5s\"\nmax_attempts = 12");
    std::fs::write(&job, text).unwrap();
    let run = unlinker_async(run_args(&job, &[]), vec![]).await;
    let report = report(dir.path());
    assert_eq!(report.len(), 16, "{}", run.stderr);
    let mut after_lost = 0;
    for uid in &uids {
        let key = format!("{uid}/google.com");
        let row = &report[&key];
        match row["outcome"].as_str() {
            "unlinked" => {}
            "absent" => {
                assert!(row["message"].contains("most likely removed it"), "{row:?}");
                // The update was sent, then the lookup settled it: no update after that.
                assert!(row["request"].contains("accounts:update"), "{row:?}");
                after_lost += 1;
            }
            other => panic!("{key}: {other}: {row:?}"),
        }
        assert_eq!(sim.key_count("firebase", &key, "removed"), 1, "{key}");
    }
    assert!(sim.vendor_count("firebase", "dropped") > 0);
    assert!(
        run.stderr
            .contains(&format!("{after_lost} rows absent after a lost answer"))
            || after_lost <= 1,
        "{}",
        run.stderr
    );
}

/// `--dry-run --check` sends only lookups, and reports what the real run would do: the guard's
/// refusal as `failed`, a provider that is not linked as `absent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_check_only_looks_up_and_shows_the_guard() {
    let dir = tempfile::tempdir().unwrap();
    let seed = write(
        dir.path(),
        "seed.csv",
        "vendor,uid,provider_id\nfirebase,a,google.com\nfirebase,a,apple.com\n\
         firebase,b,google.com\n",
    );
    let sim = Sim::start(&["--seed", seed.to_str().unwrap()]);
    input(
        dir.path(),
        &[
            ("a", "google.com"),
            ("a", "github.com"),
            ("b", "google.com"),
            ("a", "*"),
        ],
    );
    let job = job(dir.path(), &sim.url, Auth::Static, "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace(STATIC_TOKEN, "owner");
    std::fs::write(&job, text).unwrap();
    let run = unlinker_async(run_args(&job, &["--dry-run", "--check"]), vec![]).await;
    let dry = dir.path().join("report.dry-run.csv");
    let rows: std::collections::BTreeMap<String, Row> = read_report(&dry)
        .into_iter()
        .map(|r| (r["key"].clone(), r))
        .collect();
    assert_eq!(rows["a/google.com"]["outcome"], "dry_run", "{}", run.stderr);
    assert_eq!(rows["a/github.com"]["outcome"], "absent");
    assert_eq!(rows["b/google.com"]["outcome"], "failed");
    assert!(rows["b/google.com"]["message"].contains("without a way to sign in"));
    // Removing both of a's providers would lock it out: the wildcard is refused as a whole.
    assert_eq!(rows["a/*"]["outcome"], "failed");
    assert_eq!(sim.vendor_count("firebase", "unlink_calls"), 0);
    assert_eq!(sim.vendor_count("firebase", "reads"), 4);
    assert_eq!(sim.links("firebase").len(), 3);
}

/// A token endpoint that refuses the assertion and quotes it back: the run halts with the
/// endpoint's reason, and the assertion (a credential for its hour) is not in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_assertion_halts_without_showing_it() {
    let server = MockServer::start().await;
    let seen = Arc::new(Mutex::new(String::new()));
    struct Refuse(Arc<Mutex<String>>);
    impl Respond for Refuse {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            let form = decode_pairs(std::str::from_utf8(&req.body).unwrap());
            let jwt = form
                .iter()
                .find(|(n, _)| n == "assertion")
                .unwrap()
                .1
                .clone();
            *self.0.lock().unwrap() = jwt.clone();
            ResponseTemplate::new(400).set_body_json(json!({
                "error": "invalid_grant",
                "error_description": format!("Invalid JWT Signature: {jwt}")
            }))
        }
    }
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(Refuse(seen.clone()))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), &[("a", "google.com")]);
    let key = key_file(dir.path(), &format!("{}/token", server.uri()));
    let job = job(dir.path(), &server.uri(), Auth::Account(&key), "");
    let run = unlinker_async(run_args(&job, &[]), vec![]).await;
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("Invalid JWT Signature"),
        "{}",
        run.stderr
    );
    let jwt = seen.lock().unwrap().clone();
    assert!(jwt.len() > 100);
    let signature = jwt.rsplit('.').next().unwrap();
    assert!(!run.stderr.contains(signature), "{}", run.stderr);
    assert_eq!(
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() != "/token")
            .count(),
        0
    );
}
