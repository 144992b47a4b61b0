//! Reading a journal into [`Loaded`]: the header and its binding to a job and input, then every
//! record, telling a torn tail (skipped) from damage (refused).

use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;

use super::journal::{Scan, Scanner};
use super::record::{Header, VERSION, apply};
use super::{Binding, CheckpointError, Loaded};

/// Read buffer for loading and rebuilding.
pub(super) const READ_BUF: usize = 256 * 1024;

/// Read a checkpoint without taking its lock (`unlinker status`, possibly while a run appends).
/// A torn or half-written end is skipped, not cut off.
pub fn read(path: &Path) -> Result<(Binding, Loaded), CheckpointError> {
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => CheckpointError::NotFound {
            path: path.to_path_buf(),
        },
        _ => CheckpointError::io("open checkpoint", path)(e),
    })?;
    load(path, file, None)?.ok_or_else(|| CheckpointError::NotFound {
        path: path.to_path_buf(),
    })
}

/// Read a journal: `None` when it holds nothing (empty, or only zero bytes).
pub(super) fn load(
    path: &Path,
    file: File,
    expect: Option<&Binding>,
) -> Result<Option<(Binding, Loaded)>, CheckpointError> {
    let mut scanner = Scanner::new(BufReader::with_capacity(READ_BUF, file));
    let binding = match scanner
        .next()
        .map_err(CheckpointError::io("read checkpoint", path))?
    {
        Scan::Record { json, .. } => parse_header(path, json)?,
        Scan::Damaged { line, reason } => return Err(CheckpointError::corrupt(path, line, reason)),
        Scan::End => {
            if scanner.saw_nonzero() {
                return Err(CheckpointError::corrupt(
                    path,
                    1,
                    "not an unlinker checkpoint: no valid header",
                ));
            }
            return Ok(None);
        }
    };
    if let Some(expect) = expect {
        check_binding(path, &binding, expect)?;
    }
    let max_line = binding.input_len.saturating_add(1);
    let mut loaded = Loaded::new();
    loop {
        match scanner
            .next()
            .map_err(CheckpointError::io("read checkpoint", path))?
        {
            Scan::Record { line, json } => apply(&mut loaded, json, max_line)
                .map_err(|reason| CheckpointError::corrupt(path, line, reason))?,
            Scan::End => break,
            Scan::Damaged { line, reason } => {
                return Err(CheckpointError::corrupt(path, line, reason));
            }
        }
    }
    loaded.journal_len = scanner.good_end();
    loaded.dropped_tail = scanner.offset() - scanner.good_end();
    Ok(Some((binding, loaded)))
}

fn parse_header(path: &Path, json: &[u8]) -> Result<Binding, CheckpointError> {
    let not_ours = |why: String| CheckpointError::corrupt(path, 1, why);
    let header: Header = serde_json::from_slice(json)
        .map_err(|e| not_ours(format!("not an unlinker checkpoint header: {e}")))?;
    if header.v != VERSION {
        return Err(not_ours(format!(
            "format version {} is not the version {VERSION} this unlinker reads",
            header.v
        )));
    }
    let input_hash = (header.input_hash.len() == 32)
        .then(|| u128::from_str_radix(&header.input_hash, 16).ok())
        .flatten()
        .ok_or_else(|| not_ours(format!("bad input_hash {:?}", header.input_hash)))?;
    Ok(Binding {
        job: header.job,
        input_hash,
        input_len: header.input_len,
    })
}

fn check_binding(path: &Path, recorded: &Binding, now: &Binding) -> Result<(), CheckpointError> {
    if recorded.job != now.job {
        return Err(CheckpointError::JobChanged {
            path: path.to_path_buf(),
            recorded: recorded.job.clone(),
            job: now.job.clone(),
        });
    }
    if (recorded.input_hash, recorded.input_len) != (now.input_hash, now.input_len) {
        return Err(CheckpointError::InputChanged {
            path: path.to_path_buf(),
            recorded_len: recorded.input_len,
            recorded_hash: recorded.input_hash,
            input_len: now.input_len,
            input_hash: now.input_hash,
        });
    }
    Ok(())
}
