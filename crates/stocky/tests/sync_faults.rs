//! Crashes during a push, with real processes: `kill -9` of the hub, and separately of the
//! edge, while the edge drains its outbox. After restarts nothing is lost and nothing is
//! applied twice (movements counted by UUID in the hub's ledger).

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use stocky_client::{Client, Start, SubscribeOptions, Update};
use stocky_core::stock::{StockCommand, StockLine, StockOp};
use stocky_test_support::process::{free_port, EdgeProcess, HubProcess};
use stocky_test_support::WAIT;

const SALES: usize = 4000;
const START: i64 = 100_000;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stocky"))
}

fn hub_at(port: u16, dir: &Path) -> Result<HubProcess> {
    HubProcess::start_at(bin(), port, &[OsStr::new("--data-dir"), dir.as_os_str()])
}

/// A hub on a fixed port with product 1 at `START`, and an activated edge dir.
async fn setup(hub_dir: &Path, edge_dir: &Path, port: u16) -> Result<HubProcess> {
    let hub = hub_at(port, hub_dir)?;
    hub.sdk().update_stock(&[(1, START)]).await?;
    let code = hub.sdk().create_activation_code("default").await?;
    stocky_edge::activate(&hub.http, &code, None, edge_dir, |_, _, _| {}).await?;
    Ok(hub)
}

/// `SALES` sales at the edge, pipelined over one WebSocket, all acknowledged.
async fn sell(edge: &Client) -> Result<()> {
    let mut register = edge.subscribe(SubscribeOptions::new(Start::Now).device("till"));
    let sale = StockCommand {
        op: StockOp::Subtract,
        lines: vec![StockLine {
            product_id: 1,
            amount: 1,
        }],
    };
    // In rounds: the subscription's update queue is bounded, so read while sending.
    let mut applied = 0;
    for round in 1..=SALES / 500 {
        for _ in 0..500 {
            register.send(&sale, None).await?;
        }
        while applied < round * 500 {
            match tokio::time::timeout(WAIT, register.next())
                .await?
                .context("ended")??
            {
                Update::Applied(_) => applied += 1,
                Update::Rejected(e) => bail!("refused {e:?}"),
                _ => {}
            }
        }
    }
    Ok(())
}

async fn hub_stock(hub: &Client) -> Result<Option<i64>> {
    Ok(hub.stock_of(1).await?.map(|r| r.stock))
}

/// Polls until the hub has some but not all of the sales, then returns.
async fn until_mid_push(hub: &Client) -> Result<i64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(stock)) = hub_stock(hub).await {
            if stock < START {
                return Ok(stock);
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the push never started");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn until_drained(edge: &Client, hub: &Client) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let status: Option<Value> = edge.get("/api/sync/status").await.ok();
        let pending = status.as_ref().map(|s| s["pending"].clone());
        if pending == Some(Value::from(0))
            && hub_stock(hub).await.ok().flatten() == Some(START - SALES as i64)
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("not drained: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every sale once in the hub's ledger: the set plus `SALES` distinct movements, summing
/// to the stock.
async fn assert_exactly_once(hub: &Client) -> Result<()> {
    let ledger: Value = hub.backup("_stock").await?;
    let movements = ledger["backup"]["movements"]
        .as_array()
        .context("movements")?;
    let ids: std::collections::HashSet<&str> =
        movements.iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids.len(), movements.len(), "ids are unique");
    assert_eq!(movements.len(), 1 + SALES, "the set and every sale, once");
    let sum: i64 = movements.iter().filter_map(|m| m["delta"].as_i64()).sum();
    assert_eq!(sum, START - SALES as i64);
    assert_eq!(hub_stock(hub).await?, Some(sum));
    Ok(())
}

#[tokio::test]
async fn kill_9_of_the_hub_mid_push_loses_nothing_and_applies_nothing_twice() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (hub_dir, edge_dir) = (dir.path().join("hub"), dir.path().join("edge"));
    let port = free_port()?;
    let hub = setup(&hub_dir, &edge_dir, port).await?;
    let hub_sdk = hub.sdk();
    hub.stop()?;
    let edge = EdgeProcess::start(bin(), &edge_dir)?;
    sell(&edge.sdk()).await?;
    let hub = hub_at(port, &hub_dir)?;
    let seen = until_mid_push(&hub_sdk).await?;
    hub.kill()?;
    assert!(
        seen > START - SALES as i64,
        "killed before the push ended ({seen})"
    );
    let _hub = hub_at(port, &hub_dir)?;
    until_drained(&edge.sdk(), &hub_sdk).await?;
    assert_exactly_once(&hub_sdk).await
}

#[tokio::test]
async fn kill_9_of_the_edge_mid_push_loses_nothing_and_applies_nothing_twice() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (hub_dir, edge_dir) = (dir.path().join("hub"), dir.path().join("edge"));
    let port = free_port()?;
    let hub = setup(&hub_dir, &edge_dir, port).await?;
    let hub_sdk = hub.sdk();
    hub.stop()?;
    let edge = EdgeProcess::start(bin(), &edge_dir)?;
    sell(&edge.sdk()).await?;
    edge.kill()?;
    let _hub = hub_at(port, &hub_dir)?;
    let edge = EdgeProcess::start(bin(), &edge_dir)?;
    let seen = until_mid_push(&hub_sdk).await?;
    edge.kill()?;
    assert!(
        seen > START - SALES as i64,
        "killed before the push ended ({seen})"
    );
    let edge = EdgeProcess::start(bin(), &edge_dir)?;
    until_drained(&edge.sdk(), &hub_sdk).await?;
    assert_exactly_once(&hub_sdk).await
}

/// The status of transfer `id` at `hub`.
async fn transfer_status(hub: &HubProcess, id: &str) -> Result<String> {
    let body: Value = hub.sdk().get(&format!("/api/transfers/{id}")).await?;
    Ok(body["transfer"]["status"].as_str().unwrap_or("").to_owned())
}

/// An approved transfer waiting for its offline destination survives a `kill -9` of the
/// hub (the job is a row), and completes once, exactly, when the store is back.
#[tokio::test]
async fn kill_9_of_the_hub_with_a_transfer_in_processing_completes_it_once() -> Result<()> {
    let hub_dir = tempfile::tempdir()?;
    let port = free_port()?;
    let hub = hub_at(port, hub_dir.path())?;
    let sdk = hub.sdk();
    sdk.update_stock(&[(4, 10)]).await?;
    sdk.call(
        "POST",
        "/api/admin/sites",
        Some(&serde_json::json!({"id": "north"})),
        &[],
    )
    .await?;
    let code: Value = sdk
        .post(
            "/api/admin/sites/north/activation-codes",
            &serde_json::json!({}),
        )
        .await?;
    let (status, activated) = Client::new(&hub.http)?
        .call(
            "POST",
            "/activate",
            Some(&serde_json::json!({"code": code["code"]})),
            &[],
        )
        .await?;
    anyhow::ensure!(status == 200, "{activated}");
    let node = Client::new(&hub.http)?.with_token(activated["apiKey"].as_str().context("key")?);
    let online = || async {
        let mut live = node.subscribe(SubscribeOptions::new(Start::Now).device("edge-north"));
        loop {
            match tokio::time::timeout(WAIT, live.next())
                .await?
                .context("ended")??
            {
                Update::Connected(_) => return anyhow::Ok(live),
                _ => continue,
            }
        }
    };
    let live = online().await?;
    let ask = serde_json::json!({"fromSiteId": "default", "toSiteId": "north",
                                 "productId": 4, "quantity": 3});
    let answer: Value = sdk.post("/api/transfers/request", &ask).await?;
    let id = answer["transfer"]["id"].as_str().context("id")?.to_owned();
    drop(live);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let approved: Value = sdk
        .post(
            &format!("/api/transfers/{id}/approve"),
            &serde_json::json!({}),
        )
        .await?;
    anyhow::ensure!(approved["transfer"]["status"] == "PROCESSING", "{approved}");

    hub.kill()?;
    let hub = hub_at(port, hub_dir.path())?;
    assert_eq!(transfer_status(&hub, &id).await?, "PROCESSING");
    let _live = online().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while transfer_status(&hub, &id).await? != "COMPLETED" {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "never completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ledger: Value = hub.sdk().backup("_stock").await?;
    let moved: Vec<&Value> = ledger["backup"]["movements"]
        .as_array()
        .context("movements")?
        .iter()
        .filter(|m| m["originOp"] == id.as_str())
        .collect();
    assert_eq!(moved.len(), 2, "one movement each way: {moved:?}");
    let at = |site: &str| {
        let sdk = hub.sdk();
        let path = format!("/api/inventory/4?siteId={site}");
        async move { anyhow::Ok(sdk.get::<Value>(&path).await?["inventory"]["quantity"].clone()) }
    };
    assert_eq!(
        (at("default").await?, at("north").await?),
        (7.into(), 3.into())
    );
    hub.stop()?;
    Ok(())
}

/// Orders waiting at the hub while a store numbers them: a `kill -9` of the edge between
/// numbering some and confirming them leaves, after a restart, every order numbered once,
/// 1..N with no gap, and the hub holding the store's numbers.
#[tokio::test]
async fn kill_9_of_the_edge_mid_numbering_leaves_no_gap_and_no_duplicate() -> Result<()> {
    const ORDERS: usize = 400;
    let dir = tempfile::tempdir()?;
    let (hub_dir, edge_dir) = (dir.path().join("hub"), dir.path().join("edge"));
    let port = free_port()?;
    let hub = setup(&hub_dir, &edge_dir, port).await?;
    let hub_sdk = hub.sdk();
    for n in 0..ORDERS {
        let order = serde_json::json!({"channel": "whatsapp", "externalId": format!("wa-{n}"),
                                       "lines": [{"name": "Margarita", "quantity": 1}]});
        let _: Value = hub_sdk.post("/api/orders", &order).await?;
    }
    let count = |edge: &Client| {
        let edge = edge.clone();
        async move {
            let listing: Value = edge.get("/api/orders?limit=1000").await?;
            anyhow::Ok(listing["count"].as_u64().unwrap_or(0) as usize)
        }
    };
    let edge = EdgeProcess::start(bin(), &edge_dir)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let n = count(&edge.sdk()).await?;
        if n > 0 || tokio::time::Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    edge.kill()?;
    eprintln!("killed with {seen} of {ORDERS} orders numbered at the edge");
    assert!(seen > 0, "the edge never started numbering");

    let edge = EdgeProcess::start(bin(), &edge_dir)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pending: Value = hub_sdk.get("/api/sync/orders/pending").await?;
        if pending["count"] == 0 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "still pending: {}",
            pending["count"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let local: Value = edge.sdk().get("/api/orders?limit=1000").await?;
    let at_hub: Value = hub_sdk.get("/api/orders?limit=1000").await?;
    let numbers = |listing: &Value| -> Vec<(String, i64)> {
        let mut v: Vec<(String, i64)> = listing["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|o| {
                        (
                            o["id"].as_str().unwrap_or("").to_owned(),
                            o["dailyNumber"].as_i64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let (local, at_hub) = (numbers(&local), numbers(&at_hub));
    assert_eq!(local, at_hub, "the hub holds the store's numbers");
    let mut only: Vec<i64> = local.iter().map(|(_, n)| *n).collect();
    only.sort_unstable();
    assert_eq!(
        only,
        (1..=ORDERS as i64).collect::<Vec<i64>>(),
        "1..N, no gap, no duplicate"
    );
    Ok(())
}
