//! The `watch` example, run against a hub that is restarted twice while commands are sent,
//! prints every event exactly once, in id order, with no gap.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use stocky_test_support::process::example_binary;
use stocky_test_support::{TestHub, ADMIN, WAIT};

#[tokio::test]
async fn watch_prints_every_event_once_in_order_across_two_restarts() -> Result<()> {
    let watch = example_binary("stocky-client", "watch")?;
    let mut hub = TestHub::start().await?;
    let ws = hub.http.replace("http://", "ws://") + "/ws";
    let mut child = Command::new(&watch)
        .args(["--url", &ws, "--token", ADMIN, "--last-event-id", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop_guard()?;
    let stdout = child.0.stdout.take().context("piped")?;
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut sent = 0u64;
    for round in 0..3 {
        if round > 0 {
            hub.restart_with(|_| {}).await?;
        }
        let sdk = hub.sdk();
        for _ in 0..10 {
            sent += 1;
            let product = (sent % 4 + 1) as i64;
            sdk.add_stock(&[(product, 1)]).await?;
        }
    }

    let mut seen = Vec::new();
    while (seen.len() as u64) < sent {
        let line = tokio::time::timeout(WAIT, lines.recv())
            .await
            .context("watch stopped printing")?
            .context("watch exited")?;
        let event: Value = serde_json::from_str(&line).with_context(|| line.clone())?;
        seen.push((event["id"].as_u64(), event["prev"].as_u64()));
    }
    // Nothing more (no duplicates) arrives.
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(700), lines.recv()).await {
        bail!("an extra line after all {sent} events: {extra}");
    }
    let expected: Vec<(Option<u64>, Option<u64>)> =
        (1..=sent).map(|id| (Some(id), Some(id - 1))).collect();
    assert_eq!(
        seen, expected,
        "every event once, in order, chained by prev"
    );
    Ok(())
}

/// A child process killed when the guard drops (the test must not leave `watch` running).
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

trait SpawnGuarded {
    fn kill_on_drop_guard(&mut self) -> Result<Guard>;
}

impl SpawnGuarded for Command {
    fn kill_on_drop_guard(&mut self) -> Result<Guard> {
        Ok(Guard(self.spawn().context("spawning watch")?))
    }
}
