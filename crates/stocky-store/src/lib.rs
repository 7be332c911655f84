//! Storage for both tiers (hub and edge): the stock ledger, the materialised on-hand
//! stock, the transactional event log, documents and accounts — on embedded SQLite (cargo
//! feature `sqlite`, the default) or on PostgreSQL shared by several hub instances
//! (feature `postgres`) ([`engine`]). Writes answer with typed values ([`Applied`],
//! [`Outcome`]) and hand typed [`CommittedEvent`]s to the gateway, which alone encodes
//! frames.
//!
//! The logic is written once against the shared SQL dialect of [`sql`]. Writes go through
//! one [`sequencer`] thread per store that owns its write connection and group-commits every
//! command waiting in its bounded queue in one transaction; reads use a small pool of
//! connections beside it.
//!
//! Invariants:
//! - a change, its ledger movements and its event are committed in one transaction;
//! - event ids of a tenant's stream are gap-free and increasing, assigned in the committing
//!   transaction (so several writers on one database never collide or skip);
//! - events are handed to the [`EventSink`] only after their commit, in id order;
//! - a refused command writes nothing.

mod accounts;
pub mod audit;
pub mod bulk_index;
pub mod catalog;
mod doc_changes;
mod documents;
pub mod engine;
pub mod inventory;
pub mod orders;
mod reader;
pub mod sales;
mod sequencer;
mod site_state;
pub mod sql;
mod sync;
mod sync_log;
#[doc(hidden)]
pub mod testing;
pub mod transfers;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stocky_core::documents::DocWrite;
use stocky_core::stock::{BusinessValidator, LedgerEntry, Rejection, StockCommand};
use tokio::sync::{mpsc, oneshot};

pub use accounts::{
    Account, KeyHolder, Listed, Mirrored, Session, User, UserChange, UserChanged, UserLogin,
};
pub use doc_changes::{DocChange, DocCursor};
pub use documents::MERGED_BY;
#[cfg(feature = "sqlite")]
pub use engine::sqlite::snapshot;
pub use engine::{sqlite_file, Location};
pub use reader::{ReplayPage, Snapshot, StockRow, StoredEvent};
pub use site_state::SiteState;
use sql::Conn;
pub use sql::DbError;
pub use sync::{OutboxCursor, Pending, Redeemed, SyncTables, UPSTREAM_ORIGIN};
pub use sync_log::SyncLogEntry;

/// Storage failures (the database, not the caller, is at fault). Each message carries its
/// cause, so none has a `source()`: a report that walks the chain (anyhow's) says the
/// reason once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(DbError),
    #[error("{0}")]
    Location(String),
    #[error("schema: {0}")]
    Schema(String),
    #[error("cannot open {path}: {error}")]
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("storage task failed: {0}")]
    Task(String),
    /// The thing to create exists already.
    #[error("{0}")]
    Conflict(String),
    /// The thing referred to does not exist.
    #[error("{0} not found")]
    NotFound(String),
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        StoreError::Db(e)
    }
}

impl StoreError {
    /// Whether the database is unreachable for now (the caller may retry later).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Db(e) if e.is_connection())
    }
}

/// A fresh random epoch: 128 random bits in hex.
pub(crate) fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Why a submitted command was not applied.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// A business rule refused it; nothing changed.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The store could not apply it (I/O error, shutting down); nothing changed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// A database failure while applying a command: the command was not applied.
pub(crate) fn unavailable(e: DbError) -> SubmitError {
    SubmitError::Unavailable(e.to_string())
}

/// Who sent a command and where it applies.
#[derive(Debug, Clone)]
pub struct Origin {
    pub tenant: Arc<str>,
    pub site: Arc<str>,
    /// The gateway connection that sent it (0 for REST); its echo becomes an `ack`.
    pub connection: u64,
    pub client_id: Arc<str>,
    /// Whose idempotency keys these are (the credential): a key is recognised only for
    /// the scope that used it, so another caller's key neither blocks a command nor
    /// returns someone else's event.
    pub op_scope: Arc<str>,
    /// Idempotency key: a command whose `op_id` was applied before is not applied again.
    pub op_id: Option<String>,
    /// The user whose action it is (recorded on movements, sales and the audit log).
    pub user: Option<Arc<str>>,
    /// The device it came from (a register's `deviceId`, a store node's device).
    pub device: Option<Arc<str>>,
}

impl Origin {
    /// An origin with no user, device or idempotency key (the hub's own writes, tools).
    pub fn system(tenant: Arc<str>, site: Arc<str>, client_id: &str) -> Origin {
        Origin {
            tenant,
            site,
            connection: 0,
            client_id: client_id.into(),
            op_scope: client_id.into(),
            op_id: None,
            user: None,
            device: None,
        }
    }
}

/// A committed event, handed to the [`EventSink`] after commit, as typed parts: the
/// gateway's fan-out encodes its frames.
#[derive(Debug, Clone)]
pub struct CommittedEvent {
    pub tenant: Arc<str>,
    pub site: Arc<str>,
    pub id: u64,
    pub epoch: Arc<str>,
    /// The event name (`stock:add`, `sync:upsert`, …): routing uses it.
    pub event: Arc<str>,
    /// The event's `data` JSON, for frames encoded with another `prev`.
    pub data: Arc<str>,
    pub client_id: Arc<str>,
    pub op_id: Option<String>,
    pub timestamp_ms: i64,
    pub origin_connection: u64,
}

/// Where committed events go (the gateway's fan-out). Called on the writer thread in
/// commit order; must not block. Returns how many connections the event was handed to.
pub trait EventSink: Send + Sync + 'static {
    fn publish(&self, event: CommittedEvent) -> usize;

    /// A group commit was answered (committed or refused as a whole): for metrics.
    fn batch_done(&self, _report: &BatchReport) {}
}

/// What one group commit did: its size, how long it took from `BEGIN` until every
/// command was answered, and how many commands ended each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub size: usize,
    pub latency: std::time::Duration,
    pub applied: usize,
    pub duplicates: usize,
    pub unchanged: usize,
    pub refused: usize,
    pub unavailable: usize,
}

impl BatchReport {
    /// Counts one command's answer.
    pub(crate) fn count(&mut self, answer: &Result<Applied, SubmitError>) {
        match answer {
            Ok(Applied::New { .. }) => self.applied += 1,
            Ok(Applied::Duplicate { .. }) => self.duplicates += 1,
            Ok(Applied::Unchanged { .. }) => self.unchanged += 1,
            Err(SubmitError::Rejected(_)) => self.refused += 1,
            Err(SubmitError::Unavailable(_)) => self.unavailable += 1,
        }
    }
}

/// The store's connections right now, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolState {
    /// Pooled read connections in use, and kept idle.
    pub readers_busy: usize,
    pub readers_idle: usize,
    /// Commands waiting in the writers' queues.
    pub writer_queue: usize,
}

/// The sink of a store nobody watches live (offline CLI commands, an edge being
/// activated): events are logged, and delivered to nobody.
pub struct Unobserved;

impl EventSink for Unobserved {
    fn publish(&self, _: CommittedEvent) -> usize {
        0
    }
}

/// A write for the writer: each one commits with exactly one event.
#[derive(Debug, Clone)]
pub enum Command {
    /// A seed 000 stock command.
    Stock(StockCommand),
    /// A document write, restore or database drop.
    Documents(DocWrite),
    /// Ledger movements from a `_stock` backup; stock is recomputed from the ledger.
    RestoreLedger(Vec<LedgerEntry>),
    /// An application event (seed 001's `SALE_CREATED`, seed 002's `order_created`, …)
    /// put on the log as it is, for routing to entitled connections.
    Publish {
        event: String,
        data: serde_json::Value,
    },
    /// A sale recorded or merged, a payment confirmed, a refund or a void.
    Sale(stocky_core::sales::SaleCommand),
    /// A catalog write.
    Product(stocky_core::catalog::ProductWrite),
    /// A site's thresholds for a product (the origin's site).
    Thresholds(stocky_core::stock::Thresholds),
    /// A transfer between sites requested, approved, rejected or executed.
    Transfer(stocky_core::transfers::TransferCommand),
    /// An order created, numbered, confirmed, changed or merged (seed 004).
    Order(stocky_core::orders::OrderCommand),
    /// A site's menu or configuration replaced whole (the origin's site).
    SiteData {
        kind: orders::SiteDataKind,
        body: serde_json::Value,
    },
    /// Customers merged field by field (seed 004's priorities).
    Customers(Vec<stocky_core::customers::Customer>),
}

impl From<StockCommand> for Command {
    fn from(c: StockCommand) -> Self {
        Command::Stock(c)
    }
}

impl From<DocWrite> for Command {
    fn from(w: DocWrite) -> Self {
        Command::Documents(w)
    }
}

/// A command's result.
#[derive(Debug, Clone)]
pub enum Applied {
    /// Committed as event `id`.
    New {
        id: u64,
        epoch: Arc<str>,
        /// The event's `data` JSON, as logged and sent (embed it; there is no need to
        /// parse it: `outcome` says what happened).
        data: Arc<str>,
        sent_to: usize,
        outcome: Outcome,
    },
    /// Its `op_id` was applied before as event `id`; nothing changed now. `original` is
    /// that event, while the log still has it.
    Duplicate {
        id: u64,
        epoch: Arc<str>,
        original: Option<StoredEvent>,
    },
    /// Valid, and there was nothing to change (a merge whose records all stood): no event
    /// was logged and no id used; `id` is the stream's head, which the state is as of.
    Unchanged {
        id: u64,
        epoch: Arc<str>,
        outcome: Outcome,
    },
}

/// What a committed command did, as a typed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A stock command: its movements.
    Stock(Vec<stocky_core::stock::Movement>),
    Documents(stocky_core::documents::DocOutcome),
    /// `_stock` movements restored.
    Ledger(stocky_core::stock::LedgerRestored),
    /// An application event was published.
    Published,
    Sale(Box<sales::SaleDone>),
    /// The products a catalog write changed.
    Products(Vec<catalog::ProductChange>),
    /// A thresholds change: the level after it.
    Thresholds(inventory::InventoryLevel),
    Transfer(Box<transfers::TransferDone>),
    Order(Box<orders::OrderDone>),
    /// A site's menu or configuration: its new version.
    SiteData(i64),
    /// The customers a merge changed, as they now are.
    Customers(Vec<stocky_core::customers::Customer>),
}

impl Applied {
    /// The event the command's result is visible as of: its own, its first application's
    /// (duplicate), or the head (unchanged).
    pub fn id(&self) -> u64 {
        match self {
            Applied::New { id, .. }
            | Applied::Duplicate { id, .. }
            | Applied::Unchanged { id, .. } => *id,
        }
    }
}

/// Records per store, and deleted ids per store, of a database dump.
pub type Dump = (
    std::collections::BTreeMap<String, Vec<serde_json::Value>>,
    std::collections::BTreeMap<String, Vec<String>>,
);

/// Tuning knobs; [`Default`] holds the documented defaults.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Events kept in the log per tenant (older ones need a full refresh).
    pub event_retention: u64,
    /// Age after which events leave the log.
    pub event_ttl: Duration,
    /// Commands that may wait for the writer; senders wait when it is full.
    pub queue_capacity: usize,
    /// Most commands group-committed in one transaction.
    pub max_batch: usize,
    /// What a commit survives on SQLite (PostgreSQL follows its own `synchronous_commit`).
    pub durability: Durability,
    /// Events of a tenant whose ledger and audit entries may wait before the writer adds
    /// them to the by-product and by-entity indexes, in bulk ([`bulk_index`]). Reads scan
    /// that many at most besides the index; fewer means more index pages written per
    /// command.
    pub index_lag: u64,
    /// Writer threads, each with its own connection and a fixed share of the tenants
    /// (`sequencer::shard_of`). PostgreSQL only: SQLite has one writer per database file,
    /// so more than 1 is refused there.
    pub writers: usize,
}

/// SQLite's `synchronous` setting, i.e. what an acknowledged commit survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous = NORMAL` (seed 003, the default): in WAL mode a commit survives a
    /// process crash; a power loss or OS crash can take the last commits back (never
    /// corrupts the database).
    #[default]
    Normal,
    /// `synchronous = FULL`: the WAL is synced at every commit, so an acknowledged commit
    /// also survives a power loss, at the cost of an fsync per group commit.
    Full,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            event_retention: 10_000,
            event_ttl: Duration::from_secs(600),
            queue_capacity: 4096,
            max_batch: 512,
            durability: Durability::Normal,
            index_lag: bulk_index::LAG,
            writers: 1,
        }
    }
}

/// The head of a tenant's stream: its epoch and last assigned id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHead {
    pub tenant: Arc<str>,
    pub epoch: Arc<str>,
    pub head: u64,
}

/// Reads of the retail tables (sales, catalog, inventory, audit log) on a pooled read
/// connection; see [`Store::read`].
pub struct Reads<'a>(pub(crate) &'a mut dyn Conn);

/// Handle to an open store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// One queue per writer; a tenant's commands always go to the same one.
    writers: Arc<[mpsc::Sender<sequencer::Job>]>,
    reads: reader::Pool,
    /// Read-write connections for account data (writes that carry no event).
    aux: reader::Pool,
    description: Arc<str>,
}

/// Joins the writer threads once every handle's queue is drained; see [`Store::open`].
pub struct WriterGuard(Vec<std::thread::JoinHandle<()>>);

impl WriterGuard {
    /// Blocks until the writers have committed everything queued before the last
    /// [`Store`] handle was dropped.
    pub fn join(self) {
        for handle in self.0 {
            let _ = handle.join();
        }
    }
}

impl Store {
    /// Opens (creating and migrating if needed) the database at `location` and starts its
    /// writer threads (`options.writers`). Returns the store, the writer guard (join it
    /// after dropping every store handle to finish pending commits) and every stream's head.
    pub async fn open(
        location: &Location,
        options: StoreOptions,
        sink: Arc<dyn EventSink>,
        validator: Option<Arc<dyn BusinessValidator>>,
    ) -> Result<(Self, WriterGuard, Vec<StreamHead>), StoreError> {
        let shards = options.writers.max(1);
        if shards > 1 && matches!(location, Location::Sqlite(_)) {
            return Err(StoreError::Location(format!(
                "{shards} writers need PostgreSQL: SQLite has one writer per database file"
            )));
        }
        let engine = location.engine(options.durability)?;
        let opening = engine.clone();
        let (conns, heads) = tokio::task::spawn_blocking(move || {
            let mut first = opening.connect(engine::ConnRole::Writer)?;
            opening.migrate(&mut *first)?;
            let heads = sequencer::bootstrap(&mut *first)?;
            let mut conns = vec![first];
            for _ in 1..shards {
                conns.push(opening.connect(engine::ConnRole::Writer)?);
            }
            Ok::<_, StoreError>((conns, heads))
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        let description = Arc::from(engine.describe());
        let (mut writers, mut threads) = (Vec::new(), Vec::new());
        for (shard, conn) in conns.into_iter().enumerate() {
            let (jobs, rx) = mpsc::channel(options.queue_capacity.max(1));
            let own: Vec<StreamHead> = heads
                .iter()
                .filter(|h| sequencer::shard_of(&h.tenant, shards) == shard)
                .cloned()
                .collect();
            // On an error, the writers already started end by themselves once their
            // queues are dropped with `writers`.
            threads.push(sequencer::spawn(
                sequencer::WriterSetup {
                    shard,
                    engine: engine.clone(),
                    conn,
                    options: options.clone(),
                    sink: sink.clone(),
                    validator: validator.clone(),
                },
                rx,
                &own,
            )?);
            writers.push(jobs);
        }
        let store = Store {
            writers: writers.into(),
            reads: reader::Pool::new(engine.clone(), engine::ConnRole::Reader),
            aux: reader::Pool::new(engine, engine::ConnRole::Accounts),
            description,
        };
        Ok((store, WriterGuard(threads), heads))
    }

    /// Where the data lives (engine and location, without credentials), for logs.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Queues `command` for the writer and waits for its commit (or refusal).
    pub async fn submit(
        &self,
        command: impl Into<Command>,
        origin: Origin,
    ) -> Result<Applied, SubmitError> {
        let command = Box::new(command.into());
        let (reply, rx) = oneshot::channel();
        self.writer_of(&origin.tenant)
            .send(sequencer::Job::Command {
                command,
                origin,
                reply,
            })
            .await
            .map_err(|_| SubmitError::Unavailable("the writer is shut down".into()))?;
        rx.await
            .map_err(|_| SubmitError::Unavailable("the writer stopped before answering".into()))?
    }

    /// Asks the writer to drop events beyond retention or TTL now (it also does so by itself
    /// after writes). Returns without waiting.
    pub fn prune_soon(&self) {
        for writer in self.writers.iter() {
            let _ = writer.try_send(sequencer::Job::Prune);
        }
    }

    /// The queue of the writer that owns `tenant`'s stream.
    fn writer_of(&self, tenant: &str) -> &mpsc::Sender<sequencer::Job> {
        &self.writers[sequencer::shard_of(tenant, self.writers.len())]
    }

    /// Events of `tenant` after `after`, at most `limit`, with the stream's bounds, read in
    /// one snapshot.
    pub async fn replay(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> Result<ReplayPage, StoreError> {
        let tenant = tenant.to_owned();
        self.reads
            .run(move |c| reader::replay(c, &tenant, after, limit))
            .await
    }

    /// All stock of a site together with the event id it reflects, read in one snapshot.
    pub async fn snapshot(&self, tenant: &str, site: &str) -> Result<Snapshot, StoreError> {
        let (tenant, site) = (tenant.to_owned(), site.to_owned());
        self.reads
            .run(move |c| reader::snapshot(c, &tenant, &site))
            .await
    }

    /// One product's stock row, if it has one.
    pub async fn stock_of(
        &self,
        tenant: &str,
        site: &str,
        product: i64,
    ) -> Result<Option<StockRow>, StoreError> {
        let (tenant, site) = (tenant.to_owned(), site.to_owned());
        self.reads
            .run(move |c| reader::stock_of(c, &tenant, &site, product))
            .await
    }

    /// Every site's stock levels of `tenant`, ordered by product and site, with the
    /// stream head the read reflects.
    pub async fn tenant_levels(
        &self,
        tenant: &str,
    ) -> Result<(u64, Vec<stocky_core::stock::SiteLevel>), StoreError> {
        let tenant = tenant.to_owned();
        self.reads
            .run(move |c| reader::tenant_levels(c, &tenant))
            .await
    }

    /// Runs account operations (tenants, sites, users, keys, sessions) on a read-write
    /// connection off the async threads.
    pub async fn accounts<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Accounts<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.aux.run(move |c| f(&mut Accounts(c))).await
    }

    /// Runs `f` on the sync tables (activation codes, outbox, quarantine) on a pooled
    /// connection (not the writer: nothing here is an event).
    pub async fn sync<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut SyncTables<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.aux.run(move |c| f(&mut SyncTables(c))).await
    }

    /// Whether every writer thread still takes commands (one ends only at shutdown or when
    /// it panicked).
    pub fn writer_alive(&self) -> bool {
        self.writers.iter().all(|w| !w.is_closed())
    }

    /// The read pools' connections and the writer's queue, for metrics.
    pub fn pool_state(&self) -> PoolState {
        let (reads, aux) = (self.reads.state(), self.aux.state());
        PoolState {
            readers_busy: reads.0 + aux.0,
            readers_idle: reads.1 + aux.1,
            writer_queue: self
                .writers
                .iter()
                .map(|w| w.max_capacity() - w.capacity())
                .sum(),
        }
    }

    /// Runs `f` on a pooled read connection (sales, catalog, inventory, audit log).
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Reads<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.reads.run(move |c| f(&mut Reads(c))).await
    }

    /// Every tenant stream's committed head, in one read.
    pub async fn stream_heads(&self) -> Result<Vec<StreamHead>, StoreError> {
        self.reads.run(reader::heads).await
    }

    /// A tenant stream's committed `(epoch, head)`.
    pub async fn stream_head(&self, tenant: &str) -> Result<(String, u64), StoreError> {
        let tenant = tenant.to_owned();
        self.reads
            .run(move |c| reader::stream_head(c, &tenant))
            .await
    }

    /// Live records of a store, oldest first.
    pub async fn documents(
        &self,
        tenant: &str,
        db: &str,
        store: &str,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let (tenant, db, store) = (tenant.to_owned(), db.to_owned(), store.to_owned());
        self.reads
            .run(move |c| documents::list(c, &tenant, &db, &store))
            .await
    }

    /// One live record.
    pub async fn document(
        &self,
        tenant: &str,
        db: &str,
        store: &str,
        id: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let (tenant, db, store, id) = (
            tenant.to_owned(),
            db.to_owned(),
            store.to_owned(),
            id.to_owned(),
        );
        self.reads
            .run(move |c| documents::get(c, &tenant, &db, &store, &id))
            .await
    }

    /// Changes after `since_ms` (live records and tombstones with `"_deleted": true`).
    pub async fn documents_since(
        &self,
        tenant: &str,
        db: &str,
        store: &str,
        since_ms: i64,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let (tenant, db, store) = (tenant.to_owned(), db.to_owned(), store.to_owned());
        self.reads
            .run(move |c| documents::since(c, &tenant, &db, &store, since_ms))
            .await
    }

    /// Seed 000's store statistics as of `now_ms`.
    pub async fn document_stats(
        &self,
        tenant: &str,
        db: &str,
        store: &str,
        now_ms: i64,
    ) -> Result<serde_json::Value, StoreError> {
        let (tenant, db, store) = (tenant.to_owned(), db.to_owned(), store.to_owned());
        self.reads
            .run(move |c| documents::stats(c, &tenant, &db, &store, now_ms))
            .await
    }

    /// Every database → store → live record count.
    pub async fn databases(
        &self,
        tenant: &str,
    ) -> Result<
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, i64>>,
        StoreError,
    > {
        let tenant = tenant.to_owned();
        self.reads
            .run(move |c| documents::databases(c, &tenant))
            .await
    }

    /// A database's live records per store (changed after `since_ms` when given), and the
    /// ids deleted after `since_ms`.
    pub async fn dump(
        &self,
        tenant: &str,
        db: &str,
        since_ms: Option<i64>,
    ) -> Result<Dump, StoreError> {
        let (tenant, db) = (tenant.to_owned(), db.to_owned());
        self.reads
            .run(move |c| documents::dump(c, &tenant, &db, since_ms))
            .await
    }

    /// The tenant's stock ledger in the `_stock` backup format: every movement, or those
    /// recorded after `since_ms`.
    pub async fn ledger(
        &self,
        tenant: &str,
        since_ms: Option<i64>,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let tenant = tenant.to_owned();
        self.reads
            .run(move |c| documents::ledger(c, &tenant, since_ms))
            .await
    }

    /// How many movements the tenant's ledger holds.
    pub async fn ledger_len(&self, tenant: &str) -> Result<i64, StoreError> {
        let tenant = tenant.to_owned();
        self.reads
            .run(move |c| documents::ledger_len(c, &tenant))
            .await
    }

    /// Sum of a product's ledger movements (for audits and tests: must equal its stock).
    pub async fn ledger_sum(
        &self,
        tenant: &str,
        site: &str,
        product: i64,
    ) -> Result<i64, StoreError> {
        let (tenant, site) = (tenant.to_owned(), site.to_owned());
        self.reads
            .run(move |c| reader::ledger_sum(c, &tenant, &site, product))
            .await
    }
}

/// Account operations on one connection; see [`Store::accounts`].
pub struct Accounts<'c>(&'c mut dyn Conn);

impl Accounts<'_> {
    /// Runs `change` and writes its audit entry in one transaction (`change` must not open
    /// its own): both happen or neither.
    pub fn audited<T>(
        &mut self,
        entry: &audit::AccountAudit,
        change: impl FnOnce(&mut Accounts<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.audited_when(entry, change, |_| true)
    }

    /// [`Accounts::audited`] for a change that may turn out to change nothing: the entry
    /// is written only when `happened` says so of the result.
    pub fn audited_when<T>(
        &mut self,
        entry: &audit::AccountAudit,
        change: impl FnOnce(&mut Accounts<'_>) -> Result<T, StoreError>,
        happened: impl FnOnce(&T) -> bool,
    ) -> Result<T, StoreError> {
        sql::in_tx(self.0, sql::TxMode::Plain, |tx| {
            let done = change(&mut Accounts(tx))?;
            if happened(&done) {
                entry.write(tx, stocky_core::time::now_millis())?;
            }
            Ok(done)
        })
    }

    /// Writes the audit entry of a change that ran in its own transaction just before.
    pub fn audit(&mut self, entry: &audit::AccountAudit) -> Result<(), StoreError> {
        Ok(entry.write(self.0, stocky_core::time::now_millis())?)
    }

    pub fn create_device(
        &mut self,
        tenant: &str,
        id: &str,
        site: &str,
        name: &str,
    ) -> Result<(), StoreError> {
        accounts::create_device(self.0, tenant, id, site, name)
    }
    pub fn list_devices(
        &mut self,
        tenant: &str,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        accounts::list_devices(self.0, tenant)
    }
    /// Creates a tenant (stream, `default` site) and, when given, its first owner
    /// `(account, email, password hash)`, atomically.
    pub fn create_tenant(
        &mut self,
        id: &str,
        name: &str,
        owner: Option<(&Account, &str, &str)>,
    ) -> Result<(), StoreError> {
        accounts::create_tenant(self.0, id, name, owner)
    }
    pub fn list_tenants(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        accounts::list_tenants(self.0)
    }
    pub fn create_site(&mut self, tenant: &str, id: &str, name: &str) -> Result<(), StoreError> {
        accounts::create_site(self.0, tenant, id, name)
    }
    pub fn site_exists(&mut self, tenant: &str, site: &str) -> Result<bool, StoreError> {
        accounts::site_exists(self.0, tenant, site)
    }
    pub fn list_sites(&mut self, tenant: &str) -> Result<Vec<(String, String)>, StoreError> {
        accounts::list_sites(self.0, tenant)
    }
    pub fn create_user(
        &mut self,
        account: &Account,
        email: &str,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        accounts::create_user(self.0, account, email, password_hash)
    }
    pub fn user_by_email(&mut self, email: &str) -> Result<Option<UserLogin>, StoreError> {
        accounts::user_by_email(self.0, email)
    }
    /// Sets a new password hash for the user with `email` and logs out their sessions;
    /// `None` when there is no such user.
    pub fn reset_password(
        &mut self,
        email: &str,
        password_hash: &str,
    ) -> Result<Option<Account>, StoreError> {
        accounts::reset_password(self.0, email, password_hash)
    }
    /// User `id` of `tenant`, enabled or not.
    pub fn user(&mut self, tenant: &str, id: &str) -> Result<Option<User>, StoreError> {
        accounts::user(self.0, tenant, id)
    }
    /// The enabled user `id` of `tenant` with their password hash.
    pub fn user_login(&mut self, tenant: &str, id: &str) -> Result<Option<UserLogin>, StoreError> {
        accounts::user_login(self.0, tenant, id)
    }
    /// Changes a user's role, site, modules or access, ending their sessions; run it in
    /// [`Accounts::audited`] (one transaction).
    pub fn update_user(
        &mut self,
        tenant: &str,
        id: &str,
        change: &UserChange,
        by_owner: bool,
    ) -> Result<UserChanged, StoreError> {
        accounts::update_user(self.0, tenant, id, change, by_owner)
    }
    /// Sets a user's password hash and ends their sessions but `keep`; run it in
    /// [`Accounts::audited`] (one transaction).
    pub fn set_password(
        &mut self,
        tenant: &str,
        id: &str,
        password_hash: &str,
        keep: Option<&str>,
        by_owner: bool,
    ) -> Result<UserChanged, StoreError> {
        accounts::set_password(self.0, tenant, id, password_hash, keep, by_owner)
    }
    pub fn count_users(&mut self) -> Result<i64, StoreError> {
        accounts::count_users(self.0)
    }
    pub fn list_users(&mut self, tenant: &str) -> Result<Vec<Listed>, StoreError> {
        accounts::list_users(self.0, tenant)
    }
    pub fn create_api_key(
        &mut self,
        account: &Account,
        name: &str,
        key_hash: &str,
    ) -> Result<(), StoreError> {
        accounts::create_api_key(self.0, account, name, key_hash)
    }
    pub fn api_key(&mut self, key_hash: &str) -> Result<Option<KeyHolder>, StoreError> {
        accounts::api_key(self.0, key_hash)
    }
    pub fn create_device_key(
        &mut self,
        account: &Account,
        device: &str,
        name: &str,
        key_hash: &str,
    ) -> Result<(), StoreError> {
        accounts::create_device_key(self.0, account, device, name, key_hash)
    }
    pub fn revoke_device_keys_except(
        &mut self,
        tenant: &str,
        device: &str,
        keep: [&str; 2],
    ) -> Result<usize, StoreError> {
        accounts::revoke_device_keys_except(self.0, tenant, device, keep)
    }
    pub fn site_users(&mut self, tenant: &str, site: &str) -> Result<Vec<UserLogin>, StoreError> {
        accounts::site_users(self.0, tenant, site)
    }
    pub fn mirror_users(&mut self, users: &[UserLogin]) -> Result<Mirrored, StoreError> {
        accounts::mirror_users(self.0, users)
    }
    pub fn list_api_keys(&mut self, tenant: &str) -> Result<Vec<Listed>, StoreError> {
        accounts::list_api_keys(self.0, tenant)
    }
    pub fn revoke_api_key(&mut self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        accounts::revoke_api_key(self.0, tenant, id)
    }
    pub fn create_session(
        &mut self,
        id: &str,
        account: &Account,
        device: Option<&str>,
        refresh_hash: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        accounts::create_session(self.0, id, account, device, refresh_hash, expires_at)
    }
    pub fn rotate_session(
        &mut self,
        refresh_hash: &str,
        new_hash: &str,
        now: i64,
    ) -> Result<Option<Session>, StoreError> {
        accounts::rotate_session(self.0, refresh_hash, new_hash, now)
    }
    pub fn session_active(&mut self, id: &str) -> Result<bool, StoreError> {
        accounts::session_active(self.0, id)
    }
    pub fn api_key_active(&mut self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        accounts::api_key_active(self.0, tenant, id)
    }
    pub fn revoke_session(&mut self, id: &str) -> Result<bool, StoreError> {
        accounts::revoke_session(self.0, id)
    }
    pub fn purge_sessions(&mut self, before: i64) -> Result<u64, StoreError> {
        accounts::purge_sessions(self.0, before)
    }
}

#[cfg(test)]
mod tests;
