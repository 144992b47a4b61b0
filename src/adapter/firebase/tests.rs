use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::account::{
    Claims, DEFAULT_TOKEN_LIFETIME, DEFAULT_TOKEN_URI, GRANT_TYPE, ServiceAccount, now_secs,
};
use super::*;

/// A 2048-bit RSA key made for these tests only (`openssl genpkey -algorithm RSA`).
const TEST_KEY: &str = include_str!("../../../tests/fixtures/firebase-test-key.pem");
const EMAIL: &str = "unlinker-test@demo-unlinker.iam.gserviceaccount.com";

fn key_json(token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "demo-unlinker",
        "private_key_id": "test-key-id-0001",
        "private_key": TEST_KEY,
        "client_email": EMAIL,
        "token_uri": token_uri,
    })
    .to_string()
}

fn adapter(extra: &str) -> Firebase {
    let table: toml::Table = toml::from_str(&format!("project_id = \"demo-p\"\n{extra}")).unwrap();
    Firebase::from_config(table, None).unwrap().0
}

fn with_account(extra: &str) -> Firebase {
    let mut table: toml::Table =
        toml::from_str(&format!("project_id = \"demo-p\"\n{extra}")).unwrap();
    table.insert(
        "service_account".into(),
        toml::Value::String(key_json("https://oauth2.googleapis.com/token")),
    );
    Firebase::from_config(table, None).unwrap().0
}

fn row(a: &Firebase, uid: &str, provider: &str) -> Prepared {
    a.prepare(&Fields::from_pairs([
        ("uid", uid),
        ("provider_id", provider),
    ]))
    .unwrap()
}

#[test]
fn builds_lookup_and_update_with_bearer() {
    let a = adapter("token = \"t0k\"");
    let r = row(&a, "u 1/é", "google.com");
    assert_eq!(r.key.0, "u 1/é/google.com");
    assert_eq!(a.steps(&r), 2);
    let lookup = a.build(&r, 0, None);
    assert_eq!(lookup.method, Method::POST);
    assert_eq!(
        lookup.url,
        "https://identitytoolkit.googleapis.com/v1/projects/demo-p/accounts:lookup"
    );
    assert_eq!(lookup.json.as_deref(), Some(r#"{"localId":["u 1/é"]}"#));
    assert_eq!(lookup.header_value("authorization"), Some("Bearer t0k"));
    assert!(lookup.form.is_empty());
    assert_eq!(a.read(&r, None), Some(lookup.clone()));
    let update = a.build(&r, 1, None);
    assert_eq!(
        update.url,
        "https://identitytoolkit.googleapis.com/v1/projects/demo-p/accounts:update"
    );
    assert_eq!(
        update.json.as_deref(),
        Some(r#"{"deleteProvider":["google.com"],"localId":"u 1/é"}"#)
    );
    assert!(!update.describe().contains("t0k"));
    assert!(
        update
            .describe()
            .ends_with(r#"accounts:update {"deleteProvider":["google.com"],"localId":"u 1/é"}"#)
    );
    // The emulator's base URL carries a path prefix.
    let table: toml::Table = toml::from_str("project_id = \"demo-p\"\ntoken = \"owner\"").unwrap();
    let base = Url::parse("http://127.0.0.1:9099/identitytoolkit.googleapis.com").unwrap();
    let (emu, url) = Firebase::from_config(table, Some(base.clone())).unwrap();
    assert_eq!(url, base);
    assert_eq!(
        emu.build(&r, 0, None).url,
        "http://127.0.0.1:9099/identitytoolkit.googleapis.com/v1/projects/demo-p/accounts:lookup"
    );
    assert!(!emu.fetches_token() && emu.token_request().is_none());
}

#[test]
fn validates_rows() {
    let a = adapter("token = \"t\"");
    let bad = |pairs: &[(&str, &str)]| {
        a.prepare(&Fields::from_pairs(pairs.iter().copied()))
            .unwrap_err()
    };
    assert_eq!(bad(&[("provider_id", "google.com")]).field, "uid");
    assert_eq!(bad(&[("uid", "u")]).field, "provider_id");
    let long = "x".repeat(129);
    assert_eq!(
        bad(&[("uid", &long), ("provider_id", "google.com")]).field,
        "uid"
    );
    for provider in [
        "password",
        "phone",
        "google",
        "oidc.",
        "saml.",
        "GOOGLE.COM",
        "**",
    ] {
        let e = bad(&[("uid", "u"), ("provider_id", provider)]);
        assert_eq!(e.field, "provider_id", "{provider}");
        assert_eq!(e.key.unwrap().0, format!("u/{provider}"));
    }
    assert!(
        bad(&[("uid", "u"), ("provider_id", "password")])
            .rule
            .contains("sign-in method")
    );
    for provider in [
        "google.com",
        "apple.com",
        "oidc.corp",
        "saml.okta",
        "gc.apple.com",
    ] {
        assert_eq!(row(&a, "u", provider).key.0, format!("u/{provider}"));
    }
    assert_eq!(
        row(&a, &"x".repeat(128), "github.com")
            .params
            .get("uid")
            .len(),
        128
    );
}

const JSON: &[(&str, &str)] = &[("content-type", "application/json; charset=UTF-8")];
const NO: &[(&str, &str)] = &[];
const HTML: &str = "<!DOCTYPE html><html><body>Not Found</body></html>";

type Row<'a> = (u16, &'a [(&'static str, &'a str)], &'a str, &'a str);

/// A table row whose body is built at run time.
type OwnedRow = (
    u16,
    &'static [(&'static str, &'static str)],
    String,
    &'static str,
);

enum Call {
    Step(u8),
    Read,
}

fn check_table(a: &Firebase, call: Call, table: &[Row<'_>]) {
    let r = row(a, "u1", "google.com");
    for (status, headers, body, want) in table {
        let answer = headers.iter().fold(
            WireAnswer::new(*status, body.to_string()),
            |ans, (name, value)| ans.with_header(name, value),
        );
        let v = match call {
            Call::Step(step) => a.classify(&r, step, &answer),
            Call::Read => a.classify_read(&r, &answer),
        };
        assert_eq!(v.class.name(), *want, "{status} {body} → {:?}", v.class);
    }
}

fn error(status: u16, message: &str) -> String {
    json!({"error": {"code": status, "message": message, "errors": [{"message": message, "reason": "invalid", "domain": "global"}]}}).to_string()
}

/// The non-200 rows both calls share (docs/vendors.md, Firebase answers); USER_NOT_FOUND is
/// per call.
fn error_rows(token: &str) -> Vec<OwnedRow> {
    let reauth = if token == "account" { "reauth" } else { "halt" };
    vec![
        (400, JSON, error(400, "INVALID_ARGUMENT"), "failed"),
        (400, JSON, error(400, "MISSING_LOCAL_ID"), "failed"),
        (
            400,
            JSON,
            error(400, "INVALID_PROVIDER_ID : Provider ID x"),
            "failed",
        ),
        (400, JSON, error(403, "USER_NOT_FOUND"), "unexpected"),
        (
            400,
            JSON,
            r#"{"error":"USER_NOT_FOUND"}"#.into(),
            "unexpected",
        ),
        (400, NO, HTML.into(), "unexpected"),
        (400, NO, String::new(), "unexpected"),
        (
            401,
            JSON,
            error(401, "Request had invalid authentication credentials."),
            reauth,
        ),
        (401, NO, HTML.into(), reauth),
        (
            403,
            JSON,
            error(403, "The caller does not have permission"),
            "halt",
        ),
        (403, NO, HTML.into(), "halt"),
        (
            429,
            JSON,
            error(429, "QUOTA_EXCEEDED : Exceeded quota"),
            "rate-limit",
        ),
        (429, NO, String::new(), "rate-limit"),
        (500, JSON, error(500, "INTERNAL"), "retry"),
        (503, NO, HTML.into(), "retry"),
        (408, NO, String::new(), "retry"),
        (404, JSON, error(404, "Not Found"), "unexpected"),
        (404, NO, HTML.into(), "unexpected"),
        (302, NO, String::new(), "unexpected"),
        (201, JSON, "{}".into(), "unexpected"),
        (204, NO, String::new(), "unexpected"),
        (418, NO, String::new(), "unexpected"),
    ]
}

fn check_errors(a: &Firebase, step: Option<u8>, token: &str) {
    let rows = error_rows(token);
    let table: Vec<Row<'_>> = rows
        .iter()
        .map(|(s, h, b, w)| (*s, *h, b.as_str(), *w))
        .collect();
    let call = match step {
        Some(s) => Call::Step(s),
        None => Call::Read,
    };
    check_table(a, call, &table);
}

fn user(fields: &str) -> String {
    format!(
        r#"{{"kind":"identitytoolkit#GetAccountInfoResponse","users":[{{"localId":"u1","createdAt":"1","emailVerified":false,"disabled":false{fields}}}]}}"#
    )
}

/// Lookup answers → step 0's class (`unlinked` = linked and safe to remove).
fn lookup_rows() -> Vec<(String, &'static str)> {
    let google = r#"{"providerId":"google.com","rawId":"g1"}"#;
    let facebook = r#"{"providerId":"facebook.com","rawId":"f1"}"#;
    let phone = r#"{"providerId":"phone","rawId":"+1555","phoneNumber":"+1555"}"#;
    vec![
        (
            user(&format!(r#","providerUserInfo":[{google},{facebook}]"#)),
            "unlinked",
        ),
        (
            user(&format!(r#","providerUserInfo":[{facebook}]"#)),
            "absent",
        ),
        (user(r#","providerUserInfo":[]"#), "absent"),
        (user(""), "absent"),
        (
            r#"{"kind":"identitytoolkit#GetAccountInfoResponse"}"#.into(),
            "absent",
        ),
        (
            r#"{"kind":"identitytoolkit#GetAccountInfoResponse","users":[]}"#.into(),
            "absent",
        ),
        // The guard: the provider is the last sign-in method.
        (
            user(&format!(r#","providerUserInfo":[{google}]"#)),
            "failed",
        ),
        (
            user(&format!(
                r#","providerUserInfo":[{google}],"passwordHash":"aGFzaA==""#
            )),
            "unlinked",
        ),
        (
            user(&format!(
                r#","providerUserInfo":[{google}],"passwordHash":"""#
            )),
            "failed",
        ),
        (
            user(&format!(
                r#","providerUserInfo":[{google},{phone}],"phoneNumber":"+1555""#
            )),
            "unlinked",
        ),
        (
            user(&format!(
                r#","providerUserInfo":[{google}],"phoneNumber":"+1555""#
            )),
            "unlinked",
        ),
        (
            user(&format!(
                r#","providerUserInfo":[{google},{{"providerId":"password","rawId":"a@b.c"}}]"#
            )),
            "unlinked",
        ),
        // Not the user asked about, or not a lookup answer at all.
        (
            user(&format!(r#","providerUserInfo":[{google},{facebook}]"#))
                .replace("\"u1\"", "\"u2\""),
            "unexpected",
        ),
        (
            r#"{"users":[{"providerUserInfo":[]}]}"#.into(),
            "unexpected",
        ),
        (
            format!(
                r#"{{"users":[{{"localId":"u1","providerUserInfo":[{google}]}},{{"localId":"u1"}}]}}"#
            ),
            "unexpected",
        ),
        (
            user(r#","providerUserInfo":[{"rawId":"g1"}]"#),
            "unexpected",
        ),
        (
            user(r#","providerUserInfo":{"providerId":"google.com"}"#),
            "unexpected",
        ),
        (r#"{"users":{}}"#.into(), "unexpected"),
        ("{}".into(), "unexpected"),
        ("[]".into(), "unexpected"),
        ("".into(), "unexpected"),
        (HTML.into(), "unexpected"),
        (
            r#"{"kind":"identitytoolkit#SetAccountInfoResponse"}"#.into(),
            "unexpected",
        ),
    ]
}

#[test]
fn lookup_classification_table() {
    let a = adapter("token = \"t\"");
    let rows = lookup_rows();
    let table: Vec<Row<'_>> = rows
        .iter()
        .map(|(b, w)| (200, JSON, b.as_str(), *w))
        .collect();
    check_table(&a, Call::Step(0), &table);
    check_table(
        &a,
        Call::Step(0),
        &[(400, JSON, &error(400, "USER_NOT_FOUND"), "absent")],
    );
    check_errors(&a, Some(0), "static");
    check_errors(&with_account(""), Some(0), "account");
}

#[test]
fn read_is_the_lookup_with_present_for_unlinked() {
    let a = adapter("token = \"t\"");
    let rows = lookup_rows();
    let table: Vec<Row<'_>> = rows
        .iter()
        .map(|(b, w)| {
            (
                200,
                JSON,
                b.as_str(),
                if *w == "unlinked" { "present" } else { *w },
            )
        })
        .collect();
    check_table(&a, Call::Read, &table);
    check_table(
        &a,
        Call::Read,
        &[(400, JSON, &error(400, "USER_NOT_FOUND"), "absent")],
    );
    check_errors(&a, None, "static");
}

#[test]
fn the_guard_says_why_and_can_be_switched_off() {
    let a = adapter("token = \"t\"");
    let r = row(&a, "u1", "google.com");
    let last = user(r#","providerUserInfo":[{"providerId":"google.com","rawId":"g1"}]"#);
    let v = a.classify(&r, 0, &WireAnswer::new(200, last.clone()));
    assert_eq!(v.class, Class::Failed(LAST_METHOD.into()));
    let allowed = adapter("token = \"t\"\nallow_last_sign_in_method = true");
    assert_eq!(
        allowed
            .classify(&r, 0, &WireAnswer::new(200, last.clone()))
            .class,
        Class::Unlinked
    );
    assert_eq!(
        allowed.classify_read(&r, &WireAnswer::new(200, last)).class,
        Class::Present
    );
}

#[test]
fn update_classification_table() {
    let a = adapter("token = \"t\"");
    let set = |info: &str| {
        format!(
            r#"{{"kind":"identitytoolkit#SetAccountInfoResponse","localId":"u1","emailVerified":false{info}}}"#
        )
    };
    let rows = [
        (
            set(r#","providerUserInfo":[{"providerId":"facebook.com","rawId":"f1"}]"#),
            "unlinked",
        ),
        (set(r#","providerUserInfo":[]"#), "unlinked"),
        (set(""), "unlinked"),
        (
            set(r#","providerUserInfo":[{"providerId":"google.com","rawId":"g1"}]"#),
            "unexpected",
        ),
        (set(r#","providerUserInfo":[{"rawId":"g1"}]"#), "unexpected"),
        (set("").replace("\"u1\"", "\"u2\""), "unexpected"),
        (
            r#"{"kind":"identitytoolkit#SetAccountInfoResponse"}"#.into(),
            "unexpected",
        ),
        ("{}".into(), "unexpected"),
        ("".into(), "unexpected"),
        (HTML.into(), "unexpected"),
    ];
    let table: Vec<Row<'_>> = rows
        .iter()
        .map(|(b, w)| (200, JSON, b.as_str(), *w))
        .collect();
    check_table(&a, Call::Step(1), &table);
    // The lookup found the user a moment ago: deleted in between.
    check_table(
        &a,
        Call::Step(1),
        &[(400, JSON, &error(400, "USER_NOT_FOUND"), "failed")],
    );
    check_errors(&a, Some(1), "static");
    check_errors(&with_account(""), Some(1), "account");
}

#[test]
fn verdicts_carry_the_first_word_as_code() {
    let a = adapter("token = \"t\"");
    let r = row(&a, "u1", "google.com");
    let v = a.classify(
        &r,
        1,
        &WireAnswer::new(400, error(400, "INVALID_PROVIDER_ID : bad")),
    );
    assert_eq!(v.class, Class::Failed("INVALID_PROVIDER_ID : bad".into()));
    assert_eq!(v.vendor_code.as_deref(), Some("INVALID_PROVIDER_ID"));
    let v = a.classify(&r, 0, &WireAnswer::new(400, error(400, "USER_NOT_FOUND")));
    assert_eq!(v.vendor_code.as_deref(), Some("USER_NOT_FOUND"));
    let limited = WireAnswer::new(429, "").with_header("retry-after", "4");
    assert_eq!(
        a.classify(&r, 0, &limited).class,
        Class::RateLimit(Some(Duration::from_secs(4)))
    );
}

/// RS256 (RSASSA-PKCS1-v1_5 with SHA-256) is deterministic, so the assertion's bytes can be
/// compared with a signature made independently: OpenSSL 3 over the same signing input,
/// `printf '%s' "$INPUT" | openssl dgst -sha256 -sign tests/fixtures/firebase-test-key.pem |
/// basenc --base64url` (padding removed).
const OPENSSL_SIGNATURE: &str = "atbISkA2nqiRIcLSeqv0BwJSCHkj1lQ-zAP48_IQQYKZLCk0IPC0mMVEzjbwFx3xeBPK880XFkWPaEsQQXcn4x9BSdGUtntXaqCnraPe_7teLmP5C-_jIOb5XTGWfpr56_8XIvHyWvL20VP7aHm6QFDuv5SYdbnmIWe38jsDFBYToNSNzcvJrWwdDo5i1TqijqX3desytnVSxJGhcxWeMYxX_JQqNVzs16dS_Kd6tPRXAu7cidBMhcBM7eB_E2_miJdQ3kBkrxxD5gm0k60R93NEL1icYsEGffBjl0p3HDmNj6j2jZokb7EVVP4GAE1PCMDUmZv6reeqB16TGxrmXg";

#[test]
fn jwt_assertion_matches_an_independent_signature() {
    let account = ServiceAccount::parse(&key_json("https://oauth2.googleapis.com/token")).unwrap();
    let jwt = account.assertion(1_700_000_000).unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode = |part: &str| String::from_utf8(URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap();
    assert_eq!(
        decode(parts[0]),
        r#"{"typ":"JWT","alg":"RS256","kid":"test-key-id-0001"}"#
    );
    assert_eq!(
        decode(parts[1]),
        format!(
            r#"{{"iss":"{EMAIL}","scope":"https://www.googleapis.com/auth/identitytoolkit","aud":"https://oauth2.googleapis.com/token","iat":1700000000,"exp":1700003600}}"#
        )
    );
    assert_eq!(parts[2], OPENSSL_SIGNATURE);
    // A different time signs differently.
    assert_ne!(account.assertion(1_700_000_001).unwrap(), jwt);
}

#[test]
fn token_request_is_signed_anew_each_time() {
    let a = with_account("");
    assert!(a.fetches_token());
    let req = a.token_request().unwrap();
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.url, "https://oauth2.googleapis.com/token");
    assert_eq!(req.form_value("grant_type"), Some(GRANT_TYPE));
    let assertion = req.form_value("assertion").unwrap();
    assert_eq!(assertion.split('.').count(), 3);
    assert!(!req.describe().contains(assertion));
    assert!(req.describe().contains("assertion=[redacted]"));
    let claims = URL_SAFE_NO_PAD
        .decode(assertion.split('.').nth(1).unwrap())
        .unwrap();
    let claims: Claims = serde_json::from_slice(&claims).unwrap();
    assert_eq!(claims.iss, EMAIL);
    assert_eq!(claims.exp - claims.iat, 3600);
    assert!(claims.iat + 60 >= now_secs() && claims.iat <= now_secs());
}

#[test]
fn token_answers() {
    let a = with_account("");
    let parse = |status: u16, body: &str| a.parse_token(&WireAnswer::new(status, body.to_string()));
    assert_eq!(
        parse(
            200,
            r#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#
        )
        .unwrap(),
        ("ya29.x".to_string(), Duration::from_secs(3599))
    );
    assert_eq!(
        parse(200, r#"{"access_token":"ya29.x"}"#).unwrap().1,
        DEFAULT_TOKEN_LIFETIME
    );
    let refused = parse(
        400,
        r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
    );
    assert!(refused.unwrap_err().contains("Invalid JWT Signature."));
    for bad in [
        r#"{"access_token":""}"#,
        r#"{"expires_in":3600}"#,
        r#"{"access_token":"x","expires_in":0}"#,
        "<html>",
        "",
    ] {
        assert!(parse(200, bad).is_err(), "{bad}");
    }
}

#[test]
fn config_errors_name_the_key_and_never_quote_the_key_file() {
    let err = |src: &str, account: Option<String>| {
        let mut table: toml::Table = toml::from_str(src).unwrap();
        if let Some(a) = account {
            table.insert("service_account".into(), toml::Value::String(a));
        }
        Firebase::from_config(table, None).unwrap_err()
    };
    assert_eq!(err("token = \"t\"", None).key, "project_id");
    assert_eq!(err("project_id = \"p\"", None).key, "token");
    assert_eq!(
        err("project_id = \"p/../x\"\ntoken = \"t\"", None).key,
        "project_id"
    );
    assert_eq!(
        err("project_id = \"p\"\ntoken = \"t\"\ncolour = 1", None).key,
        "colour"
    );
    let both = err(
        "project_id = \"p\"\ntoken = \"t\"",
        Some(key_json(DEFAULT_TOKEN_URI)),
    );
    assert_eq!(both.key, "token");
    // The https-or-loopback rule is applied to it when the job loads (tests/it/firebase.rs).
    let (plain_http, _) = {
        let mut table: toml::Table = toml::from_str("project_id = \"p\"").unwrap();
        table.insert(
            "service_account".into(),
            toml::Value::String(key_json("http://oauth2.example/token")),
        );
        Firebase::from_config(table, None).unwrap()
    };
    assert_eq!(
        plain_http.other_urls(),
        [(
            "service_account",
            "the key's token_uri",
            "http://oauth2.example/token".to_string()
        )]
    );
    let broken_key = key_json(DEFAULT_TOKEN_URI).replace("MII", "XXX");
    let e = err("project_id = \"p\"", Some(broken_key));
    assert!(e.message.contains("private_key"), "{}", e.message);
    let not_json = format!("{{\"private_key\": \"{}", &TEST_KEY[..80]);
    let e = err("project_id = \"p\"", Some(not_json));
    assert!(
        !e.message.contains("PRIVATE") && !e.message.contains("MII"),
        "{}",
        e.message
    );
    // Loopback token endpoints (the simulator, a test server) are allowed over http.
    let table: toml::Table = toml::from_str("project_id = \"p\"").unwrap();
    let mut table = table;
    table.insert(
        "service_account".into(),
        toml::Value::String(key_json("http://127.0.0.1:9/token")),
    );
    assert!(Firebase::from_config(table, None).is_ok());
}

fn listed(v: &Verdict) -> Vec<String> {
    match &v.class {
        Class::Listed(rows) => rows.iter().map(|r| r.key.0.clone()).collect(),
        other => panic!("not listed: {other:?}"),
    }
}

#[test]
fn a_wildcard_lists_every_federated_provider_and_guards_the_whole_set() {
    let a = adapter("token = \"t\"");
    let r = a
        .prepare(&Fields::from_pairs([("uid", "u1"), ("provider_id", "*")]))
        .unwrap();
    assert_eq!(r.key.0, "u1/*");
    assert!(a.is_wildcard(&r));
    assert!(!a.is_wildcard(&row(&a, "u1", "google.com")));
    assert_eq!(
        a.read(&r, None).unwrap().json.as_deref(),
        Some(r#"{"localId":["u1"]}"#)
    );
    let list =
        |a: &Firebase, body: &str| a.classify_list(&r, &WireAnswer::new(200, body.to_string()));
    let g = r#"{"providerId":"google.com","rawId":"g1"}"#;
    let f = r#"{"providerId":"facebook.com","rawId":"f1"}"#;
    let phone = r#"{"providerId":"phone","rawId":"+1555","phoneNumber":"+1555"}"#;
    let pw = r#"{"providerId":"password","rawId":"a@b.c"}"#;
    let with_password = user(&format!(
        r#","providerUserInfo":[{g},{f},{pw}],"passwordHash":"aGFzaA==""#
    ));
    assert_eq!(
        listed(&list(&a, &with_password)),
        ["u1/google.com", "u1/facebook.com"]
    );
    let with_phone = user(&format!(
        r#","providerUserInfo":[{g},{phone}],"phoneNumber":"+1555""#
    ));
    assert_eq!(listed(&list(&a, &with_phone)), ["u1/google.com"]);
    let listed_row = match list(&a, &with_phone).class {
        Class::Listed(rows) => rows[0].clone(),
        _ => unreachable!(),
    };
    assert_eq!(listed_row, row(&a, "u1", "google.com"));
    // Every provider gone and nothing left to sign in with: the whole row fails.
    let federated_only = user(&format!(r#","providerUserInfo":[{g},{f}]"#));
    let v = list(&a, &federated_only);
    assert!(
        matches!(&v.class, Class::Failed(m) if m.contains("google.com, facebook.com") && m.contains("without a way to sign in")),
        "{v:?}"
    );
    // Never, whatever allow_last_sign_in_method says (SPEC section 3).
    let allowed = adapter("token = \"t\"\nallow_last_sign_in_method = true");
    assert_eq!(list(&allowed, &federated_only).class.name(), "failed");
    assert!(listed(&list(&a, &user(r#","providerUserInfo":[]"#))).is_empty());
    assert!(
        listed(&list(
            &a,
            &user(&format!(
                r#","providerUserInfo":[{phone}],"phoneNumber":"+1555""#
            ))
        ))
        .is_empty()
    );
    assert_eq!(
        list(&a, r#"{"kind":"identitytoolkit#GetAccountInfoResponse"}"#)
            .class
            .name(),
        "absent"
    );
    assert_eq!(list(&a, "{}").class.name(), "unexpected");
    let gone = a.classify_list(&r, &WireAnswer::new(400, error(400, "USER_NOT_FOUND")));
    assert_eq!(gone.class.name(), "absent");
    for (status, want) in [
        (401, "halt"),
        (403, "halt"),
        (429, "rate-limit"),
        (503, "retry"),
        (404, "unexpected"),
    ] {
        let v = a.classify_list(&r, &WireAnswer::new(status, error(status, "X")));
        assert_eq!(v.class.name(), want, "{status}");
    }
    // Sent as it stands (never, by the pipeline), a wildcard must not come out absent.
    assert_eq!(
        a.classify(&r, 0, &WireAnswer::new(200, federated_only.clone()))
            .class
            .name(),
        "failed"
    );
    assert_eq!(
        a.classify_read(&r, &WireAnswer::new(200, federated_only))
            .class
            .name(),
        "failed"
    );
}
