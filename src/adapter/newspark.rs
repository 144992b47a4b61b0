//! Newspark: the site's own "unlink account" browser action, sent with a configured session.
//!
//! Wire facts are in docs/vendors.md. This is not an admin API: the call acts as the session its
//! configured headers (a cookie) and constant form fields (a form token) carry, and the answer is a
//! redirect. Redirects are never followed (the runner's client is configured so), so the
//! `Location` path tells success (the redirect URL) from refusal (the fail URL); a redirect anywhere
//! else is the site sending us to its login page.

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use url::Url;

use super::http_class;
use super::wire::{WireAnswer, WireRequest};
use super::{
    Adapter, Class, ConfigDoc, ConfigError, FieldDoc, Invalid, Key, Pacing, Params, Prepared,
    Registration, VendorDoc, Verdict, boxed, parse_config,
};
use crate::row::Fields;

pub const PACING: Pacing = Pacing {
    rate: 2.0,
    burst: 2,
    concurrency: 2,
};

const ACTION_PATH: &str = "action/v2/unlinkaccount";

const DEFAULT_REDIRECT_URL: &str = "/unlinker/done";
const DEFAULT_FAIL_REDIRECT_URL: &str = "/unlinker/failed";
const DEFAULT_SUB_PROVIDER: &str = "none";
/// The only provider with sub-providers.
const JANRAIN: &str = "janrain";

const MAX_ID_DIGITS: usize = 11;
const MAX_NAME: usize = 50;
const MAX_ROW_REDIRECT: usize = 100;

/// Marks an all-providers row in its key; an empty value is what is sent.
const ALL_PROVIDERS: &str = "*";

/// Form fields the adapter sets itself; a configured `form` entry may not replace them.
const OWN_FIELDS: &[&str] = &[
    "vhost",
    "uid",
    "redirectUrl",
    "failRedirectUrl",
    "external_id_provider_name",
    "sub_provider_name",
];

const NOT_ACCEPTED: &str = "the session or form token is not accepted";

/// This adapter in the registry (`super::REGISTRY`).
pub const REGISTRATION: Registration = Registration {
    name: "newspark",
    pacing: PACING,
    doc: &DOC,
    build: |table, base_url| boxed(Newspark::from_config(table, base_url)),
};

pub const DOC: VendorDoc = VendorDoc {
    title: "Newspark (POST /action/v2/unlinkaccount, as a logged-in session)",
    fields: &[
        FieldDoc {
            name: "vhost",
            required: true,
            rule: "the site's vhost id: an integer of 1 to 11 digits",
        },
        FieldDoc {
            name: "uid",
            required: true,
            rule: "the user's id: an integer of 1 to 11 digits",
        },
        FieldDoc {
            name: "external_id_provider_name",
            required: true,
            rule: "lower-cased, at most 50 characters (facebook, sheridan, sheridan staff, \
                   janrain, gigya); empty removes every external id and needs \
                   allow_all_providers = true",
        },
        FieldDoc {
            name: "sub_provider_name",
            required: false,
            rule: "lower-cased, at most 50 characters, default none; only janrain takes another \
                   value (all, or a sub-provider such as facebook)",
        },
        FieldDoc {
            name: "redirect_url",
            required: false,
            rule: "this row's redirect URL (a /path or an http(s) URL, at most 100 characters), \
                   instead of the config's",
        },
    ],
    key: "{vhost}/{uid}/{external_id_provider_name or *}/{sub_provider_name}",
    config: &[
        ConfigDoc {
            name: "base_url",
            default: "",
            about: "required: the site, e.g. https://www.example-news.com",
        },
        ConfigDoc {
            name: "headers",
            default: "",
            about: "table of headers sent with every call, e.g. Cookie = \"${NEWSPARK_SESSION}\" \
                    (never written to reports)",
        },
        ConfigDoc {
            name: "form",
            default: "",
            about: "table of constant form fields, e.g. the site's form token (redacted in \
                    reports)",
        },
        ConfigDoc {
            name: "redirect_url",
            default: DEFAULT_REDIRECT_URL,
            about: "where the site redirects after an unlink (a /path or an http(s) URL)",
        },
        ConfigDoc {
            name: "fail_redirect_url",
            default: DEFAULT_FAIL_REDIRECT_URL,
            about: "where the site redirects when it refuses (a /path or an http(s) URL)",
        },
        ConfigDoc {
            name: "allow_all_providers",
            default: "false",
            about: "let rows with an empty external_id_provider_name remove every external id",
        },
    ],
    read_api: false,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    // Loosely typed on purpose: serde's type errors quote the value, and these tables hold
    // credentials, so they are checked below with messages that never do.
    headers: Option<toml::Value>,
    form: Option<toml::Value>,
    redirect_url: Option<String>,
    fail_redirect_url: Option<String>,
    #[serde(default)]
    allow_all_providers: bool,
}

#[derive(Debug)]
pub struct Newspark {
    action: Url,
    /// Configured headers (a session cookie, ...): sent, never rendered.
    headers: Vec<(String, String)>,
    /// Constant form fields, all treated as secrets.
    form: Vec<(String, String)>,
    redirect_url: String,
    fail_redirect_url: String,
    /// `fail_redirect_url`'s path, as [`location_path`] gives it.
    fail_path: String,
    allow_all_providers: bool,
}

impl Newspark {
    /// Validate and normalise a row ([`Adapter::prepare`] adds the partial key on failure).
    fn prepare_fields(&self, fields: &Fields) -> Result<Prepared, Invalid> {
        let vhost = integer_id(fields, "vhost")?;
        let uid = integer_id(fields, "uid")?;
        let provider = lower_name(fields, "external_id_provider_name")?;
        if provider.is_empty() && !self.allow_all_providers {
            return Err(Invalid::new(
                "external_id_provider_name",
                "is required (an empty one removes every external id: set \
                 allow_all_providers = true to allow that)",
            ));
        }
        if provider == ALL_PROVIDERS {
            return Err(Invalid::new(
                "external_id_provider_name",
                "must be a provider name (leave it empty to remove every external id)",
            ));
        }
        let mut sub = lower_name(fields, "sub_provider_name")?;
        if sub.is_empty() {
            sub = DEFAULT_SUB_PROVIDER.to_string();
        }
        if sub != DEFAULT_SUB_PROVIDER && provider != JANRAIN {
            return Err(Invalid::new(
                "sub_provider_name",
                "must be none unless external_id_provider_name is janrain",
            ));
        }
        let redirect_url = match fields.get("redirect_url") {
            None => self.redirect_url.clone(),
            Some(url) => {
                if url.chars().count() > MAX_ROW_REDIRECT {
                    return Err(Invalid::new(
                        "redirect_url",
                        format!("must be at most {MAX_ROW_REDIRECT} characters"),
                    ));
                }
                self.success_path(url)
                    .map_err(|rule| Invalid::new("redirect_url", rule))?;
                url.to_string()
            }
        };
        let key_provider = if provider.is_empty() {
            ALL_PROVIDERS
        } else {
            &provider
        };
        let key = key(&vhost, &uid, key_provider, &sub);
        let mut params = Params::new();
        params.set("vhost", vhost);
        params.set("uid", uid);
        params.set("external_id_provider_name", provider);
        params.set("sub_provider_name", sub);
        params.set("redirect_url", redirect_url);
        Ok(Prepared { key, params })
    }

    pub fn from_config(
        table: toml::Table,
        base_url: Option<Url>,
    ) -> Result<(Self, Url), ConfigError> {
        let config: Config = parse_config(table)?;
        let base = base_url.ok_or_else(|| {
            ConfigError::new(
                "base_url",
                "required: the site, e.g. https://www.example-news.com",
            )
        })?;
        let action = Url::parse(&format!(
            "{}/{ACTION_PATH}",
            base.as_str().trim_end_matches('/')
        ))
        .expect("a base URL plus a path is a URL");

        let headers = string_table("headers", config.headers)?
            .into_iter()
            .map(|(name, value)| {
                let key = format!("headers.{name}");
                if HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(ConfigError::new(key, "is not a valid header name"));
                }
                if HeaderValue::from_str(&value).is_err() {
                    return Err(ConfigError::new(key, "is not a valid header value"));
                }
                Ok((name, value))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let form = string_table("form", config.form)?;
        if let Some((name, _)) = form
            .iter()
            .find(|(name, _)| name.is_empty() || OWN_FIELDS.contains(&name.as_str()))
        {
            return Err(ConfigError::new(
                format!("form.{name}"),
                "is a field the adapter sets itself (or empty)",
            ));
        }

        let fail_redirect_url = config
            .fail_redirect_url
            .map(|u| u.trim().to_string())
            .unwrap_or_else(|| DEFAULT_FAIL_REDIRECT_URL.to_string());
        let fail_path = redirect_target(&action, &fail_redirect_url)
            .ok_or_else(|| ConfigError::new("fail_redirect_url", REDIRECT_RULE))?;
        let redirect_url = config
            .redirect_url
            .map(|u| u.trim().to_string())
            .unwrap_or_else(|| DEFAULT_REDIRECT_URL.to_string());
        let adapter = Newspark {
            action,
            headers,
            form,
            redirect_url,
            fail_redirect_url,
            fail_path,
            allow_all_providers: config.allow_all_providers,
        };
        adapter
            .success_path(&adapter.redirect_url)
            .map_err(|rule| ConfigError::new("redirect_url", rule))?;
        Ok((adapter, base))
    }

    /// The path a redirect to `url` arrives at, when `url` is a usable redirect URL distinct from
    /// the fail URL (else the classification would be ambiguous).
    fn success_path(&self, url: &str) -> Result<String, &'static str> {
        let path = redirect_target(&self.action, url).ok_or(REDIRECT_RULE)?;
        if self.is_fail_path(&path) {
            return Err("must differ from fail_redirect_url (and not extend it with `_`)");
        }
        Ok(path)
    }

    /// A redirect: to this row's redirect URL, the fail URL, or (a login page) anywhere else.
    fn classify_redirect(&self, row: &Prepared, answer: &WireAnswer) -> Class {
        let Some(location) = answer.header("location").filter(|l| !l.trim().is_empty()) else {
            return Class::Unexpected("a redirect without a Location".into());
        };
        let Some(path) = location_path(&self.action, location) else {
            return Class::Unexpected("a redirect whose Location is not a URL".into());
        };
        let success = redirect_target(&self.action, row.params.get("redirect_url"));
        if Some(&path) == success.as_ref() {
            Class::Unlinked
        } else if self.is_fail_path(&path) {
            Class::Failed(format!(
                "newspark refused the unlink (redirected to {location})"
            ))
        } else {
            Class::Halt(format!(
                "newspark redirected to {location} (a login page?): {NOT_ACCEPTED}"
            ))
        }
    }

    /// The fail URL, or a `failRedirectUrl_<code>`-style variant of it.
    fn is_fail_path(&self, path: &str) -> bool {
        path == self.fail_path
            || path
                .strip_prefix(self.fail_path.as_str())
                .is_some_and(|rest| rest.starts_with('_'))
    }
}

const REDIRECT_RULE: &str = "must be a path starting with / or an http(s) URL";

/// Read a `[headers]`/`[form]` table of strings without ever quoting a value in an error.
fn string_table(
    key: &str,
    value: Option<toml::Value>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let toml::Value::Table(table) = value else {
        return Err(ConfigError::new(
            key,
            "must be a table of strings, e.g. { Cookie = \"${NEWSPARK_SESSION}\" }",
        ));
    };
    table
        .into_iter()
        .map(|(name, value)| match value {
            toml::Value::String(s) => Ok((name, s)),
            _ => Err(ConfigError::new(
                format!("{key}.{name}"),
                "must be a string",
            )),
        })
        .collect()
}

/// The path a configured or per-row redirect URL names: a `/path` or an absolute http(s) URL; its
/// query and fragment do not count.
fn redirect_target(action: &Url, url: &str) -> Option<String> {
    let absolute = Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    if absolute.is_none() && !url.starts_with('/') {
        return None;
    }
    location_path(action, url)
}

/// The path of a `Location` (absolute, scheme-relative or relative to the action's URL), with
/// scheme, host, query and fragment ignored, percent-encoding normalised and a trailing `/`
/// dropped, so both sides of a comparison are read the same way.
fn location_path(action: &Url, location: &str) -> Option<String> {
    let url = action.join(location.trim()).ok()?;
    let path = url.path();
    Some(match path.trim_end_matches('/') {
        "" => "/".to_string(),
        trimmed => trimmed.to_string(),
    })
}

/// An integer id of 1 to 11 digits, without leading zeros (`007` and `7` are the same id, and the
/// site reads the field as an integer).
fn integer_id(fields: &Fields, name: &'static str) -> Result<String, Invalid> {
    let value = fields
        .get(name)
        .ok_or_else(|| Invalid::new(name, "is required"))?;
    if value.is_empty() || value.len() > MAX_ID_DIGITS || !value.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(Invalid::new(name, "must be an integer of 1 to 11 digits"));
    }
    Ok(match value.trim_start_matches('0') {
        "" => "0".to_string(),
        digits => digits.to_string(),
    })
}

fn lower_name(fields: &Fields, name: &'static str) -> Result<String, Invalid> {
    let value = fields.get(name).unwrap_or("").to_lowercase();
    if value.chars().count() > MAX_NAME {
        return Err(Invalid::new(
            name,
            format!("must be at most {MAX_NAME} characters"),
        ));
    }
    Ok(value)
}

/// A row's key from its parts: `{vhost}/{uid}/{provider or *}/{sub_provider_name}`.
fn key(vhost: &str, uid: &str, provider: &str, sub: &str) -> Key {
    Key(format!("{vhost}/{uid}/{provider}/{sub}"))
}

/// As much of the key as an invalid row's raw fields give (missing parts empty; names
/// lower-cased as for a valid row).
fn partial_key(fields: &Fields) -> Key {
    let lower = |name| fields.get(name).unwrap_or("").to_lowercase();
    key(
        fields.get("vhost").unwrap_or(""),
        fields.get("uid").unwrap_or(""),
        &lower("external_id_provider_name"),
        &lower("sub_provider_name"),
    )
}

impl Adapter for Newspark {
    fn prepare(&self, fields: &Fields) -> Result<Prepared, Invalid> {
        self.prepare_fields(fields)
            .map_err(|invalid| invalid.with_key(partial_key(fields)))
    }

    fn build(&self, row: &Prepared, _step: u8, _token: Option<&str>) -> WireRequest {
        let p = &row.params;
        let mut req = WireRequest::new(Method::POST, self.action.as_str())
            .field("vhost", p.get("vhost"))
            .field("uid", p.get("uid"))
            .field("redirectUrl", p.get("redirect_url"))
            .field("failRedirectUrl", &self.fail_redirect_url)
            .field(
                "external_id_provider_name",
                p.get("external_id_provider_name"),
            )
            .field("sub_provider_name", p.get("sub_provider_name"));
        for (name, value) in &self.form {
            req = req.secret_field(name, value);
        }
        for (name, value) in &self.headers {
            req = req.header(name.clone(), value);
        }
        req
    }

    fn classify(&self, row: &Prepared, _step: u8, answer: &WireAnswer) -> Verdict {
        let status = answer.status;
        let transient = http_class::transient_class(answer, &[], || answer.text_snippet());
        let class = match status {
            _ if let Some(class) = transient => class,
            // The redirects a form action answers with; 300, 304 and 305 are not.
            301 | 302 | 303 | 307 | 308 => self.classify_redirect(row, answer),
            // The site rendering a page (its login form) instead of redirecting.
            200 | 401 | 403 => {
                Class::Halt(format!("newspark answered HTTP {status}: {NOT_ACCEPTED}"))
            }
            other => Class::Unexpected(format!(
                "HTTP {other} is not an answer the Newspark action gives (a redirect)"
            )),
        };
        Verdict::new(class).request_id(answer.request_id_header())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const BASE: &str = "https://news.example.com";

    fn adapter(extra: &str) -> Newspark {
        let table: toml::Table = toml::from_str(extra).unwrap();
        Newspark::from_config(table, Some(Url::parse(BASE).unwrap()))
            .unwrap()
            .0
    }

    fn row(a: &Newspark, pairs: &[(&str, &str)]) -> Prepared {
        a.prepare(&Fields::from_pairs(pairs.iter().copied()))
            .unwrap()
    }

    fn basic_row(a: &Newspark) -> Prepared {
        row(
            a,
            &[
                ("vhost", "12"),
                ("uid", "345"),
                ("external_id_provider_name", "Facebook"),
            ],
        )
    }

    fn redirect(status: u16, location: &str) -> WireAnswer {
        WireAnswer::new(status, "").with_header("location", location)
    }

    #[test]
    fn builds_form_post_with_session_headers_and_secret_form() {
        let a = adapter(
            "[headers]\nCookie = \"sess=S3SS10N\"\nX-Site = \"news\"\n\
             [form]\nformToken = \"T0K3N\"",
        );
        let r = basic_row(&a);
        assert_eq!(r.key.0, "12/345/facebook/none");
        let req = a.build(&r, 0, None);
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.url, "https://news.example.com/action/v2/unlinkaccount");
        let mut form = req.form.clone();
        form.sort();
        let expected: Vec<(String, String)> = [
            ("external_id_provider_name", "facebook"),
            ("failRedirectUrl", "/unlinker/failed"),
            ("formToken", "T0K3N"),
            ("redirectUrl", "/unlinker/done"),
            ("sub_provider_name", "none"),
            ("uid", "345"),
            ("vhost", "12"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(form, expected);
        assert_eq!(req.header_value("cookie"), Some("sess=S3SS10N"));
        assert_eq!(req.header_value("X-Site"), Some("news"));
        assert_eq!(req.headers.len(), 2);
        let text = req.describe();
        assert!(
            !text.contains("T0K3N") && !text.contains("S3SS10N"),
            "{text}"
        );
        assert!(text.contains("formToken=[redacted]"));
        assert!(text.contains("redirectUrl=%2Funlinker%2Fdone"));
    }

    #[test]
    fn invalid_rows_carry_the_key_parts_they_give() {
        let a = adapter("");
        let key = |pairs: &[(&str, &str)]| {
            let err = a.prepare(&Fields::from_pairs(pairs.iter().copied()));
            err.unwrap_err().key.map(|k| k.0)
        };
        assert_eq!(
            key(&[
                ("vhost", "12a"),
                ("uid", "2"),
                ("external_id_provider_name", "Facebook")
            ])
            .as_deref(),
            Some("12a/2/facebook/")
        );
        assert_eq!(key(&[("uid", "2")]).as_deref(), Some("/2//"));
    }

    #[test]
    fn all_providers_and_janrain_sub_providers() {
        let strict = adapter("");
        let err = strict
            .prepare(&Fields::from_pairs([("vhost", "1"), ("uid", "2")]))
            .unwrap_err();
        assert_eq!(err.field, "external_id_provider_name");
        assert!(err.rule.contains("allow_all_providers"));
        let a = adapter("allow_all_providers = true");
        let all = row(&a, &[("vhost", "1"), ("uid", "2")]);
        assert_eq!(all.key.0, "1/2/*/none");
        let req = a.build(&all, 0, None);
        assert_eq!(req.form_value("external_id_provider_name"), Some(""));
        assert_eq!(req.form_value("sub_provider_name"), Some("none"));
        let janrain = row(
            &a,
            &[
                ("vhost", "1"),
                ("uid", "2"),
                ("external_id_provider_name", "JanRain"),
                ("sub_provider_name", "GooglePlus"),
            ],
        );
        assert_eq!(janrain.key.0, "1/2/janrain/googleplus");
        assert_eq!(
            a.build(&janrain, 0, None).form_value("sub_provider_name"),
            Some("googleplus")
        );
        let staff = row(
            &a,
            &[
                ("vhost", "1"),
                ("uid", "2"),
                ("external_id_provider_name", "Sheridan Staff"),
            ],
        );
        assert_eq!(staff.key.0, "1/2/sheridan staff/none");
    }

    #[test]
    fn validates_rows() {
        let a = adapter("");
        let bad = |pairs: &[(&str, &str)]| {
            let mut all = vec![
                ("vhost", "1"),
                ("uid", "2"),
                ("external_id_provider_name", "facebook"),
            ];
            all.extend_from_slice(pairs);
            let err = a.prepare(&Fields::from_pairs(all)).unwrap_err();
            Invalid { key: None, ..err }
        };
        let id_rule = "must be an integer of 1 to 11 digits";
        assert_eq!(bad(&[("vhost", "")]), Invalid::new("vhost", "is required"));
        assert_eq!(bad(&[("vhost", "12a")]), Invalid::new("vhost", id_rule));
        assert_eq!(bad(&[("vhost", "-1")]), Invalid::new("vhost", id_rule));
        assert_eq!(
            bad(&[("uid", "123456789012")]),
            Invalid::new("uid", id_rule)
        );
        assert_eq!(bad(&[("uid", "1.5")]), Invalid::new("uid", id_rule));
        let ok = row(
            &a,
            &[
                ("vhost", "00012345678"),
                ("uid", "0"),
                ("external_id_provider_name", "gigya"),
            ],
        );
        assert_eq!(ok.key.0, "12345678/0/gigya/none");
        assert_eq!(
            bad(&[("external_id_provider_name", &"p".repeat(51))]),
            Invalid::new("external_id_provider_name", "must be at most 50 characters")
        );
        assert_eq!(
            bad(&[("external_id_provider_name", "*")]).field,
            "external_id_provider_name"
        );
        assert_eq!(
            bad(&[("sub_provider_name", "all")]),
            Invalid::new(
                "sub_provider_name",
                "must be none unless external_id_provider_name is janrain"
            )
        );
        assert_eq!(
            bad(&[
                ("external_id_provider_name", "janrain"),
                ("sub_provider_name", &"s".repeat(51))
            ]),
            Invalid::new("sub_provider_name", "must be at most 50 characters")
        );
        let long = format!("/{}", "r".repeat(100));
        assert_eq!(
            bad(&[("redirect_url", &long)]),
            Invalid::new("redirect_url", "must be at most 100 characters")
        );
        assert_eq!(
            bad(&[("redirect_url", "done")]),
            Invalid::new("redirect_url", REDIRECT_RULE)
        );
        assert_eq!(
            bad(&[("redirect_url", "ftp://x/done")]),
            Invalid::new("redirect_url", REDIRECT_RULE)
        );
        assert_eq!(
            bad(&[("redirect_url", "/unlinker/failed")]).field,
            "redirect_url"
        );
        assert_eq!(
            bad(&[("redirect_url", "https://x.test/unlinker/failed_2?a=1")]).field,
            "redirect_url"
        );
    }

    #[test]
    fn classification_table() {
        let a = adapter("");
        let r = basic_row(&a);
        let class = |answer: WireAnswer| a.classify(&r, 0, &answer).class;
        // The redirect URL, relative or absolute, with any host and query.
        assert_eq!(class(redirect(302, "/unlinker/done")), Class::Unlinked);
        assert_eq!(
            class(redirect(303, "/unlinker/done/?ok=1")),
            Class::Unlinked
        );
        assert_eq!(
            class(redirect(
                302,
                "https://www.news.example.com/unlinker/done?x=1#y"
            )),
            Class::Unlinked
        );
        assert_eq!(
            class(redirect(301, "//cdn.test/unlinker/done")),
            Class::Unlinked
        );
        // The fail URL and its `_<code>` variants.
        assert_eq!(
            class(redirect(302, "/unlinker/failed?reason=last")),
            Class::Failed(
                "newspark refused the unlink (redirected to /unlinker/failed?reason=last)".into()
            )
        );
        assert!(matches!(
            class(redirect(302, "https://news.example.com/unlinker/failed_409")),
            Class::Failed(m) if m.contains("/unlinker/failed_409")
        ));
        // Anywhere else: a login page.
        assert!(matches!(
            class(redirect(302, "/login?return=%2Faction")),
            Class::Halt(m) if m.contains("/login") && m.contains(NOT_ACCEPTED)
        ));
        assert!(matches!(
            class(redirect(302, "/unlinker/failedx")),
            Class::Halt(_)
        ));
        assert!(matches!(
            class(redirect(302, "/unlinker/done2")),
            Class::Halt(_)
        ));
        assert!(matches!(
            class(WireAnswer::new(302, "")),
            Class::Unexpected(_)
        ));
        assert_eq!(class(WireAnswer::new(429, "")), Class::RateLimit(None));
        assert_eq!(
            class(WireAnswer::new(429, "").with_header("retry-after", "30")),
            Class::RateLimit(Some(Duration::from_secs(30)))
        );
        assert!(matches!(class(WireAnswer::new(500, "")), Class::Retry(_)));
        assert!(
            matches!(class(WireAnswer::new(503, "busy")), Class::Retry(m) if m.contains("busy"))
        );
        assert!(matches!(class(WireAnswer::new(408, "")), Class::Retry(_)));
        for status in [200, 401, 403] {
            assert!(
                matches!(class(WireAnswer::new(status, "<html>")), Class::Halt(m) if m.contains(NOT_ACCEPTED)),
                "{status}"
            );
        }
        assert!(matches!(
            class(WireAnswer::new(404, "")),
            Class::Unexpected(_)
        ));
        assert!(matches!(
            class(WireAnswer::new(400, "bad")),
            Class::Unexpected(_)
        ));
        let v = a.classify(
            &r,
            0,
            &redirect(302, "/unlinker/done").with_header("x-request-id", "q9"),
        );
        assert_eq!(v.request_id.as_deref(), Some("q9"));
        assert_eq!(v.vendor_code, None);
    }

    #[test]
    fn answer_table() {
        const HTML: &str = "<!DOCTYPE html><html><body>Sign in</body></html>";
        let a = adapter("");
        let r = basic_row(&a);
        type Row<'a> = (u16, &'a [(&'static str, &'a str)], &'a str, &'a str);
        let table: &[Row<'_>] = &[
            (302, &[("location", "/unlinker/done")], "", "unlinked"),
            (
                303,
                &[("location", "https://x.test/unlinker/done?a=1")],
                HTML,
                "unlinked",
            ),
            (301, &[("location", "/unlinker/done")], "", "unlinked"),
            (307, &[("location", "/unlinker/done")], "", "unlinked"),
            (308, &[("location", "/unlinker/done")], "", "unlinked"),
            (302, &[("location", "/unlinker/failed")], "", "failed"),
            (
                302,
                &[("location", "/unlinker/failed_not_linked")],
                "",
                "failed",
            ),
            (302, &[("location", "/login?next=/action")], "", "halt"),
            (302, &[("location", "https://sso.test/")], "", "halt"),
            (200, &[("content-type", "text/html")], HTML, "halt"),
            (200, &[], "", "halt"),
            (401, &[], "", "halt"),
            (403, &[("content-type", "text/html")], HTML, "halt"),
            (429, &[], "", "rate-limit"),
            (
                429,
                &[("retry-after", "99999999999999999999")],
                "",
                "rate-limit",
            ),
            (408, &[], "", "retry"),
            (500, &[], "", "retry"),
            (503, &[("content-type", "text/html")], HTML, "retry"),
            // Redirects without a usable Location, and redirects a form action never gives.
            (302, &[], "", "unexpected"),
            (302, &[("location", " ")], "", "unexpected"),
            (302, &[("location", "http://[::1")], "", "unexpected"),
            (300, &[("location", "/unlinker/done")], "", "unexpected"),
            (304, &[("location", "/unlinker/done")], "", "unexpected"),
            // Statuses not in the table.
            (201, &[], "", "unexpected"),
            (204, &[], "", "unexpected"),
            (400, &[], "bad", "unexpected"),
            (404, &[("content-type", "text/html")], HTML, "unexpected"),
            (405, &[], "", "unexpected"),
            (418, &[], "", "unexpected"),
        ];
        for (status, headers, body, want) in table {
            let answer = headers
                .iter()
                .fold(WireAnswer::new(*status, body.to_string()), |ans, (n, v)| {
                    ans.with_header(n, v)
                });
            let v = a.classify(&r, 0, &answer);
            assert_eq!(
                v.class.name(),
                *want,
                "{status} {headers:?} {body:?} → {:?}",
                v.class
            );
        }
    }

    #[test]
    fn configured_absolute_urls_compare_by_path() {
        let a = adapter(
            "redirect_url = \"https://news.example.com/u/ok?src=unlinker\"\n\
             fail_redirect_url = \"https://news.example.com/u/no\"",
        );
        let r = basic_row(&a);
        let req = a.build(&r, 0, None);
        assert_eq!(
            req.form_value("redirectUrl"),
            Some("https://news.example.com/u/ok?src=unlinker")
        );
        assert_eq!(
            req.form_value("failRedirectUrl"),
            Some("https://news.example.com/u/no")
        );
        let class = |location: &str| a.classify(&r, 0, &redirect(302, location)).class;
        assert_eq!(class("/u/ok"), Class::Unlinked);
        assert_eq!(
            class("http://other.test/u/ok?src=unlinker"),
            Class::Unlinked
        );
        assert!(matches!(class("/u/no_5"), Class::Failed(_)));
        assert!(matches!(class("/unlinker/done"), Class::Halt(_)));
    }

    #[test]
    fn per_row_redirect_override() {
        let a = adapter("");
        let r = row(
            &a,
            &[
                ("vhost", "1"),
                ("uid", "2"),
                ("external_id_provider_name", "gigya"),
                ("redirect_url", "/campaign/unlinked?id=7"),
            ],
        );
        assert_eq!(r.key.0, "1/2/gigya/none");
        assert_eq!(
            a.build(&r, 0, None).form_value("redirectUrl"),
            Some("/campaign/unlinked?id=7")
        );
        let class = |location: &str| a.classify(&r, 0, &redirect(302, location)).class;
        assert_eq!(
            class("https://news.example.com/campaign/unlinked?id=7"),
            Class::Unlinked
        );
        // The config's URL is not this row's success.
        assert!(matches!(class("/unlinker/done"), Class::Halt(_)));
        assert!(matches!(class("/unlinker/failed"), Class::Failed(_)));
    }

    #[test]
    fn base_path_is_kept_and_no_read_api() {
        let base = Url::parse("http://127.0.0.1:8087/np/").unwrap();
        let (a, url) = Newspark::from_config(toml::Table::new(), Some(base.clone())).unwrap();
        assert_eq!(url, base);
        let r = basic_row(&a);
        assert_eq!(
            a.build(&r, 0, None).url,
            "http://127.0.0.1:8087/np/action/v2/unlinkaccount"
        );
        assert!(a.read(&r, None).is_none());
        assert_eq!(REGISTRATION.doc.read_api, a.read(&r, None).is_some());
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |src: &str| {
            let base = Some(Url::parse(BASE).unwrap());
            Newspark::from_config(toml::from_str(src).unwrap(), base).unwrap_err()
        };
        let missing = Newspark::from_config(toml::Table::new(), None).unwrap_err();
        assert_eq!(missing.key, "base_url");
        assert_eq!(err("cookies = \"x\"").key, "cookies");
        let e = err("headers = \"S3CR3T\"");
        assert_eq!(e.key, "headers");
        assert!(!e.to_string().contains("S3CR3T"));
        assert_eq!(err("[headers]\nCookie = 1").key, "headers.Cookie");
        assert_eq!(
            err("[headers]\n\"Bad Name\" = \"v\"").key,
            "headers.Bad Name"
        );
        let e = err("[headers]\nCookie = \"S3CR3T\\n\"");
        assert_eq!(e.key, "headers.Cookie");
        assert!(!e.to_string().contains("S3CR3T"));
        assert_eq!(err("form = 5").key, "form");
        assert_eq!(err("[form]\ntoken = true").key, "form.token");
        assert_eq!(err("[form]\nuid = \"1\"").key, "form.uid");
        assert_eq!(err("redirect_url = \"done\"").key, "redirect_url");
        assert_eq!(
            err("fail_redirect_url = \"mailto:x@y\"").key,
            "fail_redirect_url"
        );
        assert_eq!(
            err("redirect_url = \"/unlinker/failed_ok\"").key,
            "redirect_url"
        );
    }
}
