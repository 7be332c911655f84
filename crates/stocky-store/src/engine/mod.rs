//! The database engines the store runs on, behind one [`Engine`] interface: embedded
//! `sqlite` (cargo feature `sqlite`, the default: one file, nothing to install) and
//! `postgres` (feature `postgres`: one database shared by several hub instances).
//!
//! An engine opens connections and brings the schema up to date; everything else — the
//! writer, reads, documents, accounts — is written once against [`crate::sql::Conn`].
//! Each engine turns its driver's errors into [`DbError`] itself; nothing outside its
//! module sees a driver type. A build without an engine refuses its locations with a
//! clear error instead of failing later.

#[cfg(feature = "sqlite")]
mod checkpoint;
#[cfg(feature = "postgres")]
mod pg_tls;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
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

/// The URL schemes [`Location::parse`] accepts, for messages.
const ACCEPTED_SCHEMES: &str =
    "postgres:// or postgresql:// (PostgreSQL), or sqlite:// or a plain file path (SQLite)";

impl Location {
    /// A database URL or an SQLite file path:
    ///
    /// - `postgres://…` or `postgresql://…` (scheme in any case): PostgreSQL;
    /// - `sqlite://<path>`: the SQLite file `<path>`;
    /// - anything else that looks like a URL (`<scheme>://…`): refused, naming the scheme —
    ///   so that `postgress://…` or `mysql://…` is not taken for a file name;
    /// - anything else: an SQLite file path.
    pub fn parse(text: &str) -> Result<Location, StoreError> {
        let Some((scheme, rest)) = url_scheme(text) else {
            return Ok(Location::Sqlite(PathBuf::from(text)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            scheme @ ("postgres" | "postgresql") => {
                Ok(Location::Postgres(format!("{scheme}://{rest}")))
            }
            "sqlite" => Ok(Location::Sqlite(PathBuf::from(rest))),
            _ => Err(StoreError::Location(format!(
                "the database URL has the scheme {scheme:?}, which Stocky does not support; \
                 use {ACCEPTED_SCHEMES}"
            ))),
        }
    }

    /// The settings every command shares: `database_url` when given (see
    /// [`Location::parse`]), else the SQLite file `db_path`, by default
    /// `<data_dir>/stocky.db`.
    pub fn from_settings(
        database_url: Option<&str>,
        db_path: Option<&Path>,
        data_dir: &Path,
    ) -> Result<Location, StoreError> {
        match database_url {
            Some(url) => Location::parse(url),
            None => Ok(Location::Sqlite(sqlite_file(db_path, data_dir))),
        }
    }

    pub(crate) fn engine(
        &self,
        durability: crate::Durability,
    ) -> Result<Arc<dyn Engine>, StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            Location::Sqlite(path) => Ok(Arc::new(sqlite::Sqlite::new(path, durability)?)),
            #[cfg(feature = "postgres")]
            Location::Postgres(url) => Ok(Arc::new(postgres::Postgres::new(url)?)),
            #[allow(unreachable_patterns)]
            other => Err(StoreError::Location(format!(
                "this build of Stocky has no {} engine (cargo feature {:?} of stocky-store)",
                other.engine_name(),
                other.engine_name()
            ))),
        }
    }

    fn engine_name(&self) -> &'static str {
        match self {
            Location::Sqlite(_) => "sqlite",
            Location::Postgres(_) => "postgres",
        }
    }
}

/// `(scheme, rest)` when `text` looks like a URL: `<scheme>://<rest>`, the scheme being a
/// letter followed by letters, digits, `+`, `-` or `.` (RFC 3986).
fn url_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

/// The SQLite file: `db_path`, by default `<data_dir>/stocky.db`.
pub fn sqlite_file(db_path: Option<&Path>, data_dir: &Path) -> PathBuf {
    db_path.map_or_else(|| data_dir.join("stocky.db"), Path::to_owned)
}

/// The URL with its password replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            let path = path.split('?').next().unwrap_or("");
            format!("{scheme}://{user}{hidden}@{host}{path}")
        }
        None => format!(
            "{scheme}://{authority}{}",
            path.split('?').next().unwrap_or("")
        ),
    }
}

/// Shows the location without the password of a PostgreSQL URL.
impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Location::Postgres(url) => write!(f, "{}", redact(url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_engine_or_are_refused() {
        let pg = |url: &str| match Location::parse(url) {
            Ok(Location::Postgres(url)) => url,
            other => panic!("{url}: {other:?}"),
        };
        assert_eq!(pg("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(pg("postgresql://u@h/db"), "postgresql://u@h/db");
        assert_eq!(pg("PostgreSQL://u@h/db"), "postgresql://u@h/db");
        for (text, path) in [
            ("sqlite:///var/lib/stocky.db", "/var/lib/stocky.db"),
            ("sqlite://stocky.db", "stocky.db"),
            ("./data/stocky.db", "./data/stocky.db"),
            ("/var/lib/stocky.db", "/var/lib/stocky.db"),
            // Not a scheme: a path that happens to contain "://".
            ("./odd://name.db", "./odd://name.db"),
        ] {
            assert_eq!(
                Location::parse(text).unwrap(),
                Location::Sqlite(PathBuf::from(path)),
                "{text}"
            );
        }
        for (url, scheme) in [
            ("postgress://u:secret@h/db", "\"postgress\""),
            ("mysql://root:secret@localhost/x", "\"mysql\""),
            ("file:///tmp/x.db", "\"file\""),
        ] {
            let message = Location::parse(url).unwrap_err().to_string();
            assert!(message.contains(scheme), "{message}");
            assert!(message.contains("postgres://"), "{message}");
            assert!(!message.contains("secret"), "{message}");
        }
    }
}
