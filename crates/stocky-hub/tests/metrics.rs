//! `GET /metrics`: the Prometheus text moves when traffic flows (connections, commands by
//! result, group commits, deliveries, frames and bytes, replays, HTTP requests, rate
//! limits), carries no tenant data, and can be put behind a bearer token.

use stocky_test_support as support;

use anyhow::{Context, Result};
use serde_json::json;
use stocky_server::config::Secret;
use support::{TestHub, ADMIN};

/// The value of the sample `series` (the name with its labels, as exposed), or 0.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

async fn scrape(hub: &TestHub, token: Option<&str>) -> Result<(u16, String)> {
    let mut request = reqwest::Client::new().get(format!("{}/metrics", hub.http));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    Ok((response.status().as_u16(), response.text().await?))
}

#[tokio::test]
async fn metrics_move_when_traffic_flows() -> Result<()> {
    let hub = TestHub::start().await?;
    let (status, before) = scrape(&hub, None).await?;
    assert_eq!(status, 200);
    assert!(
        before.contains("# TYPE stocky_ws_connections gauge"),
        "{before}"
    );

    let mut watcher = hub.connect().await?;
    let mut writer = hub.connect().await?;
    let answer = writer
        .command("stock:update", json!([{"productId": 1, "stock": 10}]))
        .await?;
    assert_eq!(answer["type"], "ack", "{answer}");
    let refused = writer
        .command("stock:subtract", json!([{"productId": 1, "quantity": 99}]))
        .await?;
    assert_eq!(refused["event"], "stock:error", "{refused}");
    watcher.next_event().await?;
    let mut resumed = support::Client::connect(&format!("{}&lastEventId=0", hub.ws)).await?;
    loop {
        if resumed.recv().await?["type"] == "sync_complete" {
            break;
        }
    }
    let (status, _) = hub.get("/api/stock/1").await?;
    assert_eq!(status, 200);

    let (_, after) = scrape(&hub, None).await?;
    let moved = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(sample(&after, "stocky_ws_connections"), 3.0, "{after}");
    assert_eq!(
        moved("stocky_commands_total{result=\"applied\"}"),
        1.0,
        "{after}"
    );
    assert_eq!(
        moved("stocky_commands_total{result=\"refused\"}"),
        1.0,
        "{after}"
    );
    assert!(moved("stocky_commit_batch_size_count") >= 1.0, "{after}");
    assert!(moved("stocky_commit_seconds_count") >= 1.0, "{after}");
    assert!(
        moved("stocky_ws_deliveries_total") >= 1.0,
        "the watcher got it: {after}"
    );
    assert!(moved("stocky_ws_frames_sent_total") >= 4.0, "{after}");
    assert!(moved("stocky_ws_bytes_sent_total") > 100.0, "{after}");
    assert_eq!(moved("stocky_replays_total"), 1.0, "{after}");
    assert_eq!(moved("stocky_replayed_events_total"), 1.0, "{after}");
    assert!(
        moved("stocky_http_requests_total{method=\"GET\",route=\"/api/stock/{product_id}\",status=\"200\"}")
            == 1.0,
        "{after}"
    );
    assert!(
        !after.contains(ADMIN) && !after.contains("tenant"),
        "no tenant data: {after}"
    );

    drop((watcher, writer, resumed));
    let mut closed = 3.0;
    for _ in 0..50 {
        let (_, now) = scrape(&hub, None).await?;
        closed = sample(&now, "stocky_ws_connections");
        if closed == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(closed, 0.0, "closed connections are no longer counted");
    Ok(())
}

#[tokio::test]
async fn rate_limits_are_counted_and_a_token_protects_the_metrics() -> Result<()> {
    let hub = TestHub::start_with(|c| {
        c.server.metrics_token = Some(Secret("scrape-me".into()));
        c.server.rate_per_credential = 2;
    })
    .await?;
    let (status, _) = scrape(&hub, None).await?;
    assert_eq!(status, 401, "no token");
    let (status, _) = scrape(&hub, Some("wrong")).await?;
    assert_eq!(status, 401, "a wrong token");
    for _ in 0..4 {
        hub.get("/api/stock/1").await?;
    }
    let (status, text) = scrape(&hub, Some("scrape-me")).await?;
    assert_eq!(status, 200);
    let limited = sample(&text, "stocky_rate_limited_total{scope=\"credential\"}");
    assert!(limited >= 2.0, "{text}");
    let readers = text
        .lines()
        .find(|l| l.starts_with("stocky_db_readers_idle"))
        .context("the pool's state")?;
    assert!(readers.ends_with(|c: char| c.is_ascii_digit()), "{readers}");
    Ok(())
}
