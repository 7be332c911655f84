//! The session registry across hub instances (seed 002): one Redis key per user (or API
//! key) and device, `ws:user:<tenant>:<id>:<device>`, holding `<instance>:<connection>` of
//! the connection that owns the slot, with a TTL of the credential's lifetime.
//!
//! Claiming and releasing are Lua scripts, so each is atomic: under `replace` a claim
//! takes the key and the previous owner's instance is told (Pub/Sub channel
//! `stocky:sessions:kick`) to close that connection with 4002; under `reject` a claim
//! fails while another connection owns the key. A connection releases the key when it ends,
//! only if it still owns it.
//!
//! Redis being away degrades the policy to each instance on its own (logged once); it never
//! refuses connections. A kick lost in a Redis blip leaves the older connection open until
//! it ends by itself; the key already belongs to the newer one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use stocky_server::config::SessionPolicy;
use stocky_server::ws::{DirectoryCall, SessionDirectory};

/// The channel kicks travel on: `<key>\n<owner>`.
pub const KICK_CHANNEL: &str = "stocky:sessions:kick";
/// Longest a registry call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// `KEYS[1]` slot, `ARGV` owner, TTL (ms), policy. Returns `{taken (0/1), previous owner}`.
const CLAIM: &str = r#"
local previous = redis.call('GET', KEYS[1])
if previous and previous ~= ARGV[1] and ARGV[3] == 'reject' then
  return {0, previous}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, previous or ''}
"#;

/// `KEYS[1]` slot, `ARGV[1]` owner: deletes the key only if the owner still holds it.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// `KEYS[1]` slot, `ARGV` owner, TTL (ms): extends the key only if the owner still holds it.
const REFRESH: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// The outcome of a claim in Redis.
#[derive(Debug, PartialEq, Eq)]
pub enum Claimed {
    /// The slot is ours; `previous` owned it before (on this or another instance).
    Taken { previous: Option<String> },
    /// `reject` policy and `owner` holds it.
    Refused { owner: String },
}

/// This instance's handle on the shared registry.
pub struct Cluster {
    client: redis::Client,
    /// This instance's id: the prefix of the owners it creates.
    pub instance: String,
    connection: Mutex<Option<MultiplexedConnection>>,
    /// Whether the last call failed (so that an outage is logged once).
    down: Mutex<bool>,
}

impl Cluster {
    pub fn new(client: redis::Client, instance: String) -> Self {
        Self {
            client,
            instance,
            connection: Mutex::new(None),
            down: Mutex::new(false),
        }
    }

    /// The Redis key of a slot.
    pub fn key(tenant: &str, id: &str, device: &str) -> String {
        format!("ws:user:{tenant}:{id}:{device}")
    }

    pub fn owner(&self, connection: u64) -> String {
        format!("{}:{connection}", self.instance)
    }

    pub async fn claim(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
        policy: SessionPolicy,
    ) -> Result<Claimed, String> {
        let policy = match policy {
            SessionPolicy::Replace => "replace",
            SessionPolicy::Reject => "reject",
        };
        let (taken, previous): (i64, String) = self
            .eval(CLAIM, key, &[owner, &ttl_ms(ttl).to_string(), policy])
            .await?;
        Ok(if taken == 1 {
            let previous = Some(previous).filter(|p| !p.is_empty() && p != owner);
            if let Some(previous) = &previous {
                if !previous.starts_with(&format!("{}:", self.instance)) {
                    self.kick(key, previous).await;
                }
            }
            Claimed::Taken { previous }
        } else {
            Claimed::Refused { owner: previous }
        })
    }

    pub async fn release(&self, key: &str, owner: &str) {
        let _: Result<i64, _> = self.eval(RELEASE, key, &[owner]).await;
    }

    pub async fn refresh(&self, key: &str, owner: &str, ttl: Duration) {
        let _: Result<i64, _> = self
            .eval(REFRESH, key, &[owner, &ttl_ms(ttl).to_string()])
            .await;
    }

    async fn kick(&self, key: &str, owner: &str) {
        let message = format!("{key}\n{owner}");
        let _: Result<i64, _> = self
            .call(|mut c| async move {
                redis::cmd("PUBLISH")
                    .arg(KICK_CHANNEL)
                    .arg(message)
                    .query_async(&mut c)
                    .await
            })
            .await;
    }

    /// Runs a script on one key (scripts are a few lines: sent whole, no `SCRIPT LOAD`).
    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &str,
        key: &str,
        args: &[&str],
    ) -> Result<T, String> {
        let mut command = redis::cmd("EVAL");
        command.arg(script).arg(1).arg(key).arg(args);
        self.call(|mut c| async move { command.query_async(&mut c).await })
            .await
    }

    /// Runs one call on the shared connection (connecting first if needed), with a time
    /// limit; a failure drops the connection so that the next call reconnects.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, String>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let cached = self
            .connection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let connection = match cached {
            Some(c) => c,
            None => {
                let connected = tokio::time::timeout(
                    CALL_TIMEOUT,
                    self.client.get_multiplexed_async_connection(),
                )
                .await
                .map_err(|_| "connection timed out".to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
                match connected {
                    Ok(c) => {
                        *self.connection.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(c.clone());
                        c
                    }
                    Err(e) => return Err(self.failed(e)),
                }
            }
        };
        match tokio::time::timeout(CALL_TIMEOUT, f(connection)).await {
            Ok(Ok(value)) => {
                if std::mem::take(&mut *self.down.lock().unwrap_or_else(|p| p.into_inner())) {
                    tracing::info!("sessions: shared registry restored");
                }
                Ok(value)
            }
            Ok(Err(e)) => Err(self.failed(e.to_string())),
            Err(_) => Err(self.failed("call timed out".into())),
        }
    }

    fn failed(&self, error: String) -> String {
        *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        if !*down {
            tracing::warn!(%error, "sessions: shared registry unavailable; one-connection-per-device holds per instance until Redis is back");
            *down = true;
        }
        error
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

/// Listens for kicks addressed to this instance and hands them to `kick(key, connection)`;
/// reconnects with backoff until shut down.
pub async fn listen_for_kicks(
    client: redis::Client,
    instance: String,
    kick: impl Fn(&str, u64),
    shutdown: CancellationToken,
) {
    let prefix = format!("{instance}:");
    let mut delay = Duration::from_millis(100);
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(KICK_CHANNEL).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            _ = shutdown.cancelled() => return,
            result = tokio::time::timeout(CALL_TIMEOUT, subscribed) => result,
        };
        if let Ok(Ok(mut pubsub)) = pubsub {
            delay = Duration::from_millis(100);
            let mut messages = pubsub.on_message();
            loop {
                let message = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    message = messages.next() => message,
                };
                let Some(message) = message else { break };
                let Ok(text) = message.get_payload::<String>() else {
                    continue;
                };
                let Some((key, owner)) = text.split_once('\n') else {
                    continue;
                };
                if let Some(connection) = owner
                    .strip_prefix(&prefix)
                    .and_then(|c| c.parse::<u64>().ok())
                {
                    kick(key, connection);
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

impl SessionDirectory for Cluster {
    fn key(&self, tenant: &str, id: &str, device: &str) -> String {
        Cluster::key(tenant, id, device)
    }

    fn claim(
        &self,
        key: String,
        connection: u64,
        ttl: Duration,
        policy: SessionPolicy,
    ) -> DirectoryCall<'_, bool> {
        Box::pin(async move {
            let owner = self.owner(connection);
            // Redis unreachable: the policy holds per instance until it is back.
            !matches!(
                Cluster::claim(self, &key, &owner, ttl, policy).await,
                Ok(Claimed::Refused { .. })
            )
        })
    }

    fn release(self: Arc<Self>, key: String, connection: u64) -> DirectoryCall<'static, ()> {
        Box::pin(async move {
            let owner = self.owner(connection);
            Cluster::release(&self, &key, &owner).await
        })
    }

    fn refresh(
        self: Arc<Self>,
        key: String,
        connection: u64,
        ttl: Duration,
    ) -> DirectoryCall<'static, ()> {
        Box::pin(async move {
            let owner = self.owner(connection);
            Cluster::refresh(&self, &key, &owner, ttl).await
        })
    }
}
