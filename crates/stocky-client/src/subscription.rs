//! [`Subscription`]: a live, resumable event stream from a hub or edge.
//!
//! One task per subscription owns the WebSocket. It connects with the position it has
//! (`?lastEventId&epoch`), follows the `prev` chain of every frame, asks `request_sync`
//! when the chain breaks, hands `full_refresh` snapshots to the caller, reconnects with
//! exponential backoff and jitter, follows the close codes ([`close::action`]) and refreshes
//! the session's access token before it expires.
//!
//! Invariants:
//! - events reach the caller in id order, each once, with no hole in the chain the server
//!   sent (a frame outside the chain is never handed out; the replay that follows covers it);
//! - the caller's own commands come back as [`Update::Applied`] (their ack, or their echo in a
//!   replay recognised by `opId`), never as [`Update::Event`];
//! - every command is sent with an `opId`, kept until the server answers it, and sent again
//!   after a reconnect, so a command is applied at most once and answered at least once;
//! - queues are bounded: [`SubscribeOptions::queue`] updates wait for the caller (the task
//!   then stops reading the socket, and the server eventually asks for a resync), and at
//!   most [`MAX_PENDING`] commands wait for an answer (then [`Subscription::send`] waits).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use stocky_core::protocol::close::{self, CloseAction};
use stocky_core::protocol::connect::{
    encode_command, encode_ping, encode_request_sync, ConnectParams,
};
use stocky_core::protocol::server::{
    parse_server_message, Ack, AuthSuccess, CommandError, EventFrame, FullRefresh, ServerMessage,
};
use stocky_core::stock::StockCommand;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::client::Client;
use crate::error::ClientError;

/// Commands waiting for their answer at most.
pub const MAX_PENDING: usize = 1024;

/// Where a subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// From the stream's head when it connects: only changes from now on.
    Now,
    /// After this event id of this epoch (`0` and `None`: everything the log still has, or
    /// a `full_refresh`).
    After {
        last_event_id: u64,
        epoch: Option<String>,
    },
}

/// Exponential backoff with jitter: attempt `n` waits a random time between half and all
/// of `min(initial · 2ⁿ, max)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(15),
        }
    }
}

impl Backoff {
    /// The wait before attempt `attempt` (1 = the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let ceiling = exp.min(self.max);
        ceiling.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

/// How a subscription behaves.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    pub start: Start,
    /// The device slot (one connection per user and device).
    pub device_id: Option<String>,
    /// Send the position on (re)connect (`?lastEventId&epoch`) so the server replays at
    /// once. When false, the subscription connects without it and catches up with
    /// `request_sync` as soon as it sees that it is behind (a gap).
    pub resume_on_connect: bool,
    pub backoff: Backoff,
    /// Consecutive failed attempts before giving up; `None` retries for ever.
    pub max_attempts: Option<u32>,
    /// Updates that may wait for the caller.
    pub queue: usize,
    /// Reconnect when nothing at all arrived for this long (the task pings at a third of it).
    pub idle_timeout: Duration,
}

impl SubscribeOptions {
    pub fn new(start: Start) -> Self {
        SubscribeOptions {
            start,
            device_id: None,
            resume_on_connect: true,
            backoff: Backoff::default(),
            max_attempts: None,
            queue: 1024,
            idle_timeout: Duration::from_secs(90),
        }
    }

    pub fn device(mut self, device_id: impl Into<String>) -> Self {
        self.device_id = Some(device_id.into());
        self
    }
}

/// What a subscription hands out, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Authenticated (again): who the connection is and the server's head.
    Connected(AuthSuccess),
    /// A change made by someone else, next in the chain.
    Event(EventFrame),
    /// One of this subscription's commands committed (`duplicate`: it had been already).
    Applied(Ack),
    /// One of this subscription's commands was refused (or a message it sent was invalid).
    Rejected(CommandError),
    /// The missed events are gone: here is the whole stock as of `last_event_id`; events
    /// continue after it.
    FullRefresh(FullRefresh),
    /// A replay (on resume, or after a gap) is over; the position is `last_event_id`.
    Synced { last_event_id: u64, epoch: String },
    /// The connection ended; the subscription reconnects in `retry_in`.
    Disconnected {
        code: Option<u16>,
        reason: String,
        retry_in: Duration,
    },
}

/// A live subscription; dropping it closes the connection.
pub struct Subscription {
    updates: mpsc::Receiver<Result<Update, ClientError>>,
    commands: Option<mpsc::Sender<Outgoing>>,
    position: Arc<Mutex<Position>>,
    task: Option<JoinHandle<()>>,
}

/// The last event id dealt with and its epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Position {
    last_event_id: Option<u64>,
    epoch: Option<String>,
}

struct Outgoing {
    op_id: String,
    text: String,
}

impl Subscription {
    pub(crate) fn start(client: Client, options: SubscribeOptions) -> Subscription {
        let (update_tx, updates) = mpsc::channel(options.queue.max(1));
        let (commands_tx, commands) = mpsc::channel(64);
        let start = match &options.start {
            Start::Now => Position::default(),
            Start::After {
                last_event_id,
                epoch,
            } => Position {
                last_event_id: Some(*last_event_id),
                epoch: epoch.clone(),
            },
        };
        let position = Arc::new(Mutex::new(start.clone()));
        let worker = Worker {
            client,
            options,
            updates: update_tx,
            commands,
            position: position.clone(),
            tracker: Tracker {
                position: start,
                ..Tracker::default()
            },
            pending: HashMap::new(),
            order: Vec::new(),
        };
        let task = tokio::spawn(worker.run());
        Subscription {
            updates,
            commands: Some(commands_tx),
            position,
            task: Some(task),
        }
    }

    /// The next update; `None` once the subscription has ended (after its last error).
    pub async fn next(&mut self) -> Option<Result<Update, ClientError>> {
        self.updates.recv().await
    }

    /// Sends a stock command over the socket (now, or once connected); the answer arrives
    /// as [`Update::Applied`] or [`Update::Rejected`]. Returns the `opId` used (`op_id`, or
    /// a fresh one).
    pub async fn send(
        &self,
        command: &StockCommand,
        op_id: Option<String>,
    ) -> Result<String, ClientError> {
        let op_id = op_id.unwrap_or_else(random_op_id);
        let text = encode_command(command, Some(&op_id));
        let sender = self
            .commands
            .as_ref()
            .ok_or_else(|| ClientError::Ended("closed".into()))?;
        sender
            .send(Outgoing {
                op_id: op_id.clone(),
                text,
            })
            .await
            .map_err(|_| ClientError::Ended("the subscription has stopped".into()))?;
        Ok(op_id)
    }

    /// The last event id dealt with and its epoch: persist them to resume later with
    /// [`Start::After`].
    pub fn position(&self) -> (Option<u64>, Option<String>) {
        let p = self.position.lock().unwrap_or_else(|e| e.into_inner());
        (p.last_event_id, p.epoch.clone())
    }

    /// Closes the connection (normal closure) and waits for the task to end.
    pub async fn close(mut self) {
        self.commands.take();
        self.updates.close();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Dropping the command sender ends the task at its next turn.
        self.commands.take();
    }
}

fn random_op_id() -> String {
    format!("sdk-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// The `prev`-chain logic, free of I/O.
#[derive(Debug, Default)]
struct Tracker {
    position: Position,
    /// A replay was asked for (on connect or after a gap) and `sync_complete` is due.
    syncing: bool,
    /// Ids of own events acked while outside the chain: when the replay brings them they
    /// advance the position without being handed out again.
    acked_ahead: BTreeSet<u64>,
}

/// What one frame means for the caller and the connection.
#[derive(Debug, Default, PartialEq)]
struct Step {
    updates: Vec<Update>,
    /// A message to send back (`request_sync`).
    reply: Option<String>,
    /// The connection authenticated.
    authenticated: bool,
}

impl Tracker {
    /// Whether a frame of the stream continues the chain (`Some(true)`), is already covered
    /// (`Some(false)`), or shows a gap (`None`, and a `request_sync` is needed).
    fn chain(&self, id: u64, prev: u64, epoch: &str) -> Option<bool> {
        let Some(last) = self.position.last_event_id else {
            return Some(true);
        };
        let same_epoch = self.position.epoch.as_deref().is_none_or(|e| e == epoch);
        if same_epoch && id <= last {
            return Some(false);
        }
        if same_epoch && prev == last {
            return Some(true);
        }
        None
    }

    fn advance(&mut self, id: u64, epoch: &str) {
        self.position.last_event_id = Some(id);
        if self.position.epoch.as_deref() != Some(epoch) {
            self.position.epoch = Some(epoch.to_owned());
        }
        self.acked_ahead = self.acked_ahead.split_off(&(id + 1));
    }

    fn request_sync(&mut self, step: &mut Step) {
        if !self.syncing {
            self.syncing = true;
            step.reply = Some(encode_request_sync(
                self.position.last_event_id.unwrap_or(0),
                self.position.epoch.as_deref(),
            ));
        }
    }

    /// Handles one server message; `own` tells whether an `opId` is one of ours (pending).
    fn on_message(&mut self, message: ServerMessage, own: &mut dyn FnMut(&str) -> bool) -> Step {
        let mut step = Step::default();
        match message {
            ServerMessage::Welcome(_) | ServerMessage::Pong | ServerMessage::AuthError { .. } => {}
            ServerMessage::AuthSuccess(auth) => {
                step.authenticated = true;
                match self.position.last_event_id {
                    None => {
                        self.position.last_event_id = Some(auth.last_event_id);
                        self.position.epoch = Some(auth.epoch.clone());
                    }
                    Some(last) => {
                        let behind = last != auth.last_event_id
                            || self.position.epoch.as_deref() != Some(auth.epoch.as_str());
                        if behind && !self.syncing {
                            self.request_sync(&mut step);
                        }
                    }
                }
                step.updates.push(Update::Connected(auth));
            }
            ServerMessage::Event(frame) => match self.chain(frame.id, frame.prev, &frame.epoch) {
                Some(false) => {}
                None if !self.syncing => self.request_sync(&mut step),
                None => {} // covered by the replay under way
                Some(true) => {
                    self.advance(frame.id, &frame.epoch);
                    let mine = frame.op_id.as_deref().is_some_and(&mut *own);
                    if mine {
                        step.updates.push(Update::Applied(echo_as_ack(frame)));
                    } else if !self.acked_ahead.remove(&frame.id) {
                        step.updates.push(Update::Event(frame));
                    }
                }
            },
            ServerMessage::Ack(ack) if ack.duplicate => {
                if ack.op_id.as_deref().is_some_and(&mut *own) {
                    step.updates.push(Update::Applied(ack));
                }
            }
            ServerMessage::Ack(ack) => {
                match self.chain(ack.id, ack.prev, &ack.epoch) {
                    Some(true) => self.advance(ack.id, &ack.epoch),
                    Some(false) => {}
                    None => {
                        self.acked_ahead.insert(ack.id);
                        self.request_sync(&mut step);
                    }
                }
                if ack.op_id.as_deref().is_none_or(&mut *own) {
                    step.updates.push(Update::Applied(ack));
                }
            }
            ServerMessage::CommandError(error) => {
                if error.op_id.as_deref().is_none_or(&mut *own) {
                    step.updates.push(Update::Rejected(error));
                }
            }
            ServerMessage::FullRefresh(refresh) => {
                self.advance(refresh.last_event_id, &refresh.epoch);
                step.updates.push(Update::FullRefresh(refresh));
            }
            ServerMessage::SyncComplete(done) => {
                let last = self
                    .position
                    .last_event_id
                    .unwrap_or(0)
                    .max(done.last_event_id);
                self.advance(last, &done.epoch);
                self.syncing = false;
                step.updates.push(Update::Synced {
                    last_event_id: last,
                    epoch: done.epoch,
                });
            }
        }
        step
    }
}

/// One's own change seen in a replay, reported like its ack would have been.
fn echo_as_ack(frame: EventFrame) -> Ack {
    Ack {
        id: frame.id,
        prev: frame.prev,
        epoch: frame.epoch,
        command: frame.event,
        data: frame.data,
        client_id: frame.client_id,
        timestamp: frame.timestamp,
        op_id: frame.op_id,
        duplicate: false,
    }
}

struct Worker {
    client: Client,
    options: SubscribeOptions,
    updates: mpsc::Sender<Result<Update, ClientError>>,
    commands: mpsc::Receiver<Outgoing>,
    position: Arc<Mutex<Position>>,
    tracker: Tracker,
    /// Commands sent (or to send) and not answered yet, by `opId`; `order` keeps send order.
    pending: HashMap<String, String>,
    order: Vec<String>,
}

/// How a connection ended.
enum Ended {
    /// The caller closed the subscription.
    Stop,
    Closed {
        code: Option<u16>,
        reason: String,
        authenticated: bool,
    },
}

/// The caller dropped the subscription.
struct Gone;

impl Worker {
    async fn run(mut self) {
        let mut failures: u32 = 0;
        let mut just_refreshed = false;
        loop {
            let token = match self.client.token().await {
                Ok(token) => token,
                Err(e) if e.is_transient() => {
                    failures += 1;
                    if self.pause(None, e.to_string(), failures).await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(e) => return self.fail(e).await,
            };
            let outcome = self.connect(token).await;
            let (code, reason, authenticated) = match outcome {
                Ok(Ended::Stop) | Err(Gone) => return,
                Ok(Ended::Closed {
                    code,
                    reason,
                    authenticated,
                }) => (code, reason, authenticated),
            };
            if authenticated {
                failures = 0;
            }
            match close::action(code) {
                CloseAction::GiveUp => return self.fail(ClientError::Ended(reason)).await,
                CloseAction::Reauthenticate
                    if !self.client.has_session() || (just_refreshed && !authenticated) =>
                {
                    return self.fail(ClientError::Ended(reason)).await
                }
                CloseAction::Reauthenticate => match self.client.refresh().await {
                    Ok(()) => {
                        just_refreshed = true;
                        continue; // straight back, with the new token
                    }
                    Err(e) if e.is_transient() => failures += 1,
                    Err(e) => {
                        return self
                            .fail(ClientError::Ended(format!("{reason}; refresh failed: {e}")))
                            .await
                    }
                },
                CloseAction::Reconnect => failures += 1,
            }
            just_refreshed = false;
            if self.pause(code, reason, failures).await.is_err() {
                return;
            }
        }
    }

    /// Waits before the next attempt (telling the caller), or gives up past the limit.
    async fn pause(
        &mut self,
        code: Option<u16>,
        reason: String,
        failures: u32,
    ) -> Result<(), Gone> {
        if self.options.max_attempts.is_some_and(|max| failures > max) {
            self.fail(ClientError::Ended(format!(
                "gave up after {} attempts: {reason}",
                failures - 1
            )))
            .await;
            return Err(Gone);
        }
        let retry_in = self.options.backoff.delay(failures);
        self.emit(Update::Disconnected {
            code,
            reason,
            retry_in,
        })
        .await?;
        let wake = Instant::now() + retry_in;
        loop {
            tokio::select! {
                _ = sleep_until(wake) => return Ok(()),
                // Keep taking commands while waiting (they go out after the reconnect).
                command = self.commands.recv(), if self.pending.len() < MAX_PENDING => {
                    match command {
                        Some(command) => self.remember(command),
                        None => return Err(Gone),
                    }
                }
            }
        }
    }

    async fn fail(&mut self, error: ClientError) {
        let _ = self.updates.send(Err(error)).await;
    }

    async fn emit(&mut self, update: Update) -> Result<(), Gone> {
        self.updates.send(Ok(update)).await.map_err(|_| Gone)
    }

    fn remember(&mut self, command: Outgoing) {
        if self
            .pending
            .insert(command.op_id.clone(), command.text)
            .is_none()
        {
            self.order.push(command.op_id);
        }
    }

    fn publish_position(&self) {
        let mut p = self.position.lock().unwrap_or_else(|e| e.into_inner());
        if *p != self.tracker.position {
            *p = self.tracker.position.clone();
        }
    }

    async fn connect(&mut self, token: Option<String>) -> Result<Ended, Gone> {
        let position = &self.tracker.position;
        let resume = self.options.resume_on_connect && position.last_event_id.is_some();
        let params = ConnectParams {
            token,
            device_id: self.options.device_id.clone(),
            last_event_id: position.last_event_id.filter(|_| resume),
            epoch: position.epoch.clone().filter(|_| resume),
        };
        let url = format!("{}?{}", self.client.ws_url(), params.to_query());
        let socket = match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((socket, _)) => socket,
            Err(e) => {
                let reason = match &e {
                    tokio_tungstenite::tungstenite::Error::Http(response) => {
                        let body = response
                            .body()
                            .as_deref()
                            .map(String::from_utf8_lossy)
                            .unwrap_or_default();
                        format!("upgrade refused: {} {body}", response.status())
                    }
                    other => format!("cannot connect: {other}"),
                };
                return Ok(Ended::Closed {
                    code: None,
                    reason,
                    authenticated: false,
                });
            }
        };
        self.tracker.syncing = resume;
        let (mut sink, mut stream) = socket.split();
        let mut authenticated = false;
        let mut auth_error = None;
        let idle = self.options.idle_timeout;
        let mut last_heard = Instant::now();
        let mut ping = tokio::time::interval_at(Instant::now() + idle / 3, idle / 3);
        let mut refresh_at = self.refresh_instant();
        loop {
            tokio::select! {
                frame = stream.next() => {
                    last_heard = Instant::now();
                    let text = match frame {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(frame))) => {
                            let (code, reason) = match frame {
                                Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                                None => (None, "closed without a code".to_owned()),
                            };
                            let reason = auth_error.take().unwrap_or(reason);
                            return Ok(Ended::Closed { code, reason, authenticated });
                        }
                        Some(Ok(_)) => continue, // pings are answered by the transport
                        Some(Err(e)) => {
                            return Ok(Ended::Closed { code: None, reason: e.to_string(), authenticated })
                        }
                        None => {
                            return Ok(Ended::Closed { code: None, reason: "connection ended".into(), authenticated })
                        }
                    };
                    let message = match parse_server_message(&text) {
                        Ok(message) => message,
                        Err(e) => {
                            tracing::warn!(error = %e, "ignoring a frame that is not the protocol's");
                            continue;
                        }
                    };
                    if let ServerMessage::AuthError { error } = &message {
                        auth_error = Some(error.clone());
                    }
                    let pending = &mut self.pending;
                    let mut answered = false;
                    let mut own = |op: &str| {
                        let mine = pending.remove(op).is_some();
                        answered |= mine;
                        mine
                    };
                    let step = self.tracker.on_message(message, &mut own);
                    if answered {
                        // Only when a command was answered: most frames are others' events.
                        self.order.retain(|op| self.pending.contains_key(op));
                    }
                    self.publish_position();
                    if let Some(reply) = step.reply {
                        if sink.send(Message::text(reply)).await.is_err() {
                            return Ok(Ended::Closed { code: None, reason: "send failed".into(), authenticated });
                        }
                    }
                    if step.authenticated {
                        authenticated = true;
                        // Unanswered commands go (again) now: their opId makes a repeat harmless.
                        for op in &self.order {
                            if let Some(text) = self.pending.get(op) {
                                if sink.feed(Message::text(text.clone())).await.is_err() {
                                    break;
                                }
                            }
                        }
                        let _ = sink.flush().await;
                    }
                    for update in step.updates {
                        self.emit(update).await?;
                    }
                }
                command = self.commands.recv(), if self.pending.len() < MAX_PENDING => {
                    let Some(command) = command else {
                        let _ = sink.send(Message::Close(Some(CloseFrame {
                            code: CloseCode::Normal,
                            reason: "client closed".into(),
                        }))).await;
                        return Ok(Ended::Stop);
                    };
                    let text = command.text.clone();
                    self.remember(command);
                    if authenticated && sink.send(Message::text(text)).await.is_err() {
                        return Ok(Ended::Closed { code: None, reason: "send failed".into(), authenticated });
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() >= idle {
                        return Ok(Ended::Closed {
                            code: None,
                            reason: format!("nothing heard for {idle:?}"),
                            authenticated,
                        });
                    }
                    if authenticated && sink.send(Message::text(encode_ping())).await.is_err() {
                        return Ok(Ended::Closed { code: None, reason: "send failed".into(), authenticated });
                    }
                }
                _ = wait_until(refresh_at) => {
                    // Refresh ahead of expiry so that the 4001 close is followed by an
                    // immediate reconnect with a valid token.
                    refresh_at = match self.client.refresh().await {
                        Ok(()) => self.refresh_instant(),
                        Err(e) => {
                            tracing::debug!(error = %e, "token refresh failed; retrying");
                            Some(Instant::now() + Duration::from_secs(5))
                        }
                    };
                }
            }
        }
    }

    /// When the session token should be refreshed, if the credential is a session.
    fn refresh_instant(&self) -> Option<Instant> {
        let deadline = self.client.refresh_deadline_ms()?;
        let wait = deadline
            .saturating_sub(stocky_core::time::now_millis())
            .max(0) as u64;
        Some(Instant::now() + Duration::from_millis(wait))
    }
}

async fn wait_until(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stocky_core::protocol::server::{EventScope, SyncComplete};

    fn event(id: u64, prev: u64, op_id: Option<&str>) -> ServerMessage {
        ServerMessage::Event(EventFrame {
            id,
            prev,
            epoch: "e".into(),
            event: "stock:add".into(),
            data: json!([]),
            client_id: "c".into(),
            timestamp: "t".into(),
            scope: EventScope {
                tenant_id: "t".into(),
                site_id: "s".into(),
            },
            op_id: op_id.map(str::to_owned),
        })
    }

    fn at(last: u64) -> Tracker {
        Tracker {
            position: Position {
                last_event_id: Some(last),
                epoch: Some("e".into()),
            },
            ..Tracker::default()
        }
    }

    fn ids(step: &Step) -> Vec<u64> {
        step.updates
            .iter()
            .filter_map(|u| match u {
                Update::Event(e) => Some(e.id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn chain_hands_out_in_order_once_and_asks_for_gaps() {
        let mut t = at(5);
        let mut none = |_: &str| false;
        assert_eq!(ids(&t.on_message(event(6, 5, None), &mut none)), [6]);
        assert!(
            ids(&t.on_message(event(6, 5, None), &mut none)).is_empty(),
            "duplicate"
        );
        // routed holes are fine: prev matches
        assert_eq!(ids(&t.on_message(event(9, 6, None), &mut none)), [9]);
        // a real gap: nothing handed out, one request_sync
        let step = t.on_message(event(12, 11, None), &mut none);
        assert!(ids(&step).is_empty());
        assert!(step
            .reply
            .as_deref()
            .unwrap()
            .contains(r#""lastEventId":9"#));
        let again = t.on_message(event(13, 12, None), &mut none);
        assert!(again.reply.is_none() && ids(&again).is_empty());
        // the replay from 9 fills in, then sync_complete
        assert_eq!(ids(&t.on_message(event(11, 9, None), &mut none)), [11]);
        assert!(ids(&t.on_message(event(12, 11, None), &mut none)) == [12]);
        assert_eq!(ids(&t.on_message(event(13, 12, None), &mut none)), [13]);
        t.on_message(
            ServerMessage::SyncComplete(SyncComplete {
                last_event_id: 13,
                epoch: "e".into(),
                replayed: 3,
            }),
            &mut none,
        );
        assert!(!t.syncing);
        assert_eq!(t.position.last_event_id, Some(13));
    }

    #[test]
    fn own_echoes_are_applied_not_events() {
        let mut t = at(1);
        let mut mine = |op: &str| op == "me";
        let step = t.on_message(event(2, 1, Some("me")), &mut mine);
        assert!(matches!(&step.updates[..], [Update::Applied(a)] if a.id == 2));
        let step = t.on_message(event(3, 2, Some("other")), &mut mine);
        assert_eq!(ids(&step), [3]);
    }

    #[test]
    fn backoff_grows_to_its_ceiling_with_jitter() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for attempt in 1..30 {
            let d = b.delay(attempt);
            let ceiling = Duration::from_millis(100 * (1u64 << (attempt - 1).min(20))).min(b.max);
            assert!(d <= ceiling && d >= ceiling / 2, "{attempt}: {d:?}");
        }
    }
}
