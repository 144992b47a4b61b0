//! Firebase Authentication (Identity Toolkit API v1): remove a federated provider from a user.
//!
//! Firebase unlinks silently: an update naming a provider that is not linked answers 200 and does
//! nothing, and one that removes the user's last sign-in method succeeds and locks the user out.
//! So a row is two calls (docs/vendors.md): step 0 looks the user up (`accounts:lookup`) and
//! decides — not linked is `absent`, the last way to sign in is `failed` unless
//! `allow_last_sign_in_method` — and step 1 sends the update (`accounts:update` with
//! `deleteProvider`), whose answer must no longer list the provider. The lookup is also the read
//! for in-doubt settlement and `--dry-run --check`.
//!
//! Credentials are a static bearer `token`, or a `service_account` key: an RS256 JWT assertion,
//! signed anew for each token fetch (jsonwebtoken crate), exchanged at the key's `token_uri` for
//! an access token that the runner shares and refreshes like Auth0's client-credentials token.

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::http_class;
use super::wire::{WireAnswer, WireRequest};
use super::{
    Adapter, Class, ConfigDoc, ConfigError, FieldDoc, Invalid, Key, Pacing, Params, Prepared,
    Registration, VendorDoc, Verdict, boxed, parse_config,
};
use crate::row::Fields;
use account::ServiceAccount;

pub const PACING: Pacing = Pacing {
    rate: 10.0,
    burst: 10,
    concurrency: 8,
};

pub const DEFAULT_BASE_URL: &str = "https://identitytoolkit.googleapis.com";
/// Longest `uid` Firebase allows.
const MAX_UID_CHARS: usize = 128;

/// Federated providers Firebase links (`oidc.*` and `saml.*` are accepted by prefix).
pub const PROVIDERS: &[&str] = &[
    "google.com",
    "facebook.com",
    "apple.com",
    "github.com",
    "twitter.com",
    "microsoft.com",
    "yahoo.com",
    "playgames.google.com",
    "gc.apple.com",
];

/// `provider_id` of a wildcard row: every linked federated provider.
const WILDCARD: &str = "*";

/// Sign-in methods that are not links: refused in rows, never listed for a wildcard.
const NOT_LINKS: &[&str] = &["password", "phone"];

/// This adapter in the registry (`super::REGISTRY`).
pub const REGISTRATION: Registration = Registration {
    name: "firebase",
    pacing: PACING,
    doc: &DOC,
    build: |table, base_url| boxed(Firebase::from_config(table, base_url)),
};

pub const DOC: VendorDoc = VendorDoc {
    title: "Firebase Authentication (Identity Toolkit v1 accounts:lookup, then accounts:update deleteProvider)",
    fields: &[
        FieldDoc {
            name: "uid",
            required: true,
            rule: "the Firebase user's uid, 1-128 characters",
        },
        FieldDoc {
            name: "provider_id",
            required: true,
            rule: "a federated provider, e.g. google.com, apple.com, oidc.NAME, saml.NAME, or * for every one (never password or phone)",
        },
    ],
    key: "{uid}/{provider_id}",
    config: &[
        ConfigDoc {
            name: "project_id",
            default: "",
            about: "the Google Cloud / Firebase project id",
        },
        ConfigDoc {
            name: "service_account",
            default: "",
            about: "service-account key JSON, e.g. \"${file:/run/secrets/firebase-sa.json}\" (or token)",
        },
        ConfigDoc {
            name: "token",
            default: "",
            about: "a static OAuth2 access token (or service_account)",
        },
        ConfigDoc {
            name: "allow_last_sign_in_method",
            default: "false",
            about: "also remove a provider that is the user's last way to sign in",
        },
    ],
    read_api: true,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    project_id: String,
    token: Option<String>,
    service_account: Option<String>,
    #[serde(default)]
    allow_last_sign_in_method: bool,
}

#[derive(Debug)]
enum Credentials {
    Static(String),
    Account(Box<ServiceAccount>),
}

#[derive(Debug)]
pub struct Firebase {
    /// `{base_url}/v1/projects/{project_id}/accounts`, no trailing slash.
    accounts: String,
    credentials: Credentials,
    allow_last_sign_in_method: bool,
}

/// Which call of a row an answer is to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Lookup,
    Update,
}

impl Firebase {
    pub fn from_config(
        table: toml::Table,
        base_url: Option<Url>,
    ) -> Result<(Self, Url), ConfigError> {
        let config: Config = parse_config(table)?;
        let project = config.project_id.trim();
        if project.is_empty()
            || !project
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':' || c == '.')
        {
            return Err(ConfigError::new(
                "project_id",
                "must be a project id (letters, digits and -)",
            ));
        }
        let url = match base_url {
            Some(url) => url,
            None => Url::parse(DEFAULT_BASE_URL).expect("the default base URL parses"),
        };
        let credentials = match (config.token, config.service_account) {
            (Some(token), None) => {
                if token.trim().is_empty() {
                    return Err(ConfigError::new("token", "is empty"));
                }
                Credentials::Static(token.trim().to_string())
            }
            (None, Some(text)) => Credentials::Account(Box::new(ServiceAccount::parse(&text)?)),
            (None, None) => {
                return Err(ConfigError::new("token", "required (or service_account)"));
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "token",
                    "give either token or service_account, not both",
                ));
            }
        };
        let accounts = format!(
            "{}/v1/projects/{project}/accounts",
            url.as_str().trim_end_matches('/')
        );
        Ok((
            Firebase {
                accounts,
                credentials,
                allow_last_sign_in_method: config.allow_last_sign_in_method,
            },
            url,
        ))
    }

    /// Validate and normalise a row ([`Adapter::prepare`] adds the partial key on failure).
    fn prepare_fields(&self, fields: &Fields) -> Result<Prepared, Invalid> {
        let uid = fields
            .get("uid")
            .ok_or_else(|| Invalid::new("uid", "is required"))?;
        let chars = uid.chars().count();
        if chars == 0 || chars > MAX_UID_CHARS {
            return Err(Invalid::new("uid", "must be 1-128 characters"));
        }
        let provider = fields
            .get("provider_id")
            .ok_or_else(|| Invalid::new("provider_id", "is required"))?;
        if provider != WILDCARD {
            check_provider(provider)?;
        }
        let mut params = Params::new();
        params.set("uid", uid);
        params.set("provider_id", provider);
        Ok(Prepared {
            key: key(uid, provider),
            params,
        })
    }

    fn bearer(&self, token: Option<&str>) -> String {
        match (&self.credentials, token) {
            (Credentials::Static(t), _) => format!("Bearer {t}"),
            (Credentials::Account(_), Some(t)) => format!("Bearer {t}"),
            // The runner always fetches a token first; an empty one makes the vendor answer 401.
            (Credentials::Account(_), None) => "Bearer ".to_string(),
        }
    }

    fn lookup(&self, row: &Prepared, token: Option<&str>) -> WireRequest {
        WireRequest::new(Method::POST, format!("{}:lookup", self.accounts))
            .header("Authorization", self.bearer(token))
            .json(&json!({"localId": [row.params.get("uid")]}))
    }

    fn update(&self, row: &Prepared, token: Option<&str>) -> WireRequest {
        WireRequest::new(Method::POST, format!("{}:update", self.accounts))
            .header("Authorization", self.bearer(token))
            .json(&json!({
                "localId": row.params.get("uid"),
                "deleteProvider": [row.params.get("provider_id")],
            }))
    }

    /// The lookup's answer: whether the row's provider is linked and may be removed. `present`
    /// is the class for "linked and safe to remove" (step 0: `Unlinked`, a read: `Present`).
    fn classify_lookup(&self, row: &Prepared, answer: &WireAnswer, present: Class) -> Verdict {
        if answer.status != 200 {
            return self.classify_error(answer, Call::Lookup);
        }
        let user = match lookup_user(answer, row.params.get("uid")) {
            Ok(Some(user)) => user,
            Ok(None) => return Verdict::new(Class::Absent("the user does not exist".into())),
            Err(what) => return Verdict::new(Class::Unexpected(what)),
        };
        let provider = row.params.get("provider_id");
        if !user.providers.iter().any(|p| p == provider) {
            return Verdict::new(Class::Absent(format!("the user has no {provider} link")));
        }
        if !self.allow_last_sign_in_method && !user.can_sign_in_without(provider) {
            return Verdict::new(Class::Failed(LAST_METHOD.into()));
        }
        Verdict::new(present)
    }

    /// A wildcard row's lookup: every federated provider the user has, each as an explicit row.
    /// Removing them all leaves only a password or a phone number, so the guard is decided here,
    /// on the whole set: without either the row fails and nothing is removed. A wildcard never
    /// removes a user's last way to sign in (SPEC section 3), whatever
    /// `allow_last_sign_in_method` says; each listed link is checked again at its own lookup.
    fn classify_listing(&self, row: &Prepared, answer: &WireAnswer) -> Verdict {
        if answer.status != 200 {
            return self.classify_error(answer, Call::Lookup);
        }
        let uid = row.params.get("uid");
        let user = match lookup_user(answer, uid) {
            Ok(Some(user)) => user,
            Ok(None) => return Verdict::new(Class::Absent("the user does not exist".into())),
            Err(what) => return Verdict::new(Class::Unexpected(what)),
        };
        let mut links: Vec<&str> = user
            .providers
            .iter()
            .map(String::as_str)
            .filter(|p| !NOT_LINKS.contains(p))
            .collect();
        links.dedup();
        let keeps_a_way_in = user.password || user.phone;
        if !links.is_empty() && !keeps_a_way_in {
            return Verdict::new(Class::Failed(format!(
                "removing every linked provider ({}) {WILDCARD_LAST_METHOD}",
                links.join(", ")
            )));
        }
        let listed = links
            .into_iter()
            .map(|provider| {
                let mut params = Params::new();
                params.set("uid", uid);
                params.set("provider_id", provider);
                Prepared {
                    key: key(uid, provider),
                    params,
                }
            })
            .collect();
        Verdict::new(Class::Listed(listed))
    }

    fn classify_update(&self, row: &Prepared, answer: &WireAnswer) -> Verdict {
        if answer.status != 200 {
            return self.classify_error(answer, Call::Update);
        }
        let uid = row.params.get("uid");
        let body = answer.parse_json();
        let providers = body
            .as_ref()
            .filter(|b| b.get("localId").and_then(Value::as_str) == Some(uid))
            .and_then(provider_ids);
        let Some(providers) = providers else {
            return Verdict::new(Class::Unexpected(
                "a 200 that is not the user's SetAccountInfoResponse (a JSON object with its \
                 localId and providerUserInfo entries naming their providerId)"
                    .into(),
            ));
        };
        let provider = row.params.get("provider_id");
        if providers.iter().any(|p| p == provider) {
            return Verdict::new(Class::Unexpected(format!(
                "a 200 whose providerUserInfo still lists {provider}: the update did not remove it"
            )));
        }
        Verdict::new(Class::Unlinked)
    }

    /// A non-200 answer to either call (docs/vendors.md, Firebase answers). Only Google's own
    /// error body leads to an outcome; 401, 403, 429 and the retried statuses are acted on
    /// whatever their body, as none of them is an outcome.
    fn classify_error(&self, answer: &WireAnswer, call: Call) -> Verdict {
        let error = ErrorBody::parse(answer);
        let message = match &error {
            Some(e) => e.message.clone(),
            None => format!("HTTP {}: {}", answer.status, answer.text_snippet()),
        };
        let code = error.as_ref().map(|e| e.code().to_string());
        let transient = http_class::transient_class(answer, &[], || message.clone());
        let class = match (answer.status, &error) {
            _ if let Some(class) = transient => class,
            (400, Some(e)) if e.code() == "USER_NOT_FOUND" => match call {
                Call::Lookup => Class::Absent("the user does not exist".into()),
                // The lookup just found the user: it was deleted in between, and the link
                // with it. Not `absent` (that is decided before any change) and not
                // `unlinked` (this run did not remove it): a failure that says so; a retry
                // of the row finds it absent.
                Call::Update => Class::Failed(
                    "the user was deleted between the lookup and the update (USER_NOT_FOUND); \
                     the link is gone with it"
                        .into(),
                ),
            },
            (400, Some(_)) => Class::Failed(message),
            (400, None) => Class::Unexpected("a 400 without Google's JSON error body".into()),
            (401, _) => match self.credentials {
                Credentials::Account(_) => Class::Reauth(format!("firebase: 401 {message}")),
                Credentials::Static(_) => {
                    Class::Halt(format!("firebase refused the token (401): {message}"))
                }
            },
            (403, _) => Class::Halt(format!(
                "firebase refused the call (403; the service account needs the identitytoolkit \
                 or cloud-platform scope and a Firebase Authentication Admin role): {message}"
            )),
            (200..=299, _) => Class::Unexpected(format!(
                "HTTP {} is not an answer Firebase documents for this call",
                answer.status
            )),
            (other, _) => Class::Unexpected(format!(
                "HTTP {other} is not an answer Firebase documents for this call"
            )),
        };
        Verdict::new(class).code(code)
    }
}

/// Why a row that would lock its user out fails.
pub const LAST_METHOD: &str = "would leave the user without a way to sign in (no other provider, \
     password or phone number); set allow_last_sign_in_method = true to remove it anyway";

/// Why a wildcard row that would lock its user out fails.
pub const WILDCARD_LAST_METHOD: &str = "would leave the user without a way to sign in (no \
     password or phone number), which a wildcard row never does; name the provider in a row of \
     its own (with allow_last_sign_in_method = true) to remove it anyway";

/// Why a wildcard row sent as it stands fails.
const NOT_LISTED: &str = "a wildcard row (provider_id = \"*\") is removed link by link after \
     listing the user's providers; it cannot be sent as it stands";

/// `provider_id` of a row: a federated provider, never `password` or `phone`.
fn check_provider(provider: &str) -> Result<(), Invalid> {
    if NOT_LINKS.contains(&provider) {
        return Err(Invalid::new(
            "provider_id",
            format!("`{provider}` is a sign-in method, not a linked provider"),
        ));
    }
    let custom = ["oidc.", "saml."].iter().any(|prefix| {
        provider
            .strip_prefix(prefix)
            .is_some_and(|name| !name.is_empty() && !name.contains('/'))
    });
    if PROVIDERS.contains(&provider) || custom {
        return Ok(());
    }
    Err(Invalid::new(
        "provider_id",
        format!(
            "`{provider}` is not a Firebase provider id (google.com, apple.com, oidc.NAME, ...; \
             see `unlinker vendors`)"
        ),
    ))
}

/// The user of a lookup answer, as far as unlinking cares.
#[derive(Debug)]
struct User {
    /// `providerId` of every `providerUserInfo` entry.
    providers: Vec<String>,
    password: bool,
    phone: bool,
}

impl User {
    /// Whether the user keeps a way to sign in once `provider` is removed.
    fn can_sign_in_without(&self, provider: &str) -> bool {
        self.password || self.phone || self.providers.iter().any(|p| p != provider)
    }
}

/// A lookup's 200 answer: `Ok(None)` for Google's "no such user" answer (a
/// `GetAccountInfoResponse` without `users`), `Ok(Some)` for the user asked about, `Err` for
/// anything else.
fn lookup_user(answer: &WireAnswer, uid: &str) -> Result<Option<User>, String> {
    let not_lookup = || {
        "a 200 that is not a GetAccountInfoResponse for the user (a JSON object with kind \
         identitytoolkit#GetAccountInfoResponse, or users[0] with its localId and \
         providerUserInfo entries naming their providerId)"
            .to_string()
    };
    let body = answer
        .parse_json()
        .filter(Value::is_object)
        .ok_or_else(not_lookup)?;
    let Some(users) = body.get("users") else {
        let kind = body.get("kind").and_then(Value::as_str);
        return match kind {
            Some("identitytoolkit#GetAccountInfoResponse") => Ok(None),
            _ => Err(not_lookup()),
        };
    };
    let users = users.as_array().ok_or_else(not_lookup)?;
    let user = match users.as_slice() {
        [] => return Ok(None),
        [user] => user,
        _ => return Err("a lookup of one uid answered with several users".into()),
    };
    if user.get("localId").and_then(Value::as_str) != Some(uid) {
        return Err(not_lookup());
    }
    let providers = provider_ids(user).ok_or_else(not_lookup)?;
    let set = |name: &str| {
        user.get(name)
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty())
    };
    Ok(Some(User {
        providers,
        password: set("passwordHash"),
        phone: set("phoneNumber"),
    }))
}

/// `providerId` of each `providerUserInfo` entry of a user or update answer (a missing array is
/// an empty one: Google's JSON leaves out empty lists); `None` when an entry names none.
fn provider_ids(object: &Value) -> Option<Vec<String>> {
    match object.get("providerUserInfo") {
        None => Some(Vec::new()),
        Some(list) => list
            .as_array()?
            .iter()
            .map(|entry| entry.get("providerId")?.as_str().map(str::to_string))
            .collect(),
    }
}

/// Google's error body: `{"error":{"code":400,"message":"USER_NOT_FOUND",...}}` with `code`
/// equal to the HTTP status.
#[derive(Debug)]
struct ErrorBody {
    message: String,
}

impl ErrorBody {
    fn parse(answer: &WireAnswer) -> Option<ErrorBody> {
        let body = answer.parse_json()?;
        let error = body.get("error")?;
        if error.get("code")?.as_u64()? != u64::from(answer.status) {
            return None;
        }
        let message = error.get("message")?.as_str()?.to_string();
        Some(ErrorBody { message })
    }

    /// The message's first word (`INVALID_ARGUMENT : ...` → `INVALID_ARGUMENT`).
    fn code(&self) -> &str {
        self.message
            .split(|c: char| c.is_whitespace() || c == ':')
            .next()
            .unwrap_or("")
    }
}

/// A row's key from its parts: `{uid}/{provider_id}`.
fn key(uid: &str, provider: &str) -> Key {
    Key(format!("{uid}/{provider}"))
}

fn partial_key(fields: &Fields) -> Key {
    key(
        fields.get("uid").unwrap_or(""),
        fields.get("provider_id").unwrap_or(""),
    )
}

impl Adapter for Firebase {
    fn prepare(&self, fields: &Fields) -> Result<Prepared, Invalid> {
        self.prepare_fields(fields)
            .map_err(|invalid| invalid.with_key(partial_key(fields)))
    }

    /// The lookup, then the update (made only when the lookup found the link safe to remove).
    fn steps(&self, _row: &Prepared) -> u8 {
        2
    }

    /// The lookup changes nothing: a resume makes it again, and a lost answer to it is asked
    /// again; the update's lost answer is settled by a lookup.
    fn reads_only(&self, _row: &Prepared, step: u8) -> bool {
        step == 0
    }

    fn build(&self, row: &Prepared, step: u8, token: Option<&str>) -> WireRequest {
        match step {
            0 => self.lookup(row, token),
            _ => self.update(row, token),
        }
    }

    fn classify(&self, row: &Prepared, step: u8, answer: &WireAnswer) -> Verdict {
        if self.is_wildcard(row) {
            // Wildcard rows are listed, never sent as they stand; should one be, it must not
            // come out `absent` ("no `*` link").
            return Verdict::new(Class::Failed(NOT_LISTED.into()));
        }
        match step {
            0 => self.classify_lookup(row, answer, Class::Unlinked),
            _ => self.classify_update(row, answer),
        }
    }

    fn can_read(&self) -> bool {
        true
    }

    fn read(&self, row: &Prepared, token: Option<&str>) -> Option<WireRequest> {
        Some(self.lookup(row, token))
    }

    /// The lookup as a read: `present` only when the real run would send the update, so
    /// `--dry-run --check` reports the guard's refusal as the failure the run would give.
    fn classify_read(&self, row: &Prepared, answer: &WireAnswer) -> Verdict {
        if self.is_wildcard(row) {
            return Verdict::new(Class::Failed(NOT_LISTED.into()));
        }
        self.classify_lookup(row, answer, Class::Present)
    }

    fn is_wildcard(&self, row: &Prepared) -> bool {
        row.params.get("provider_id") == WILDCARD
    }

    fn classify_list(&self, row: &Prepared, answer: &WireAnswer) -> Verdict {
        self.classify_listing(row, answer)
    }

    fn other_urls(&self) -> Vec<(&'static str, &'static str, String)> {
        match &self.credentials {
            Credentials::Account(account) => {
                let uri = account.token_uri.as_str().to_string();
                vec![("service_account", "the key's token_uri", uri)]
            }
            Credentials::Static(_) => Vec::new(),
        }
    }

    fn fetches_token(&self) -> bool {
        matches!(self.credentials, Credentials::Account(_))
    }

    fn token_request(&self) -> Option<WireRequest> {
        match &self.credentials {
            Credentials::Account(account) => Some(account.token_request()),
            Credentials::Static(_) => None,
        }
    }

    fn parse_token(&self, answer: &WireAnswer) -> Result<(String, Duration), String> {
        account::parse_token(answer)
    }
}

mod account;

#[cfg(test)]
mod tests;
