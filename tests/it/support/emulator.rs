//! Google's Firebase Auth emulator (npm `firebase-tools`, pinned in tests/emulator/) for a test:
//! installed with `npm ci --ignore-scripts` when missing, started on free loopback ports in its
//! own process group, and stopped by killing that group, so no node process outlives the test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The project id every emulator test uses (`demo-` projects never reach Google).
pub const PROJECT: &str = "demo-unlinker";
/// The emulator's admin token.
pub const OWNER_TOKEN: &str = "owner";
/// How long the emulator may take to start (about 25 s cold on 2 cores).
const START_LIMIT: Duration = Duration::from_secs(180);

fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/emulator")
}

fn firebase_bin() -> PathBuf {
    package_dir().join("node_modules/.bin/firebase")
}

/// One install at a time, even if several tests start an emulator.
static INSTALL: Mutex<()> = Mutex::new(());

/// Install the pinned firebase-tools into tests/emulator/node_modules unless it is there.
fn ensure_installed() {
    let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if firebase_bin().exists() {
        return;
    }
    for tool in ["node", "npm"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "the Firebase emulator test needs `{tool}` (Node.js 20 or later) on PATH to install \
             firebase-tools from tests/emulator/package-lock.json; install Node.js, or run \
             `npm ci --ignore-scripts` in tests/emulator yourself"
        );
    }
    let home = tempfile::tempdir().unwrap();
    let out = Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(package_dir())
        .env("HOME", home.path())
        .env("CI", "true")
        .output()
        .expect("run npm ci");
    assert!(
        out.status.success(),
        "npm ci --ignore-scripts in tests/emulator failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running Auth emulator; its process group is killed on drop.
pub struct Emulator {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub root: String,
    _dir: tempfile::TempDir,
}

impl Emulator {
    pub async fn start() -> Emulator {
        tokio::task::spawn_blocking(ensure_installed).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (auth, hub, logging) = (free_port(), free_port(), free_port());
        let config = serde_json::json!({
            "emulators": {
                "auth": {"host": "127.0.0.1", "port": auth},
                "hub": {"host": "127.0.0.1", "port": hub},
                "logging": {"host": "127.0.0.1", "port": logging},
                "ui": {"enabled": false},
                "singleProjectMode": true,
            }
        });
        std::fs::write(dir.path().join("firebase.json"), config.to_string()).unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let log = std::fs::File::create(dir.path().join("emulator.log")).unwrap();
        let mut cmd = Command::new(firebase_bin());
        cmd.args(["emulators:start", "--only", "auth", "--project", PROJECT])
            .current_dir(dir.path())
            .env("HOME", &home)
            .env("CI", "true")
            .env("FIREBASE_CLI_EXPERIMENTS", "")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("start the Firebase emulator");
        let mut emulator = Emulator {
            child,
            root: format!("http://127.0.0.1:{auth}"),
            _dir: dir,
        };
        emulator.wait_ready().await;
        emulator
    }

    /// The base URL the adapter is given (the emulator serves the API under this prefix).
    pub fn base_url(&self) -> String {
        format!("{}/identitytoolkit.googleapis.com", self.root)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("emulator.log")).unwrap_or_default()
    }

    /// Poll until the auth port answers an admin lookup; fail with the emulator's log if it
    /// exits or does not come up.
    async fn wait_ready(&mut self) {
        let started = Instant::now();
        let url = format!("{}/v1/projects/{PROJECT}/accounts:lookup", self.base_url());
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the Firebase emulator exited ({status}):\n{}", self.log());
            }
            if ping(&url).await {
                return;
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "the Firebase emulator did not answer within {START_LIMIT:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Whether a lookup POST gets a 2xx answer.
async fn ping(url: &str) -> bool {
    super::client_with_timeout(Duration::from_secs(2))
        .post(url)
        .bearer_auth(OWNER_TOKEN)
        .json(&serde_json::json!({"localId": ["ping"]}))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// POST `body` to `{base_url}/v1/projects/{PROJECT}/accounts:{action}` as the admin (the
/// emulator's `owner` token, which the simulator accepts too) and parse the JSON answer.
pub async fn admin_call(
    base_url: &str,
    action: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let url = format!("{base_url}/v1/projects/{PROJECT}/accounts:{action}");
    let answer = super::client()
        .post(&url)
        .bearer_auth(OWNER_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = answer.status();
    let text = answer.text().await.unwrap();
    assert!(status.is_success(), "{url}: HTTP {status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"))
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: kill(2) on our own child's process group; no memory is involved.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever is left of the group (node children included) goes now.
        // SAFETY: as above.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}
