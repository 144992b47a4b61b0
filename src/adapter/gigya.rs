//! SAP Customer Data Cloud (Gigya): remove a user's social connection.
//!
//! Wire facts are in docs/vendors.md: a form POST of `socialize.removeConnection` to the site's data
//! center, authenticated with the user key and its secret (sent over HTTPS, never in the URL) or
//! with an OAuth1-style HMAC-SHA1 signature. Answers carry `httpStatusCodes=false`, so the body's
//! `errorCode` decides, whatever the HTTP status.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use sha1::Sha1;
use url::Url;

use super::http_class;
use super::wire::{WireAnswer, WireRequest, encode};
use super::{
    Adapter, Class, ConfigDoc, ConfigError, FieldDoc, Invalid, Key, Pacing, Params, Prepared,
    Registration, VendorDoc, Verdict, boxed, parse_config,
};
use crate::row::Fields;

pub const PACING: Pacing = Pacing {
    rate: 10.0,
    burst: 10,
    concurrency: 8,
};

/// `data_center` values and their host suffixes; calls go to `socialize.{host}` / `accounts.{host}`.
pub const DATA_CENTERS: &[(&str, &str)] = &[
    ("us1", "us1.gigya.com"),
    ("eu1", "eu1.gigya.com"),
    ("eu2", "eu2.gigya.com"),
    ("au1", "au1.gigya.com"),
    ("ru1", "ru1.gigya.com"),
    ("global", "global.gigya.com"),
    ("cn1", "cn1.sapcdm.cn"),
];

const REMOVE_METHOD: &str = "socialize.removeConnection";
const READ_METHOD: &str = "accounts.getAccountInfo";

const LAST_IDENTITY_HANDLING: &[&str] = &["soft", "remove", "fail"];
/// Never leave an account without a way to log in.
const DEFAULT_LAST_IDENTITY_HANDLING: &str = "fail";

const MAX_UID: usize = 256;
const MAX_PROVIDER: usize = 50;
const MAX_CID: usize = 100;

/// Marks an all-providers row in its key (and nowhere on the wire).
const ALL_PROVIDERS: &str = "*";

/// This adapter in the registry (`super::REGISTRY`).
pub const REGISTRATION: Registration = Registration {
    name: "gigya",
    pacing: PACING,
    doc: &DOC,
    build: |table, base_url| boxed(Gigya::from_config(table, base_url)),
};

pub const DOC: VendorDoc = VendorDoc {
    title: "SAP Customer Data Cloud / Gigya (socialize.removeConnection)",
    fields: &[
        FieldDoc {
            name: "uid",
            required: true,
            rule: "the account's UID, at most 256 characters",
        },
        FieldDoc {
            name: "provider",
            required: true,
            rule: "provider name, lower-cased, at most 50 characters (facebook, googleplus, \
                   saml-…, oidc-…); empty removes every connection and needs \
                   allow_all_providers = true",
        },
        FieldDoc {
            name: "remove_login_id",
            required: false,
            rule: "true or false; overrides the config's remove_login_id",
        },
        FieldDoc {
            name: "last_identity_handling",
            required: false,
            rule: "soft, remove or fail; overrides the config's last_identity_handling",
        },
        FieldDoc {
            name: "cid",
            required: false,
            rule: "context id for Gigya's reports, at most 100 characters",
        },
    ],
    key: "{uid}/{provider or *}",
    config: &[
        ConfigDoc {
            name: "data_center",
            default: "",
            about: "us1, eu1, eu2, au1, ru1, global or cn1 (or give base_url)",
        },
        ConfigDoc {
            name: "api_key",
            default: "",
            about: "the site's API key",
        },
        ConfigDoc {
            name: "user_key",
            default: "",
            about: "the application (user) key",
        },
        ConfigDoc {
            name: "secret",
            default: "",
            about: "the application key's secret (base64)",
        },
        ConfigDoc {
            name: "auth",
            default: "secret",
            about: "secret: send the secret over HTTPS; signed: sign each call with it instead",
        },
        ConfigDoc {
            name: "last_identity_handling",
            default: "fail",
            about: "when the connection is the account's last identity: soft, remove or fail",
        },
        ConfigDoc {
            name: "remove_login_id",
            default: "false",
            about: "also remove the login id created from the connection",
        },
        ConfigDoc {
            name: "allow_all_providers",
            default: "false",
            about: "let rows with an empty provider remove every connection",
        },
    ],
    read_api: true,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    data_center: Option<String>,
    api_key: Option<String>,
    user_key: Option<String>,
    secret: Option<String>,
    auth: Option<String>,
    last_identity_handling: Option<String>,
    #[serde(default)]
    remove_login_id: bool,
    #[serde(default)]
    allow_all_providers: bool,
}

#[derive(Debug)]
enum Auth {
    /// The secret travels in the form body.
    Secret(String),
    /// The secret, base64-decoded, keys an HMAC-SHA1 signature; it never travels.
    Signed(Vec<u8>),
}

/// One API method's URL, and its normalised form for the signature base string.
#[derive(Debug)]
struct Endpoint {
    url: String,
    signing_url: String,
}

impl Endpoint {
    fn new(url: Url) -> Endpoint {
        // OAuth1 normalisation as the official SDKs do it: lower-case scheme and host, the port
        // only when it is not the scheme's default (the url crate drops default ports), the path.
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let signing_url = format!("{}://{host}{port}{}", url.scheme(), url.path());
        Endpoint {
            url: url.to_string(),
            signing_url,
        }
    }
}

#[derive(Debug)]
pub struct Gigya {
    remove: Endpoint,
    read: Endpoint,
    api_key: String,
    user_key: String,
    auth: Auth,
    last_identity_handling: String,
    remove_login_id: bool,
    allow_all_providers: bool,
}

impl Gigya {
    /// Validate and normalise a row ([`Adapter::prepare`] adds the partial key on failure).
    fn prepare_fields(&self, fields: &Fields) -> Result<Prepared, Invalid> {
        let uid = fields
            .get("uid")
            .ok_or_else(|| Invalid::new("uid", "is required"))?;
        max_chars("uid", uid, MAX_UID)?;
        // Provider names are lower-case on Gigya's side; rows differing only in case are one link.
        let provider = fields.get("provider").unwrap_or("").to_lowercase();
        if provider.is_empty() && !self.allow_all_providers {
            return Err(Invalid::new(
                "provider",
                "is required (an empty provider removes every connection: set \
                 allow_all_providers = true to allow that)",
            ));
        }
        if provider == ALL_PROVIDERS {
            return Err(Invalid::new(
                "provider",
                "must be a provider name (leave it empty to remove every connection)",
            ));
        }
        max_chars("provider", &provider, MAX_PROVIDER)?;
        let remove_login_id = match fields.get("remove_login_id") {
            None => self.remove_login_id,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(_) => return Err(Invalid::new("remove_login_id", "must be true or false")),
        };
        let last_identity_handling = match fields.get("last_identity_handling") {
            None => self.last_identity_handling.clone(),
            Some(v) => parse_last_identity_handling(v).ok_or_else(|| {
                Invalid::new("last_identity_handling", "must be soft, remove or fail")
            })?,
        };
        let cid = fields.get("cid").unwrap_or("");
        max_chars("cid", cid, MAX_CID)?;
        let key_provider = if provider.is_empty() {
            ALL_PROVIDERS
        } else {
            &provider
        };
        let key = key(uid, key_provider);
        let mut params = Params::new();
        params.set("uid", uid);
        params.set("provider", provider);
        params.set("last_identity_handling", last_identity_handling);
        params.set("remove_login_id", remove_login_id.to_string());
        params.set("cid", cid);
        Ok(Prepared { key, params })
    }

    pub fn from_config(
        table: toml::Table,
        base_url: Option<Url>,
    ) -> Result<(Self, Url), ConfigError> {
        let config: Config = parse_config(table)?;
        let data_center = match &config.data_center {
            None => None,
            Some(dc) => {
                let dc = dc.trim().to_ascii_lowercase();
                let host = DATA_CENTERS
                    .iter()
                    .find(|(name, _)| *name == dc)
                    .map(|(_, host)| *host)
                    .ok_or_else(|| {
                        ConfigError::new(
                            "data_center",
                            format!("must be one of {}", data_center_names()),
                        )
                    })?;
                Some(host)
            }
        };
        let (remove_url, read_url) = match (&base_url, data_center) {
            (Some(base), _) => {
                let base = base.as_str().trim_end_matches('/');
                (
                    format!("{base}/{REMOVE_METHOD}"),
                    format!("{base}/{READ_METHOD}"),
                )
            }
            (None, Some(host)) => (
                format!("https://socialize.{host}/{REMOVE_METHOD}"),
                format!("https://accounts.{host}/{READ_METHOD}"),
            ),
            (None, None) => {
                return Err(ConfigError::new(
                    "data_center",
                    format!(
                        "required (or give base_url): one of {}",
                        data_center_names()
                    ),
                ));
            }
        };
        let parse =
            |text: String| Url::parse(&text).expect("a base URL plus a method name is a URL");
        let (remove_url, read_url) = (parse(remove_url), parse(read_url));
        let required = |key: &str, value: Option<String>| {
            value
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| ConfigError::new(key, "required (and not empty)"))
        };
        let api_key = required("api_key", config.api_key)?;
        let user_key = required("user_key", config.user_key)?;
        let secret = required("secret", config.secret)?;
        let auth = match config.auth.as_deref().map(str::trim).unwrap_or("secret") {
            "secret" => Auth::Secret(secret),
            "signed" => Auth::Signed(BASE64.decode(secret.as_bytes()).map_err(|_| {
                // Never echo the value: it is a credential.
                ConfigError::new(
                    "secret",
                    "must be base64 (as Gigya shows it) for auth = \"signed\"",
                )
            })?),
            _ => return Err(ConfigError::new("auth", "must be \"secret\" or \"signed\"")),
        };
        let last_identity_handling = match config.last_identity_handling {
            None => DEFAULT_LAST_IDENTITY_HANDLING.to_string(),
            Some(v) => parse_last_identity_handling(&v).ok_or_else(|| {
                ConfigError::new("last_identity_handling", "must be soft, remove or fail")
            })?,
        };
        let returned = match &base_url {
            Some(url) => url.clone(),
            None => remove_url.join("/").expect("an https URL can be joined"),
        };
        Ok((
            Gigya {
                remove: Endpoint::new(remove_url),
                read: Endpoint::new(read_url),
                api_key,
                user_key,
                auth,
                last_identity_handling,
                remove_login_id: config.remove_login_id,
                allow_all_providers: config.allow_all_providers,
            },
            returned,
        ))
    }

    /// The form of a call to `endpoint` with the method's own `params`, plus credentials. Signed
    /// calls carry a fresh timestamp and nonce, so a rebuilt request (after 403002) is re-signed.
    fn request(&self, endpoint: &Endpoint, params: Vec<(String, String)>) -> WireRequest {
        let mut form = vec![
            ("apiKey".to_string(), self.api_key.clone()),
            ("userKey".to_string(), self.user_key.clone()),
        ];
        form.extend(params);
        form.push(("format".into(), "json".into()));
        form.push(("httpStatusCodes".into(), "false".into()));
        match &self.auth {
            Auth::Secret(secret) => {
                let req = with_fields(WireRequest::new(Method::POST, &endpoint.url), form);
                req.secret_field("secret", secret)
            }
            Auth::Signed(key) => {
                let timestamp = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let nonce = format!("{:032x}", rand::random::<u128>());
                let sig = sign(key, &endpoint.signing_url, &mut form, timestamp, &nonce);
                let req = with_fields(WireRequest::new(Method::POST, &endpoint.url), form);
                // Not a credential, but redacted anyway: it is of no use in a report.
                req.secret_field("sig", sig)
            }
        }
    }
}

/// What the HTTP layer of an answer says, before its `errorCode` is looked at. With
/// `httpStatusCodes=false` Gigya answers HTTP 200 with a JSON object holding a numeric
/// `errorCode`; 429 and 408/5xx come from whatever fronts it and are paced or retried whatever
/// their body. Everything else is not Gigya's answer.
fn gigya_body(answer: &WireAnswer) -> Result<(Value, i64), Class> {
    let status = answer.status;
    if let Some(class) = http_class::transient_class(answer, &[], || answer.text_snippet()) {
        return Err(class);
    }
    match status {
        200 => {}
        other => {
            return Err(Class::Unexpected(format!(
                "HTTP {other}; Gigya answers HTTP 200 when asked with httpStatusCodes=false"
            )));
        }
    }
    let body = answer.parse_json().filter(Value::is_object);
    match body.as_ref().and_then(error_code) {
        Some(code) => Ok((body.unwrap_or_default(), code)),
        None => Err(Class::Unexpected(
            "a 200 whose body is not Gigya's JSON with a numeric errorCode".into(),
        )),
    }
}

/// Classify an `errorCode` other than 0 (docs/vendors.md, Gigya table).
fn classify_error(answer: &WireAnswer, code: i64, body: &Value) -> Class {
    let what = error_text(code, body);
    match code {
        403005 => Class::Absent(format!("the user was not found ({what})")),
        403048 => Class::RateLimit(answer.retry_after(SystemTime::now())),
        500000 | 500001 | 504001 | 504002 => Class::Retry(what),
        403002 => Class::Reauth(format!("gigya: the signed request expired ({what})")),
        301001 => Class::Halt(wrong_data_center(body)),
        400001 | 400008 | 403003 | 403006 | 403007 => Class::Halt(format!(
            "gigya refused the credentials or their permissions ({what}); check api_key, \
             user_key, secret and the application's permissions"
        )),
        _ => Class::Failed(what),
    }
}

fn verdict(answer: &WireAnswer, class: Class, body: &Value) -> Verdict {
    let request_id = body
        .get("callId")
        .and_then(Value::as_str)
        .map(str::to_string);
    Verdict::new(class)
        .code(error_code(body).map(|c| c.to_string()))
        .request_id(request_id.or_else(|| answer.request_id_header()))
}

fn data_center_names() -> String {
    DATA_CENTERS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn with_fields(req: WireRequest, form: Vec<(String, String)>) -> WireRequest {
    form.into_iter()
        .fold(req, |req, (name, value)| req.field(name, value))
}

/// Add `timestamp` and `nonce` to `params` and return the signature over them: the OAuth1 base
/// string `POST&enc(url)&enc(sorted k=enc(v) pairs)`, HMAC-SHA1 keyed by the decoded secret,
/// base64-encoded. `signing_url` is already normalised ([`Endpoint::new`]).
fn sign(
    key: &[u8],
    signing_url: &str,
    params: &mut Vec<(String, String)>,
    timestamp: u64,
    nonce: &str,
) -> String {
    params.push(("timestamp".into(), timestamp.to_string()));
    params.push(("nonce".into(), nonce.to_string()));
    let base = base_string(signing_url, params);
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(base.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

fn base_string(signing_url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let query = sorted
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    format!("POST&{}&{}", encode(signing_url), encode(&query))
}

/// `errorCode` as a number; some proxies and old answers send it as a string.
fn error_code(body: &Value) -> Option<i64> {
    match body.get("errorCode")? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `errorCode errorMessage: errorDetails`, with whichever parts the answer has.
fn error_text(code: i64, body: &Value) -> String {
    let text = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    match (text("errorMessage"), text("errorDetails")) {
        (Some(m), Some(d)) => format!("{code} {m}: {d}"),
        (Some(m), None) => format!("{code} {m}"),
        (None, Some(d)) => format!("{code}: {d}"),
        (None, None) => format!("errorCode {code}"),
    }
}

/// 301001 names the data center the API key lives in as `apiDomain` (e.g. `eu1.gigya.com`).
fn wrong_data_center(body: &Value) -> String {
    let domain = body
        .get("apiDomain")
        .and_then(Value::as_str)
        .map(|d| d.trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty());
    let Some(domain) = domain else {
        return "gigya: wrong data center, and the answer names no apiDomain: check data_center"
            .into();
    };
    let bare = ["socialize.", "accounts."]
        .iter()
        .find_map(|p| domain.strip_prefix(p))
        .unwrap_or(&domain);
    match DATA_CENTERS.iter().find(|(_, host)| *host == bare) {
        Some((dc, _)) => format!(
            "gigya: wrong data center; this API key lives in {dc} ({domain}): set data_center = \"{dc}\""
        ),
        None => format!(
            "gigya: wrong data center; this API key lives at {domain}, which is not a known \
             data_center ({}): set base_url = \"https://{domain}\"",
            data_center_names()
        ),
    }
}

fn parse_last_identity_handling(value: &str) -> Option<String> {
    let value = value.trim().to_ascii_lowercase();
    LAST_IDENTITY_HANDLING
        .contains(&value.as_str())
        .then_some(value)
}

fn max_chars(field: &'static str, value: &str, max: usize) -> Result<(), Invalid> {
    if value.chars().count() > max {
        return Err(Invalid::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// A row's key from its parts: `{uid}/{provider or *}`.
fn key(uid: &str, provider: &str) -> Key {
    Key(format!("{uid}/{provider}"))
}

/// As much of the key as an invalid row's raw fields give (missing parts empty; the provider
/// lower-cased as for a valid row).
fn partial_key(fields: &Fields) -> Key {
    key(
        fields.get("uid").unwrap_or(""),
        &fields.get("provider").unwrap_or("").to_lowercase(),
    )
}

impl Adapter for Gigya {
    fn prepare(&self, fields: &Fields) -> Result<Prepared, Invalid> {
        self.prepare_fields(fields)
            .map_err(|invalid| invalid.with_key(partial_key(fields)))
    }

    fn build(&self, row: &Prepared, _step: u8, _token: Option<&str>) -> WireRequest {
        let p = &row.params;
        let mut params = vec![("UID".to_string(), p.get("uid").to_string())];
        if !p.get("provider").is_empty() {
            params.push(("provider".into(), p.get("provider").into()));
        }
        params.push((
            "lastIdentityHandling".into(),
            p.get("last_identity_handling").into(),
        ));
        if p.get("remove_login_id") == "true" {
            params.push(("removeLoginID".into(), "true".into()));
        }
        if !p.get("cid").is_empty() {
            params.push(("cid".into(), p.get("cid").into()));
        }
        self.request(&self.remove, params)
    }

    fn classify(&self, _row: &Prepared, _step: u8, answer: &WireAnswer) -> Verdict {
        let (body, code) = match gigya_body(answer) {
            Ok(parsed) => parsed,
            Err(class) => return verdict(answer, class, &answer.json()),
        };
        let class = match code {
            0 => Class::Unlinked,
            _ => classify_error(answer, code, &body),
        };
        verdict(answer, class, &body)
    }

    fn can_read(&self) -> bool {
        true
    }

    fn read(&self, row: &Prepared, _token: Option<&str>) -> Option<WireRequest> {
        let params = vec![
            ("UID".to_string(), row.params.get("uid").to_string()),
            ("include".to_string(), "identities-active".to_string()),
        ];
        Some(self.request(&self.read, params))
    }

    fn classify_read(&self, row: &Prepared, answer: &WireAnswer) -> Verdict {
        let (body, code) = match gigya_body(answer) {
            Ok(parsed) => parsed,
            Err(class) => return verdict(answer, class, &answer.json()),
        };
        if code != 0 {
            let class = classify_error(answer, code, &body);
            return verdict(answer, class, &body);
        }
        let identities = body
            .get("identities")
            .and_then(Value::as_array)
            .filter(|ids| {
                ids.iter()
                    .all(|i| i.get("provider").is_some_and(Value::is_string))
            });
        let Some(identities) = identities else {
            let class = Class::Unexpected(
                "an account answer (errorCode 0) without an identities array of objects naming \
                 their provider"
                    .into(),
            );
            return verdict(answer, class, &body);
        };
        let provider = row.params.get("provider");
        let providers = identities
            .iter()
            .filter_map(|identity| identity.get("provider").and_then(Value::as_str));
        // An all-providers row removes every social connection; the `site` identity (the
        // account's own login) is not a connection, so only the others count as present.
        let linked = if provider.is_empty() {
            providers.clone().any(|p| !p.eq_ignore_ascii_case("site"))
        } else {
            providers.clone().any(|p| p.eq_ignore_ascii_case(provider))
        };
        let class = if linked {
            Class::Present
        } else if provider.is_empty() {
            Class::Absent("the account has no connection left".into())
        } else {
            Class::Absent(format!("the account has no {provider} connection"))
        };
        verdict(answer, class, &body)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// base64 of the 16 bytes "unlinker-secret!"; used by the signature vector below.
    const SECRET: &str = "dW5saW5rZXItc2VjcmV0IQ==";

    fn adapter(extra: &str) -> Gigya {
        let src = format!(
            "data_center = \"eu1\"\napi_key = \"3_apik\"\nuser_key = \"AUK\"\nsecret = \"{SECRET}\"\n{extra}"
        );
        Gigya::from_config(toml::from_str(&src).unwrap(), None)
            .unwrap()
            .0
    }

    fn row(a: &Gigya, pairs: &[(&str, &str)]) -> Prepared {
        a.prepare(&Fields::from_pairs(pairs.iter().copied()))
            .unwrap()
    }

    fn answer(status: u16, body: &str) -> WireAnswer {
        WireAnswer::new(status, body.to_string())
    }

    #[test]
    fn builds_form_post_with_secret_in_the_body() {
        let a = adapter("");
        let r = row(&a, &[("uid", "_guid_a b"), ("provider", "Facebook")]);
        assert_eq!(r.key.0, "_guid_a b/facebook");
        let req = a.build(&r, 0, None);
        assert_eq!(req.method, Method::POST);
        assert_eq!(
            req.url,
            "https://socialize.eu1.gigya.com/socialize.removeConnection"
        );
        assert!(req.headers.is_empty());
        let mut form = req.form.clone();
        form.sort();
        let expected: Vec<(String, String)> = [
            ("UID", "_guid_a b"),
            ("apiKey", "3_apik"),
            ("format", "json"),
            ("httpStatusCodes", "false"),
            ("lastIdentityHandling", "fail"),
            ("provider", "facebook"),
            ("secret", SECRET),
            ("userKey", "AUK"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(form, expected);
        let text = req.describe();
        assert!(!text.contains(SECRET), "{text}");
        assert!(text.contains("secret=[redacted]"));
        assert!(text.contains("UID=_guid_a%20b"));
        assert!(!req.url.contains("secret"));
    }

    #[test]
    fn optional_parameters_follow_row_and_config() {
        let a = adapter("remove_login_id = true\nlast_identity_handling = \"soft\"");
        let req = a.build(&row(&a, &[("uid", "u"), ("provider", "line")]), 0, None);
        assert_eq!(req.form_value("removeLoginID"), Some("true"));
        assert_eq!(req.form_value("lastIdentityHandling"), Some("soft"));
        assert_eq!(req.form_value("cid"), None);
        let r = row(
            &a,
            &[
                ("uid", "u"),
                ("provider", "line"),
                ("remove_login_id", "FALSE"),
                ("last_identity_handling", "remove"),
                ("cid", "gdpr-2026"),
            ],
        );
        let req = a.build(&r, 0, None);
        assert_eq!(req.form_value("removeLoginID"), None);
        assert_eq!(req.form_value("lastIdentityHandling"), Some("remove"));
        assert_eq!(req.form_value("cid"), Some("gdpr-2026"));
        let plain = adapter("");
        let req = plain.build(
            &row(
                &plain,
                &[("uid", "u"), ("provider", "x"), ("remove_login_id", "true")],
            ),
            0,
            None,
        );
        assert_eq!(req.form_value("removeLoginID"), Some("true"));
    }

    #[test]
    fn all_providers_row_omits_provider() {
        let strict = adapter("");
        let err = strict
            .prepare(&Fields::from_pairs([("uid", "u")]))
            .unwrap_err();
        assert_eq!(err.field, "provider");
        assert!(err.rule.contains("allow_all_providers"));
        let a = adapter("allow_all_providers = true");
        let r = row(&a, &[("uid", "u")]);
        assert_eq!(r.key.0, "u/*");
        let req = a.build(&r, 0, None);
        assert_eq!(req.form_value("provider"), None);
        assert_eq!(req.form_value("UID"), Some("u"));
        assert_eq!(
            a.prepare(&Fields::from_pairs([("uid", "u"), ("provider", "*")]))
                .unwrap_err()
                .field,
            "provider"
        );
    }

    #[test]
    fn every_data_center_host() {
        let expected = [
            ("us1", "us1.gigya.com"),
            ("eu1", "eu1.gigya.com"),
            ("eu2", "eu2.gigya.com"),
            ("au1", "au1.gigya.com"),
            ("ru1", "ru1.gigya.com"),
            ("global", "global.gigya.com"),
            ("cn1", "cn1.sapcdm.cn"),
        ];
        assert_eq!(DATA_CENTERS, expected);
        for (dc, host) in expected {
            let src = format!(
                "data_center = \"{}\"\napi_key = \"k\"\nuser_key = \"u\"\nsecret = \"s\"",
                dc.to_uppercase()
            );
            let (a, url) = Gigya::from_config(toml::from_str(&src).unwrap(), None).unwrap();
            assert_eq!(url.as_str(), format!("https://socialize.{host}/"));
            let r = row(&a, &[("uid", "u"), ("provider", "x")]);
            assert_eq!(
                a.build(&r, 0, None).url,
                format!("https://socialize.{host}/socialize.removeConnection")
            );
            assert_eq!(
                a.read(&r, None).unwrap().url,
                format!("https://accounts.{host}/accounts.getAccountInfo")
            );
        }
    }

    #[test]
    fn base_url_overrides_the_data_center() {
        let src = "api_key = \"k\"\nuser_key = \"u\"\nsecret = \"s\"";
        let base = Url::parse("http://127.0.0.1:8085/gigya/").unwrap();
        let (a, url) =
            Gigya::from_config(toml::from_str(src).unwrap(), Some(base.clone())).unwrap();
        assert_eq!(url, base);
        let r = row(&a, &[("uid", "u"), ("provider", "x")]);
        assert_eq!(
            a.build(&r, 0, None).url,
            "http://127.0.0.1:8085/gigya/socialize.removeConnection"
        );
        assert_eq!(
            a.read(&r, None).unwrap().url,
            "http://127.0.0.1:8085/gigya/accounts.getAccountInfo"
        );
        assert_eq!(
            a.remove.signing_url,
            "http://127.0.0.1:8085/gigya/socialize.removeConnection"
        );
        let default_port =
            Endpoint::new(Url::parse("HTTPS://Socialize.EU1.gigya.com:443/m").unwrap());
        assert_eq!(
            default_port.signing_url,
            "https://socialize.eu1.gigya.com/m"
        );
    }

    /// Known-answer vector, computed independently of this code with:
    ///
    /// python3 -c 'import hmac,hashlib,base64,urllib.parse as u;q=lambda s:u.quote(s,safe="~");p={"apiKey":"3_apik","userKey":"AUK","UID":"_guid_a b","provider":"facebook","lastIdentityHandling":"fail","format":"json","httpStatusCodes":"false","timestamp":"1700000000","nonce":"0123abcd"};qs="&".join(k+"="+q(p[k]) for k in sorted(p));b="POST&"+q("https://socialize.eu1.gigya.com/socialize.removeConnection")+"&"+q(qs);print(b);print(base64.b64encode(hmac.new(base64.b64decode("dW5saW5rZXItc2VjcmV0IQ=="),b.encode(),hashlib.sha1).digest()).decode())'
    #[test]
    fn signature_known_answer() {
        let mut params: Vec<(String, String)> = [
            ("apiKey", "3_apik"),
            ("userKey", "AUK"),
            ("UID", "_guid_a b"),
            ("provider", "facebook"),
            ("lastIdentityHandling", "fail"),
            ("format", "json"),
            ("httpStatusCodes", "false"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let key = BASE64.decode(SECRET).unwrap();
        let url = "https://socialize.eu1.gigya.com/socialize.removeConnection";
        let sig = sign(&key, url, &mut params, 1_700_000_000, "0123abcd");
        assert_eq!(
            base_string(url, &params),
            "POST&https%3A%2F%2Fsocialize.eu1.gigya.com%2Fsocialize.removeConnection&\
             UID%3D_guid_a%2520b%26apiKey%3D3_apik%26format%3Djson%26httpStatusCodes%3Dfalse%26\
             lastIdentityHandling%3Dfail%26nonce%3D0123abcd%26provider%3Dfacebook%26\
             timestamp%3D1700000000%26userKey%3DAUK"
        );
        assert_eq!(sig, "noGbtk6NE7pRthxhE1G8JQY3NdI=");
        assert_eq!(
            params[params.len() - 2..],
            [
                ("timestamp".to_string(), "1700000000".to_string()),
                ("nonce".to_string(), "0123abcd".to_string())
            ]
        );
    }

    #[test]
    fn signed_mode_sends_a_signature_and_no_secret() {
        let a = adapter("auth = \"signed\"");
        let r = row(&a, &[("uid", "u"), ("provider", "facebook")]);
        let req = a.build(&r, 0, None);
        assert_eq!(req.form_value("secret"), None);
        let timestamp: u64 = req.form_value("timestamp").unwrap().parse().unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now.abs_diff(timestamp) < 5);
        let nonce = req.form_value("nonce").unwrap().to_string();
        assert_eq!(nonce.len(), 32);
        // The sig is over everything else that is sent.
        let mut unsigned: Vec<(String, String)> = req
            .form
            .iter()
            .filter(|(k, _)| !["sig", "timestamp", "nonce"].contains(&k.as_str()))
            .cloned()
            .collect();
        let key = BASE64.decode(SECRET).unwrap();
        let expected = sign(
            &key,
            &a.remove.signing_url,
            &mut unsigned,
            timestamp,
            &nonce,
        );
        assert_eq!(req.form_value("sig"), Some(expected.as_str()));
        let text = req.describe();
        assert!(!text.contains(SECRET));
        assert!(!text.contains(&expected));
        // A rebuilt request (after 403002) has a fresh nonce.
        assert_ne!(
            a.build(&r, 0, None).form_value("nonce"),
            Some(nonce.as_str())
        );
        // The read is signed the same way.
        let read = a.read(&r, None).unwrap();
        assert_eq!(read.form_value("secret"), None);
        assert!(read.form_value("sig").is_some());
        assert_eq!(read.form_value("include"), Some("identities-active"));
    }

    #[test]
    fn invalid_rows_carry_the_key_parts_they_give() {
        let a = adapter("");
        let key = |pairs: &[(&str, &str)]| {
            let err = a.prepare(&Fields::from_pairs(pairs.iter().copied()));
            err.unwrap_err().key.map(|k| k.0)
        };
        assert_eq!(
            key(&[("provider", "Facebook")]).as_deref(),
            Some("/facebook")
        );
        assert_eq!(key(&[("uid", "u1")]).as_deref(), Some("u1/"));
        assert_eq!(
            key(&[
                ("uid", "u1"),
                ("provider", "x"),
                ("remove_login_id", "maybe")
            ])
            .as_deref(),
            Some("u1/x")
        );
    }

    #[test]
    fn validates_rows() {
        let a = adapter("");
        let bad = |pairs: &[(&str, &str)]| {
            let err = a
                .prepare(&Fields::from_pairs(pairs.iter().copied()))
                .unwrap_err();
            Invalid { key: None, ..err }
        };
        assert_eq!(
            bad(&[("provider", "x")]),
            Invalid::new("uid", "is required")
        );
        let long_uid = "u".repeat(257);
        assert_eq!(
            bad(&[("uid", &long_uid), ("provider", "x")]),
            Invalid::new("uid", "must be at most 256 characters")
        );
        assert!(
            a.prepare(&Fields::from_pairs([
                ("uid", "é".repeat(256)),
                ("provider", "x".into())
            ]))
            .is_ok()
        );
        let long_provider = "p".repeat(51);
        assert_eq!(
            bad(&[("uid", "u"), ("provider", &long_provider)]),
            Invalid::new("provider", "must be at most 50 characters")
        );
        assert_eq!(
            bad(&[("uid", "u"), ("provider", "x"), ("remove_login_id", "yes")]),
            Invalid::new("remove_login_id", "must be true or false")
        );
        assert_eq!(
            bad(&[
                ("uid", "u"),
                ("provider", "x"),
                ("last_identity_handling", "keep")
            ]),
            Invalid::new("last_identity_handling", "must be soft, remove or fail")
        );
        let long_cid = "c".repeat(101);
        assert_eq!(
            bad(&[("uid", "u"), ("provider", "x"), ("cid", &long_cid)]),
            Invalid::new("cid", "must be at most 100 characters")
        );
        let ok = row(
            &a,
            &[("uid", "u"), ("provider", "x"), ("cid", &"c".repeat(100))],
        );
        assert_eq!(ok.params.get("cid").len(), 100);
    }

    #[test]
    fn classification_table() {
        let a = adapter("");
        let r = row(&a, &[("uid", "u"), ("provider", "facebook")]);
        let verdict = |body: &str| a.classify(&r, 0, &answer(200, body));
        let class = |body: &str| verdict(body).class;
        let ok = verdict(r#"{"callId":"c0ffee","errorCode":0,"statusCode":200}"#);
        assert_eq!(ok.class, Class::Unlinked);
        assert_eq!(ok.vendor_code.as_deref(), Some("0"));
        assert_eq!(ok.request_id.as_deref(), Some("c0ffee"));
        let absent =
            verdict(r#"{"callId":"c1","errorCode":403005,"errorMessage":"Unauthorized user"}"#);
        assert_eq!(
            absent.class,
            Class::Absent("the user was not found (403005 Unauthorized user)".into())
        );
        assert_eq!(absent.vendor_code.as_deref(), Some("403005"));
        assert_eq!(absent.request_id.as_deref(), Some("c1"));
        assert_eq!(class(r#"{"errorCode":403048}"#), Class::RateLimit(None));
        let limited = a.classify(
            &r,
            0,
            &answer(200, r#"{"errorCode":403048}"#).with_header("retry-after", "20"),
        );
        assert_eq!(
            limited.class,
            Class::RateLimit(Some(Duration::from_secs(20)))
        );
        for code in [500000, 500001, 504001, 504002] {
            let v = verdict(&format!(
                r#"{{"errorCode":{code},"errorMessage":"General Server Error"}}"#
            ));
            assert_eq!(
                v.class,
                Class::Retry(format!("{code} General Server Error"))
            );
            assert_eq!(v.vendor_code, Some(code.to_string()));
        }
        assert!(
            matches!(class(r#"{"errorCode":403002,"errorMessage":"Request has expired"}"#), Class::Reauth(m) if m.contains("Request has expired"))
        );
        assert_eq!(
            class(r#"{"errorCode":301001,"errorMessage":"Invalid data center","apiDomain":"eu1.gigya.com"}"#),
            Class::Halt(
                "gigya: wrong data center; this API key lives in eu1 (eu1.gigya.com): set data_center = \"eu1\"".into()
            )
        );
        assert!(
            matches!(class(r#"{"errorCode":301001,"apiDomain":"socialize.cn1.sapcdm.cn"}"#), Class::Halt(m) if m.contains("set data_center = \"cn1\""))
        );
        assert!(
            matches!(class(r#"{"errorCode":301001,"apiDomain":"xx9.example.com"}"#), Class::Halt(m) if m.contains("xx9.example.com"))
        );
        assert!(
            matches!(class(r#"{"errorCode":301001}"#), Class::Halt(m) if m.contains("check data_center"))
        );
        for code in [400001, 400008, 403003, 403006, 403007] {
            let v = verdict(&format!(
                r#"{{"errorCode":{code},"errorMessage":"Permission denied"}}"#
            ));
            assert!(
                matches!(&v.class, Class::Halt(m) if m.contains(&format!("{code} Permission denied"))),
                "{code}"
            );
            assert_eq!(v.vendor_code, Some(code.to_string()));
        }
        for code in [400002, 400006, 409001, 403120] {
            let v = verdict(&format!(
                r#"{{"errorCode":{code},"errorMessage":"Invalid parameter value","errorDetails":"provider: nope"}}"#
            ));
            assert_eq!(
                v.class,
                Class::Failed(format!("{code} Invalid parameter value: provider: nope"))
            );
        }
        // Only HTTP 200 carries Gigya's answer; 429 and 5xx are paced or retried whatever the body.
        assert!(matches!(
            a.classify(&r, 0, &answer(500, r#"{"errorCode":0}"#)).class,
            Class::Retry(_)
        ));
        assert_eq!(
            a.classify(&r, 0, &answer(429, r#"{"errorCode":400006}"#))
                .class,
            Class::RateLimit(None)
        );
        assert_eq!(
            a.classify(&r, 0, &answer(429, "slow down")).class,
            Class::RateLimit(None)
        );
        assert!(
            matches!(a.classify(&r, 0, &answer(502, "<html>")).class, Class::Retry(m) if m.starts_with("HTTP 502"))
        );
        assert!(matches!(
            a.classify(&r, 0, &answer(200, "<html>")).class,
            Class::Unexpected(_)
        ));
        assert!(matches!(
            a.classify(&r, 0, &answer(403, "{}")).class,
            Class::Unexpected(_)
        ));
        let none = a.classify(&r, 0, &answer(503, ""));
        assert_eq!(none.vendor_code, None);
    }

    const HTML: &str = "<!DOCTYPE html><html><body><h1>Not Found</h1></body></html>";
    const NO: &[(&str, &str)] = &[];
    const JSON: &[(&str, &str)] = &[("content-type", "application/json")];
    const AS_HTML: &[(&str, &str)] = &[("content-type", "text/html")];

    type Row<'a> = (u16, &'a [(&'static str, &'a str)], &'a str, &'a str);

    /// (status, headers, body) → class name, for `classify` or `classify_read` (`read`).
    fn check_table(read: bool, table: &[Row<'_>]) {
        let a = adapter("");
        let r = row(&a, &[("uid", "u"), ("provider", "facebook")]);
        for (status, headers, body, want) in table {
            let answer = headers
                .iter()
                .fold(answer(*status, body), |ans, (n, v)| ans.with_header(n, v));
            let v = if read {
                a.classify_read(&r, &answer)
            } else {
                a.classify(&r, 0, &answer)
            };
            assert_eq!(
                v.class.name(),
                *want,
                "read {read}: {status} {headers:?} {body:?} → {:?}",
                v.class
            );
        }
    }

    /// The errorCode rows removeConnection and getAccountInfo share (docs/vendors.md, Gigya), and the
    /// answers that are not Gigya's.
    const ERROR_ROWS: &[Row<'static>] = &[
        (
            200,
            JSON,
            r#"{"errorCode":403005,"errorMessage":"Unauthorized user"}"#,
            "absent",
        ),
        (200, JSON, r#"{"errorCode":"403005"}"#, "absent"),
        (200, JSON, r#"{"errorCode":403048}"#, "rate-limit"),
        (200, JSON, r#"{"errorCode":500000}"#, "retry"),
        (200, JSON, r#"{"errorCode":500001}"#, "retry"),
        (200, JSON, r#"{"errorCode":504001}"#, "retry"),
        (200, JSON, r#"{"errorCode":504002}"#, "retry"),
        (200, JSON, r#"{"errorCode":403002}"#, "reauth"),
        (
            200,
            JSON,
            r#"{"errorCode":301001,"apiDomain":"us1.gigya.com"}"#,
            "halt",
        ),
        (200, JSON, r#"{"errorCode":400001}"#, "halt"),
        (200, JSON, r#"{"errorCode":400008}"#, "halt"),
        (200, JSON, r#"{"errorCode":403003}"#, "halt"),
        (200, JSON, r#"{"errorCode":403006}"#, "halt"),
        (200, JSON, r#"{"errorCode":403007}"#, "halt"),
        // "anything else" is documented as failed, with Gigya's message.
        (200, JSON, r#"{"errorCode":400002}"#, "failed"),
        (200, JSON, r#"{"errorCode":400006}"#, "failed"),
        (200, JSON, r#"{"errorCode":409030}"#, "failed"),
        (200, JSON, r#"{"errorCode":123}"#, "failed"),
        // Not Gigya's JSON.
        (200, AS_HTML, HTML, "unexpected"),
        (200, NO, "", "unexpected"),
        (200, JSON, "{}", "unexpected"),
        (200, JSON, r#"{"foo":1}"#, "unexpected"),
        (200, JSON, r#"{"errorCode":"zero"}"#, "unexpected"),
        (200, JSON, r#"{"errorCode":0.5}"#, "unexpected"),
        (200, JSON, r#"{"errorCode":null}"#, "unexpected"),
        (200, JSON, r#"[{"errorCode":0}]"#, "unexpected"),
        // HTTP statuses Gigya (with httpStatusCodes=false) does not send.
        (404, AS_HTML, HTML, "unexpected"),
        (404, JSON, r#"{"errorCode":403005}"#, "unexpected"),
        (403, JSON, r#"{"errorCode":403007}"#, "unexpected"),
        (401, NO, "", "unexpected"),
        (204, NO, "", "unexpected"),
        (418, NO, "", "unexpected"),
        (302, &[("location", "/login")], "", "unexpected"),
        // What fronts Gigya may pace or fail: never an outcome.
        (429, NO, "", "rate-limit"),
        (429, AS_HTML, HTML, "rate-limit"),
        (408, NO, "", "retry"),
        (500, JSON, r#"{"errorCode":0}"#, "retry"),
        (502, AS_HTML, HTML, "retry"),
        (503, NO, "", "retry"),
    ];

    #[test]
    fn unlink_classification_table() {
        check_table(
            false,
            &[
                (
                    200,
                    JSON,
                    r#"{"callId":"c","errorCode":0,"statusCode":200}"#,
                    "unlinked",
                ),
                (200, NO, r#"{"errorCode":0}"#, "unlinked"),
            ],
        );
        check_table(false, ERROR_ROWS);
    }

    #[test]
    fn read_classification_table() {
        check_table(
            true,
            &[
                (
                    200,
                    JSON,
                    r#"{"errorCode":0,"identities":[{"provider":"site"},{"provider":"facebook"}]}"#,
                    "present",
                ),
                (
                    200,
                    JSON,
                    r#"{"errorCode":0,"identities":[{"provider":"site"}]}"#,
                    "absent",
                ),
                (200, JSON, r#"{"errorCode":0,"identities":[]}"#, "absent"),
                (200, JSON, r#"{"errorCode":0}"#, "unexpected"),
                (
                    200,
                    JSON,
                    r#"{"errorCode":0,"identities":{}}"#,
                    "unexpected",
                ),
                (
                    200,
                    JSON,
                    r#"{"errorCode":0,"identities":[{"providerUID":"1"}]}"#,
                    "unexpected",
                ),
                (
                    200,
                    JSON,
                    r#"{"errorCode":0,"identities":["facebook"]}"#,
                    "unexpected",
                ),
            ],
        );
        check_table(true, ERROR_ROWS);
    }

    #[test]
    fn read_checks_the_identities() {
        let a = adapter("allow_all_providers = true");
        let fb = row(&a, &[("uid", "u 1"), ("provider", "facebook")]);
        let all = row(&a, &[("uid", "u 1")]);
        let req = a.read(&fb, None).unwrap();
        assert_eq!(req.method, Method::POST);
        assert_eq!(
            req.url,
            "https://accounts.eu1.gigya.com/accounts.getAccountInfo"
        );
        assert_eq!(req.form_value("UID"), Some("u 1"));
        assert_eq!(req.form_value("include"), Some("identities-active"));
        assert_eq!(req.form_value("format"), Some("json"));
        assert_eq!(req.form_value("provider"), None);
        assert!(!req.describe().contains(SECRET));
        let linked = r#"{"errorCode":0,"callId":"r1","identities":[{"provider":"site"},{"provider":"facebook","providerUID":"1"}]}"#;
        let site_only = r#"{"errorCode":0,"identities":[{"provider":"site"}]}"#;
        let class = |r: &Prepared, body: &str| a.classify_read(r, &answer(200, body)).class;
        assert_eq!(class(&fb, linked), Class::Present);
        assert_eq!(class(&all, linked), Class::Present);
        assert_eq!(
            class(&fb, site_only),
            Class::Absent("the account has no facebook connection".into())
        );
        assert!(matches!(class(&all, site_only), Class::Absent(_)));
        assert!(
            matches!(class(&fb, r#"{"errorCode":403005}"#), Class::Absent(m) if m.contains("not found"))
        );
        assert_eq!(
            class(&fb, r#"{"errorCode":403048}"#),
            Class::RateLimit(None)
        );
        assert!(matches!(
            class(&fb, r#"{"errorCode":403007}"#),
            Class::Halt(_)
        ));
        assert!(matches!(
            class(&fb, r#"{"errorCode":500001}"#),
            Class::Retry(_)
        ));
        assert_eq!(
            a.classify_read(&fb, &answer(200, linked))
                .request_id
                .as_deref(),
            Some("r1")
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |src: &str| Gigya::from_config(toml::from_str(src).unwrap(), None).unwrap_err();
        let creds = "api_key = \"k\"\nuser_key = \"u\"\nsecret = \"c2VjcmV0\"";
        assert_eq!(err(creds).key, "data_center");
        assert_eq!(
            err(&format!("data_center = \"us2\"\n{creds}")).key,
            "data_center"
        );
        assert_eq!(
            err("data_center = \"us1\"\nuser_key = \"u\"\nsecret = \"s\"").key,
            "api_key"
        );
        assert_eq!(
            err("data_center = \"us1\"\napi_key = \"k\"\nsecret = \"s\"").key,
            "user_key"
        );
        assert_eq!(
            err("data_center = \"us1\"\napi_key = \"k\"\nuser_key = \"u\"").key,
            "secret"
        );
        let dc = format!("data_center = \"us1\"\n{creds}");
        assert_eq!(err(&format!("{dc}\nauth = \"oauth\"")).key, "auth");
        assert_eq!(
            err(&format!("{dc}\nlast_identity_handling = \"keep\"")).key,
            "last_identity_handling"
        );
        assert_eq!(err(&format!("{dc}\nregion = \"us1\"")).key, "region");
        let not_base64 = err(
            "data_center = \"us1\"\napi_key = \"k\"\nuser_key = \"u\"\nsecret = \"n0t base64!\"\nauth = \"signed\"",
        );
        assert_eq!(not_base64.key, "secret");
        assert!(!not_base64.to_string().contains("n0t base64!"));
    }
}
