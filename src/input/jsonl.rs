//! JSONL records (stub, being written).
use super::Records;
use std::collections::BTreeMap;
use std::io::BufRead;
pub(super) fn records(
    _r: Box<dyn BufRead + Send>,
    _s: String,
    _c: BTreeMap<String, String>,
    _d: BTreeMap<String, String>,
) -> Records {
    todo!()
}
