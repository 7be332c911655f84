//! The real `stocky` binary: it starts, prints where it serves, and shuts down gracefully.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use stocky_test_support::process::HubProcess;
use stocky_test_support::ADMIN;

#[tokio::test]
async fn sigterm_closes_sockets_with_a_reconnect_reason_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stocky"))
        .args(["hub", "--port", "0", "--admin-token", ADMIN, "--data-dir"])
        .arg(dir.path())
        .env_remove("PORT")
        .env_remove("DB_PATH")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let http = first.split_whitespace().last().unwrap().to_owned();
    assert!(http.starts_with("http://127.0.0.1:"), "{first}");
    let ws_line = lines.next().unwrap().unwrap();
    let ws_url = ws_line.split_whitespace().last().unwrap().to_owned();
    assert!(ws_url.ends_with("/ws"), "{ws_line}");

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{ws_url}?token={ADMIN}"))
        .await
        .unwrap();
    let welcome = ws.next().await.unwrap().unwrap();
    assert!(welcome.to_text().unwrap().contains("\"welcome\""));

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("a close frame within 10 s")
    .expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1012);
    assert!(close.reason.contains("reconnect"), "{}", close.reason);

    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    assert!(dir.path().join("stocky.db").exists());
}

/// A `stocky hub` process of this package's binary.
fn hub_process(args: &[&std::ffi::OsStr]) -> HubProcess {
    HubProcess::start(std::path::Path::new(env!("CARGO_BIN_EXE_stocky")), args).unwrap()
}

fn stocky(args: &[&std::ffi::OsStr]) {
    let output = Command::new(env!("CARGO_BIN_EXE_stocky"))
        .args(args)
        .env_remove("DB_PATH")
        .env_remove("STOCKY_DATA_DIR")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "stocky {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn backup_restore_and_snapshot_from_the_command_line() {
    use std::ffi::OsStr;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let file = dir.path().join("backup.json");
    let snap = dir.path().join("snap.db");

    let hub = hub_process(&[OsStr::new("--data-dir"), a.as_os_str()]);
    let sdk = hub.sdk();
    sdk.post_documents(
        "shop",
        "products",
        &serde_json::json!({"data":[{"id":"1","name":"Café"},{"id":"2","name":"Té"}]}),
    )
    .await
    .unwrap();
    sdk.update_stock(&[(1, 30)]).await.unwrap();
    sdk.subtract_stock(&[(1, 4)]).await.unwrap();
    let epoch = sdk.status().await.unwrap().epoch;
    let products = sdk.documents("shop", "products").await.unwrap()["data"].clone();

    // Online backup over HTTP (the URL without its scheme works too), and a snapshot
    // while the hub runs.
    stocky(&[
        OsStr::new("backup"),
        OsStr::new("--url"),
        OsStr::new(hub.http.trim_start_matches("http://")),
        OsStr::new("--token"),
        OsStr::new(ADMIN),
        OsStr::new("--out"),
        file.as_os_str(),
    ]);
    stocky(&[
        OsStr::new("snapshot"),
        OsStr::new("--data-dir"),
        a.as_os_str(),
        OsStr::new("--out"),
        snap.as_os_str(),
    ]);
    hub.stop().unwrap();
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let names: Vec<&str> = saved["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["database"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shop", "_stock"]);

    // Offline restore into a brand-new data dir reproduces documents and stock.
    stocky(&[
        OsStr::new("restore"),
        file.as_os_str(),
        OsStr::new("--data-dir"),
        b.as_os_str(),
    ]);
    let restored = hub_process(&[OsStr::new("--data-dir"), b.as_os_str()]);
    let sdk = restored.sdk();
    assert_eq!(sdk.stock_of(1).await.unwrap().unwrap().stock, 26);
    assert_eq!(
        sdk.documents("shop", "products").await.unwrap()["data"],
        products
    );
    restored.stop().unwrap();

    // A hub starts from the snapshot, with the same state and a fresh epoch.
    let from_snapshot = hub_process(&[
        OsStr::new("--db-path"),
        snap.as_os_str(),
        OsStr::new("--data-dir"),
        dir.path().as_os_str(),
    ]);
    let sdk = from_snapshot.sdk();
    assert_eq!(sdk.stock_of(1).await.unwrap().unwrap().stock, 26);
    assert_ne!(sdk.status().await.unwrap().epoch, epoch);
    from_snapshot.stop().unwrap();
}

#[tokio::test]
async fn admin_needs_a_database_and_resets_a_lost_password() {
    use std::ffi::OsStr;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_stocky"))
            .arg("admin")
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .env_remove("DB_PATH")
            .env_remove("DATABASE_URL")
            .env_remove("STOCKY_NEW_PASSWORD")
            .output()
            .unwrap()
    };

    // No database there yet: refused, and none is created.
    let refused = admin(&["user-list"]);
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("no database at"), "{error}");
    assert!(!data.join("stocky.db").exists());

    // The hub creates it with its first owner; offline, that owner gets a new password.
    let hub = hub_process(&[OsStr::new("--data-dir"), data.as_os_str()]);
    let reset = admin(&["user-reset-password", "--email", "Owner@Stocky.local"]);
    let out = String::from_utf8_lossy(&reset.stdout);
    assert!(reset.status.success(), "{out}");
    let password = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("the new password is printed");
    let owner = stocky_client::Client::new(&hub.http).unwrap();
    owner.login("owner@stocky.local", password).await.unwrap();
    let unknown = admin(&["user-reset-password", "--email", "nobody@stocky.local"]);
    assert!(!unknown.status.success());

    // Against the running hub (--url, through the SDK): the credential's tenant.
    let remote = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_stocky"))
            .args(["admin", "--url", &hub.http, "--token", ADMIN])
            .args(args)
            .env_remove("STOCKY_TOKEN")
            .output()
            .unwrap()
    };
    let created = remote(&["site-create", "north", "--name", "North shop"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let listed = remote(&["site-list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("North shop"));
    let key = remote(&[
        "key-create",
        "--name",
        "till",
        "--role",
        "cashier",
        "--site",
        "north",
    ]);
    let out = String::from_utf8_lossy(&key.stdout);
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .expect("the key is printed");
    let till = stocky_client::Client::new(&hub.http)
        .unwrap()
        .with_token(secret);
    assert_eq!(till.me().await.unwrap()["siteId"], "north");
    let tenants = remote(&["tenant-list"]);
    assert!(!tenants.status.success(), "tenants are offline-only");

    // A user changed through the hub, then disabled offline.
    let created = remote(&[
        "user-create",
        "--email",
        "till@north.test",
        "--role",
        "cashier",
        "--site",
        "north",
        "--password",
        "a long password",
    ]);
    let out = String::from_utf8_lossy(&created.stdout);
    let id = out
        .split_whitespace()
        .last()
        .expect("the new user's id is printed")
        .to_owned();
    let promoted = remote(&["user-update", &id, "--role", "manager", "--every-site"]);
    let out = String::from_utf8_lossy(&promoted.stdout);
    assert!(out.contains("(manager, site *)"), "{out}");
    let user = stocky_client::Client::new(&hub.http).unwrap();
    let grant = user
        .login("till@north.test", "a long password")
        .await
        .unwrap();
    assert_eq!(grant.user.role, stocky_core::auth::Role::Manager);
    let disabled = admin(&["user-update", &id, "--disable"]);
    assert!(
        disabled.status.success(),
        "{}",
        String::from_utf8_lossy(&disabled.stderr)
    );
    let refused = user.login("till@north.test", "a long password").await;
    assert_eq!(refused.unwrap_err().status(), Some(401));
    assert!(
        !admin(&["user-update", &id]).status.success(),
        "nothing to change"
    );
    assert!(!remote(&["user-update", "nobody", "--enable"])
        .status
        .success());
    hub.stop().unwrap();
}

#[tokio::test]
async fn a_store_is_activated_and_run_from_the_command_line() {
    use std::ffi::OsStr;
    let dir = tempfile::tempdir().unwrap();
    let (hub_dir, edge_dir) = (dir.path().join("hub"), dir.path().join("edge"));
    // The hub's sync rules come from a file; a bad one stops the start with its reason.
    let rules = dir.path().join("rules.json");
    std::fs::write(
        &rules,
        r#"{"collections":[{"db":"pos","store":"customers","direction":"both","localFields":["isBanned"],"remoteFields":["isBanned"]}]}"#,
    )
    .unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_stocky"))
        .args(["hub", "--port", "0", "--sync-rules"])
        .arg(&rules)
        .arg("--data-dir")
        .arg(&hub_dir)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("priority on both sides"), "{stderr}");
    std::fs::write(
        &rules,
        r#"{"collections":[{"db":"pos","store":"menu","direction":"up"},{"db":"*","store":"*","direction":"both"}]}"#,
    )
    .unwrap();
    let hub = hub_process(&[
        OsStr::new("--data-dir"),
        hub_dir.as_os_str(),
        OsStr::new("--sync-rules"),
        rules.as_os_str(),
    ]);
    let (status, answer) = hub
        .sdk()
        .call(
            "POST",
            "/api/admin/sites/default/activation-codes",
            None,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{answer}");
    let code = answer["code"].as_str().unwrap().to_owned();
    let activate = |code: &str| {
        Command::new(env!("CARGO_BIN_EXE_stocky"))
            .args([
                "edge",
                "activate",
                "--hub",
                &hub.http,
                "--code",
                code,
                "--data-dir",
            ])
            .arg(&edge_dir)
            .env_remove("REMOTE_API_URL")
            .output()
            .unwrap()
    };
    let done = activate(&code);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        String::from_utf8_lossy(&done.stdout).contains("activated: tenant default site default")
    );
    let twice = activate(&code);
    assert!(!twice.status.success());
    // The edge took the hub's rules at activation.
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(edge_dir.join("edge.json")).unwrap()).unwrap();
    assert_eq!(
        config["syncRules"]["collections"][0]["direction"], "up",
        "{config}"
    );

    let mut edge = Command::new(env!("CARGO_BIN_EXE_stocky"))
        .args(["edge", "--port", "0", "--admin-token", ADMIN, "--data-dir"])
        .arg(&edge_dir)
        .env_remove("PORT")
        .env_remove("REMOTE_API_URL")
        .env_remove("REMOTE_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(edge.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let http = first.split_whitespace().last().unwrap().to_owned();
    assert!(http.starts_with("http://127.0.0.1:"), "{first}");
    let local = stocky_client::Client::new(&http).unwrap().with_token(ADMIN);
    local.add_stock(&[(3, 4)]).await.unwrap();
    let mut synced = false;
    for _ in 0..100 {
        if hub.sdk().stock_of(3).await.unwrap().map(|r| r.stock) == Some(4) {
            synced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(synced, "the edge's sale reached the hub");
    let status: serde_json::Value = local.get("/api/sync/status").await.unwrap();
    assert_eq!(status["pending"], 0, "{status}");
    Command::new("kill")
        .args(["-TERM", &edge.id().to_string()])
        .status()
        .unwrap();
    assert!(edge.wait().unwrap().success());
    hub.stop().unwrap();
}
