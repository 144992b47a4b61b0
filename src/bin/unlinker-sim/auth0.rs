//! Simulated Auth0 Management API v2: unlink, read a user, delete the standalone user an unlink
//! leaves behind, and the client-credentials token endpoint.
//!
//! Written from docs/vendors.md, independently of the client adapter, so the adapter's tests really test
//! it: raw path segments are percent-decoded one by one (an id with an encoded `/` works), every
//! Management call needs a bearer token, and the error bodies are Auth0's.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderName, Method, StatusCode};
use rand::RngExt;
use serde_json::{Value, json};

use super::duration_arg;
use super::faults::Limited;
use super::state::{Link, Op, OpKind, Store, key_of, lock};
use super::vendor::{Answer, Record, Request, Vendor, field, param, required};

pub(crate) const DEFAULT_TOKEN: &str = "sim-token";
pub(crate) const DEFAULT_CLIENT_ID: &str = "sim-client";
pub(crate) const DEFAULT_CLIENT_SECRET: &str = "sim-client-secret";
pub(crate) const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(86_400);

const USERS: &str = "/api/v2/users/";
const TOKEN_PATH: &str = "/oauth/token";

/// Auth0 credentials the simulator accepts.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Auth0")]
pub(crate) struct Auth0Options {
    /// Static Management API token accepted as `Authorization: Bearer TOKEN`
    #[arg(id = "auth0_token", long = "auth0-token", value_name = "TOKEN", default_value = DEFAULT_TOKEN)]
    pub token: String,
    /// Client id accepted by POST /oauth/token
    #[arg(id = "auth0_client_id", long = "auth0-client-id", value_name = "ID", default_value = DEFAULT_CLIENT_ID)]
    pub client_id: String,
    /// Client secret accepted by POST /oauth/token
    #[arg(id = "auth0_client_secret", long = "auth0-client-secret", value_name = "SECRET", default_value = DEFAULT_CLIENT_SECRET)]
    pub client_secret: String,
    /// Lifetime of issued access tokens (`expires_in`), e.g. 86400, 10m, 0s
    #[arg(id = "auth0_token_ttl", long = "auth0-token-ttl", value_name = "DUR", default_value = "86400", value_parser = duration_arg)]
    pub token_ttl: Duration,
}

impl Default for Auth0Options {
    fn default() -> Self {
        Auth0Options {
            token: DEFAULT_TOKEN.into(),
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret: DEFAULT_CLIENT_SECRET.into(),
            token_ttl: DEFAULT_TOKEN_TTL,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Auth0 {
    options: Auth0Options,
    /// Issued access tokens and when they expire.
    issued: Mutex<HashMap<String, Instant>>,
    /// Standalone users `{provider}|{identity_user_id}` that unlinks left behind.
    standalone: Mutex<HashSet<String>>,
}

impl Auth0 {
    pub(crate) fn new(options: &Auth0Options) -> Self {
        Auth0 {
            options: options.clone(),
            issued: Mutex::new(HashMap::new()),
            standalone: Mutex::new(HashSet::new()),
        }
    }

    fn authorized(&self, req: &Request) -> bool {
        let Some(token) = req.header("authorization").and_then(bearer) else {
            return false;
        };
        if token == self.options.token {
            return true;
        }
        lock(&self.issued)
            .get(token)
            .is_some_and(|expiry| Instant::now() < *expiry)
    }

    fn token(&self, req: &Request) -> Answer {
        let json_body = req
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json"));
        let params: Vec<(String, String)> = if json_body {
            serde_json::from_slice::<serde_json::Map<String, Value>>(&req.body)
                .map(|m| {
                    m.into_iter()
                        .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string())))
                        .collect()
                })
                .unwrap_or_default()
        } else {
            req.form_pairs()
        };
        let grant = param(&params, "grant_type").unwrap_or("");
        if grant != "client_credentials" {
            // Guess: Auth0's answer for a grant type the application may not use.
            return Answer::json(
                StatusCode::FORBIDDEN,
                &json!({
                    "error": "unauthorized_client",
                    "error_description": format!("Grant type '{grant}' not allowed for the client."),
                }),
            );
        }
        let id_ok = param(&params, "client_id") == Some(self.options.client_id.as_str());
        let secret_ok =
            param(&params, "client_secret") == Some(self.options.client_secret.as_str());
        if !(id_ok && secret_ok) {
            return Answer::json(
                StatusCode::UNAUTHORIZED,
                &json!({"error": "access_denied", "error_description": "Unauthorized"}),
            )
            .unauthorized();
        }
        // The audience is not checked: the client derives it from its domain, which the
        // simulator cannot know.
        let token = format!("{:032x}", rand::rng().random::<u128>());
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
                "scope": "read:users update:users delete:users",
                "token_type": "Bearer",
            }),
        )
    }
}

/// The token of an `Authorization: Bearer T` header (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Auth0's error body.
fn error(status: StatusCode, message: &str, code: Option<&str>) -> Answer {
    let mut body = json!({
        "statusCode": status.as_u16(),
        "error": status.canonical_reason().unwrap_or(""),
        "message": message,
    });
    if let Some(code) = code {
        body["errorCode"] = json!(code);
    }
    Answer::json(status, &body)
}

fn inexistent_user() -> Answer {
    error(
        StatusCode::NOT_FOUND,
        "The user does not exist.",
        Some("inexistent_user"),
    )
}

/// The primary identity of `user_id` (`provider|id`; no `|` means a database user).
fn primary_identity(user_id: &str) -> Value {
    let (provider, id) = user_id.split_once('|').unwrap_or(("auth0", user_id));
    let connection = if provider == "auth0" {
        "Username-Password-Authentication"
    } else {
        provider
    };
    json!({"provider": provider, "user_id": id, "connection": connection, "isSocial": provider != "auth0"})
}

fn secondary_identity(link: &Link) -> Value {
    json!({"provider": link[1], "user_id": link[2], "connection": link[1], "isSocial": true})
}

#[derive(Debug)]
pub(crate) enum Call {
    Unlink(Link),
    GetUser(String),
    DeleteUser(String),
    Token,
    NotFound,
    BadPath,
}

impl Vendor for Auth0 {
    const NAME: &'static str = "auth0";
    const OWNER_LEN: usize = 1;
    type Call = Call;
    const BUDGET_HEADERS: bool = true;

    fn owns(&self, path: &str) -> bool {
        path.starts_with("/api/v2/") || path == TOKEN_PATH
    }

    fn seed(&self, record: &Record) -> Result<Link, String> {
        let user_id = required(record, "user_id")?;
        let (provider, id) = match (field(record, "provider"), field(record, "identity_user_id")) {
            (Some(p), Some(id)) => (p, id),
            _ => match field(record, "identity").and_then(|i| i.split_once('|')) {
                Some(pair) => pair,
                None if field(record, "provider").is_none() => {
                    return Err("field `provider` is required".into());
                }
                None => return Err("field `identity_user_id` is required".into()),
            },
        };
        Ok(vec![user_id.into(), provider.into(), id.into()])
    }

    fn parse(&self, req: &Request) -> (Op, Call) {
        if req.path == TOKEN_PATH {
            let call = if req.method == Method::POST {
                Call::Token
            } else {
                Call::NotFound
            };
            return (Op::new(OpKind::Token), call);
        }
        let Some(segments) = req.segments_after(USERS) else {
            let call = if req.path.starts_with(USERS) {
                Call::BadPath
            } else {
                Call::NotFound
            };
            return (Op::new(OpKind::Other), call);
        };
        match (&req.method, segments.as_slice()) {
            (&Method::DELETE, [user, identities, provider, id])
                if identities == "identities"
                    && ![user, provider, id].iter().any(|s| s.is_empty()) =>
            {
                let link: Link = vec![user.clone(), provider.clone(), id.clone()];
                let op = Op::new(OpKind::Unlink)
                    .key(key_of(&link))
                    .link(link.clone());
                (op, Call::Unlink(link))
            }
            (&Method::GET, [user]) if !user.is_empty() => (
                Op::new(OpKind::Read).key(user.clone()),
                Call::GetUser(user.clone()),
            ),
            (&Method::DELETE, [user]) if !user.is_empty() => {
                (Op::new(OpKind::UserDelete), Call::DeleteUser(user.clone()))
            }
            _ => (Op::new(OpKind::Other), Call::NotFound),
        }
    }

    fn answer(&self, call: Call, req: &Request, store: &Store) -> Answer {
        match call {
            Call::Token => return self.token(req),
            Call::NotFound => return error(StatusCode::NOT_FOUND, "Not Found", None),
            _ => {}
        }
        if !self.authorized(req) {
            return error(StatusCode::UNAUTHORIZED, "Invalid token", None).unauthorized();
        }
        match call {
            Call::Unlink(link) => {
                let remaining = store.with(|links| {
                    links.remove(&link).then(|| {
                        let owner = &link[..1];
                        let mut ids = vec![primary_identity(&link[0])];
                        ids.extend(links.list(owner).map(secondary_identity));
                        ids
                    })
                });
                match remaining {
                    Some(ids) => {
                        lock(&self.standalone).insert(format!("{}|{}", link[1], link[2]));
                        Answer::json(StatusCode::OK, &Value::Array(ids))
                    }
                    None => inexistent_user(),
                }
            }
            Call::GetUser(user) => {
                let owner = vec![user.clone()];
                let identities = store.with(|links| {
                    links.owner_exists(&owner).then(|| {
                        let mut ids = vec![primary_identity(&user)];
                        ids.extend(links.list(&owner).map(secondary_identity));
                        ids
                    })
                });
                let identities = identities.or_else(|| {
                    lock(&self.standalone)
                        .contains(&user)
                        .then(|| vec![primary_identity(&user)])
                });
                match identities {
                    Some(ids) => {
                        Answer::json(StatusCode::OK, &json!({"user_id": user, "identities": ids}))
                    }
                    None => inexistent_user(),
                }
            }
            Call::DeleteUser(user) => {
                if lock(&self.standalone).remove(&user) {
                    Answer::empty(StatusCode::NO_CONTENT)
                } else {
                    inexistent_user()
                }
            }
            Call::BadPath => error(
                StatusCode::BAD_REQUEST,
                "Path validation error: the path is not valid UTF-8 once decoded",
                Some("invalid_uri"),
            ),
            Call::Token | Call::NotFound => unreachable!("answered above"),
        }
    }

    fn rate_limited(&self, _req: &Request, limited: &Limited) -> Answer {
        error(
            StatusCode::TOO_MANY_REQUESTS,
            "Global limit has been reached",
            Some("too_many_requests"),
        )
        .header(
            HeaderName::from_static("x-ratelimit-limit"),
            limited.limit.to_string(),
        )
        .header(HeaderName::from_static("x-ratelimit-remaining"), "0")
        .header(
            HeaderName::from_static("x-ratelimit-reset"),
            limited.reset_epoch().to_string(),
        )
        .retry_after(limited)
    }

    fn refused(&self, _req: &Request) -> Answer {
        error(
            StatusCode::BAD_REQUEST,
            "The identity cannot be unlinked (--fail-key).",
            Some("operation_not_supported"),
        )
    }

    fn unavailable(&self, _req: &Request) -> Answer {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is temporarily unavailable (simulated).",
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }

    #[test]
    fn primary_identities() {
        assert_eq!(primary_identity("auth0|5f")["user_id"], "5f");
        assert_eq!(primary_identity("auth0|5f")["isSocial"], false);
        assert_eq!(primary_identity("github|9|x")["user_id"], "9|x");
        assert_eq!(primary_identity("github|9|x")["provider"], "github");
        assert_eq!(primary_identity("plain")["provider"], "auth0");
    }

    #[test]
    fn seeds_from_identity_shorthand() {
        let a = Auth0::new(&Auth0Options::default());
        let rec: Record = [("user_id", "u"), ("identity", "github|1|2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(a.seed(&rec).unwrap(), ["u", "github", "1|2"]);
        let missing: Record = [("user_id".to_string(), "u".to_string())].into();
        assert_eq!(
            a.seed(&missing).unwrap_err(),
            "field `provider` is required"
        );
    }
}
