//! `--fresh`: move a job's old checkpoint and report aside, named with the time, never deleted.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Extensions that stay after the timestamp when they end a name, so that `report.csv.ckpt`
/// becomes `report.<stamp>.csv.ckpt` (still the archived report's name plus `.ckpt`).
const KEPT_EXTENSIONS: [&str; 6] = ["csv", "jsonl", "ndjson", "json", "ckpt", "lock"];

/// Rename `path` to `<name>.<UTC time as YYYYMMDDTHHMMSSZ>.<extensions>` in its folder, e.g.
/// `report.csv` → `report.20261123T081500Z.csv`; returns the new path, or `None` when there is no
/// such file. A name already taken gets `-2`, `-3`, ... after the time.
pub fn archive(path: &Path) -> io::Result<Option<PathBuf>> {
    archive_at(path, SystemTime::now())
}

/// [`archive`] with a given time, so that files archived together share one stamp.
pub fn archive_at(path: &Path, when: SystemTime) -> io::Result<Option<PathBuf>> {
    match fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let stamp = stamp(when);
    let mut target = archived_name(path, &stamp);
    let mut n = 1;
    while fs::symlink_metadata(&target).is_ok() {
        n += 1;
        target = archived_name(path, &format!("{stamp}-{n}"));
    }
    fs::rename(path, &target)?;
    super::sync_parent(&target)?;
    Ok(Some(target))
}

/// `YYYYMMDDTHHMMSSZ` in UTC.
pub(crate) fn stamp(when: SystemTime) -> String {
    humantime::format_rfc3339_seconds(when)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect()
}

/// `path` with `stamp` inserted before its extensions (see [`KEPT_EXTENSIONS`]); before the last
/// extension when none of them is known; at the end when there is none.
pub(crate) fn archived_name(path: &Path, stamp: &str) -> PathBuf {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{stamp}"));
        return PathBuf::from(name);
    };
    let mut stem = name;
    while let Some((rest, ext)) = stem.rsplit_once('.')
        && !rest.is_empty()
        && KEPT_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
    {
        stem = rest;
    }
    if stem.len() == name.len()
        && let Some((rest, _)) = name.rsplit_once('.')
        && !rest.is_empty()
    {
        stem = rest;
    }
    let new_name = OsString::from(format!("{stem}.{stamp}{}", &name[stem.len()..]));
    path.with_file_name(new_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const STAMP: &str = "20261123T081500Z";

    fn named(path: &str) -> String {
        archived_name(Path::new(path), STAMP)
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn the_stamp_goes_before_the_extensions() {
        assert_eq!(named("report.csv"), "report.20261123T081500Z.csv");
        assert_eq!(named("x.ckpt"), "x.20261123T081500Z.ckpt");
        assert_eq!(
            named("out/report.csv.ckpt"),
            "out/report.20261123T081500Z.csv.ckpt"
        );
        assert_eq!(named("legacy.fb.jsonl"), "legacy.fb.20261123T081500Z.jsonl");
        assert_eq!(named("job.state"), "job.20261123T081500Z.state");
        assert_eq!(named("checkpoint"), "checkpoint.20261123T081500Z");
        assert_eq!(named(".ckpt"), ".ckpt.20261123T081500Z");
    }

    #[test]
    fn stamp_is_compact_utc() {
        // 2026-11-23T08:15:00Z
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_421_700);
        assert_eq!(stamp(when), STAMP);
    }

    #[test]
    fn archive_renames_skips_missing_files_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_421_700);
        let path = dir.path().join("report.csv");
        assert_eq!(archive_at(&path, when).unwrap(), None);

        fs::write(&path, "first").unwrap();
        let first = archive_at(&path, when).unwrap().unwrap();
        assert_eq!(first, dir.path().join("report.20261123T081500Z.csv"));
        assert!(!path.exists());

        fs::write(&path, "second").unwrap();
        let second = archive_at(&path, when).unwrap().unwrap();
        assert_eq!(second, dir.path().join("report.20261123T081500Z-2.csv"));
        assert_eq!(fs::read_to_string(&first).unwrap(), "first");
        assert_eq!(fs::read_to_string(&second).unwrap(), "second");
    }
}
