//! Auth0 Management API v2: unlink a secondary identity from a primary user.
//!
//! Wire facts are in docs/vendors.md: a `DELETE` on the identity with every path segment encoded as an
//! RFC 3986 segment, a bearer token (static, or fetched with client credentials and shared), and an
//! optional second step that deletes the standalone user the unlink leaves behind.

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use url::Url;

use super::http_class;
use super::wire::{WireAnswer, WireRequest, encode};
use super::{
    Adapter, Class, ConfigDoc, ConfigError, FieldDoc, Invalid, Key, Pacing, Params, Prepared,
    Registration, VendorDoc, Verdict, boxed, parse_config,
};
use crate::row::Fields;

pub const PACING: Pacing = Pacing {
    rate: 2.0,
    burst: 2,
    concurrency: 4,
};

/// Auth0 retries a 409 (a concurrent update of the same user) like a 5xx.
const AUTH0_ALSO_RETRIED: &[u16] = &[409];

/// Lifetime assumed when the token answer names none (Auth0's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(86_400);
/// Auth0 issues tokens for at most 30 days; a longer `expires_in` is held to that, which also keeps
/// the runner's refresh time well inside `Instant`'s range.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 86_400);

/// Connection strategies Auth0 accepts as an identity's `provider`.
pub const PROVIDERS: &[&str] = &[
    "ad",
    "adfs",
    "amazon",
    "apple",
    "dropbox",
    "bitbucket",
    "aol",
    "auth0-oidc",
    "auth0",
    "baidu",
    "bitly",
    "box",
    "custom",
    "daccount",
    "dwolla",
    "email",
    "evernote-sandbox",
    "evernote",
    "exact",
    "facebook",
    "fitbit",
    "flickr",
    "github",
    "google-apps",
    "google-oauth2",
    "instagram",
    "ip",
    "line",
    "linkedin",
    "miicard",
    "oauth1",
    "oauth2",
    "office365",
    "oidc",
    "okta",
    "paypal",
    "paypal-sandbox",
    "pingfederate",
    "planningcenter",
    "renren",
    "salesforce-community",
    "salesforce-sandbox",
    "salesforce",
    "samlp",
    "sharepoint",
    "shopify",
    "shop",
    "sms",
    "soundcloud",
    "thecity-sandbox",
    "thecity",
    "thirtysevensignals",
    "twitter",
    "untappd",
    "vkontakte",
    "waad",
    "weibo",
    "windowslive",
    "wordpress",
    "yahoo",
    "yammer",
    "yandex",
];

/// This adapter in the registry (`super::REGISTRY`).
pub const REGISTRATION: Registration = Registration {
    name: "auth0",
    pacing: PACING,
    doc: &DOC,
    build: |table, base_url| boxed(Auth0::from_config(table, base_url)),
};

pub const DOC: VendorDoc = VendorDoc {
    title: "Auth0 Management API v2 (DELETE /api/v2/users/{id}/identities/{provider}/{user_id})",
    fields: &[
        FieldDoc {
            name: "user_id",
            required: true,
            rule: "the primary user's full id, e.g. auth0|abc",
        },
        FieldDoc {
            name: "provider",
            required: true,
            rule: "an Auth0 identity provider, e.g. google-oauth2, facebook, samlp; `*` (with identity_user_id `*`): every provider",
        },
        FieldDoc {
            name: "identity_user_id",
            required: true,
            rule: "the secondary identity's id, without its provider| prefix; `*`: every secondary identity of `provider`",
        },
        FieldDoc {
            name: "identity",
            required: false,
            rule: "provider|id, instead of provider + identity_user_id",
        },
    ],
    key: "{user_id}/{provider}/{identity_user_id}",
    config: &[
        ConfigDoc {
            name: "domain",
            default: "",
            about: "tenant domain, e.g. acme.eu.auth0.com (or give base_url)",
        },
        ConfigDoc {
            name: "token",
            default: "",
            about: "Management API token (or client_id + client_secret)",
        },
        ConfigDoc {
            name: "client_id",
            default: "",
            about: "client credentials: application id",
        },
        ConfigDoc {
            name: "client_secret",
            default: "",
            about: "client credentials: application secret",
        },
        ConfigDoc {
            name: "audience",
            default: "https://{domain}/api/v2/",
            about: "client credentials: API audience",
        },
        ConfigDoc {
            name: "delete_unlinked_user",
            default: "false",
            about: "also delete the standalone user the unlink leaves behind",
        },
    ],
    read_api: true,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    domain: Option<String>,
    token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    audience: Option<String>,
    #[serde(default)]
    delete_unlinked_user: bool,
}

#[derive(Debug)]
enum Credentials {
    Static(String),
    Client {
        client_id: String,
        client_secret: String,
        audience: String,
    },
}

#[derive(Debug)]
pub struct Auth0 {
    /// Scheme and host, no trailing slash.
    base: String,
    credentials: Credentials,
    delete_unlinked_user: bool,
}

impl Auth0 {
    /// Validate and normalise a row ([`Adapter::prepare`] adds the partial key on failure).
    fn prepare_fields(&self, fields: &Fields) -> Result<Prepared, Invalid> {
        let user_id = fields
            .get("user_id")
            .ok_or_else(|| Invalid::new("user_id", "is required"))?;
        let (provider, identity_user_id) =
            match (fields.get("provider"), fields.get("identity_user_id")) {
                (Some(p), Some(id)) => (p, id),
                (p, id) => match fields.get("identity") {
                    Some(identity) => identity
                        .split_once('|')
                        .ok_or_else(|| Invalid::new("identity", "must be provider|id"))?,
                    None if p.is_none() => return Err(Invalid::new("provider", "is required")),
                    None if id.is_none() => {
                        return Err(Invalid::new("identity_user_id", "is required"));
                    }
                    None => unreachable!("both present is handled above"),
                },
            };
        if user_id == WILDCARD {
            return Err(Invalid::new(
                "user_id",
                "`*` is not allowed here: a wildcard row names its user (the link fields take `*`)",
            ));
        }
        if provider == WILDCARD && identity_user_id != WILDCARD {
            return Err(Invalid::new(
                "provider",
                "`*` (every provider) needs identity_user_id `*` as well",
            ));
        }
        if !PROVIDERS.contains(&provider) && provider != WILDCARD {
            return Err(Invalid::new(
                "provider",
                format!("`{provider}` is not an Auth0 identity provider (see `unlinker vendors`)"),
            ));
        }
        if identity_user_id.is_empty() {
            return Err(Invalid::new("identity_user_id", "is required"));
        }
        if identity_user_id
            .strip_prefix(provider)
            .is_some_and(|rest| rest.starts_with('|'))
        {
            return Err(Invalid::new(
                "identity_user_id",
                format!("must be the id without its `{provider}|` prefix"),
            ));
        }
        let mut params = Params::new();
        params.set("user_id", user_id);
        params.set("provider", provider);
        params.set("identity_user_id", identity_user_id);
        Ok(Prepared {
            key: key(user_id, provider, identity_user_id),
            params,
        })
    }

    /// The `identities` of a 200 answer to reading a user, or the verdict for any other answer
    /// (a 404 not-found body is `absent`: the user does not exist).
    fn read_identities(&self, answer: &WireAnswer) -> Result<Vec<serde_json::Value>, Verdict> {
        if answer.status != 200 {
            if (200..300).contains(&answer.status) {
                return Err(Verdict::new(Class::Unexpected(
                    "a 2xx status Auth0 does not document for reading a user".into(),
                ))
                .request_id(request_id(answer)));
            }
            return Err(self.classify_error(answer, "the user does not exist"));
        }
        let body = answer.parse_json();
        let identities = body
            .as_ref()
            .and_then(|b| b.get("identities"))
            .and_then(|v| v.as_array())
            .filter(|ids| {
                ids.iter()
                    .all(|i| i.get("provider").is_some_and(|p| p.is_string()))
            });
        match identities {
            Some(identities) => Ok(identities.clone()),
            None => Err(Verdict::new(Class::Unexpected(
                "a 200 whose body is not an Auth0 user (a JSON object with an identities array \
                 of objects naming their provider)"
                    .into(),
            ))
            .request_id(request_id(answer))),
        }
    }

    pub fn from_config(
        table: toml::Table,
        base_url: Option<Url>,
    ) -> Result<(Self, Url), ConfigError> {
        let config: Config = parse_config(table)?;
        let url = match (&base_url, &config.domain) {
            (Some(url), _) => url.clone(),
            (None, Some(domain)) => {
                let domain = domain.trim().trim_end_matches('/');
                if domain.is_empty() || domain.contains('/') || domain.contains(':') {
                    return Err(ConfigError::new(
                        "domain",
                        "must be a bare host name such as acme.eu.auth0.com",
                    ));
                }
                Url::parse(&format!("https://{domain}/"))
                    .map_err(|e| ConfigError::new("domain", format!("not a host name: {e}")))?
            }
            (None, None) => {
                return Err(ConfigError::new("domain", "required (or give base_url)"));
            }
        };
        let base = url.as_str().trim_end_matches('/').to_string();
        let credentials = match (config.token, config.client_id, config.client_secret) {
            (Some(token), None, None) => {
                if token.trim().is_empty() {
                    return Err(ConfigError::new("token", "is empty"));
                }
                Credentials::Static(token.trim().to_string())
            }
            (None, Some(client_id), Some(client_secret)) => {
                let audience = config.audience.unwrap_or_else(|| match &config.domain {
                    Some(domain) => format!("https://{}/api/v2/", domain.trim()),
                    None => format!("{base}/api/v2/"),
                });
                Credentials::Client {
                    client_id,
                    client_secret,
                    audience,
                }
            }
            (None, Some(_), None) => {
                return Err(ConfigError::new("client_secret", "required with client_id"));
            }
            (None, None, Some(_)) => {
                return Err(ConfigError::new("client_id", "required with client_secret"));
            }
            (None, None, None) => {
                return Err(ConfigError::new(
                    "token",
                    "required (or client_id + client_secret)",
                ));
            }
            (Some(_), _, _) => {
                return Err(ConfigError::new(
                    "token",
                    "give either token or client_id + client_secret, not both",
                ));
            }
        };
        Ok((
            Auth0 {
                base,
                credentials,
                delete_unlinked_user: config.delete_unlinked_user,
            },
            url,
        ))
    }

    fn bearer(&self, token: Option<&str>) -> String {
        match (&self.credentials, token) {
            (Credentials::Static(t), _) => format!("Bearer {t}"),
            (Credentials::Client { .. }, Some(t)) => format!("Bearer {t}"),
            // The runner always fetches a token first; an empty one makes the vendor answer 401.
            (Credentials::Client { .. }, None) => "Bearer ".to_string(),
        }
    }

    /// Classify a non-2xx answer to any Management API call (`absent` says what a 404 means for
    /// it). Only Auth0's own error bodies lead to an outcome; 401, 403, 429 and the retried
    /// statuses are acted on whatever their body, as none of them is an outcome.
    fn classify_error(&self, answer: &WireAnswer, absent: &str) -> Verdict {
        let error = ErrorBody::parse(answer);
        let code = error.as_ref().and_then(|e| e.code.clone());
        let message = match &error {
            Some(e) => e.message.clone(),
            None => format!("HTTP {}: {}", answer.status, answer.text_snippet()),
        };
        let transient = http_class::transient_class(answer, AUTH0_ALSO_RETRIED, || message.clone());
        let class = match (answer.status, &error) {
            _ if let Some(class) = transient => class,
            (404, Some(e)) if e.says_not_found() => Class::Absent(format!("{absent}: {message}")),
            (404, _) => Class::Unexpected(
                "a 404 without Auth0's not-found error body (statusCode 404 with errorCode \
                 inexistent_user or a message that the user or identity does not exist)"
                    .into(),
            ),
            (400, Some(_)) => Class::Failed(message),
            (400, None) => Class::Unexpected("a 400 without Auth0's JSON error body".into()),
            (401, _) => match self.credentials {
                Credentials::Client { .. } => Class::Reauth(format!("auth0: 401 {message}")),
                Credentials::Static(_) => {
                    Class::Halt(format!("auth0 refused the token (401): {message}"))
                }
            },
            (403, _) => Class::Halt(format!(
                "auth0 refused the call (403; the token needs update:users and read:users): {message}"
            )),
            (other, _) => Class::Unexpected(format!(
                "HTTP {other} is not an answer Auth0 documents for this call"
            )),
        };
        Verdict::new(class)
            .code(code)
            .request_id(request_id(answer))
    }
}

/// Auth0's error body: `{"statusCode":404,"error":"Not Found","message":"...","errorCode":"..."}`
/// with `statusCode` equal to the HTTP status; `errorCode` may be missing.
#[derive(Debug)]
struct ErrorBody {
    message: String,
    code: Option<String>,
}

impl ErrorBody {
    fn parse(answer: &WireAnswer) -> Option<ErrorBody> {
        let body = answer.parse_json()?;
        let status = body.get("statusCode")?.as_u64()?;
        if status != u64::from(answer.status) {
            return None;
        }
        let text = |name: &str| body.get(name).and_then(|v| v.as_str()).map(str::to_string);
        Some(ErrorBody {
            message: text("message")
                .or_else(|| text("error"))
                .unwrap_or_else(|| format!("HTTP {}", answer.status)),
            code: text("errorCode"),
        })
    }

    /// `inexistent_user` (or an identity twin of it), or a message saying the user or identity
    /// does not exist. A bare "Not Found" is what Auth0 answers for a path it does not serve: a
    /// wrong `base_url`, not a missing user.
    fn says_not_found(&self) -> bool {
        if matches!(
            self.code.as_deref(),
            Some("inexistent_user" | "inexistent_identity")
        ) {
            return true;
        }
        let m = self.message.to_ascii_lowercase();
        (m.contains("user") || m.contains("identity"))
            && (m.contains("does not exist") || m.contains("not found"))
    }
}

/// A row's key from its parts: `{user_id}/{provider}/{identity_user_id}`.
fn key(user_id: &str, provider: &str, identity_user_id: &str) -> Key {
    Key(format!("{user_id}/{provider}/{identity_user_id}"))
}

/// A link field's value asking for every link (SPEC section 3, wildcard rows).
const WILDCARD: &str = "*";

/// A wildcard row's matching links, from the read of its user: every secondary identity
/// (`identities[1..]`; `identities[0]` is the primary and is never listed) of the row's provider,
/// or of every provider for `*`. Each is built directly rather than through `prepare`: the
/// vendor named it, so a provider this tool's list does not know (a custom connection) is still
/// a real identity to remove. `None` when an identity lacks a string `provider` or a string or
/// numeric `user_id`.
fn matching_identities(row: &Prepared, identities: &[serde_json::Value]) -> Option<Vec<Prepared>> {
    let user_id = row.params.get("user_id");
    let wanted = row.params.get("provider");
    let mut links = Vec::new();
    for identity in identities.iter().skip(1) {
        let provider = identity.get("provider")?.as_str()?;
        let id = match identity.get("user_id")? {
            serde_json::Value::String(s) => s.clone(),
            n @ serde_json::Value::Number(_) => n.to_string(),
            _ => return None,
        };
        if provider.is_empty() || id.is_empty() {
            return None;
        }
        if wanted != WILDCARD && provider != wanted {
            continue;
        }
        let mut params = Params::new();
        params.set("user_id", user_id);
        params.set("provider", provider);
        params.set("identity_user_id", id.as_str());
        links.push(Prepared {
            key: key(user_id, provider, &id),
            params,
        });
    }
    Some(links)
}

/// As much of the key as an invalid row's raw fields give (missing parts empty), the identity
/// taken from `identity` (`provider|id`) where the separate fields are missing.
fn partial_key(fields: &Fields) -> Key {
    let (from_identity_provider, from_identity_id) = fields
        .get("identity")
        .map(|identity| identity.split_once('|').unwrap_or((identity, "")))
        .unwrap_or_default();
    key(
        fields.get("user_id").unwrap_or(""),
        fields.get("provider").unwrap_or(from_identity_provider),
        fields.get("identity_user_id").unwrap_or(from_identity_id),
    )
}

/// Step 0's success: the primary's remaining identities, a JSON array of objects.
fn is_identity_list(answer: &WireAnswer) -> bool {
    answer
        .parse_json()
        .as_ref()
        .and_then(|v| v.as_array())
        .is_some_and(|ids| ids.iter().all(|i| i.is_object()))
}

fn request_id(answer: &WireAnswer) -> Option<String> {
    answer
        .header("x-auth0-requestid")
        .map(str::to_string)
        .or_else(|| answer.request_id_header())
}

impl Adapter for Auth0 {
    fn prepare(&self, fields: &Fields) -> Result<Prepared, Invalid> {
        self.prepare_fields(fields)
            .map_err(|invalid| invalid.with_key(partial_key(fields)))
    }

    fn steps(&self, _row: &Prepared) -> u8 {
        if self.delete_unlinked_user { 2 } else { 1 }
    }

    fn build(&self, row: &Prepared, step: u8, token: Option<&str>) -> WireRequest {
        let p = &row.params;
        let url = if step == 0 {
            format!(
                "{}/api/v2/users/{}/identities/{}/{}",
                self.base,
                encode(p.get("user_id")),
                encode(p.get("provider")),
                encode(p.get("identity_user_id")),
            )
        } else {
            let standalone = format!("{}|{}", p.get("provider"), p.get("identity_user_id"));
            format!("{}/api/v2/users/{}", self.base, encode(&standalone))
        };
        WireRequest::new(Method::DELETE, url).header("Authorization", self.bearer(token))
    }

    fn classify(&self, _row: &Prepared, step: u8, answer: &WireAnswer) -> Verdict {
        let unlinked = || Verdict::new(Class::Unlinked).request_id(request_id(answer));
        let unexpected = |what: &str| {
            Verdict::new(Class::Unexpected(what.into())).request_id(request_id(answer))
        };
        match (step, answer.status) {
            (0, 200) if is_identity_list(answer) => unlinked(),
            (0, 200) => {
                unexpected("a 200 whose body is not the JSON array of remaining identities")
            }
            // Deleting the standalone user: Auth0 documents 204 with no body; 200 is tolerated.
            (_, 200 | 204) if step > 0 && answer.body_is_empty() => unlinked(),
            (_, 200 | 204) if step > 0 => unexpected("a user deletion answered with a body"),
            (_, 200..=299) => unexpected("a 2xx status Auth0 does not document for this call"),
            (0, _) => self.classify_error(answer, "the user or identity does not exist"),
            _ => self.classify_error(answer, "the unlinked standalone user no longer exists"),
        }
    }

    fn can_read(&self) -> bool {
        true
    }

    fn read(&self, row: &Prepared, token: Option<&str>) -> Option<WireRequest> {
        let url = format!(
            "{}/api/v2/users/{}",
            self.base,
            encode(row.params.get("user_id"))
        );
        Some(WireRequest::new(Method::GET, url).header("Authorization", self.bearer(token)))
    }

    fn is_wildcard(&self, row: &Prepared) -> bool {
        row.params.get("identity_user_id") == WILDCARD
    }

    fn classify_list(&self, row: &Prepared, answer: &WireAnswer) -> Verdict {
        let identities = match self.read_identities(answer) {
            Ok(identities) => identities,
            Err(verdict) => return verdict,
        };
        let class = match matching_identities(row, &identities) {
            Some(links) => Class::Listed(links),
            None => Class::Unexpected(
                "an identity without a string provider and a string or numeric user_id".into(),
            ),
        };
        Verdict::new(class).request_id(request_id(answer))
    }

    fn classify_read(&self, row: &Prepared, answer: &WireAnswer) -> Verdict {
        let identities = match self.read_identities(answer) {
            Ok(identities) => identities,
            Err(verdict) => return verdict,
        };
        let provider = row.params.get("provider");
        let id = row.params.get("identity_user_id");
        let linked = identities.iter().any(|identity| {
            identity.get("provider").and_then(|v| v.as_str()) == Some(provider)
                && identity.get("user_id").is_some_and(|v| json_id(v) == id)
        });
        let class = if linked {
            Class::Present
        } else {
            Class::Absent("the user has no such identity".into())
        };
        Verdict::new(class).request_id(request_id(answer))
    }

    fn token_request(&self) -> Option<WireRequest> {
        let Credentials::Client {
            client_id,
            client_secret,
            audience,
        } = &self.credentials
        else {
            return None;
        };
        let req = WireRequest::new(Method::POST, format!("{}/oauth/token", self.base))
            .field("grant_type", "client_credentials")
            .field("client_id", client_id)
            .secret_field("client_secret", client_secret)
            .field("audience", audience);
        Some(req)
    }

    fn parse_token(&self, answer: &WireAnswer) -> Result<(String, Duration), String> {
        let hint = "check base_url / domain";
        super::wire::parse_oauth_token(answer, hint, DEFAULT_TOKEN_LIFETIME, MAX_TOKEN_LIFETIME)
    }
}

/// Identity ids may be JSON numbers; compare them as strings.
fn json_id(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(extra: &str) -> Auth0 {
        let table: toml::Table =
            toml::from_str(&format!("domain = \"acme.auth0.com\"\n{extra}")).unwrap();
        Auth0::from_config(table, None).unwrap().0
    }

    fn row(a: &Auth0, user: &str, provider: &str, id: &str) -> Prepared {
        a.prepare(&Fields::from_pairs([
            ("user_id", user),
            ("provider", provider),
            ("identity_user_id", id),
        ]))
        .unwrap()
    }

    #[test]
    fn builds_encoded_delete_with_bearer() {
        let a = adapter("token = \"t0k\"");
        let r = row(&a, "auth0|5f7c", "google-oauth2", "12 3/4");
        assert_eq!(r.key.0, "auth0|5f7c/google-oauth2/12 3/4");
        let req = a.build(&r, 0, None);
        assert_eq!(req.method, Method::DELETE);
        assert_eq!(
            req.url,
            "https://acme.auth0.com/api/v2/users/auth0%7C5f7c/identities/google-oauth2/12%203%2F4"
        );
        assert_eq!(req.header_value("authorization"), Some("Bearer t0k"));
        assert!(!req.describe().contains("t0k"));
        let del = a.build(&r, 1, None);
        assert_eq!(
            del.url,
            "https://acme.auth0.com/api/v2/users/google-oauth2%7C12%203%2F4"
        );
    }

    #[test]
    fn invalid_rows_carry_the_key_parts_they_give() {
        let a = adapter("token = \"t\"");
        let key = |pairs: &[(&str, &str)]| {
            let err = a.prepare(&Fields::from_pairs(pairs.iter().copied()));
            err.unwrap_err().key.map(|k| k.0)
        };
        let bad_provider = [
            ("user_id", "auth0|abc"),
            ("provider", "badprov"),
            ("identity_user_id", "123"),
        ];
        assert_eq!(key(&bad_provider).as_deref(), Some("auth0|abc/badprov/123"));
        let missing = [("user_id", "auth0|abc"), ("identity_user_id", "123")];
        assert_eq!(key(&missing).as_deref(), Some("auth0|abc//123"));
        let identity = [("identity", "badprov|9")];
        assert_eq!(key(&identity).as_deref(), Some("/badprov/9"));
    }

    #[test]
    fn validates_rows() {
        let a = adapter("token = \"t\"");
        let bad = |pairs: &[(&str, &str)]| {
            a.prepare(&Fields::from_pairs(pairs.iter().copied()))
                .unwrap_err()
        };
        assert_eq!(
            bad(&[("provider", "github"), ("identity_user_id", "1")]).field,
            "user_id"
        );
        assert_eq!(
            bad(&[("user_id", "u"), ("identity_user_id", "1")]).field,
            "provider"
        );
        assert_eq!(
            bad(&[("user_id", "u"), ("provider", "github")]).field,
            "identity_user_id"
        );
        assert_eq!(
            bad(&[
                ("user_id", "u"),
                ("provider", "myspace"),
                ("identity_user_id", "1")
            ])
            .field,
            "provider"
        );
        assert_eq!(
            bad(&[
                ("user_id", "u"),
                ("provider", "github"),
                ("identity_user_id", "github|1")
            ])
            .field,
            "identity_user_id"
        );
        let via_identity = a
            .prepare(&Fields::from_pairs([
                ("user_id", "u"),
                ("identity", "github|9|x"),
            ]))
            .unwrap();
        assert_eq!(via_identity.key.0, "u/github/9|x");
    }

    const NOT_FOUND_USER: &str = r#"{"statusCode":404,"error":"Not Found","message":"The user does not exist.","errorCode":"inexistent_user"}"#;
    const NOT_FOUND_IDENTITY: &str =
        r#"{"statusCode":404,"error":"Not Found","message":"The identity does not exist."}"#;
    /// What Auth0 answers for a path it does not serve (a wrong base_url prefix).
    const NOT_FOUND_ROUTE: &str = r#"{"statusCode":404,"error":"Not Found","message":"Not Found"}"#;
    const BAD_REQUEST: &str =
        r#"{"statusCode":400,"error":"Bad Request","message":"bad id","errorCode":"invalid_uri"}"#;
    const HTML: &str = "<!DOCTYPE html><html><body><h1>Not Found</h1></body></html>";

    type Row<'a> = (u16, &'a [(&'static str, &'a str)], &'a str, &'a str);

    /// (status, headers, body) → class name, for `classify(step)` or `classify_read` (`None`).
    fn check_table(a: &Auth0, step: Option<u8>, table: &[Row<'_>]) {
        let r = row(a, "auth0|1", "github", "2");
        for (status, headers, body, want) in table {
            let answer = headers.iter().fold(
                WireAnswer::new(*status, body.to_string()),
                |ans, (name, value)| ans.with_header(name, value),
            );
            let v = match step {
                Some(step) => a.classify(&r, step, &answer),
                None => a.classify_read(&r, &answer),
            };
            assert_eq!(
                v.class.name(),
                *want,
                "step {step:?}: {status} {headers:?} {body:?} → {:?}",
                v.class
            );
        }
    }

    const NO: &[(&str, &str)] = &[];
    const JSON: &[(&str, &str)] = &[("content-type", "application/json")];
    const AS_HTML: &[(&str, &str)] = &[("content-type", "text/html")];

    /// The rows every Management API call shares (docs/vendors.md, Auth0 answers).
    const ERROR_ROWS: &[Row<'static>] = &[
        (404, JSON, NOT_FOUND_USER, "absent"),
        (404, NO, NOT_FOUND_IDENTITY, "absent"),
        (
            404,
            JSON,
            r#"{"statusCode":404,"errorCode":"inexistent_user"}"#,
            "absent",
        ),
        (404, JSON, NOT_FOUND_ROUTE, "unexpected"),
        (404, AS_HTML, HTML, "unexpected"),
        (404, NO, "", "unexpected"),
        (404, JSON, r#"{"foo":1}"#, "unexpected"),
        (
            404,
            JSON,
            r#"{"statusCode":400,"message":"The user does not exist."}"#,
            "unexpected",
        ),
        (
            404,
            JSON,
            r#"[{"statusCode":404,"errorCode":"inexistent_user"}]"#,
            "unexpected",
        ),
        (400, JSON, BAD_REQUEST, "failed"),
        (
            400,
            JSON,
            r#"{"statusCode":400,"error":"Bad Request"}"#,
            "failed",
        ),
        (400, AS_HTML, HTML, "unexpected"),
        (400, NO, "", "unexpected"),
        (
            401,
            JSON,
            r#"{"statusCode":401,"message":"Invalid token"}"#,
            "halt",
        ),
        (401, AS_HTML, HTML, "halt"),
        (
            403,
            JSON,
            r#"{"statusCode":403,"errorCode":"insufficient_scope"}"#,
            "halt",
        ),
        // A proxy's 403 page: halting is the safe side either way.
        (403, AS_HTML, HTML, "halt"),
        (429, NO, "", "rate-limit"),
        (429, &[("retry-after", "4")], "", "rate-limit"),
        (
            429,
            &[("x-ratelimit-reset", "99999999999")],
            HTML,
            "rate-limit",
        ),
        (408, NO, "", "retry"),
        (409, JSON, r#"{"statusCode":409}"#, "retry"),
        (500, NO, "oops", "retry"),
        (503, AS_HTML, HTML, "retry"),
        (599, NO, "", "retry"),
        (418, NO, "", "unexpected"),
        (302, &[("location", "/login")], "", "unexpected"),
        (301, NO, HTML, "unexpected"),
        (100, NO, "", "unexpected"),
        (405, JSON, r#"{"statusCode":405}"#, "unexpected"),
    ];

    #[test]
    fn unlink_classification_table() {
        let a = adapter("token = \"t\"");
        check_table(
            &a,
            Some(0),
            &[
                (200, JSON, "[]", "unlinked"),
                (
                    200,
                    NO,
                    r#"[{"provider":"auth0","user_id":"1"}]"#,
                    "unlinked",
                ),
                (200, AS_HTML, HTML, "unexpected"),
                (200, JSON, "", "unexpected"),
                (200, JSON, "{}", "unexpected"),
                (200, JSON, r#"{"identities":[]}"#, "unexpected"),
                (200, JSON, "[1,2]", "unexpected"),
                (200, JSON, "null", "unexpected"),
                (201, JSON, "[]", "unexpected"),
                (204, NO, "", "unexpected"),
            ],
        );
        check_table(&a, Some(0), ERROR_ROWS);
    }

    #[test]
    fn delete_user_classification_table() {
        let a = adapter("token = \"t\"\ndelete_unlinked_user = true");
        check_table(
            &a,
            Some(1),
            &[
                (204, NO, "", "unlinked"),
                (200, NO, "", "unlinked"),
                (204, NO, " \n", "unlinked"),
                (200, JSON, "[]", "unexpected"),
                (200, AS_HTML, HTML, "unexpected"),
                (204, AS_HTML, HTML, "unexpected"),
                (202, NO, "", "unexpected"),
            ],
        );
        check_table(&a, Some(1), ERROR_ROWS);
    }

    #[test]
    fn read_classification_table() {
        let a = adapter("token = \"t\"");
        let linked = r#"{"user_id":"auth0|1","identities":[{"provider":"auth0","user_id":"1"},{"provider":"github","user_id":"2"}]}"#;
        let gone = r#"{"user_id":"auth0|1","identities":[{"provider":"auth0","user_id":"1"}]}"#;
        check_table(
            &a,
            None,
            &[
                (200, JSON, linked, "present"),
                (200, JSON, gone, "absent"),
                (
                    200,
                    JSON,
                    r#"{"identities":[{"provider":"github","user_id":2}]}"#,
                    "present",
                ),
                (200, AS_HTML, HTML, "unexpected"),
                (200, NO, "", "unexpected"),
                (200, JSON, "{}", "unexpected"),
                (200, JSON, r#"{"foo":1}"#, "unexpected"),
                (200, JSON, "[]", "unexpected"),
                (200, JSON, r#"{"identities":{}}"#, "unexpected"),
                (
                    200,
                    JSON,
                    r#"{"identities":[{"user_id":"2"}]}"#,
                    "unexpected",
                ),
                (200, JSON, r#"{"identities":["github|2"]}"#, "unexpected"),
                (204, NO, "", "unexpected"),
            ],
        );
        check_table(&a, None, ERROR_ROWS);
    }

    #[test]
    fn verdicts_carry_message_code_and_wait() {
        let a = adapter("token = \"t\"");
        let cc = adapter("client_id = \"id\"\nclient_secret = \"s\"");
        let r = row(&a, "auth0|1", "github", "2");
        let v = a.classify(&r, 0, &WireAnswer::new(400, BAD_REQUEST));
        assert_eq!(v.class, Class::Failed("bad id".into()));
        assert_eq!(v.vendor_code.as_deref(), Some("invalid_uri"));
        let v = a.classify(&r, 0, &WireAnswer::new(404, NOT_FOUND_USER));
        assert!(matches!(&v.class, Class::Absent(m) if m.contains("The user does not exist.")));
        assert_eq!(v.vendor_code.as_deref(), Some("inexistent_user"));
        assert!(matches!(
            a.classify(&r, 0, &WireAnswer::new(401, "{}")).class,
            Class::Halt(_)
        ));
        assert!(matches!(
            cc.classify(&r, 0, &WireAnswer::new(401, "{}")).class,
            Class::Reauth(_)
        ));
        let limited = a.classify(
            &r,
            0,
            &WireAnswer::new(429, "").with_header("retry-after", "4"),
        );
        assert_eq!(
            limited.class,
            Class::RateLimit(Some(Duration::from_secs(4)))
        );
        assert_eq!(
            a.classify(&r, 0, &WireAnswer::new(429, "")).class,
            Class::RateLimit(None)
        );
        let huge = WireAnswer::new(429, "").with_header("retry-after", "315360000");
        assert_eq!(
            a.classify(&r, 0, &huge).class,
            Class::RateLimit(Some(Duration::from_secs(315_360_000)))
        );
        let ok = a.classify(
            &r,
            0,
            &WireAnswer::new(200, "[]").with_header("x-auth0-requestid", "rq"),
        );
        assert_eq!(ok.request_id.as_deref(), Some("rq"));
    }

    #[test]
    fn client_credentials_token() {
        let a = adapter("client_id = \"cid\"\nclient_secret = \"csecret\"");
        let req = a.token_request().unwrap();
        assert_eq!(req.url, "https://acme.auth0.com/oauth/token");
        assert_eq!(
            req.form_value("audience"),
            Some("https://acme.auth0.com/api/v2/")
        );
        assert_eq!(req.form_value("grant_type"), Some("client_credentials"));
        assert!(!req.describe().contains("csecret"));
        let (tok, life) = a
            .parse_token(&WireAnswer::new(
                200,
                r#"{"access_token":"abc","expires_in":60}"#,
            ))
            .unwrap();
        assert_eq!((tok.as_str(), life), ("abc", Duration::from_secs(60)));
        assert!(
            a.parse_token(&WireAnswer::new(401, r#"{"error":"access_denied"}"#))
                .is_err()
        );
        let parse =
            |status: u16, body: &str| a.parse_token(&WireAnswer::new(status, body.to_string()));
        assert_eq!(
            parse(200, r#"{"access_token":"abc"}"#).unwrap().1,
            DEFAULT_TOKEN_LIFETIME
        );
        assert_eq!(
            parse(
                200,
                r#"{"access_token":"abc","expires_in":18446744073709551615}"#
            )
            .unwrap()
            .1,
            MAX_TOKEN_LIFETIME
        );
        for bad in [
            r#"{"access_token":"abc","expires_in":0}"#,
            r#"{"access_token":"abc","expires_in":-5}"#,
            r#"{"access_token":"abc","expires_in":"86400"}"#,
            r#"{"access_token":"abc","expires_in":1e300}"#,
            r#"{"access_token":""}"#,
            r#"{"token":"abc"}"#,
            r#"["abc"]"#,
            "<html>login</html>",
            "",
        ] {
            assert!(parse(200, bad).is_err(), "{bad}");
        }
        assert!(
            parse(403, "<html>denied</html>")
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(adapter("token = \"t\"").token_request().is_none());
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |src: &str| {
            Auth0::from_config(toml::from_str(src).unwrap(), None)
                .unwrap_err()
                .key
        };
        assert_eq!(err("domain = \"a.test\""), "token");
        assert_eq!(err("token = \"t\""), "domain");
        assert_eq!(
            err("domain = \"a.test\"\ntoken = \"t\"\ncolour = 1"),
            "colour"
        );
        assert_eq!(
            err("domain = \"a.test\"\nclient_id = \"x\""),
            "client_secret"
        );
    }

    fn listed(v: Verdict) -> Vec<String> {
        match v.class {
            Class::Listed(links) => links.into_iter().map(|l| l.key.0).collect(),
            other => panic!("not a list: {other:?}"),
        }
    }

    #[test]
    fn wildcard_rows_list_secondary_identities_never_the_primary() {
        let a = adapter("token = \"t\"");
        let one = row(&a, "auth0|u", "facebook", "*");
        let every = row(&a, "auth0|u", "*", "*");
        assert!(a.is_wildcard(&one) && a.is_wildcard(&every));
        assert!(!a.is_wildcard(&row(&a, "auth0|u", "facebook", "1")));
        assert_eq!(one.key.0, "auth0|u/facebook/*");
        assert_eq!(every.key.0, "auth0|u/*/*");
        let body = r#"{"user_id":"auth0|u","identities":[
            {"provider":"facebook","user_id":"primary"},
            {"provider":"facebook","user_id":"1"},
            {"provider":"github","user_id":2},
            {"provider":"oauth2","user_id":"custom|x"}]}"#;
        let answer = WireAnswer::new(200, body.to_string());
        assert_eq!(
            listed(a.classify_list(&one, &answer)),
            ["auth0|u/facebook/1"]
        );
        assert_eq!(
            listed(a.classify_list(&every, &answer)),
            [
                "auth0|u/facebook/1",
                "auth0|u/github/2",
                "auth0|u/oauth2/custom|x"
            ]
        );
        let only_primary = r#"{"identities":[{"provider":"auth0","user_id":"u"}]}"#;
        let answer = WireAnswer::new(200, only_primary.to_string());
        assert!(listed(a.classify_list(&every, &answer)).is_empty());
        // An unknown user is absent; an identity without an id, or another body, is unexpected.
        let v = a.classify_list(&every, &WireAnswer::new(404, NOT_FOUND_USER));
        assert!(matches!(v.class, Class::Absent(_)), "{v:?}");
        for body in [
            r#"{"identities":[{"provider":"auth0","user_id":"u"},{"provider":"x"}]}"#,
            r#"{"identities":[{"provider":"auth0","user_id":"u"},{"provider":"x","user_id":""}]}"#,
            r#"[]"#,
            "<html></html>",
        ] {
            let v = a.classify_list(&every, &WireAnswer::new(200, body.to_string()));
            assert!(matches!(v.class, Class::Unexpected(_)), "{body}: {v:?}");
        }
        // `*` only in link fields, and `provider` only with `identity_user_id`.
        let refused = |user: &str, provider: &str, id: &str| {
            a.prepare(&Fields::from_pairs([
                ("user_id", user),
                ("provider", provider),
                ("identity_user_id", id),
            ]))
            .unwrap_err()
            .field
        };
        assert_eq!(refused("*", "facebook", "*"), "user_id");
        assert_eq!(refused("auth0|u", "*", "1"), "provider");
    }
}
