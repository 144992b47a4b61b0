//! Stage one: the job file as written, before any value is read. The TOML is parsed into a table,
//! `${NAME}` and `${file:PATH}` are replaced in every string at any depth (every missing variable
//! collected, not just the first), and the credentials are gathered for redaction. Keeping this
//! apart means stage two ([`super::resolve`]) only ever sees final values, so a number written as
//! `"${RATE}"` reads like one written bare.

use std::path::Path;

use super::JobError;

/// Vendor keys whose values are credentials, whatever their source.
const SECRET_KEYS: &[&str] = &[
    "token",
    "client_secret",
    "api_key",
    "secret",
    "headers",
    "form",
    "service_account",
];

/// A job file parsed and interpolated, not read yet.
pub(super) struct RawJob {
    /// The whole tree, every variable replaced.
    pub(super) table: toml::Table,
    /// Every value that must never be shown: what `${file:...}` read, in file order, then the
    /// credential keys of each `[vendors.NAME]` table.
    pub(super) secrets: Vec<String>,
    /// [`Mode::Lenient`] only: `(key, variable)` of every `${NAME}` or `${file:PATH}` that could
    /// not be resolved in a key [`Mode::Lenient`] tolerates; those strings keep their `${...}`.
    pub(super) unresolved: Vec<(String, String)>,
}

/// How strictly unresolvable `${...}` are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// A run or `validate`: every variable and file must resolve.
    Strict,
    /// `status`: only the keys that decide which files the job uses (`name`, `input.*`,
    /// `output.*`) must resolve; elsewhere (credentials, hosts, pacing) an unset variable or an
    /// unreadable `${file:...}` is left as written and listed, never an error.
    Lenient,
}

/// The keys every mode must resolve: they decide the job's files (SPEC section 1: `status`
/// needs no secret, but it must find the same checkpoint a run would).
pub(super) fn decides_files(key: &str) -> bool {
    key == "name"
        || ["input", "output"]
            .iter()
            .any(|top| key == *top || key.starts_with(&format!("{top}.")))
}

/// Parse `text` and interpolate it; `env` looks up variables, `base_dir` anchors `${file:...}`.
pub(super) fn read(
    job_path: &Path,
    base_dir: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    mode: Mode,
) -> Result<RawJob, JobError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| JobError::Parse {
        path: job_path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let mut interp = Interpolator {
        env,
        base_dir,
        job_path,
        mode,
        missing: Vec::new(),
        from_files: Vec::new(),
        unresolved: Vec::new(),
    };
    interp.table("", &mut table)?;
    if !interp.missing.is_empty() {
        return Err(JobError::MissingVars {
            path: job_path.to_path_buf(),
            missing: interp.missing,
        });
    }
    let mut secrets = interp.from_files;
    if let Some(toml::Value::Table(vendors)) = table.get("vendors") {
        // A vendor that is not a table is refused in stage two; it holds no credential here.
        for vendor in vendors.values().filter_map(toml::Value::as_table) {
            collect_secrets(vendor, &mut secrets);
        }
    }
    Ok(RawJob {
        table,
        secrets,
        unresolved: interp.unresolved,
    })
}

/// Replaces `${NAME}` (environment) and `${file:PATH}` (a file's contents) in every string of
/// the tree, remembering every missing variable instead of stopping at the first.
struct Interpolator<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    base_dir: &'a Path,
    job_path: &'a Path,
    mode: Mode,
    /// `(key, variable)` of each missing variable, in file order.
    missing: Vec<(String, String)>,
    /// Values read with `${file:...}`: secrets, whatever key they feed.
    from_files: Vec<String>,
    /// What [`Mode::Lenient`] let through unresolved.
    unresolved: Vec<(String, String)>,
}

impl Interpolator<'_> {
    fn table(&mut self, prefix: &str, table: &mut toml::Table) -> Result<(), JobError> {
        for (k, v) in table.iter_mut() {
            let key = if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            };
            self.value(&key, v)?;
        }
        Ok(())
    }

    fn value(&mut self, key: &str, value: &mut toml::Value) -> Result<(), JobError> {
        match value {
            toml::Value::String(s) if s.contains("${") => *s = self.string(key, s)?,
            toml::Value::Table(t) => self.table(key, t)?,
            toml::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.value(&format!("{key}[{i}]"), item)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn string(&mut self, key: &str, value: &str) -> Result<String, JobError> {
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let var = &after[..end];
            let tolerated = self.mode == Mode::Lenient && !decides_files(key);
            if let Some(file) = var.strip_prefix("file:") {
                match self.file(key, file) {
                    Ok(text) => {
                        out.push_str(&text);
                        self.from_files.push(text);
                    }
                    Err(_) if tolerated => {
                        out.push_str(&rest[start..start + 2 + end + 1]);
                        self.unresolved.push((key.to_string(), var.to_string()));
                    }
                    Err(e) => return Err(e),
                }
            } else {
                match (self.env)(var) {
                    Some(v) => out.push_str(&v),
                    None if tolerated => {
                        out.push_str(&rest[start..start + 2 + end + 1]);
                        self.unresolved.push((key.to_string(), var.to_string()));
                    }
                    None => self.missing.push((key.to_string(), var.to_string())),
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// `${file:PATH}`: the file's contents with one trailing newline removed; a warning when
    /// others than its owner may read it.
    fn file(&self, key: &str, file: &str) -> Result<String, JobError> {
        let path = self.base_dir.join(file);
        let err = |message: String| JobError::Key {
            path: self.job_path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let mut text = std::fs::read_to_string(&path).map_err(|e| {
            err(format!(
                "cannot read ${{file:{file}}} ({}): {e}",
                path.display()
            ))
        })?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(&path) {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    "{}: `{key}` reads {}, which others than its owner may read (chmod 600 it)",
                    self.job_path.display(),
                    path.display()
                );
            }
        }
        Ok(text)
    }
}

/// Add the values of a vendor table's credential keys (already interpolated) to `out`.
fn collect_secrets(table: &toml::Table, out: &mut Vec<String>) {
    for key in SECRET_KEYS {
        match table.get(*key) {
            Some(toml::Value::String(s)) => {
                out.push(s.clone());
                if *key == "service_account" {
                    out.extend(key_file_secrets(s));
                }
            }
            Some(toml::Value::Table(t)) => {
                out.extend(t.values().filter_map(|v| v.as_str().map(str::to_string)));
            }
            _ => {}
        }
    }
}

/// The secrets inside a service-account key JSON (Firebase): its private key, also as the one
/// line of base64 its PEM body is, and the key's id.
fn key_file_secrets(text: &str) -> Vec<String> {
    let Ok(serde_json::Value::Object(key)) = serde_json::from_str(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(pem) = key.get("private_key").and_then(|v| v.as_str()) {
        out.push(pem.to_string());
        let body: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::trim)
            .collect();
        out.push(body);
        out.extend(
            pem.lines()
                .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
                .map(str::to_string),
        );
    }
    if let Some(id) = key.get("private_key_id").and_then(|v| v.as_str()) {
        out.push(id.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::test_job::{MINIMAL, env, resolve_text};
    use crate::job::{Overrides, resolve};

    fn read_text(text: &str) -> Result<RawJob, JobError> {
        read(
            Path::new("/jobs/j.toml"),
            Path::new("/jobs"),
            text,
            &env,
            Mode::Strict,
        )
    }

    #[test]
    fn lenient_mode_tolerates_only_keys_that_do_not_decide_files() {
        let text = "name = \"${NAME}\"\n[input]\npath = \"${IN}.csv\"\n\
                    [vendors.a]\ntoken = \"x${NOPE}y\"\nsecret = \"${file:/nonexistent/s}\"\n\
                    [retry]\ntimeout = \"${T}\"\n";
        let lenient = |t: &str| {
            read(
                Path::new("/jobs/j.toml"),
                Path::new("/jobs"),
                t,
                &|n| (n == "NAME" || n == "IN").then(|| "v".to_string()),
                Mode::Lenient,
            )
        };
        let raw = lenient(text).unwrap();
        let mut unresolved = raw.unresolved.clone();
        unresolved.sort();
        assert_eq!(
            unresolved,
            [
                ("retry.timeout".to_string(), "T".to_string()),
                (
                    "vendors.a.secret".to_string(),
                    "file:/nonexistent/s".to_string()
                ),
                ("vendors.a.token".to_string(), "NOPE".to_string()),
            ]
        );
        assert_eq!(
            raw.table["vendors"]["a"]["token"].as_str(),
            Some("x${NOPE}y")
        );
        assert_eq!(raw.table["input"]["path"].as_str(), Some("v.csv"));
        // A key deciding the job's files must resolve, as in a run.
        let err = lenient(&text.replace("${IN}", "${GONE}")).err().unwrap();
        assert!(
            err.to_string().contains("GONE (used by `input.path`)"),
            "{err}"
        );
        let err = lenient("[output]\nreport = \"${file:/nonexistent/r}\"\n")
            .err()
            .unwrap();
        assert!(err.to_string().contains("output.report"), "{err}");
        assert!(!decides_files("inputs") && decides_files("output") && decides_files("name"));
    }

    #[test]
    fn missing_variable_is_named() {
        let err = resolve_text(&MINIMAL.replace("${TOK}", "${NOPE}")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("NOPE") && text.contains("vendors.a0.token"),
            "{text}"
        );
    }

    #[test]
    fn every_missing_variable_is_named_at_once() {
        let text = MINIMAL
            .replace("${TOK}", "${NOPE}")
            .replace("\"t1\"", "\"${NAME_VAR}\"")
            + "[retry]\ntimeout = \"${T}\"\n";
        let err = resolve_text(&text).unwrap_err();
        let JobError::MissingVars { missing, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(missing.len(), 3, "{err}");
        let text = err.to_string();
        for part in [
            "NOPE (used by `vendors.a0.token`)",
            "NAME_VAR (used by `name`)",
            "T (used by `retry.timeout`)",
            "/jobs/j.toml",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
    }

    #[test]
    fn file_values_are_read_trimmed_and_secret() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "from-a-file-123\n").unwrap();
        let text = MINIMAL.replace("${TOK}", "${file:tok}");
        let s = resolve(
            &dir.path().join("j.toml"),
            &text,
            &Overrides::default(),
            &env,
        )
        .unwrap();
        assert_eq!(s.secrets.scrub("a from-a-file-123 b"), "a [redacted] b");
        let err = resolve(
            &dir.path().join("j.toml"),
            &MINIMAL.replace("${TOK}", "${file:missing}"),
            &Overrides::default(),
            &env,
        )
        .unwrap_err();
        assert!(err.to_string().contains("vendors.a0.token"), "{err}");
    }

    #[test]
    fn a_service_account_key_registers_its_private_key() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n";
        let key = serde_json::json!({"private_key": pem, "private_key_id": "kid-123456", "client_email": "a@b"});
        let text = format!("[vendors.fb]\ntype = \"firebase\"\nservice_account = '{key}'\n");
        let raw = read_text(&text).unwrap();
        let secrets = crate::job::Secrets::new(&raw.secrets);
        assert_eq!(secrets.scrub(pem), "[redacted]");
        assert_eq!(
            secrets.scrub("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"),
            "[redacted]"
        );
        assert_eq!(
            secrets.scrub("x MIIEvQIBADANBgkqhkiG9w0BAQEFAASC y"),
            "x [redacted] y"
        );
        assert_eq!(secrets.scrub("kid-123456"), "[redacted]");
        assert_eq!(secrets.scrub("a@b"), "a@b");
    }

    #[test]
    fn interpolation_reaches_every_depth_and_leaves_the_rest() {
        let raw = read_text(
            "a = \"x${TOK}y\"\nb = \"${unclosed\"\nn = 3\n[t]\nlist = [\"${TOK}\", { k = \"${TOK}\" }]\n",
        )
        .unwrap();
        let t = &raw.table;
        assert_eq!(t["a"].as_str(), Some("xsecret-token-valuey"));
        assert_eq!(t["b"].as_str(), Some("${unclosed"));
        assert_eq!(t["n"].as_integer(), Some(3));
        let list = t["t"]["list"].as_array().unwrap();
        assert_eq!(list[0].as_str(), Some("secret-token-value"));
        assert_eq!(list[1]["k"].as_str(), Some("secret-token-value"));
        // Only vendors' credential keys and file values are secrets.
        assert!(raw.secrets.is_empty());
        let err = read_text("[t]\nlist = [\"${NOPE}\"]\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("NOPE (used by `t.list[0]`)"), "{err}");
        let err = read_text("a = ").err().unwrap();
        assert!(matches!(err, JobError::Parse { .. }), "{err}");
    }

    #[test]
    fn credential_keys_of_every_vendor_are_collected() {
        let raw = read_text(
            "[vendors.a]\ntoken = \"t-1\"\ndomain = \"not-secret\"\n\
             [vendors.b]\nheaders = { X-Key = \"h-2\", N = 3 }\napi_key = \"k-3\"\n\
             [vendors.c]\nsecret = 4\n",
        )
        .unwrap();
        assert_eq!(raw.secrets, ["t-1", "k-3", "h-2"]);
        // A vendor that is not a table is left for stage two to refuse.
        assert!(
            read_text("vendors = { a = 1 }\n")
                .unwrap()
                .secrets
                .is_empty()
        );
    }
}
