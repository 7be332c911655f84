//! `stocky backup`, `stocky restore` and `stocky snapshot`.
//!
//! Backup and restore run against a hub (`--url`, through the SDK) or offline against a
//! database (`--data-dir`, or `--database-url` for PostgreSQL, through the same store code
//! the hub uses; safe while hubs run on it, since every write takes the database's locks
//! and appends to the log in its own transaction). A hub backup file is
//! `{"format":"stocky-backup","version":1,"createdAt","databases":[<seed 000 backup>…]}`;
//! restore also accepts one seed 000 database backup (`{"database","backup",…}`).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use stocky_core::time::{iso8601, now_millis};
use stocky_core::DEFAULT_SITE;
use stocky_server::backup;
use stocky_store::{Location, Origin, Store, StoreOptions, Unobserved, WriterGuard};

/// Where a backup or restore goes.
pub enum Target {
    Hub(stocky_client::Client),
    Offline {
        store: Store,
        writer: WriterGuard,
        tenant: String,
    },
}

/// Opens a database without a hub (no live clients to notify); `create` allows a new
/// SQLite file (a restore into a fresh data directory), else a missing one is an error.
pub async fn open_offline(location: &Location, create: bool) -> Result<(Store, WriterGuard)> {
    if let Location::Sqlite(path) = location {
        if !create && !path.exists() {
            bail!(
                "no database at {}: check --data-dir / --db-path (or STOCKY_DATA_DIR / DB_PATH); \
                 a hub creates the database on its first start",
                path.display()
            );
        }
    }
    let (store, writer, _) = Store::open(
        location,
        StoreOptions::default(),
        Arc::new(Unobserved),
        None,
    )
    .await
    .with_context(|| format!("opening {location:?}"))?;
    Ok((store, writer))
}

impl Target {
    /// A running hub at `url` (`http://host:port`, or `host:port`); `token` is sent as
    /// `Authorization: Bearer` (an admin's access token or API key, or
    /// `STOCKY_ADMIN_TOKEN`).
    pub fn hub(url: &str, token: Option<String>) -> Result<Self> {
        let client = stocky_client::Client::new(url)?;
        Ok(Target::Hub(match token {
            Some(token) => client.with_token(token),
            None => client,
        }))
    }

    /// Opens a database directly; `create` allows a new one (to restore into).
    pub async fn offline(location: &Location, tenant: &str, create: bool) -> Result<Self> {
        let (store, writer) = open_offline(location, create).await?;
        Ok(Target::Offline {
            store,
            writer,
            tenant: tenant.to_owned(),
        })
    }

    /// Waits for offline writes to be committed.
    pub async fn finish(self) -> Result<()> {
        if let Target::Offline { store, writer, .. } = self {
            drop(store);
            tokio::task::spawn_blocking(move || writer.join()).await?;
        }
        Ok(())
    }

    async fn databases(&self) -> Result<Vec<String>> {
        let listing = match self {
            Target::Hub(client) => client.backups().await.context("listing the databases")?,
            Target::Offline { store, tenant, .. } => backup::list(store, tenant).await?,
        };
        Ok(listing["databases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["name"].as_str().map(str::to_owned))
            .collect())
    }

    async fn backup(&self, db: &str) -> Result<Value> {
        match self {
            Target::Hub(client) => Ok(client.backup(db).await?),
            Target::Offline { store, tenant, .. } => {
                Ok(backup::backup_of(store, tenant, db, None).await?)
            }
        }
    }

    async fn restore(&self, db: &str, body: &Value) -> Result<Value> {
        match self {
            Target::Hub(client) => Ok(client.restore(db, body).await?),
            Target::Offline { store, tenant, .. } => {
                let mut origin = Origin::system(tenant.as_str().into(), DEFAULT_SITE.into(), "cli");
                origin.user = Some("cli".into());
                Ok(backup::restore(store, origin, db, body).await?)
            }
        }
    }
}

/// A one-line progress bar on stderr (plain lines when stderr is not a terminal).
pub struct Progress {
    what: &'static str,
    total: u64,
    tty: bool,
}

impl Progress {
    pub fn new(what: &'static str, total: u64) -> Self {
        Progress {
            what,
            total: total.max(1),
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn show(&self, done: u64, label: &str) {
        let width = 30;
        let filled = (done.min(self.total) * width / self.total) as usize;
        let bar = format!(
            "{}{}",
            "#".repeat(filled),
            ".".repeat(width as usize - filled)
        );
        let line = format!("{} [{bar}] {done}/{} {label}", self.what, self.total);
        let mut err = std::io::stderr();
        let _ = if self.tty {
            write!(err, "\r{line:<100}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }

    pub fn done(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// Writes every database (or the chosen ones) into one backup file.
pub async fn run_backup(target: Target, only: &[String], out: &Path) -> Result<()> {
    let names = if only.is_empty() {
        target.databases().await?
    } else {
        only.to_vec()
    };
    let progress = Progress::new("backup ", names.len() as u64);
    let mut databases = Vec::with_capacity(names.len());
    let mut records = 0;
    for (i, name) in names.iter().enumerate() {
        progress.show(i as u64, name);
        let document = target
            .backup(name)
            .await
            .with_context(|| format!("backing up {name}"))?;
        records += document["totalRecords"].as_u64().unwrap_or(0);
        databases.push(document);
    }
    progress.show(names.len() as u64, "done");
    progress.done();
    let file = json!({"format": "stocky-backup", "version": 1, "createdAt": iso8601(now_millis()), "databases": databases});
    let temp = out.with_extension("partial");
    std::fs::write(&temp, serde_json::to_vec(&file)?)
        .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, out).with_context(|| format!("writing {}", out.display()))?;
    target.finish().await?;
    eprintln!(
        "backed up {} databases, {records} records, to {}",
        names.len(),
        out.display()
    );
    Ok(())
}

/// Restores a backup file; `strategy` and `overwrite` apply to every database in it.
pub async fn run_restore(
    target: Target,
    file: &Path,
    strategy: Option<&str>,
    overwrite: bool,
) -> Result<()> {
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let parsed: Value =
        serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let documents = match (&parsed["format"], &parsed["databases"], &parsed["database"]) {
        (Value::String(f), Value::Array(dbs), _) if f == "stocky-backup" => dbs.clone(),
        (_, _, Value::String(_)) => vec![parsed.clone()],
        _ => bail!(
            "{} is neither a stocky backup file nor a database backup",
            file.display()
        ),
    };
    let progress = Progress::new("restore", documents.len() as u64);
    let mut summary = Vec::new();
    for (i, document) in documents.iter().enumerate() {
        let db = document["database"]
            .as_str()
            .context("a database backup without \"database\"")?
            .to_owned();
        progress.show(i as u64, &db);
        let mut body = document.clone();
        if let Some(strategy) = strategy {
            body["mergeStrategy"] = json!(strategy);
        }
        if overwrite {
            body["overwrite"] = json!(true);
        }
        let result = target
            .restore(&db, &body)
            .await
            .with_context(|| format!("restoring {db}"))?;
        summary.push(format!(
            "{db}: {} restored, {} updated, {} skipped",
            result["restored"], result["updated"], result["skipped"]
        ));
    }
    progress.show(documents.len() as u64, "done");
    progress.done();
    target.finish().await?;
    for line in summary {
        eprintln!("{line}");
    }
    Ok(())
}

/// A consistent copy of the whole database, usable as a hub's `--db-path`.
pub fn run_snapshot(db_path: &Path, out: &Path) -> Result<()> {
    let mut progress: Option<Progress> = None;
    stocky_store::snapshot(db_path, out, |done, total| {
        let bar = progress.get_or_insert_with(|| Progress::new("snapshot", total));
        bar.show(done, "pages");
    })
    .with_context(|| format!("snapshot of {} into {}", db_path.display(), out.display()))?;
    if let Some(bar) = progress {
        bar.done();
    }
    eprintln!(
        "snapshot written to {} (start a hub on it with --db-path)",
        out.display()
    );
    Ok(())
}
