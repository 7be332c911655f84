//! Embedded SQLite: one database file, WAL journal, one writer connection beside a pool of
//! `query_only` readers.
//!
//! Pragmas follow seed 003 (§4.1): WAL journal, `synchronous = NORMAL`, foreign keys on,
//! incremental auto-vacuum. Migrations are plain SQL, applied in order inside one
//! transaction each, and tracked with `PRAGMA user_version`; a database written by a newer
//! Stocky (a higher version than this binary knows) is refused rather than guessed at.
//!
//! Statements arrive in the shared dialect ([`crate::sql`]); their `$n` placeholders are
//! rewritten to SQLite's `?n` and prepared statements are cached per connection.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;

use super::checkpoint::Checkpointer;
use super::{ConnRole, Engine};
use crate::sql::{Arg, Conn, DbError, DbErrorKind, Row, TxMode, Val};
use crate::StoreError;

/// Prepared statements kept per connection: every fixed statement plus the multi-row
/// variants ([`crate::sql::statement_chunks`]).
const STATEMENT_CACHE: usize = 256;

pub(crate) struct Sqlite {
    path: PathBuf,
    durability: crate::Durability,
}

impl Sqlite {
    pub(crate) fn new(path: &Path, durability: crate::Durability) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|error| StoreError::Open {
                path: dir.to_owned(),
                error,
            })?;
        }
        Ok(Self {
            path: path.to_owned(),
            durability,
        })
    }
}

impl Engine for Sqlite {
    fn connect(&self, role: ConnRole) -> Result<Box<dyn Conn>, DbError> {
        let conn = Connection::open(&self.path).map_err(db_error)?;
        configure(&conn, role == ConnRole::Reader, self.durability).map_err(db_error)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // The writer's checkpoints run on their own thread (see `checkpoint`).
        let checkpointer = if role == ConnRole::Writer {
            conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
                .map_err(db_error)?;
            Some(Checkpointer::start(&self.path).map_err(db_error)?)
        } else {
            None
        };
        Ok(Box::new(SqliteConn { conn, checkpointer }))
    }

    fn migrate(&self, conn: &mut dyn Conn) -> Result<(), StoreError> {
        let current = conn.query_one("PRAGMA user_version", &[])?.int(0)? as usize;
        if current > MIGRATIONS.len() {
            return Err(StoreError::Schema(format!(
                "database schema version {current} is newer than this binary supports ({}); upgrade Stocky",
                MIGRATIONS.len()
            )));
        }
        for (version, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            crate::sql::in_tx(conn, TxMode::Write, |tx| {
                tx.batch(sql)?;
                tx.batch(&format!("PRAGMA user_version = {}", version + 1))
            })?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("SQLite {}", self.path.display())
    }
}

struct SqliteConn {
    conn: Connection,
    /// The writer's: checkpoints the WAL after its commits, off its thread.
    checkpointer: Option<Checkpointer>,
}

impl SqliteConn {
    fn prepare(&self, sql: &str) -> Result<rusqlite::CachedStatement<'_>, DbError> {
        self.conn
            .prepare_cached(&placeholders(sql))
            .map_err(db_error)
    }
}

impl Conn for SqliteConn {
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, DbError> {
        let mut stmt = self.prepare(sql)?;
        let changed = stmt
            .execute(rusqlite::params_from_iter(args))
            .map_err(db_error)?;
        Ok(changed as u64)
    }

    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, DbError> {
        let mut stmt = self.prepare(sql)?;
        let width = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(args))
            .map_err(db_error)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(db_error)? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(match row.get_ref(i).map_err(db_error)? {
                    ValueRef::Null => Val::Null,
                    ValueRef::Integer(v) => Val::Int(v),
                    ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Real(v) => Val::Int(v as i64),
                    ValueRef::Blob(_) => {
                        return Err(DbError::other(format!("column {i}: unexpected blob")))
                    }
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.conn.execute_batch(sql).map_err(db_error)
    }

    fn commit(&mut self) -> Result<(), DbError> {
        self.batch("COMMIT")?;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.committed();
        }
        Ok(())
    }

    fn begin(&mut self, mode: TxMode) -> Result<(), DbError> {
        // Read-write transactions take the write lock up front: a deferred one that
        // upgrades later can fail with SQLITE_BUSY without waiting.
        self.batch(match mode {
            TxMode::Read => "BEGIN",
            TxMode::Write | TxMode::Plain => "BEGIN IMMEDIATE",
        })
    }

    fn row_lock(&self) -> &'static str {
        ""
    }

    fn any(&self, n: usize) -> String {
        format!("IN (SELECT value FROM json_each(${n}))")
    }

    fn is_broken(&self) -> bool {
        false
    }
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Arg::Int(v) | Arg::OptInt(Some(v)) => ToSqlOutput::from(v),
            Arg::Text(t) | Arg::OptText(Some(t)) => {
                ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes()))
            }
            Arg::OptInt(None) | Arg::OptText(None) => ToSqlOutput::Borrowed(ValueRef::Null),
            Arg::Ints(list) => {
                ToSqlOutput::from(serde_json::to_string(list).expect("integers serialise"))
            }
        })
    }
}

/// `$1` → `?1` (the shared dialect has no `$` anywhere but in placeholders).
fn placeholders(sql: &str) -> Cow<'_, str> {
    if sql.contains('$') {
        Cow::Owned(sql.replace('$', "?"))
    } else {
        Cow::Borrowed(sql)
    }
}

fn db_error(e: rusqlite::Error) -> DbError {
    use rusqlite::ffi;
    let kind = match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            DbErrorKind::Unique
        }
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            DbErrorKind::Connection
        }
        _ => DbErrorKind::Other,
    };
    DbError {
        kind,
        message: format!("sqlite: {e}"),
    }
}

/// Applies seed 003's pragmas to a fresh connection (`synchronous` as `durability` says).
fn configure(
    conn: &Connection,
    read_only: bool,
    durability: crate::Durability,
) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    if read_only {
        return conn.execute_batch("PRAGMA query_only = ON;");
    }
    let synchronous = match durability {
        crate::Durability::Normal => "NORMAL",
        crate::Durability::Full => "FULL",
    };
    // auto_vacuum only takes effect before the first table exists, so it comes first.
    // A page cache of 16 MiB (the default is 2 MiB): the writer's index pages stay in
    // memory instead of being read again with each batch (larger caches cost more at every
    // commit, which walks the cache). Statement journals (a multi-row
    // insert keeps one, to undo just itself) in memory: spilled to a temporary file, they
    // cost a tenth of the writer's time.
    conn.execute_batch(&format!(
        "PRAGMA auto_vacuum = INCREMENTAL;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = {synchronous};
         PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -16384;
         PRAGMA temp_store = MEMORY;"
    ))
}

/// Copies the database at `source` into a new file `target` with SQLite's online backup
/// API — consistent even while a hub is writing — and gives the copy a fresh epoch, so
/// clients of a hub started from it resync instead of mixing two histories. `progress`
/// gets (pages copied, total pages).
pub fn snapshot(
    source: &Path,
    target: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<(), StoreError> {
    if target.exists() {
        return Err(StoreError::Open {
            path: target.to_owned(),
            error: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the snapshot file already exists",
            ),
        });
    }
    let src = Connection::open_with_flags(source, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(db_error)?;
    configure(&src, true, crate::Durability::Normal).map_err(db_error)?;
    let mut dst = Connection::open(target).map_err(db_error)?;
    {
        let backup = rusqlite::backup::Backup::new(&src, &mut dst).map_err(db_error)?;
        loop {
            let more = backup.step(256).map_err(db_error)?;
            let p = backup.progress();
            progress((p.pagecount - p.remaining) as u64, p.pagecount as u64);
            match more {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::More => {}
                // The source is busy (a writer holds a lock): wait a little and go on.
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
    dst.execute("UPDATE streams SET epoch = ?1", [crate::new_epoch()])
        .map_err(db_error)?;
    dst.execute_batch("PRAGMA journal_mode = WAL;")
        .map_err(db_error)?;
    Ok(())
}

/// Each entry upgrades the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE sites (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
-- One event stream per tenant: `head` is the last id assigned, `epoch` changes only when
-- the log is lost or replaced.
CREATE TABLE streams (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants(id),
    epoch       TEXT NOT NULL,
    head        INTEGER NOT NULL
);
-- Materialised on-hand stock: always equal to the sum of the product's movements.
CREATE TABLE stock (
    tenant_id     TEXT NOT NULL,
    site_id       TEXT NOT NULL,
    product_id    INTEGER NOT NULL,
    on_hand       INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    last_event_id INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, site_id, product_id),
    FOREIGN KEY (tenant_id, site_id) REFERENCES sites(tenant_id, id)
) WITHOUT ROWID;
-- The append-only ledger: never updated, never deleted.
CREATE TABLE movements (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    site_id       TEXT NOT NULL,
    product_id    INTEGER NOT NULL,
    delta         INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    reason        TEXT,
    origin_client TEXT,
    origin_op     TEXT,
    event_id      INTEGER NOT NULL,
    client_time   INTEGER,
    server_time   INTEGER NOT NULL
);
CREATE INDEX movements_by_product ON movements (tenant_id, site_id, product_id);
-- The transactional event log (outbox): written with the change, pruned by retention.
CREATE TABLE events (
    tenant_id   TEXT NOT NULL,
    id          INTEGER NOT NULL,
    site_id     TEXT NOT NULL,
    event       TEXT NOT NULL,
    data        TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
-- Idempotency keys of applied commands (`opId`, `Idempotency-Key`).
CREATE TABLE applied_ops (
    tenant_id   TEXT NOT NULL,
    op_id       TEXT NOT NULL,
    event_id    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, op_id)
) WITHOUT ROWID;
"#,
    r#"
-- JSON document collections (seed 000's /api/sync/:db/:store). `body` holds the client's
-- fields; id, timestamps and version are columns. A deleted record stays as a tombstone
-- (`deleted_at` set, body '{}') so that `since` can report the deletion.
CREATE TABLE documents (
    tenant_id   TEXT NOT NULL,
    db          TEXT NOT NULL,
    store       TEXT NOT NULL,
    id          TEXT NOT NULL,
    body        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted_at  INTEGER,
    PRIMARY KEY (tenant_id, db, store, id)
) WITHOUT ROWID;
CREATE INDEX documents_by_update ON documents (tenant_id, db, store, updated_at);
"#,
    r#"
-- People and machines. Emails are unique across the hub (login needs no tenant name).
-- `site_id` NULL means every site of the tenant; `modules` NULL means every module.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    site_id       TEXT,
    modules       TEXT,
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER
);
CREATE TABLE devices (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    id          TEXT NOT NULL,
    site_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
-- API keys are stored as SHA-256 hashes; the key itself is shown once, at creation.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    site_id     TEXT,
    modules     TEXT,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
-- Login sessions: the refresh token (hashed) and whether the session was logged out.
CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users(id),
    device_id     TEXT,
    refresh_hash  TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);
"#,
    r#"
-- Logins look users up by lower(email) on every engine (PostgreSQL has no NOCASE): index it.
CREATE INDEX users_by_lower_email ON users (lower(email));
"#,
    r#"
-- Events remember their origin's idempotency key, so a client can recognise its own
-- change in a replay after it reconnected.
ALTER TABLE events ADD COLUMN op_id TEXT;
"#,
    r#"
-- Store nodes (edges): one-time activation codes at the hub (only their hash is kept);
-- at an edge, its sync cursors and the operations the hub refused (quarantine).
CREATE TABLE activation_codes (
    code_hash   TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    site_id     TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    revoked_at  INTEGER,
    device_id   TEXT
);
CREATE TABLE sync_state (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL
);
CREATE TABLE quarantine (
    op_id       TEXT PRIMARY KEY,
    operation   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX movements_by_event ON movements (tenant_id, event_id, id);
"#,
    r#"
-- A device credential knows its device; a site shows its store node's sync state (seed
-- 003 `sedes`: online, last ping, last sync, sync version); an edge logs its sync rounds
-- (seed 004 `SyncLog`).
ALTER TABLE api_keys ADD COLUMN device_id TEXT;
-- Documents remember the event that last changed them (the order sync reads changes in)
-- and who did (so a tier leaves out what came from the one it sends to).
ALTER TABLE documents ADD COLUMN event_id INTEGER NOT NULL DEFAULT 0;
ALTER TABLE documents ADD COLUMN modified_by TEXT;
CREATE INDEX documents_by_event ON documents (tenant_id, event_id, db, store, id);
-- Idempotency keys are recorded per credential (the key is "<scope>\x1f<opId>") with a
-- fingerprint of the command they were used for.
ALTER TABLE applied_ops ADD COLUMN fingerprint TEXT;
-- A session remembers the refresh token it was rotated away from, to detect its reuse.
ALTER TABLE sessions ADD COLUMN previous_refresh_hash TEXT;
-- Movement ids are per tenant: another tenant's ids neither collide with nor reveal
-- this tenant's (SQLite cannot change a primary key in place: the table is rebuilt).
CREATE TABLE movements_by_tenant (
    id            TEXT NOT NULL,
    tenant_id     TEXT NOT NULL,
    site_id       TEXT NOT NULL,
    product_id    INTEGER NOT NULL,
    delta         INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    reason        TEXT,
    origin_client TEXT,
    origin_op     TEXT,
    event_id      INTEGER NOT NULL,
    client_time   INTEGER,
    server_time   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
INSERT INTO movements_by_tenant (id, tenant_id, site_id, product_id, delta, kind, reason,
    origin_client, origin_op, event_id, client_time, server_time)
SELECT id, tenant_id, site_id, product_id, delta, kind, reason, origin_client, origin_op,
    event_id, client_time, server_time FROM movements;
DROP TABLE movements;
ALTER TABLE movements_by_tenant RENAME TO movements;
-- A product's history reads newest first by position.
CREATE INDEX movements_by_product ON movements (tenant_id, site_id, product_id, event_id, id);
CREATE INDEX movements_by_event ON movements (tenant_id, event_id, id);
ALTER TABLE sites ADD COLUMN online_connection TEXT;
ALTER TABLE sites ADD COLUMN last_ping_at INTEGER;
ALTER TABLE sites ADD COLUMN last_sync_at INTEGER;
ALTER TABLE sites ADD COLUMN sync_version INTEGER NOT NULL DEFAULT 0;
CREATE TABLE sync_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL,
    records       INTEGER NOT NULL,
    status        TEXT NOT NULL,
    error         TEXT,
    started_at    INTEGER NOT NULL,
    completed_at  INTEGER NOT NULL,
    -- The store's tenant and site at the hub; '' at an edge (its own rounds).
    tenant_id     TEXT NOT NULL DEFAULT '',
    site_id       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sync_log_by_site ON sync_log (tenant_id, site_id, id);
"#,
    r#"
-- Retail (issue 11): the catalog, sales, thresholds per site, who made each movement and
-- when the register says it happened, and the audit log.
CREATE TABLE products (
    tenant_id        TEXT NOT NULL,
    id               INTEGER NOT NULL,
    sku              TEXT,
    name             TEXT NOT NULL,
    category         TEXT,
    price            INTEGER NOT NULL,
    cost             INTEGER,
    barcode          TEXT,
    metadata         TEXT,
    version          INTEGER NOT NULL,
    last_modified_at INTEGER NOT NULL,
    last_modified_by TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    deleted_at       INTEGER,
    event_id         INTEGER NOT NULL,
    -- The client the last change came through (`upstream` at an edge for the hub's,
    -- `device:<key>` at the hub for a store node's): sync leaves out what came from the
    -- side it sends to.
    modified_via     TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX products_by_sku ON products (tenant_id, sku);
CREATE INDEX products_by_barcode ON products (tenant_id, barcode);
CREATE INDEX products_by_event ON products (tenant_id, event_id, id);
CREATE TABLE sales (
    tenant_id        TEXT NOT NULL,
    id               TEXT NOT NULL,
    site_id          TEXT NOT NULL,
    device_id        TEXT,
    user_id          TEXT,
    status           TEXT NOT NULL,
    total            INTEGER NOT NULL,
    record           TEXT NOT NULL,
    unknown_products TEXT,
    client_time      INTEGER,
    server_time      INTEGER NOT NULL,
    event_id         INTEGER NOT NULL,
    modified_by      TEXT,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX sales_by_time ON sales (tenant_id, server_time, id);
CREATE INDEX sales_by_site ON sales (tenant_id, site_id, server_time, id);
CREATE INDEX sales_by_event ON sales (tenant_id, event_id, id);
ALTER TABLE stock ADD COLUMN min_stock INTEGER;
ALTER TABLE stock ADD COLUMN max_stock INTEGER;
ALTER TABLE movements ADD COLUMN user_id TEXT;
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    TEXT NOT NULL,
    user_id      TEXT,
    device_id    TEXT,
    action       TEXT NOT NULL,
    entity_type  TEXT NOT NULL,
    entity_id    TEXT,
    before_data  TEXT,
    after_data   TEXT,
    client_time  INTEGER,
    server_time  INTEGER NOT NULL,
    event_id     INTEGER NOT NULL
);
CREATE INDEX audit_by_entity ON audit_log (tenant_id, entity_type, entity_id, id);
CREATE INDEX audit_by_time ON audit_log (tenant_id, server_time);
-- Transfers between sites (seed 003 §5.3); PROCESSING rows are the job queue.
CREATE TABLE transfers (
    tenant_id        TEXT NOT NULL,
    id               TEXT NOT NULL,
    from_site        TEXT NOT NULL,
    to_site          TEXT NOT NULL,
    product_id       INTEGER NOT NULL,
    quantity         INTEGER NOT NULL,
    status           TEXT NOT NULL,
    reason           TEXT,
    requested_by     TEXT NOT NULL,
    approved_by      TEXT,
    rejected_by      TEXT,
    rejection_reason TEXT,
    created_at       INTEGER NOT NULL,
    approved_at      INTEGER,
    completed_at     INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    updated_at       INTEGER NOT NULL,
    event_id         INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX transfers_by_status ON transfers (status, approved_at, id);
CREATE INDEX transfers_by_time ON transfers (tenant_id, created_at, id);
-- Seed 004: orders numbered per site and business day, a site's menu and configuration,
-- customers merged field by field.
CREATE TABLE orders (
    tenant_id     TEXT NOT NULL,
    id            TEXT NOT NULL,
    site_id       TEXT NOT NULL,
    channel       TEXT,
    external_id   TEXT,
    daily_number  INTEGER,
    business_day  TEXT,
    status        TEXT NOT NULL,
    customer      TEXT,
    address       TEXT,
    lines         TEXT NOT NULL,
    notes         TEXT,
    version       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    event_id      INTEGER NOT NULL,
    modified_via  TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX orders_by_external ON orders (tenant_id, site_id, channel, external_id);
CREATE INDEX orders_by_site ON orders (tenant_id, site_id, business_day, daily_number);
CREATE INDEX orders_by_event ON orders (tenant_id, event_id, id);
CREATE TABLE order_numbers (
    tenant_id     TEXT NOT NULL,
    site_id       TEXT NOT NULL,
    business_day  TEXT NOT NULL,
    last_number   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, site_id, business_day)
);
CREATE TABLE site_data (
    tenant_id     TEXT NOT NULL,
    site_id       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    body          TEXT NOT NULL,
    version       INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    event_id      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, site_id, kind)
);
CREATE TABLE customers (
    tenant_id     TEXT NOT NULL,
    id            TEXT NOT NULL,
    body          TEXT NOT NULL,
    updated_at    INTEGER NOT NULL,
    modified_by   TEXT NOT NULL,
    event_id      INTEGER NOT NULL,
    modified_via  TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX customers_by_update ON customers (tenant_id, updated_at, id);
"#,
    // A store node's outbox as it last reported it (with each pull).
    r#"
ALTER TABLE sites ADD COLUMN outbox_pending INTEGER;
ALTER TABLE sites ADD COLUMN outbox_pending_sales INTEGER;
ALTER TABLE sites ADD COLUMN oldest_unsynced_sale_at INTEGER;
ALTER TABLE sites ADD COLUMN outbox_reported_at INTEGER;
"#,
    // The ledger by product and the audit log by entity are indexed in bulk by the
    // writer (`bulk_index`): a tenant's movements and command audit entries up to
    // `indexed_head` are in `ledger_by_product` and `audit_entities`, later ones are read
    // through `movements_by_event` and `audit_by_event`; account entries (event 0) keep
    // an ordinary (partial) index.
    r#"
ALTER TABLE streams ADD COLUMN indexed_head INTEGER NOT NULL DEFAULT 0;
CREATE TABLE ledger_by_product (
    tenant_id   TEXT NOT NULL,
    site_id     TEXT NOT NULL,
    product_id  INTEGER NOT NULL,
    event_id    INTEGER NOT NULL,
    id          TEXT NOT NULL,
    delta       INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, site_id, product_id, event_id, id)
) WITHOUT ROWID;
INSERT INTO ledger_by_product (tenant_id, site_id, product_id, event_id, id, delta)
SELECT tenant_id, site_id, product_id, event_id, id, delta FROM movements;
UPDATE streams SET indexed_head = head;
DROP INDEX movements_by_product;
CREATE TABLE audit_entities (
    tenant_id   TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    -- '' for an entry without an entity id.
    entity_id   TEXT NOT NULL,
    id          INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, entity_type, entity_id, id)
) WITHOUT ROWID;
INSERT INTO audit_entities (tenant_id, entity_type, entity_id, id)
SELECT tenant_id, entity_type, COALESCE(entity_id, ''), id FROM audit_log WHERE event_id > 0;
DROP INDEX audit_by_entity;
CREATE INDEX audit_by_entity ON audit_log (tenant_id, entity_type, entity_id, id) WHERE event_id = 0;
CREATE INDEX audit_by_event ON audit_log (tenant_id, event_id, entity_type, entity_id);
-- The tail of the ledger is read through this index: it covers site and product.
DROP INDEX movements_by_event;
CREATE INDEX movements_by_event ON movements (tenant_id, event_id, id, site_id, product_id);
"#,
    r#"
-- Every refresh token a session was rotated away from, so that presenting any of them
-- again (not only the last) is recognised as reuse and ends the session. Purged with
-- the session.
CREATE TABLE spent_refresh_tokens (
    refresh_hash TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL
);
CREATE INDEX spent_refresh_tokens_by_session ON spent_refresh_tokens (session_id);
"#,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_sets_synchronous_and_seed_003_pragmas_hold() {
        let dir = tempfile::tempdir().unwrap();
        for (durability, expected) in [(crate::Durability::Normal, 1), (crate::Durability::Full, 2)]
        {
            let engine = Sqlite::new(&dir.path().join("d.db"), durability).unwrap();
            let mut conn = engine.connect(ConnRole::Writer).unwrap();
            let pragma = |conn: &mut Box<dyn Conn>, name: &str| {
                conn.query_one(&format!("PRAGMA {name}"), &[])
                    .unwrap()
                    .int(0)
                    .unwrap()
            };
            assert_eq!(pragma(&mut conn, "synchronous"), expected, "{durability:?}");
            assert_eq!(pragma(&mut conn, "foreign_keys"), 1);
            assert_eq!(pragma(&mut conn, "auto_vacuum"), 2, "INCREMENTAL");
        }
    }
}
