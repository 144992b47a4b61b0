//! One Firebase scenario, run by the real `unlinker` against Google's own Auth emulator and
//! against `unlinker-sim`: the same users seeded with `accounts:batchCreate`, the same rows, the
//! same expected outcomes, and every user read back with `accounts:lookup` afterwards. So the
//! simulator's Firebase is held to the emulator's behaviour, and the adapter to both.
//!
//! The emulator is npm `firebase-tools`, pinned in tests/emulator/ and installed there on first
//! use (see `support::emulator`). It answers 200 to an update naming a provider that is not
//! linked and removes a user's last sign-in method when asked, so this test fails if the adapter's
//! lookup or its last-sign-in-method guard goes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

use crate::support::emulator::{Emulator, OWNER_TOKEN, PROJECT, admin_call};
use crate::support::*;

/// A user as seeded: uid, linked providers (`providerId`), password, phone number.
struct Seed {
    uid: &'static str,
    providers: &'static [&'static str],
    password: bool,
    phone: bool,
}

const SEEDS: &[Seed] = &[
    Seed {
        uid: "two-providers",
        providers: &["google.com", "facebook.com"],
        password: false,
        phone: false,
    },
    Seed {
        uid: "one-provider",
        providers: &["google.com"],
        password: false,
        phone: false,
    },
    Seed {
        uid: "password-plus",
        providers: &["github.com"],
        password: true,
        phone: false,
    },
    Seed {
        uid: "phone-plus",
        providers: &["apple.com"],
        password: false,
        phone: true,
    },
    Seed {
        uid: "custom-oidc",
        providers: &["oidc.corp", "google.com"],
        password: false,
        phone: false,
    },
    // Wildcard rows (`provider_id = "*"`).
    Seed {
        uid: "wild-password",
        providers: &["google.com", "facebook.com"],
        password: true,
        phone: false,
    },
    Seed {
        uid: "wild-federated-only",
        providers: &["google.com", "apple.com"],
        password: false,
        phone: false,
    },
    Seed {
        uid: "wild-phone",
        providers: &["github.com"],
        password: false,
        phone: true,
    },
    Seed {
        uid: "wild-nothing-linked",
        providers: &[],
        password: true,
        phone: false,
    },
];

/// (uid, provider_id, outcome) of each input row.
const ROWS: &[(&str, &str, &str)] = &[
    ("two-providers", "google.com", "unlinked"),
    // Linked elsewhere, not to this provider: the emulator would answer an update with 200.
    ("two-providers", "twitter.com", "absent"),
    // The last way to sign in: the guard refuses.
    ("one-provider", "google.com", "failed"),
    ("password-plus", "github.com", "unlinked"),
    ("phone-plus", "apple.com", "unlinked"),
    ("custom-oidc", "oidc.corp", "unlinked"),
    ("nobody", "google.com", "absent"),
    // Every federated provider goes; the password stays.
    ("wild-password", "*", "unlinked"),
    // Removing every provider would lock the user out: nothing is removed.
    ("wild-federated-only", "*", "failed"),
    // The phone number is a sign-in method, never listed as a link.
    ("wild-phone", "*", "unlinked"),
    ("wild-nothing-linked", "*", "absent"),
    ("wild-nobody", "*", "absent"),
];

/// A user afterwards: sorted `providerUserInfo` ids, password, phone.
type After = (Vec<&'static str>, bool, bool);

/// What each user looks like afterwards: sorted `providerUserInfo` ids, password, phone;
/// `None` for a user that does not exist.
fn expected_after() -> BTreeMap<&'static str, Option<After>> {
    BTreeMap::from([
        ("two-providers", Some((vec!["facebook.com"], false, false))),
        ("one-provider", Some((vec!["google.com"], false, false))),
        ("password-plus", Some((vec![], true, false))),
        // The emulator lists a phone number as a `phone` entry too.
        ("phone-plus", Some((vec!["phone"], false, true))),
        ("custom-oidc", Some((vec!["google.com"], false, false))),
        ("nobody", None),
        ("wild-password", Some((vec![], true, false))),
        (
            "wild-federated-only",
            Some((vec!["apple.com", "google.com"], false, false)),
        ),
        ("wild-phone", Some((vec!["phone"], false, true))),
        ("wild-nothing-linked", Some((vec![], true, false))),
        ("wild-nobody", None),
    ])
}

fn seed_users() -> Value {
    let users: Vec<Value> = SEEDS
        .iter()
        .map(|s| {
            // rawIds must be unique per provider across users (the emulator checks).
            let info: Vec<Value> = s
                .providers
                .iter()
                .map(|p| json!({"providerId": p, "rawId": format!("{p}-{}", s.uid)}))
                .collect();
            let mut user = json!({"localId": s.uid, "providerUserInfo": info});
            if s.password {
                user["passwordHash"] = json!("aGFzaA==");
            }
            if s.phone {
                user["phoneNumber"] = json!("+15555550100");
            }
            user
        })
        .collect();
    json!({ "users": users })
}

fn firebase_job(dir: &Path, base_url: &str, input: &str) -> std::path::PathBuf {
    write(
        dir,
        "job.toml",
        &format!(
            r#"
name = "fb"
[input]
path = "{input}"
[output]
report = "report.csv"
[vendors.firebase]
type = "firebase"
base_url = "{base_url}"
project_id = "{PROJECT}"
token = "{OWNER_TOKEN}"
rate = 1000
burst = 1000
concurrency = 4
[retry]
base_delay = "10ms"
max_delay = "100ms"
timeout = "10s"
"#
        ),
    )
}

/// A lookup's users by uid: sorted provider ids, password, phone.
fn users_of(answer: &Value) -> BTreeMap<String, (Vec<String>, bool, bool)> {
    let mut out = BTreeMap::new();
    for user in answer["users"].as_array().into_iter().flatten() {
        let mut providers: Vec<String> = user["providerUserInfo"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["providerId"].as_str().unwrap().to_string())
            .collect();
        providers.sort();
        let set = |name: &str| user[name].as_str().is_some_and(|v| !v.is_empty());
        out.insert(
            user["localId"].as_str().unwrap().to_string(),
            (providers, set("passwordHash"), set("phoneNumber")),
        );
    }
    out
}

/// Seed, run, check the report and read every user back. `target` names the server in
/// messages.
async fn scenario(target: &str, base_url: &str) {
    let created = admin_call(base_url, "batchCreate", seed_users()).await;
    assert_eq!(
        created["error"],
        json!([]),
        "{target}: batchCreate: {created}"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("uid,provider_id\n");
    for (uid, provider, _) in ROWS {
        input.push_str(&format!("{uid},{provider}\n"));
    }
    write(dir.path(), "in.csv", &input);
    let job = firebase_job(dir.path(), base_url, "in.csv");
    let run = unlinker_async(run_args(&job, &[]), vec![]).await;
    let rows = read_report(&dir.path().join("report.csv"));
    let by_key: BTreeMap<&str, &Row> = rows.iter().map(|r| (r["key"].as_str(), r)).collect();
    for (uid, provider, outcome) in ROWS {
        let key = format!("{uid}/{provider}");
        let row = by_key.get(key.as_str()).unwrap_or_else(|| {
            panic!(
                "{target}: no report row for {key}: {rows:?}; exit {}: {}",
                run.code, run.stderr
            )
        });
        assert_eq!(row["outcome"], *outcome, "{target}: {key}: {row:?}");
    }
    for key in ["one-provider/google.com", "wild-federated-only/*"] {
        assert!(
            by_key[key]["message"].contains("without a way to sign in"),
            "{target}: {:?}",
            by_key[key]
        );
    }
    let wild = &by_key["wild-password/*"]["message"];
    assert!(
        wild.contains("google.com") && wild.contains("facebook.com"),
        "{target}: {wild}"
    );
    // A failed row (the guard) makes the run's exit code say so.
    assert_ne!(run.code, 0, "{target}: {}", run.stderr);
    assert_eq!(rows.len(), ROWS.len(), "{target}");

    let expected = expected_after();
    let uids: Vec<&str> = expected.keys().copied().collect();
    let after = users_of(&admin_call(base_url, "lookup", json!({ "localId": uids })).await);
    for (uid, want) in &expected {
        let got = after.get(*uid);
        match want {
            None => assert!(got.is_none(), "{target}: {uid} should not exist: {got:?}"),
            Some((providers, password, phone)) => {
                let got = got.unwrap_or_else(|| panic!("{target}: {uid} is gone"));
                assert_eq!(
                    (&got.0, got.1, got.2),
                    (
                        &providers.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                        *password,
                        *phone
                    ),
                    "{target}: {uid} afterwards (providers, password, phone)"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firebase_emulator_and_simulator_agree_on_every_outcome() {
    let sim = Sim::start(&[]);
    scenario(
        "unlinker-sim",
        &format!("{}/identitytoolkit.googleapis.com", sim.url),
    )
    .await;
    // Only the rows the lookup found safe to change were sent as updates.
    // (4 explicit rows, 2 links of wild-password, 1 of wild-phone.)
    assert_eq!(sim.vendor_count("firebase", "unlink_calls"), 7);

    let started = Instant::now();
    let emulator = Emulator::start().await;
    eprintln!("firebase emulator ready after {:?}", started.elapsed());
    scenario("firebase emulator", &emulator.base_url()).await;
    drop(emulator);
    eprintln!(
        "firebase emulator started, used and stopped in {:?}",
        started.elapsed()
    );
}
