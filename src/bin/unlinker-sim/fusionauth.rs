//! Simulated FusionAuth identity-provider link API: `DELETE` and `GET /api/identity-provider/link`.
//!
//! FusionAuth authenticates with the bare API key in `Authorization`, answers 401/404 with an empty
//! body and validation errors as `fieldErrors`. UUIDs are compared case-insensitively (FusionAuth
//! parses them as UUIDs), so links are stored with lower-cased UUIDs. `X-FusionAuth-TenantId` is
//! accepted and ignored: the simulator has one tenant.

use std::time::SystemTime;

use axum::http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::faults::Limited;
use super::state::{Link, Op, OpKind, Store, key_of};
use super::vendor::{Answer, Record, Request, Vendor, param, required};

pub(crate) const DEFAULT_API_KEY: &str = "sim-fusionauth-key";

const LINK_PATH: &str = "/api/identity-provider/link";

/// FusionAuth credentials the simulator accepts.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "FusionAuth")]
pub(crate) struct FusionAuthOptions {
    /// API key accepted as the bare `Authorization` header
    #[arg(id = "fusionauth_api_key", long = "fusionauth-api-key", value_name = "KEY", default_value = DEFAULT_API_KEY)]
    pub api_key: String,
}

impl Default for FusionAuthOptions {
    fn default() -> Self {
        FusionAuthOptions {
            api_key: DEFAULT_API_KEY.into(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct FusionAuth {
    options: FusionAuthOptions,
    /// `insertInstant` of every link: when the simulator started, in epoch milliseconds.
    inserted_ms: u64,
}

impl FusionAuth {
    pub(crate) fn new(options: &FusionAuthOptions) -> Self {
        let inserted_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        FusionAuth {
            options: options.clone(),
            inserted_ms,
        }
    }

    fn link_json(&self, link: &Link) -> Value {
        json!({
            "displayName": link[2],
            "identityProviderId": link[1],
            "identityProviderUserId": link[2],
            "insertInstant": self.inserted_ms,
            "lastLoginInstant": self.inserted_ms,
            "userId": link[0],
        })
    }
}

/// `8-4-4-4-12` hex digits.
pub(crate) fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The query of a link call, validated.
#[derive(Debug)]
pub(crate) struct Call {
    method: Method,
    user_id: Option<String>,
    provider_id: Option<String>,
    provider_user_id: Option<String>,
    /// `fieldErrors`, when the query is not valid for the method.
    errors: Map<String, Value>,
    known_path: bool,
}

fn field_error(errors: &mut Map<String, Value>, name: &str, code: &str, message: String) {
    errors.insert(
        name.to_string(),
        json!([{"code": format!("[{code}]{name}"), "message": message}]),
    );
}

impl Vendor for FusionAuth {
    const NAME: &'static str = "fusionauth";
    const OWNER_LEN: usize = 1;
    type Call = Call;

    fn owns(&self, path: &str) -> bool {
        path.starts_with("/api/identity-provider/")
    }

    fn seed(&self, record: &Record) -> Result<Link, String> {
        let user_id = required(record, "user_id")?;
        let provider_id = required(record, "identity_provider_id")?;
        let provider_user_id = required(record, "identity_provider_user_id")?;
        for (name, value) in [("user_id", user_id), ("identity_provider_id", provider_id)] {
            if !is_uuid(value) {
                return Err(format!("field `{name}` must be a UUID"));
            }
        }
        Ok(vec![
            user_id.to_ascii_lowercase(),
            provider_id.to_ascii_lowercase(),
            provider_user_id.to_string(),
        ])
    }

    fn parse(&self, req: &Request) -> (Op, Call) {
        let query = req.query_pairs();
        let get = |name: &str| param(&query, name).filter(|v| !v.is_empty());
        let mut errors = Map::new();
        let mut uuid = |name: &str| match get(name) {
            Some(v) if is_uuid(v) => Some(v.to_ascii_lowercase()),
            Some(v) => {
                field_error(
                    &mut errors,
                    name,
                    "invalid",
                    format!("Invalid [{name}] [{v}]. This must be a valid UUID."),
                );
                None
            }
            None => None,
        };
        let user_id = uuid("userId");
        let provider_id = uuid("identityProviderId");
        let provider_user_id = get("identityProviderUserId").map(str::to_string);
        let deleting = req.method == Method::DELETE;
        // A DELETE names one link; a GET needs at least the user.
        let needed: &[&str] = if deleting {
            &["userId", "identityProviderId", "identityProviderUserId"]
        } else {
            &["userId"]
        };
        for name in needed {
            if get(name).is_none() {
                // Guess: FusionAuth's code for a missing parameter ("[blank]"), as for its other
                // required fields; a present but malformed UUID is "[invalid]".
                field_error(
                    &mut errors,
                    name,
                    "blank",
                    format!("You must specify the [{name}] parameter."),
                );
            }
        }
        let known_path = req.path == LINK_PATH;
        let kind = match (&req.method, known_path) {
            (&Method::DELETE, true) => OpKind::Unlink,
            (&Method::GET, true) => OpKind::Read,
            _ => OpKind::Other,
        };
        let mut op = Op::new(kind);
        if let (Some(u), Some(p), Some(id)) = (&user_id, &provider_id, &provider_user_id) {
            let link: Link = vec![u.clone(), p.clone(), id.clone()];
            op = op.key(key_of(&link)).link(link);
        }
        let call = Call {
            method: req.method.clone(),
            user_id,
            provider_id,
            provider_user_id,
            errors,
            known_path,
        };
        (op, call)
    }

    fn answer(&self, call: Call, req: &Request, store: &Store) -> Answer {
        if !call.known_path || ![Method::GET, Method::DELETE].contains(&call.method) {
            return Answer::empty(StatusCode::NOT_FOUND);
        }
        let key = req.header("authorization").map(str::trim);
        if key != Some(self.options.api_key.as_str()) {
            return Answer::empty(StatusCode::UNAUTHORIZED).unauthorized();
        }
        if !call.errors.is_empty() {
            return Answer::json(
                StatusCode::BAD_REQUEST,
                &json!({"fieldErrors": call.errors, "generalErrors": []}),
            );
        }
        let user = call.user_id.unwrap_or_default();
        match (call.provider_id, call.provider_user_id) {
            (Some(provider), Some(id)) => {
                let link: Link = vec![user, provider, id];
                let found = store.with(|links| {
                    if call.method == Method::DELETE {
                        links.remove(&link)
                    } else {
                        links.contains(&link)
                    }
                });
                if found {
                    Answer::json(
                        StatusCode::OK,
                        &json!({"identityProviderLink": self.link_json(&link)}),
                    )
                } else {
                    Answer::empty(StatusCode::NOT_FOUND)
                }
            }
            // A GET naming less than one link lists the user's links (of one provider if given).
            (provider, _) => {
                let mut prefix = vec![user];
                prefix.extend(provider);
                let list: Vec<Value> =
                    store.with(|links| links.list(&prefix).map(|l| self.link_json(l)).collect());
                Answer::json(StatusCode::OK, &json!({"identityProviderLinks": list}))
            }
        }
    }

    fn rate_limited(&self, _req: &Request, limited: &Limited) -> Answer {
        Answer::empty(StatusCode::TOO_MANY_REQUESTS).retry_after(limited)
    }

    fn refused(&self, _req: &Request) -> Answer {
        Answer::json(
            StatusCode::BAD_REQUEST,
            &json!({"generalErrors": [{"code": "[sim]refused", "message": "The link cannot be removed (--fail-key)."}]}),
        )
    }

    fn unavailable(&self, _req: &Request) -> Answer {
        Answer::empty(StatusCode::SERVICE_UNAVAILABLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        assert!(is_uuid("5b6a2a1c-0a3e-4f4e-9d7a-1c2b3d4e5f60"));
        assert!(is_uuid("5B6A2A1C-0A3E-4F4E-9D7A-1C2B3D4E5F60"));
        assert!(!is_uuid("5b6a2a1c0a3e4f4e9d7a1c2b3d4e5f60"));
        assert!(!is_uuid("5b6a2a1c-0a3e-4f4e-9d7a-1c2b3d4e5f6g"));
        assert!(!is_uuid(""));
    }
}
