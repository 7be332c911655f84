//! Throw-away databases for tests (this crate's conformance suite and the hub's
//! integration tests): every test gets its own, so tests run in parallel and leave nothing
//! behind.
//!
//! PostgreSQL is used when `STOCKY_TEST_DATABASE_URL` names a server (any database on it
//! that the user may connect to; the user must be allowed to create databases). Without it
//! tests run on SQLite alone.

use std::path::Path;

use crate::Location;

/// The variable that points the tests at a PostgreSQL server.
pub const DATABASE_URL_VAR: &str = "STOCKY_TEST_DATABASE_URL";

/// The PostgreSQL server the tests should also run against, if any.
pub fn postgres_url() -> Option<String> {
    std::env::var(DATABASE_URL_VAR)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// A fresh, empty PostgreSQL database, dropped (with its connections) when this goes.
pub struct PostgresDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PostgresDatabase {
    /// Creates a database on the server of `admin_url`. Panics (tests only) when the
    /// server cannot be reached: a configured server that is down must fail the run.
    pub fn create(admin_url: &str) -> Self {
        let name = format!("stocky_test_{}", crate::new_epoch());
        admin(admin_url, &format!("CREATE DATABASE {name}"));
        Self {
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_owned(),
            name,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn location(&self) -> Location {
        Location::Postgres(self.url.clone())
    }

    /// Simulates the database going away (`true`: new connections refused and open ones
    /// terminated, as in a server restart) and coming back (`false`).
    pub fn set_unreachable(&self, unreachable: bool) {
        let name = &self.name;
        admin(
            &self.admin_url,
            &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {}", !unreachable),
        );
        if unreachable {
            admin(
                &self.admin_url,
                &format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
                ),
            );
        }
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        admin(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Without the PostgreSQL engine there is no server to run statements on.
#[cfg(not(feature = "postgres"))]
fn admin(_: &str, _: &str) {
    panic!("{DATABASE_URL_VAR} is set but stocky-store was built without its `postgres` feature");
}

/// Runs one statement on its own thread (the synchronous client must not run on an async
/// runtime's thread).
#[cfg(feature = "postgres")]
fn admin(url: &str, statement: &str) {
    let (url, statement) = (url.to_owned(), statement.to_owned());
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap_or_else(|e| {
            panic!(
                "{DATABASE_URL_VAR} is set but PostgreSQL at {} is unreachable: {e}",
                crate::engine::redact(&url)
            )
        });
        client
            .batch_execute(&statement)
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    })
    .join()
    .expect("the PostgreSQL admin thread panicked");
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    format!("{server}/{name}{query}")
}

/// A test's database: SQLite in a temporary directory, or a fresh PostgreSQL database.
pub enum TestDatabase {
    Sqlite(std::path::PathBuf),
    Postgres(PostgresDatabase),
}

impl TestDatabase {
    /// Every engine this run tests: SQLite (a file in `dir`) and, when configured, PostgreSQL.
    pub fn all(dir: &Path) -> Vec<TestDatabase> {
        let mut all = vec![TestDatabase::Sqlite(dir.join("stocky.db"))];
        if let Some(url) = postgres_url() {
            all.push(TestDatabase::Postgres(PostgresDatabase::create(&url)));
        }
        all
    }

    pub fn location(&self) -> Location {
        match self {
            TestDatabase::Sqlite(path) => Location::Sqlite(path.clone()),
            TestDatabase::Postgres(db) => db.location(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_names_are_replaced_in_urls() {
        use super::with_database;
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
