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
//!   until one finishes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use stocky_core::protocol::{
    encode_error, encode_event, encode_full_refresh, encode_pong, encode_sync_complete,
    encode_welcome, parse_client_message, ClientMessage, EventParts, ProtocolError, Scope,
    StockLevel,
};
use stocky_core::time::now_millis;
use stocky_core::DEFAULT_SITE;
use stocky_store_sqlite::{Applied, Origin, SubmitError};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;
use tokio::time::{interval_at, timeout, Duration, Instant, MissedTickBehavior};

use crate::fanout::{LiveEvent, Stream};
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

/// Close codes (documented in `docs/protocol.md`).
pub mod close {
    /// Server restarting or shutting down: reconnect (with `lastEventId`).
    pub const SERVICE_RESTART: u16 = 1012;
    /// The connection fell too far behind: reconnect with `lastEventId` to resync.
    pub const RESYNC: u16 = 4000;
    /// A message above the hard size cap.
    pub const TOO_BIG: u16 = 1009;
    /// Protocol violation.
    pub const PROTOCOL: u16 = 1002;
}

/// The connection is over (closed by either side or broken).
struct End;

/// A command waiting for the writer: its event name and `opId` (for the error, if any) and
/// the writer's answer.
type Answer = (&'static str, Option<String>, Result<Applied, SubmitError>);
type Pending = Pin<Box<dyn Future<Output = Answer> + Send>>;

struct Session {
    socket: WebSocket,
    state: AppState,
    stream: Arc<Stream>,
    live: Receiver<Arc<LiveEvent>>,
    connection: u64,
    client_id: Arc<str>,
    cursor: u64,
    /// Something arrived since the last heartbeat.
    alive: bool,
    /// Frames were fed since the last flush.
    dirty: bool,
    in_flight: FuturesOrdered<Pending>,
}

pub(super) async fn run(socket: WebSocket, state: AppState, resume: Option<(u64, Option<String>)>) {
    let _counted = state.fanout.connection_guard();
    let stream = state.default_stream();
    // Subscribe before reading the head: every event after `cursor` reaches `live`.
    let live = stream.subscribe();
    let cursor = stream.head();
    let client_id: Arc<str> = new_client_id().into();
    let connection = state.next_connection_id();
    tracing::debug!(%client_id, connection, "ws: connected");
    let mut session = Session {
        socket,
        state,
        stream,
        live,
        connection,
        client_id,
        cursor,
        alive: true,
        dirty: false,
        in_flight: FuturesOrdered::new(),
    };
    let _ = session.serve(resume).await;
    tracing::debug!(client_id = %session.client_id, "ws: disconnected");
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
    async fn serve(&mut self, resume: Option<(u64, Option<String>)>) -> Result<(), End> {
        let welcome = encode_welcome(
            &self.client_id,
            self.cursor,
            &self.stream.epoch,
            now_millis(),
        );
        self.send(Message::Text(welcome.into())).await?;
        if let Some((after, epoch)) = resume {
            self.sync(after, epoch).await?;
        }
        self.flush().await?;

        let shutdown = self.state.shutdown.clone();
        let period = self.state.config.ping_interval;
        let mut heartbeat = interval_at(Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return self.finish().await,
                received = self.live.recv() => self.on_live(received).await?,
                Some(done) = self.in_flight.next(), if !self.in_flight.is_empty() => self.on_result(done).await?,
                _ = heartbeat.tick() => self.on_heartbeat().await?,
                inbound = self.socket.recv(), if self.in_flight.len() < MAX_IN_FLIGHT => self.on_inbound(inbound).await?,
            }
            self.flush().await?;
        }
    }

    // ---- writing -------------------------------------------------------------------

    /// Queues a frame in the socket's write buffer (written when the buffer fills or on
    /// [`Session::flush`]).
    async fn send(&mut self, message: Message) -> Result<(), End> {
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

    async fn on_live(&mut self, received: Result<Arc<LiveEvent>, RecvError>) -> Result<(), End> {
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

    async fn deliver(&mut self, event: &LiveEvent) -> Result<(), End> {
        if event.id <= self.cursor {
            return Ok(());
        }
        self.cursor = event.id;
        let text = if event.origin_connection == self.connection {
            &event.ack
        } else {
            &event.frame
        };
        self.send(Message::Text(text.clone())).await
    }

    async fn lagged(&mut self) -> Result<(), End> {
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
            Err(e) => self.send_error(e).await,
            Ok(ClientMessage::Ping) => self.send_text(encode_pong(now_millis())).await,
            Ok(ClientMessage::RequestSync {
                last_event_id,
                epoch,
            }) => self.sync(last_event_id, epoch).await,
            Ok(ClientMessage::Command { command, op_id }) => {
                let event = command.op.event_name();
                let store = self.state.store.clone();
                let origin = Origin {
                    tenant: self.stream.tenant.clone(),
                    site: DEFAULT_SITE.into(),
                    connection: self.connection,
                    client_id: self.client_id.clone(),
                    op_id: op_id.clone(),
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
            Ok(Applied::Duplicate { ack, .. }) => return self.send_text(ack).await,
            Err(SubmitError::Rejected(r)) => ("Validation failed", r.code(), r.to_string()),
            Err(SubmitError::Unavailable(why)) => {
                tracing::warn!(error = %why, "ws: command not applied: storage unavailable");
                (
                    "Service unavailable",
                    "unavailable",
                    "storage unavailable; nothing was changed, retry later".into(),
                )
            }
        };
        let (error, code, reason) = error;
        let original_event = Some(event.into());
        let refusal = ProtocolError {
            error,
            code,
            reason,
            original_event,
        };
        self.send_error_for(refusal, op_id.as_deref()).await
    }

    async fn on_heartbeat(&mut self) -> Result<(), End> {
        if !std::mem::replace(&mut self.alive, false) {
            tracing::debug!(client_id = %self.client_id, "ws: no answer to ping; dropping dead connection");
            return self
                .close(close::PROTOCOL, "no answer to ping".into())
                .await;
        }
        self.send(Message::Ping(Default::default())).await
    }

    // ---- resume ----------------------------------------------------------------------

    /// Replays every event after `after`, or sends a full refresh when the log no longer
    /// has them (or the client's `epoch` is not the stream's); then `sync_complete`.
    async fn sync(&mut self, after: u64, epoch: Option<String>) -> Result<(), End> {
        let tenant = self.stream.tenant.clone();
        let mut from = after;
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
                for event in &page.events {
                    let frame = encode_event(&EventParts {
                        id: event.id,
                        prev: event.id - 1,
                        epoch: &page.epoch,
                        event: &event.event,
                        data: &event.data,
                        client_id: &event.client_id,
                        timestamp_ms: event.created_at,
                        scope: Scope {
                            tenant_id: &tenant,
                            site_id: &event.site,
                        },
                    });
                    self.send_text(frame).await?;
                    from = event.id;
                    replayed += 1;
                }
                self.cursor = self.cursor.max(from);
                self.flush().await?;
                if !full_page {
                    break;
                }
            }
        }
        let done = encode_sync_complete(self.cursor, &self.stream.epoch, replayed);
        self.send_text(done).await
    }

    async fn full_refresh(&mut self, reason: &str) -> Result<(), End> {
        let snapshot = match self
            .state
            .store
            .snapshot(&self.stream.tenant, DEFAULT_SITE)
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
