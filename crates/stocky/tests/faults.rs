//! The fault suite: real `stocky` processes with TCP fault proxies
//! ([`stocky_test_support::fault_proxy`]) on the links between them, broken on purpose
//! while clients write, then the invariants checked:
//!
//! - the ledger sums to the stock, for every product;
//! - every acknowledged command is present exactly once (by its `opId`, or its movement
//!   id), and nothing that was not sent is;
//! - every client's stream is gap-free: each subscriber saw ids strictly increasing, each
//!   `prev` the id before, and in the end every event of the stream.
//!
//! Runs on SQLite (two hub processes on one database file) and, with
//! `STOCKY_TEST_DATABASE_URL`, on PostgreSQL (the hubs reach it through proxies); with
//! `STOCKY_TEST_REDIS_URL` the hubs share Redis through proxies too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use stocky_client::{Client, Start, SubscribeOptions, Update};
use stocky_core::stock::{StockCommand, StockLine, StockOp};
use stocky_store::testing::{postgres_url, PostgresDatabase};
use stocky_test_support::fault_proxy::{Fault, FaultProxy};
use stocky_test_support::process::{free_port, EdgeProcess, HubProcess};
use stocky_test_support::WAIT;
use tokio::sync::watch;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stocky"))
}

/// `host:port` of a URL such as `postgres://user@host:port/db` or `redis://host:port`.
fn host_port(url: &str) -> Result<String> {
    let rest = url.split_once("://").context("no scheme")?.1;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority.rsplit('@').next().unwrap_or(authority);
    Ok(if host.contains(':') {
        host.to_owned()
    } else if url.starts_with("redis") {
        format!("{host}:6379")
    } else {
        format!("{host}:5432")
    })
}

/// One hub instance's links: its own proxies to the shared database and Redis.
struct Links {
    database: Option<FaultProxy>,
    redis: Option<FaultProxy>,
}

/// Two hub instances on one database (and one Redis when configured), each behind its own
/// fault proxies, on fixed ports so that one can be killed and started again.
struct Cluster {
    dir: tempfile::TempDir,
    postgres: Option<PostgresDatabase>,
    redis_url: Option<String>,
    ports: [u16; 2],
    links: [Links; 2],
    hubs: [Option<HubProcess>; 2],
}

impl Cluster {
    async fn start() -> Result<Cluster> {
        let postgres = postgres_url().map(|url| PostgresDatabase::create(&url));
        let redis_url = std::env::var("STOCKY_TEST_REDIS_URL").ok();
        let mut links = Vec::new();
        for _ in 0..2 {
            let database = match &postgres {
                Some(db) => Some(FaultProxy::start(&host_port(db.url())?).await?),
                None => None,
            };
            let redis = match &redis_url {
                Some(url) => Some(FaultProxy::start(&host_port(url)?).await?),
                None => None,
            };
            links.push(Links { database, redis });
        }
        let links: [Links; 2] = links.try_into().ok().context("two")?;
        let mut cluster = Cluster {
            dir: tempfile::tempdir()?,
            postgres,
            redis_url,
            ports: [free_port()?, free_port()?],
            links,
            hubs: [None, None],
        };
        for i in 0..2 {
            cluster.start_instance(i)?;
        }
        Ok(cluster)
    }

    fn args(&self, i: usize) -> Result<Vec<OsString>> {
        let mut args: Vec<OsString> = vec!["--data-dir".into(), self.dir.path().into()];
        if let (Some(db), Some(proxy)) = (&self.postgres, &self.links[i].database) {
            args.push("--database-url".into());
            args.push(proxy.url_for(db.url(), &host_port(db.url())?).into());
        }
        if let (Some(url), Some(proxy)) = (&self.redis_url, &self.links[i].redis) {
            args.push("--redis-url".into());
            args.push(proxy.url_for(url, &host_port(url)?).into());
        }
        Ok(args)
    }

    fn start_instance(&mut self, i: usize) -> Result<()> {
        let args = self.args(i)?;
        let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        self.hubs[i] = Some(HubProcess::start_at(bin(), self.ports[i], &args)?);
        Ok(())
    }

    fn kill(&mut self, i: usize) -> Result<()> {
        self.hubs[i].take().context("running")?.kill()
    }

    fn sdk(&self, i: usize) -> Client {
        Client::new(&format!("http://127.0.0.1:{}", self.ports[i]))
            .expect("valid")
            .with_token(stocky_test_support::ADMIN)
    }

    fn set_database(&self, i: usize, fault: Fault) {
        if let Some(proxy) = &self.links[i].database {
            proxy.set(fault);
        }
    }

    fn set_redis(&self, i: usize, fault: Fault) {
        if let Some(proxy) = &self.links[i].redis {
            proxy.set(fault);
        }
    }

    fn cut_redis(&self, i: usize) {
        if let Some(proxy) = &self.links[i].redis {
            proxy.cut();
        }
    }
}

const PRODUCTS: i64 = 3;
const COMMANDS_PER_WRITER: usize = 200;

/// What one writer sent and had acknowledged.
#[derive(Default)]
struct Written {
    sent: Vec<(String, i64)>,
    acked: HashSet<String>,
    /// How often the link broke under this writer, and commands it sent again.
    disconnects: usize,
    retried: usize,
}

/// Sends `COMMANDS_PER_WRITER` `stock:add` of 1 (round-robin over the products), paced,
/// each with its own `opId`; a command refused as `unavailable` (the database was away) is
/// sent again with the same `opId` until it is acknowledged. Waits for every answer.
async fn writer(sdk: Client, name: String) -> Result<Written> {
    let mut live = sdk.subscribe(SubscribeOptions::new(Start::Now).device(name.clone()));
    let mut written = Written::default();
    let command = |product: i64| StockCommand {
        op: StockOp::Add,
        lines: vec![StockLine {
            product_id: product,
            amount: 1,
        }],
    };
    let mut products = HashMap::new();
    let mut next = 0usize;
    let mut pacing = tokio::time::interval(Duration::from_millis(35));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while written.acked.len() < COMMANDS_PER_WRITER {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{name}: {} of {COMMANDS_PER_WRITER} acknowledged",
            written.acked.len()
        );
        tokio::select! {
            _ = pacing.tick(), if next < COMMANDS_PER_WRITER => {
                let product = (next as i64 % PRODUCTS) + 1;
                let op_id = format!("{name}-{next}");
                products.insert(op_id.clone(), product);
                written.sent.push((op_id.clone(), product));
                live.send(&command(product), Some(op_id)).await?;
                next += 1;
            }
            update = tokio::time::timeout(Duration::from_secs(30), live.next()) => {
                match update.context("no update for 30 s")?.context("ended")?? {
                    Update::Applied(ack) => {
                        written.acked.insert(ack.op_id.context("acks echo the opId")?);
                    }
                    Update::Disconnected { .. } => written.disconnects += 1,
                    Update::Rejected(e) if e.code == "unavailable" => {
                        written.retried += 1;
                        let op_id = e.op_id.context("refusals echo the opId")?;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        live.send(&command(products[&op_id]), Some(op_id)).await?;
                    }
                    Update::Rejected(e) => bail!("{name}: refused {e:?}"),
                    _ => {}
                }
            }
        }
    }
    live.close().await;
    eprintln!(
        "{name}: {} acked, {} disconnects, {} sent again",
        written.acked.len(),
        written.disconnects,
        written.retried
    );
    Ok(written)
}

/// A subscriber from the start of the stream: the ids it was handed, checked as they come
/// (strictly increasing, each `prev` the one before), until it has reached the head that
/// `until` names once the writers are done.
async fn subscriber(
    sdk: Client,
    name: String,
    mut until: watch::Receiver<Option<u64>>,
) -> Result<Vec<u64>> {
    let options = SubscribeOptions::new(Start::After {
        last_event_id: 0,
        epoch: None,
    })
    .device(name.clone());
    let mut live = sdk.subscribe(options);
    let mut ids = Vec::new();
    let mut last = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        if until.borrow_and_update().is_some_and(|head| last >= head) {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{name}: stuck at {last}"
        );
        let update = tokio::select! {
            update = live.next() => update,
            _ = until.changed() => continue,
        };
        match update.context("ended")?? {
            Update::Event(frame) => {
                ensure!(
                    frame.prev == last && frame.id > last,
                    "{name}: id {} prev {} after {last}",
                    frame.id,
                    frame.prev
                );
                last = frame.id;
                ids.push(frame.id);
            }
            Update::Synced { last_event_id, .. } => {
                ensure!(
                    last_event_id >= last,
                    "{name}: synced back to {last_event_id}"
                );
                last = last_event_id;
            }
            Update::FullRefresh(f) => bail!("{name}: unexpected full_refresh {f:?}"),
            _ => {}
        }
    }
    live.close().await;
    Ok(ids)
}

/// Every event of the stream, by a fresh replay from 0: `(id, opId)`.
/// The stream head once both instances have delivered it (and it holds still).
async fn settled_head(cluster: &Cluster) -> Result<u64> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    loop {
        let mut heads = Vec::new();
        for instance in 0..2 {
            let status: Value = cluster.sdk(instance).get("/api/stock/status").await?;
            heads.push(status["lastEventId"].as_u64().context("lastEventId")?);
        }
        if heads[0] == heads[1] && last == Some(heads[0]) {
            return Ok(heads[0]);
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the instances' heads did not settle: {heads:?}"
        );
        last = (heads[0] == heads[1]).then_some(heads[0]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn whole_stream(sdk: &Client) -> Result<Vec<(u64, Option<String>)>> {
    let head: Value = sdk.get("/api/stock/status").await?;
    let head = head["lastEventId"].as_u64().context("lastEventId")?;
    let options = SubscribeOptions::new(Start::After {
        last_event_id: 0,
        epoch: None,
    })
    .device("auditor");
    let mut replay = sdk.subscribe(options);
    let mut events = Vec::new();
    while events.last().map(|(id, _)| *id) != Some(head) {
        match tokio::time::timeout(WAIT, replay.next())
            .await?
            .context("ended")??
        {
            Update::Event(frame) => events.push((frame.id, frame.op_id)),
            Update::FullRefresh(f) => bail!("the log no longer has every event: {f:?}"),
            _ => {}
        }
    }
    replay.close().await;
    Ok(events)
}

/// The ledger sums to the stock for every product; returns the stock per product.
async fn ledger_matches_stock(sdk: &Client) -> Result<BTreeMap<i64, i64>> {
    let ledger: Value = sdk.backup("_stock").await?;
    let mut sums = BTreeMap::new();
    for m in ledger["backup"]["movements"]
        .as_array()
        .context("movements")?
    {
        let product = m["productId"].as_i64().context("productId")?;
        *sums.entry(product).or_insert(0) += m["delta"].as_i64().context("delta")?;
    }
    for (product, sum) in &sums {
        let stock = sdk.stock_of(*product).await?.map(|r| r.stock);
        ensure!(
            stock == Some(*sum),
            "product {product}: stock {stock:?}, ledger {sum}"
        );
    }
    Ok(sums)
}

/// Writers and subscribers on both instances while the database links slow down, hang
/// and come back, the Redis links are cut and partitioned, and instance 0 is killed with
/// SIGKILL while instance 1 keeps serving (then started again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_keep_every_acked_command_once_through_link_faults_and_a_kill_9() -> Result<()>
{
    let mut cluster = Cluster::start().await?;
    let (head_reached, until) = watch::channel(None);
    let mut writers = Vec::new();
    let mut subscribers = Vec::new();
    for i in 0..2 {
        for w in 0..2 {
            writers.push(tokio::spawn(writer(cluster.sdk(i), format!("w{i}{w}"))));
        }
        subscribers.push(tokio::spawn(subscriber(
            cluster.sdk(i),
            format!("s{i}"),
            until.clone(),
        )));
    }

    let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
    pause(300).await;
    cluster.set_database(0, Fault::Delay(Duration::from_millis(40)));
    cluster.set_redis(1, Fault::Delay(Duration::from_millis(40)));
    pause(700).await;
    cluster.set_database(0, Fault::Pass);
    cluster.cut_redis(0);
    pause(300).await;
    cluster.set_database(1, Fault::Drop);
    pause(800).await;
    cluster.set_database(1, Fault::Partition);
    pause(600).await;
    cluster.set_database(1, Fault::Pass);
    cluster.set_redis(1, Fault::Partition);
    pause(800).await;
    cluster.set_redis(1, Fault::Pass);
    pause(300).await;
    cluster.kill(0)?;
    pause(1500).await;
    cluster.start_instance(0)?;

    let mut written = Vec::new();
    for w in writers {
        written.push(w.await??);
    }
    ensure!(
        written[..2].iter().all(|w| w.disconnects > 0),
        "the kill happened while instance 0's writers were writing"
    );
    // The subscribers stop once they have caught up with the head: the last event both
    // instances have delivered (instance 1 follows instance 0's last commits a moment later).
    let head = settled_head(&cluster).await?;
    head_reached.send_replace(Some(head));
    let mut seen = Vec::new();
    for s in subscribers {
        seen.push(s.await??);
    }

    // Every acknowledged command exactly once; nothing else.
    let stream = whole_stream(&cluster.sdk(1)).await?;
    let ids: Vec<u64> = stream.iter().map(|(id, _)| *id).collect();
    ensure!(
        ids == (1..=head).collect::<Vec<u64>>(),
        "the stream is 1..={head} without gaps"
    );
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (_, op_id) in &stream {
        *counts
            .entry(op_id.as_deref().context("every command had an opId")?)
            .or_default() += 1;
    }
    let mut expected = BTreeMap::new();
    for w in &written {
        ensure!(w.acked.len() == COMMANDS_PER_WRITER);
        for (op_id, product) in &w.sent {
            ensure!(
                counts.get(op_id.as_str()) == Some(&1),
                "{op_id} committed once"
            );
            *expected.entry(*product).or_insert(0i64) += 1;
        }
    }
    ensure!(
        counts.len() == 4 * COMMANDS_PER_WRITER,
        "nothing else was committed"
    );

    // The ledger sums to the stock, on both instances, and the stock counts every command.
    for i in 0..2 {
        ensure!(
            ledger_matches_stock(&cluster.sdk(i)).await? == expected,
            "instance {i}"
        );
    }

    // Every subscriber saw the stream gap-free (checked as it came) and all of it.
    for (i, ids) in seen.iter().enumerate() {
        ensure!(
            ids.first() == Some(&1) && ids.last() == Some(&head),
            "subscriber {i} saw {:?}..{:?} of 1..={head}",
            ids.first(),
            ids.last()
        );
        ensure!(
            ids.len() as u64 == head,
            "subscriber {i}: {} of {head}",
            ids.len()
        );
    }
    Ok(())
}

/// A store sells through a link to the hub that is slowed, cut, held and partitioned: the
/// outbox drains once the link is back, and the hub has every sale exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_outbox_drains_exactly_once_through_a_broken_link() -> Result<()> {
    const SALES: usize = 600;
    const START: i64 = 10_000;
    let dir = tempfile::tempdir()?;
    let postgres = postgres_url().map(|url| PostgresDatabase::create(&url));
    let mut hub_args: Vec<OsString> = vec!["--data-dir".into(), dir.path().join("hub").into()];
    if let Some(db) = &postgres {
        hub_args.extend(["--database-url".into(), db.url().into()]);
    }
    let hub_args: Vec<&OsStr> = hub_args.iter().map(OsString::as_os_str).collect();
    let hub = HubProcess::start(bin(), &hub_args)?;
    let hub_sdk = hub.sdk();
    hub_sdk.update_stock(&[(1, START)]).await?;
    let code = hub_sdk.create_activation_code("default").await?;
    let edge_dir = dir.path().join("edge");
    stocky_edge::activate(&hub.http, &code, None, &edge_dir, |_, _, _| {}).await?;

    let link = FaultProxy::start(hub.http.trim_start_matches("http://")).await?;
    let via = format!("http://{}", link.addr());
    let edge = EdgeProcess::start_with(bin(), &edge_dir, &[OsStr::new("--hub"), OsStr::new(&via)])?;
    let edge_sdk = edge.sdk();

    let register = tokio::spawn({
        let edge_sdk = edge_sdk.clone();
        async move {
            let mut live = edge_sdk.subscribe(SubscribeOptions::new(Start::Now).device("till"));
            let sale = StockCommand {
                op: StockOp::Subtract,
                lines: vec![StockLine {
                    product_id: 1,
                    amount: 1,
                }],
            };
            let mut last = None::<u64>;
            for n in 0..SALES {
                live.send(&sale, Some(format!("sale-{n}"))).await?;
                loop {
                    match tokio::time::timeout(WAIT, live.next())
                        .await?
                        .context("ended")??
                    {
                        Update::Applied(ack) => {
                            if let Some(last) = last {
                                ensure!(ack.prev == last, "the register's stream has a gap");
                            }
                            last = Some(ack.id);
                            break;
                        }
                        Update::Event(frame) => last = Some(frame.id),
                        Update::Rejected(e) => bail!("refused {e:?}"),
                        _ => {}
                    }
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            anyhow::Ok(())
        }
    });
    let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
    for fault in [
        Fault::Delay(Duration::from_millis(60)),
        Fault::Drop,
        Fault::Pass,
        Fault::Partition,
        Fault::Pass,
    ] {
        pause(400).await;
        link.set(fault);
        if fault == Fault::Pass {
            pause(200).await;
            link.cut();
        }
    }
    register.await??;
    link.set(Fault::Pass);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let status: Value = edge_sdk.get("/api/sync/status").await?;
        let stock = hub_sdk.stock_of(1).await?.map(|r| r.stock);
        if status["pending"] == 0 && stock == Some(START - SALES as i64) {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "not drained: {status} hub stock {stock:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ledger: Value = hub_sdk.backup("_stock").await?;
    let movements = ledger["backup"]["movements"]
        .as_array()
        .context("movements")?;
    let ids: HashSet<&str> = movements.iter().filter_map(|m| m["id"].as_str()).collect();
    ensure!(ids.len() == movements.len(), "movement ids are unique");
    ensure!(movements.len() == 1 + SALES, "the set and every sale, once");
    let sums = ledger_matches_stock(&hub_sdk).await?;
    ensure!(sums.get(&1) == Some(&(START - SALES as i64)));
    drop(edge);
    hub.stop()
}

/// `GET /readyz` reports Redis (when configured) without failing on it: the hub serves
/// its clients while Redis is partitioned away, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_a_redis_partition_without_failing_on_it() -> Result<()> {
    let Ok(redis_url) = std::env::var("STOCKY_TEST_REDIS_URL") else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let link = FaultProxy::start(&host_port(&redis_url)?).await?;
    let via = link.url_for(&redis_url, &host_port(&redis_url)?);
    let hub = HubProcess::start(
        bin(),
        &[
            OsStr::new("--data-dir"),
            dir.path().as_os_str(),
            OsStr::new("--redis-url"),
            OsStr::new(&via),
        ],
    )?;
    let ready = || async {
        let response = reqwest::get(format!("{}/readyz", hub.http)).await?;
        let status = response.status().as_u16();
        anyhow::Ok((status, response.json::<Value>().await?))
    };
    let until = |want: bool| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = ready().await?;
            ensure!(status == 200, "Redis never makes the hub not ready: {body}");
            if body["checks"]["redis"]["ready"] == want {
                ensure!(body["checks"]["redis"]["required"] == false, "{body}");
                return anyhow::Ok(body);
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "redis ready={want}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    until(true).await?;
    link.set(Fault::Partition);
    let body = until(false).await?;
    ensure!(body["status"] == "ready", "{body}");
    link.set(Fault::Pass);
    until(true).await?;
    hub.stop()
}
