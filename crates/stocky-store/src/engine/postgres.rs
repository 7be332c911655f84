//! PostgreSQL: the source of truth shared by several hub instances.
//!
//! Each connection is a synchronous `postgres` client used from the writer thread or
//! tokio's blocking pool (never from async code). Prepared statements are cached per
//! connection. Writers of different instances serialise per tenant on the `streams` row
//! (`SELECT … FOR UPDATE` inside the committing transaction), which is what keeps event
//! ids gap-free across instances; reads that span statements run at REPEATABLE READ.
//!
//! A connection that breaks (server restart, network) is reported as
//! [`DbErrorKind::Connection`] and replaced by its owner; nothing here retries a write.

use std::collections::HashMap;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls, Statement};

use super::redact;
use super::{ConnRole, Engine};
use crate::sql::{in_tx, Arg, Conn, DbError, DbErrorKind, Row, TxMode, Val};
use crate::StoreError;

/// Prepared statements kept per connection (see [`crate::sql::statement_chunks`]).
const STATEMENT_CACHE: usize = 256;

/// Taken by migrations so that instances starting together migrate one at a time.
const MIGRATION_LOCK: i64 = 0x5354_4f43_4b59; // "STOCKY"

pub(crate) struct Postgres {
    config: postgres::Config,
    /// TLS per the URL's `sslmode` ([`super::pg_tls`]); `None`: plaintext.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    display: String,
}

impl Postgres {
    pub(crate) fn new(url: &str) -> Result<Self, StoreError> {
        let split = super::pg_tls::split(url)?;
        let tls = match split.check {
            Some(check) => Some(super::pg_tls::connector(check, split.root_cert.as_ref())?),
            None => None,
        };
        let mut config: postgres::Config = split
            .url
            .parse()
            .map_err(|e| StoreError::Location(format!("invalid PostgreSQL URL: {}", reason(&e))))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("stocky");
        }
        Ok(Self {
            config,
            tls,
            display: redact(url),
        })
    }
}

impl Engine for Postgres {
    fn connect(&self, _role: ConnRole) -> Result<Box<dyn Conn>, DbError> {
        let connected = match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        };
        let client = connected.map_err(|e| {
            DbError::connection(format!(
                "cannot connect to {}: {}",
                self.display,
                reason(&e)
            ))
        })?;
        Ok(Box::new(PgConn {
            client: Some(client),
            statements: HashMap::new(),
        }))
    }

    fn migrate(&self, conn: &mut dyn Conn) -> Result<(), StoreError> {
        in_tx(conn, TxMode::Plain, |tx| {
            tx.batch(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))?;
            tx.batch("CREATE TABLE IF NOT EXISTS stocky_schema (version BIGINT NOT NULL)")?;
            let current = match tx.query_opt("SELECT version FROM stocky_schema", &[])? {
                Some(row) => row.int(0)? as usize,
                None => 0,
            };
            if current > MIGRATIONS.len() {
                return Err(StoreError::Schema(format!(
                    "database schema version {current} is newer than this binary supports ({}); upgrade Stocky",
                    MIGRATIONS.len()
                )));
            }
            for sql in &MIGRATIONS[current..] {
                tx.batch(sql)?;
            }
            tx.batch("DELETE FROM stocky_schema")?;
            tx.execute(
                "INSERT INTO stocky_schema (version) VALUES ($1)",
                &[Arg::Int(MIGRATIONS.len() as i64)],
            )?;
            Ok(())
        })
    }

    fn describe(&self) -> String {
        format!("PostgreSQL {}", self.display)
    }
}

struct PgConn {
    /// Always `Some` until dropped.
    client: Option<Client>,
    statements: HashMap<String, Statement>,
}

/// Closing a client blocks on its own runtime, which must not happen on an async thread
/// (a store dropped in async code drops its pooled connections): there the client is
/// closed on a thread of its own.
impl Drop for PgConn {
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_ok() {
            if let Some(client) = self.client.take() {
                std::thread::spawn(move || drop(client));
            }
        }
    }
}

impl PgConn {
    fn client(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .expect("the client lives as long as the connection")
    }

    fn prepare(&mut self, sql: &str) -> Result<Statement, DbError> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client().prepare(sql).map_err(db_error)?;
        if self.statements.len() >= STATEMENT_CACHE {
            // Never reached by the store's own statements; a bound all the same.
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }
}

fn params<'a>(args: &'a [Arg<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    args.iter()
        .map(|arg| -> &(dyn ToSql + Sync) {
            match arg {
                Arg::Int(v) => v,
                Arg::Text(t) => t,
                Arg::OptInt(v) => v,
                Arg::OptText(t) => t,
                Arg::Ints(list) => list,
            }
        })
        .collect()
}

impl Conn for PgConn {
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, DbError> {
        let stmt = self.prepare(sql)?;
        self.client()
            .execute(&stmt, &params(args))
            .map_err(db_error)
    }

    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, DbError> {
        let stmt = self.prepare(sql)?;
        let rows = self
            .client()
            .query(&stmt, &params(args))
            .map_err(db_error)?;
        rows.iter().map(convert_row).collect()
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.client().batch_execute(sql).map_err(db_error)
    }

    fn begin(&mut self, mode: TxMode) -> Result<(), DbError> {
        self.batch(match mode {
            TxMode::Read => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            TxMode::Write | TxMode::Plain => "BEGIN",
        })
    }

    fn row_lock(&self) -> &'static str {
        " FOR UPDATE"
    }

    fn any(&self, n: usize) -> String {
        format!("= ANY(${n}::bigint[])")
    }

    /// One `INSERT … SELECT * FROM unnest($1::bigint[], $2::text[], …)`: a column per
    /// parameter, so one statement shape per table and one round trip per call. One or two
    /// rows (a single command's events) go as plain `VALUES`, one statement as well, which
    /// PostgreSQL runs faster than unpacking arrays.
    fn insert_rows(
        &mut self,
        head: &str,
        tail: &str,
        width: usize,
        rows: &[Arg<'_>],
    ) -> Result<(), DbError> {
        if rows.len() <= 2 * width {
            return crate::sql::insert_values(self, head, tail, width, rows);
        }
        let mut columns: Vec<Box<dyn ToSql + Sync + '_>> = Vec::with_capacity(width);
        let mut casts = Vec::with_capacity(width);
        for column in 0..width {
            let values = rows.iter().skip(column).step_by(width);
            match rows[column] {
                Arg::Int(_) | Arg::OptInt(_) | Arg::Ints(_) => {
                    let ints: Vec<Option<i64>> = values
                        .map(|arg| match arg {
                            Arg::Int(v) => Some(*v),
                            Arg::OptInt(v) => *v,
                            _ => None,
                        })
                        .collect();
                    columns.push(Box::new(ints));
                    casts.push(format!("${}::bigint[]", column + 1));
                }
                Arg::Text(_) | Arg::OptText(_) => {
                    let texts: Vec<Option<&str>> = values
                        .map(|arg| match arg {
                            Arg::Text(t) => Some(*t),
                            Arg::OptText(t) => *t,
                            _ => None,
                        })
                        .collect();
                    columns.push(Box::new(texts));
                    casts.push(format!("${}::text[]", column + 1));
                }
            }
        }
        let sql = format!("{head} SELECT * FROM unnest({}) {tail}", casts.join(", "));
        let stmt = self.prepare(&sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = columns.iter().map(|c| &**c).collect();
        self.client()
            .execute(&stmt, &params)
            .map(drop)
            .map_err(db_error)
    }

    fn is_broken(&self) -> bool {
        self.client.as_ref().is_none_or(Client::is_closed)
    }
}

fn convert_row(row: &postgres::Row) -> Result<Row, DbError> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let value = match *column.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i).map(|v| v.map(Val::Int)),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)
                .map(|v| v.map(|v| Val::Int(v.into()))),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)
                .map(|v| v.map(|v| Val::Int(v.into()))),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)
                .map(|v| v.map(|v| Val::Int(v.into()))),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
                .try_get::<_, Option<String>>(i)
                .map(|v| v.map(Val::Text)),
            ref other => {
                return Err(DbError::other(format!(
                    "column {:?}: unsupported type {other}",
                    column.name()
                )))
            }
        };
        values.push(value.map_err(db_error)?.unwrap_or(Val::Null));
    }
    Ok(Row(values))
}

fn db_error(e: postgres::Error) -> DbError {
    let kind = match e.code() {
        Some(code) if *code == SqlState::UNIQUE_VIOLATION => DbErrorKind::Unique,
        Some(code)
            if *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::T_R_SERIALIZATION_FAILURE =>
        {
            DbErrorKind::Conflict
        }
        // Class 08 (connection exception) and 57P01–57P03 (the server is shutting down or
        // starting up).
        Some(code) if code.code().starts_with("08") || code.code().starts_with("57P") => {
            DbErrorKind::Connection
        }
        Some(_) => DbErrorKind::Other,
        None if e.is_closed() || std::error::Error::source(&e).is_some() => DbErrorKind::Connection,
        None => DbErrorKind::Other,
    };
    DbError {
        kind,
        message: format!("postgres: {}", reason(&e)),
    }
}

/// What went wrong, said once: the server's own message (severity, text, detail, hint —
/// e.g. `FATAL: database "x" does not exist`), or else the error with its causes
/// (`postgres::Error` alone says only "db error" or "error connecting to server").
fn reason(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.to_string();
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Each entry upgrades the schema from version `index` to `index + 1`. The tables are the
/// SQLite schema's, with PostgreSQL types: every integer is BIGINT (ids, amounts and
/// millisecond timestamps alike), and emails are unique case-insensitively.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE TABLE sites (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE streams (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants(id),
    epoch       TEXT NOT NULL,
    head        BIGINT NOT NULL
);
CREATE TABLE stock (
    tenant_id     TEXT NOT NULL,
    site_id       TEXT NOT NULL,
    product_id    BIGINT NOT NULL,
    on_hand       BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    last_event_id BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, site_id, product_id),
    FOREIGN KEY (tenant_id, site_id) REFERENCES sites(tenant_id, id)
);
CREATE TABLE movements (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    site_id       TEXT NOT NULL,
    product_id    BIGINT NOT NULL,
    delta         BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    reason        TEXT,
    origin_client TEXT,
    origin_op     TEXT,
    event_id      BIGINT NOT NULL,
    client_time   BIGINT,
    server_time   BIGINT NOT NULL
);
CREATE INDEX movements_by_product ON movements (tenant_id, site_id, product_id);
CREATE TABLE events (
    tenant_id   TEXT NOT NULL,
    id          BIGINT NOT NULL,
    site_id     TEXT NOT NULL,
    event       TEXT NOT NULL,
    data        TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE applied_ops (
    tenant_id   TEXT NOT NULL,
    op_id       TEXT NOT NULL,
    event_id    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, op_id)
);
CREATE TABLE documents (
    tenant_id   TEXT NOT NULL,
    db          TEXT NOT NULL,
    store       TEXT NOT NULL,
    id          TEXT NOT NULL,
    body        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    deleted_at  BIGINT,
    PRIMARY KEY (tenant_id, db, store, id)
);
CREATE INDEX documents_by_update ON documents (tenant_id, db, store, updated_at);
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    site_id       TEXT,
    modules       TEXT,
    created_at    BIGINT NOT NULL,
    disabled_at   BIGINT
);
CREATE UNIQUE INDEX users_by_email ON users (lower(email));
CREATE TABLE devices (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    id          TEXT NOT NULL,
    site_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    site_id     TEXT,
    modules     TEXT,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users(id),
    device_id     TEXT,
    refresh_hash  TEXT NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);
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
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    revoked_at  BIGINT,
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
    created_at  BIGINT NOT NULL
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
ALTER TABLE documents ADD COLUMN event_id BIGINT NOT NULL DEFAULT 0;
ALTER TABLE documents ADD COLUMN modified_by TEXT;
CREATE INDEX documents_by_event ON documents (tenant_id, event_id, db, store, id);
-- Idempotency keys are recorded per credential (the key is "<scope>\x1f<opId>") with a
-- fingerprint of the command they were used for.
ALTER TABLE applied_ops ADD COLUMN fingerprint TEXT;
-- A session remembers the refresh token it was rotated away from, to detect its reuse.
ALTER TABLE sessions ADD COLUMN previous_refresh_hash TEXT;
-- Movement ids are per tenant: another tenant's ids neither collide with nor reveal
-- this tenant's.
ALTER TABLE movements DROP CONSTRAINT movements_pkey;
ALTER TABLE movements ADD PRIMARY KEY (tenant_id, id);
-- A product's history reads newest first by position.
DROP INDEX movements_by_product;
CREATE INDEX movements_by_product ON movements (tenant_id, site_id, product_id, event_id, id);
ALTER TABLE sites ADD COLUMN online_connection TEXT;
ALTER TABLE sites ADD COLUMN last_ping_at BIGINT;
ALTER TABLE sites ADD COLUMN last_sync_at BIGINT;
ALTER TABLE sites ADD COLUMN sync_version BIGINT NOT NULL DEFAULT 0;
CREATE TABLE sync_log (
    id            BIGSERIAL PRIMARY KEY,
    kind          TEXT NOT NULL,
    records       BIGINT NOT NULL,
    status        TEXT NOT NULL,
    error         TEXT,
    started_at    BIGINT NOT NULL,
    completed_at  BIGINT NOT NULL,
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
    id               BIGINT NOT NULL,
    sku              TEXT,
    name             TEXT NOT NULL,
    category         TEXT,
    price            BIGINT NOT NULL,
    cost             BIGINT,
    barcode          TEXT,
    metadata         TEXT,
    version          BIGINT NOT NULL,
    last_modified_at BIGINT NOT NULL,
    last_modified_by TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    deleted_at       BIGINT,
    event_id         BIGINT NOT NULL,
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
    total            BIGINT NOT NULL,
    record           TEXT NOT NULL,
    unknown_products TEXT,
    client_time      BIGINT,
    server_time      BIGINT NOT NULL,
    event_id         BIGINT NOT NULL,
    modified_by      TEXT,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX sales_by_time ON sales (tenant_id, server_time, id);
CREATE INDEX sales_by_site ON sales (tenant_id, site_id, server_time, id);
CREATE INDEX sales_by_event ON sales (tenant_id, event_id, id);
ALTER TABLE stock ADD COLUMN min_stock BIGINT;
ALTER TABLE stock ADD COLUMN max_stock BIGINT;
ALTER TABLE movements ADD COLUMN user_id TEXT;
CREATE TABLE audit_log (
    id           BIGSERIAL PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    user_id      TEXT,
    device_id    TEXT,
    action       TEXT NOT NULL,
    entity_type  TEXT NOT NULL,
    entity_id    TEXT,
    before_data  TEXT,
    after_data   TEXT,
    client_time  BIGINT,
    server_time  BIGINT NOT NULL,
    event_id     BIGINT NOT NULL
);
CREATE INDEX audit_by_entity ON audit_log (tenant_id, entity_type, entity_id, id);
CREATE INDEX audit_by_time ON audit_log (tenant_id, server_time);
-- Transfers between sites (seed 003 §5.3); PROCESSING rows are the job queue.
CREATE TABLE transfers (
    tenant_id        TEXT NOT NULL,
    id               TEXT NOT NULL,
    from_site        TEXT NOT NULL,
    to_site          TEXT NOT NULL,
    product_id       BIGINT NOT NULL,
    quantity         BIGINT NOT NULL,
    status           TEXT NOT NULL,
    reason           TEXT,
    requested_by     TEXT NOT NULL,
    approved_by      TEXT,
    rejected_by      TEXT,
    rejection_reason TEXT,
    created_at       BIGINT NOT NULL,
    approved_at      BIGINT,
    completed_at     BIGINT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    last_error       TEXT,
    updated_at       BIGINT NOT NULL,
    event_id         BIGINT NOT NULL,
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
    daily_number  BIGINT,
    business_day  TEXT,
    status        TEXT NOT NULL,
    customer      TEXT,
    address       TEXT,
    lines         TEXT NOT NULL,
    notes         TEXT,
    version       BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    event_id      BIGINT NOT NULL,
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
    last_number   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, site_id, business_day)
);
CREATE TABLE site_data (
    tenant_id     TEXT NOT NULL,
    site_id       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    body          TEXT NOT NULL,
    version       BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    event_id      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, site_id, kind)
);
CREATE TABLE customers (
    tenant_id     TEXT NOT NULL,
    id            TEXT NOT NULL,
    body          TEXT NOT NULL,
    updated_at    BIGINT NOT NULL,
    modified_by   TEXT NOT NULL,
    event_id      BIGINT NOT NULL,
    modified_via  TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX customers_by_update ON customers (tenant_id, updated_at, id);
"#,
    // A store node's outbox as it last reported it (with each pull).
    r#"
ALTER TABLE sites ADD COLUMN outbox_pending BIGINT;
ALTER TABLE sites ADD COLUMN outbox_pending_sales BIGINT;
ALTER TABLE sites ADD COLUMN oldest_unsynced_sale_at BIGINT;
ALTER TABLE sites ADD COLUMN outbox_reported_at BIGINT;
"#,
    // The ledger by product and the audit log by entity are indexed in bulk by the
    // writer (`bulk_index`): a tenant's movements and command audit entries up to
    // `indexed_head` are in `ledger_by_product` and `audit_entities`, later ones are read
    // through `movements_by_event` and `audit_by_event`; account entries (event 0) keep
    // an ordinary (partial) index.
    r#"
ALTER TABLE streams ADD COLUMN indexed_head BIGINT NOT NULL DEFAULT 0;
CREATE TABLE ledger_by_product (
    tenant_id   TEXT NOT NULL,
    site_id     TEXT NOT NULL,
    product_id  BIGINT NOT NULL,
    event_id    BIGINT NOT NULL,
    id          TEXT NOT NULL,
    delta       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, site_id, product_id, event_id, id)
);
INSERT INTO ledger_by_product (tenant_id, site_id, product_id, event_id, id, delta)
SELECT tenant_id, site_id, product_id, event_id, id, delta FROM movements;
UPDATE streams SET indexed_head = head;
DROP INDEX movements_by_product;
CREATE TABLE audit_entities (
    tenant_id   TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    -- '' for an entry without an entity id.
    entity_id   TEXT NOT NULL,
    id          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, entity_type, entity_id, id)
);
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
    use super::redact;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/stocky?sslmode=disable"),
            "postgres://app:***@db:5432/stocky"
        );
        assert_eq!(
            redact("postgres://app@db/stocky"),
            "postgres://app@db/stocky"
        );
        assert_eq!(redact("postgresql://db/stocky"), "postgresql://db/stocky");
    }
}
