//! Fan-out of committed events to live connections.
//!
//! Each tenant stream has one `tokio::sync::broadcast` ring of `send_queue` slots. An event
//! is encoded once (by the writer) and the same bytes are shared by every connection: a
//! delivery costs a reference-count increment, and each connection's writer drains
//! everything it has pending and flushes once. The ring is the bound of every
//! per-connection queue: a connection that falls `send_queue` events behind finds itself
//! lagged and is disconnected with a resync reason, so a slow consumer never slows anyone
//! else down and never silently misses an event.
//!
//! Invariant: `head` is stored before the event is sent, so a connection that subscribes
//! and then reads `head` receives every event after `head` on its receiver.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::ws::Utf8Bytes;
use stocky_store_sqlite::{CommittedEvent, EventSink, StreamHead};
use tokio::sync::broadcast;

/// A committed event as connections receive it.
#[derive(Debug)]
pub struct LiveEvent {
    pub id: u64,
    pub site: Arc<str>,
    pub origin_connection: u64,
    pub frame: Utf8Bytes,
    pub ack: Utf8Bytes,
}

/// One tenant's live stream.
pub struct Stream {
    pub tenant: Arc<str>,
    pub epoch: Arc<str>,
    head: AtomicU64,
    tx: broadcast::Sender<Arc<LiveEvent>>,
}

impl Stream {
    /// Last id published on this stream.
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.tx.subscribe()
    }
}

pub struct Fanout {
    streams: RwLock<HashMap<Arc<str>, Arc<Stream>>>,
    connections: AtomicUsize,
    capacity: usize,
}

impl Fanout {
    /// A fan-out whose streams buffer `capacity` events per connection at most.
    pub fn new(capacity: usize) -> Self {
        Self {
            streams: RwLock::default(),
            connections: AtomicUsize::new(0),
            capacity: capacity.max(1),
        }
    }

    /// Opens a live stream for each head (called once the store is open, before any
    /// command can be submitted).
    pub fn add_streams(&self, heads: &[StreamHead]) {
        let Ok(mut streams) = self.streams.write() else {
            return;
        };
        for h in heads {
            let (tx, _) = broadcast::channel(self.capacity);
            let stream = Stream {
                tenant: h.tenant.clone(),
                epoch: h.epoch.clone(),
                head: AtomicU64::new(h.head),
                tx,
            };
            streams.insert(h.tenant.clone(), Arc::new(stream));
        }
    }

    pub fn stream(&self, tenant: &str) -> Option<Arc<Stream>> {
        self.streams.read().ok()?.get(tenant).cloned()
    }

    /// Number of open WebSocket connections.
    pub fn connected(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Counts a connection for as long as the guard lives.
    pub fn connection_guard(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }
}

pub struct ConnectionGuard(Arc<Fanout>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EventSink for Fanout {
    fn publish(&self, event: CommittedEvent) -> usize {
        let Some(stream) = self.stream(&event.tenant) else {
            tracing::error!(tenant = %event.tenant, "fan-out: event for a tenant without a stream");
            return 0;
        };
        stream.head.store(event.id, Ordering::Release);
        let origin = event.origin_connection;
        let live = LiveEvent {
            id: event.id,
            site: event.site,
            origin_connection: origin,
            frame: event.frame.into(),
            ack: event.ack.into(),
        };
        let receivers = stream.tx.send(Arc::new(live)).unwrap_or(0);
        // The sender's own connection gets an ack, not the event.
        if origin != 0 {
            receivers.saturating_sub(1)
        } else {
            receivers
        }
    }
}
