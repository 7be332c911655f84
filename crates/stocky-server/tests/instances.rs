//! Several hub instances on one database: every client, whichever instance it is on,
//! receives every event in id order, without gaps or duplicates.

mod support;

use std::time::Duration;

use anyhow::Result;
use futures_util::future::join_all;
use serde_json::json;
use support::{Client, TestHub};

/// Reads `count` events and checks they are exactly ids 1..=count, each `prev` the last.
async fn expect_sequence(client: &mut Client, count: u64) -> Result<()> {
    expect_sequence_from(client, 0, count).await
}

/// Reads events `after+1..=until` in order, each `prev` the one before.
async fn expect_sequence_from(client: &mut Client, after: u64, until: u64) -> Result<()> {
    let (mut last, count) = (after, until);
    while last < count {
        let message = client.recv().await?;
        if message["type"] == "ack" || message.get("id").is_some() {
            let id = message["id"].as_u64().unwrap();
            anyhow::ensure!(
                id == last + 1,
                "expected id {} after {last}, got {message}",
                last + 1
            );
            anyhow::ensure!(
                message["prev"] == last,
                "prev of {id} is {} not {last}",
                message["prev"]
            );
            last = id;
        }
    }
    Ok(())
}

async fn instances(
    n: usize,
    tweak: impl Fn(&mut stocky_server::HubConfig),
) -> Result<Vec<TestHub>> {
    let first = TestHub::start_with(|c| {
        c.log_poll = Duration::from_millis(100);
        tweak(c);
    })
    .await?;
    let mut hubs = vec![];
    for _ in 1..n {
        hubs.push(
            TestHub::start_with(|c| {
                first.share_database(c);
                c.log_poll = Duration::from_millis(100);
                tweak(c);
            })
            .await?,
        );
    }
    hubs.insert(0, first);
    Ok(hubs)
}

#[tokio::test]
async fn instances_sharing_a_database_deliver_every_event_in_order() -> Result<()> {
    let hubs = instances(3, |_| {}).await?;
    let mut watchers = Vec::new();
    for hub in &hubs {
        watchers.push(hub.connect().await?);
    }
    let per_instance = 20;
    let writers = hubs.iter().map(|hub| async move {
        let mut client = hub.connect().await?;
        for _ in 0..per_instance {
            client
                .send(json!({"event":"stock:add","data":[{"productId":1,"quantity":1}]}))
                .await?;
        }
        anyhow::Ok(client)
    });
    let mut writers = join_all(writers)
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let total = (per_instance * hubs.len()) as u64;
    for watcher in &mut watchers {
        expect_sequence(watcher, total).await?;
    }
    for writer in &mut writers {
        expect_sequence(writer, total).await?;
    }
    for hub in &hubs {
        assert_eq!(hub.stock(1).await?, total as i64);
    }
    Ok(())
}

/// Redis for the bus tests: `STOCKY_TEST_REDIS_URL` (CI sets it). Without it — a laptop
/// with no Redis — the bus tests have nothing to test against and pass trivially.
fn redis_url() -> Option<String> {
    std::env::var("STOCKY_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

#[tokio::test]
async fn the_redis_bus_carries_events_between_instances() -> Result<()> {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    // A log poll far longer than the test: whatever arrives came over the bus.
    let hubs = instances(3, |c| {
        c.redis_url = Some(stocky_server::config::Secret(url.clone()));
        c.log_poll = Duration::from_secs(3600);
    })
    .await?;
    // Let every listener reach its first XREAD before anything is appended.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut watchers = Vec::new();
    for hub in &hubs {
        watchers.push(hub.connect().await?);
    }
    // Only instance 0 writes: the others have no gap to notice, only the bus to hear from.
    let mut writer = hubs[0].connect().await?;
    for _ in 0..10 {
        writer
            .command("stock:add", json!([{"productId":1,"quantity":1}]))
            .await?;
    }
    for watcher in &mut watchers {
        expect_sequence(watcher, 10).await?;
    }
    // Then everyone writes at once: still one order everywhere.
    let writers = hubs.iter().map(|hub| async move {
        let mut client = hub.connect().await?;
        for _ in 0..20 {
            client
                .send(json!({"event":"stock:add","data":[{"productId":1,"quantity":1}]}))
                .await?;
        }
        anyhow::Ok(client)
    });
    let mut writers = join_all(writers)
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    for client in watchers.iter_mut().chain(writers.iter_mut()) {
        expect_sequence_from(client, 10, 70).await?;
    }
    Ok(())
}
