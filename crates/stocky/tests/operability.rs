//! What an operator meets first, on the real binary: the configuration file and its
//! layering (defaults < file < environment < flags), unknown keys refused by name, startup
//! errors as one readable line, `--version` with the commit, JSON logs with one access-log
//! line per request, and `stocky probe`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;
use stocky_test_support::ADMIN;

fn stocky() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stocky"));
    for var in [
        "PORT",
        "HOST",
        "WS_PATH",
        "DB_PATH",
        "STOCKY_DATA_DIR",
        "DATABASE_URL",
        "STOCKY_CONFIG",
        "STOCKY_LOG_FORMAT",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Starts `command` (a hub) and returns it with its banner's first line.
fn start(command: &mut Command) -> (Child, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("the hub starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a banner").expect("utf-8");
    let second = lines.next().expect("a banner").expect("utf-8");
    std::thread::spawn(move || lines.for_each(drop));
    (child, format!("{first}\n{second}"))
}

fn write(dir: &Path, name: &str, content: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn the_file_sets_defaults_that_the_environment_and_flags_override() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write(
        dir.path(),
        "stocky.toml",
        &format!(
            "[hub]\nport = 1\nws-path = \"/live\"\ndata_dir = {:?}\nadmin-token = \"{ADMIN}\"\n",
            data.display()
        ),
    );

    // The file's ws-path and data dir; the flag's port (the file's 1 would fail).
    let (mut hub, banner) = start(
        stocky()
            .arg("--config")
            .arg(&config)
            .args(["hub", "--port", "0"]),
    );
    assert!(banner.contains("/live"), "the file's ws-path: {banner}");
    assert!(!banner.contains(":1\n"), "the flag's port: {banner}");
    hub.kill().unwrap();
    hub.wait().unwrap();
    assert!(data.join("stocky.db").exists(), "the file's data dir");

    // The environment beats the file too (STOCKY_CONFIG names the file).
    let (mut hub, banner) = start(
        stocky()
            .env("STOCKY_CONFIG", &config)
            .env("PORT", "0")
            .env("WS_PATH", "/env")
            .arg("hub"),
    );
    assert!(banner.contains("/env"), "{banner}");
    hub.kill().unwrap();
    hub.wait().unwrap();

    // `config check` says where each value came from, and hides secrets.
    let out = run(stocky()
        .env("STOCKY_CONFIG", &config)
        .env("WS_PATH", "/env")
        .args(["config", "check", "hub"]));
    let report = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(report.contains("port = 1  # file"), "{report}");
    assert!(
        report.contains("ws-path = \"/env\"  # environment WS_PATH"),
        "{report}"
    );
    assert!(report.contains("admin-token = \"***\"  # file"), "{report}");
    assert!(
        report.contains("max-body-bytes = 1048576  # default"),
        "{report}"
    );
    assert!(!report.contains(ADMIN), "secrets are not printed: {report}");

    // `config default` is a valid file that changes nothing.
    let out = run(stocky().args(["config", "default"]));
    let default = write(dir.path(), "default.toml", &text(&out.stdout));
    let out = run(stocky()
        .arg("--config")
        .arg(&default)
        .args(["config", "check"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("# file"), "all defaults");
}

#[test]
fn unknown_keys_and_startup_errors_are_one_readable_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "bad.toml", "[hub]\nprot = 3000\n");
    let out = run(stocky()
        .env("RUST_BACKTRACE", "1")
        .arg("--config")
        .arg(&config)
        .args(["hub", "--port", "0"]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unknown key `prot` in [hub]"), "{stderr}");
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(
        !stderr.contains("backtrace"),
        "no backtrace unless asked: {stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    let out = run(stocky()
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .args(["config", "check"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read the configuration file"));

    // A start that fails (the port is taken) says what and why on one line.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run(stocky()
        .env("RUST_BACKTRACE", "1")
        .args(["hub", "--port", &port, "--data-dir"])
        .arg(dir.path().join("d")));
    let stderr = text(&out.stderr);
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("stocky: error: starting the hub:"),
        "{stderr}"
    );
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
}

#[test]
fn version_names_the_commit() {
    let out = run(stocky().arg("--version"));
    let version = text(&out.stdout);
    assert!(
        version.starts_with(&format!("stocky {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
}

#[tokio::test]
async fn json_logs_carry_one_access_line_per_request_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = stocky()
        .args([
            "--log-format",
            "json",
            "hub",
            "--port",
            "0",
            "--admin-token",
            ADMIN,
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(hub.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    std::thread::spawn(move || lines.for_each(drop));
    let http = first.split_whitespace().last().unwrap().to_owned();
    let (log_tx, log_rx) = std::sync::mpsc::channel::<String>();
    let stderr = hub.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = log_tx.send(line);
        }
    });

    let answer = reqwest::Client::new()
        .get(format!("{http}/api/stock/7?token=should-not-be-logged"))
        .bearer_auth(ADMIN)
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.headers()["x-request-id"], "trace-me-42");
    let probe = run(stocky().args(["probe", &format!("{http}/readyz")]));
    assert!(probe.status.success(), "{}", text(&probe.stderr));
    let refused = run(stocky().args(["probe", &format!("{http}/api/stock/7")]));
    assert!(!refused.status.success(), "a 401 is not healthy");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut seen = Vec::new();
    let access = loop {
        let line = log_rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or_else(|_| panic!("no access line in {seen:#?}"));
        let entry: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("a JSON line, got {line:?}"));
        if entry["target"] == "stocky::access" && entry["request_id"] == "trace-me-42" {
            break entry;
        }
        seen.push(line);
    };
    assert_eq!(access["method"], "GET", "{access}");
    assert_eq!(
        access["route"], "/api/stock/{product_id}",
        "the template: {access}"
    );
    assert_eq!(access["status"], 404, "{access}");
    assert_eq!(access["tenant"], "default", "{access}");
    assert!(access["latency_ms"].is_number(), "{access}");
    let all = format!("{seen:?}{access}");
    assert!(
        !all.contains("should-not-be-logged") && !all.contains(ADMIN),
        "{all}"
    );
    hub.kill().unwrap();
    hub.wait().unwrap();
}
