//! Several hub instances on one database: every client, whichever instance it is on,
//! receives every event in id order, without gaps or duplicates.

use stocky_test_support as support;

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

/// Sends `count` pipelined `stock:add` of product 1 on `client` without waiting for their
/// acks; returns the client for the caller to read.
async fn send_adds(mut client: Client, count: u64) -> Result<Client> {
    for _ in 0..count {
        client
            .send(json!({"event":"stock:add","data":[{"productId":1,"quantity":1}]}))
            .await?;
    }
    Ok(client)
}

async fn instances(n: usize, tweak: impl Fn(&mut stocky_hub::HubConfig)) -> Result<Vec<TestHub>> {
    let first = TestHub::start_with(|c| {
        c.server.log_poll = Duration::from_millis(100);
        tweak(c);
    })
    .await?;
    let mut hubs = vec![];
    for _ in 1..n {
        hubs.push(
            TestHub::start_with(|c| {
                first.share_database(c);
                c.server.log_poll = Duration::from_millis(100);
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
    let per_instance: u64 = 20;
    let writers = hubs
        .iter()
        .map(|hub| async move { send_adds(hub.connect().await?, per_instance).await });
    let mut writers = join_all(writers)
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let total = per_instance * hubs.len() as u64;
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
        c.server.log_poll = Duration::from_secs(3600);
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
    let writers = hubs
        .iter()
        .map(|hub| async move { send_adds(hub.connect().await?, 20).await });
    let mut writers = join_all(writers)
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    for client in watchers.iter_mut().chain(writers.iter_mut()) {
        expect_sequence_from(client, 10, 70).await?;
    }
    Ok(())
}

const SECRET: &str = "instances-share-one-jwt-secret-0123456789";

/// A user of the shared database, logged in (on any instance: they share the JWT secret).
async fn cashier(hub: &TestHub, email: &str) -> Result<String> {
    let (status, body) = hub
        .post(
            "/api/admin/users",
            json!({"email": email, "password": "correct horse battery", "role": "cashier"}),
        )
        .await?;
    anyhow::ensure!(status == 201, "{status} {body}");
    Ok(hub.login(email, "correct horse battery").await?.0)
}

#[tokio::test]
async fn one_connection_per_user_and_device_holds_across_instances() -> Result<()> {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    for policy in [
        stocky_server::config::SessionPolicy::Replace,
        stocky_server::config::SessionPolicy::Reject,
    ] {
        let hubs = instances(2, |c| {
            c.redis_url = Some(stocky_server::config::Secret(url.clone()));
            c.server.jwt_secret = Some(stocky_server::config::Secret(SECRET.into()));
            c.server.session_policy = policy;
        })
        .await?;
        let token = cashier(&hubs[0], "till@shop.test").await?;
        let mut first = Client::connect(&hubs[0].ws_with(&token, "&deviceId=till-1")).await?;
        match policy {
            stocky_server::config::SessionPolicy::Replace => {
                let mut second =
                    Client::connect(&hubs[1].ws_with(&token, "&deviceId=till-1")).await?;
                let (ended, _) = first.until_end().await?;
                assert!(
                    matches!(&ended, support::Ended::Closed(Some((code, _))) if u16::from(*code) == 4002),
                    "the older connection, on the other instance, is replaced: {ended:?}"
                );
                second.send(json!({"type":"ping"})).await?;
                assert_eq!(second.recv().await?["type"], "pong");
            }
            stocky_server::config::SessionPolicy::Reject => {
                let (mut refused, _) =
                    tokio_tungstenite::connect_async(hubs[1].ws_with(&token, "&deviceId=till-1"))
                        .await?;
                use futures_util::StreamExt;
                let answer = refused.next().await.unwrap()?;
                assert!(answer.to_text()?.contains("already connected"), "{answer}");
                first.send(json!({"type":"ping"})).await?;
                assert_eq!(first.recv().await?["type"], "pong");
                // Once the first connection ends its slot is free on every instance.
                drop(first);
                let mut later = None;
                for _ in 0..50 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let (mut ws, _) = tokio_tungstenite::connect_async(
                        hubs[1].ws_with(&token, "&deviceId=till-1"),
                    )
                    .await?;
                    let answer = ws.next().await.unwrap()?;
                    if !answer.to_text()?.contains("already connected") {
                        later = Some(answer);
                        break;
                    }
                }
                assert!(later.is_some(), "the slot was never released");
            }
        }
    }
    Ok(())
}

/// Reads events until the connection ends, checking the order; returns the last id seen.
async fn read_until_closed(client: &mut Client, mut last: u64) -> u64 {
    while let Ok(message) = client.recv().await {
        if let Some(id) = message.get("id").and_then(|v| v.as_u64()) {
            assert_eq!(id, last + 1, "{message}");
            last = id;
        }
    }
    last
}

#[tokio::test]
async fn clients_of_a_stopped_instance_resume_on_another_without_loss() -> Result<()> {
    let mut hubs = instances(3, |c| {
        if let Some(url) = redis_url() {
            c.redis_url = Some(stocky_server::config::Secret(url));
        }
    })
    .await?;
    let mut survivor = hubs[0].connect().await?;
    let mut moving = hubs[2].connect().await?;
    let writers: Vec<_> = hubs[..2]
        .iter()
        .map(|hub| {
            let http = hub.client.clone();
            let url = format!("{}/api/stock/add", hub.http);
            tokio::spawn(async move {
                for _ in 0..40 {
                    let response = http
                        .post(&url)
                        .json(&json!({"additions":[{"productId":1,"quantity":1}]}))
                        .send()
                        .await?;
                    anyhow::ensure!(response.status() == 200);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    hubs[2].stop().await?;
    let last = read_until_closed(&mut moving, 0).await;
    // It resumes on instance 0 from the last event it saw.
    let resume = format!("{}&lastEventId={last}", hubs[0].ws);
    let mut moved = Client::connect(&resume).await?;
    for writer in writers {
        writer.await??;
    }
    expect_sequence_from(&mut moved, last, 80).await?;
    expect_sequence(&mut survivor, 80).await?;
    assert_eq!(hubs[0].stock(1).await?, 80);
    Ok(())
}

/// A Redis server of the test's own, on a free port, that the test can stop and restart.
struct OwnRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn start(&mut self) -> Result<()> {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()?;
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::bail!("redis-server did not start on port {}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn redis_down_at_start_and_mid_run_leaves_no_client_with_a_gap() -> Result<()> {
    if redis_url().is_none() {
        return Ok(());
    }
    let mut redis = OwnRedis {
        port: OwnRedis::free_port(),
        child: None,
    };
    // No log poll to speak of: recovery must come from the bus and the back-fill.
    let url = redis.url();
    let hubs = instances(3, |c| {
        c.redis_url = Some(stocky_server::config::Secret(url.clone()));
        c.server.log_poll = Duration::from_secs(3600);
    })
    .await?;
    let mut watchers = Vec::new();
    for hub in &hubs {
        watchers.push(hub.connect().await?);
    }
    let mut writers = Vec::new();
    for hub in &hubs {
        writers.push(hub.connect().await?);
    }
    let mut total = 0u64;
    // Phase 1: Redis was never up. Phase 2: up. Phase 3: down again. Phase 4: back.
    for phase in 1..=4 {
        match phase {
            2 | 4 => redis.start().await?,
            3 => redis.stop(),
            _ => {}
        }
        for writer in &mut writers {
            for _ in 0..5 {
                writer
                    .command("stock:add", json!([{"productId":1,"quantity":1}]))
                    .await?;
                total += 1;
            }
        }
    }
    for watcher in &mut watchers {
        expect_sequence(watcher, total).await?;
    }
    for hub in &hubs {
        assert_eq!(hub.stock(1).await?, total as i64);
    }
    Ok(())
}

/// The consolidated inventory is cached per instance, labelled with the head it reflects:
/// writes on another instance invalidate it as soon as their events arrive.
#[tokio::test]
async fn the_consolidated_inventory_is_right_on_every_instance() -> Result<()> {
    let hubs = instances(2, |_| {}).await?;
    hubs[0]
        .post("/api/admin/sites", json!({"id": "s2"}))
        .await?;
    for hub in &hubs {
        let (status, _) = hub.get("/api/inventory/consolidated").await?;
        assert_eq!(status, 200);
    }
    let writes = (0..30).map(|i| {
        let hub = &hubs[i % 2];
        let product = 1 + (i % 4) as i64;
        if i % 5 == 4 {
            // Sales too: their movements count like any other.
            let sale = json!({"siteId": if i % 3 == 0 { "s2" } else { "default" },
                "lines": [{"productId": product, "quantity": 2, "unitPrice": 1}]});
            return hub.post("/api/sales", sale);
        }
        let path = if i % 3 == 0 {
            "/api/stock/add?siteId=s2"
        } else {
            "/api/stock/add"
        };
        hub.post(
            path,
            json!({"additions": [{"productId": product, "quantity": 1 + i as i64}]}),
        )
    });
    for (status, body) in join_all(writes)
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?
    {
        anyhow::ensure!(status == 200 || status == 201, "{body}");
    }
    // The truth: the sum of every site's ledger.
    let mut expected = std::collections::BTreeMap::<i64, i64>::new();
    let (_, ledger) = hubs[0].get("/api/backup/_stock").await?;
    for movement in ledger["backup"]["movements"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        *expected
            .entry(movement["productId"].as_i64().unwrap())
            .or_default() += movement["delta"].as_i64().unwrap();
    }
    anyhow::ensure!(expected.len() == 4, "{ledger}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for hub in &hubs {
        loop {
            let (_, view) = hub.get("/api/inventory/consolidated").await?;
            let totals: std::collections::BTreeMap<i64, i64> = view["data"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|r| {
                    (
                        r["productId"].as_i64().unwrap(),
                        r["total"].as_i64().unwrap(),
                    )
                })
                .collect();
            if totals == expected {
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{} stays at {totals:?}, not {expected:?}",
                hub.http
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// The bus over TLS (`rediss://`), verifying the server's certificate against a private
/// CA (`redis_ca_file`): a redis-server of the test's own with the CI's test certificate
/// (`.ci/tls.sh`, `STOCKY_TEST_TLS_DIR`), and two instances that hear each other.
#[tokio::test]
async fn the_redis_bus_runs_over_tls() -> Result<()> {
    if redis_url().is_none() {
        return Ok(());
    }
    let dir = std::env::var("STOCKY_TEST_TLS_DIR").expect(
        "STOCKY_TEST_TLS_DIR must name the test CA's directory: run .ci/tls.sh (as .ci/run does)",
    );
    let port = stocky_test_support::process::free_port()?;
    let mut server = std::process::Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args(["--tls-cert-file", &format!("{dir}/server.pem")])
        .args(["--tls-key-file", &format!("{dir}/server.key")])
        .args(["--tls-ca-cert-file", &format!("{dir}/ca.pem")])
        .args([
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let url = format!("rediss://127.0.0.1:{port}");
    let result = async {
        // Wait for the server to take connections.
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let hubs = instances(2, |c| {
            c.redis_url = Some(stocky_server::config::Secret(url.clone()));
            c.redis_ca_file = Some(format!("{dir}/ca.pem").into());
            c.server.log_poll = Duration::from_secs(3600);
        })
        .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut watcher = hubs[1].connect().await?;
        let mut writer = hubs[0].connect().await?;
        for _ in 0..5 {
            writer
                .command("stock:add", json!([{"productId":1,"quantity":1}]))
                .await?;
        }
        // Only the bus can bring instance 0's events to instance 1 (the log poll is an hour).
        expect_sequence(&mut watcher, 5).await?;
        let (status, ready) = hubs[1].get("/readyz").await?;
        anyhow::ensure!(
            status == 200 && ready["checks"]["redis"]["ready"] == true,
            "{ready}"
        );

        // Without the CA, the same server is not trusted: the bus stays down (readyz says so).
        let untrusted = TestHub::start_with(|c| {
            c.redis_url = Some(stocky_server::config::Secret(url.clone()));
        })
        .await?;
        let mut refused = false;
        for _ in 0..50 {
            let (_, ready) = untrusted.get("/readyz").await?;
            if ready["checks"]["redis"]["ready"] == false {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::ensure!(refused, "a certificate from an unknown CA is refused");
        anyhow::Ok(())
    }
    .await;
    let _ = server.kill();
    let _ = server.wait();
    result
}

/// Two instances on PostgreSQL, each with three writer threads (`--writers 3`), take
/// commands for four tenants at once from a client per tenant on each instance: every
/// client, on either instance, sees exactly its own tenant's events, ids 1..=N in order,
/// and each tenant's stock counts every command. (SQLite has one writer per database
/// file and refuses more: there is nothing to run without PostgreSQL.)
#[tokio::test]
async fn several_writers_per_instance_keep_every_tenant_whole_and_in_order() -> Result<()> {
    if stocky_store::testing::postgres_url().is_none() {
        return Ok(());
    }
    const TENANTS: [&str; 4] = ["w1", "w2", "w3", "w4"];
    const EACH: u64 = 15;
    let hubs = instances(2, |c| {
        c.server.store.writers = 3;
        c.server.jwt_secret = Some(stocky_server::config::Secret(SECRET.into()));
    })
    .await?;
    let mut owners = Vec::new();
    for tenant in TENANTS {
        let email = format!("owner@{tenant}.test");
        let owner = json!({"email": email, "password": "correct horse battery"});
        let (status, body) = hubs[0]
            .post("/api/admin/tenants", json!({"id": tenant, "owner": owner}))
            .await?;
        anyhow::ensure!(status == 201, "{status} {body}");
        owners.push(hubs[0].login(&email, "correct horse battery").await?.0);
    }
    let mut watchers = Vec::new();
    for (n, token) in owners.iter().enumerate() {
        for (h, hub) in hubs.iter().enumerate() {
            let device = format!("&deviceId=watcher-{h}");
            let watcher = Client::connect(&hub.ws_with(token, &device)).await?;
            assert_eq!(watcher.auth["tenantId"], TENANTS[n]);
            watchers.push(watcher);
        }
    }
    let writers = owners.iter().flat_map(|token| {
        hubs.iter().enumerate().map(move |(h, hub)| async move {
            let device = format!("&deviceId=writer-{h}");
            send_adds(Client::connect(&hub.ws_with(token, &device)).await?, EACH).await
        })
    });
    let mut writers = join_all(writers)
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let total = EACH * hubs.len() as u64;
    for client in watchers.iter_mut().chain(writers.iter_mut()) {
        expect_sequence(client, total).await?;
    }
    for token in &owners {
        for hub in &hubs {
            let (status, body) = hub.as_(Some(token), "GET", "/api/stock/1", None).await?;
            anyhow::ensure!(status == 200, "{status} {body}");
            assert_eq!(body["stock"], total, "{body}");
        }
    }
    Ok(())
}

/// Sets a configuration parameter of the test's own Redis.
async fn redis_config(url: &str, name: &str, value: &str) -> Result<()> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async::<()>(&mut con)
        .await?;
    Ok(())
}

/// Redis refuses the relay's writes for a while (out of memory) while the other
/// instance's listener stays connected and reads on: nothing tells the listener to look in
/// the log (its poll is an hour away), so the events arrive only because the relay keeps
/// the batch Redis refused and sends it again once Redis takes writes.
#[tokio::test]
async fn a_batch_redis_refused_is_relayed_once_redis_takes_writes_again() -> Result<()> {
    if redis_url().is_none() {
        return Ok(());
    }
    let mut redis = OwnRedis {
        port: OwnRedis::free_port(),
        child: None,
    };
    redis.start().await?;
    let url = redis.url();
    let hubs = instances(2, |c| {
        c.redis_url = Some(stocky_server::config::Secret(url.clone()));
        c.server.log_poll = Duration::from_secs(3600);
    })
    .await?;
    // Let both listeners reach their first XREAD before anything is appended.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut watcher = hubs[1].connect().await?;
    let mut writer = hubs[0].connect().await?;
    let add = json!([{"productId":1,"quantity":1}]);
    writer.command("stock:add", add.clone()).await?;
    expect_sequence(&mut watcher, 1).await?;
    // Writes refused (noeviction is the default policy); reads still answered.
    redis_config(&url, "maxmemory", "1").await?;
    for _ in 0..5 {
        writer.command("stock:add", add.clone()).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis_config(&url, "maxmemory", "0").await?;
    expect_sequence_from(&mut watcher, 1, 6).await?;
    Ok(())
}
