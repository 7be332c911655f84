//! The event bus between hub instances: one Redis Stream (`stocky:events`).
//!
//! Each instance appends its own commits (`XADD`, capped with `MAXLEN ~`) and reads
//! everyone else's (`XREAD BLOCK`) into its fan-out, which emits strictly in id order per
//! tenant and back-fills from the log whatever the bus reorders or drops. Redis Streams
//! (not Pub/Sub) let a reader that lost its connection continue where it stopped.
//!
//! Failure is degradation, never loss: when Redis is unreachable each instance keeps
//! serving its own clients, logs the degradation once, retries with backoff, and its peers
//! find the events it committed meanwhile in the log (see `follow`); delivery across
//! instances resumes by itself when Redis returns. A listener back on the bus compares
//! every stream with the log; a batch the relay could not append is sent again (for up to
//! [`RETRY_FOR`]), so peers that never lost the bus get it too.

use std::time::Duration;

use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use stocky_core::protocol::{EventParts, Scope};
use stocky_store::CommittedEvent;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use stocky_server::fanout::{foreign_event, Fanout};

/// The stream every instance appends to and reads from.
pub const STREAM_KEY: &str = "stocky:events";
/// Entries Redis keeps in the stream (approximately); older ones are trimmed.
const MAX_LEN: usize = 100_000;
/// Commits waiting to be relayed; when full, peers recover from the log.
pub const RELAY_QUEUE: usize = 10_000;
/// Longest a Redis call may take before the connection is considered broken.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one `XREAD` blocks.
const BLOCK_MS: usize = 1000;
/// How long the relay keeps sending a batch Redis refuses before it gives the batch up.
const RETRY_FOR: Duration = Duration::from_secs(30);

/// Reconnection backoff: 100 ms doubling to 5 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::from_millis(100))
    }

    async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// Whether the relay and the listener reach Redis, for `GET /readyz` (`checks.redis`,
/// not required: without Redis the hub serves its own clients and picks up the other
/// instances' events from the log).
#[derive(Debug, Default)]
pub struct BusHealth {
    relay_down: std::sync::atomic::AtomicBool,
    listener_down: std::sync::atomic::AtomicBool,
}

impl stocky_server::ReadinessCheck for BusHealth {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn state(&self) -> Result<(), String> {
        use std::sync::atomic::Ordering::Relaxed;
        match (self.relay_down.load(Relaxed), self.listener_down.load(Relaxed)) {
            (false, false) => Ok(()),
            _ => Err("Redis is unreachable: serving this instance's clients; other instances' events come from the log".into()),
        }
    }
}

/// Logs "degraded" once per outage and "restored" when it ends (counted in
/// `stocky_bus_reconnects`, shown by `/readyz`).
struct Health {
    what: &'static str,
    down: bool,
    metrics: std::sync::Arc<stocky_server::metrics::Metrics>,
    shared: std::sync::Arc<BusHealth>,
}

impl Health {
    fn flag(&self) -> &std::sync::atomic::AtomicBool {
        if self.what == "relay" {
            &self.shared.relay_down
        } else {
            &self.shared.listener_down
        }
    }
}

impl Health {
    fn failed(&mut self, error: &dyn std::fmt::Display) {
        self.flag()
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if !self.down {
            tracing::warn!(error = %error, "bus: {} unavailable; serving local clients only until Redis is back", self.what);
            self.down = true;
        }
    }

    fn ok(&mut self) {
        self.flag()
            .store(false, std::sync::atomic::Ordering::Relaxed);
        if std::mem::take(&mut self.down) {
            self.metrics.bus_reconnects.inc();
            tracing::info!("bus: {} restored", self.what);
        }
    }
}

async fn connect(client: &redis::Client) -> Result<redis::aio::MultiplexedConnection, String> {
    match tokio::time::timeout(CALL_TIMEOUT, client.get_multiplexed_async_connection()).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connection timed out".into()),
    }
}

/// Appends this instance's commits to the stream.
///
/// A batch Redis did not take (unreachable, or refusing writes, e.g. out of memory) is
/// kept and sent again after the backoff, for at most [`RETRY_FOR`]: peers whose listener
/// stayed connected would otherwise only find those events in the log at their next poll
/// or gap. Meanwhile new commits wait in the bounded queue (when it is full they are not
/// relayed, and peers recover them from the log). A batch sent twice (an outcome lost with
/// the connection) is harmless: the fan-out drops ids it has delivered.
pub async fn relay(
    client: redis::Client,
    instance: String,
    mut commits: mpsc::Receiver<CommittedEvent>,
    metrics: std::sync::Arc<stocky_server::metrics::Metrics>,
    shared: std::sync::Arc<BusHealth>,
    shutdown: CancellationToken,
) {
    let mut health = Health {
        what: "relay",
        down: false,
        metrics,
        shared,
    };
    let mut connection = None;
    let mut backoff = Backoff::new();
    let mut batch = Vec::with_capacity(256);
    // When the batch in hand first failed to go out.
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        if batch.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                received = commits.recv_many(&mut batch, 256) => if received == 0 { return },
            }
        }
        let sent = match connection.as_mut() {
            Some(con) => append(con, &instance, &batch).await,
            None => match connect(&client).await {
                Ok(mut con) => {
                    let sent = append(&mut con, &instance, &batch).await;
                    connection = Some(con);
                    sent
                }
                Err(e) => Err(e),
            },
        };
        match sent {
            Ok(()) => {
                health.ok();
                backoff = Backoff::new();
                batch.clear();
                failing_since = None;
            }
            Err(e) => {
                health.failed(&e);
                connection = None;
                let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() >= RETRY_FOR {
                    tracing::debug!(
                        events = batch.len(),
                        "bus: relay gave up a batch; peers will back-fill from the log"
                    );
                    batch.clear();
                    failing_since = None;
                }
                if !backoff.wait(&shutdown).await {
                    return;
                }
            }
        }
    }
}

/// `XADD`s `batch` to the stream in one pipeline.
async fn append(
    con: &mut redis::aio::MultiplexedConnection,
    instance: &str,
    batch: &[CommittedEvent],
) -> Result<(), String> {
    let mut pipe = redis::pipe();
    for event in batch {
        pipe.cmd("XADD")
            .arg(STREAM_KEY)
            .arg("MAXLEN")
            .arg("~")
            .arg(MAX_LEN)
            .arg("*")
            .arg("i")
            .arg(instance)
            .arg("t")
            .arg(&*event.tenant)
            .arg("s")
            .arg(&*event.site)
            .arg("n")
            .arg(event.id)
            .arg("e")
            .arg(&*event.epoch)
            .arg("v")
            .arg(&*event.event)
            .arg("d")
            .arg(&*event.data)
            .arg("c")
            .arg(&*event.client_id)
            .arg("ts")
            .arg(event.timestamp_ms);
        if let Some(op_id) = &event.op_id {
            pipe.arg("o").arg(op_id);
        }
        pipe.ignore();
    }
    match tokio::time::timeout(CALL_TIMEOUT, pipe.query_async::<()>(con)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("XADD timed out".to_owned()),
    }
}

/// Reads the other instances' commits into the fan-out.
pub async fn listen(
    client: redis::Client,
    instance: String,
    fanout: std::sync::Arc<Fanout>,
    shared: std::sync::Arc<BusHealth>,
    shutdown: CancellationToken,
) {
    let mut health = Health {
        what: "listener",
        down: false,
        metrics: fanout.metrics().clone(),
        shared,
    };
    let mut connection = None;
    let mut backoff = Backoff::new();
    // Only what is appended from now on: older events are in the log.
    let mut last_id = "$".to_string();
    let options = StreamReadOptions::default().block(BLOCK_MS).count(512);
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        if connection.is_none() {
            match connect(&client).await {
                Ok(mut c) => {
                    // Pin "from now on" to a concrete entry before looking at the log, so
                    // that every event is either in the log already or read from the
                    // stream afterwards: nothing falls between the two.
                    if last_id == "$" {
                        match latest_entry(&mut c).await {
                            Ok(id) => last_id = id,
                            Err(e) => {
                                health.failed(&e);
                                if !backoff.wait(&shutdown).await {
                                    return;
                                }
                                continue;
                            }
                        }
                    }
                    // Whatever peers committed while the bus was away is in the log.
                    fanout.check_all_streams();
                    connection = Some(c);
                    health.ok();
                    backoff = Backoff::new();
                }
                Err(e) => {
                    health.failed(&e);
                    if !backoff.wait(&shutdown).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let Some(con) = connection.as_mut() else {
            continue;
        };
        let ids = [last_id.clone()];
        let read = tokio::select! {
            _ = shutdown.cancelled() => return,
            read = tokio::time::timeout(
                CALL_TIMEOUT + Duration::from_millis(BLOCK_MS as u64),
                con.xread_options::<_, _, Option<StreamReadReply>>(&[STREAM_KEY], &ids, &options),
            ) => read,
        };
        let reply = match read {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                health.failed(&e);
                connection = None;
                continue;
            }
            Err(_) => {
                health.failed(&"XREAD timed out");
                connection = None;
                continue;
            }
        };
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in key.ids {
                last_id = entry.id.clone();
                let field = |name: &str| entry.get::<String>(name).unwrap_or_default();
                if field("i") == instance {
                    continue;
                }
                match decode(&field) {
                    Some(event) => {
                        let age_ms = stocky_core::time::now_millis() - event.timestamp_ms;
                        health
                            .metrics
                            .bus_lag_seconds
                            .set(age_ms.max(0) as f64 / 1000.0);
                        fanout.deliver(event);
                    }
                    None => tracing::warn!(entry = %entry.id, "bus: malformed entry skipped"),
                }
            }
        }
    }
}

/// The id of the stream's newest entry (`0-0` when it is empty).
async fn latest_entry(con: &mut redis::aio::MultiplexedConnection) -> Result<String, String> {
    let newest = tokio::time::timeout(
        CALL_TIMEOUT,
        redis::cmd("XREVRANGE")
            .arg(STREAM_KEY)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async::<redis::streams::StreamRangeReply>(con),
    )
    .await
    .map_err(|_| "XREVRANGE timed out".to_string())?
    .map_err(|e| e.to_string())?;
    Ok(newest
        .ids
        .first()
        .map_or_else(|| "0-0".to_string(), |entry| entry.id.clone()))
}

/// Rebuilds a committed event from a bus entry (the fan-out encodes its frames).
fn decode(field: &dyn Fn(&str) -> String) -> Option<CommittedEvent> {
    let id: u64 = field("n").parse().ok()?;
    let timestamp_ms: i64 = field("ts").parse().ok()?;
    let (tenant, site, epoch, name, data, client_id) = (
        field("t"),
        field("s"),
        field("e"),
        field("v"),
        field("d"),
        field("c"),
    );
    let op_id = Some(field("o")).filter(|o| !o.is_empty());
    if id == 0
        || tenant.is_empty()
        || name.is_empty()
        || serde_json::from_str::<serde_json::Value>(&data).is_err()
    {
        return None;
    }
    let parts = EventParts {
        id,
        prev: id - 1,
        epoch: &epoch,
        event: &name,
        data: &data,
        client_id: &client_id,
        timestamp_ms,
        scope: Scope {
            tenant_id: &tenant,
            site_id: &site,
        },
        op_id: op_id.as_deref(),
    };
    Some(foreign_event(&parts))
}
