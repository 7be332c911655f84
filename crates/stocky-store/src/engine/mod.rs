//! The database engines the store runs on, behind one [`Engine`] interface: embedded
//! [`sqlite`] (the default: one file, nothing to install) and [`postgres`] (one database
//! shared by several hub instances).
//!
//! An engine opens connections and brings the schema up to date; everything else — the
//! writer, reads, documents, accounts — is written once against [`crate::sql::Conn`].

pub mod postgres;
pub mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::sql::{Conn, DbError};
use crate::StoreError;

/// What a connection is for (engines tune it accordingly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnRole {
    /// The writer's connection: the only one that appends events.
    Writer,
    /// Reads beside the writer (read-only where the engine can enforce it).
    Reader,
    /// Account data (tenants, users, keys, sessions): small read-write transactions.
    Accounts,
}

/// A database engine.
pub trait Engine: Send + Sync + 'static {
    /// Opens a new connection.
    fn connect(&self, role: ConnRole) -> Result<Box<dyn Conn>, DbError>;
    /// Creates or upgrades the schema (safe to run from several processes at once).
    fn migrate(&self, conn: &mut dyn Conn) -> Result<(), StoreError>;
    /// Where the data lives, for logs (never with credentials).
    fn describe(&self) -> String;
}

/// Where a store keeps its data.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite database file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://user:pass@host:port/db`).
    Postgres(String),
}

impl Location {
    /// A PostgreSQL URL (`postgres://` or `postgresql://`) or else an SQLite file path.
    pub fn parse(text: &str) -> Location {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Location::Postgres(text.to_owned())
        } else {
            Location::Sqlite(PathBuf::from(
                text.strip_prefix("sqlite://").unwrap_or(text),
            ))
        }
    }

    /// The settings every command shares: PostgreSQL when `database_url` is given, else
    /// the SQLite file `db_path`, by default `<data_dir>/stocky.db`.
    pub fn from_settings(
        database_url: Option<&str>,
        db_path: Option<&Path>,
        data_dir: &Path,
    ) -> Location {
        match database_url {
            Some(url) => Location::parse(url),
            None => Location::Sqlite(sqlite_file(db_path, data_dir)),
        }
    }

    pub(crate) fn engine(&self) -> Result<Arc<dyn Engine>, StoreError> {
        Ok(match self {
            Location::Sqlite(path) => Arc::new(sqlite::Sqlite::new(path)?),
            Location::Postgres(url) => Arc::new(postgres::Postgres::new(url)?),
        })
    }
}

/// The SQLite file: `db_path`, by default `<data_dir>/stocky.db`.
pub fn sqlite_file(db_path: Option<&Path>, data_dir: &Path) -> PathBuf {
    db_path.map_or_else(|| data_dir.join("stocky.db"), Path::to_owned)
}

/// Shows the location without the password of a PostgreSQL URL.
impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Location::Postgres(url) => write!(f, "{}", postgres::redact(url)),
        }
    }
}
