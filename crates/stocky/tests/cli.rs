//! The real `stocky` binary: it starts, prints where it serves, and shuts down gracefully.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn sigterm_closes_sockets_with_a_reconnect_reason_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stocky"))
        .args(["hub", "--port", "0", "--data-dir"])
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

    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
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
