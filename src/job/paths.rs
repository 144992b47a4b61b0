//! Output paths: placeholders that cannot climb out of a folder, the names derived from the
//! report (`.ckpt`, `.dry-run`), and the path-safety rules of SPEC section 6 (no symbolic links,
//! no two roles on one file).

use std::path::{Path, PathBuf};

use super::{JobError, Settings};
use crate::fsutil;
use crate::input::Source;

/// The values of `{job}`, `{input_stem}` and `{date}`.
pub(super) struct Placeholders<'a> {
    pub job: &'a str,
    pub input_stem: &'a str,
    pub date: &'a str,
}

impl Placeholders<'_> {
    /// `template` with its placeholders replaced, one `/`-separated segment at a time: a segment
    /// that a placeholder turned into `.` or `..` (an input named `...csv` has the stem `..`) is
    /// refused, so a placeholder never moves a file to another folder.
    pub(super) fn expand(&self, template: &str) -> Result<String, String> {
        let mut out = Vec::new();
        for segment in template.split('/') {
            let expanded = segment
                .replace("{job}", self.job)
                .replace("{input_stem}", self.input_stem)
                .replace("{date}", self.date);
            if expanded != segment && matches!(expanded.as_str(), "." | "..") {
                return Err(format!(
                    "`{template}`: `{segment}` becomes `{expanded}`, which would name a folder \
                     instead of a file (rename the input, or write the path without the \
                     placeholder)"
                ));
            }
            out.push(expanded);
        }
        Ok(out.join("/"))
    }
}

/// `path` with `suffix` appended to its file name.
pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `report.csv` → `report.dry-run.csv`.
pub fn dry_run_path(report: &Path) -> PathBuf {
    let stem = report
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match report.extension() {
        Some(ext) => format!("{stem}.dry-run.{}", ext.to_string_lossy()),
        None => format!("{stem}.dry-run"),
    };
    report.with_file_name(name)
}

/// `text` (a URL that did not parse) without what may be a password, a query or a fragment.
pub(super) fn hide_url_parts(text: &str) -> String {
    let (scheme, rest) = match text.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), text),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("[user information]@{host}"),
        None => authority.to_string(),
    };
    let path = tail.split(['?', '#']).next().unwrap_or("");
    let cut = if path.len() < tail.len() { "[...]" } else { "" };
    format!("{scheme}{authority}{path}{cut}")
}

impl Settings {
    /// The path-safety rules of SPEC section 6, checked before a run writes anything: no file the
    /// run writes (report, checkpoint and its lock, summary, runs log, metrics) may be a symbolic
    /// link, and the input and all of those must be different files (existing files compared by
    /// device and inode, so hard links and other spellings count; files to be created by their
    /// canonical folder and name). A dry run does not use the checkpoint, so it is left out.
    pub fn check_paths(&self, dry_run: bool) -> Result<(), JobError> {
        let mut roles: Vec<(&str, PathBuf)> = Vec::new();
        if let Source::File(p) = &self.input.source {
            roles.push(("input", p.clone()));
        }
        roles.push(("report", self.report.clone()));
        if !dry_run {
            roles.push(("checkpoint", self.checkpoint.clone()));
            roles.push(("checkpoint lock", with_suffix(&self.checkpoint, ".lock")));
        }
        if let Some(s) = &self.summary {
            roles.push(("summary", s.clone()));
        }
        roles.push(("runs log", self.runs.clone()));
        if let Some(m) = &self.metrics {
            roles.push(("metrics", m.clone()));
        }
        let refuse = |message: String| JobError::Paths { message };
        for (role, path) in roles.iter().filter(|(role, _)| *role != "input") {
            fsutil::refuse_symlink(path)
                .map_err(|e| refuse(format!("the {role} path {}: {e}", path.display())))?;
        }
        let mut seen: Vec<(&str, &Path, fsutil::Identity)> = Vec::new();
        for (role, path) in &roles {
            let id = fsutil::identity(path).map_err(|e| {
                refuse(format!(
                    "cannot resolve the {role} path {}: {e}",
                    path.display()
                ))
            })?;
            if let Some((other, other_path, _)) = seen.iter().find(|(_, _, i)| *i == id) {
                return Err(refuse(format!(
                    "the {role} ({}) and the {other} ({}) are the same file; input, report, \
                     checkpoint, summary, runs log and metrics must all be different files",
                    path.display(),
                    other_path.display()
                )));
            }
            seen.push((role, path, id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::test_job::{MINIMAL, env};
    use crate::job::{Overrides, resolve};

    #[test]
    fn placeholders_never_make_a_dot_segment() {
        let p = Placeholders {
            job: "j",
            input_stem: "..",
            date: "2026-01-01",
        };
        assert!(p.expand("out/{input_stem}/r.csv").is_err());
        assert!(p.expand("{input_stem}").is_err());
        assert_eq!(
            p.expand("../out/{job}-{input_stem}.csv").unwrap(),
            "../out/j-...csv"
        );
        assert_eq!(p.expand("{input_stem}{input_stem}/x").unwrap(), "..../x");
        let dot = Placeholders {
            input_stem: ".",
            ..p
        };
        assert!(dot.expand("a/{input_stem}/b.csv").is_err());
        assert_eq!(dot.expand("a/./{date}.csv").unwrap(), "a/./2026-01-01.csv");
    }

    #[test]
    fn url_secrets_are_hidden_from_messages() {
        assert_eq!(
            hide_url_parts("http://u:pa55@host:1/p?k=v#f"),
            "http://[user information]@host:1/p[...]"
        );
        assert_eq!(hide_url_parts("https://h/x"), "https://h/x");
        assert_eq!(hide_url_parts("nonsense"), "nonsense");
    }

    #[test]
    fn outputs_must_be_distinct_files_and_not_links() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("j.toml");
        std::fs::write(dir.path().join("in.csv"), "user_id\n").unwrap();
        let settings = |report: &str, extra: &str| {
            let text = MINIMAL
                .replace("out/{job}-{input_stem}.csv", report)
                .replace("[output]\n", &format!("[output]\n{extra}\n"));
            resolve(&job, &text, &Overrides::default(), &env).unwrap()
        };
        settings("r.csv", "").check_paths(false).unwrap();
        let err = settings("in.csv", "")
            .check_paths(false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("report") && err.contains("input"), "{err}");
        assert!(settings("./sub/../in.csv", "").check_paths(true).is_err());
        let err = settings("r.csv", "checkpoint = \"r.csv\"")
            .check_paths(false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("checkpoint") && err.contains("report"),
            "{err}"
        );
        // A dry run does not use the checkpoint.
        settings("r.csv", "checkpoint = \"in.csv\"")
            .check_paths(true)
            .unwrap();
        let err = settings("r.csv", "summary = \"r.csv.runs.jsonl\"")
            .check_paths(false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("runs log") && err.contains("summary"), "{err}");
        assert!(
            settings("r.csv", "metrics = \"in.csv\"")
                .check_paths(false)
                .is_err()
        );
        std::fs::hard_link(dir.path().join("in.csv"), dir.path().join("hard.csv")).unwrap();
        assert!(settings("hard.csv", "").check_paths(false).is_err());
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), dir.path().join("l.csv")).unwrap();
        let err = settings("l.csv", "")
            .check_paths(false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("symbolic link"), "{err}");
    }
}
