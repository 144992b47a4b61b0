//! FusionAuth: remove a user's link to an identity provider.
//!
//! Wire facts are in docs/vendors.md: a `DELETE /api/identity-provider/link` with the three ids in the
//! query string, the bare API key in `Authorization` and, on multi-tenant deployments, the tenant in
//! `X-FusionAuth-TenantId`. A repeated DELETE answers 200 or 404, so retries are safe.

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
    rate: 50.0,
    burst: 50,
    concurrency: 16,
};

const LINK_PATH: &str = "/api/identity-provider/link";

const UUID_RULE: &str = "must be a UUID (8-4-4-4-12 hexadecimal digits)";

/// This adapter in the registry (`super::REGISTRY`).
pub const REGISTRATION: Registration = Registration {
    name: "fusionauth",
    pacing: PACING,
    doc: &DOC,
    build: |table, base_url| boxed(FusionAuth::from_config(table, base_url)),
};

pub const DOC: VendorDoc = VendorDoc {
    title: "FusionAuth (DELETE /api/identity-provider/link)",
    fields: &[
        FieldDoc {
            name: "user_id",
            required: true,
            rule: "the user's UUID",
        },
        FieldDoc {
            name: "identity_provider_id",
            required: true,
            rule: "the identity provider's UUID; `*` (with identity_provider_user_id `*`): every provider",
        },
        FieldDoc {
            name: "identity_provider_user_id",
            required: true,
            rule: "the user's id at the identity provider (non-empty, sent as given); `*`: every link to identity_provider_id",
        },
    ],
    key: "{user_id}/{identity_provider_id}/{identity_provider_user_id}",
    config: &[
        ConfigDoc {
            name: "base_url",
            default: "",
            about: "required: the deployment, e.g. https://acme.fusionauth.io",
        },
        ConfigDoc {
            name: "api_key",
            default: "",
            about: "API key allowed to DELETE and GET /api/identity-provider/link",
        },
        ConfigDoc {
            name: "tenant_id",
            default: "",
            about: "tenant UUID, sent as X-FusionAuth-TenantId (needed with several tenants)",
        },
    ],
    read_api: true,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    api_key: Option<String>,
    tenant_id: Option<String>,
}

#[derive(Debug)]
pub struct FusionAuth {
    /// Scheme, host and any path prefix, no trailing slash.
    base: String,
    api_key: String,
    tenant_id: Option<String>,
}

impl FusionAuth {
    pub fn from_config(
        table: toml::Table,
        base_url: Option<Url>,
    ) -> Result<(Self, Url), ConfigError> {
        let config: Config = parse_config(table)?;
        let url = base_url.ok_or_else(|| {
            ConfigError::new(
                "base_url",
                "required: the FusionAuth deployment, e.g. https://acme.fusionauth.io",
            )
        })?;
        let api_key = config
            .api_key
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ConfigError::new("api_key", "required (and not empty)"))?;
        let tenant_id = match config.tenant_id {
            None => None,
            Some(t) => Some(
                normalise_uuid(t.trim()).ok_or_else(|| ConfigError::new("tenant_id", UUID_RULE))?,
            ),
        };
        let base = url.as_str().trim_end_matches('/').to_string();
        Ok((
            FusionAuth {
                base,
                api_key,
                tenant_id,
            },
            url,
        ))
    }

    /// The link's URL: the same for the DELETE and the read.
    fn link_request(&self, method: Method, p: &Params) -> WireRequest {
        let url = format!(
            "{}{LINK_PATH}?identityProviderId={}&identityProviderUserId={}&userId={}",
            self.base,
            encode(p.get("identity_provider_id")),
            encode(p.get("identity_provider_user_id")),
            encode(p.get("user_id")),
        );
        self.authorised(WireRequest::new(method, url))
    }

    /// `req` with the API key, and the tenant when one is configured.
    fn authorised(&self, req: WireRequest) -> WireRequest {
        let req = req.header("Authorization", self.api_key.clone());
        match &self.tenant_id {
            Some(tenant) => req.header("X-FusionAuth-TenantId", tenant.clone()),
            None => req,
        }
    }

    /// A wildcard row's read: the user's links, of one identity provider unless it is `*`.
    fn list_request(&self, p: &Params) -> WireRequest {
        let mut url = format!(
            "{}{LINK_PATH}?userId={}",
            self.base,
            encode(p.get("user_id"))
        );
        let idp = p.get("identity_provider_id");
        if idp != WILDCARD {
            url.push_str("&identityProviderId=");
            url.push_str(&encode(idp));
        }
        self.authorised(WireRequest::new(Method::GET, url))
    }

    /// Classify a non-200 answer to the link API. Only FusionAuth's own shapes lead to an
    /// outcome: a 404 with an empty body or its JSON error object, a 400 with its error object.
    /// 401, 403, 429 and the retried statuses are acted on whatever their body.
    fn classify_error(answer: &WireAnswer) -> Verdict {
        let request_id = answer.request_id_header();
        let status = answer.status;
        let errors = error_object(answer);
        let transient = http_class::transient_class(answer, &[], || answer.text_snippet());
        let (class, code) = match status {
            _ if let Some(class) = transient => (class, None),
            404 if answer.body_is_empty() || errors.is_some() => (
                Class::Absent("the user, identity provider or link does not exist".into()),
                None,
            ),
            404 => (
                Class::Unexpected(
                    "a 404 whose body is neither empty nor FusionAuth's JSON error object".into(),
                ),
                None,
            ),
            400 => match &errors {
                Some(body) => {
                    let (code, message) = first_error(body)
                        .unwrap_or_else(|| (None, format!("HTTP 400: {}", answer.text_snippet())));
                    (Class::Failed(message), code)
                }
                None => (
                    Class::Unexpected(
                        "a 400 without FusionAuth's JSON error object (fieldErrors, generalErrors)"
                            .into(),
                    ),
                    None,
                ),
            },
            401 => (
                Class::Halt("fusionauth refused the API key (401)".into()),
                None,
            ),
            403 => (
                Class::Halt(
                    "fusionauth refused the call (403): the API key lacks permission for \
                     DELETE/GET /api/identity-provider/link"
                        .into(),
                ),
                None,
            ),
            other => (
                Class::Unexpected(format!(
                    "HTTP {other} is not an answer FusionAuth documents for this call"
                )),
                None,
            ),
        };
        Verdict::new(class).code(code).request_id(request_id)
    }
}

/// FusionAuth's error object, `{"fieldErrors":{...},"generalErrors":[...]}` (either may be
/// missing, not both), parsed.
fn error_object(answer: &WireAnswer) -> Option<serde_json::Value> {
    let body = answer.parse_json()?;
    let fields = body.get("fieldErrors");
    let general = body.get("generalErrors");
    let shaped = fields.is_none_or(|f| f.is_object())
        && general.is_none_or(|g| g.is_array())
        && (fields.is_some() || general.is_some());
    shaped.then_some(body)
}

/// Whether an `identityProviderLinks` entry is the row's link (UUIDs compare case-insensitively).
fn is_row_link(link: &serde_json::Value, p: &Params) -> bool {
    let text = |name: &str| link.get(name).and_then(|v| v.as_str()).unwrap_or("");
    text("identityProviderId").eq_ignore_ascii_case(p.get("identity_provider_id"))
        && text("identityProviderUserId") == p.get("identity_provider_user_id")
        && link
            .get("userId")
            .and_then(|v| v.as_str())
            .is_none_or(|u| u.eq_ignore_ascii_case(p.get("user_id")))
}

fn normalise_uuid(s: &str) -> Option<String> {
    let groups: Vec<&str> = s.split('-').collect();
    let shape_ok = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    shape_ok.then(|| s.to_ascii_lowercase())
}

/// The first error code of a 400 body and a message listing every error (`None` when it lists
/// none). `fieldErrors` comes first; its
/// fields are in serde_json's (alphabetical) order, as FusionAuth's own order carries no meaning.
fn first_error(body: &serde_json::Value) -> Option<(Option<String>, String)> {
    let field_errors = body
        .get("fieldErrors")
        .and_then(|v| v.as_object())
        .into_iter()
        .flat_map(|fields| fields.values())
        .filter_map(|v| v.as_array())
        .flatten();
    let general_errors = body
        .get("generalErrors")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten();
    let text = |e: &serde_json::Value, name: &str| -> String {
        e.get(name)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let errors: Vec<(String, String)> = field_errors
        .chain(general_errors)
        .map(|e| (text(e, "code"), text(e, "message")))
        .filter(|(c, m)| !c.is_empty() || !m.is_empty())
        .collect();
    if errors.is_empty() {
        return None;
    }
    let code = errors
        .iter()
        .map(|(c, _)| c)
        .find(|c| !c.is_empty())
        .cloned();
    let message = errors
        .iter()
        .map(|(c, m)| match (c.is_empty(), m.is_empty()) {
            (false, false) => format!("{c}: {m}"),
            (false, true) => c.clone(),
            _ => m.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    Some((code, message))
}

/// Validate and normalise a row ([`Adapter::prepare`] adds the partial key on failure).
fn prepare_fields(fields: &Fields) -> Result<Prepared, Invalid> {
    let uuid = |name: &'static str| {
        let value = fields
            .get(name)
            .ok_or_else(|| Invalid::new(name, "is required"))?;
        normalise_uuid(value).ok_or_else(|| Invalid::new(name, UUID_RULE))
    };
    let user_id = uuid("user_id")?;
    let idp_user_id = fields
        .get("identity_provider_user_id")
        .ok_or_else(|| Invalid::new("identity_provider_user_id", "is required"))?;
    let idp_id = match fields.get("identity_provider_id") {
        Some(WILDCARD) if idp_user_id == WILDCARD => WILDCARD.to_string(),
        Some(WILDCARD) => {
            return Err(Invalid::new(
                "identity_provider_id",
                "`*` (every identity provider) needs identity_provider_user_id `*` as well",
            ));
        }
        _ => uuid("identity_provider_id")?,
    };
    let key = key(&user_id, &idp_id, idp_user_id);
    let mut params = Params::new();
    params.set("user_id", user_id);
    params.set("identity_provider_id", idp_id);
    params.set("identity_provider_user_id", idp_user_id);
    Ok(Prepared { key, params })
}

/// A link field's value asking for every link (SPEC section 3, wildcard rows).
const WILDCARD: &str = "*";

/// A wildcard row's matching links from a `{"identityProviderLinks":[...]}` list: each entry's
/// `identityProviderId` (a UUID) and `identityProviderUserId` (non-empty), of the row's
/// provider unless it is `*`. `None` when an entry lacks them (not FusionAuth's shape).
fn listed_links(row: &Prepared, links: &[serde_json::Value]) -> Option<Vec<Prepared>> {
    let user_id = row.params.get("user_id");
    let wanted = row.params.get("identity_provider_id");
    let mut out = Vec::new();
    for link in links {
        let idp_id = normalise_uuid(link.get("identityProviderId")?.as_str()?)?;
        let idp_user_id = link.get("identityProviderUserId")?.as_str()?;
        if idp_user_id.is_empty() {
            return None;
        }
        if let Some(owner) = link.get("userId").and_then(|u| u.as_str())
            && !owner.eq_ignore_ascii_case(user_id)
        {
            // A list for another user than the one asked for: the query was not understood.
            return None;
        }
        if wanted != WILDCARD && idp_id != wanted {
            continue;
        }
        let mut params = Params::new();
        params.set("user_id", user_id);
        params.set("identity_provider_id", idp_id.as_str());
        params.set("identity_provider_user_id", idp_user_id);
        out.push(Prepared {
            key: key(user_id, &idp_id, idp_user_id),
            params,
        });
    }
    Some(out)
}

/// A row's key from its parts: `{user_id}/{identity_provider_id}/{identity_provider_user_id}`.
fn key(user_id: &str, idp_id: &str, idp_user_id: &str) -> Key {
    Key(format!("{user_id}/{idp_id}/{idp_user_id}"))
}

/// As much of the key as an invalid row's raw fields give (missing parts empty; UUIDs
/// lower-cased where they are UUIDs).
fn partial_key(fields: &Fields) -> Key {
    let uuid = |name| {
        let raw = fields.get(name).unwrap_or("");
        normalise_uuid(raw).unwrap_or_else(|| raw.to_string())
    };
    key(
        &uuid("user_id"),
        &uuid("identity_provider_id"),
        fields.get("identity_provider_user_id").unwrap_or(""),
    )
}

impl Adapter for FusionAuth {
    fn prepare(&self, fields: &Fields) -> Result<Prepared, Invalid> {
        prepare_fields(fields).map_err(|invalid| invalid.with_key(partial_key(fields)))
    }

    fn build(&self, row: &Prepared, _step: u8, _token: Option<&str>) -> WireRequest {
        self.link_request(Method::DELETE, &row.params)
    }

    fn classify(&self, _row: &Prepared, _step: u8, answer: &WireAnswer) -> Verdict {
        match answer.status {
            200 => {}
            201..=299 => {
                return Verdict::new(Class::Unexpected(
                    "a 2xx status FusionAuth does not document for DELETE (it answers 200)".into(),
                ))
                .request_id(answer.request_id_header());
            }
            _ => return Self::classify_error(answer),
        }
        let is_link = answer
            .parse_json()
            .is_some_and(|b| b.get("identityProviderLink").is_some_and(|l| l.is_object()));
        if answer.body_is_empty() || is_link {
            return Verdict::new(Class::Unlinked).request_id(answer.request_id_header());
        }
        // A 200 page that is not FusionAuth's answer (a proxy's or SSO login page) would say the
        // same for every row: stop rather than record rows as unlinked.
        Verdict::new(Class::Unexpected(
            "a 200 whose body is neither empty nor {\"identityProviderLink\":{...}}".into(),
        ))
        .request_id(answer.request_id_header())
    }

    fn can_read(&self) -> bool {
        true
    }

    fn read(&self, row: &Prepared, _token: Option<&str>) -> Option<WireRequest> {
        if self.is_wildcard(row) {
            return Some(self.list_request(&row.params));
        }
        Some(self.link_request(Method::GET, &row.params))
    }

    fn is_wildcard(&self, row: &Prepared) -> bool {
        row.params.get("identity_provider_user_id") == WILDCARD
    }

    fn classify_list(&self, row: &Prepared, answer: &WireAnswer) -> Verdict {
        let request_id = answer.request_id_header();
        match answer.status {
            200 => {}
            201..=299 => {
                return Verdict::new(Class::Unexpected(
                    "a 2xx status FusionAuth does not document for GET (it answers 200)".into(),
                ))
                .request_id(request_id);
            }
            _ => return Self::classify_error(answer),
        }
        let body = answer.parse_json();
        let listed = body
            .as_ref()
            .and_then(|b| b.get("identityProviderLinks"))
            .and_then(|v| v.as_array())
            .and_then(|links| listed_links(row, links));
        let class = match listed {
            Some(links) => Class::Listed(links),
            None => Class::Unexpected(
                "a 200 whose body is not {\"identityProviderLinks\":[...]} with each link's \
                 identityProviderId (a UUID) and identityProviderUserId"
                    .into(),
            ),
        };
        Verdict::new(class).request_id(request_id)
    }

    fn classify_read(&self, row: &Prepared, answer: &WireAnswer) -> Verdict {
        match answer.status {
            200 => {}
            201..=299 => {
                return Verdict::new(Class::Unexpected(
                    "a 2xx status FusionAuth does not document for GET (it answers 200)".into(),
                ))
                .request_id(answer.request_id_header());
            }
            _ => return Self::classify_error(answer),
        }
        let body = answer.parse_json();
        let body = body.as_ref();
        let link = body.and_then(|b| b.get("identityProviderLink"));
        let links = body
            .and_then(|b| b.get("identityProviderLinks"))
            .and_then(|v| v.as_array())
            .filter(|l| l.iter().all(|link| link.is_object()));
        let class = match (link, links) {
            (Some(link), _) if link.is_object() => Class::Present,
            (None, Some(links)) if links.iter().any(|l| is_row_link(l, &row.params)) => {
                Class::Present
            }
            // The list FusionAuth gives when the query names fewer ids: it lists every link of
            // the user to the provider, so one missing from it is gone.
            (None, Some(_)) => Class::Absent("the user's links do not list this link".into()),
            _ => Class::Unexpected(
                "a 200 whose body is neither {\"identityProviderLink\":{...}} nor \
                 {\"identityProviderLinks\":[...]}"
                    .into(),
            ),
        };
        Verdict::new(class).request_id(answer.request_id_header())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const USER: &str = "00000000-0000-0001-0000-000000000001";
    const IDP: &str = "82339786-3dff-42a6-aac6-1f1ceecb6c46";

    fn adapter(extra: &str) -> FusionAuth {
        let table: toml::Table = toml::from_str(&format!("api_key = \"k3y\"\n{extra}")).unwrap();
        let base = Url::parse("https://acme.fusionauth.io/").unwrap();
        FusionAuth::from_config(table, Some(base)).unwrap().0
    }

    fn row(a: &FusionAuth, user: &str, idp: &str, idp_user: &str) -> Prepared {
        a.prepare(&Fields::from_pairs([
            ("user_id", user),
            ("identity_provider_id", idp),
            ("identity_provider_user_id", idp_user),
        ]))
        .unwrap()
    }

    fn answer(status: u16, body: &str) -> WireAnswer {
        WireAnswer::new(status, body.to_string())
    }

    #[test]
    fn builds_delete_with_encoded_query_and_bare_key() {
        let a = adapter("");
        let r = row(&a, USER, IDP, "ab|c d/e+f");
        let req = a.build(&r, 0, None);
        assert_eq!(req.method, Method::DELETE);
        assert_eq!(
            req.url,
            "https://acme.fusionauth.io/api/identity-provider/link?\
             identityProviderId=82339786-3dff-42a6-aac6-1f1ceecb6c46&\
             identityProviderUserId=ab%7Cc%20d%2Fe%2Bf&\
             userId=00000000-0000-0001-0000-000000000001"
        );
        assert_eq!(req.header_value("Authorization"), Some("k3y"));
        assert_eq!(req.header_value("X-FusionAuth-TenantId"), None);
        assert_eq!(req.headers.len(), 1);
        assert!(req.form.is_empty());
        assert!(!req.describe().contains("k3y"));
        assert!(
            req.describe()
                .starts_with("DELETE https://acme.fusionauth.io/api/")
        );
    }

    #[test]
    fn sends_tenant_header_and_keeps_a_base_path() {
        let table: toml::Table =
            toml::from_str("api_key = \"k\"\ntenant_id = \"30663132-6464-6665-3032-326466613934\"")
                .unwrap();
        let base = Url::parse("http://127.0.0.1:9011/fa/").unwrap();
        let (a, url) = FusionAuth::from_config(table, Some(base.clone())).unwrap();
        assert_eq!(url, base);
        let req = a.build(&row(&a, USER, IDP, "x"), 0, None);
        assert!(
            req.url
                .starts_with("http://127.0.0.1:9011/fa/api/identity-provider/link?")
        );
        assert_eq!(
            req.header_value("x-fusionauth-tenantid"),
            Some("30663132-6464-6665-3032-326466613934")
        );
    }

    #[test]
    fn uuids_are_lower_cased_in_key_and_request() {
        let a = adapter("");
        let r = row(
            &a,
            &USER.to_uppercase(),
            "82339786-3DFF-42A6-AAC6-1F1CEECB6C46",
            "Id7",
        );
        assert_eq!(r.key.0, format!("{USER}/{IDP}/Id7"));
        let url = a.build(&r, 0, None).url;
        assert!(url.contains("identityProviderId=82339786-3dff-42a6-aac6-1f1ceecb6c46&"));
        assert!(url.contains("identityProviderUserId=Id7&"));
    }

    #[test]
    fn invalid_rows_carry_the_key_parts_they_give() {
        let a = adapter("");
        let key = |pairs: &[(&str, &str)]| {
            let err = a.prepare(&Fields::from_pairs(pairs.iter().copied()));
            err.unwrap_err().key.map(|k| k.0)
        };
        let upper = IDP.to_uppercase();
        assert_eq!(
            key(&[
                ("user_id", "not-a-uuid"),
                ("identity_provider_id", &upper),
                ("identity_provider_user_id", "x")
            ]),
            Some(format!("not-a-uuid/{IDP}/x"))
        );
        assert_eq!(
            key(&[("identity_provider_id", IDP)]),
            Some(format!("/{IDP}/"))
        );
    }

    #[test]
    fn validates_rows() {
        let a = adapter("");
        let bad = |user: &str, idp: &str, idp_user: &str| {
            let pairs = [
                ("user_id", user),
                ("identity_provider_id", idp),
                ("identity_provider_user_id", idp_user),
            ];
            let err = a.prepare(&Fields::from_pairs(pairs)).unwrap_err();
            Invalid { key: None, ..err }
        };
        assert_eq!(bad("", IDP, "x"), Invalid::new("user_id", "is required"));
        assert_eq!(bad("1234", IDP, "x"), Invalid::new("user_id", UUID_RULE));
        // Right length, wrong grouping; non-hex digit; braces.
        assert_eq!(
            bad("000000000-000-0001-0000-000000000001", IDP, "x").field,
            "user_id"
        );
        assert_eq!(
            bad("g0000000-0000-0001-0000-000000000001", IDP, "x").field,
            "user_id"
        );
        assert_eq!(
            bad(USER, "", "x"),
            Invalid::new("identity_provider_id", "is required")
        );
        assert_eq!(
            bad(USER, &format!("{{{IDP}}}"), "x"),
            Invalid::new("identity_provider_id", UUID_RULE)
        );
        assert_eq!(
            bad(USER, IDP, ""),
            Invalid::new("identity_provider_user_id", "is required")
        );
    }

    const HTML: &str = "<!DOCTYPE html><html><body><h1>Not Found</h1></body></html>";
    const LINK: &str = r#"{"identityProviderLink":{"identityProviderId":"82339786-3dff-42a6-aac6-1f1ceecb6c46","identityProviderUserId":"x","userId":"00000000-0000-0001-0000-000000000001"}}"#;
    const FIELD_ERRORS: &str = r#"{"fieldErrors":{"userId":[{"code":"[invalid]userId","message":"Bad."}]},"generalErrors":[]}"#;
    const GENERAL_ERRORS: &str =
        r#"{"generalErrors":[{"code":"[NotFound]","message":"No link."}]}"#;
    const NO: &[(&str, &str)] = &[];
    const JSON: &[(&str, &str)] = &[("content-type", "application/json")];
    const AS_HTML: &[(&str, &str)] = &[("content-type", "text/html")];

    type Row<'a> = (u16, &'a [(&'static str, &'a str)], &'a str, &'a str);

    /// (status, headers, body) → class name, for `classify` or `classify_read` (`read`).
    fn check_table(read: bool, table: &[Row<'_>]) {
        let a = adapter("");
        let r = row(&a, USER, IDP, "x");
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

    /// The rows DELETE and GET share (docs/vendors.md, FusionAuth).
    const ERROR_ROWS: &[Row<'static>] = &[
        (404, NO, "", "absent"),
        (404, JSON, " \n", "absent"),
        (404, JSON, FIELD_ERRORS, "absent"),
        (404, JSON, GENERAL_ERRORS, "absent"),
        (404, AS_HTML, HTML, "unexpected"),
        (404, JSON, r#"{"foo":1}"#, "unexpected"),
        (404, JSON, r#"{"fieldErrors":[]}"#, "unexpected"),
        (404, NO, "Not Found", "unexpected"),
        (400, JSON, FIELD_ERRORS, "failed"),
        (400, JSON, GENERAL_ERRORS, "failed"),
        (
            400,
            JSON,
            r#"{"fieldErrors":{},"generalErrors":[]}"#,
            "failed",
        ),
        (400, AS_HTML, HTML, "unexpected"),
        (400, NO, "", "unexpected"),
        (400, JSON, r#"{"error":"bad"}"#, "unexpected"),
        (401, NO, "", "halt"),
        (401, AS_HTML, HTML, "halt"),
        (403, NO, "", "halt"),
        (429, NO, "", "rate-limit"),
        (429, &[("retry-after", "9")], "", "rate-limit"),
        (408, NO, "", "retry"),
        (500, NO, "", "retry"),
        (503, AS_HTML, HTML, "retry"),
        (409, NO, "x", "unexpected"),
        (418, NO, "", "unexpected"),
        (302, &[("location", "/login")], "", "unexpected"),
        (405, NO, "", "unexpected"),
    ];

    #[test]
    fn unlink_classification_table() {
        check_table(
            false,
            &[
                (200, NO, "", "unlinked"),
                (200, JSON, LINK, "unlinked"),
                (200, JSON, r#"{"identityProviderLink":{}}"#, "unlinked"),
                (200, AS_HTML, "<html>login</html>", "unexpected"),
                (200, JSON, "{}", "unexpected"),
                (200, JSON, r#"{"foo":1}"#, "unexpected"),
                (200, JSON, r#"{"identityProviderLink":[]}"#, "unexpected"),
                (200, JSON, "[]", "unexpected"),
                (200, JSON, "null", "unexpected"),
                (204, NO, "", "unexpected"),
                (201, JSON, LINK, "unexpected"),
            ],
        );
        check_table(false, ERROR_ROWS);
    }

    #[test]
    fn read_classification_table() {
        let listed = r#"{"identityProviderLinks":[{"identityProviderId":"82339786-3DFF-42A6-AAC6-1F1CEECB6C46","identityProviderUserId":"x","userId":"00000000-0000-0001-0000-000000000001"}]}"#;
        let other = r#"{"identityProviderLinks":[{"identityProviderId":"82339786-3dff-42a6-aac6-1f1ceecb6c46","identityProviderUserId":"y"}]}"#;
        check_table(
            true,
            &[
                (200, JSON, LINK, "present"),
                (200, JSON, listed, "present"),
                (200, JSON, other, "absent"),
                (200, JSON, r#"{"identityProviderLinks":[]}"#, "absent"),
                (200, NO, "", "unexpected"),
                (200, AS_HTML, HTML, "unexpected"),
                (200, JSON, "{}", "unexpected"),
                (200, JSON, r#"{"identityProviderLinks":{}}"#, "unexpected"),
                (200, JSON, r#"{"identityProviderLinks":[1]}"#, "unexpected"),
                (204, NO, "", "unexpected"),
            ],
        );
        check_table(true, ERROR_ROWS);
    }

    #[test]
    fn verdicts_carry_messages_and_waits() {
        let a = adapter("");
        let r = row(&a, USER, IDP, "x");
        let class = |status: u16, body: &str| a.classify(&r, 0, &answer(status, body)).class;
        assert!(matches!(class(401, ""), Class::Halt(m) if m.contains("401")));
        assert!(matches!(class(403, ""), Class::Halt(m) if m.contains("403")));
        assert_eq!(class(429, ""), Class::RateLimit(None));
        let limited = a.classify(&r, 0, &answer(429, "").with_header("retry-after", "9"));
        assert_eq!(
            limited.class,
            Class::RateLimit(Some(Duration::from_secs(9)))
        );
        assert!(matches!(class(500, ""), Class::Retry(m) if m.starts_with("HTTP 500")));
        assert!(matches!(class(503, "down"), Class::Retry(m) if m.contains("down")));
        let ok = a.classify(&r, 0, &answer(200, "").with_header("x-request-id", "q"));
        assert_eq!(ok.request_id.as_deref(), Some("q"));
    }

    #[test]
    fn bad_request_reports_the_first_error_code() {
        let a = adapter("");
        let r = row(&a, USER, IDP, "x");
        let both = r#"{"fieldErrors":{"userId":[{"code":"[invalid]userId","message":"Bad user."},{"code":"[other]userId","message":"m2"}],"identityProviderId":[{"code":"[missing]identityProviderId","message":"Missing."}]},"generalErrors":[{"code":"[LinkLimit]","message":"g"}]}"#;
        let v = a.classify(&r, 0, &answer(400, both).with_header("x-request-id", "rq1"));
        assert_eq!(
            v.vendor_code.as_deref(),
            Some("[missing]identityProviderId")
        );
        assert_eq!(
            v.class,
            Class::Failed(
                "[missing]identityProviderId: Missing.; [invalid]userId: Bad user.; \
                 [other]userId: m2; [LinkLimit]: g"
                    .into()
            )
        );
        assert_eq!(v.request_id.as_deref(), Some("rq1"));
        let general = r#"{"generalErrors":[{"code":"[NotLinked]","message":"No link."}]}"#;
        let v = a.classify(&r, 0, &answer(400, general));
        assert_eq!(v.vendor_code.as_deref(), Some("[NotLinked]"));
        assert_eq!(v.class, Class::Failed("[NotLinked]: No link.".into()));
        let v = a.classify(
            &r,
            0,
            &answer(400, r#"{"fieldErrors":{},"generalErrors":[]}"#),
        );
        assert_eq!(v.vendor_code, None);
        assert!(matches!(v.class, Class::Failed(m) if m.starts_with("HTTP 400: ")));
        let v = a.classify(&r, 0, &answer(400, "nope"));
        assert!(matches!(v.class, Class::Unexpected(_)));
    }

    #[test]
    fn read_uses_the_same_url() {
        let a = adapter("tenant_id = \"30663132-6464-6665-3032-326466613934\"");
        let r = row(&a, USER, IDP, "x");
        let read = a.read(&r, None).unwrap();
        let delete = a.build(&r, 0, None);
        assert_eq!(read.method, Method::GET);
        assert_eq!(read.url, delete.url);
        assert_eq!(read.headers, delete.headers);
        let class = |status: u16, body: &str| a.classify_read(&r, &answer(status, body)).class;
        assert_eq!(
            class(
                200,
                r#"{"identityProviderLink":{"identityProviderUserId":"x"}}"#
            ),
            Class::Present
        );
        assert!(matches!(class(404, ""), Class::Absent(_)));
        assert!(matches!(class(401, ""), Class::Halt(_)));
        assert!(matches!(class(502, ""), Class::Retry(_)));
    }

    #[test]
    fn config_errors_name_the_key() {
        let base = || Some(Url::parse("https://a.fusionauth.io").unwrap());
        let err = |src: &str, base: Option<Url>| {
            FusionAuth::from_config(toml::from_str(src).unwrap(), base)
                .unwrap_err()
                .key
        };
        assert_eq!(err("api_key = \"k\"", None), "base_url");
        assert_eq!(err("", base()), "api_key");
        assert_eq!(err("api_key = \" \"", base()), "api_key");
        assert_eq!(
            err("api_key = \"k\"\ntenant_id = \"t1\"", base()),
            "tenant_id"
        );
        assert_eq!(err("api_key = \"k\"\napikey = \"k\"", base()), "apikey");
    }

    #[test]
    fn wildcard_rows_list_the_users_links() {
        let a = adapter("");
        let one = row(&a, USER, IDP, "*");
        let every = row(&a, USER, "*", "*");
        assert!(a.is_wildcard(&one) && a.is_wildcard(&every));
        assert_eq!(every.key.0, format!("{USER}/*/*"));
        assert_eq!(
            a.read(&one, None).unwrap().url,
            format!(
                "https://acme.fusionauth.io/api/identity-provider/link?userId={USER}&identityProviderId={IDP}"
            )
        );
        assert_eq!(
            a.read(&every, None).unwrap().url,
            format!("https://acme.fusionauth.io/api/identity-provider/link?userId={USER}")
        );
        let other = "0b6d9a52-7c1e-4f3a-9e2d-5a8c1b7e4f60";
        let body = format!(
            r#"{{"identityProviderLinks":[
                {{"identityProviderId":"{IDP}","identityProviderUserId":"a","userId":"{USER}"}},
                {{"identityProviderId":"{}","identityProviderUserId":"b"}}]}}"#,
            other.to_uppercase()
        );
        let keys = |v: Verdict| match v.class {
            Class::Listed(links) => links.into_iter().map(|l| l.key.0).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            keys(a.classify_list(&every, &answer(200, &body))),
            [format!("{USER}/{IDP}/a"), format!("{USER}/{other}/b")]
        );
        assert_eq!(
            keys(a.classify_list(&one, &answer(200, &body))),
            [format!("{USER}/{IDP}/a")]
        );
        let none = r#"{"identityProviderLinks":[]}"#;
        assert!(keys(a.classify_list(&every, &answer(200, none))).is_empty());
        let v = a.classify_list(&every, &answer(404, ""));
        assert!(matches!(v.class, Class::Absent(_)), "{v:?}");
        let wrong_user = format!(
            r#"{{"identityProviderLinks":[{{"identityProviderId":"{IDP}","identityProviderUserId":"a","userId":"{other}"}}]}}"#
        );
        for body in [
            "",
            r#"{"identityProviderLink":{}}"#,
            r#"{"identityProviderLinks":[{"identityProviderId":"nope","identityProviderUserId":"a"}]}"#,
            r#"{"identityProviderLinks":[{"identityProviderId":"82339786-3dff-42a6-aac6-1f1ceecb6c46"}]}"#,
            wrong_user.as_str(),
        ] {
            let v = a.classify_list(&every, &answer(200, body));
            assert!(matches!(v.class, Class::Unexpected(_)), "{body}: {v:?}");
        }
        let refused = a
            .prepare(&Fields::from_pairs([
                ("user_id", USER),
                ("identity_provider_id", "*"),
                ("identity_provider_user_id", "x"),
            ]))
            .unwrap_err();
        assert_eq!(refused.field, "identity_provider_id");
    }
}
