//! Checkpoint journal (temporary stub with the agreed API; the real module replaces it).
#![allow(dead_code, unused_variables)]
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::report::{Outcome, ReportRow, ReportWriter};

pub struct Binding {
    pub job: String,
    pub input_hash: u128,
    pub input_len: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: input changed")]
    InputChanged { path: PathBuf },
    #[error("checkpoint {path}: job is locked by {holder}")]
    Locked { path: PathBuf, holder: String },
    #[error("checkpoint {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
}

#[derive(Default)]
pub struct Loaded;
impl Loaded {
    pub fn outcome(&self, line: u64) -> Option<Outcome> {
        None
    }
    pub fn steps_done(&self, line: u64) -> u8 {
        0
    }
    pub fn is_in_doubt(&self, line: u64) -> Option<u8> {
        None
    }
    pub fn in_doubt(&self) -> impl Iterator<Item = (u64, u8)> {
        std::iter::empty()
    }
    pub fn counts(&self) -> BTreeMap<Outcome, u64> {
        BTreeMap::new()
    }
    pub fn report_len(&self) -> u64 {
        0
    }
    pub fn rows_recorded(&self) -> u64 {
        0
    }
    pub fn forget_failed(&mut self) -> u64 {
        0
    }
}

pub struct Checkpoint;
impl Checkpoint {
    pub fn open(path: &Path, binding: &Binding) -> Result<(Checkpoint, Loaded), CheckpointError> {
        Ok((Checkpoint, Loaded))
    }
    pub fn intent(&mut self, line: u64, step: u8) -> io::Result<()> {
        Ok(())
    }
    pub fn step_done(&mut self, line: u64, step: u8) -> io::Result<()> {
        Ok(())
    }
    pub fn settled(&mut self, line: u64) -> io::Result<()> {
        Ok(())
    }
    pub fn outcome(&mut self, row: &ReportRow, report_len: u64) -> io::Result<()> {
        Ok(())
    }
    pub fn mark_report_len(&mut self, len: u64) -> io::Result<()> {
        Ok(())
    }
    pub fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    pub fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}
pub fn read(path: &Path) -> Result<(Binding, Loaded), CheckpointError> {
    unimplemented!()
}
pub fn rebuild_report(
    ckpt: &Path,
    loaded: &Loaded,
    writer: &mut ReportWriter,
) -> Result<u64, CheckpointError> {
    Ok(0)
}
pub fn archive(path: &Path) -> io::Result<Option<PathBuf>> {
    Ok(None)
}
