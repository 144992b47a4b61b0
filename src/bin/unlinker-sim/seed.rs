//! Seed files: the links that exist when the simulator starts.
//!
//! CSV (with a header) or JSONL (`.jsonl` / `.ndjson`), using the same canonical field names as the
//! runner's input plus a `vendor` field holding a vendor *type* name. Parsed here with the csv crate
//! and serde_json directly, so the simulator does not depend on the runner's input code.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;

use super::vendor::Record;

/// Read every record of `path` and hand it to `sink` with its vendor name and line number.
/// Errors name the file and line.
pub(crate) fn load(
    path: &Path,
    default_vendor: Option<&str>,
    mut sink: impl FnMut(&str, &Record) -> Result<(), String>,
) -> anyhow::Result<usize> {
    let jsonl = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("jsonl" | "ndjson")
    );
    let mut count = 0;
    let mut each = |line: u64, record: Record| -> anyhow::Result<()> {
        let vendor = record
            .get("vendor")
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .or(default_vendor)
            .with_context(|| {
                format!(
                    "{}:{line}: no `vendor` field and no --seed-vendor",
                    path.display()
                )
            })?
            .to_string();
        sink(&vendor, &record).map_err(|e| anyhow::anyhow!("{}:{line}: {e}", path.display()))?;
        count += 1;
        Ok(())
    };
    if jsonl {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let number = i as u64 + 1;
            let line = line.with_context(|| format!("{}:{number}: unreadable", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let object: serde_json::Map<String, Value> = serde_json::from_str(&line)
                .with_context(|| format!("{}:{number}: not a JSON object", path.display()))?;
            let record = object
                .into_iter()
                .filter_map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s,
                        Value::Null => return None,
                        other => other.to_string(),
                    };
                    Some((k, text))
                })
                .collect();
            each(number, record)?;
        }
    } else {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let headers = reader
            .headers()
            .with_context(|| format!("{}: cannot read the header", path.display()))?
            .clone();
        if headers.is_empty() {
            bail!("{}: no header row", path.display());
        }
        for result in reader.records() {
            let row = result.with_context(|| format!("{}: bad CSV record", path.display()))?;
            let line = row.position().map_or(0, |p| p.line());
            let record = headers
                .iter()
                .zip(row.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect();
            each(line, record)?;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(name: &str, text: &str, default: Option<&str>) -> anyhow::Result<Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let mut seen = Vec::new();
        load(&path, default, |vendor, record| {
            let mut fields: Vec<String> = record
                .iter()
                .filter(|(k, _)| *k != "vendor")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            fields.sort();
            seen.push(format!("{vendor}:{}", fields.join(",")));
            Ok(())
        })?;
        Ok(seen)
    }

    #[test]
    fn reads_csv_and_jsonl() {
        let csv = "vendor,uid,provider\ngigya, u1 ,facebook\n,u2,apple\n";
        assert_eq!(
            collect("s.csv", csv, Some("gigya")).unwrap(),
            [
                "gigya:provider=facebook,uid=u1",
                "gigya:provider=apple,uid=u2"
            ]
        );
        let jsonl = "{\"vendor\":\"newspark\",\"vhost\":12,\"uid\":\"7\",\"x\":null}\n\n";
        assert_eq!(
            collect("s.jsonl", jsonl, None).unwrap(),
            ["newspark:uid=7,vhost=12"]
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = collect("s.csv", "uid,provider\nu1,facebook\n", None).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("s.csv:2: no `vendor` field and no --seed-vendor")
        );
        let err = collect("s.jsonl", "{}\nnot json\n", Some("gigya")).unwrap_err();
        assert!(
            err.to_string().ends_with("s.jsonl:2: not a JSON object"),
            "{err}"
        );
    }
}
