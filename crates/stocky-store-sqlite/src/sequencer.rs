//! The single writer: group commit, gap-free event ids, transactional outbox.
//!
//! One OS thread owns the only write connection. It blocks for the first queued job, takes
//! whatever else is already queued (up to `max_batch`), and runs all of it in one
//! `BEGIN IMMEDIATE … COMMIT`: each command inside its own savepoint, validated against the
//! state the earlier commands of the batch left. After the commit — and only then — the
//! events go to the sink in id order and the waiting senders get their answers. If the
//! commit fails, every command of the batch is answered `Unavailable` and the cached
//! stream heads are left as they were before the batch, so no id is skipped.
//!
//! The queue is bounded (`queue_capacity`): when it is full, senders wait.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use stocky_core::protocol::{encode_ack, encode_event, stock_event_data, EventParts, Scope};
use stocky_core::stock::{plan, BusinessValidator, Rejection, StockCommand};
use stocky_core::time::now_millis;
use stocky_core::{DEFAULT_SITE, DEFAULT_TENANT};
use tokio::sync::{mpsc, oneshot};

use crate::{
    documents, Applied, Command, CommittedEvent, EventSink, Origin, StoreError, StoreOptions,
    StreamHead, SubmitError,
};

/// Work for the writer.
pub(crate) enum Job {
    Command {
        command: Box<Command>,
        origin: Origin,
        reply: oneshot::Sender<Result<Applied, SubmitError>>,
    },
    Prune,
}

/// A command waiting in the current batch, with the channel its answer goes to.
type Queued = (
    Box<Command>,
    Origin,
    oneshot::Sender<Result<Applied, SubmitError>>,
);

/// How often the writer prunes the event log at most.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// Creates the default tenant, site and stream on first start; returns every stream head.
pub(crate) fn bootstrap(conn: &Connection) -> Result<Vec<StreamHead>, StoreError> {
    let now = now_millis();
    conn.execute(
        "INSERT OR IGNORE INTO tenants (id, name, created_at) VALUES (?1, 'Default tenant', ?2)",
        params![DEFAULT_TENANT, now],
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO sites (tenant_id, id, name, created_at) VALUES (?1, ?2, 'Default site', ?3)",
        params![DEFAULT_TENANT, DEFAULT_SITE, now],
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO streams (tenant_id, epoch, head) VALUES (?1, ?2, 0)",
        params![DEFAULT_TENANT, new_epoch()],
    )?;
    let mut stmt = conn.prepare("SELECT tenant_id, epoch, head FROM streams ORDER BY tenant_id")?;
    let heads = stmt
        .query_map([], |r| {
            Ok(StreamHead {
                tenant: Arc::from(r.get::<_, String>(0)?),
                epoch: Arc::from(r.get::<_, String>(1)?),
                head: r.get::<_, i64>(2)? as u64,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(heads)
}

/// A fresh random epoch: 128 random bits in hex.
pub(crate) fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub(crate) fn spawn(
    conn: Connection,
    jobs: mpsc::Receiver<Job>,
    options: StoreOptions,
    sink: Arc<dyn EventSink>,
    validator: Option<Arc<dyn BusinessValidator>>,
    heads: &[StreamHead],
) -> Result<std::thread::JoinHandle<()>, StoreError> {
    let streams = heads
        .iter()
        .map(|h| (h.tenant.clone(), (h.epoch.clone(), h.head)))
        .collect();
    let writer = Writer {
        conn,
        options,
        sink,
        validator,
        streams,
        last_prune: Instant::now(),
    };
    std::thread::Builder::new()
        .name("stocky-writer".into())
        .spawn(move || writer.run(jobs))
        .map_err(|e| StoreError::Task(format!("cannot start the writer thread: {e}")))
}

struct Writer {
    conn: Connection,
    options: StoreOptions,
    sink: Arc<dyn EventSink>,
    validator: Option<Arc<dyn BusinessValidator>>,
    /// Committed `(epoch, head)` per tenant stream.
    streams: HashMap<Arc<str>, (Arc<str>, u64)>,
    last_prune: Instant,
}

/// The fate of one command inside a batch, before the commit decides.
enum Staged {
    New {
        event: CommittedEvent,
        epoch: Arc<str>,
        data: String,
        summary: Option<serde_json::Value>,
    },
    Done(Result<Applied, SubmitError>),
}

impl Writer {
    fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(self.options.max_batch);
        let mut prune_requested = false;
        while let Some(first) = jobs.blocking_recv() {
            let mut push = |job: Job, batch: &mut Vec<_>| match job {
                Job::Command {
                    command,
                    origin,
                    reply,
                } => batch.push((command, origin, reply)),
                Job::Prune => prune_requested = true,
            };
            push(first, &mut batch);
            while batch.len() < self.options.max_batch {
                match jobs.try_recv() {
                    Ok(job) => push(job, &mut batch),
                    Err(_) => break,
                }
            }
            // A requested prune runs before the batch it arrived with, so that a caller who
            // asked for it and then submitted a command finds it done when answered.
            if std::mem::take(&mut prune_requested) {
                self.prune();
            }
            if !batch.is_empty() {
                self.commit_batch(&mut batch);
            }
            if self.last_prune.elapsed() >= PRUNE_EVERY {
                self.prune();
            }
        }
        tracing::debug!("writer: queue closed, all pending commands committed");
    }

    fn commit_batch(&mut self, batch: &mut Vec<Queued>) {
        let mut staged_heads: HashMap<Arc<str>, (Arc<str>, u64)> = HashMap::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        let began = self.conn.execute_batch("BEGIN IMMEDIATE");
        if let Err(e) = began {
            tracing::error!(error = %e, "writer: cannot begin a transaction");
            for (_, _, reply) in batch.drain(..) {
                let _ = reply.send(Err(SubmitError::Unavailable(format!(
                    "cannot begin transaction: {e}"
                ))));
            }
            return;
        }
        let now = now_millis();
        for (command, origin, _) in batch.iter() {
            outcomes.push(self.stage(command, origin, now, &mut staged_heads));
        }
        let committed = self.conn.execute_batch("COMMIT");
        if let Err(e) = committed {
            tracing::error!(error = %e, "writer: commit failed; batch refused");
            let _ = self.conn.execute_batch("ROLLBACK");
            for (_, _, reply) in batch.drain(..) {
                let _ = reply.send(Err(SubmitError::Unavailable(format!("commit failed: {e}"))));
            }
            return;
        }
        self.streams.extend(staged_heads);
        for ((_, _, reply), outcome) in batch.drain(..).zip(outcomes) {
            let answer = match outcome {
                Staged::New {
                    event,
                    epoch,
                    data,
                    summary,
                } => {
                    let id = event.id;
                    let sent_to = self.sink.publish(event);
                    Ok(Applied::New {
                        id,
                        epoch,
                        data,
                        sent_to,
                        summary,
                    })
                }
                Staged::Done(answer) => answer,
            };
            let _ = reply.send(answer);
        }
    }

    /// Runs one command inside a savepoint of the open transaction.
    fn stage(
        &mut self,
        command: &Command,
        origin: &Origin,
        now: i64,
        heads: &mut HashMap<Arc<str>, (Arc<str>, u64)>,
    ) -> Staged {
        if let Err(e) = self.conn.execute_batch("SAVEPOINT command") {
            return Staged::Done(Err(SubmitError::Unavailable(e.to_string())));
        }
        let result = self.apply(command, origin, now, heads);
        let end = match &result {
            Ok(Staged::New { .. }) => "RELEASE command",
            _ => "ROLLBACK TO command; RELEASE command",
        };
        if let Err(e) = self.conn.execute_batch(end) {
            return Staged::Done(Err(SubmitError::Unavailable(e.to_string())));
        }
        match result {
            Ok(staged) => staged,
            Err(e) => Staged::Done(Err(e)),
        }
    }

    fn apply(
        &mut self,
        command: &Command,
        origin: &Origin,
        now: i64,
        heads: &mut HashMap<Arc<str>, (Arc<str>, u64)>,
    ) -> Result<Staged, SubmitError> {
        let unavailable = |e: rusqlite::Error| SubmitError::Unavailable(e.to_string());
        // The head comes from the database (inside this write transaction) the first time a
        // batch touches a tenant: another process (an offline `stocky restore`, a second
        // hub on the same file) may have appended events since, and reusing their ids would
        // fail every later commit.
        let (epoch, head) = match heads.get(&origin.tenant) {
            Some(state) => state.clone(),
            None => match self.load_stream(&origin.tenant).map_err(unavailable)? {
                Some(state) => state,
                None => {
                    return Err(SubmitError::Unavailable(format!(
                        "tenant {:?} has no event stream",
                        origin.tenant
                    )));
                }
            },
        };
        if let Some(op_id) = &origin.op_id {
            if let Some(id) = self
                .applied_op(&origin.tenant, op_id)
                .map_err(unavailable)?
            {
                let ack = self
                    .duplicate_ack(origin, &epoch, id, op_id)
                    .map_err(unavailable)?;
                return Ok(Staged::Done(Ok(Applied::Duplicate { id, epoch, ack })));
            }
        }

        let id = head + 1;
        let (event_name, data, summary): (&str, String, _) = match command {
            Command::Stock(stock) => (
                stock.op.event_name(),
                self.apply_stock(stock, origin, id, now)?,
                None,
            ),
            Command::Documents(write) => {
                let data = documents::apply(&self.conn, &origin.tenant, write, now)?;
                (write.event_name(), data.to_string(), None)
            }
            Command::RestoreLedger(entries) => {
                let mut result =
                    documents::restore_ledger(&self.conn, &origin.tenant, entries, id, now)?;
                let levels = result["data"].take();
                ("stock:sync", levels.to_string(), Some(result))
            }
            Command::Publish { event, data } => (event.as_str(), data.to_string(), None),
        };
        let conn = &self.conn;
        conn.prepare_cached(
            "INSERT INTO events (tenant_id, id, site_id, event, data, client_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut s| {
            s.execute(params![
                &*origin.tenant,
                id as i64,
                &*origin.site,
                event_name,
                &data,
                &*origin.client_id,
                now
            ])
        })
        .map_err(unavailable)?;
        if let Some(op_id) = &origin.op_id {
            conn.prepare_cached("INSERT INTO applied_ops (tenant_id, op_id, event_id, created_at) VALUES (?1, ?2, ?3, ?4)")
                .and_then(|mut s| s.execute(params![&*origin.tenant, op_id, id as i64, now]))
                .map_err(unavailable)?;
        }
        conn.prepare_cached("UPDATE streams SET head = ?2 WHERE tenant_id = ?1")
            .and_then(|mut s| s.execute(params![&*origin.tenant, id as i64]))
            .map_err(unavailable)?;
        heads.insert(origin.tenant.clone(), (epoch.clone(), id));

        let parts = EventParts {
            id,
            prev: id - 1,
            epoch: &epoch,
            event: event_name,
            data: &data,
            client_id: &origin.client_id,
            timestamp_ms: now,
            scope: Scope {
                tenant_id: &origin.tenant,
                site_id: &origin.site,
            },
        };
        let event = CommittedEvent {
            tenant: origin.tenant.clone(),
            site: origin.site.clone(),
            id,
            epoch: epoch.clone(),
            event: Arc::from(event_name),
            data: Arc::from(data.as_str()),
            client_id: origin.client_id.clone(),
            op_id: origin.op_id.clone(),
            timestamp_ms: now,
            origin_connection: origin.connection,
            frame: encode_event(&parts),
            ack: encode_ack(&parts, origin.op_id.as_deref(), false),
        };
        Ok(Staged::New {
            event,
            epoch,
            data,
            summary,
        })
    }

    /// Validates a stock command against current stock and writes its movements and the
    /// resulting stock; returns the event's `data`.
    fn apply_stock(
        &self,
        command: &StockCommand,
        origin: &Origin,
        id: u64,
        now: i64,
    ) -> Result<String, SubmitError> {
        let unavailable = |e: rusqlite::Error| SubmitError::Unavailable(e.to_string());
        let conn = &self.conn;
        let mut lookup = conn
            .prepare_cached("SELECT on_hand FROM stock WHERE tenant_id = ?1 AND site_id = ?2 AND product_id = ?3")
            .map_err(unavailable)?;
        let mut read_error = None;
        let mut view = |product: i64| -> Option<i64> {
            match lookup
                .query_row(params![&*origin.tenant, &*origin.site, product], |r| {
                    r.get(0)
                })
                .optional()
            {
                Ok(v) => v,
                Err(e) => {
                    read_error.get_or_insert(e);
                    None
                }
            }
        };
        if let Some(validator) = &self.validator {
            validator
                .validate(command, &mut view)
                .map_err(|reason| SubmitError::Rejected(Rejection::Custom(reason)))?;
        }
        let planned = plan(command, &mut view);
        drop(lookup);
        if let Some(e) = read_error {
            return Err(unavailable(e));
        }
        let movements = planned?;
        let kind = command.op.kind();
        let mut insert_movement = conn
            .prepare_cached(
                "INSERT INTO movements (id, tenant_id, site_id, product_id, delta, kind, origin_client,
                    origin_op, event_id, server_time) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .map_err(unavailable)?;
        let mut upsert_stock = conn
            .prepare_cached(
                "INSERT INTO stock (tenant_id, site_id, product_id, on_hand, updated_at, last_event_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant_id, site_id, product_id) DO UPDATE SET
                    on_hand = excluded.on_hand, updated_at = excluded.updated_at,
                    last_event_id = excluded.last_event_id",
            )
            .map_err(unavailable)?;
        for m in &movements {
            insert_movement
                .execute(params![
                    uuid::Uuid::new_v4().to_string(),
                    &*origin.tenant,
                    &*origin.site,
                    m.product_id,
                    m.delta,
                    kind,
                    &*origin.client_id,
                    origin.op_id.as_deref(),
                    id as i64,
                    now
                ])
                .map_err(unavailable)?;
            upsert_stock
                .execute(params![
                    &*origin.tenant,
                    &*origin.site,
                    m.product_id,
                    m.after,
                    now,
                    id as i64
                ])
                .map_err(unavailable)?;
        }
        Ok(stock_event_data(command.op, &movements))
    }

    fn load_stream(&mut self, tenant: &Arc<str>) -> rusqlite::Result<Option<(Arc<str>, u64)>> {
        let found = self
            .conn
            .query_row(
                "SELECT epoch, head FROM streams WHERE tenant_id = ?1",
                params![&**tenant],
                |r| {
                    Ok((
                        Arc::<str>::from(r.get::<_, String>(0)?),
                        r.get::<_, i64>(1)? as u64,
                    ))
                },
            )
            .optional()?;
        if let Some(state) = &found {
            self.streams.insert(tenant.clone(), state.clone());
        }
        Ok(found)
    }

    fn applied_op(&self, tenant: &str, op_id: &str) -> rusqlite::Result<Option<u64>> {
        self.conn
            .prepare_cached("SELECT event_id FROM applied_ops WHERE tenant_id = ?1 AND op_id = ?2")?
            .query_row(params![tenant, op_id], |r| r.get::<_, i64>(0))
            .optional()
            .map(|id| id.map(|id| id as u64))
    }

    /// The ack for a retried command: the original event's data when the log still has it.
    fn duplicate_ack(
        &self,
        origin: &Origin,
        epoch: &str,
        id: u64,
        op_id: &str,
    ) -> rusqlite::Result<String> {
        let original: Option<(String, String, String, i64)> = self
            .conn
            .prepare_cached(
                "SELECT event, data, site_id, created_at FROM events WHERE tenant_id = ?1 AND id = ?2",
            )?
            .query_row(params![&*origin.tenant, id as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()?;
        let (event, data, site, at) = original.unwrap_or_else(|| {
            (
                String::new(),
                "null".into(),
                origin.site.to_string(),
                now_millis(),
            )
        });
        let parts = EventParts {
            id,
            prev: id.saturating_sub(1),
            epoch,
            event: &event,
            data: &data,
            client_id: &origin.client_id,
            timestamp_ms: at,
            scope: Scope {
                tenant_id: &origin.tenant,
                site_id: &site,
            },
        };
        Ok(encode_ack(&parts, Some(op_id), true))
    }

    /// Drops events beyond the retention count or older than the TTL, and idempotency keys
    /// older than a day.
    fn prune(&mut self) {
        self.last_prune = Instant::now();
        let now = now_millis();
        let ttl_ms = self.options.event_ttl.as_millis() as i64;
        let keep = self.options.event_retention as i64;
        for (tenant, (_, head)) in &self.streams {
            let result = self.conn.execute(
                "DELETE FROM events WHERE tenant_id = ?1 AND (id <= ?2 OR created_at < ?3)",
                params![&**tenant, *head as i64 - keep, now - ttl_ms],
            );
            if let Err(e) = result {
                tracing::warn!(error = %e, "writer: pruning the event log failed; will retry");
            }
        }
        let _ = self.conn.execute(
            "DELETE FROM applied_ops WHERE created_at < ?1",
            params![now - 86_400_000],
        );
    }
}
