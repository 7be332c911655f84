//! `stocky-bench`: load generators behind BENCHMARKS.md.
//!
//! Each scenario starts a fresh `stocky hub` process (a temp data dir, port 0), drives it
//! over real sockets from this process, and prints its figures together with the CPU
//! seconds each side used. Runs repeat `--runs` times; the median is what BENCHMARKS.md
//! quotes. Build the hub first: `cargo build --release`.

mod hub;
mod wire;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hub::{own_cpu_secs, HubProcess};
use tokio::task::JoinSet;
use wire::{Kind, WsClient};

#[derive(Parser)]
#[command(about = "Load generators for the Stocky hub")]
struct Cli {
    /// The stocky binary to benchmark.
    #[arg(long, default_value = "target/release/stocky")]
    hub: String,
    /// Repetitions per scenario (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Clone, Copy)]
enum Scenario {
    /// Deliveries per second: `events` commands fanned out to `subscribers` connections.
    Fanout {
        #[arg(long, default_value_t = 10_000)]
        subscribers: usize,
        #[arg(long, default_value_t = 200)]
        events: usize,
    },
    /// Latency from a command's send to its arrival at each of `subscribers` clients.
    Latency {
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        #[arg(long, default_value_t = 300)]
        commands: usize,
        #[arg(long, default_value_t = 10)]
        interval_ms: u64,
        /// Subscribers on a second hub instance sharing the database (and, with
        /// `REDIS_URL` set, the Redis bus): measures cross-instance delivery.
        #[arg(long)]
        cross_instance: bool,
    },
    /// Committed commands per second from `clients` pipelining `window` commands each.
    Commands {
        #[arg(long, default_value_t = 8)]
        clients: usize,
        #[arg(long, default_value_t = 32)]
        window: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Tenants the clients are spread over (round robin); more than 1 creates them and
        /// signs each client in as its tenant's owner.
        #[arg(long, default_value_t = 1)]
        tenants: usize,
    },
    /// An edge takes `operations` commands with its hub away (the latency of the first
    /// `latency_commands`, one at a time, is measured), then drains them to a SQLite hub.
    EdgeDrain {
        #[arg(long, default_value_t = 100_000)]
        operations: usize,
        #[arg(long, default_value_t = 1000)]
        latency_commands: usize,
        /// Operations per push request (the edge's default is 50).
        #[arg(long, default_value_t = 50)]
        batch: usize,
    },
    /// Latency of `GET /api/inventory/consolidated` over `products` × `sites` stock levels:
    /// cold (the read after a movement) and cached, `reads` of each.
    Inventory {
        #[arg(long, default_value_t = 10_000)]
        products: usize,
        #[arg(long, default_value_t = 20)]
        sites: usize,
        #[arg(long, default_value_t = 20)]
        reads: usize,
    },
    /// Recorded sales per second: `clients` HTTP clients each posting 3-line sales with a
    /// payment (`POST /api/sales`: the sale, its movements and its events in one commit).
    Sales {
        #[arg(long, default_value_t = 16)]
        clients: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Time to replay `events` missed events to a reconnecting client.
    Replay {
        #[arg(long, default_value_t = 10_000)]
        events: usize,
    },
    /// Hub resident memory per idle connection.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    if !std::path::Path::new(&cli.hub).exists() {
        bail!("{} not found: run `cargo build --release` first", cli.hub);
    }
    let mut figures = Vec::new();
    for run in 1..=cli.runs.max(1) {
        let figure = match cli.scenario {
            Scenario::Fanout {
                subscribers,
                events,
            } => fanout(&cli.hub, subscribers, events).await?,
            Scenario::Latency {
                subscribers,
                commands,
                interval_ms,
                cross_instance,
            } => {
                latency(
                    &cli.hub,
                    subscribers,
                    commands,
                    Duration::from_millis(interval_ms),
                    cross_instance,
                )
                .await?
            }
            Scenario::Commands {
                clients,
                window,
                seconds,
                tenants,
            } => {
                let load = Load {
                    clients,
                    window,
                    duration: Duration::from_secs(seconds),
                };
                commands(&cli.hub, load, tenants).await?
            }
            Scenario::Replay { events } => replay(&cli.hub, events).await?,
            Scenario::EdgeDrain {
                operations,
                latency_commands,
                batch,
            } => edge_drain(&cli.hub, operations, latency_commands, batch).await?,
            Scenario::Idle { connections } => idle(&cli.hub, connections).await?,
            Scenario::Inventory {
                products,
                sites,
                reads,
            } => inventory(&cli.hub, products, sites, reads).await?,
            Scenario::Sales { clients, seconds } => {
                sales(&cli.hub, clients, Duration::from_secs(seconds)).await?
            }
        };
        println!("run {run}: {}", figure.line);
        figures.push(figure);
    }
    figures.sort_by(|a, b| a.value.total_cmp(&b.value));
    println!("median: {}", figures[figures.len() / 2].line);
    Ok(())
}

/// The WebSocket path with the bench hub's admin token (see [`hub::ADMIN_TOKEN`]).
const WS: &str = "/ws?token=stocky-bench";

/// One run's headline value (for the median) and its printed line.
struct Figure {
    value: f64,
    line: String,
}

/// CPU seconds used by the hub and by this process between two points.
struct Cpu {
    hub0: f64,
    own0: f64,
}

impl Cpu {
    fn start(hub: &HubProcess) -> Result<Self> {
        Ok(Cpu {
            hub0: hub.cpu_secs()?,
            own0: own_cpu_secs()?,
        })
    }

    fn used(&self, hub: &HubProcess) -> Result<(f64, f64)> {
        Ok((hub.cpu_secs()? - self.hub0, own_cpu_secs()? - self.own0))
    }
}

/// Opens `n` connections (at most 256 handshakes at a time), each past its `welcome`.
async fn open_many(addr: &str, n: usize) -> Result<Vec<WsClient>> {
    let mut clients = Vec::with_capacity(n);
    let mut pending = JoinSet::new();
    let mut started = 0;
    while clients.len() < n {
        while started < n && pending.len() < 256 {
            let addr = addr.to_owned();
            pending.spawn(async move {
                let mut client = WsClient::connect(&addr, WS).await?;
                match (client.next().await?, client.next().await?) {
                    (Some(Kind::Welcome), Some(Kind::AuthSuccess)) => anyhow::Ok(client),
                    other => bail!("expected welcome and auth_success, got {other:?}"),
                }
            });
            started += 1;
        }
        let joined = pending.join_next().await.context("connections pending")?;
        clients.push(joined??);
    }
    Ok(clients)
}

fn add_command(product: usize) -> Vec<u8> {
    format!(r#"{{"event":"stock:add","data":[{{"productId":{product},"quantity":1}}]}}"#)
        .into_bytes()
}

/// Reads a client's frames until `want` events arrived; returns when each arrived.
async fn receive_events(mut client: WsClient, want: usize) -> Result<(WsClient, Vec<Instant>)> {
    let mut arrivals = Vec::with_capacity(want);
    while arrivals.len() < want {
        match client.next().await? {
            Some(Kind::Event) => arrivals.push(Instant::now()),
            Some(_) => {}
            None => bail!("connection ended after {} of {want} events", arrivals.len()),
        }
    }
    Ok((client, arrivals))
}

/// Reads a publisher's acks in the background so that it never lags.
fn drain_acks(mut client: WsClient, want: usize) -> tokio::task::JoinHandle<Result<usize>> {
    tokio::spawn(async move {
        let mut acks = 0;
        while acks < want {
            match client.next().await? {
                Some(Kind::Ack) => acks += 1,
                Some(Kind::Error) => bail!("a command was refused"),
                Some(_) => {}
                None => bail!("publisher connection ended"),
            }
        }
        Ok(acks)
    })
}

async fn fanout(bin: &str, subscribers: usize, events: usize) -> Result<Figure> {
    let hub = HubProcess::start(
        bin,
        &[("STOCKY_SEND_QUEUE", (events * 2).max(4096).to_string())],
    )?;
    let subs = open_many(&hub.addr, subscribers).await?;
    let (mut send, recv) = WsClient::connect(&hub.addr, WS).await?.split()?;
    let mut tasks = JoinSet::new();
    for sub in subs {
        tasks.spawn(receive_events(sub, events));
    }
    let acks = drain_acks(recv, events);
    let cpu = Cpu::start(&hub)?;
    let t0 = Instant::now();
    let commands: Vec<Vec<u8>> = (0..events).map(|i| add_command(i % 100 + 1)).collect();
    for chunk in commands.chunks(20) {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        send.send_many(&refs).await?;
    }
    let mut last = t0;
    let mut keep = Vec::with_capacity(subscribers);
    while let Some(joined) = tasks.join_next().await {
        let (client, arrivals) = joined??;
        last = last.max(*arrivals.last().context("no arrivals")?);
        keep.push(client);
    }
    let (hub_cpu, own_cpu) = cpu.used(&hub)?;
    acks.await??;
    let secs = (last - t0).as_secs_f64();
    let deliveries = (subscribers * events) as f64;
    let rate = deliveries / secs;
    Ok(Figure {
        value: rate,
        line: format!(
            "{subscribers} subscribers × {events} events: {:.0} deliveries/s in {secs:.3} s; CPU hub {hub_cpu:.2} s \
             ({:.0} ns/delivery), bench {own_cpu:.2} s ({:.0} ns/delivery)",
            rate,
            hub_cpu * 1e9 / deliveries,
            own_cpu * 1e9 / deliveries
        ),
    })
}

async fn latency(
    bin: &str,
    subscribers: usize,
    commands: usize,
    interval: Duration,
    cross_instance: bool,
) -> Result<Figure> {
    let hub = HubProcess::start(bin, &[])?;
    let peer = match cross_instance {
        true => Some(HubProcess::start(bin, &[("DB_PATH", hub.db_path())])?),
        false => None,
    };
    let subs = open_many(&peer.as_ref().unwrap_or(&hub).addr, subscribers).await?;
    let mut tasks = JoinSet::new();
    for sub in subs {
        tasks.spawn(receive_events(sub, commands));
    }
    let (mut send, recv) = WsClient::connect(&hub.addr, WS).await?.split()?;
    let acks = drain_acks(recv, commands);
    let cpu = Cpu::start(&hub)?;
    let mut sent_at = Vec::with_capacity(commands);
    let mut tick = tokio::time::interval(interval);
    for i in 0..commands {
        tick.tick().await;
        sent_at.push(Instant::now());
        send.send_text(&add_command(i % 100 + 1)).await?;
    }
    let mut micros = Vec::with_capacity(subscribers * commands);
    let mut keep = Vec::with_capacity(subscribers);
    while let Some(joined) = tasks.join_next().await {
        let (client, arrivals) = joined??;
        micros.extend(
            arrivals
                .iter()
                .zip(&sent_at)
                .map(|(a, s)| (*a - *s).as_micros() as u64),
        );
        keep.push(client);
    }
    let (hub_cpu, own_cpu) = cpu.used(&hub)?;
    drop(acks);
    micros.sort_unstable();
    let pct =
        |p: f64| micros[((micros.len() as f64 * p) as usize).min(micros.len() - 1)] as f64 / 1000.0;
    let p99 = pct(0.99);
    Ok(Figure {
        value: p99,
        line: format!(
            "{commands} commands to {subscribers} subscribers{} every {interval:?}: p50 {:.2} ms, \
             p99 {p99:.2} ms, max {:.2} ms; CPU hub {hub_cpu:.2} s, bench {own_cpu:.2} s",
            if cross_instance {
                " on another instance"
            } else {
                ""
            },
            pct(0.5),
            *micros.last().unwrap_or(&0) as f64 / 1000.0
        ),
    })
}

/// How `pipeline` loads a hub: `clients` connections each keeping `window` commands in
/// flight for `duration`.
#[derive(Clone, Copy)]
struct Load {
    clients: usize,
    window: usize,
    duration: Duration,
}

impl Load {
    /// A load that ends when its command limit is reached (10 minutes at most).
    fn until_done(clients: usize, window: usize) -> Self {
        Load {
            clients,
            window,
            duration: Duration::from_secs(600),
        }
    }
}

/// Runs `load` until its duration elapses or `limit` commands were acknowledged in total;
/// client `c` connects on `paths[c % paths.len()]`. Returns acks.
async fn pipeline(addr: &str, paths: &[String], load: Load, limit: usize) -> Result<usize> {
    let issued = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + load.duration;
    let mut tasks = JoinSet::new();
    for c in 0..load.clients {
        let (addr, issued) = (addr.to_owned(), issued.clone());
        let path = paths[c % paths.len()].clone();
        tasks.spawn(async move {
            let mut client = WsClient::connect(&addr, &path).await?;
            let (mut in_flight, mut acks, mut seq) = (0usize, 0usize, c * 7919);
            let take =
                || issued.fetch_add(1, Ordering::Relaxed) < limit && Instant::now() < deadline;
            loop {
                while in_flight < load.window && take() {
                    seq += 1;
                    client.send_text(&add_command(seq % 1000 + 1)).await?;
                    in_flight += 1;
                }
                if in_flight == 0 {
                    return anyhow::Ok(acks);
                }
                match client.next().await? {
                    Some(Kind::Ack) => (acks, in_flight) = (acks + 1, in_flight - 1),
                    Some(Kind::Error) => bail!("a command was refused"),
                    Some(_) => {}
                    None => bail!("connection ended"),
                }
            }
        });
    }
    let mut total = 0;
    while let Some(joined) = tasks.join_next().await {
        total += joined??;
    }
    Ok(total)
}

/// The WebSocket path of each of `clients` clients spread over `tenants` tenants: the
/// bench's operator token for one tenant; else tenants `bench-1`… are created and each
/// client signs in as its tenant's owner (from its own device).
async fn tenant_paths(addr: &str, clients: usize, tenants: usize) -> Result<Vec<String>> {
    if tenants <= 1 {
        return Ok(vec![WS.to_owned()]);
    }
    const PASSWORD: &str = "bench-password";
    let operator = stocky_client::Client::new(addr)?.with_token(hub::ADMIN_TOKEN);
    for t in 1..=tenants {
        let body = serde_json::json!({
            "id": format!("bench-{t}"),
            "owner": {"email": format!("owner@bench-{t}.test"), "password": PASSWORD},
        });
        operator.create_tenant(&body).await?;
    }
    let mut paths = Vec::with_capacity(clients);
    for c in 0..clients {
        let email = format!("owner@bench-{}.test", c % tenants + 1);
        let device = format!("bench-client-{c}");
        let grant = stocky_client::Client::new(addr)?
            .login_on_device(&email, PASSWORD, Some(&device))
            .await?;
        paths.push(format!(
            "/ws?token={}&deviceId={device}",
            grant.access_token
        ));
    }
    Ok(paths)
}

async fn commands(bin: &str, load: Load, tenants: usize) -> Result<Figure> {
    let hub = HubProcess::start(bin, &[])?;
    let paths = tenant_paths(&hub.addr, load.clients, tenants).await?;
    let cpu = Cpu::start(&hub)?;
    let t0 = Instant::now();
    let acked = pipeline(&hub.addr, &paths, load, usize::MAX).await?;
    let secs = t0.elapsed().as_secs_f64();
    let (hub_cpu, own_cpu) = cpu.used(&hub)?;
    let rate = acked as f64 / secs;
    let Load {
        clients, window, ..
    } = load;
    Ok(Figure {
        value: rate,
        line: format!(
            "{clients} clients × {window} in flight over {tenants} tenant(s): {rate:.0} commands/s ({acked} in {secs:.2} s); \
             CPU hub {hub_cpu:.2} s, bench {own_cpu:.2} s"
        ),
    })
}

async fn edge_drain(
    bin: &str,
    operations: usize,
    latency_commands: usize,
    batch: usize,
) -> Result<Figure> {
    let hub = HubProcess::start(bin, &[])?;
    let sdk = stocky_client::Client::new(&hub.addr)?.with_token(hub::ADMIN_TOKEN);
    let code = sdk.create_activation_code("default").await?;
    let hub_url = format!("http://{}", hub.addr);
    // The hub is "away": the edge runs against a port nobody listens on.
    let away = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    );
    let mut edge = HubProcess::edge(bin, &[("REMOTE_API_URL", away)], |dir| {
        let activated = std::process::Command::new(bin)
            .args([
                "edge",
                "activate",
                "--hub",
                &hub_url,
                "--code",
                &code,
                "--data-dir",
            ])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(activated.success(), "activation failed");
        Ok(())
    })?;

    let mut client = WsClient::connect(&edge.addr, WS).await?;
    let mut times = Vec::with_capacity(latency_commands);
    for i in 0..latency_commands {
        let t0 = Instant::now();
        client.send_text(&add_command(i % 1000 + 1)).await?;
        loop {
            match client.next().await? {
                Some(Kind::Ack) => break,
                Some(Kind::Error) => bail!("a command was refused"),
                Some(_) => {}
                None => bail!("connection ended"),
            }
        }
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    drop(client);
    times.sort_by(f64::total_cmp);
    let percentile = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    let rest = operations.saturating_sub(latency_commands);
    let queued = pipeline(&edge.addr, &[WS.to_owned()], Load::until_done(4, 64), rest).await?;
    anyhow::ensure!(queued == rest, "queued {queued} of {rest}");

    // The hub is back: the edge restarts with its real hub URL and drains.
    edge.restart(bin, &["edge"], &[("STOCKY_PUSH_BATCH", batch.to_string())])?;
    let local = stocky_client::Client::new(&edge.addr)?.with_token(hub::ADMIN_TOKEN);
    let t0 = Instant::now();
    loop {
        let status: serde_json::Value = local.get("/api/sync/status").await?;
        if status["pending"] == 0 {
            break;
        }
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("not drained: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let rate = operations as f64 / secs;
    let at_hub = sdk.stock().await?;
    let total: i64 = at_hub.data.iter().map(|r| r.stock).sum();
    anyhow::ensure!(
        total == operations as i64,
        "the hub holds {total} of {operations}"
    );
    Ok(Figure {
        value: rate,
        line: format!(
            "{operations} operations drained to the hub in {secs:.2} s ({rate:.0} ops/s, \
             {batch} per push); \
             edge command latency with the hub away: p50 {:.2} ms, p99 {:.2} ms",
            percentile(0.5),
            percentile(0.99)
        ),
    })
}

async fn replay(bin: &str, events: usize) -> Result<Figure> {
    let hub = HubProcess::start(
        bin,
        &[("STOCKY_EVENT_RETENTION", events.max(10_000).to_string())],
    )?;
    let acked = pipeline(&hub.addr, &[WS.to_owned()], Load::until_done(1, 64), events).await?;
    if acked != events {
        bail!("populated {acked} of {events} events");
    }
    let mut times = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let mut client = WsClient::connect(&hub.addr, &format!("{WS}&lastEventId=0")).await?;
        let mut replayed = 0;
        loop {
            match client.next().await? {
                Some(Kind::Event) => replayed += 1,
                Some(Kind::SyncComplete) => break,
                Some(Kind::FullRefresh) => bail!("got a full refresh instead of a replay"),
                Some(_) => {}
                None => bail!("connection ended during replay"),
            }
        }
        if replayed != events {
            bail!("replayed {replayed} of {events}");
        }
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    Ok(Figure {
        value: median,
        line: format!(
            "replay of {events} events: median {median:.1} ms (min {:.1}, max {:.1})",
            times[0], times[4]
        ),
    })
}

async fn idle(bin: &str, connections: usize) -> Result<Figure> {
    let hub = HubProcess::start(bin, &[])?;
    let warm = open_many(&hub.addr, 10).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = hub.rss_kib()?;
    let clients = open_many(&hub.addr, connections).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = hub.rss_kib()?;
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / connections as f64;
    drop((warm, clients));
    Ok(Figure {
        value: per,
        line: format!(
            "{connections} idle connections: hub RSS {before} KiB → {after} KiB, {:.1} KiB per connection",
            per / 1024.0
        ),
    })
}

async fn inventory(bin: &str, products: usize, sites: usize, reads: usize) -> Result<Figure> {
    let hub = HubProcess::start(bin, &[("STOCKY_RATE_LIMIT", "0".to_string())])?;
    let sdk = stocky_client::Client::new(&hub.addr)?.with_token(hub::ADMIN_TOKEN);
    for site in 0..sites {
        let id = format!("site-{site}");
        if site > 0 {
            let (status, answer) = sdk
                .call(
                    "POST",
                    "/api/admin/sites",
                    Some(&serde_json::json!({"id": id})),
                    &[],
                )
                .await?;
            anyhow::ensure!(status == 201, "site: {status} {answer}");
        }
        let at = if site == 0 { "default".to_owned() } else { id };
        let lines: Vec<serde_json::Value> = (1..=products)
            .map(|p| serde_json::json!({"productId": p, "stock": (p % 97) + site}))
            .collect();
        for chunk in lines.chunks(1000) {
            let (status, answer) = sdk
                .call(
                    "POST",
                    &format!("/api/stock/sync?siteId={at}"),
                    Some(&serde_json::json!({"stockData": chunk})),
                    &[],
                )
                .await?;
            anyhow::ensure!(status == 200, "sync: {status} {answer}");
        }
    }
    let read = || async {
        let t0 = Instant::now();
        let (status, answer) = sdk
            .call("GET", "/api/inventory/consolidated", None, &[])
            .await?;
        anyhow::ensure!(status == 200, "consolidated: {status}");
        anyhow::ensure!(answer["count"] == products, "{} products", answer["count"]);
        anyhow::Ok((
            t0.elapsed().as_secs_f64() * 1000.0,
            answer["cached"] == true,
        ))
    };
    let (mut cold, mut cached) = (Vec::new(), Vec::new());
    for _ in 0..reads {
        let add = serde_json::json!({"additions": [{"productId": 1, "quantity": 1}]});
        sdk.call("POST", "/api/stock/add", Some(&add), &[]).await?;
        let (ms, hit) = read().await?;
        anyhow::ensure!(!hit, "a read after a movement was served from the cache");
        cold.push(ms);
        let (ms, hit) = read().await?;
        anyhow::ensure!(hit, "a second read was not cached");
        cached.push(ms);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (cold_ms, cached_ms) = (median(&mut cold), median(&mut cached));
    Ok(Figure {
        value: cold_ms,
        line: format!(
            "consolidated inventory of {products} products × {sites} sites: cold {cold_ms:.1} ms, cached {cached_ms:.1} ms (medians of {reads})"
        ),
    })
}

async fn sales(bin: &str, clients: usize, duration: Duration) -> Result<Figure> {
    let hub = HubProcess::start(bin, &[("STOCKY_RATE_LIMIT", "0".to_string())])?;
    let sdk = stocky_client::Client::new(&hub.addr)?.with_token(hub::ADMIN_TOKEN);
    for id in 1..=3 {
        // PUT: a database shared across runs (PostgreSQL) has them already.
        let product = serde_json::json!({"name": format!("product {id}"), "price": 2.5});
        let path = format!("/api/products/{id}");
        let (status, answer) = sdk.call("PUT", &path, Some(&product), &[]).await?;
        anyhow::ensure!(status == 200, "product: {status} {answer}");
    }
    let cpu = Cpu::start(&hub)?;
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let sdk = sdk.clone();
        workers.spawn(async move {
            let mut made = 0u64;
            while started.elapsed() < duration {
                let sale = serde_json::json!({
                    "id": uuid::Uuid::new_v4().to_string(),
                    "deviceId": "bench",
                    "lines": [
                        {"productId": 1, "quantity": 1, "unitPrice": 2.5},
                        {"productId": 2, "quantity": 2, "unitPrice": 2.5},
                        {"productId": 3, "quantity": 3, "unitPrice": 2.5, "discount": 0.5},
                    ],
                    "payments": [{"method": "card", "amount": 14.5}],
                    "total": 14.5,
                });
                let (status, answer) = sdk.call("POST", "/api/sales", Some(&sale), &[]).await?;
                anyhow::ensure!(status == 201, "sale: {status} {answer}");
                made += 1;
            }
            anyhow::Ok(made)
        });
    }
    let mut total = 0;
    while let Some(worker) = workers.join_next().await {
        total += worker??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (hub_cpu, own_cpu) = cpu.used(&hub)?;
    let per_sec = total as f64 / elapsed;
    Ok(Figure {
        value: per_sec,
        line: format!(
            "{total} sales (3 lines, 1 payment) in {elapsed:.1} s = {per_sec:.0} sales/s from {clients} clients; hub CPU {hub_cpu:.1} s, bench CPU {own_cpu:.1} s"
        ),
    })
}
