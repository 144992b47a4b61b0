//! Starting the real `unlinker-sim` binary for a test, and a client fit to talk to it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running simulator; killed when dropped.
pub struct SimProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl SimProcess {
    /// Start `unlinker-sim --port 0 ARGS...` and wait for its `listening on` line.
    pub fn start(args: &[&str]) -> SimProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_unlinker-sim"))
            .arg("--port")
            .arg("0")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start unlinker-sim");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the first stdout line");
        let base = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        assert!(
            base.starts_with("http://127.0.0.1:"),
            "not on loopback: {base}"
        );
        SimProcess { child, base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /_sim/counters` as JSON.
    pub async fn counters(&self) -> serde_json::Value {
        self.get_json("/_sim/counters").await
    }

    /// `GET /_sim/links?vendor=VENDOR`.
    pub async fn links(&self, vendor: &str) -> Vec<String> {
        serde_json::from_value(self.get_json(&format!("/_sim/links?vendor={vendor}")).await)
            .expect("links are a list of strings")
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        client()
            .get(self.url(path))
            .send()
            .await
            .expect("introspection answers")
            .json()
            .await
            .expect("introspection is JSON")
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run the binary expecting it to fail at start-up; returns (stdout, stderr).
pub fn start_failure(args: &[&str]) -> (String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_unlinker-sim"))
        .arg("--port")
        .arg("0")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start unlinker-sim");
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "expected a failure, got {status}");
    (out, err)
}

/// A client for the simulator: no redirects followed, no proxy (loopback only).
pub fn client() -> reqwest::Client {
    client_with_timeout(Duration::from_secs(10))
}

pub fn client_with_timeout(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("client")
}

/// Write `text` to `dir/name` and return the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write seed file");
    path
}
