//! Guard rails on the crate's shape: the simulator is a separate program that imitates the
//! vendors, so it must not borrow the client's code (a test against it would then agree with the
//! adapters by construction).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The simulator's sources, relative to the crate root.
const SIM_DIR: &str = "src/bin/unlinker-sim";

/// The simulator's `.rs` files, recursively.
fn sim_sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(SIM_DIR),
        &mut out,
    );
    out.sort();
    out
}

/// Names `crate::NAME` may start with inside the simulator: its module files and the items of
/// its `main.rs`.
fn sim_roots(files: &[PathBuf]) -> BTreeSet<String> {
    let mut roots: BTreeSet<String> = files
        .iter()
        .filter_map(|p| p.file_stem()?.to_str().map(str::to_string))
        .filter(|stem| stem != "main" && stem != "mod")
        .collect();
    let main = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(SIM_DIR)
            .join("main.rs"),
    )
    .expect("the simulator has a main.rs");
    for line in main.lines() {
        let mut words = line
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .skip_while(|w| matches!(*w, "pub" | "crate" | "async" | "unsafe"));
        if let (
            Some("fn" | "struct" | "enum" | "const" | "static" | "type" | "trait" | "mod"),
            Some(name),
        ) = (words.next(), words.next())
            && !line.starts_with(char::is_whitespace)
        {
            roots.insert(name.to_string());
        }
    }
    roots
}

/// Lines of `source` (comments skipped) that reach outside the simulator: the `unlinker` library
/// (`unlinker::`, `extern crate unlinker`), `crate::` paths to names the simulator does not have,
/// or files pulled in from elsewhere (`#[path]`, `include!`).
fn outside_refs(source: &str, roots: &BTreeSet<String>) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let mut bad = compact.contains("unlinker::")
            || compact.contains("externcrateunlinker")
            || compact.contains("#[path")
            || compact.contains("include!(")
            || compact.contains("include_str!(")
            || compact.contains("include_bytes!(");
        for (i, _) in compact.match_indices("crate::") {
            let name: String = compact[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            bad |= !roots.contains(&name);
        }
        if bad {
            found.push(format!("{}: {line}", n + 1));
        }
    }
    found
}

#[test]
fn the_simulator_imports_nothing_from_the_library() {
    let files = sim_sources();
    assert!(
        files.iter().any(|p| p.ends_with("main.rs")) && files.len() > 1,
        "simulator sources not found under {SIM_DIR}: {files:?}"
    );
    let roots = sim_roots(&files);
    let mut offences = Vec::new();
    for path in &files {
        let source = std::fs::read_to_string(path).unwrap();
        for hit in outside_refs(&source, &roots) {
            offences.push(format!("{}:{hit}", path.display()));
        }
    }
    assert!(
        offences.is_empty(),
        "the simulator must not use the library (copy what it needs):\n{}",
        offences.join("\n")
    );
}

#[test]
fn the_import_check_sees_what_it_forbids() {
    let roots: BTreeSet<String> = ["state", "duration_arg"].map(String::from).into();
    let source = "//! Unlike `unlinker::vendor`, this is a comment.\n\
        use crate::state::Store;\n\
        let d = crate::duration_arg(s);\n\
        use unlinker::vendor::wire;\n\
        let x = unlinker :: retry::backoff(1);\n\
        use crate::runner::Settings;\n\
        #[path = \"../../vendor/wire.rs\"]\n\
        include!(\"../../retry.rs\");\n";
    let hits: Vec<usize> = outside_refs(source, &roots)
        .iter()
        .map(|h| h.split(':').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(hits, [4, 5, 6, 7, 8]);
}
