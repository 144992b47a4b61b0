//! Simulated SAP Customer Data Cloud (Gigya): `socialize.removeConnection` and
//! `accounts.getAccountInfo`, authenticated with a secret or an HMAC-SHA1 signature.
//!
//! Gigya answers HTTP 200 with an `errorCode` in the JSON (the client sends
//! `httpStatusCodes=false`); the status the code stands for is its first three digits. The
//! signature check rebuilds the base string the official SDKs sign, with the URL made from `http`,
//! the `Host` header as the client sent it (lower-cased) and the raw path.
//!
//! Accounts are the owners of seeded links. Each has a site (password) login unless its seed says
//! `site_login=false`; only such an account can lose its last identity, which is what
//! `lastIdentityHandling=fail` refuses.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::SystemTime;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::RngExt;
use serde_json::{Value, json};
use sha1::Sha1;

use super::faults::Limited;
use super::state::{Link, Op, OpKind, Store, lock};
use super::vendor::{Answer, Record, Request, Vendor, field, param, required};

pub(crate) const DEFAULT_API_KEY: &str = "sim-api-key";
pub(crate) const DEFAULT_USER_KEY: &str = "sim-user-key";
/// base64 of `sim-secret-key`.
pub(crate) const DEFAULT_SECRET: &str = "c2ltLXNlY3JldC1rZXk=";
/// How far a signed request's `timestamp` may be from the simulator's clock.
pub(crate) const MAX_CLOCK_SKEW_SECS: i64 = 120;

const REMOVE_CONNECTION: &str = "/socialize.removeConnection";
const GET_ACCOUNT_INFO: &str = "/accounts.getAccountInfo";

/// Everything outside RFC 3986's unreserved set is escaped (space is `%20`).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// Gigya credentials and data-center behaviour.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Gigya (SAP Customer Data Cloud)")]
pub(crate) struct GigyaOptions {
    /// The site's API key (`apiKey`)
    #[arg(id = "gigya_api_key", long = "gigya-api-key", value_name = "KEY", default_value = DEFAULT_API_KEY)]
    pub api_key: String,
    /// The application's user key (`userKey`)
    #[arg(id = "gigya_user_key", long = "gigya-user-key", value_name = "KEY", default_value = DEFAULT_USER_KEY)]
    pub(crate) user_key: String,
    /// The user key's secret, base64 (sent as `secret`, or the HMAC key of `sig` once decoded)
    #[arg(id = "gigya_secret", long = "gigya-secret", value_name = "BASE64", default_value = DEFAULT_SECRET)]
    pub secret: String,
    /// Answer every call with 301001 naming this data center (e.g. eu1) as the right one
    #[arg(id = "gigya_wrong_dc", long = "gigya-wrong-dc", value_name = "DC")]
    pub wrong_dc: Option<String>,
}

impl Default for GigyaOptions {
    fn default() -> Self {
        GigyaOptions {
            api_key: DEFAULT_API_KEY.into(),
            user_key: DEFAULT_USER_KEY.into(),
            secret: DEFAULT_SECRET.into(),
            wrong_dc: None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Gigya {
    options: GigyaOptions,
    /// Accounts seeded with `site_login=false`.
    without_site_login: Mutex<HashSet<String>>,
}

impl Gigya {
    pub(crate) fn new(options: &GigyaOptions) -> Self {
        Gigya {
            options: options.clone(),
            without_site_login: Mutex::new(HashSet::new()),
        }
    }

    /// `Err` is the refusal: an error code and its details. Missing parameters are 400002;
    /// everything else is a credential refusal.
    fn authenticate(&self, call: &Call, req: &Request) -> Result<(), (u32, &'static str)> {
        let p = &call.params;
        let Some(api_key) = param(p, "apiKey") else {
            return Err((400002, "Missing required parameter: apiKey"));
        };
        if api_key != self.options.api_key || param(p, "userKey") != Some(&self.options.user_key) {
            return Err((403003, "Invalid apiKey or userKey"));
        }
        let Some(sig) = param(p, "sig") else {
            return match param(p, "secret") {
                Some(secret) if secret == self.options.secret => Ok(()),
                Some(_) => Err((403003, "Invalid request signature: wrong secret")),
                None => Err((403003, "Invalid request signature: no secret or sig")),
            };
        };
        let Some(timestamp) = param(p, "timestamp").and_then(|t| t.parse::<i64>().ok()) else {
            return Err((400002, "Missing required parameter: timestamp"));
        };
        if param(p, "nonce").is_none_or(str::is_empty) {
            return Err((400002, "Missing required parameter: nonce"));
        }
        if (now_epoch() - timestamp).abs() > MAX_CLOCK_SKEW_SECS {
            return Err((
                403002,
                "Request has expired: timestamp is more than 120 s off",
            ));
        }
        let host = req.header("host").unwrap_or("").to_ascii_lowercase();
        let url = format!("http://{host}{}", req.path);
        let base = base_string(req.method.as_str(), &url, p);
        match signature(&self.options.secret, &base) {
            Some(expected) if expected == sig => Ok(()),
            _ => Err((400008, "Invalid signature")),
        }
    }

    fn remove_connection(&self, call: &Call, store: &Store) -> Answer {
        let p = &call.params;
        let uid = call.uid.clone();
        let fail_on_last = param(p, "lastIdentityHandling") == Some("fail");
        let has_site_login = !lock(&self.without_site_login).contains(&uid);
        let owner = vec![uid.clone()];
        let outcome: Result<(), (u32, String)> = store.with(|links| {
            if !links.owner_exists(&owner) {
                return Err((403005, format!("No account with UID {uid}")));
            }
            let connected = links.list(&owner).count();
            // All-linked accounts have countless identities: never their last.
            let last_guard = fail_on_last && !has_site_login && !links.all_linked();
            match &call.provider {
                Some(provider) => {
                    let link = vec![uid.clone(), provider.clone()];
                    if !links.contains(&link) {
                        // Unconfirmed: the real code for "provider not connected".
                        return Err((
                            400006,
                            format!("Provider {provider} is not connected to this account"),
                        ));
                    }
                    if last_guard && connected == 1 {
                        return Err((409030, last_identity_details()));
                    }
                    links.remove(&link);
                }
                None => {
                    if connected == 0 && !links.all_linked() {
                        return Err((400006, "No provider is connected to this account".into()));
                    }
                    if last_guard {
                        return Err((409030, last_identity_details()));
                    }
                    links.remove_prefix(&owner);
                }
            }
            Ok(())
        });
        match outcome {
            Ok(()) => reply(p, 0, "", json!({})),
            Err((code, details)) => reply(p, code, &details, json!({})),
        }
    }

    fn account_info(&self, call: &Call, store: &Store) -> Answer {
        let p = &call.params;
        let uid = &call.uid;
        let owner = vec![uid.clone()];
        let has_site_login = !lock(&self.without_site_login).contains(uid);
        let identities: Option<Vec<Value>> = store.with(|links| {
            links.owner_exists(&owner).then(|| {
                let site = has_site_login.then(|| json!({"provider": "site", "providerUID": uid}));
                site.into_iter()
                    .chain(links.list(&owner).map(|l| {
                        json!({"provider": l[1], "providerUID": format!("sim-{}-{}", l[1], l[0])})
                    }))
                    .collect()
            })
        });
        match identities {
            Some(ids) => reply(
                p,
                0,
                "",
                json!({"UID": uid, "isActive": true, "isRegistered": has_site_login, "identities": ids}),
            ),
            None => reply(p, 403005, &format!("No account with UID {uid}"), json!({})),
        }
    }
}

/// Fictional stand-in: the real code for refusing to remove an account's last identity is
/// unconfirmed (the client must class any such code as `failed`).
fn last_identity_details() -> String {
    "Removing this connection would leave the account without a login identity \
     (lastIdentityHandling=fail)"
        .into()
}

fn now_epoch() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The OAuth1-style base string the SDKs sign: `METHOD&enc(url)&enc(sorted k=v pairs)`, every
/// parameter but `sig`, keys and values RFC 3986-encoded, sorted by key (then value).
pub(crate) fn base_string(method: &str, url: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "sig")
        .map(|(k, v)| (enc(k), enc(v)))
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        enc(url),
        enc(&query)
    )
}

/// base64(HMAC-SHA1(key = base64-decode(secret), base string)); `None` when the secret is not
/// base64.
pub(crate) fn signature(secret_b64: &str, base: &str) -> Option<String> {
    let key = BASE64.decode(secret_b64.trim()).ok()?;
    let mut mac = Hmac::<Sha1>::new_from_slice(&key).ok()?;
    mac.update(base.as_bytes());
    Some(BASE64.encode(mac.finalize().into_bytes()))
}

fn error_message(code: u32) -> &'static str {
    match code {
        0 => "",
        301001 => "Invalid data center",
        400002 => "Missing required parameter",
        400006 => "Invalid parameter value",
        400008 => "Invalid signature",
        403002 => "Request has expired",
        403003 => "Invalid request signature",
        403005 => "Unauthorized user",
        403048 => "Api rate limit exceeded",
        404000 => "Method not found",
        409030 => "Last identity cannot be removed",
        500001 => "General Server Error",
        _ => "Error",
    }
}

/// A Gigya answer: HTTP 200 unless the call asked for `httpStatusCodes=true`.
fn reply(params: &[(String, String)], code: u32, details: &str, extra: Value) -> Answer {
    let status = if code == 0 { 200 } else { (code / 1000) as u16 };
    let status_code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut body = json!({
        "callId": format!("{:032x}", rand::rng().random::<u128>()),
        "errorCode": code,
        "apiVersion": 2,
        "statusCode": status,
        "statusReason": status_code.canonical_reason().unwrap_or(""),
        "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
    });
    if code != 0 {
        body["errorMessage"] = json!(error_message(code));
        body["errorDetails"] = json!(details);
    }
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    let http = if param(params, "httpStatusCodes") == Some("true") {
        status_code
    } else {
        StatusCode::OK
    };
    Answer::json(http, &body)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    RemoveConnection,
    GetAccountInfo,
    Unknown,
}

/// A Gigya call: its parameters (query then form) and what they name.
#[derive(Debug)]
pub(crate) struct Call {
    method: Method,
    params: Vec<(String, String)>,
    uid: String,
    /// Lower-cased; `None` for "every provider".
    provider: Option<String>,
}

fn all_params(req: &Request) -> Vec<(String, String)> {
    let mut params = req.query_pairs();
    params.extend(req.form_pairs());
    params
}

impl Vendor for Gigya {
    const NAME: &'static str = "gigya";
    const OWNER_LEN: usize = 1;
    type Call = Call;

    fn owns(&self, path: &str) -> bool {
        path.starts_with("/socialize.") || path.starts_with("/accounts.")
    }

    fn seed(&self, record: &Record) -> Result<Link, String> {
        let uid = required(record, "uid")?;
        let provider = required(record, "provider")?.to_ascii_lowercase();
        match field(record, "site_login")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("true") => {}
            Some("false") => {
                lock(&self.without_site_login).insert(uid.to_string());
            }
            Some(other) => {
                return Err(format!(
                    "field `site_login` must be true or false, not `{other}`"
                ));
            }
        }
        Ok(vec![uid.to_string(), provider])
    }

    fn parse(&self, req: &Request) -> (Op, Call) {
        let params = all_params(req);
        let method = match req.path.as_str() {
            REMOVE_CONNECTION => Method::RemoveConnection,
            GET_ACCOUNT_INFO => Method::GetAccountInfo,
            _ => Method::Unknown,
        };
        let uid = param(&params, "UID").unwrap_or("").to_string();
        let provider = param(&params, "provider")
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty());
        let mut op = match method {
            Method::RemoveConnection => Op::new(OpKind::Unlink),
            Method::GetAccountInfo => Op::new(OpKind::Read),
            Method::Unknown => Op::new(OpKind::Other),
        };
        if !uid.is_empty() {
            match (method, &provider) {
                (Method::RemoveConnection, Some(p)) => {
                    op = op
                        .key(format!("{uid}/{p}"))
                        .link(vec![uid.clone(), p.clone()]);
                }
                (Method::RemoveConnection, None) => op = op.key(format!("{uid}/*")),
                (Method::GetAccountInfo, _) => op = op.key(uid.clone()),
                (Method::Unknown, _) => {}
            }
        }
        let call = Call {
            method,
            params,
            uid,
            provider,
        };
        (op, call)
    }

    fn answer(&self, call: Call, req: &Request, store: &Store) -> Answer {
        let p = &call.params;
        if let Some(dc) = &self.options.wrong_dc {
            let domain = match dc.as_str() {
                d if d.contains('.') => d.to_string(),
                "cn1" => "cn1.sapcdm.cn".to_string(),
                d => format!("{d}.gigya.com"),
            };
            let details = format!("The apiKey belongs to another data center: use {domain}");
            return reply(p, 301001, &details, json!({"apiDomain": domain}));
        }
        if call.method == Method::Unknown {
            // Guess: the code for an API method that does not exist.
            return reply(
                p,
                404000,
                &format!("Unknown method {}", req.path),
                json!({}),
            );
        }
        if let Err((code, details)) = self.authenticate(&call, req) {
            let refusal = reply(p, code, details, json!({}));
            return if code == 400002 {
                refusal
            } else {
                refusal.unauthorized()
            };
        }
        if call.uid.is_empty() {
            return reply(p, 400002, "Missing required parameter: UID", json!({}));
        }
        match call.method {
            Method::RemoveConnection => self.remove_connection(&call, store),
            Method::GetAccountInfo => self.account_info(&call, store),
            Method::Unknown => unreachable!("answered above"),
        }
    }

    fn rate_limited(&self, req: &Request, _limited: &Limited) -> Answer {
        let details = "Too many requests: the site's API rate limit was exceeded";
        reply(&all_params(req), 403048, details, json!({}))
    }

    fn unavailable(&self, req: &Request) -> Answer {
        let details = "The service is temporarily unavailable (simulated)";
        reply(&all_params(req), 500001, details, json!({}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn base_string_sorts_and_encodes() {
        let params = pairs(&[
            ("UID", "a b"),
            ("apiKey", "k"),
            ("sig", "ignored"),
            ("nonce", "n~1"),
        ]);
        assert_eq!(
            base_string(
                "post",
                "http://127.0.0.1:8080/socialize.removeConnection",
                &params
            ),
            "POST&http%3A%2F%2F127.0.0.1%3A8080%2Fsocialize.removeConnection&UID%3Da%2520b%26apiKey%3Dk%26nonce%3Dn~1"
        );
    }

    #[test]
    fn signature_is_hmac_sha1_with_the_decoded_secret() {
        // RFC 2202 test case 2: key "Jefe".
        let secret = BASE64.encode("Jefe");
        assert_eq!(
            signature(&secret, "what do ya want for nothing?").unwrap(),
            BASE64.encode([
                0xef, 0xfc, 0xdf, 0x6a, 0xe5, 0xeb, 0x2f, 0xa2, 0xd2, 0x74, 0x16, 0xd5, 0xf1, 0x84,
                0xdf, 0x9c, 0x25, 0x9a, 0x7c, 0x79
            ])
        );
        assert_eq!(signature("not base64!", "x"), None);
        assert_eq!(BASE64.decode(DEFAULT_SECRET).unwrap(), b"sim-secret-key");
    }

    #[test]
    fn answers_carry_status_from_the_code() {
        let answer = reply(&[], 403005, "gone", json!({}));
        assert_eq!(answer.status, StatusCode::OK);
        let body: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(body["statusCode"], 403);
        assert_eq!(body["statusReason"], "Forbidden");
        assert_eq!(body["errorMessage"], "Unauthorized user");
        assert_eq!(body["callId"].as_str().unwrap().len(), 32);
        let strict = reply(
            &pairs(&[("httpStatusCodes", "true")]),
            403048,
            "",
            json!({}),
        );
        assert_eq!(strict.status, StatusCode::FORBIDDEN);
        let ok: Value = serde_json::from_slice(&reply(&[], 0, "", json!({"x": 1})).body).unwrap();
        assert_eq!(ok["errorCode"], 0);
        assert_eq!(ok["x"], 1);
        assert!(ok.get("errorMessage").is_none());
    }
}
