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
    let mut last = 0;
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
    let db = first.dir.path().join("stocky.db");
    let mut hubs = vec![first];
    for _ in 1..n {
        hubs.push(
            TestHub::start_with(|c| {
                c.db_path = Some(db.clone());
                c.log_poll = Duration::from_millis(100);
                tweak(c);
            })
            .await?,
        );
    }
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
