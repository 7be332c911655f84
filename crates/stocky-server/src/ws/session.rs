//! One WebSocket connection: a single task that reads commands, writes events, replays,
//! and keeps the connection alive.
//!
//! Invariants:
//! - `cursor` is the last event id this connection has been given (as an event, an ack or
//!   a snapshot); live events at or below it are skipped, so replay + live never duplicate
//!   and never leave a hole (the receiver is subscribed before anything is read);
//! - the sender of a command gets its `ack` in the position of its own event;
//! - every batch of writes ends in one flush (many frames, one syscall);
//! - the connection never drops an event silently: falling `send_queue` events behind
//!   closes it with a resync reason; a write slower than `write_timeout` drops it;
//! - at most `MAX_IN_FLIGHT` commands per connection wait for the writer; reading pauses
//!   until one finishes;
//! - a `request_sync` counts against the credential's request budget like a command; one
//!   over it waits (merged with any that follow) until the budget allows, while live events,
//!   commands and pings go on, and every `request_sync` is answered by one `sync_complete`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use axum::http::StatusCode;
use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use stocky_core::auth::stock_action;
use stocky_core::protocol::close;
use stocky_core::protocol::{
    echoed_op_id, encode_ack, encode_auth_error, encode_auth_success, encode_error, encode_event,
    encode_full_refresh, encode_pong, encode_sync_complete, encode_welcome, parse_client_message,
    AuthInfo, ClientMessage, EventParts, ProtocolError, Scope, StockLevel,
};
use stocky_core::time::{iso8601, now_millis};
use stocky_store::{Applied, Origin, StoredEvent, SubmitError};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;
use tokio::time::{interval_at, timeout, Duration, Instant, MissedTickBehavior};

use super::registry::Slot;
use crate::auth::{Kind, Principal};
use crate::error::ApiError;
use crate::fanout::{Delivery, Stream};
use crate::AppState;

/// Commands of one connection waiting for the writer at once.
const MAX_IN_FLIGHT: usize = 32;
/// Live events written per flush at most (bounds one batch's latency for the others).
const MAX_DRAIN: usize = 1024;
/// Events read from the log per replay page.
const REPLAY_PAGE: usize = 1000;
/// How long a closing handshake may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long shutdown waits for this connection's in-flight commands.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection is over (closed by either side or broken).
struct End;

/// A command waiting for the writer: its event name and `opId` (for the error, if any) and
/// the writer's answer.
type Answer = (&'static str, Option<String>, Result<Applied, SubmitError>);
type Pending = Pin<Box<dyn Future<Output = Answer> + Send>>;

struct Session {
    socket: WebSocket,
    state: AppState,
    principal: Principal,
    stream: Arc<Stream>,
    live: Receiver<Delivery>,
    connection: u64,
    client_id: Arc<str>,
    /// Highest event id dealt with (delivered, or skipped by routing).
    cursor: u64,
    /// The `prev` of the next frame: the last id this client was told about (an event it
    /// received, or the `lastEventId` of a `welcome`/`auth_success`/`sync_complete`/
    /// `full_refresh`), so that `prev != lastEventId` means a real gap.
    last_sent: u64,
    /// Something arrived since the last heartbeat.
    alive: bool,
    /// Frames were fed since the last flush.
    dirty: bool,
    in_flight: FuturesOrdered<Pending>,
    /// This connection's one-per-user-and-device slot (none for admin tokens and dev).
    slot: Option<Slot>,
    /// The device the client says it is (`deviceId`), recorded with its commands.
    device: Arc<str>,
    /// A `request_sync` waiting for the credential's request budget.
    deferred: Option<DeferredSync>,
}

/// `request_sync`s that came over the credential's request budget, served as one replay
/// when the budget allows.
struct DeferredSync {
    /// The lowest `lastEventId` asked for (a replay from it covers every request).
    after: u64,
    /// The epoch of the latest request (the client's newest knowledge).
    epoch: Option<String>,
    /// When to try the budget again.
    at: Instant,
    /// Requests merged: each is answered by a `sync_complete`.
    requests: u32,
}

/// What the upgrade request already established about the caller.
pub(super) enum PreAuth {
    /// A valid `?token=` or `Authorization` header.
    Authenticated(Principal),
    /// A credential was given and is not valid (or could not be checked: `unavailable`).
    Invalid { unavailable: bool },
    /// No credential: the client must send `auth` (or the hub is in dev mode).
    Missing,
}

/// Connection parameters from the upgrade request.
pub(super) struct Connect {
    pub pre_auth: PreAuth,
    pub resume: Option<(u64, Option<String>)>,
    pub device: Option<String>,
}

/// How long the shared registry keeps a connection's slot: the token's remaining lifetime,
/// or — for credentials that do not expire, renewed at every ping — three ping intervals,
/// so that the slot of an instance that died frees itself soon.
fn slot_ttl(principal: &Principal, state: &AppState) -> Duration {
    match principal.expires_at {
        Some(secs) => Duration::from_millis((secs * 1000 - now_millis()).max(1000) as u64),
        None => state.config.ping_interval * 3,
    }
}

pub(super) async fn run(mut socket: WebSocket, state: AppState, connect: Connect) {
    let client_id: Arc<str> = new_client_id().into();
    let connection = state.next_connection_id();
    tracing::debug!(%client_id, connection, "ws: connected");
    let Some((principal, device, welcomed)) = handshake(
        &mut socket,
        &state,
        &client_id,
        connect.pre_auth,
        connect.device,
    )
    .await
    else {
        return;
    };
    let slot = match principal.kind {
        Kind::User | Kind::ApiKey => {
            let key = (
                principal.tenant.clone(),
                principal.id.clone(),
                device.clone(),
            );
            let ttl = slot_ttl(&principal, &state);
            match state
                .registry
                .claim(key, connection, state.config.session_policy, ttl)
                .await
            {
                Some(slot) => Some(slot),
                None => {
                    refuse(
                        &mut socket,
                        "already connected from this device (one connection per user and device)",
                    )
                    .await;
                    return;
                }
            }
        }
        Kind::AdminToken | Kind::Dev => None,
    };
    let stream = match state.tenant_stream(&principal.tenant).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::error!(error = %e, "ws: cannot open the tenant's stream");
            refuse(&mut socket, "the tenant's event stream is unavailable").await;
            return;
        }
    };
    let _counted = stream.connection_guard();
    // Subscribe before reading the head: every event after `cursor` reaches `live`.
    let live = stream.subscribe();
    let cursor = stream.head();
    let mut session = Session {
        socket,
        state,
        principal,
        stream,
        live,
        connection,
        client_id,
        cursor,
        last_sent: cursor,
        alive: true,
        dirty: false,
        in_flight: FuturesOrdered::new(),
        slot,
        device: Arc::from(device.as_str()),
        deferred: None,
    };
    crate::presence::connected(&session.state, &session.principal, &session.client_id).await;
    let _ = session.serve(connect.resume, &device, welcomed).await;
    crate::presence::disconnected(&session.state, &session.principal, &session.client_id).await;
    tracing::debug!(client_id = %session.client_id, "ws: disconnected");
}

/// Refuses a credential: 1008 when it is invalid, 1013 (try again later) when it could not
/// be checked because the database is unavailable — a client must not give up on a good
/// token because of an outage.
async fn refuse_credential(socket: &mut WebSocket, unavailable: bool) {
    if unavailable {
        refuse_with(
            socket,
            "service unavailable; retry later",
            close::TRY_AGAIN_LATER,
        )
        .await
    } else {
        refuse(socket, "invalid credentials").await
    }
}

/// Sends `auth_error` and closes with 1008 (policy violation).
async fn refuse(socket: &mut WebSocket, error: &str) {
    refuse_with(socket, error, close::POLICY).await
}

async fn refuse_with(socket: &mut WebSocket, error: &str, code: u16) {
    let _ = timeout(CLOSE_TIMEOUT, async {
        socket
            .feed(Message::Text(encode_auth_error(error).into()))
            .await?;
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(truncate(error.to_owned())),
        };
        socket.feed(Message::Close(Some(frame))).await?;
        socket.flush().await
    })
    .await;
}

/// Establishes who is connected: from the upgrade request, or from an `auth` message
/// within `auth_timeout` (only `auth` and `ping` are processed before that). Returns the
/// principal, the device id and whether `welcome` was already sent.
async fn handshake(
    socket: &mut WebSocket,
    state: &AppState,
    client_id: &str,
    pre_auth: PreAuth,
    device: Option<String>,
) -> Option<(Principal, String, bool)> {
    let device_or_default = |d: Option<String>| {
        d.filter(|d| !d.is_empty())
            .unwrap_or_else(|| "default".into())
    };
    match pre_auth {
        PreAuth::Authenticated(principal) => {
            return Some((principal, device_or_default(device), false))
        }
        PreAuth::Invalid { unavailable } => {
            refuse_credential(socket, unavailable).await;
            return None;
        }
        PreAuth::Missing => {
            if let Some(dev) = state.auth.anonymous() {
                return Some((dev, device_or_default(device), false));
            }
        }
    }
    let welcome = encode_welcome(client_id, None, now_millis());
    socket.send(Message::Text(welcome.into())).await.ok()?;
    let deadline = Instant::now() + state.config.auth_timeout;
    loop {
        let text = match tokio::time::timeout_at(deadline, socket.recv()).await {
            Err(_) => {
                refuse(
                    socket,
                    "authentication timeout: send {\"type\":\"auth\",\"token\":…} first",
                )
                .await;
                return None;
            }
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) => return None,
            Ok(Some(Ok(_))) => continue,
        };
        let reply = match parse_client_message(text.as_str()) {
            Ok(ClientMessage::Auth { token, device_id }) => {
                return match state.auth.authenticate(&state.store, &token).await {
                    Ok(principal) => {
                        Some((principal, device_or_default(device_id.or(device)), true))
                    }
                    Err(e) => {
                        refuse_credential(socket, e.status == StatusCode::SERVICE_UNAVAILABLE)
                            .await;
                        None
                    }
                };
            }
            Ok(ClientMessage::Ping) => encode_pong(now_millis()),
            Ok(_) | Err(_) => {
                let e = ProtocolError {
                    error: "Unauthorized",
                    code: "unauthorized",
                    reason: "authenticate first: send {\"type\":\"auth\",\"token\":…}".into(),
                    original_event: None,
                };
                encode_error(&e, None, client_id, now_millis())
            }
        };
        socket.send(Message::Text(reply.into())).await.ok()?;
    }
}

/// `client_<ms>_<random>`, as seed 000's examples show.
fn new_client_id() -> String {
    let suffix: String = (0..9)
        .map(|_| {
            let n = fastrand::u8(0..36);
            char::from_digit(u32::from(n), 36).unwrap_or('0')
        })
        .collect();
    format!("client_{}_{suffix}", now_millis())
}

impl Session {
    async fn serve(
        &mut self,
        resume: Option<(u64, Option<String>)>,
        device: &str,
        welcomed: bool,
    ) -> Result<(), End> {
        if !welcomed {
            let welcome = encode_welcome(
                &self.client_id,
                Some((self.cursor, &self.stream.epoch)),
                now_millis(),
            );
            self.send_text(welcome).await?;
        }
        let p = &self.principal;
        let info = AuthInfo {
            user_id: &p.id,
            tenant_id: &p.tenant,
            site_id: p.site.as_deref(),
            role: p.role.as_str(),
            modules: p.modules.as_deref(),
            device_id: device,
            expires_at: p.expires_at.map(|s| iso8601(s * 1000)),
        };
        let success = encode_auth_success(&info, self.cursor, &self.stream.epoch);
        self.send_text(success).await?;
        if let Some((after, epoch)) = resume {
            self.sync(after, epoch).await?;
        }
        self.flush().await?;

        let shutdown = self.state.shutdown.clone();
        let replaced = self
            .slot
            .as_ref()
            .map(|s| s.replaced.clone())
            .unwrap_or_default();
        let expiry = self.principal.expires_at.map(|secs| {
            let left = (secs * 1000 - now_millis()).max(0) as u64;
            Instant::now() + Duration::from_millis(left)
        });
        let expired = tokio::time::sleep_until(
            expiry.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365)),
        );
        tokio::pin!(expired);
        let period = self.state.config.ping_interval;
        let mut heartbeat = interval_at(Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let deferred_sync = tokio::time::sleep_until(Instant::now());
        tokio::pin!(deferred_sync);
        loop {
            if let Some(at) = self.deferred.as_ref().map(|d| d.at) {
                if deferred_sync.deadline() != at {
                    deferred_sync.as_mut().reset(at);
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return self.finish().await,
                _ = replaced.cancelled() => {
                    return self.close(close::REPLACED, "replaced by a newer connection of the same user and device".into()).await;
                }
                _ = &mut expired, if expiry.is_some() => {
                    return self.close(close::TOKEN_EXPIRED, "token expired: refresh it and reconnect".into()).await;
                }
                received = self.live.recv() => self.on_live(received).await?,
                Some(done) = self.in_flight.next(), if !self.in_flight.is_empty() => self.on_result(done).await?,
                _ = heartbeat.tick() => self.on_heartbeat().await?,
                _ = &mut deferred_sync, if self.deferred.is_some() => self.on_deferred_sync().await?,
                inbound = self.socket.recv(), if self.in_flight.len() < MAX_IN_FLIGHT => self.on_inbound(inbound).await?,
            }
            self.flush().await?;
        }
    }

    // ---- writing -------------------------------------------------------------------

    /// Queues a frame in the socket's write buffer (written when the buffer fills or on
    /// [`Session::flush`]).
    async fn send(&mut self, message: Message) -> Result<(), End> {
        let metrics = &self.state.metrics;
        metrics.frames_sent.inc();
        if let Message::Text(text) = &message {
            metrics.bytes_sent.inc_by(text.len() as u64);
        }
        match timeout(self.state.config.write_timeout, self.socket.feed(message)).await {
            Ok(Ok(())) => {
                self.dirty = true;
                Ok(())
            }
            _ => Err(End),
        }
    }

    async fn send_text(&mut self, text: String) -> Result<(), End> {
        self.send(Message::Text(text.into())).await
    }

    async fn flush(&mut self) -> Result<(), End> {
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        match timeout(self.state.config.write_timeout, self.socket.flush()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End),
        }
    }

    /// Sends a close frame (best effort, bounded in time) and ends the session.
    async fn close(&mut self, code: u16, reason: String) -> Result<(), End> {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        };
        let _ = timeout(CLOSE_TIMEOUT, async {
            self.socket.feed(Message::Close(Some(frame))).await?;
            self.socket.flush().await
        })
        .await;
        Err(End)
    }

    async fn send_error(&mut self, e: ProtocolError) -> Result<(), End> {
        self.send_error_for(e, None).await
    }

    async fn send_error_for(&mut self, e: ProtocolError, op_id: Option<&str>) -> Result<(), End> {
        let frame = encode_error(&e, op_id, &self.client_id, now_millis());
        self.send_text(frame).await
    }

    // ---- live events -----------------------------------------------------------------

    async fn on_live(&mut self, received: Result<Delivery, RecvError>) -> Result<(), End> {
        match received {
            Ok(event) => self.deliver(&event).await?,
            Err(RecvError::Lagged(_)) => return self.lagged().await,
            Err(RecvError::Closed) => return Err(End),
        }
        for _ in 0..MAX_DRAIN {
            match self.live.try_recv() {
                Ok(event) => self.deliver(&event).await?,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Lagged(_)) => return self.lagged().await,
                Err(TryRecvError::Closed) => return Err(End),
            }
        }
        Ok(())
    }

    async fn deliver(&mut self, delivery: &Delivery) -> Result<(), End> {
        let event = match delivery {
            Delivery::Event(event) => event,
            Delivery::Resync => {
                let reason = format!(
                    "events were lost before delivery: reconnect with lastEventId={} to resync",
                    self.last_sent
                );
                return self.close(close::RESYNC, reason).await;
            }
        };
        if event.id <= self.cursor {
            return Ok(());
        }
        let own = event.origin_connection == self.connection;
        // The sender always gets its ack; others only what their routing allows.
        if !own
            && !self
                .principal
                .receives(&self.state.auth.modules, &event.event, &event.site)
        {
            return Ok(());
        }
        self.cursor = event.id;
        let prev = std::mem::replace(&mut self.last_sent, event.id);
        let text = if own {
            event.ack_after(prev)
        } else {
            event.frame_after(prev)
        };
        self.send(Message::Text(text)).await
    }

    async fn lagged(&mut self) -> Result<(), End> {
        self.state.metrics.slow_consumers.inc();
        tracing::info!(client_id = %self.client_id, cursor = self.cursor, "ws: slow consumer disconnected");
        let reason = format!(
            "slow consumer: reconnect with lastEventId={} to resync",
            self.cursor
        );
        self.close(close::RESYNC, reason).await
    }

    // ---- incoming --------------------------------------------------------------------

    async fn on_inbound(
        &mut self,
        inbound: Option<Result<Message, axum::Error>>,
    ) -> Result<(), End> {
        let message = match inbound {
            None => return Err(End),
            Some(Err(e)) => {
                let text = e.to_string();
                let code = if text.contains("too long") || text.contains("too big") {
                    close::TOO_BIG
                } else if text.to_ascii_lowercase().contains("utf-8") {
                    // RFC 6455 §7.4.1: data inconsistent with the message type.
                    close::INVALID_PAYLOAD
                } else {
                    close::PROTOCOL
                };
                return self.close(code, truncate(text)).await;
            }
            Some(Ok(message)) => message,
        };
        self.alive = true;
        match message {
            Message::Text(text) => self.on_text(text.as_str()).await,
            Message::Binary(_) => {
                self.send_error(ProtocolError {
                    error: "Invalid message format",
                    code: "binary_not_supported",
                    reason: "binary messages are not supported; send JSON text".into(),
                    original_event: None,
                })
                .await
            }
            // tungstenite answers pings by itself.
            Message::Ping(_) | Message::Pong(_) => Ok(()),
            Message::Close(_) => Err(End),
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        let limit = self.state.config.max_message_bytes;
        if text.len() > limit {
            return self
                .send_error(ProtocolError {
                    error: "Message too large",
                    code: "message_too_large",
                    reason: format!("message is {} bytes; the limit is {limit}", text.len()),
                    original_event: None,
                })
                .await;
        }
        match parse_client_message(text) {
            Err(e) => {
                let op_id = echoed_op_id(text);
                self.send_error_for(e, op_id.as_deref()).await
            }
            Ok(ClientMessage::Ping) => self.send_text(encode_pong(now_millis())).await,
            Ok(ClientMessage::RequestSync {
                last_event_id,
                epoch,
            }) => self.request_sync(last_event_id, epoch).await,
            Ok(ClientMessage::Auth { .. }) => {
                self.send_error(ProtocolError {
                    error: "Invalid message format",
                    code: "already_authenticated",
                    reason: "this connection is already authenticated".into(),
                    original_event: None,
                })
                .await
            }
            Ok(ClientMessage::Command { command, op_id }) => {
                let event = command.op.event_name();
                if let Err(denied) = self.principal.require(stock_action(command.op)) {
                    let refusal = ProtocolError {
                        error: "Forbidden",
                        code: "forbidden",
                        reason: denied.message,
                        original_event: Some(event.into()),
                    };
                    return self.send_error_for(refusal, op_id.as_deref()).await;
                }
                // Commands count against the credential's request budget, as REST calls do.
                if let Err(retry) = self.budget() {
                    let refusal = ProtocolError {
                        error: "Too many requests",
                        code: "rate_limited",
                        reason: format!("too many requests; retry in {} s", retry.as_secs().max(1)),
                        original_event: Some(event.into()),
                    };
                    return self.send_error_for(refusal, op_id.as_deref()).await;
                }
                let store = self.state.store.clone();
                let origin = Origin {
                    tenant: self.stream.tenant.clone(),
                    site: self.principal.home_site(),
                    connection: self.connection,
                    client_id: self.client_id.clone(),
                    op_scope: self.principal.op_scope(),
                    op_id: op_id.clone(),
                    user: Some(self.principal.actor()),
                    device: Some(self.device.clone()),
                };
                self.in_flight.push_back(Box::pin(async move {
                    let answer = store.submit(command, origin).await;
                    (event, op_id, answer)
                }));
                Ok(())
            }
        }
    }

    async fn on_result(&mut self, (event, op_id, result): Answer) -> Result<(), End> {
        let error = match result {
            // The ack arrives through the live stream, in the event's position.
            Ok(Applied::New { .. }) => return Ok(()),
            Ok(Applied::Duplicate {
                id,
                epoch,
                original,
            }) => {
                let ack = self.duplicate_ack(id, &epoch, original.as_ref(), op_id.as_deref());
                return self.send_text(ack).await;
            }
            // Nothing to change: answered like a repeat, as of the head.
            Ok(Applied::Unchanged { id, epoch, .. }) => {
                let ack = self.duplicate_ack(id, &epoch, None, op_id.as_deref());
                return self.send_text(ack).await;
            }
            Err(e) => {
                // The same code and message as REST gives; seed 000's `error` names the kind.
                let error = match e {
                    SubmitError::Rejected(_) => "Validation failed",
                    SubmitError::Unavailable(_) => "Service unavailable",
                };
                (error, ApiError::from(e))
            }
        };
        let (
            error,
            ApiError {
                code,
                message: reason,
                ..
            },
        ) = error;
        let original_event = Some(event.into());
        let refusal = ProtocolError {
            error,
            code,
            reason,
            original_event,
        };
        self.send_error_for(refusal, op_id.as_deref()).await
    }

    /// The ack of a retried command: the original event's when the log still has it
    /// (`docs/protocol.md` §2.5), sent outside the stream order.
    fn duplicate_ack(
        &self,
        id: u64,
        epoch: &str,
        original: Option<&StoredEvent>,
        op_id: Option<&str>,
    ) -> String {
        let home = self.principal.home_site();
        let (event, data, site, at) = match original {
            Some(e) => (e.event.as_str(), e.data.as_str(), &*e.site, e.created_at),
            None => ("", "null", &*home, now_millis()),
        };
        encode_ack(
            &EventParts {
                id,
                prev: id.saturating_sub(1),
                epoch,
                event,
                data,
                client_id: &self.client_id,
                timestamp_ms: at,
                scope: Scope {
                    tenant_id: &self.stream.tenant,
                    site_id: site,
                },
                op_id,
            },
            true,
        )
    }

    async fn on_heartbeat(&mut self) -> Result<(), End> {
        if let Some(slot) = self
            .slot
            .as_ref()
            .filter(|_| self.principal.expires_at.is_none())
        {
            slot.refresh_soon(slot_ttl(&self.principal, &self.state));
        }
        if !std::mem::replace(&mut self.alive, false) {
            tracing::debug!(client_id = %self.client_id, "ws: no answer to ping; dropping dead connection");
            return self
                .close(close::PROTOCOL, "no answer to ping".into())
                .await;
        }
        crate::presence::alive(&self.state, &self.principal).await;
        if !credential_still_valid(self.state.store.clone(), &self.principal).await {
            return self
                .close(
                    close::POLICY,
                    "the credential was revoked or its session ended".into(),
                )
                .await;
        }
        self.send(Message::Ping(Default::default())).await
    }

    // ---- resume ----------------------------------------------------------------------

    /// A client's `request_sync`: served now if the credential's request budget allows,
    /// otherwise deferred (or merged with the one already waiting).
    async fn request_sync(&mut self, after: u64, epoch: Option<String>) -> Result<(), End> {
        if let Some(waiting) = &mut self.deferred {
            waiting.after = waiting.after.min(after);
            waiting.epoch = epoch;
            waiting.requests = waiting.requests.saturating_add(1);
            return Ok(());
        }
        match self.budget() {
            Ok(()) => self.sync(after, epoch).await,
            Err(retry) => {
                self.deferred = Some(DeferredSync {
                    after,
                    epoch,
                    at: Instant::now() + retry,
                    requests: 1,
                });
                Ok(())
            }
        }
    }

    /// The deferred `request_sync`s' time has come: one replay, then a `sync_complete`
    /// for each request merged into it.
    async fn on_deferred_sync(&mut self) -> Result<(), End> {
        let Some(mut waiting) = self.deferred.take() else {
            return Ok(());
        };
        if let Err(retry) = self.budget() {
            waiting.at = Instant::now() + retry;
            self.deferred = Some(waiting);
            return Ok(());
        }
        self.sync(waiting.after, waiting.epoch).await?;
        for _ in 1..waiting.requests {
            let done = encode_sync_complete(self.cursor, &self.stream.epoch, 0);
            self.send_text(done).await?;
        }
        Ok(())
    }

    /// Counts one request against the credential's budget; `Err(retry_after)` over it.
    fn budget(&self) -> Result<(), Duration> {
        let counted = self
            .state
            .limits
            .per_credential
            .hit(&self.principal.rate_key());
        if counted.is_err() {
            self.state.metrics.rate_limited("credential");
        }
        counted
    }

    /// Replays every event after `after`, or sends a full refresh when the log no longer
    /// has them (or the client's `epoch` is not the stream's); then `sync_complete`.
    async fn sync(&mut self, after: u64, epoch: Option<String>) -> Result<(), End> {
        let tenant = self.stream.tenant.clone();
        let mut from = after;
        let mut prev = after;
        let mut replayed = 0;
        let stale_epoch = epoch.as_deref().is_some_and(|e| e != &*self.stream.epoch);
        if stale_epoch {
            self.full_refresh("epoch changed: the event log was replaced")
                .await?;
        } else {
            loop {
                let page = match self.state.store.replay(&tenant, from, REPLAY_PAGE).await {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::error!(error = %e, "ws: replay failed");
                        return self
                            .close(
                                close::SERVICE_RESTART,
                                "replay failed; reconnect to retry".into(),
                            )
                            .await;
                    }
                };
                if !page.covers(from) {
                    let reason = if from > page.head {
                        "lastEventId is ahead of this server's log"
                    } else {
                        "missed events are older than the log keeps"
                    };
                    self.full_refresh(reason).await?;
                    break;
                }
                let full_page = page.events.len() == REPLAY_PAGE;
                let auth = self.state.auth.clone();
                let routes = &auth.modules;
                for event in &page.events {
                    from = event.id;
                    if !self.principal.receives(routes, &event.event, &event.site) {
                        continue;
                    }
                    let frame = encode_event(&EventParts {
                        id: event.id,
                        prev,
                        epoch: &page.epoch,
                        event: &event.event,
                        data: &event.data,
                        client_id: &event.client_id,
                        timestamp_ms: event.created_at,
                        scope: Scope {
                            tenant_id: &tenant,
                            site_id: &event.site,
                        },
                        op_id: event.op_id.as_deref(),
                    });
                    prev = event.id;
                    self.send_text(frame).await?;
                    replayed += 1;
                }
                self.cursor = self.cursor.max(from);
                self.flush().await?;
                if !full_page {
                    break;
                }
            }
        }
        self.last_sent = self.cursor;
        self.state.metrics.replays.inc();
        self.state.metrics.replayed_events.inc_by(replayed as u64);
        let done = encode_sync_complete(self.cursor, &self.stream.epoch, replayed);
        self.send_text(done).await
    }

    async fn full_refresh(&mut self, reason: &str) -> Result<(), End> {
        self.state.metrics.full_refreshes.inc();
        let snapshot = match self
            .state
            .store
            .snapshot(&self.stream.tenant, &self.principal.home_site())
            .await
        {
            Ok(snapshot) => snapshot,
            Err(e) => {
                tracing::error!(error = %e, "ws: snapshot failed");
                return self
                    .close(
                        close::SERVICE_RESTART,
                        "snapshot failed; reconnect to retry".into(),
                    )
                    .await;
            }
        };
        let levels: Vec<StockLevel> = snapshot
            .stock
            .iter()
            .map(|r| StockLevel {
                product_id: r.product_id,
                stock: r.on_hand,
            })
            .collect();
        self.cursor = self.cursor.max(snapshot.head);
        self.last_sent = self.cursor;
        let frame = encode_full_refresh(
            reason,
            &snapshot.epoch,
            snapshot.head,
            &levels,
            now_millis(),
        );
        self.send_text(frame).await
    }

    // ---- shutdown --------------------------------------------------------------------

    /// Waits (bounded) for this connection's commands, delivers what they produced, and
    /// closes with a reason that tells the client to reconnect.
    async fn finish(&mut self) -> Result<(), End> {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while !self.in_flight.is_empty() {
            match tokio::time::timeout_at(deadline, self.in_flight.next()).await {
                Ok(Some(done)) => self.on_result(done).await?,
                _ => break,
            }
        }
        while let Ok(event) = self.live.try_recv() {
            self.deliver(&event).await?;
        }
        self.flush().await?;
        let reason = format!(
            "server shutting down; reconnect with lastEventId={}",
            self.cursor
        );
        self.close(close::SERVICE_RESTART, reason).await.or(Ok(()))
    }
}

/// Close reasons are limited to 123 bytes.
fn truncate(mut text: String) -> String {
    if text.len() > 120 {
        let mut end = 120;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Whether the session (access tokens) or key (API keys) a connection authenticated with is
/// still live: logout and revocation end open connections within one ping interval, on
/// every instance. A database that cannot answer keeps the connection.
async fn credential_still_valid(store: stocky_store::Store, principal: &Principal) -> bool {
    let tenant = principal.tenant.to_string();
    let id = principal.id.to_string();
    let check = match (principal.kind, principal.session.clone()) {
        (Kind::User, Some(session)) => store.accounts(move |a| a.session_active(&session)).await,
        (Kind::ApiKey, _) => {
            store
                .accounts(move |a| a.api_key_active(&tenant, &id))
                .await
        }
        _ => return true,
    };
    check.unwrap_or(true)
}
