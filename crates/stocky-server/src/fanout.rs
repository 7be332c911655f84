//! Fan-out of committed events to live connections.
//!
//! Each tenant stream has one `tokio::sync::broadcast` ring of `send_queue` slots. An event
//! is encoded once (`LiveEvent`, the one place that renders event frames and acks), by the
//! first connection that sends it — on a connection's task, not on the store's writer
//! thread, which emits the event and goes on with its next commit — and the same bytes are
//! shared by every connection: a delivery costs a reference-count increment, and each
//! connection's writer drains everything it has pending and flushes once. The ring is the
//! bound of every per-connection queue: a connection that falls `send_queue` events behind
//! finds itself lagged and is disconnected with a resync reason, so a slow consumer never
//! slows anyone else down and never silently misses an event.
//!
//! Invariant: `head` is stored before the event is sent, so a connection that subscribes
//! and then reads `head` receives every event after `head` on its receiver.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use axum::extract::ws::Utf8Bytes;
use stocky_core::protocol::{encode_ack, encode_event, EventParts, Scope};
use stocky_store::{CommittedEvent, EventSink, StreamHead};
use tokio::sync::{broadcast, mpsc};

/// A committed event as connections receive it: encoded once with `prev = id - 1` (what
/// a connection entitled to every event sees) by the first connection that needs it, and
/// re-encoded at most once per other `prev` — in practice once per audience whose routing
/// skips events.
#[derive(Debug)]
pub struct LiveEvent {
    pub id: u64,
    pub site: Arc<str>,
    pub event: Arc<str>,
    pub origin_connection: u64,
    committed: CommittedEvent,
    frame: OnceLock<Utf8Bytes>,
    /// Only the sender's connection (`origin_connection`) asks for it.
    ack: OnceLock<Utf8Bytes>,
    /// Frames for other `prev` values; short-lived (the event leaves the ring soon).
    variants: Mutex<Vec<(u64, Utf8Bytes)>>,
}

impl LiveEvent {
    /// The event, its frames not encoded yet.
    fn new(committed: CommittedEvent) -> LiveEvent {
        LiveEvent {
            id: committed.id,
            site: committed.site.clone(),
            event: committed.event.clone(),
            origin_connection: committed.origin_connection,
            committed,
            frame: OnceLock::new(),
            ack: OnceLock::new(),
            variants: Mutex::new(Vec::new()),
        }
    }

    fn parts(&self, prev: u64) -> EventParts<'_> {
        parts_of(&self.committed, prev)
    }

    /// The event frame for a connection whose previous event was `prev`.
    pub fn frame_after(&self, prev: u64) -> Utf8Bytes {
        if prev + 1 == self.id {
            return self
                .frame
                .get_or_init(|| encode_event(&self.parts(prev)).into())
                .clone();
        }
        let Ok(mut variants) = self.variants.lock() else {
            return encode_event(&self.parts(prev)).into();
        };
        if let Some((_, frame)) = variants.iter().find(|(p, _)| *p == prev) {
            return frame.clone();
        }
        let frame: Utf8Bytes = encode_event(&self.parts(prev)).into();
        variants.push((prev, frame.clone()));
        frame
    }

    /// The sender's ack, for a connection whose previous event was `prev`.
    pub fn ack_after(&self, prev: u64) -> Utf8Bytes {
        if prev + 1 == self.id {
            return self
                .ack
                .get_or_init(|| encode_ack(&self.parts(prev), false).into())
                .clone();
        }
        encode_ack(&self.parts(prev), false).into()
    }
}

/// The parts of `c`'s frame for a connection whose previous event was `prev`.
fn parts_of(c: &CommittedEvent, prev: u64) -> EventParts<'_> {
    EventParts {
        id: c.id,
        prev,
        epoch: &c.epoch,
        event: &c.event,
        data: &c.data,
        client_id: &c.client_id,
        timestamp_ms: c.timestamp_ms,
        scope: Scope {
            tenant_id: &c.tenant,
            site_id: &c.site,
        },
        op_id: c.op_id.as_deref(),
    }
}

/// A committed event that did not originate on this instance (read from the log, or
/// from another instance over the bus): nobody here gets an ack for it.
pub fn foreign_event(parts: &EventParts<'_>) -> CommittedEvent {
    CommittedEvent {
        tenant: parts.scope.tenant_id.into(),
        site: parts.scope.site_id.into(),
        id: parts.id,
        epoch: parts.epoch.into(),
        event: parts.event.into(),
        data: parts.data.into(),
        client_id: parts.client_id.into(),
        op_id: parts.op_id.map(str::to_owned),
        timestamp_ms: parts.timestamp_ms,
        origin_connection: 0,
    }
}

/// What a connection's receiver gets.
#[derive(Debug, Clone)]
pub enum Delivery {
    Event(Arc<LiveEvent>),
    /// The stream had to skip events it could not recover (pruned before they could be
    /// back-filled): every connection must resync instead of missing them silently.
    Resync,
}

/// Events held back because an earlier one is missing, at most.
const MAX_PENDING: usize = 10_000;

/// One tenant's live stream.
///
/// Events are emitted strictly in id order: one that arrives ahead of a missing id (from
/// another instance's bus, or a writer in another process) waits in `pending` while the
/// back-filler reads the missing ones from the log.
pub struct Stream {
    pub tenant: Arc<str>,
    pub epoch: Arc<str>,
    head: AtomicU64,
    connections: AtomicUsize,
    tx: broadcast::Sender<Delivery>,
    pending: Mutex<BTreeMap<u64, CommittedEvent>>,
}

impl Stream {
    /// Last id published on this stream.
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// Open WebSocket connections of this tenant.
    pub fn connected(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Counts a connection for as long as the guard lives.
    pub fn connection_guard(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Delivery> {
        self.tx.subscribe()
    }

    /// Emits `event` (the next id) to every connection; returns how many got it.
    fn emit(&self, event: CommittedEvent) -> usize {
        self.head.store(event.id, Ordering::Release);
        let origin = event.origin_connection;
        let live = LiveEvent::new(event);
        let receivers = self.tx.send(Delivery::Event(Arc::new(live))).unwrap_or(0);
        // The sender's own connection gets an ack, not the event.
        if origin != 0 {
            receivers.saturating_sub(1)
        } else {
            receivers
        }
    }

    /// Gives up on the events before `next`: they are gone from the log. Connections are
    /// told to resync; the stream continues at `next`.
    pub fn skip_to(&self, next: u64) {
        let _pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if next > self.head() + 1 {
            tracing::warn!(tenant = %self.tenant, from = self.head() + 1, to = next - 1, "fan-out: events lost before delivery; connections must resync");
            self.head.store(next - 1, Ordering::Release);
            let _ = self.tx.send(Delivery::Resync);
        }
    }
}

pub struct Fanout {
    streams: RwLock<HashMap<Arc<str>, Arc<Stream>>>,
    capacity: usize,
    /// Where tenants with a gap are reported (the back-filler), once it runs.
    gaps: OnceLock<mpsc::Sender<Arc<str>>>,
    /// Where this instance's commits go for the other instances (the bus), if one runs.
    relay: OnceLock<mpsc::Sender<CommittedEvent>>,
    /// Deliveries and group commits are counted here.
    metrics: Arc<crate::metrics::Metrics>,
}

impl Fanout {
    /// A fan-out whose streams buffer `capacity` events per connection at most.
    pub fn new(capacity: usize) -> Self {
        Self {
            streams: RwLock::default(),
            capacity: capacity.max(1),
            gaps: OnceLock::new(),
            relay: OnceLock::new(),
            metrics: Arc::default(),
        }
    }

    /// Open WebSocket connections of every tenant on this instance (what each stream
    /// counts; the `stocky_ws_connections` gauge is read from it).
    pub fn connections(&self) -> usize {
        let streams = self.streams.read().unwrap_or_else(|e| e.into_inner());
        streams.values().map(|s| s.connected()).sum()
    }

    /// Where deliveries and group commits are counted.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// Counts into `metrics` (the gateway's) instead of a private set.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Opens a live stream for each head (called once the store is open, before any
    /// command can be submitted).
    pub fn add_streams(&self, heads: &[StreamHead]) {
        for h in heads {
            self.stream_or_insert(h);
        }
    }

    /// The tenant's stream, created from `head` if it has none yet (tenants created while
    /// the hub runs). Whoever comes first — the writer publishing, or a connection that
    /// read the head from the database — creates it; the other one joins it.
    pub fn stream_or_insert(&self, head: &StreamHead) -> Arc<Stream> {
        if let Some(stream) = self.stream(&head.tenant) {
            return stream;
        }
        let mut streams = self
            .streams
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        streams
            .entry(head.tenant.clone())
            .or_insert_with(|| {
                let (tx, _) = broadcast::channel(self.capacity);
                Arc::new(Stream {
                    tenant: head.tenant.clone(),
                    epoch: head.epoch.clone(),
                    head: AtomicU64::new(head.head),
                    connections: AtomicUsize::new(0),
                    tx,
                    pending: Mutex::new(BTreeMap::new()),
                })
            })
            .clone()
    }

    /// Connects the back-filler: tenants with a gap are sent to `gaps`.
    pub fn report_gaps_to(&self, gaps: mpsc::Sender<Arc<str>>) {
        let _ = self.gaps.set(gaps);
    }

    /// Connects the bus: this instance's commits are also sent to `relay`.
    pub fn relay_to(&self, relay: mpsc::Sender<CommittedEvent>) {
        let _ = self.relay.set(relay);
    }

    pub fn stream(&self, tenant: &str) -> Option<Arc<Stream>> {
        self.streams.read().ok()?.get(tenant).cloned()
    }
}

/// Counts a connection on its tenant's stream for as long as it lives.
pub struct ConnectionGuard(Arc<Stream>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EventSink for Fanout {
    /// A commit of this instance: relayed to the other instances (when a bus runs) and
    /// delivered here.
    fn publish(&self, event: CommittedEvent) -> usize {
        if let Some(relay) = self.relay.get() {
            if relay.try_send(event.clone()).is_err() {
                // Peers recover it from the log (see `follow`); nothing is lost.
                tracing::debug!(id = event.id, "bus: relay queue full; peers will back-fill");
            }
        }
        self.deliver(event)
    }

    fn batch_done(&self, report: &stocky_store::BatchReport) {
        self.metrics.record_batch(report);
    }
}

impl Fanout {
    /// Emits in id order: duplicates are dropped, an event ahead of a missing id waits
    /// (and asks the back-filler for the missing ones), and each emitted event releases
    /// the ones waiting behind it. Returns how many connections got it.
    /// Asks the back-filler to compare every stream with the log (the bus was away, so
    /// events of other instances may have been missed).
    pub fn check_all_streams(&self) {
        let Some(gaps) = self.gaps.get() else { return };
        let tenants: Vec<Arc<str>> = match self.streams.read() {
            Ok(streams) => streams.keys().cloned().collect(),
            Err(_) => return,
        };
        for tenant in tenants {
            let _ = gaps.try_send(tenant);
        }
    }

    pub fn deliver(&self, event: CommittedEvent) -> usize {
        let stream = self.stream_or_insert(&StreamHead {
            tenant: event.tenant.clone(),
            epoch: event.epoch.clone(),
            head: event.id - 1,
        });
        if stream.epoch != event.epoch {
            // Another history: a deployment sharing this Redis with another database, or
            // a log replaced by a restore (which clients learn about from the log).
            return 0;
        }
        let mut pending = stream.pending.lock().unwrap_or_else(|p| p.into_inner());
        let head = stream.head();
        if event.id <= head {
            return 0;
        }
        if event.id > head + 1 {
            if pending.len() >= MAX_PENDING {
                // The back-filler re-reads everything after the head from the log.
                pending.clear();
            }
            pending.insert(event.id, event);
            if let Some(gaps) = self.gaps.get() {
                let _ = gaps.try_send(stream.tenant.clone());
            }
            return stream.tx.receiver_count();
        }
        let sent = stream.emit(event);
        let mut delivered = sent;
        while let Some(next) = pending.remove(&(stream.head() + 1)) {
            delivered += stream.emit(next);
        }
        let head = stream.head();
        pending.retain(|id, _| *id > head);
        self.metrics.deliveries.inc_by(delivered as u64);
        sent
    }
}
