//! Firebase's service-account credentials: the key file, the RS256 JWT assertion (signed with the
//! jsonwebtoken crate, anew for each token fetch) and the OAuth 2.0 JWT-bearer token exchange at
//! the key's `token_uri` (RFC 7523, Google's server-to-server flow).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use url::Url;

use super::super::ConfigError;
use super::super::wire::{WireAnswer, WireRequest, parse_oauth_token};

/// Google's token endpoint, for a key that names none.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The OAuth scope the access token is asked for.
pub const SCOPE: &str = "https://www.googleapis.com/auth/identitytoolkit";
/// The assertion's lifetime (`exp - iat`); Google accepts at most one hour.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);
/// Lifetime assumed when the token answer names none (Google's access tokens last an hour).
pub(super) const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
pub(super) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The fields of a service-account key file that are used (the rest is ignored).
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: String,
    private_key: String,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

/// A parsed service-account key. The private key stays inside the signing key; `Debug` shows
/// only the account.
pub(super) struct ServiceAccount {
    client_email: String,
    key_id: Option<String>,
    pub(super) token_uri: Url,
    key: EncodingKey,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ServiceAccount({}, {})",
            self.client_email, self.token_uri
        )
    }
}

/// The assertion's claims (RFC 7523, as Google's OAuth 2.0 server-to-server flow asks).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub scope: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
}

impl ServiceAccount {
    /// Parse the key JSON. Messages never quote the text: it holds the private key.
    pub(super) fn parse(text: &str) -> Result<ServiceAccount, ConfigError> {
        let err = |m: String| ConfigError::new("service_account", m);
        let file: KeyFile = serde_json::from_str(text).map_err(|e| {
            err(format!(
                "not a service-account key JSON (client_email, private_key, token_uri): {}",
                // Only the position: serde's message may quote a value.
                format_args!("line {} column {}", e.line(), e.column())
            ))
        })?;
        if file.kind.as_deref().is_some_and(|k| k != "service_account") {
            return Err(err("`type` is not \"service_account\"".into()));
        }
        if file.client_email.trim().is_empty() {
            return Err(err("`client_email` is empty".into()));
        }
        let key = EncodingKey::from_rsa_pem(file.private_key.as_bytes()).map_err(|_| {
            err("`private_key` is not an RSA private key in PEM (BEGIN PRIVATE KEY)".into())
        })?;
        // Held to the https-or-loopback rule when the job loads (`Adapter::other_urls`).
        let uri = file.token_uri.as_deref().unwrap_or(DEFAULT_TOKEN_URI);
        let token_uri = Url::parse(uri).map_err(|_| err("`token_uri` is not a URL".to_string()))?;
        let account = ServiceAccount {
            client_email: file.client_email.trim().to_string(),
            key_id: file.private_key_id.filter(|k| !k.is_empty()),
            token_uri,
            key,
        };
        // Sign once now, so a key the backend cannot use stops the job before any row.
        account
            .assertion(0)
            .map_err(|m| err(format!("cannot sign with `private_key`: {m}")))?;
        Ok(account)
    }

    /// The token request: the JWT-bearer grant with an assertion signed now.
    pub(super) fn token_request(&self) -> WireRequest {
        // The key signed at load, so this fails only if the backend breaks meanwhile; the token
        // endpoint then refuses the empty assertion and the vendor halts with its answer.
        let assertion = self.assertion(now_secs()).unwrap_or_else(|e| {
            tracing::error!("firebase: cannot sign the token assertion: {e}");
            String::new()
        });
        WireRequest::new(Method::POST, self.token_uri.as_str())
            .field("grant_type", GRANT_TYPE)
            .secret_field("assertion", assertion)
    }

    fn claims(&self, now: u64) -> Claims {
        Claims {
            iss: self.client_email.clone(),
            scope: SCOPE.to_string(),
            aud: self.token_uri.as_str().to_string(),
            iat: now,
            exp: now + ASSERTION_LIFETIME.as_secs(),
        }
    }

    /// The signed JWT assertion issued at `now` (seconds since the epoch).
    pub(super) fn assertion(&self, now: u64) -> Result<String, String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        jsonwebtoken::encode(&header, &self.claims(now), &self.key).map_err(|e| e.to_string())
    }
}

pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(super) fn parse_token(answer: &WireAnswer) -> Result<(String, Duration), String> {
    // No cap of its own: a Google access token lives an hour (`Duration::MAX` keeps what the
    // endpoint says, as before).
    let hint = "check the key's token_uri";
    parse_oauth_token(answer, hint, DEFAULT_TOKEN_LIFETIME, Duration::MAX)
}
