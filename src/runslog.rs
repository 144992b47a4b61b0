//! The runs log (SPEC section 6): one JSON line when a run starts and one when it ends, each
//! holding the SHA-256 of the line before it, so the file is a hash chain an auditor can check
//! with `sha256sum` and `jq` alone, and [`verify`] checks for the audit report.
//!
//! The file is owner-only and opened without following links ([`crate::fsutil`]); each line is
//! one `write(2)` followed by an fsync, under an exclusive lock on the file, so two writers (two
//! dry runs, which hold no job lock) never interleave or both chain onto the same line. The
//! writer knows nothing of jobs or outcomes: the pipeline fills a [`Line`], the writer numbers
//! it, chains it and appends it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The first line's `prev`.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One line of the runs log. Fields an event does not know yet (a start line's end, counts and
/// hashes) are `null`, so every line has the same keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Line {
    /// The run's number: 1 + the highest `run` in the log when it started.
    pub run: u64,
    /// `start` or `end`.
    pub event: String,
    pub job: String,
    pub dry_run: bool,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub exit_code: Option<i32>,
    /// `complete`, `limit`, `deadline`, `signal`, `halt: <reason>`, `error: <message>`.
    pub stop: Option<String>,
    pub version: String,
    pub user: String,
    pub uid: u32,
    pub host: String,
    pub pid: u32,
    /// The command line, every secret removed.
    pub args: Vec<String>,
    pub job_sha256: String,
    pub input: FileFacts,
    pub report: FileFacts,
    /// Per outcome over every run of the job, and `pending`.
    pub counts: Option<BTreeMap<String, u64>>,
    /// Per outcome recorded by this run, and `absent_after_lost_answer`.
    pub this_run: Option<BTreeMap<String, u64>>,
    pub vendors: Option<BTreeMap<String, VendorFacts>>,
    /// `--dry-run --check` end lines: per vendor, how long the real run would take (seconds at
    /// the job's rates, for the calls it would send); `null` otherwise.
    #[serde(default)]
    pub estimate_seconds: Option<BTreeMap<String, f64>>,
    /// SHA-256 (hex) of the previous line's bytes, its newline not included; [`GENESIS`] first.
    pub prev: String,
}

/// A file's path, length and (at the end of a run) SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileFacts {
    pub path: String,
    pub bytes: u64,
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VendorFacts {
    pub requests: u64,
    pub rate_limited: u64,
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A file's length and SHA-256, read in large blocks.
pub fn hash_file(path: &Path) -> io::Result<Fingerprint> {
    let hashed = Hashed::default();
    let mut reader = hashed.reader(File::open(path)?);
    io::copy(&mut reader, &mut io::sink())?;
    Ok(hashed.fingerprint())
}

/// Length and SHA-256 of a stream of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub bytes: u64,
    pub sha256: String,
}

/// A SHA-256 fed by a reader that hashes what passes through it ([`Hashed::reader`]), so a
/// file can be fingerprinted by the pass that reads it anyway.
#[derive(Debug, Clone, Default)]
pub struct Hashed(Arc<Mutex<(Sha256, u64)>>);

impl Hashed {
    /// `inner`, with every byte read from it hashed.
    pub fn reader<R: Read>(&self, inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            hashed: self.clone(),
        }
    }

    /// What has been read so far.
    pub fn fingerprint(&self) -> Fingerprint {
        let state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Fingerprint {
            bytes: state.1,
            sha256: hex(&state.0.clone().finalize()),
        }
    }
}

/// See [`Hashed::reader`].
pub struct HashingReader<R> {
    inner: R,
    hashed: Hashed,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut state = self.hashed.0.lock().unwrap_or_else(|p| p.into_inner());
        state.0.update(&buf[..n]);
        state.1 += n as u64;
        Ok(n)
    }
}

/// An open runs log.
#[derive(Debug)]
pub struct RunsLog {
    file: File,
    path: PathBuf,
}

impl RunsLog {
    /// Open (or create, owner-only) the log at `path`; a symbolic link is refused.
    pub fn open(path: &Path) -> io::Result<RunsLog> {
        let file = crate::fsutil::open_private_log(path)?;
        Ok(RunsLog {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append a run's start line: numbered 1 + the highest `run` in the log, chained to the last
    /// line. Returns the run's number.
    pub fn start(&mut self, line: &mut Line) -> io::Result<u64> {
        self.append(line, true)?;
        Ok(line.run)
    }

    /// Append a line with the number it has (a run's end line), chained to the last line.
    pub fn end(&mut self, line: &mut Line) -> io::Result<()> {
        self.append(line, false)
    }

    fn append(&mut self, line: &mut Line, number: bool) -> io::Result<()> {
        // The lock is released when this guard drops, after the fsync.
        self.file.lock()?;
        let result = self.append_locked(line, number);
        let _ = self.file.unlock();
        result
    }

    fn append_locked(&mut self, line: &mut Line, number: bool) -> io::Result<()> {
        let mut text = Vec::new();
        self.file.seek(SeekFrom::Start(0))?;
        self.file.read_to_end(&mut text)?;
        let mut out = Vec::new();
        // A last line cut short (a power loss mid-write) is ended, never removed: it stays in the
        // chain, and `verify` names it.
        if text.last().is_some_and(|b| *b != b'\n') {
            out.push(b'\n');
        }
        let lines: Vec<&[u8]> = split_lines(&text).collect();
        line.prev = match lines.last() {
            Some(last) => sha256_hex(last),
            None => GENESIS.to_string(),
        };
        if number {
            line.run = 1 + lines.iter().filter_map(|l| run_of(l)).max().unwrap_or(0);
        }
        serde_json::to_writer(&mut out, line).map_err(io::Error::other)?;
        out.push(b'\n');
        self.file.write_all(&out)?;
        self.file.sync_data()
    }
}

/// The lines of a log's text, without their newlines (a final newline ends the last line; it
/// does not start an empty one).
fn split_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    text.split(|b| *b == b'\n')
        .filter(move |_| !text.is_empty())
}

fn run_of(line: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(line)
        .ok()?
        .get("run")?
        .as_u64()
}

/// Where a runs log's chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}line {line}{}: {reason}", path_prefix(.path), run_suffix(.run))]
pub struct Broken {
    pub path: Option<PathBuf>,
    /// The run of the first line that no longer fits the chain, when that line says.
    pub run: Option<u64>,
    /// 1-based.
    pub line: usize,
    pub reason: String,
}

fn path_prefix(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

fn run_suffix(run: &Option<u64>) -> String {
    run.map(|r| format!(" (run {r})")).unwrap_or_default()
}

/// Check the chain of the log at `path`: every line is JSON and its `prev` is the SHA-256 of
/// the line before (the first one's is [`GENESIS`]). `Ok(lines)` when intact. A line changed
/// in place shows as a break at that line (the next line's `prev` no longer matches it); the
/// last line has no successor, so an auditor keeps its hash (`tail -n 1 | sha256sum`) to notice
/// a change to it.
pub fn verify(path: &Path) -> Result<usize, Broken> {
    let text = std::fs::read(path).map_err(|e| Broken {
        path: Some(path.to_path_buf()),
        run: None,
        line: 0,
        reason: format!("cannot read: {e}"),
    })?;
    verify_bytes(&text).map_err(|b| Broken {
        path: Some(path.to_path_buf()),
        ..b
    })
}

/// [`verify`] on a log's bytes.
pub fn verify_bytes(text: &[u8]) -> Result<usize, Broken> {
    let lines: Vec<&[u8]> = split_lines(text).collect();
    let broken = |line: usize, reason: String| Broken {
        path: None,
        run: run_of(lines[line - 1]),
        line,
        reason,
    };
    let mut expected = GENESIS.to_string();
    for (i, raw) in lines.iter().enumerate() {
        let n = i + 1;
        let prev = serde_json::from_slice::<serde_json::Value>(raw)
            .ok()
            .and_then(|v| v.get("prev")?.as_str().map(str::to_string));
        let Some(prev) = prev else {
            return Err(broken(n, "not a JSON line with a `prev`".into()));
        };
        if prev != expected {
            return Err(if n == 1 {
                broken(
                    1,
                    "the first line's prev is not 64 zeros: lines before it are gone".into(),
                )
            } else {
                broken(
                    n - 1,
                    format!(
                        "line {n}'s prev is not this line's SHA-256: this line was changed, or lines were removed or inserted after it"
                    ),
                )
            });
        }
        expected = sha256_hex(raw);
    }
    if text.last().is_some_and(|b| *b != b'\n') {
        return Err(broken(
            lines.len(),
            "no newline at the end: the write was cut short".into(),
        ));
    }
    Ok(lines.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> Line {
        Line {
            run: 0,
            event: "start".into(),
            job: "j".into(),
            dry_run: false,
            started_at: "2026-12-02T00:00:00.000Z".into(),
            ended_at: None,
            exit_code: None,
            stop: None,
            version: "0.1.0".into(),
            user: "u".into(),
            uid: 1000,
            host: "h".into(),
            pid: 1,
            args: vec!["unlinker".into()],
            job_sha256: GENESIS.into(),
            input: FileFacts {
                path: "in.csv".into(),
                bytes: 1,
                sha256: None,
            },
            report: FileFacts {
                path: "r.csv".into(),
                bytes: 0,
                sha256: None,
            },
            counts: None,
            this_run: None,
            vendors: None,
            estimate_seconds: None,
            prev: String::new(),
        }
    }

    /// A log of `runs` runs, start and end each.
    fn log(runs: usize) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv.runs.jsonl");
        for _ in 0..runs {
            let mut log = RunsLog::open(&path).unwrap();
            let mut start = line();
            let run = log.start(&mut start).unwrap();
            let mut end = Line {
                run,
                event: "end".into(),
                exit_code: Some(0),
                ..line()
            };
            log.end(&mut end).unwrap();
        }
        (dir, path)
    }

    #[test]
    fn lines_are_numbered_and_chained() {
        let (_dir, path) = log(3);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Line> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let runs: Vec<u64> = lines.iter().map(|l| l.run).collect();
        assert_eq!(runs, [1, 1, 2, 2, 3, 3]);
        assert_eq!(lines[0].prev, GENESIS);
        let raw: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1].prev, sha256_hex(raw[0].as_bytes()));
        assert_eq!(verify(&path), Ok(6));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_changed_line_breaks_the_chain_at_its_run() {
        let (_dir, path) = log(3);
        let text = std::fs::read_to_string(&path).unwrap();
        // Run 2's end line says it exited 3 instead of 0.
        let tampered: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == 3 {
                    l.replace("\"exit_code\":0", "\"exit_code\":3")
                } else {
                    l.to_string()
                }
            })
            .collect();
        assert_ne!(tampered.join("\n") + "\n", text);
        std::fs::write(&path, tampered.join("\n") + "\n").unwrap();
        let broken = verify(&path).unwrap_err();
        assert_eq!((broken.run, broken.line), (Some(2), 4), "{broken}");
        assert!(broken.to_string().contains("line 4 (run 2)"), "{broken}");
    }

    #[test]
    fn removed_lines_and_torn_lines_are_named() {
        let (_dir, path) = log(2);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // The first run's lines removed.
        let rest = lines[2..].join("\n") + "\n";
        let broken = verify_bytes(rest.as_bytes()).unwrap_err();
        assert_eq!((broken.run, broken.line), (Some(2), 1));
        // A middle line removed.
        let gap = [lines[0], lines[2], lines[3]].join("\n") + "\n";
        assert_eq!(verify_bytes(gap.as_bytes()).unwrap_err().line, 1);
        // A last write cut short; the next run ends it and chains on.
        let torn = &text[..text.len() - 10];
        assert_eq!(verify_bytes(torn.as_bytes()).unwrap_err().line, 4);
        std::fs::write(&path, torn).unwrap();
        let mut log = RunsLog::open(&path).unwrap();
        let mut next = line();
        assert_eq!(log.start(&mut next).unwrap(), 3);
        let broken = verify(&path).unwrap_err();
        assert_eq!(broken.line, 4, "{broken}");
        assert!(verify_bytes(b"").is_ok());
    }

    #[test]
    fn hashing_reader_matches_a_plain_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let fp = hash_file(&path).unwrap();
        assert_eq!(fp.bytes, data.len() as u64);
        assert_eq!(fp.sha256, sha256_hex(&data));
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
