//! Simulated Newspark `POST /action/v2/unlinkaccount`: a browser action that answers with
//! redirects.
//!
//! It acts as the session it is sent with: without the session cookie (and the form token, when
//! one is configured) it redirects to a login page. Success redirects to the given `redirectUrl`
//! as given; a link that is not there redirects to `failRedirectUrl?error=not_linked`.

use axum::http::header::CONTENT_TYPE;
use axum::http::{Method, StatusCode};

use super::faults::Limited;
use super::state::{Link, Op, OpKind, Store};
use super::vendor::{Answer, Record, Request, Vendor, field, param, required};

pub(crate) const DEFAULT_SESSION: &str = "session=sim-session";

const UNLINK_PATH: &str = "/action/v2/unlinkaccount";
const LOGIN_REDIRECT: &str = "/login?next=%2Faction%2Fv2%2Funlinkaccount";
/// Where to go when the form names no redirect URL (unconfirmed: Newspark's own fallback).
const FALLBACK_REDIRECT: &str = "/";

/// The session Newspark accepts.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Newspark")]
pub(crate) struct NewsparkOptions {
    /// Cookie pair(s) the `Cookie` header must hold, e.g. "session=abc"
    #[arg(id = "newspark_session", long = "newspark-session", value_name = "COOKIE", default_value = DEFAULT_SESSION)]
    pub session: String,
    /// Also require the form field formToken=TOKEN
    #[arg(
        id = "newspark_form_token",
        long = "newspark-form-token",
        value_name = "TOKEN"
    )]
    pub form_token: Option<String>,
}

impl Default for NewsparkOptions {
    fn default() -> Self {
        NewsparkOptions {
            session: DEFAULT_SESSION.into(),
            form_token: None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Newspark {
    options: NewsparkOptions,
}

impl Newspark {
    pub(crate) fn new(options: &NewsparkOptions) -> Self {
        Newspark {
            options: options.clone(),
        }
    }

    /// Every configured cookie pair is among the request's cookies.
    fn has_session(&self, req: &Request) -> bool {
        let sent: Vec<&str> = req
            .headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .map(str::trim)
            .collect();
        self.options
            .session
            .split(';')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
            .all(|pair| sent.contains(&pair))
    }
}

/// 1–11 digits, as Newspark's ids are.
fn is_id(s: &str) -> bool {
    (1..=11).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// `url` with `?error=code` (or `&error=code`) appended.
fn with_error(url: &str, code: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}error={code}")
}

#[derive(Debug)]
pub(crate) struct Call {
    known: bool,
    form: Vec<(String, String)>,
    vhost: String,
    uid: String,
    /// Lower-cased; empty for "every external id".
    provider: String,
    /// Lower-cased; `none` when not given.
    sub: String,
}

impl Vendor for Newspark {
    const NAME: &'static str = "newspark";
    const OWNER_LEN: usize = 2;
    type Call = Call;

    fn owns(&self, path: &str) -> bool {
        path.starts_with("/action/")
    }

    fn seed(&self, record: &Record) -> Result<Link, String> {
        let vhost = required(record, "vhost")?;
        let uid = required(record, "uid")?;
        for (name, value) in [("vhost", vhost), ("uid", uid)] {
            if !is_id(value) {
                return Err(format!("field `{name}` must be 1 to 11 digits"));
            }
        }
        let provider = required(record, "external_id_provider_name")?.to_lowercase();
        let sub = field(record, "sub_provider_name")
            .unwrap_or("none")
            .to_lowercase();
        Ok(vec![vhost.into(), uid.into(), provider, sub])
    }

    fn parse(&self, req: &Request) -> (Op, Call) {
        let form = req.form_pairs();
        let get = |name| param(&form, name).map(str::trim).unwrap_or("");
        let known = req.method == Method::POST && req.path == UNLINK_PATH;
        let vhost = get("vhost").to_string();
        let uid = get("uid").to_string();
        let provider = get("external_id_provider_name").to_lowercase();
        let sub = match get("sub_provider_name").to_lowercase() {
            s if s.is_empty() => "none".to_string(),
            s => s,
        };
        let mut op = Op::new(if known { OpKind::Unlink } else { OpKind::Other });
        if known && !vhost.is_empty() && !uid.is_empty() {
            let shown = if provider.is_empty() { "*" } else { &provider };
            op = op.key(format!("{vhost}/{uid}/{shown}/{sub}"));
            if !provider.is_empty() && sub != "all" {
                op = op.link(vec![
                    vhost.clone(),
                    uid.clone(),
                    provider.clone(),
                    sub.clone(),
                ]);
            }
        }
        let call = Call {
            known,
            vhost,
            uid,
            provider,
            sub,
            form,
        };
        (op, call)
    }

    fn answer(&self, call: Call, req: &Request, store: &Store) -> Answer {
        if !call.known {
            return Answer::text(StatusCode::NOT_FOUND, "Not Found");
        }
        let token_ok = match &self.options.form_token {
            Some(token) => param(&call.form, "formToken") == Some(token.as_str()),
            None => true,
        };
        if !self.has_session(req) || !token_ok {
            return Answer::redirect(LOGIN_REDIRECT).unauthorized();
        }
        let redirect = param(&call.form, "redirectUrl")
            .filter(|u| !u.is_empty())
            .unwrap_or(FALLBACK_REDIRECT);
        let fail = param(&call.form, "failRedirectUrl")
            .filter(|u| !u.is_empty())
            .unwrap_or(FALLBACK_REDIRECT);
        if !is_id(&call.vhost) || !is_id(&call.uid) {
            // Unconfirmed: what Newspark does with malformed ids.
            return Answer::redirect(&with_error(fail, "invalid_request"));
        }
        let owner = vec![call.vhost, call.uid];
        let removed = store.with(|links| {
            if call.provider.is_empty() {
                links.remove_prefix(&owner) > 0
            } else if call.provider == "janrain" && call.sub == "all" {
                let mut prefix = owner.clone();
                prefix.push(call.provider.clone());
                links.remove_prefix(&prefix) > 0
            } else {
                let mut link = owner.clone();
                link.extend([call.provider.clone(), call.sub.clone()]);
                links.remove(&link)
            }
        });
        if removed {
            Answer::redirect(redirect)
        } else {
            Answer::redirect(&with_error(fail, "not_linked"))
        }
    }

    fn rate_limited(&self, _req: &Request, limited: &Limited) -> Answer {
        Answer::text(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").retry_after(limited)
    }

    fn unavailable(&self, _req: &Request) -> Answer {
        Answer::empty(StatusCode::SERVICE_UNAVAILABLE)
            .header(CONTENT_TYPE, "text/html; charset=utf-8")
            .body("<html><body><h1>503 Service Unavailable</h1></body></html>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_error_urls() {
        assert!(is_id("1"));
        assert!(is_id("12345678901"));
        assert!(!is_id("123456789012"));
        assert!(!is_id("12a"));
        assert!(!is_id(""));
        assert_eq!(with_error("/f", "not_linked"), "/f?error=not_linked");
        assert_eq!(with_error("/f?a=1", "x"), "/f?a=1&error=x");
    }
}
