//! The writer: group commit, gap-free event ids, transactional outbox.
//!
//! One OS thread per hub owns the store's write connection — on PostgreSQL optionally
//! several (`StoreOptions::writers`), each with its own connection and a fixed share of the
//! tenants ([`shard_of`]), so that a tenant's stream is only ever written by one of them.
//! A writer blocks for the first queued job, takes whatever else is already queued (up to
//! `max_batch`), and runs all of it in one write transaction: each command inside its own
//! savepoint, validated against the state the earlier commands of the batch left. The
//! first time a batch touches a tenant it reads (and on PostgreSQL row-locks) the tenant's
//! `streams` row, so writers of other processes or hub instances sharing the database
//! serialise per tenant and ids stay gap-free. A command may raise several events (its own
//! first, then what it set off: a sale's stock levels, low-stock alerts), with consecutive
//! ids. The audit entries of the applied commands are written just before the commit, in
//! the same transaction. After the commit — and only then — the events go to the sink in id
//! order and the waiting senders get their answers. If the commit fails, every command of
//! the batch is answered `Unavailable` and the cached stream heads are left as they were
//! before the batch, so no id is skipped.
//!
//! The queue is bounded (`queue_capacity`): when it is full, senders wait. A broken
//! connection (database restart) fails the batch in hand with `Unavailable`; the next batch
//! reconnects first. A commit whose outcome is unknown is answered `Unavailable` too: if it
//! did commit, its events reach clients through the log follower, and a retry with the same
//! `opId` is recognised as a duplicate.

mod stock_run;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stocky_core::documents::DocOutcome;
use stocky_core::sales::SaleCommand;
use stocky_core::stock::{BusinessValidator, Rejection};
use stocky_core::time::now_millis;
use stocky_core::{DEFAULT_SITE, DEFAULT_TENANT};
use tokio::sync::{mpsc, oneshot};

use crate::audit::{self, AuditRow};
use crate::bulk_index;
use crate::engine::{ConnRole, Engine};
use crate::inventory::{self, LevelChange, STOCK_LOW, THRESHOLDS_EVENT};
use crate::sql::{args, Conn, DbError, DbErrorKind, TxMode};
use crate::{
    catalog, documents, orders, sales, transfers, unavailable, Applied, BatchReport, Command,
    CommittedEvent, EventSink, Origin, Outcome, StoreError, StoreOptions, StoredEvent, StreamHead,
    SubmitError,
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

/// How often the writer tries to reconnect at most while the database is unreachable.
const RECONNECT_EVERY: Duration = Duration::from_millis(250);

/// Creates the default tenant, site and stream on first start; returns every stream head.
pub(crate) fn bootstrap(conn: &mut dyn Conn) -> Result<Vec<StreamHead>, StoreError> {
    let now = now_millis();
    conn.execute(
        "INSERT INTO tenants (id, name, created_at) VALUES ($1, 'Default tenant', $2)
         ON CONFLICT DO NOTHING",
        args![DEFAULT_TENANT, now],
    )?;
    conn.execute(
        "INSERT INTO sites (tenant_id, id, name, created_at) VALUES ($1, $2, 'Default site', $3)
         ON CONFLICT DO NOTHING",
        args![DEFAULT_TENANT, DEFAULT_SITE, now],
    )?;
    conn.execute(
        "INSERT INTO streams (tenant_id, epoch, head) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
        args![DEFAULT_TENANT, &crate::new_epoch()],
    )?;
    crate::reader::heads(conn)
}

/// What one writer thread is given: its shard number, its own connection and the shared
/// parts.
pub(crate) struct WriterSetup {
    pub shard: usize,
    pub engine: Arc<dyn Engine>,
    pub conn: Box<dyn Conn>,
    pub options: StoreOptions,
    pub sink: Arc<dyn EventSink>,
    pub validator: Option<Arc<dyn BusinessValidator>>,
}

/// Starts a writer thread on `jobs`; `heads` are the streams of the tenants it owns.
pub(crate) fn spawn(
    setup: WriterSetup,
    jobs: mpsc::Receiver<Job>,
    heads: &[StreamHead],
) -> Result<std::thread::JoinHandle<()>, StoreError> {
    let streams = heads
        .iter()
        .map(|h| (h.tenant.clone(), (h.epoch.clone(), h.head)))
        .collect();
    let writer = Writer {
        engine: setup.engine,
        conn: setup.conn,
        last_connect: Instant::now(),
        options: setup.options,
        sink: setup.sink,
        validator: setup.validator,
        streams,
        indexed: HashMap::new(),
        last_prune: Instant::now(),
        audit: Vec::new(),
    };
    // Thread names are cut at 15 bytes: "stocky-writer-9" fits.
    let name = match setup.shard {
        0 => "stocky-writer".to_owned(),
        n => format!("stocky-writer-{n}"),
    };
    std::thread::Builder::new()
        .name(name)
        .spawn(move || writer.run(jobs))
        .map_err(|e| StoreError::Task(format!("cannot start a writer thread: {e}")))
}

/// The writer (of `shards`) that owns `tenant`'s stream: FNV-1a of the tenant id, so the
/// same on every instance and at every start. A tenant's commands all go through one
/// writer, which keeps its events in id order on their way to the sink.
pub(crate) fn shard_of(tenant: &str, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let hash = tenant.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % shards as u64) as usize
}

struct Writer {
    engine: Arc<dyn Engine>,
    conn: Box<dyn Conn>,
    /// When the writer last tried to (re)connect.
    last_connect: Instant,
    options: StoreOptions,
    sink: Arc<dyn EventSink>,
    validator: Option<Arc<dyn BusinessValidator>>,
    /// Committed `(epoch, head)` per tenant stream.
    streams: Heads,
    /// How far each tenant's ledger is in `ledger_by_product` (see `bulk_index`), as
    /// read with its stream row in the open transaction (every batch reads it again).
    indexed: HashMap<Arc<str>, u64>,
    last_prune: Instant,
    /// The audit entries of the batch being staged (written just before its commit).
    audit: Vec<AuditRow>,
}

/// An event a command raises, before it has an id.
struct Raised {
    name: Arc<str>,
    site: Arc<str>,
    data: String,
}

impl From<&(&'static str, String, String)> for Raised {
    /// `(name, site, data)` as a domain's apply returns its events.
    fn from((name, site, data): &(&'static str, String, String)) -> Self {
        Raised {
            name: Arc::from(*name),
            site: Arc::from(site.as_str()),
            data: data.clone(),
        }
    }
}

/// The audit entry of a command, before its event is known.
struct Audit {
    entity_type: &'static str,
    entity_id: Option<String>,
    before: Option<String>,
    client_time: Option<i64>,
}

/// The fate of one command inside a batch, before the commit decides.
enum Staged {
    /// Applied: its own event first, then the events it raised.
    New {
        events: Vec<CommittedEvent>,
        outcome: Outcome,
    },
    Done(Result<Applied, SubmitError>),
}

/// Each tenant's stream in a batch: its epoch and head (the last id used).
type Heads = HashMap<Arc<str>, (Arc<str>, u64)>;

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
        let started = Instant::now();
        let mut report = BatchReport {
            size: batch.len(),
            ..BatchReport::default()
        };
        self.commit_batch_counted(batch, &mut report);
        report.latency = started.elapsed();
        self.sink.batch_done(&report);
    }

    fn commit_batch_counted(&mut self, batch: &mut Vec<Queued>, report: &mut BatchReport) {
        let now = now_millis();
        // Runs of stock commands are staged without a savepoint (`stock_run`); if one of
        // their writes fails, the transaction is begun again and every command of the
        // batch staged in its own savepoint.
        let mut careful = false;
        let (outcomes, staged_heads) = loop {
            let mut heads = match self.begin_locked(batch) {
                Ok(heads) => heads,
                Err(e) => {
                    tracing::error!(error = %e, "writer: cannot begin a transaction");
                    report.unavailable = batch.len();
                    for (_, _, reply) in batch.drain(..) {
                        let _ = reply.send(Err(SubmitError::Unavailable(format!(
                            "the database is unavailable: {e}"
                        ))));
                    }
                    return;
                }
            };
            self.audit.clear();
            match self.stage_batch(batch, now, &mut heads, careful) {
                Ok(outcomes) => break (outcomes, heads),
                Err(e) => {
                    tracing::debug!(error = %e, "writer: a stock run failed; staging the batch again, each command in its own savepoint");
                    let _ = self.conn.rollback();
                    careful = true;
                }
            }
        };
        // The audit entries of every applied command, then each touched stream's head
        // (once per batch, not once per command), in the batch's transaction.
        // A tenant with `index_lag` unindexed events gets its movements and audit entries
        // indexed (`bulk_index`), in the same transaction.
        let mut committed = audit::write_rows(&mut *self.conn, &self.audit);
        self.audit.clear();
        for (tenant, (_, head)) in &staged_heads {
            if committed.is_err() {
                break;
            }
            let indexed = self.indexed.get(tenant).copied().unwrap_or(0);
            committed = if bulk_index::due(indexed, *head, self.options.index_lag) {
                bulk_index::index(&mut *self.conn, tenant, indexed, *head).and_then(|()| {
                    self.conn.execute(
                        "UPDATE streams SET head = $2, indexed_head = $2 WHERE tenant_id = $1",
                        args![&**tenant, *head as i64],
                    )
                })
            } else {
                self.conn.execute(
                    "UPDATE streams SET head = $2 WHERE tenant_id = $1",
                    args![&**tenant, *head as i64],
                )
            }
            .map(drop);
        }
        let committed = committed.and_then(|()| self.conn.commit());
        if let Err(e) = committed {
            tracing::error!(error = %e, "writer: commit failed; batch refused");
            let _ = self.conn.rollback();
            report.unavailable = batch.len();
            for (_, _, reply) in batch.drain(..) {
                let _ = reply.send(Err(SubmitError::Unavailable(format!("commit failed: {e}"))));
            }
            return;
        }
        self.streams.extend(staged_heads);
        for ((_, _, reply), outcome) in batch.drain(..).zip(outcomes) {
            let answer = match outcome {
                Staged::New { events, outcome } => {
                    let main = &events[0];
                    let (id, epoch, data) = (main.id, main.epoch.clone(), main.data.clone());
                    let mut sent_to = 0;
                    for (n, event) in events.into_iter().enumerate() {
                        let delivered = self.sink.publish(event);
                        if n == 0 {
                            sent_to = delivered;
                        }
                    }
                    Ok(Applied::New {
                        id,
                        epoch,
                        data,
                        sent_to,
                        outcome,
                    })
                }
                Staged::Done(answer) => answer,
            };
            report.count(&answer);
            let _ = reply.send(answer);
        }
    }

    /// Stages every command of the batch in order: consecutive stock commands as one run
    /// (`stock_run`) — or, when `careful`, each in its own savepoint — the rest one by one.
    /// An error means a run's write failed and the transaction must be rolled back.
    fn stage_batch(
        &mut self,
        batch: &[Queued],
        now: i64,
        heads: &mut Heads,
        careful: bool,
    ) -> Result<Vec<Staged>, DbError> {
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut start = 0;
        while start < batch.len() {
            let stock = batch[start..]
                .iter()
                .take_while(|(command, _, _)| matches!(**command, Command::Stock(_)))
                .count();
            if stock > 0 && !careful {
                let run: Vec<(&Command, &Origin)> = batch[start..start + stock]
                    .iter()
                    .map(|(command, origin, _)| (&**command, origin))
                    .collect();
                outcomes.extend(self.stage_stock_run(&run, now, heads)?);
                start += stock;
            } else {
                let (command, origin, _) = &batch[start];
                outcomes.push(self.stage(command, origin, now, heads));
                start += 1;
            }
        }
        Ok(outcomes)
    }

    /// Begins the batch's transaction and locks the stream rows of every tenant the batch
    /// touches, in tenant order, before any command runs: two writers (hub instances on
    /// one PostgreSQL database) whose batches share tenants then wait for each other in
    /// one order and cannot deadlock. A deadlock or serialization failure raised anyway
    /// (by anything else holding those rows) runs the begin again, up to three times,
    /// unseen by clients. Returns the locked streams' heads.
    fn begin_locked(&mut self, batch: &[Queued]) -> Result<Heads, DbError> {
        let tenants: BTreeSet<&Arc<str>> =
            batch.iter().map(|(_, origin, _)| &origin.tenant).collect();
        let mut attempt = 0;
        loop {
            self.begin()?;
            let mut heads = HashMap::with_capacity(tenants.len());
            let locked = tenants.iter().try_for_each(|tenant| {
                if let Some(state) = self.load_stream(tenant)? {
                    heads.insert(Arc::clone(tenant), state);
                }
                Ok::<_, DbError>(())
            });
            match locked {
                Ok(()) => return Ok(heads),
                Err(e) => {
                    let _ = self.conn.rollback();
                    attempt += 1;
                    if e.kind != DbErrorKind::Conflict || attempt >= 3 {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, attempt, "writer: lock conflict; beginning again");
                    std::thread::sleep(Duration::from_millis(5 << attempt));
                }
            }
        }
    }

    /// Begins the batch's transaction, first replacing a connection known to be broken,
    /// and once more on a fresh connection if the old one turns out broken now.
    fn begin(&mut self) -> Result<(), DbError> {
        if self.conn.is_broken() {
            self.reconnect()?;
        }
        match self.conn.begin(TxMode::Write) {
            Err(e) if e.is_connection() || self.conn.is_broken() => {
                self.reconnect()?;
                self.conn.begin(TxMode::Write)
            }
            other => other,
        }
    }

    fn reconnect(&mut self) -> Result<(), DbError> {
        if self.last_connect.elapsed() < RECONNECT_EVERY {
            return Err(DbError::connection("reconnecting to the database"));
        }
        self.last_connect = Instant::now();
        self.conn = self.engine.connect(ConnRole::Writer)?;
        tracing::info!(database = %self.engine.describe(), "writer: reconnected");
        Ok(())
    }

    /// Runs one command inside a savepoint of the open transaction (stock commands: a run
    /// of one, see `stock_run`).
    fn stage(&mut self, command: &Command, origin: &Origin, now: i64, heads: &mut Heads) -> Staged {
        if let Command::Stock(_) = command {
            return self.stage_stock_alone(command, origin, now, heads);
        }
        if let Err(e) = self.conn.batch("SAVEPOINT command") {
            return Staged::Done(Err(unavailable(e)));
        }
        let audited = self.audit.len();
        let result = self.apply(command, origin, now, heads);
        if !matches!(result, Ok(Staged::New { .. })) {
            self.audit.truncate(audited);
        }
        let end = match &result {
            Ok(Staged::New { .. }) => "RELEASE SAVEPOINT command",
            _ => "ROLLBACK TO SAVEPOINT command; RELEASE SAVEPOINT command",
        };
        if let Err(e) = self.conn.batch(end) {
            self.audit.truncate(audited);
            return Staged::Done(Err(unavailable(e)));
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
        heads: &mut Heads,
    ) -> Result<Staged, SubmitError> {
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
        let op_key = op_key(origin, command);
        if let Some((key, print)) = &op_key {
            if let Some((id, used_for)) =
                self.applied_op(&origin.tenant, key).map_err(unavailable)?
            {
                if used_for.is_some_and(|used_for| used_for != *print) {
                    return Err(SubmitError::Rejected(Rejection::IdempotencyConflict {
                        op_id: origin.op_id.clone().unwrap_or_default(),
                    }));
                }
                let original = self.logged_event(&origin.tenant, id).map_err(unavailable)?;
                return Ok(Staged::Done(Ok(Applied::Duplicate {
                    id,
                    epoch,
                    original,
                })));
            }
        }

        let id = head + 1;
        // The command's own event first, then the events it raises (stock levels of a sale,
        // low-stock alerts), with consecutive ids.
        let mut events: Vec<Raised> = Vec::with_capacity(1);
        let own = |name: &str, data: String| Raised {
            name: Arc::from(name),
            site: origin.site.clone(),
            data,
        };
        let audit = |entity_type: &'static str, entity_id: Option<String>| Audit {
            entity_type,
            entity_id,
            before: None,
            client_time: None,
        };
        let (outcome, audits, changes): (Outcome, Vec<Audit>, Vec<LevelChange>) = match command {
            Command::Stock(_) => {
                return Err(SubmitError::Unavailable(
                    "stock commands are staged as runs (stock_run)".into(),
                ))
            }
            Command::Documents(write) => {
                let stamp = documents::Stamp {
                    now,
                    event_id: id,
                    by: &origin.client_id,
                };
                let done = documents::apply(&mut *self.conn, &origin.tenant, write, &stamp)?;
                let nothing = match &done {
                    DocOutcome::Changed(changed) => changed.records.is_empty(),
                    DocOutcome::Merged(merged) => merged.changed.records.is_empty(),
                    DocOutcome::Dropped(_) | DocOutcome::Restored(_) => false,
                };
                if nothing {
                    return Ok(Staged::Done(Ok(Applied::Unchanged {
                        id: head,
                        epoch,
                        outcome: Outcome::Documents(done),
                    })));
                }
                events.push(own(write.event_name(), done.event_data()));
                let entity = write
                    .collection()
                    .map(|(db, store)| format!("{db}/{store}"));
                (
                    Outcome::Documents(done),
                    vec![audit("document", entity)],
                    Vec::new(),
                )
            }
            Command::RestoreLedger(entries) => {
                let (restored, changes) =
                    documents::append_ledger(&mut *self.conn, &origin.tenant, entries, id, now)?;
                if restored.restored() == 0 {
                    // Every movement was there already (or there were none).
                    return Ok(Staged::Done(Ok(Applied::Unchanged {
                        id: head,
                        epoch,
                        outcome: Outcome::Ledger(restored),
                    })));
                }
                let data = serde_json::to_string(&restored.levels)
                    .expect("serialising plain structs cannot fail");
                events.push(own("stock:sync", data));
                (
                    Outcome::Ledger(restored),
                    vec![audit("ledger", Some(origin.site.to_string()))],
                    changes,
                )
            }
            Command::Publish { event, data } => {
                events.push(own(event, data.to_string()));
                (
                    Outcome::Published,
                    vec![audit("event", Some(event.clone()))],
                    Vec::new(),
                )
            }
            Command::Sale(sale) => {
                let done = sales::apply(
                    &mut *self.conn,
                    &origin.tenant,
                    sale,
                    &origin.client_id,
                    id,
                    now,
                )?;
                let Some((done, changes)) = done else {
                    return Ok(Staged::Done(Ok(Applied::Unchanged {
                        id: head,
                        epoch,
                        outcome: Outcome::Published,
                    })));
                };
                let site: Arc<str> = Arc::from(done.record.site_id.as_str());
                events.push(Raised {
                    name: Arc::from(done.event),
                    site: site.clone(),
                    data: done.to_json().to_string(),
                });
                if done.ledger.restored() > 0 {
                    events.push(Raised {
                        name: Arc::from("stock:sync"),
                        site,
                        data: serde_json::to_string(&done.ledger.levels)
                            .expect("serialising plain structs cannot fail"),
                    });
                }
                let mut entry = audit("sale", Some(done.record.id.clone()));
                entry.before = done
                    .before
                    .as_ref()
                    .map(|b| b.to_json(&done.unknown_products).to_string());
                entry.client_time = done.record.client_time;
                (Outcome::Sale(Box::new(done)), vec![entry], changes)
            }
            Command::Product(write) => {
                let changes = catalog::apply(
                    &mut *self.conn,
                    &origin.tenant,
                    write,
                    origin.user.as_deref().unwrap_or(&origin.client_id),
                    &origin.client_id,
                    id,
                    now,
                )?;
                if changes.is_empty() {
                    return Ok(Staged::Done(Ok(Applied::Unchanged {
                        id: head,
                        epoch,
                        outcome: Outcome::Products(changes),
                    })));
                }
                let mut audits = Vec::with_capacity(changes.len());
                for change in &changes {
                    events.push(Raised {
                        name: Arc::from(change.event()),
                        site: Arc::from(stocky_core::TENANT_WIDE),
                        data: change.after.to_json().to_string(),
                    });
                    let mut entry = audit("product", Some(change.after.id.to_string()));
                    entry.before = change.before.as_ref().map(|b| b.to_json().to_string());
                    audits.push(entry);
                }
                (Outcome::Products(changes), audits, Vec::new())
            }
            Command::Transfer(command) => {
                let done = transfers::apply(&mut *self.conn, &origin.tenant, command, id, now)?;
                let Some((done, changes)) = done else {
                    return Ok(Staged::Done(Ok(Applied::Unchanged {
                        id: head,
                        epoch,
                        outcome: Outcome::Published,
                    })));
                };
                events.extend(done.events.iter().map(Raised::from));
                let mut entry = audit("transfer", Some(done.after.id.clone()));
                entry.before = done.before.as_ref().map(|b| b.to_json().to_string());
                (Outcome::Transfer(Box::new(done)), vec![entry], changes)
            }
            Command::Order(command) => {
                let done = orders::apply(
                    &mut *self.conn,
                    &origin.tenant,
                    command,
                    &origin.client_id,
                    id,
                    now,
                )?;
                let Some(done) = done else {
                    return Ok(Staged::Done(Ok(Applied::Unchanged {
                        id: head,
                        epoch,
                        outcome: Outcome::Published,
                    })));
                };
                events.extend(done.events.iter().map(Raised::from));
                let mut entry = audit("order", Some(done.after.id.clone()));
                entry.before = done.before.as_ref().map(|b| b.to_json().to_string());
                (Outcome::Order(Box::new(done)), vec![entry], Vec::new())
            }
            Command::SiteData { kind, body } => {
                let version = orders::set_site_data(
                    &mut *self.conn,
                    &origin.tenant,
                    &origin.site,
                    *kind,
                    body,
                    id,
                    now,
                )?;
                let Some(version) = version else {
                    return Ok(Staged::Done(Ok(Applied::Unchanged {
                        id: head,
                        epoch,
                        outcome: Outcome::Published,
                    })));
                };
                let data = serde_json::json!({"siteId": &*origin.site, "version": version});
                events.push(own(kind.event(), data.to_string()));
                (
                    Outcome::SiteData(version),
                    vec![audit(
                        "site_data",
                        Some(format!("{}/{}", origin.site, kind.as_str())),
                    )],
                    Vec::new(),
                )
            }
            Command::Customers(customers) => {
                let changed = orders::merge_customers(
                    &mut *self.conn,
                    &origin.tenant,
                    customers,
                    &origin.client_id,
                    id,
                )?;
                if changed.is_empty() {
                    return Ok(Staged::Done(Ok(Applied::Unchanged {
                        id: head,
                        epoch,
                        outcome: Outcome::Customers(changed),
                    })));
                }
                let (name, data) = orders::customers_event(&changed);
                events.push(Raised {
                    name: Arc::from(name),
                    site: Arc::from(stocky_core::TENANT_WIDE),
                    data,
                });
                let entity = (changed.len() == 1).then(|| changed[0].id.clone());
                (
                    Outcome::Customers(changed),
                    vec![audit("customer", entity)],
                    Vec::new(),
                )
            }
            Command::Thresholds(t) => {
                let (before, after) = inventory::set_thresholds(
                    &mut *self.conn,
                    &origin.tenant,
                    &origin.site,
                    t,
                    id,
                    now,
                )?;
                events.push(own(THRESHOLDS_EVENT, after.to_json().to_string()));
                let change = LevelChange {
                    site: origin.site.to_string(),
                    product: t.product_id,
                    // A raised minimum crosses "as if" from the old threshold's side.
                    before: if before.is_low() { -1 } else { i64::MAX },
                    after: after.quantity,
                    min_stock: after.min_stock,
                };
                let mut entry = audit("inventory", Some(t.product_id.to_string()));
                entry.before = Some(before.to_json().to_string());
                (Outcome::Thresholds(after), vec![entry], vec![change])
            }
        };
        for (site, data) in inventory::low_stock_alerts(&changes) {
            events.push(Raised {
                name: Arc::from(STOCK_LOW),
                site: Arc::from(site.as_str()),
                data,
            });
        }

        let committed = number_events(origin, &epoch, id, now, events);
        insert_events(&mut *self.conn, &committed).map_err(unavailable)?;
        self.push_audits(origin, audits, &committed, now);
        if let Some((key, print)) = op_key {
            insert_applied_keys(
                &mut *self.conn,
                &[(origin.tenant.clone(), key, id, print)],
                now,
            )
            .map_err(unavailable)?;
        }
        let last = id + committed.len() as u64 - 1;
        heads.insert(origin.tenant.clone(), (epoch, last));
        Ok(Staged::New {
            events: committed,
            outcome,
        })
    }

    /// Queues the audit entries of an applied command (written with the batch, see
    /// `commit_batch`), each with its event: catalog writes raise one event per product and
    /// each entry gets its own; every other entry gets the command's own event.
    fn push_audits(
        &mut self,
        origin: &Origin,
        audits: Vec<Audit>,
        committed: &[CommittedEvent],
        now: i64,
    ) {
        let main = &committed[0];
        for (n, entry) in audits.into_iter().enumerate() {
            let event = committed
                .get(n)
                .filter(|_| entry.entity_type == "product")
                .unwrap_or(main);
            self.audit.push(AuditRow {
                tenant: origin.tenant.clone(),
                user: origin.user.clone(),
                device: origin.device.clone(),
                action: event.event.clone(),
                entity_type: entry.entity_type,
                entity_id: entry.entity_id,
                before: entry.before,
                after: event.data.clone(),
                client_time: entry.client_time,
                server_time: now,
                event_id: event.id,
            });
        }
    }

    /// The tenant's committed `(epoch, head)`, read — and row-locked where the engine locks
    /// rows — inside the write transaction.
    fn load_stream(&mut self, tenant: &Arc<str>) -> Result<Option<(Arc<str>, u64)>, DbError> {
        let sql = format!(
            "SELECT epoch, head, indexed_head FROM streams WHERE tenant_id = $1{}",
            self.conn.row_lock()
        );
        let found = match self.conn.query_opt(&sql, args![&**tenant])? {
            Some(mut r) => {
                self.indexed.insert(tenant.clone(), r.int(2)? as u64);
                Some((Arc::<str>::from(r.text(0)?), r.int(1)? as u64))
            }
            None => None,
        };
        if let Some(state) = &found {
            self.streams.insert(tenant.clone(), state.clone());
        }
        Ok(found)
    }

    /// The event a scoped idempotency key was applied as, and the fingerprint of the
    /// command it was used for (none for keys recorded before fingerprints existed).
    fn applied_op(
        &mut self,
        tenant: &str,
        key: &str,
    ) -> Result<Option<(u64, Option<String>)>, DbError> {
        match self.conn.query_opt(
            "SELECT event_id, fingerprint FROM applied_ops WHERE tenant_id = $1 AND op_id = $2",
            args![tenant, key],
        )? {
            Some(mut r) => Ok(Some((r.int(0)? as u64, r.opt_text(1)?))),
            None => Ok(None),
        }
    }

    /// Event `id` of `tenant`'s log, while the log still has it (the original of a retry).
    fn logged_event(&mut self, tenant: &str, id: u64) -> Result<Option<StoredEvent>, DbError> {
        match self.conn.query_opt(
            "SELECT site_id, event, data, client_id, created_at, op_id FROM events
             WHERE tenant_id = $1 AND id = $2",
            args![tenant, id as i64],
        )? {
            Some(mut r) => Ok(Some(StoredEvent {
                id,
                site: r.text(0)?,
                event: r.text(1)?,
                data: r.text(2)?,
                client_id: r.text(3)?,
                created_at: r.int(4)?,
                op_id: r.opt_text(5)?,
            })),
            None => Ok(None),
        }
    }

    /// Drops events beyond the retention count or older than the TTL, and idempotency keys
    /// older than a day.
    fn prune(&mut self) {
        self.last_prune = Instant::now();
        if self.conn.is_broken() {
            return;
        }
        let now = now_millis();
        let ttl_ms = self.options.event_ttl.as_millis() as i64;
        let keep = self.options.event_retention as i64;
        for (tenant, (_, head)) in &self.streams {
            let result = self.conn.execute(
                "DELETE FROM events WHERE tenant_id = $1 AND (id <= $2 OR created_at < $3)",
                args![&**tenant, *head as i64 - keep, now - ttl_ms],
            );
            if let Err(e) = result {
                tracing::warn!(error = %e, "writer: pruning the event log failed; will retry");
            }
        }
        let _ = self.conn.execute(
            "DELETE FROM applied_ops WHERE created_at < $1",
            args![now - 86_400_000],
        );
    }
}

/// The events a command raised, numbered from `id`: its own first (the only one that
/// carries the sender's opId and connection, for its ack), then the ones it set off.
fn number_events(
    origin: &Origin,
    epoch: &Arc<str>,
    id: u64,
    now: i64,
    raised: Vec<Raised>,
) -> Vec<CommittedEvent> {
    raised
        .into_iter()
        .enumerate()
        .map(|(n, raised)| {
            let (op_id, connection) = if n == 0 {
                (origin.op_id.clone(), origin.connection)
            } else {
                (None, 0)
            };
            CommittedEvent {
                tenant: origin.tenant.clone(),
                site: raised.site,
                id: id + n as u64,
                epoch: epoch.clone(),
                event: raised.name,
                data: Arc::from(raised.data),
                client_id: origin.client_id.clone(),
                op_id,
                timestamp_ms: now,
                origin_connection: connection,
            }
        })
        .collect()
}

/// Appends `events` to the log ([`Conn::insert_rows`]).
fn insert_events(conn: &mut dyn Conn, events: &[CommittedEvent]) -> Result<(), DbError> {
    let mut rows = Vec::with_capacity(events.len() * 8);
    for e in events {
        rows.extend_from_slice(args![
            &*e.tenant,
            e.id as i64,
            &*e.site,
            &*e.event,
            &*e.data,
            &*e.client_id,
            e.timestamp_ms,
            e.op_id.as_deref()
        ]);
    }
    conn.insert_rows(
        "INSERT INTO events (tenant_id, id, site_id, event, data, client_id, created_at, op_id)",
        "",
        8,
        &rows,
    )
}

/// Records applied idempotency keys `(tenant, scoped key, event id, fingerprint)`.
fn insert_applied_keys(
    conn: &mut dyn Conn,
    keys: &[(Arc<str>, String, u64, String)],
    now: i64,
) -> Result<(), DbError> {
    let mut rows = Vec::with_capacity(keys.len() * 5);
    for (tenant, key, id, print) in keys {
        rows.extend_from_slice(args![&**tenant, key, *id as i64, now, print]);
    }
    conn.insert_rows(
        "INSERT INTO applied_ops (tenant_id, op_id, event_id, created_at, fingerprint)",
        "",
        5,
        &rows,
    )
}

/// The scoped idempotency key of a command that has one, and the command's fingerprint.
fn op_key(origin: &Origin, command: &Command) -> Option<(String, String)> {
    origin
        .op_id
        .as_ref()
        .map(|op_id| (scoped_op_key(&origin.op_scope, op_id), fingerprint(command)))
}

/// The key `applied_ops` records an idempotency key under: its scope and the key.
fn scoped_op_key(scope: &str, op_id: &str) -> String {
    format!("{scope}\u{1f}{op_id}")
}

/// A digest of what a command asks for (FNV-1a over its content, leaving out what the
/// server fills in per attempt, such as the time a pushed movement arrived), so that a
/// key reused for a different command is told apart from a retry.
fn fingerprint(command: &Command) -> String {
    let content = match command {
        Command::RestoreLedger(entries) => format!(
            "{:?}",
            entries
                .iter()
                .map(|e| (&e.id, &e.site, e.product_id, e.delta, &e.kind, &e.reason))
                .collect::<Vec<_>>()
        ),
        // Leave out the times the server stamps on each attempt.
        Command::Sale(sale) => match sale {
            SaleCommand::Create(r) | SaleCommand::Record(r) => {
                format!("sale {} {:?} {}", r.id, r.lines, r.total)
            }
            SaleCommand::ConfirmPayment { sale, payment, .. } => {
                format!("confirm {sale} {payment}")
            }
            SaleCommand::Refund { sale, refund, .. } => format!("refund {sale} {refund:?}"),
            SaleCommand::Void { sale, reason, .. } => format!("void {sale} {reason:?}"),
        },
        // An order's server-made id and arrival time differ per attempt; the channel's
        // id and content do not.
        Command::Order(stocky_core::orders::OrderCommand::Create(o)) => format!(
            "order {} {:?} {:?} {} {:?}",
            o.site_id, o.channel, o.external_id, o.lines, o.customer
        ),
        other => format!("{other:?}"),
    };
    let hash = content.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}
