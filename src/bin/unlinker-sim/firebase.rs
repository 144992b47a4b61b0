//! Simulated Firebase Authentication (Identity Toolkit v1): `accounts:lookup`, `accounts:update`
//! with `deleteProvider`, `accounts:batchCreate` for seeding, and a Google-style OAuth token
//! endpoint that exchanges a service-account JWT assertion for an access token.
//!
//! Written from docs/vendors.md and from the answers of Google's own Auth emulator (npm
//! `firebase-tools`), independently of the client adapter. Like the emulator it answers 200 to an
//! update naming a provider that is not linked, and lets an update remove a user's last way to
//! sign in: guarding against that is the client's job. Paths are served with and without the
//! emulator's `/identitytoolkit.googleapis.com` prefix.
//!
//! A user's sign-in methods are its links `[uid, provider_id]`; a password is the link
//! `[uid, "password"]` and a phone number `[uid, "phone"]` (seed records name them as
//! `provider_id = password` / `phone`). With `--all-linked`, a lookup of any uid sees it linked
//! to every provider in [`ALL_LINKED_PROVIDERS`] and holding a password, until each is removed.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{Method, StatusCode};
use rand::RngExt;
use serde_json::{Value, json};

use super::duration_arg;
use super::faults::Limited;
use super::state::{Link, LinkSet, Op, OpKind, Store, key_of, lock};
use super::vendor::{Answer, Record, Request, Vendor, param, required};

/// The emulator's own admin token.
pub(crate) const DEFAULT_TOKEN: &str = "owner";
pub(crate) const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

const EMULATOR_PREFIX: &str = "/identitytoolkit.googleapis.com";
const PROJECTS: &str = "/v1/projects/";
const TOKEN_PATH: &str = "/token";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Scopes that let a token call the Identity Toolkit admin API.
const SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/identitytoolkit",
    "https://www.googleapis.com/auth/cloud-platform",
];
/// What a user is linked to with `--all-linked` (plus a password).
pub(crate) const ALL_LINKED_PROVIDERS: &[&str] =
    &["google.com", "facebook.com", "apple.com", "github.com"];
/// What a lookup shows of a password (the emulator echoes the seeded hash).
const PASSWORD_HASH: &str = "c2ltLWhhc2g=";
/// A fixed creation time, so answers are reproducible.
const CREATED_AT: &str = "1700000000000";

/// Firebase credentials the simulator accepts.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Firebase")]
pub(crate) struct FirebaseOptions {
    /// Static access token accepted as `Authorization: Bearer TOKEN` (the emulator's is `owner`)
    #[arg(id = "firebase_token", long = "firebase-token", value_name = "TOKEN", default_value = DEFAULT_TOKEN)]
    pub token: String,
    /// Verify token-request assertions (RS256) with this PEM public key; without it only their
    /// claims are checked
    #[arg(
        id = "firebase_public_key",
        long = "firebase-public-key",
        value_name = "FILE"
    )]
    pub public_key: Option<PathBuf>,
    /// Lifetime of issued access tokens (`expires_in`), e.g. 3600, 10m, 0s
    #[arg(id = "firebase_token_ttl", long = "firebase-token-ttl", value_name = "DUR", default_value = "3600", value_parser = duration_arg)]
    pub token_ttl: Duration,
}

impl Default for FirebaseOptions {
    fn default() -> Self {
        FirebaseOptions {
            token: DEFAULT_TOKEN.into(),
            public_key: None,
            token_ttl: DEFAULT_TOKEN_TTL,
        }
    }
}

pub(crate) struct Firebase {
    options: FirebaseOptions,
    public_key: Option<jsonwebtoken::DecodingKey>,
    /// Issued access tokens and when they expire.
    issued: Mutex<HashMap<String, Instant>>,
    /// Users created without any sign-in method (they exist, with nothing to remove).
    bare_users: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Firebase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Firebase")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Firebase {
    pub(crate) fn new(options: &FirebaseOptions) -> anyhow::Result<Self> {
        let public_key = match &options.public_key {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!("--firebase-public-key {}: {e}", path.display())
                })?;
                Some(jsonwebtoken::DecodingKey::from_rsa_pem(&pem).map_err(|e| {
                    anyhow::anyhow!(
                        "--firebase-public-key {}: not an RSA public key: {e}",
                        path.display()
                    )
                })?)
            }
        };
        Ok(Firebase {
            options: options.clone(),
            public_key,
            issued: Mutex::new(HashMap::new()),
            bare_users: Mutex::new(HashSet::new()),
        })
    }

    fn authorized(&self, req: &Request) -> bool {
        let Some(token) = req
            .header("authorization")
            .and_then(|v| v.trim().strip_prefix("Bearer "))
            .map(str::trim)
        else {
            return false;
        };
        if token == self.options.token {
            return true;
        }
        lock(&self.issued)
            .get(token)
            .is_some_and(|expiry| Instant::now() < *expiry)
    }

    /// The OAuth 2.0 token endpoint (RFC 7523 JWT bearer grant), answering as Google's does.
    fn token(&self, req: &Request) -> Answer {
        let form = req.form_pairs();
        let grant = param(&form, "grant_type").unwrap_or("");
        if grant != JWT_BEARER {
            return oauth_error(
                "unsupported_grant_type",
                &format!("Invalid grant_type: {grant}"),
            );
        }
        let Some(assertion) = param(&form, "assertion").filter(|a| !a.is_empty()) else {
            return oauth_error("invalid_request", "Missing required parameter: assertion");
        };
        let aud = format!("http://{}{TOKEN_PATH}", req.header("host").unwrap_or(""));
        if let Err(why) = self.check_assertion(assertion, &aud) {
            return oauth_error("invalid_grant", &why).unauthorized();
        }
        let token = format!("ya29.sim-{:032x}", rand::rng().random::<u128>());
        let now = Instant::now();
        let mut issued = lock(&self.issued);
        issued.retain(|_, expiry| *expiry > now);
        issued.insert(token.clone(), now + self.options.token_ttl);
        drop(issued);
        Answer::json(
            StatusCode::OK,
            &json!({
                "access_token": token,
                "expires_in": self.options.token_ttl.as_secs(),
                "token_type": "Bearer",
            }),
        )
    }

    /// An assertion's header and claims, and its signature when a public key is configured.
    fn check_assertion(&self, assertion: &str, aud: &str) -> Result<(), String> {
        let header =
            jsonwebtoken::decode_header(assertion).map_err(|_| "Invalid JWT.".to_string())?;
        if header.alg != jsonwebtoken::Algorithm::RS256 {
            return Err("Invalid JWT: the algorithm must be RS256.".into());
        }
        let claims: Value = match &self.public_key {
            Some(key) => {
                let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
                validation.validate_aud = false;
                validation.set_required_spec_claims(&["exp", "iss"]);
                jsonwebtoken::decode::<Value>(assertion, key, &validation)
                    .map_err(|_| "Invalid JWT Signature.".to_string())?
                    .claims
            }
            None => {
                let part = assertion.split('.').nth(1).ok_or("Invalid JWT.")?;
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .map_err(|_| "Invalid JWT.")?;
                serde_json::from_slice(&bytes).map_err(|_| "Invalid JWT.")?
            }
        };
        let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or("");
        let number = |name: &str| claims.get(name).and_then(Value::as_u64).unwrap_or(0);
        if text("iss").is_empty() {
            return Err("Invalid JWT: iss is missing.".into());
        }
        if text("aud") != aud {
            return Err(format!("Invalid JWT: aud must be {aud}."));
        }
        if !text("scope").split(' ').any(|s| SCOPES.contains(&s)) {
            return Err("Invalid JWT: the scope does not allow the Identity Toolkit API.".into());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (iat, exp) = (number("iat"), number("exp"));
        if exp <= now || iat > now + 300 || exp.saturating_sub(iat) > 3600 {
            return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.".into());
        }
        Ok(())
    }

    /// `users[0]` of a lookup, as the emulator writes it; `None` when the user does not exist.
    fn user(&self, links: &mut LinkSet, uid: &str) -> Option<Value> {
        let owner = vec![uid.to_string()];
        if links.all_linked() {
            for provider in ALL_LINKED_PROVIDERS.iter().chain(&["password"]) {
                links.see(&[uid.to_string(), provider.to_string()]);
            }
        }
        let methods: Vec<String> = links.list(&owner).map(|l| l[1].clone()).collect();
        if methods.is_empty()
            && !links.owner_exists(&owner)
            && !lock(&self.bare_users).contains(uid)
        {
            return None;
        }
        let mut user = json!({"localId": uid, "createdAt": CREATED_AT});
        if methods.iter().any(|m| m == "password") {
            user["passwordHash"] = json!(PASSWORD_HASH);
            user["passwordUpdatedAt"] = json!(1_700_000_000_000u64);
        }
        let info = provider_user_info(uid, &methods);
        // The emulator leaves the list out for a user created without one.
        if !(methods.is_empty() && lock(&self.bare_users).contains(uid)) {
            user["providerUserInfo"] = info;
        }
        if methods.iter().any(|m| m == "phone") {
            user["phoneNumber"] = json!(phone_number(uid));
        }
        user["validSince"] = json!("1700000000");
        user["emailVerified"] = json!(false);
        user["disabled"] = json!(false);
        Some(user)
    }

    fn lookup(&self, body: &Value, store: &Store) -> Answer {
        let uids: Vec<&str> = body
            .get("localId")
            .and_then(Value::as_array)
            .map(|ids| ids.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let users: Vec<Value> = store.with(|links| {
            uids.iter()
                .filter_map(|uid| self.user(links, uid))
                .collect()
        });
        let mut answer = json!({"kind": "identitytoolkit#GetAccountInfoResponse"});
        if !users.is_empty() {
            answer["users"] = Value::Array(users);
        }
        Answer::json(StatusCode::OK, &answer)
    }

    fn update(&self, body: &Value, store: &Store) -> Answer {
        let Some(uid) = body.get("localId").and_then(Value::as_str) else {
            return google_error(StatusCode::BAD_REQUEST, "MISSING_LOCAL_ID");
        };
        let remove: Vec<String> = body
            .get("deleteProvider")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let remaining = store.with(|links| {
            self.user(links, uid)?;
            for provider in &remove {
                links.remove(&[uid.to_string(), provider.clone()]);
            }
            let owner = vec![uid.to_string()];
            Some(links.list(&owner).map(|l| l[1].clone()).collect::<Vec<_>>())
        });
        match remaining {
            None => google_error(StatusCode::BAD_REQUEST, "USER_NOT_FOUND"),
            Some(methods) => {
                let mut answer = json!({
                    "kind": "identitytoolkit#SetAccountInfoResponse",
                    "localId": uid,
                    "emailVerified": false,
                });
                if !(methods.is_empty() && lock(&self.bare_users).contains(uid)) {
                    answer["providerUserInfo"] = provider_user_info(uid, &methods);
                }
                if methods.iter().any(|m| m == "password") {
                    answer["passwordHash"] = json!(PASSWORD_HASH);
                }
                Answer::json(StatusCode::OK, &answer)
            }
        }
    }

    fn batch_create(&self, body: &Value, store: &Store) -> Answer {
        let users = body.get("users").and_then(Value::as_array);
        let Some(users) = users else {
            return google_error(StatusCode::BAD_REQUEST, "MISSING_USER_ACCOUNT");
        };
        for user in users {
            let Some(uid) = user.get("localId").and_then(Value::as_str) else {
                continue;
            };
            let mut methods: Vec<String> = user
                .get("providerUserInfo")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .filter_map(|p| p.get("providerId")?.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let set = |name: &str| {
                user.get(name)
                    .and_then(Value::as_str)
                    .is_some_and(|v| !v.is_empty())
            };
            if set("passwordHash") {
                methods.push("password".into());
            }
            if set("phoneNumber") {
                methods.push("phone".into());
            }
            if methods.is_empty() {
                lock(&self.bare_users).insert(uid.to_string());
            }
            store.with(|links| {
                for method in methods {
                    links.seed(vec![uid.to_string(), method]);
                }
            });
        }
        Answer::json(
            StatusCode::OK,
            &json!({"kind": "identitytoolkit#UploadAccountResponse", "error": []}),
        )
    }
}

/// `providerUserInfo` as the emulator lists it: the federated providers, then a `phone` entry
/// when the user has a phone number (a password without an email has no entry).
fn provider_user_info(uid: &str, methods: &[String]) -> Value {
    let mut info: Vec<Value> = methods
        .iter()
        .filter(|m| *m != "password" && *m != "phone")
        .map(|m| json!({"providerId": m, "rawId": format!("{m}-{uid}")}))
        .collect();
    if methods.iter().any(|m| m == "phone") {
        let phone = phone_number(uid);
        info.push(json!({"providerId": "phone", "phoneNumber": phone, "rawId": phone}));
    }
    Value::Array(info)
}

fn phone_number(uid: &str) -> String {
    let digits: u32 = uid.bytes().map(u32::from).sum::<u32>() % 10_000;
    format!("+1555555{digits:04}")
}

/// Google's JSON error body, as the emulator answers it.
fn google_error(status: StatusCode, message: &str) -> Answer {
    let mut error = json!({
        "code": status.as_u16(),
        "message": message,
        "errors": [{"message": message, "reason": "invalid", "domain": "global"}],
    });
    let named = match status {
        StatusCode::UNAUTHORIZED => Some("UNAUTHENTICATED"),
        StatusCode::FORBIDDEN => Some("PERMISSION_DENIED"),
        StatusCode::NOT_FOUND => Some("NOT_FOUND"),
        StatusCode::TOO_MANY_REQUESTS => Some("RESOURCE_EXHAUSTED"),
        StatusCode::SERVICE_UNAVAILABLE => Some("UNAVAILABLE"),
        _ => None,
    };
    if let Some(named) = named {
        error["status"] = json!(named);
    }
    Answer::json(status, &json!({ "error": error }))
}

/// Google's OAuth error body (RFC 6749 section 5.2); status 400 as Google answers.
fn oauth_error(error: &str, description: &str) -> Answer {
    Answer::json(
        StatusCode::BAD_REQUEST,
        &json!({"error": error, "error_description": description}),
    )
}

#[derive(Debug)]
pub(crate) enum Call {
    Lookup(Value),
    Update(Value),
    BatchCreate(Value),
    Token,
    BadBody,
    NotFound,
}

impl Vendor for Firebase {
    const NAME: &'static str = "firebase";
    const OWNER_LEN: usize = 1;
    type Call = Call;

    fn owns(&self, path: &str) -> bool {
        let path = path.strip_prefix(EMULATOR_PREFIX).unwrap_or(path);
        path.starts_with(PROJECTS) || path == TOKEN_PATH
    }

    fn seed(&self, record: &Record) -> Result<Link, String> {
        let uid = required(record, "uid")?;
        let provider = required(record, "provider_id")?;
        Ok(vec![uid.into(), provider.into()])
    }

    fn parse(&self, req: &Request) -> (Op, Call) {
        let path = req.path.strip_prefix(EMULATOR_PREFIX).unwrap_or(&req.path);
        if path == TOKEN_PATH {
            let call = if req.method == Method::POST {
                Call::Token
            } else {
                Call::NotFound
            };
            return (Op::new(OpKind::Token), call);
        }
        let action = path
            .strip_prefix(PROJECTS)
            .and_then(|rest| rest.split_once('/'))
            .filter(|(project, _)| !project.is_empty())
            .map(|(_, action)| action);
        let (Some(action), &Method::POST) = (action, &req.method) else {
            return (Op::new(OpKind::Other), Call::NotFound);
        };
        let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
            return (Op::new(OpKind::Other), Call::BadBody);
        };
        match action {
            "accounts:lookup" => {
                let uid = body["localId"][0].as_str().unwrap_or("").to_string();
                (Op::new(OpKind::Read).key(uid), Call::Lookup(body))
            }
            "accounts:update" => {
                let uid = body["localId"].as_str().unwrap_or("").to_string();
                let mut op = Op::new(OpKind::Unlink);
                if let [provider] = body["deleteProvider"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    && let Some(provider) = provider.as_str()
                {
                    let link: Link = vec![uid, provider.to_string()];
                    op = op.key(key_of(&link)).link(link);
                }
                (op, Call::Update(body))
            }
            "accounts:batchCreate" => (Op::new(OpKind::Other), Call::BatchCreate(body)),
            _ => (Op::new(OpKind::Other), Call::NotFound),
        }
    }

    fn answer(&self, call: Call, req: &Request, store: &Store) -> Answer {
        match call {
            Call::Token => return self.token(req),
            Call::NotFound => return google_error(StatusCode::NOT_FOUND, "Not Found"),
            _ => {}
        }
        if req.header("authorization").is_none() {
            return google_error(
                StatusCode::FORBIDDEN,
                "The request is missing a valid API key.",
            );
        }
        if !self.authorized(req) {
            return google_error(
                StatusCode::UNAUTHORIZED,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            )
            .unauthorized();
        }
        match call {
            Call::Lookup(body) => self.lookup(&body, store),
            Call::Update(body) => self.update(&body, store),
            Call::BatchCreate(body) => self.batch_create(&body, store),
            Call::BadBody => google_error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT : the body is not JSON",
            ),
            Call::Token | Call::NotFound => unreachable!("answered above"),
        }
    }

    fn rate_limited(&self, _req: &Request, limited: &Limited) -> Answer {
        google_error(
            StatusCode::TOO_MANY_REQUESTS,
            "QUOTA_EXCEEDED : Exceeded quota for the Identity Toolkit API (simulated).",
        )
        .retry_after(limited)
    }

    fn unavailable(&self, _req: &Request) -> Answer {
        google_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is currently unavailable (simulated).",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_emulator_prefix_and_the_token_path() {
        let f = Firebase::new(&FirebaseOptions::default()).unwrap();
        assert!(f.owns("/v1/projects/p/accounts:lookup"));
        assert!(f.owns("/identitytoolkit.googleapis.com/v1/projects/p/accounts:update"));
        assert!(f.owns("/token"));
        assert!(!f.owns("/api/v2/users/x"));
    }

    #[test]
    fn provider_user_info_lists_phone_but_not_password() {
        let methods = ["google.com", "password", "phone"].map(String::from);
        let info = provider_user_info("u", &methods);
        let ids: Vec<&str> = info
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["providerId"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["google.com", "phone"]);
    }
}
