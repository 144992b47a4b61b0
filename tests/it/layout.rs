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

/// Every `.rs` file under `src/DIR` (or the one file `src/DIR.rs`), with its non-comment lines.
fn library_files(module: &str) -> Vec<(PathBuf, Vec<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let single = root.join(format!("{module}.rs"));
    if single.is_file() {
        files.push(single);
    } else {
        let mut stack = vec![root.join(module)];
        while let Some(dir) = stack.pop() {
            for entry in
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
    }
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text
                .lines()
                .map(str::trim_start)
                .filter(|l| !l.starts_with("//"))
                .map(str::to_string)
                .collect();
            (path, code)
        })
        .collect()
}

/// The crate modules a module's code names (`crate::NAME`).
fn crate_uses(lines: &[String]) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for line in lines {
        let mut rest = line.as_str();
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            used.insert(name);
        }
    }
    used
}

/// The import rules of the library's layers (README, "Architecture"): leaves import nothing of
/// the crate, `input` and `adapter` only `row` (and `input` the stop flag, for its pipe copy),
/// adapters never reach for the runtime, the HTTP client or the layers above them, and only
/// `client` touches reqwest's client and governor.
#[test]
fn the_library_layers_import_only_what_their_rules_allow() {
    let rules: &[(&str, &[&str])] = &[
        ("row", &[]),
        ("stop", &[]),
        ("fsutil", &[]),
        ("report", &["fsutil", "row"]),
        ("runslog", &["fsutil"]),
        ("input", &["row", "stop", "input"]),
        ("adapter", &["row", "adapter"]),
        ("client", &["adapter", "client", "job", "stop", "row"]),
    ];
    let mut broken = Vec::new();
    for (module, allowed) in rules {
        for (path, code) in library_files(module) {
            for used in crate_uses(&code) {
                if !allowed.contains(&used.as_str()) {
                    broken.push(format!("{}: uses crate::{used}", path.display()));
                }
            }
        }
    }
    for (path, code) in library_files("adapter") {
        for line in &code {
            for banned in ["tokio", "reqwest::Client", "governor"] {
                if line.contains(banned) {
                    broken.push(format!(
                        "{}: adapters must not use {banned}: {line}",
                        path.display()
                    ));
                }
            }
        }
    }
    for module in [
        "pipeline",
        "commands",
        "checkpoint",
        "job",
        "input",
        "report",
        "summary",
    ] {
        for (path, code) in library_files(module) {
            for line in &code {
                for banned in ["reqwest::Client", "governor::"] {
                    if line.contains(banned) {
                        broken.push(format!(
                            "{}: only client uses {banned}: {line}",
                            path.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "import rules broken:\n{}",
        broken.join("\n")
    );
}
