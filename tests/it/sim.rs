//! The vendor simulator, driven through the real `unlinker-sim` binary over loopback HTTP.

use std::time::{Duration, Instant, SystemTime};

use crate::support::{Sim, client, client_with_timeout, start_failure, write};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha1::Sha1;

const AUTH0_SEED: &str = "vendor,user_id,provider,identity_user_id\n\
    auth0,auth0|5f7c,google-oauth2,12 3/4\n\
    auth0,auth0|5f7c,github,99\n";

const FA_USER: &str = "5b6a2a1c-0a3e-4f4e-9d7a-1c2b3d4e5f60";
const FA_IDP: &str = "0d3f4a5b-1c2d-4e5f-8a9b-0c1d2e3f4a5b";

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn inexistent_user() -> Value {
    json!({"statusCode":404,"error":"Not Found","message":"The user does not exist.","errorCode":"inexistent_user"})
}

/// A simulator seeded with `seed` (written as `name`), keeping the temp dir alive.
fn seeded(name: &str, seed: &str, args: &[&str]) -> (Sim, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), name, seed);
    let mut all = vec!["--seed", path.to_str().unwrap()];
    all.extend_from_slice(args);
    (Sim::start(&all), dir)
}

async fn auth0_delete(sim: &Sim, path: &str, token: &str) -> reqwest::Response {
    client()
        .delete(sim.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

const LINK_12: &str = "/api/v2/users/auth0%7C5f7c/identities/google-oauth2/12%203%2F4";

#[tokio::test]
async fn auth0_unlinks_once_and_reads_follow() {
    let (sim, _dir) = seeded("s.csv", AUTH0_SEED, &[]);
    let c = client();
    let read = |user: &'static str| {
        c.get(sim.url(&format!("/api/v2/users/{user}")))
            .bearer_auth("sim-token")
            .send()
    };

    let user: Value = read("auth0%7C5f7c").await.unwrap().json().await.unwrap();
    assert_eq!(
        user,
        json!({"user_id":"auth0|5f7c","identities":[
            {"provider":"auth0","user_id":"5f7c","connection":"Username-Password-Authentication","isSocial":false},
            {"provider":"github","user_id":"99","connection":"github","isSocial":true},
            {"provider":"google-oauth2","user_id":"12 3/4","connection":"google-oauth2","isSocial":true}
        ]})
    );

    // An identity id with an encoded `/` and space stays one segment.
    let first = auth0_delete(&sim, LINK_12, "sim-token").await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        first.json::<Value>().await.unwrap(),
        json!([
            {"provider":"auth0","user_id":"5f7c","connection":"Username-Password-Authentication","isSocial":false},
            {"provider":"github","user_id":"99","connection":"github","isSocial":true}
        ])
    );
    let second = auth0_delete(&sim, LINK_12, "sim-token").await;
    assert_eq!(second.status(), StatusCode::NOT_FOUND);
    assert_eq!(second.json::<Value>().await.unwrap(), inexistent_user());

    let user: Value = read("auth0%7C5f7c").await.unwrap().json().await.unwrap();
    let providers: Vec<&str> = user["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["auth0", "github"]);

    // The unlink left a standalone user behind; it can be deleted once.
    let standalone = "/api/v2/users/google-oauth2%7C12%203%2F4";
    let del = auth0_delete(&sim, standalone, "sim-token").await;
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    let again = auth0_delete(&sim, standalone, "sim-token").await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    assert_eq!(again.json::<Value>().await.unwrap(), inexistent_user());

    let unknown = read("auth0%7Cnobody").await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.json::<Value>().await.unwrap(), inexistent_user());

    assert_eq!(sim.links("auth0"), ["auth0|5f7c/github/99"]);
    let counters = sim.counters();
    let auth0 = &counters["vendors"]["auth0"];
    assert_eq!(auth0["requests"], 7);
    assert_eq!(auth0["unlink_calls"], 2);
    assert_eq!(auth0["removed"], 1);
    assert_eq!(auth0["reads"], 3);
    assert_eq!(auth0["user_deletes"], 2);
    assert_eq!(
        counters["keys"]["auth0"]["auth0|5f7c/google-oauth2/12 3/4"],
        json!({"unlink_calls":2,"removed":1,"reads":0})
    );
    assert_eq!(
        counters["keys"]["auth0"]["auth0|5f7c"],
        json!({"unlink_calls":0,"removed":0,"reads":2})
    );
}

#[tokio::test]
async fn auth0_tokens_static_and_issued() {
    let (sim, _dir) = seeded("s.csv", AUTH0_SEED, &["--auth0-token-ttl", "60"]);
    let c = client();
    let invalid = json!({"statusCode":401,"error":"Unauthorized","message":"Invalid token"});

    let none = c.delete(sim.url(LINK_12)).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(none.json::<Value>().await.unwrap(), invalid);
    let wrong = auth0_delete(&sim, LINK_12, "not-the-token").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json::<Value>().await.unwrap(), invalid);

    let token = |secret: &'static str| {
        c.post(sim.url("/oauth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "sim-client"),
                ("client_secret", secret),
                ("audience", "https://sim/api/v2/"),
            ])
            .send()
    };
    let refused = token("wrong").await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused.json::<Value>().await.unwrap(),
        json!({"error":"access_denied","error_description":"Unauthorized"})
    );
    let issued: Value = token("sim-client-secret")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(issued["expires_in"], 60);
    assert_eq!(issued["token_type"], "Bearer");
    let access = issued["access_token"].as_str().unwrap();
    assert_eq!(access.len(), 32);
    assert_ne!(access, "sim-token");

    let ok = auth0_delete(&sim, LINK_12, access).await;
    assert_eq!(ok.status(), StatusCode::OK);

    let counters = sim.counters();
    assert_eq!(counters["vendors"]["auth0"]["token_calls"], 2);
    assert_eq!(counters["vendors"]["auth0"]["unauthorized"], 3);
    assert_eq!(counters["vendors"]["auth0"]["removed"], 1);
    // Nothing was removed by the refused calls.
    assert_eq!(
        counters["keys"]["auth0"]["auth0|5f7c/google-oauth2/12 3/4"],
        json!({"unlink_calls":3,"removed":1,"reads":0})
    );
}

#[tokio::test]
async fn auth0_expired_tokens_are_refused() {
    let (sim, _dir) = seeded("s.csv", AUTH0_SEED, &["--auth0-token-ttl", "0s"]);
    let issued: Value = client()
        .post(sim.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "sim-client"),
            ("client_secret", "sim-client-secret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(issued["expires_in"], 0);
    let refused = auth0_delete(&sim, LINK_12, issued["access_token"].as_str().unwrap()).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(sim.links("auth0").len(), 2);
}

#[tokio::test]
async fn auth0_rate_limit_answer() {
    let (sim, _dir) = seeded(
        "s.csv",
        AUTH0_SEED,
        &["--rate-limit", "auth0=1/2", "--retry-after"],
    );
    let before = epoch_now();
    for _ in 0..2 {
        let r = auth0_delete(&sim, LINK_12, "sim-token").await;
        assert_ne!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    let limited = auth0_delete(&sim, LINK_12, "sim-token").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let header = |name| {
        limited
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(header("x-ratelimit-limit").as_deref(), Some("2"));
    assert_eq!(header("x-ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(header("retry-after").as_deref(), Some("1"));
    let reset: u64 = header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert!(
        (before..=epoch_now() + 2).contains(&reset),
        "reset {reset} is not within a second or two"
    );
    assert_eq!(
        limited.json::<Value>().await.unwrap(),
        json!({"statusCode":429,"error":"Too Many Requests","message":"Global limit has been reached","errorCode":"too_many_requests"})
    );
    let counters = sim.counters();
    assert_eq!(counters["vendors"]["auth0"]["requests"], 3);
    assert_eq!(counters["vendors"]["auth0"]["rate_limited"], 1);
    assert_eq!(counters["vendors"]["auth0"]["removed"], 1);
}

fn fa_query(user: &str, idp: &str, id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("identityProviderId", idp.to_string()),
        ("identityProviderUserId", id.to_string()),
        ("userId", user.to_string()),
    ]
}

#[tokio::test]
async fn fusionauth_unlink_read_and_refusals() {
    let seed = format!(
        "{{\"vendor\":\"fusionauth\",\"user_id\":\"{FA_USER}\",\"identity_provider_id\":\"{FA_IDP}\",\"identity_provider_user_id\":\"ext 1\"}}\n"
    );
    let (sim, _dir) = seeded("s.jsonl", &seed, &["--rate-limit", "fusionauth=0.1/4"]);
    let c = client();
    let path = sim.url("/api/identity-provider/link");
    let call = |method: reqwest::Method, key: Option<&str>, query: Vec<(&'static str, String)>| {
        let mut req = c.request(method, &path).query(&query);
        if let Some(key) = key {
            req = req.header("Authorization", key);
        }
        req.send()
    };
    let key = Some("sim-fusionauth-key");
    use reqwest::Method;

    let unauthorized = call(
        Method::DELETE,
        Some("Bearer sim-fusionauth-key"),
        fa_query(FA_USER, FA_IDP, "ext 1"),
    )
    .await
    .unwrap();
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unauthorized.text().await.unwrap(), "");

    let read = call(Method::GET, key, fa_query(FA_USER, FA_IDP, "ext 1"))
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let body: Value = read.json().await.unwrap();
    assert_eq!(body["identityProviderLink"]["userId"], FA_USER);
    assert_eq!(
        body["identityProviderLink"]["identityProviderUserId"],
        "ext 1"
    );

    let deleted = call(Method::DELETE, key, fa_query(FA_USER, FA_IDP, "ext 1"))
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let body: Value = deleted.json().await.unwrap();
    assert_eq!(body["identityProviderLink"]["identityProviderId"], FA_IDP);

    let again = call(Method::DELETE, key, fa_query(FA_USER, FA_IDP, "ext 1"))
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    assert_eq!(again.text().await.unwrap(), "");

    // Fifth call: over the bucket of 4.
    let limited = call(Method::GET, key, fa_query(FA_USER, FA_IDP, "ext 1"))
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().get("retry-after").is_none());

    let counters = sim.counters();
    let fa = &counters["vendors"]["fusionauth"];
    assert_eq!(fa["requests"], 5);
    assert_eq!(fa["unlink_calls"], 3);
    assert_eq!(fa["reads"], 2);
    assert_eq!(fa["removed"], 1);
    assert_eq!(fa["unauthorized"], 1);
    assert_eq!(fa["rate_limited"], 1);
    assert!(sim.links("fusionauth").is_empty());
}

#[tokio::test]
async fn fusionauth_validation_errors() {
    let sim = Sim::start(&[]);
    let bad = client()
        .delete(sim.url("/api/identity-provider/link"))
        .header("Authorization", "sim-fusionauth-key")
        .query(&fa_query("not-a-uuid", FA_IDP, "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["fieldErrors"]["userId"][0]["code"], "[invalid]userId");
    assert_eq!(body["generalErrors"], json!([]));
    assert_eq!(body["fieldErrors"].as_object().unwrap().len(), 1);

    let missing = client()
        .delete(sim.url("/api/identity-provider/link"))
        .header("Authorization", "sim-fusionauth-key")
        .query(&[("userId", FA_USER)])
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(
        body["fieldErrors"]["identityProviderId"][0]["code"],
        "[blank]identityProviderId"
    );
    assert_eq!(
        body["fieldErrors"]["identityProviderUserId"][0]["code"],
        "[blank]identityProviderUserId"
    );
}

/// Gigya form parameters with the default credentials.
fn gigya_form(uid: &str, provider: Option<&str>) -> Vec<(String, String)> {
    let mut form: Vec<(String, String)> = [
        ("apiKey", "sim-api-key"),
        ("userKey", "sim-user-key"),
        ("UID", uid),
        ("format", "json"),
        ("httpStatusCodes", "false"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(p) = provider {
        form.push(("provider".into(), p.into()));
    }
    form
}

fn with(mut form: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
    form.retain(|(k, _)| k != name);
    form.push((name.into(), value.into()));
    form
}

async fn gigya(sim: &Sim, method: &str, form: &[(String, String)]) -> Value {
    let r = client()
        .post(sim.url(&format!("/{method}")))
        .form(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "Gigya always answers HTTP 200");
    r.json().await.unwrap()
}

const GIGYA_SEED: &str = "vendor,uid,provider,site_login\n\
    gigya,u1,facebook,\n\
    gigya,u1,apple,\n\
    gigya,lonely,facebook,false\n";

#[tokio::test]
async fn gigya_remove_connection_with_secret() {
    let (sim, _dir) = seeded("g.csv", GIGYA_SEED, &[]);
    let secret = "c2ltLXNlY3JldC1rZXk=";
    let remove =
        |uid: &str, provider: Option<&str>| with(gigya_form(uid, provider), "secret", secret);

    let ok = gigya(
        &sim,
        "socialize.removeConnection",
        &remove("u1", Some("facebook")),
    )
    .await;
    assert_eq!(ok["errorCode"], 0);
    assert_eq!(ok["statusCode"], 200);
    assert_eq!(ok["callId"].as_str().unwrap().len(), 32);
    assert!(
        ok["callId"]
            .as_str()
            .unwrap()
            .chars()
            .all(|c| c.is_ascii_hexdigit())
    );
    assert!(ok["time"].as_str().unwrap().ends_with('Z'));

    let again = gigya(
        &sim,
        "socialize.removeConnection",
        &remove("u1", Some("facebook")),
    )
    .await;
    assert_eq!(again["errorCode"], 400006);
    assert_eq!(
        again["errorDetails"],
        "Provider facebook is not connected to this account"
    );

    let nobody = gigya(
        &sim,
        "socialize.removeConnection",
        &remove("ghost", Some("facebook")),
    )
    .await;
    assert_eq!(nobody["errorCode"], 403005);
    assert_eq!(nobody["errorMessage"], "Unauthorized user");
    assert_eq!(nobody["statusCode"], 403);

    let wrong = gigya(
        &sim,
        "socialize.removeConnection",
        &with(remove("u1", Some("apple")), "secret", "bm9wZQ=="),
    )
    .await;
    assert_eq!(wrong["errorCode"], 403003);
    let wrong_key = gigya(
        &sim,
        "socialize.removeConnection",
        &with(remove("u1", Some("apple")), "apiKey", "other"),
    )
    .await;
    assert_eq!(wrong_key["errorCode"], 403003);

    let info = gigya(
        &sim,
        "accounts.getAccountInfo",
        &with(remove("u1", None), "include", "identities-active"),
    )
    .await;
    assert_eq!(info["errorCode"], 0);
    let providers: Vec<&str> = info["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["site", "apple"]);
    let ghost = gigya(&sim, "accounts.getAccountInfo", &remove("ghost", None)).await;
    assert_eq!(ghost["errorCode"], 403005);

    // The last identity of an account without a site login is kept when asked to.
    let kept = gigya(
        &sim,
        "socialize.removeConnection",
        &with(
            remove("lonely", Some("facebook")),
            "lastIdentityHandling",
            "fail",
        ),
    )
    .await;
    assert_eq!(kept["errorCode"], 409030);
    let soft = gigya(
        &sim,
        "socialize.removeConnection",
        &with(
            remove("lonely", Some("facebook")),
            "lastIdentityHandling",
            "soft",
        ),
    )
    .await;
    assert_eq!(soft["errorCode"], 0);

    // No provider: every connection goes.
    let all = gigya(&sim, "socialize.removeConnection", &remove("u1", None)).await;
    assert_eq!(all["errorCode"], 0);
    assert!(sim.links("gigya").is_empty());

    let counters = sim.counters();
    assert_eq!(counters["vendors"]["gigya"]["unlink_calls"], 8);
    assert_eq!(counters["vendors"]["gigya"]["reads"], 2);
    assert_eq!(counters["vendors"]["gigya"]["removed"], 3);
    assert_eq!(counters["vendors"]["gigya"]["unauthorized"], 2);
    assert_eq!(
        counters["keys"]["gigya"]["u1/*"],
        json!({"unlink_calls":1,"removed":0,"reads":0})
    );
    assert_eq!(
        counters["keys"]["gigya"]["u1/apple"],
        json!({"unlink_calls":2,"removed":1,"reads":0})
    );
}

const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The documented algorithm (docs/vendors.md), written out here independently of the simulator.
fn gigya_sign(url: &str, params: &[(String, String)], secret_b64: &str) -> String {
    let enc = |s: &str| utf8_percent_encode(s, RFC3986).to_string();
    let mut pairs: Vec<(String, String)> = params.iter().map(|(k, v)| (enc(k), enc(v))).collect();
    pairs.sort();
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let base = format!("POST&{}&{}", enc(url), enc(&query.join("&")));
    let key = BASE64.decode(secret_b64).unwrap();
    let mut mac = Hmac::<Sha1>::new_from_slice(&key).unwrap();
    mac.update(base.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

fn signed(sim: &Sim, form: Vec<(String, String)>, timestamp: u64) -> Vec<(String, String)> {
    let form = with(form, "timestamp", &timestamp.to_string());
    let nonce = format!("n-{timestamp}-{}", form.len());
    let form = with(form, "nonce", &nonce);
    let url = sim.url("/socialize.removeConnection");
    let sig = gigya_sign(&url, &form, "c2ltLXNlY3JldC1rZXk=");
    with(form, "sig", &sig)
}

#[tokio::test]
async fn gigya_signed_requests() {
    let (sim, _dir) = seeded("g.csv", GIGYA_SEED, &[]);
    let now = epoch_now();

    let good = signed(&sim, gigya_form("u1", Some("facebook")), now);
    assert!(good.iter().all(|(k, _)| k != "secret"));
    let ok = gigya(&sim, "socialize.removeConnection", &good).await;
    assert_eq!(ok["errorCode"], 0, "{ok}");

    let tampered = with(
        signed(&sim, gigya_form("u1", Some("apple")), now),
        "UID",
        "u2",
    );
    let refused = gigya(&sim, "socialize.removeConnection", &tampered).await;
    assert_eq!(refused["errorCode"], 400008);

    let stale = signed(&sim, gigya_form("u1", Some("apple")), now - 600);
    let expired = gigya(&sim, "socialize.removeConnection", &stale).await;
    assert_eq!(expired["errorCode"], 403002);

    assert_eq!(sim.links("gigya"), ["lonely/facebook", "u1/apple"]);
    assert_eq!(sim.counters()["vendors"]["gigya"]["unauthorized"], 2);
}

#[tokio::test]
async fn gigya_rate_limit_wrong_dc_and_errors() {
    let (limited, _d1) = seeded("g.csv", GIGYA_SEED, &["--rate-limit", "gigya=1/1"]);
    let form = with(
        gigya_form("u1", Some("facebook")),
        "secret",
        "c2ltLXNlY3JldC1rZXk=",
    );
    let first = gigya(&limited, "socialize.removeConnection", &form).await;
    assert_eq!(first["errorCode"], 0);
    let second = gigya(&limited, "socialize.removeConnection", &form).await;
    assert_eq!(second["errorCode"], 403048);
    assert_eq!(second["errorMessage"], "Api rate limit exceeded");
    assert_eq!(limited.counters()["vendors"]["gigya"]["rate_limited"], 1);

    let (moved, _d2) = seeded("g.csv", GIGYA_SEED, &["--gigya-wrong-dc", "eu1"]);
    let answer = gigya(&moved, "socialize.removeConnection", &form).await;
    assert_eq!(answer["errorCode"], 301001);
    assert_eq!(answer["apiDomain"], "eu1.gigya.com");
    assert_eq!(moved.links("gigya").len(), 3);

    let (failing, _d3) = seeded("g.csv", GIGYA_SEED, &["--error-rate", "1"]);
    let answer = gigya(&failing, "socialize.removeConnection", &form).await;
    assert_eq!(answer["errorCode"], 500001);
    assert_eq!(failing.links("gigya").len(), 3);
    assert_eq!(failing.counters()["vendors"]["gigya"]["errors"], 1);
}

const NEWSPARK_SEED: &str = "{\"vhost\":12,\"uid\":345,\"external_id_provider_name\":\"Facebook\"}\n\
    {\"vhost\":12,\"uid\":345,\"external_id_provider_name\":\"janrain\",\"sub_provider_name\":\"yahoo\"}\n";

fn newspark_form(provider: &str, sub: &str, token: Option<&str>) -> Vec<(String, String)> {
    let mut form: Vec<(String, String)> = [
        ("vhost", "12"),
        ("uid", "345"),
        ("redirectUrl", "/unlinker/done"),
        ("failRedirectUrl", "/unlinker/failed"),
        ("external_id_provider_name", provider),
        ("sub_provider_name", sub),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(t) = token {
        form.push(("formToken".into(), t.into()));
    }
    form
}

#[tokio::test]
async fn newspark_redirects() {
    let (sim, _dir) = seeded(
        "n.jsonl",
        NEWSPARK_SEED,
        &["--seed-vendor", "newspark", "--newspark-form-token", "ft1"],
    );
    let post = |cookie: Option<&str>, form: Vec<(String, String)>| {
        let mut req = client()
            .post(sim.url("/action/v2/unlinkaccount"))
            .form(&form);
        if let Some(cookie) = cookie {
            req = req.header("Cookie", cookie);
        }
        req.send()
    };
    let location = |r: &reqwest::Response| {
        r.headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
    };
    let login = Some("/login?next=%2Faction%2Fv2%2Funlinkaccount".to_string());

    let no_cookie = post(None, newspark_form("facebook", "none", Some("ft1")))
        .await
        .unwrap();
    assert_eq!(no_cookie.status(), StatusCode::FOUND);
    assert_eq!(location(&no_cookie), login);
    let no_token = post(
        Some("a=b; session=sim-session"),
        newspark_form("facebook", "none", None),
    )
    .await
    .unwrap();
    assert_eq!(location(&no_token), login);

    let cookie = Some("a=b; session=sim-session");
    let ok = post(cookie, newspark_form("FACEBOOK", "", Some("ft1")))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::FOUND);
    assert_eq!(location(&ok).as_deref(), Some("/unlinker/done"));
    let again = post(cookie, newspark_form("facebook", "none", Some("ft1")))
        .await
        .unwrap();
    assert_eq!(
        location(&again).as_deref(),
        Some("/unlinker/failed?error=not_linked")
    );
    assert_eq!(sim.links("newspark"), ["12/345/janrain/yahoo"]);

    let absolute = with(
        newspark_form("janrain", "yahoo", Some("ft1")),
        "redirectUrl",
        "https://site.example/done?x=1",
    );
    let ok = post(cookie, absolute).await.unwrap();
    assert_eq!(
        location(&ok).as_deref(),
        Some("https://site.example/done?x=1")
    );
    assert!(sim.links("newspark").is_empty());

    let counters = sim.counters();
    assert_eq!(counters["vendors"]["newspark"]["unauthorized"], 2);
    assert_eq!(counters["vendors"]["newspark"]["removed"], 2);
    assert_eq!(
        counters["keys"]["newspark"]["12/345/facebook/none"],
        json!({"unlink_calls":4,"removed":1,"reads":0})
    );
}

#[tokio::test]
async fn counters_log_and_reset() {
    let (sim, _dir) = seeded("s.csv", AUTH0_SEED, &[]);
    let r = auth0_delete(&sim, LINK_12, "sim-token").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = client()
        .post(sim.url("/socialize.removeConnection?format=json"))
        .form(&[("apiKey", "sim-api-key"), ("UID", "u 1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let other = client().get(sim.url("/not/a/vendor")).send().await.unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);

    let log = sim.get_json("/_sim/log");
    let entries = log.as_array().unwrap();
    assert_eq!(entries.len(), 2, "only vendor requests are logged: {log}");
    let first = &entries[0];
    assert_eq!(first["vendor"], "auth0");
    assert_eq!(first["method"], "DELETE");
    assert_eq!(first["path"], LINK_12);
    assert_eq!(first["query"], Value::Null);
    assert_eq!(first["headers"]["authorization"], "Bearer sim-token");
    assert_eq!(first["body"], "");
    assert_eq!(first["status"], 200);
    let second = &entries[1];
    assert_eq!(second["vendor"], "gigya");
    assert_eq!(second["query"], "format=json");
    assert_eq!(second["body"], "apiKey=sim-api-key&UID=u+1");
    assert_eq!(
        second["headers"]["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(second["status"], 200);
    let (t0, t1) = (
        first["at_ms"].as_f64().unwrap(),
        second["at_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < t0 && t0 <= t1, "{t0} {t1}");

    let counters = sim.counters();
    assert_eq!(counters["vendors"]["auth0"]["requests"], 1);
    assert_eq!(counters["vendors"]["gigya"]["requests"], 1);
    assert_eq!(counters["vendors"]["gigya"]["unauthorized"], 1);
    assert_eq!(counters["vendors"]["fusionauth"]["requests"], 0);
    let brief = sim.get_json("/_sim/counters?keys=false");
    assert!(brief.get("keys").is_none());
    assert_eq!(brief["vendors"], counters["vendors"]);

    let reset = client()
        .post(sim.url("/_sim/reset-counters"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    let counters = sim.counters();
    assert_eq!(counters["vendors"]["auth0"]["requests"], 0);
    assert_eq!(counters["keys"]["auth0"], json!({}));
    // Links and the log stay.
    assert_eq!(sim.links("auth0"), ["auth0|5f7c/github/99"]);
    assert_eq!(sim.get_json("/_sim/log").as_array().unwrap().len(), 2);

    let bad = client()
        .get(sim.url("/_sim/links?vendor=okta"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn all_linked_links_exist_until_removed_once() {
    let sim = Sim::start(&["--all-linked"]);
    let read = || async {
        client()
            .get(sim.url("/api/v2/users/auth0%7Cany"))
            .bearer_auth("sim-token")
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    // Every user exists; an unseen user has only its primary identity.
    assert_eq!(read().await["identities"].as_array().unwrap().len(), 1);

    // A refused call still shows the simulator the link; reads then list it.
    let refused = auth0_delete(
        &sim,
        "/api/v2/users/auth0%7Cany/identities/github/7",
        "nope",
    )
    .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let ids = read().await["identities"].clone();
    assert_eq!(
        ids[1],
        json!({"provider":"github","user_id":"7","connection":"github","isSocial":true})
    );

    let first = auth0_delete(
        &sim,
        "/api/v2/users/auth0%7Cany/identities/github/7",
        "sim-token",
    )
    .await;
    assert_eq!(first.status(), StatusCode::OK);
    let second = auth0_delete(
        &sim,
        "/api/v2/users/auth0%7Cany/identities/github/7",
        "sim-token",
    )
    .await;
    assert_eq!(second.status(), StatusCode::NOT_FOUND);
    let other = auth0_delete(
        &sim,
        "/api/v2/users/auth0%7Cany/identities/apple/8",
        "sim-token",
    )
    .await;
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(read().await["identities"].as_array().unwrap().len(), 1);

    let gigya_form = with(
        gigya_form("anyone", Some("twitter")),
        "secret",
        "c2ltLXNlY3JldC1rZXk=",
    );
    assert_eq!(
        gigya(&sim, "socialize.removeConnection", &gigya_form).await["errorCode"],
        0
    );
    assert_eq!(
        gigya(&sim, "socialize.removeConnection", &gigya_form).await["errorCode"],
        400006
    );
    assert_eq!(sim.counters()["vendors"]["auth0"]["removed"], 2);
}

#[tokio::test]
async fn error_rate_changes_nothing() {
    let (sim, _dir) = seeded("s.csv", AUTH0_SEED, &["--error-rate", "1"]);
    let r = auth0_delete(&sim, LINK_12, "sim-token").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json::<Value>().await.unwrap()["statusCode"], 503);
    assert_eq!(sim.links("auth0").len(), 2);
    let counters = sim.counters();
    assert_eq!(counters["vendors"]["auth0"]["errors"], 1);
    assert_eq!(counters["vendors"]["auth0"]["removed"], 0);
    assert_eq!(counters["vendors"]["auth0"]["requests"], 1);
}

#[tokio::test]
async fn dropped_connections_still_apply_the_change() {
    let (sim, _dir) = seeded("s.csv", AUTH0_SEED, &["--drop-rate", "1"]);
    let err = client()
        .delete(sim.url(LINK_12))
        .bearer_auth("sim-token")
        .send()
        .await
        .expect_err("the connection is cut without an answer");
    assert!(!err.is_timeout(), "{err:?}");
    assert!(err.status().is_none(), "{err:?}");
    assert_eq!(sim.links("auth0"), ["auth0|5f7c/github/99"]);
    let log = sim.get_json("/_sim/log");
    assert_eq!(log[0]["status"], Value::Null);
    assert_eq!(sim.counters()["vendors"]["auth0"]["dropped"], 1);
}

#[tokio::test]
async fn slow_answers_outlast_the_client_and_latency_is_added() {
    let (slow, _d1) = seeded("s.csv", AUTH0_SEED, &["--slow-rate", "1", "--slow", "30s"]);
    let err = client_with_timeout(Duration::from_millis(300))
        .delete(slow.url(LINK_12))
        .bearer_auth("sim-token")
        .send()
        .await
        .expect_err("the answer comes after the client's timeout");
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(slow.links("auth0"), ["auth0|5f7c/github/99"]);
    assert_eq!(slow.counters()["vendors"]["auth0"]["slow"], 1);

    let (late, _d2) = seeded("s.csv", AUTH0_SEED, &["--latency", "200ms"]);
    let started = Instant::now();
    let r = auth0_delete(&late, LINK_12, "sim-token").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(200));
    // Introspection is not delayed.
    let started = Instant::now();
    late.counters();
    assert!(started.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn seeds_from_csv_and_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write(
        dir.path(),
        "mixed.csv",
        &format!(
            "\u{feff}vendor,user_id,provider,identity_user_id,identity_provider_id,identity_provider_user_id,uid\n\
             auth0,auth0|b,github,1,,,\n\
             auth0,auth0|a,apple,2,,,\n\
             fusionauth,{},,,{},ext,\n\
             gigya,,FaceBook,,,,77\n",
            FA_USER.to_uppercase(),
            FA_IDP
        ),
    );
    let jsonl = write(
        dir.path(),
        "more.jsonl",
        "{\"uid\":1,\"vhost\":2,\"external_id_provider_name\":\"Sheridan Staff\"}\n\n\
         {\"vendor\":\"gigya\",\"uid\":5,\"provider\":\"apple\"}\n",
    );
    let sim = Sim::start(&[
        "--seed",
        csv.to_str().unwrap(),
        "--seed",
        jsonl.to_str().unwrap(),
        "--seed-vendor",
        "newspark",
    ]);
    assert_eq!(sim.links("auth0"), ["auth0|a/apple/2", "auth0|b/github/1"]);
    assert_eq!(sim.links("fusionauth"), [format!("{FA_USER}/{FA_IDP}/ext")]);
    assert_eq!(sim.links("gigya"), ["5/apple", "77/facebook"]);
    assert_eq!(sim.links("newspark"), ["2/1/sheridan staff/none"]);
}

#[test]
fn bad_seeds_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let seed = write(
        dir.path(),
        "bad.csv",
        "vendor,uid,provider\ngigya,u1,facebook\nokta,u2,x\n",
    );
    let (out, err) = start_failure(&["--seed", seed.to_str().unwrap()]);
    assert_eq!(out, "", "nothing is printed before the seeds are loaded");
    assert!(
        err.contains("bad.csv:3: unknown vendor `okta`"),
        "stderr: {err}"
    );

    let seed = write(
        dir.path(),
        "missing.jsonl",
        "{\"vendor\":\"auth0\",\"user_id\":\"u\"}\n",
    );
    let (_, err) = start_failure(&["--seed", seed.to_str().unwrap()]);
    assert!(
        err.contains("missing.jsonl:1: field `provider` is required"),
        "stderr: {err}"
    );
}

/// Under a `--rate-limit`, Auth0's answers carry its budget headers; `--no-budget-headers`
/// leaves them out of every answer but the 429 (whose reset says when to come back).
#[tokio::test]
async fn auth0_budget_headers_can_be_left_out() {
    for (flags, expect) in [(&[][..], true), (&["--no-budget-headers"][..], false)] {
        let mut args = vec!["--rate-limit", "auth0=5/5"];
        args.extend_from_slice(flags);
        let (sim, _dir) = seeded("s.csv", AUTH0_SEED, &args);
        let r = auth0_delete(&sim, LINK_12, "sim-token").await;
        assert_ne!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            r.headers().contains_key("x-ratelimit-remaining"),
            expect,
            "{flags:?}: {:?}",
            r.headers()
        );
    }
}
