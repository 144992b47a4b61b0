//! Starting the real `unlinker-sim` binary for a test, asking it what it received, and a client
//! fit to talk to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SIM: &str = env!("CARGO_BIN_EXE_unlinker-sim");

/// A running `unlinker-sim`, killed on drop.
pub struct Sim {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl Sim {
    /// Start `unlinker-sim --port 0 ARGS...` and wait for its `listening on` line.
    pub fn start(args: &[&str]) -> Sim {
        let mut child = Command::new(SIM)
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start unlinker-sim");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read the first stdout line");
        let url = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected sim banner: {line:?}"))
            .to_string();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "not on loopback: {url}"
        );
        Sim { child, url }
    }

    /// `path` on the simulator (`self.url` is its base).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// GET a simulator path and parse the JSON answer.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let body = http_get(&self.url(path));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("bad JSON from {path}: {e}: {body}"))
    }

    /// `GET /_sim/counters`.
    pub fn counters(&self) -> serde_json::Value {
        self.get_json("/_sim/counters")
    }

    /// `GET /_sim/log`: the vendor requests the simulator received, oldest first.
    pub fn log(&self) -> Vec<serde_json::Value> {
        match self.get_json("/_sim/log") {
            serde_json::Value::Array(entries) => entries,
            other => panic!("/_sim/log is not a list: {other}"),
        }
    }

    /// `GET /_sim/links?vendor=VENDOR`: the keys currently linked, sorted.
    pub fn links(&self, vendor: &str) -> Vec<String> {
        serde_json::from_value(self.get_json(&format!("/_sim/links?vendor={vendor}")))
            .expect("links are a list of strings")
    }

    /// `keys.VENDOR.KEY.FIELD` of `/_sim/counters` (0 when the key was never seen).
    pub fn key_count(&self, vendor: &str, key: &str, field: &str) -> u64 {
        self.counters()["keys"][vendor][key][field]
            .as_u64()
            .unwrap_or(0)
    }

    /// `vendors.VENDOR.FIELD` of `/_sim/counters`.
    pub fn vendor_count(&self, vendor: &str, field: &str) -> u64 {
        self.counters()["vendors"][vendor][field]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter vendors.{vendor}.{field}"))
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run the binary expecting it to fail at start-up; returns (stdout, stderr).
pub fn start_failure(args: &[&str]) -> (String, String) {
    let mut child = Command::new(SIM)
        .args(["--port", "0"])
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

/// A minimal HTTP/1.1 GET over loopback (introspection stays free of an async client, so sync
/// and async tests alike can ask).
fn http_get(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = TcpStream::connect(host).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP answer");
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}
