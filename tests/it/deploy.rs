//! The files in `deploy/` checked as far as this machine can: the systemd units with
//! `systemd-analyze verify` (the binary path pointed at the built one) and their key settings;
//! the Kubernetes manifest parsed (python3 + PyYAML) and its key fields; the container's exit-code
//! wrapper run with a stand-in binary; and every job file there loaded by `status` with no
//! secret, and by `validate` once its absolute paths point into a temporary folder.
//! What needs a cluster or a booted systemd (a real timer firing, credentials mounted, the Job
//! controller applying podFailurePolicy) is not checked here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{UNLINKER, mode, unlinker, write};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A unit file's `[Service]`/`[Unit]`/... settings: key → every value given, in order.
fn unit_settings(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with('[') || line.is_empty() {
            continue;
        }
        let (key, value) = line.split_once('=').expect("key=value");
        out.entry(key.to_string())
            .or_default()
            .push(value.to_string());
    }
    out
}

fn one<'a>(settings: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match settings.get(key).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("{key}: expected one value, got {other:?}"),
    }
}

fn duration(text: &str) -> Duration {
    humantime::parse_duration(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The value of `--deadline` in a command line.
fn deadline_of(command: &str) -> Duration {
    let mut words = command.split_whitespace();
    words.find(|w| *w == "--deadline").expect("--deadline");
    duration(words.next().expect("a --deadline value"))
}

#[test]
fn systemd_units_verify_with_the_built_binary() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        println!("note: systemd-analyze is not installed: the units were not verified");
        return;
    };
    assert!(version.status.success());
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for name in [
        "unlinker-nightly.service",
        "unlinker-nightly.timer",
        "unlinker-alert@.service",
    ] {
        let text = read(&format!("systemd/{name}")).replace("/usr/local/bin/unlinker", UNLINKER);
        files.push(write(dir.path(), name, &text));
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&files)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A bad value is only a warning to systemd (exit 0): any output at all fails the test.
    assert!(
        out.status.success() && stderr.trim().is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify: {stderr}{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_nightly_service_treats_only_done_and_asked_stops_as_success() {
    let unit = unit_settings(&read("systemd/unlinker-nightly.service"));
    let timer = unit_settings(&read("systemd/unlinker-nightly.timer"));
    // 0 and 4 (a deadline or `systemctl stop`: resumable) succeed; 3 and 6 need a person.
    assert_eq!(one(&unit, "SuccessExitStatus"), "4");
    assert_eq!(one(&unit, "OnFailure"), "unlinker-alert@%n.service");
    assert!(
        !unit.contains_key("Restart"),
        "a halt must wait for a person"
    );
    assert_eq!(one(&unit, "Type"), "oneshot");
    let exec = one(&unit, "ExecStart");
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(
        words[..4],
        [
            "/usr/local/bin/unlinker",
            "-q",
            "run",
            "/etc/unlinker/nightly.toml"
        ]
    );
    // The start timeout is a backstop past the deadline and the drain.
    let deadline = deadline_of(exec);
    let timeout = duration(one(&unit, "TimeoutStartSec"));
    assert!(
        timeout > deadline + Duration::from_secs(60),
        "{timeout:?} vs {deadline:?}"
    );
    assert!(
        duration(one(&unit, "TimeoutStopSec")) > Duration::from_secs(30),
        "drain: retry.timeout"
    );
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "unlinker-nightly"),
        ("UMask", "0077"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(one(&unit, key), value, "{key}");
    }
    assert_eq!(one(&timer, "Unit"), "unlinker-nightly.service");
    assert_eq!(one(&timer, "Persistent"), "true");
    assert_eq!(one(&timer, "WantedBy"), "timers.target");

    // The job file reads the credential where systemd puts it: $CREDENTIALS_DIRECTORY is
    // /run/credentials/<unit>/, the name is LoadCredential='s first part.
    let (credential, _) = one(&unit, "LoadCredential").split_once(':').unwrap();
    let job = read("systemd/nightly.toml");
    let expected = format!("${{file:/run/credentials/unlinker-nightly.service/{credential}}}");
    assert!(job.contains(&expected), "{expected} in nightly.toml");
    // Its outputs live in the StateDirectory, the one place the unit may write.
    for line in job
        .lines()
        .filter(|l| l.starts_with("report") || l.starts_with("summary"))
    {
        assert!(line.contains("\"/var/lib/unlinker-nightly/"), "{line}");
    }
}

/// The manifest's documents as JSON, through python3 and PyYAML; `None` (with a note) when
/// those are missing.
fn kubernetes_documents() -> Option<Vec<Value>> {
    let script = "import json, sys, yaml\n\
                  print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .stdin(std::fs::File::open(deploy("kubernetes/cronjob.yaml")).unwrap())
        .stderr(Stdio::piped())
        .output();
    match out {
        Ok(out) if out.status.success() => Some(serde_json::from_slice(&out.stdout).unwrap()),
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No module named 'yaml'") => {
            println!("note: PyYAML is not installed: the Kubernetes manifest was not parsed");
            None
        }
        Ok(out) => panic!("cronjob.yaml: {}", String::from_utf8_lossy(&out.stderr)),
        Err(_) => {
            println!("note: python3 is not installed: the Kubernetes manifest was not parsed");
            None
        }
    }
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn the_cronjob_runs_one_at_a_time_within_its_deadline_with_a_read_only_secret() {
    let Some(docs) = kubernetes_documents() else {
        return;
    };
    let cron = of_kind(&docs, "CronJob");
    assert_eq!(cron["apiVersion"], "batch/v1");
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
    let job = &cron["spec"]["jobTemplate"]["spec"];
    let pod = &job["template"]["spec"];
    assert_eq!(
        pod["restartPolicy"], "Never",
        "podFailurePolicy needs Never"
    );
    let container = &pod["containers"][0];
    let script = container["args"][0].as_str().unwrap();
    let command = script
        .lines()
        .find(|l| l.contains("unlinker -q run"))
        .unwrap();
    // The Job's deadline leaves room for --deadline plus the drain (retry.timeout, 30 s).
    let deadline = deadline_of(command);
    let active = Duration::from_secs(job["activeDeadlineSeconds"].as_u64().unwrap());
    assert!(
        active > deadline + Duration::from_secs(30),
        "{active:?} vs {deadline:?}"
    );
    assert!(
        active < Duration::from_secs(3600),
        "ends before the next hourly slot"
    );
    assert_eq!(cron["spec"]["schedule"], "0 * * * *");
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > 30);
    // A halt (6) and failed rows (3) fail the Job at once, never retried.
    let rules = job["podFailurePolicy"]["rules"].as_array().unwrap();
    let fail_codes = &rules.iter().find(|r| r["action"] == "FailJob").unwrap()["onExitCodes"];
    assert_eq!(fail_codes["operator"], "In");
    for code in [3, 6] {
        assert!(
            fail_codes["values"]
                .as_array()
                .unwrap()
                .contains(&code.into()),
            "{code}"
        );
    }

    // Volumes: the Secret mounted read-only where the job file reads it, the ConfigMap as the
    // job file, the claim for checkpoint and reports.
    let volumes = pod["volumes"].as_array().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap();
    let mounts = container["volumeMounts"].as_array().unwrap();
    let mount_of = |volume: &str| mounts.iter().find(|m| m["name"] == volume).unwrap();
    let secret = volumes.iter().find(|v| v.get("secret").is_some()).unwrap();
    let secret_mount = mount_of(secret["name"].as_str().unwrap());
    assert_eq!(secret_mount["readOnly"], true);
    let config = of_kind(&docs, "ConfigMap");
    let job_toml = config["data"]["job.toml"].as_str().unwrap();
    let token_path = format!(
        "{}/auth0-token",
        secret_mount["mountPath"].as_str().unwrap()
    );
    assert!(
        job_toml.contains(&format!("${{file:{token_path}}}")),
        "{job_toml}"
    );
    let job_volume = volume("job");
    assert_eq!(job_volume["configMap"]["name"], config["metadata"]["name"]);
    assert_eq!(mount_of("job")["mountPath"], "/etc/unlinker");
    assert!(command.contains("/etc/unlinker/job.toml"));
    let claim = of_kind(&docs, "PersistentVolumeClaim");
    assert_eq!(
        volume("state")["persistentVolumeClaim"]["claimName"],
        claim["metadata"]["name"]
    );
    let state_path = mount_of("state")["mountPath"].as_str().unwrap();
    assert!(
        job_toml.contains(&format!("report = \"{state_path}/")),
        "{job_toml}"
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
}

#[test]
fn the_container_script_maps_a_resumable_stop_to_success_and_passes_sigterm_on() {
    let Some(docs) = kubernetes_documents() else {
        return;
    };
    let cron = of_kind(&docs, "CronJob");
    let container = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["command"], serde_json::json!(["/bin/sh", "-c"]));
    let script = container["args"][0].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    // A stand-in `unlinker` exiting with $CODE, or on SIGTERM after a short drain with 4.
    let fake = write(
        dir.path(),
        "unlinker",
        "#!/bin/sh\ntrap 'sleep 0.2; exit 4' TERM\n[ -n \"$WAIT\" ] && { sleep 20 & wait; }\nexit \"$CODE\"\n",
    );
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |code: &str, wait: bool| {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", &script])
            .env("PATH", &path)
            .env("CODE", code);
        if wait {
            cmd.env("WAIT", "1");
        }
        cmd
    };
    for (code, expected) in [("0", 0), ("4", 0), ("3", 3), ("6", 6), ("1", 1)] {
        let status = run(code, false).status().unwrap();
        assert_eq!(status.code(), Some(expected), "unlinker exiting {code}");
    }
    let mut child = run("0", true).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM: drained, exit 4, reported as 0"
    );
}

/// Every job file in deploy/: (where, its text).
fn deploy_jobs() -> Vec<(String, String)> {
    let mut jobs = vec![(
        "systemd/nightly.toml".to_string(),
        read("systemd/nightly.toml"),
    )];
    match kubernetes_documents() {
        Some(docs) => {
            let config = of_kind(&docs, "ConfigMap");
            let text = config["data"]["job.toml"].as_str().unwrap().to_string();
            jobs.push(("kubernetes/cronjob.yaml ConfigMap job.toml".into(), text));
        }
        None => println!("note: the ConfigMap's job file was not loaded"),
    }
    jobs
}

#[test]
fn every_deploy_job_file_loads_for_status_without_secrets_and_validates_with_them() {
    for (what, text) in deploy_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let job = write(dir.path(), "job.toml", &text);
        let status = Command::new(UNLINKER)
            .args(["status", job.to_str().unwrap()])
            .env_clear()
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&status.stdout);
        assert_eq!(
            status.status.code(),
            Some(0),
            "{what}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        assert!(
            stdout.contains("nothing has run yet") && stdout.contains("${file:/"),
            "{what}: {stdout}"
        );

        // With its state folder and credential moved under a temporary folder, the job is valid.
        let state = dir.path().join("state");
        std::fs::create_dir_all(state.join("inbox")).unwrap();
        write(
            &state.join("inbox"),
            "auth0-requests.csv",
            "user_id,provider,identity_user_id\nauth0|u1,github,1\n",
        );
        let token = write(dir.path(), "token", "tok-example\n");
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        assert_eq!(mode(&token), 0o600);
        let moved = text
            .replace("/var/lib/unlinker-nightly", state.to_str().unwrap())
            .replace("/var/lib/unlinker", state.to_str().unwrap())
            .replace(
                "/run/credentials/unlinker-nightly.service/auth0-token",
                token.to_str().unwrap(),
            )
            .replace(
                "/var/run/secrets/unlinker/auth0-token",
                token.to_str().unwrap(),
            );
        let job = write(dir.path(), "job.toml", &moved);
        let validate = unlinker(&["validate", job.to_str().unwrap()], &[]);
        assert_eq!(
            validate.code, 0,
            "{what}: {}{}",
            validate.stdout, validate.stderr
        );
        assert!(
            !validate.stderr.contains("readable"),
            "{what}: {}",
            validate.stderr
        );
    }
}
