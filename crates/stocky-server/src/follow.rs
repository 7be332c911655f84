//! Keeps every live stream complete when events are committed elsewhere: by another hub
//! instance, by another process on the same database, or while the bus was down.
//!
//! Two triggers, one remedy:
//! - the fan-out reports a gap (an event arrived ahead of a missing id) — after a short
//!   grace, so the bus can deliver the missing one first;
//! - every `log_poll`, the streams' committed heads are compared with what was delivered; an
//!   event committed a whole poll ago and still undelivered is missing.
//!
//! The remedy is to read the missing events from the log and publish them through the
//! fan-out, which emits strictly in id order and drops duplicates. Events already pruned
//! from the log cannot be recovered: the stream skips them and tells every connection to
//! resync, never silently.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use stocky_core::protocol::{EventParts, Scope};
use stocky_store::{CommittedEvent, StoredEvent};
use tokio::sync::mpsc;

use crate::fanout::{foreign_event, Stream};
use crate::AppState;

/// How long a reported gap waits for the bus before the log is read.
const GAP_GRACE: Duration = Duration::from_millis(25);
/// Events read from the log per page.
const PAGE: usize = 1000;

pub async fn run(state: AppState, mut gaps: mpsc::Receiver<Arc<str>>) {
    let mut tick = tokio::time::interval(state.config.log_poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Committed heads seen at the previous poll, per tenant.
    let mut seen: HashMap<Arc<str>, u64> = HashMap::new();
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            Some(tenant) = gaps.recv() => {
                tokio::time::sleep(GAP_GRACE).await;
                let mut tenants = vec![tenant];
                while let Ok(more) = gaps.try_recv() {
                    if !tenants.contains(&more) {
                        tenants.push(more);
                    }
                }
                for tenant in tenants {
                    if let Some(stream) = state.fanout.stream(&tenant) {
                        backfill(&state, &stream).await;
                    }
                }
            }
            _ = tick.tick() => {
                let Ok(heads) = state.store.stream_heads().await else { continue };
                for committed in heads {
                    let Some(stream) = state.fanout.stream(&committed.tenant) else { continue };
                    let before = seen.insert(committed.tenant.clone(), committed.head).unwrap_or(0);
                    // Ignore what the local writer committed a moment ago and is publishing now.
                    if stream.head() < before.min(committed.head) {
                        backfill(&state, &stream).await;
                    }
                }
            }
        }
    }
}

/// Publishes, in order, every logged event after the stream's head.
async fn backfill(state: &AppState, stream: &Arc<Stream>) {
    loop {
        let head = stream.head();
        let page = match state.store.replay(&stream.tenant, head, PAGE).await {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, tenant = %stream.tenant, "back-fill: cannot read the log; will retry");
                return;
            }
        };
        if *page.epoch != *stream.epoch {
            tracing::error!(tenant = %stream.tenant, "back-fill: the log's epoch changed under a live stream; restart the hub");
            return;
        }
        if !page.covers(head) {
            stream.skip_to(page.oldest);
            continue;
        }
        let full = page.events.len() == PAGE;
        for event in &page.events {
            state.fanout.deliver(committed(stream, &page.epoch, event));
        }
        if !full || stream.head() <= head {
            return;
        }
    }
}

/// A logged event as the fan-out takes it (no local sender: nobody gets an ack).
fn committed(stream: &Stream, epoch: &str, event: &StoredEvent) -> CommittedEvent {
    let parts = EventParts {
        id: event.id,
        prev: event.id - 1,
        epoch,
        event: &event.event,
        data: &event.data,
        client_id: &event.client_id,
        timestamp_ms: event.created_at,
        scope: Scope {
            tenant_id: &stream.tenant,
            site_id: &event.site,
        },
        op_id: event.op_id.as_deref(),
    };
    foreign_event(&parts)
}
