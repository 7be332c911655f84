//! `stocky`: one binary for every tier: `stocky hub` (the cloud hub, on embedded SQLite
//! or PostgreSQL), `stocky edge` (a store node, with `stocky edge activate`), and
//! `stocky backup | restore | snapshot | admin` for the data.
//!
//! Settings come from defaults, then environment variables (seed 000's names where it
//! names them), then flags; `stocky hub --help` lists them all.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use stocky_hub::{Hub, HubConfig};
use stocky_server::config::{Secret, SessionPolicy};
use stocky_store::Location;
use tracing_subscriber::EnvFilter;

/// `stocky --version`: the release and the commit it was built from (`build.rs`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("STOCKY_GIT_COMMIT"),
    ")"
);

/// The commit, when the build knew it: for `GET /version`.
pub fn build_commit() -> Option<&'static str> {
    Some(env!("STOCKY_GIT_COMMIT")).filter(|c| *c != "unknown")
}

mod admin;
mod backup;
mod config_file;
mod edge;

#[derive(Parser)]
#[command(
    name = "stocky",
    version = VERSION,
    about = "Real-time inventory sync for shops and restaurants"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// A TOML configuration file with [hub] and [edge] tables (`stocky config default`
    /// prints one); environment variables and flags override it.
    #[arg(long, global = true, env = "STOCKY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log lines on stderr as `text` (coloured only on a terminal) or `json` (one object
    /// per line). `RUST_LOG` picks what is logged.
    #[arg(long, global = true, env = "STOCKY_LOG_FORMAT", default_value = "text",
          value_parser = ["text", "json"])]
    log_format: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cloud hub: REST + WebSocket on embedded SQLite or PostgreSQL.
    Hub(Box<HubArgs>),
    /// Back up every database (documents and the `_stock` ledger) into one JSON file.
    Backup(BackupArgs),
    /// Restore a backup file (or one database backup) into a hub or a data directory.
    Restore(RestoreArgs),
    /// Copy the whole SQLite database consistently (online backup API), for disaster
    /// recovery: a hub can start from the copy with `--db-path`.
    Snapshot(SnapshotArgs),
    /// Manage tenants, sites, users and API keys of a data directory.
    Admin(AdminArgs),
    /// Run a store node (offline-first, syncs with the hub); `stocky edge activate` first.
    Edge(edge::EdgeArgs),
    /// Check a configuration file, or print a commented one with every default.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// GET a URL (e.g. http://127.0.0.1:3000/readyz) and exit 0 on a 2xx answer: a health
    /// check for containers without curl.
    Probe {
        url: String,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the file (`--config FILE` or STOCKY_CONFIG) and print the effective
    /// settings — defaults, file, environment — with where each came from; secrets as ***.
    Check {
        /// Only this table: `hub` or `edge`.
        #[arg(value_parser = config_file::SECTIONS)]
        section: Option<String>,
    },
    /// Print a configuration file with every setting, commented out at its default.
    Default,
}

#[derive(Args)]
struct AdminArgs {
    /// A running hub's base URL: manage sites, devices, users and keys of the token's
    /// tenant through its REST API instead of a data directory.
    #[arg(long)]
    url: Option<String>,
    /// Credential for `--url`: an owner's or admin's access token or API key.
    #[arg(long, env = "STOCKY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(subcommand)]
    command: admin::AdminCommand,
}

/// The database an offline command works on.
#[derive(Args)]
struct DatabaseArgs {
    /// Data directory to work on.
    #[arg(long, env = "STOCKY_DATA_DIR", default_value = "./stocky-data")]
    data_dir: PathBuf,
    /// SQLite database file [default: <data-dir>/stocky.db].
    #[arg(long, env = "DB_PATH")]
    db_path: Option<PathBuf>,
    /// PostgreSQL URL, e.g. postgres://user:pass@host/db (replaces the SQLite file).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

impl DatabaseArgs {
    fn location(&self) -> anyhow::Result<Location> {
        Ok(Location::from_settings(
            self.database_url.as_deref(),
            self.db_path.as_deref(),
            &self.data_dir,
        )?)
    }
}

/// Where backup and restore work: a running hub, or a data directory directly.
#[derive(Args)]
struct Source {
    /// A running hub's base URL, e.g. http://127.0.0.1:3000 (default: work offline).
    #[arg(long)]
    url: Option<String>,
    /// Credential for `--url`: an admin's access token or API key.
    #[arg(long, env = "STOCKY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Tenant to work on offline.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// The database to work on offline.
    #[command(flatten)]
    database: DatabaseArgs,
}

impl Source {
    async fn target(&self, create: bool) -> anyhow::Result<backup::Target> {
        match &self.url {
            Some(url) => backup::Target::hub(url, self.token.clone()),
            None => backup::Target::offline(&self.database.location()?, &self.tenant, create).await,
        }
    }
}

#[derive(Args)]
struct BackupArgs {
    #[command(flatten)]
    source: Source,
    /// Output file [default: stocky-backup-<timestamp>.json].
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Only these databases (repeatable; `_stock` is the ledger).
    #[arg(long = "db")]
    databases: Vec<String>,
}

#[derive(Args)]
struct RestoreArgs {
    /// The backup file.
    file: PathBuf,
    #[command(flatten)]
    source: Source,
    /// How records present on both sides are merged.
    #[arg(long, value_parser = ["newer", "force", "skip"])]
    merge_strategy: Option<String>,
    /// Remove each database's current records first.
    #[arg(long)]
    overwrite: bool,
}

#[derive(Args)]
struct SnapshotArgs {
    /// Data directory of the database to copy.
    #[arg(long, env = "STOCKY_DATA_DIR", default_value = "./stocky-data")]
    data_dir: PathBuf,
    /// SQLite database file [default: <data-dir>/stocky.db].
    #[arg(long, env = "DB_PATH")]
    db_path: Option<PathBuf>,
    /// The snapshot file to create (must not exist).
    #[arg(long, short)]
    out: PathBuf,
}

#[derive(Args)]
struct HubArgs {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    port: u16,
    /// Directory for the database and other state.
    #[arg(long, env = "STOCKY_DATA_DIR", default_value = "./stocky-data")]
    data_dir: PathBuf,
    /// SQLite database file [default: <data-dir>/stocky.db].
    #[arg(long, env = "DB_PATH")]
    db_path: Option<PathBuf>,
    /// WebSocket path.
    #[arg(long, env = "WS_PATH", default_value = "/ws")]
    ws_path: String,
    /// Allowed browser origins, comma-separated (`*` for any).
    #[arg(
        long,
        env = "CORS_ORIGINS",
        value_delimiter = ',',
        default_value = "http://localhost:3000,http://localhost:4321,http://localhost:5173"
    )]
    cors_origins: Vec<String>,
    /// Events kept in the log for resume; older gaps get a full refresh.
    #[arg(long, env = "STOCKY_EVENT_RETENTION", default_value_t = 10_000)]
    event_retention: u64,
    /// Seconds an event stays in the log for resume.
    #[arg(long, env = "STOCKY_EVENT_TTL_SECS", default_value_t = 600)]
    event_ttl_secs: u64,
    /// Seconds between server pings; a connection silent for a whole period is dropped.
    #[arg(long, env = "STOCKY_PING_INTERVAL_SECS", default_value_t = 30)]
    ping_interval_secs: u64,
    /// Events a connection may fall behind before it is disconnected to resync.
    #[arg(long, env = "STOCKY_SEND_QUEUE", default_value_t = 4096)]
    send_queue: usize,
    /// Largest WebSocket message accepted, in bytes.
    #[arg(long, env = "STOCKY_MAX_MESSAGE_BYTES", default_value_t = 128 * 1024)]
    max_message_bytes: usize,
    /// Largest HTTP request body accepted, in bytes.
    #[arg(long, env = "STOCKY_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// Largest backup accepted by restore and compare, in bytes.
    #[arg(long, env = "STOCKY_MAX_RESTORE_BYTES", default_value_t = 64 * 1024 * 1024)]
    max_restore_bytes: usize,
    /// Secret that signs access tokens [default: generated once into <data-dir>/jwt-secret].
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// A token accepted as an owner API key of the default tenant (automation, tests).
    #[arg(long, env = "STOCKY_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Open access without credentials (owner of the default tenant); loopback only.
    #[arg(long, env = "STOCKY_DEV")]
    dev: bool,
    /// Access-token lifetime in seconds (a WebSocket session ends with its token).
    #[arg(long, env = "STOCKY_ACCESS_TTL_SECS", default_value_t = 3600)]
    access_ttl_secs: u64,
    /// Refresh-token lifetime in seconds.
    #[arg(long, env = "STOCKY_REFRESH_TTL_SECS", default_value_t = 30 * 86_400)]
    refresh_ttl_secs: u64,
    /// A second WebSocket of the same user and device: `replace` the older or `reject` it.
    #[arg(long, env = "STOCKY_SESSION_POLICY", default_value = "replace", value_parser = ["replace", "reject"])]
    session_policy: String,
    /// Event → module entries over seed 002's default map, e.g. `stock:*=warehouse,order_created=orders`.
    #[arg(long, env = "STOCKY_MODULE_MAP", value_delimiter = ',')]
    module_map: Vec<String>,
    /// Requests per credential per rate window (0 = unlimited).
    #[arg(long, env = "STOCKY_RATE_LIMIT", default_value_t = 6000)]
    rate_limit: u32,
    /// Requests per client IP per rate window (0 = unlimited).
    #[arg(long, env = "STOCKY_RATE_LIMIT_IP", default_value_t = 12_000)]
    rate_limit_ip: u32,
    /// Length of the rate-limit window in seconds.
    #[arg(long, env = "STOCKY_RATE_WINDOW_SECS", default_value_t = 60)]
    rate_window_secs: u64,
    /// Failed logins allowed per email per rate window.
    #[arg(long, env = "STOCKY_LOGIN_FAILURES", default_value_t = 5)]
    login_failures: u32,
    /// A JSON file of document sync rules for store nodes
    /// (`{"collections":[{"db","store","direction","conflict","localFields","remoteFields"}]}`,
    /// see docs/sync.md) [default: every collection both ways, last write wins].
    #[arg(long, env = "STOCKY_SYNC_RULES")]
    sync_rules: Option<PathBuf>,
    /// What an acknowledged commit survives on SQLite: `normal` (a process crash; seed 003)
    /// or `full` (also a power loss, at an fsync per group commit).
    #[arg(long, env = "STOCKY_SQLITE_SYNCHRONOUS", default_value = "normal", value_parser = ["normal", "full"])]
    sqlite_synchronous: String,
    /// Writer threads (PostgreSQL only), each with its own database connection and a fixed
    /// share of the tenants: commands of different tenants commit in parallel. A tenant's
    /// commands always go through one writer; SQLite has one writer per file.
    #[arg(long, env = "STOCKY_WRITERS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    writers: u16,
    /// Seconds a request's headers (and an idle connection's next request) may take.
    #[arg(long, env = "STOCKY_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    header_timeout_secs: u64,
    /// Open connections at most, WebSockets included; beyond it new ones are closed.
    #[arg(long, env = "STOCKY_MAX_CONNECTIONS", default_value_t = 100_000)]
    max_connections: usize,
    /// Reverse proxies (addresses or networks, e.g. 10.0.0.0/8) whose X-Forwarded-For
    /// names the client for per-IP limits [default: none: the socket
    /// peer is the client, and the header is ignored].
    #[arg(long, env = "STOCKY_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<String>,
    /// Redis for events between hub instances, e.g. redis://127.0.0.1:6379 [default: none,
    /// or built from seed 001's ENABLE_REDIS, REDIS_HOST, REDIS_PORT, REDIS_PASSWORD,
    /// REDIS_DB].
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// A PEM file of root certificates trusted for a `rediss://` (TLS) Redis, besides the
    /// system's (a private CA).
    #[arg(long, env = "STOCKY_REDIS_CA_FILE")]
    redis_ca_file: Option<PathBuf>,
    /// PostgreSQL instead of the SQLite file, e.g. postgres://stocky:pass@127.0.0.1/stocky
    /// (several hub instances may share it).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// How often (ms) to look for events committed by other instances or processes.
    #[arg(long, env = "STOCKY_LOG_POLL_MS", default_value_t = 1000)]
    log_poll_ms: u64,
    /// A bearer token `GET /metrics` requires [default: none, the metrics are open].
    #[arg(long, env = "STOCKY_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
}

impl HubArgs {
    fn into_config(self) -> anyhow::Result<HubConfig> {
        if !self.ws_path.starts_with('/') {
            bail!("WS_PATH must start with '/', got {:?}", self.ws_path);
        }
        if self.event_retention == 0
            || self.event_ttl_secs == 0
            || self.ping_interval_secs == 0
            || self.send_queue == 0
        {
            bail!("event retention, event TTL, ping interval and send queue must all be positive");
        }
        let mut hub = HubConfig::for_data_dir(self.data_dir);
        let config = &mut hub.server;
        config.build_commit = build_commit();
        config.metrics_token = self.metrics_token.filter(|t| !t.is_empty()).map(Secret);
        config.listen = SocketAddr::new(self.host, self.port);
        config.db_path = self.db_path;
        config.database_url = self.database_url.map(Secret);
        config.ws_path = self.ws_path;
        config.cors_origins = self
            .cors_origins
            .into_iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        config.store.event_retention = self.event_retention;
        config.store.writers = usize::from(self.writers);
        config.store.event_ttl = Duration::from_secs(self.event_ttl_secs);
        config.ping_interval = Duration::from_secs(self.ping_interval_secs);
        config.send_queue = self.send_queue;
        config.max_message_bytes = self.max_message_bytes;
        config.max_body_bytes = self.max_body_bytes;
        config.max_restore_bytes = self.max_restore_bytes;
        config.jwt_secret = self.jwt_secret.map(Secret);
        config.admin_token = self.admin_token.map(Secret);
        config.dev = self.dev;
        config.access_ttl = Duration::from_secs(self.access_ttl_secs.max(1));
        config.refresh_ttl = Duration::from_secs(self.refresh_ttl_secs.max(1));
        config.session_policy = if self.session_policy == "reject" {
            SessionPolicy::Reject
        } else {
            SessionPolicy::Replace
        };
        config.module_overrides = self
            .module_map
            .iter()
            .filter(|entry| !entry.trim().is_empty())
            .map(|entry| {
                entry
                    .split_once('=')
                    .map(|(event, module)| (event.trim().to_owned(), module.trim().to_owned()))
                    .ok_or_else(|| {
                        anyhow::anyhow!("STOCKY_MODULE_MAP entries are event=module, got {entry:?}")
                    })
            })
            .collect::<anyhow::Result<_>>()?;
        config.rate_per_credential = self.rate_limit;
        config.rate_per_ip = self.rate_limit_ip;
        config.rate_window = Duration::from_secs(self.rate_window_secs.max(1));
        config.login_failures = self.login_failures;
        config.store.durability = match self.sqlite_synchronous.as_str() {
            "full" => stocky_store::Durability::Full,
            _ => stocky_store::Durability::Normal,
        };
        if let Some(path) = &self.sync_rules {
            config.sync_rules = read_sync_rules(path)?;
        }
        config.header_timeout = Duration::from_secs(self.header_timeout_secs.max(1));
        config.max_connections = self.max_connections.max(1);
        config.trusted_proxies =
            stocky_server::client_addr::TrustedProxies::parse(&self.trusted_proxies)
                .map_err(|e| anyhow::anyhow!("--trusted-proxies: {e}"))?;
        config.log_poll = Duration::from_millis(self.log_poll_ms.max(10));
        hub.redis_ca_file = self.redis_ca_file;
        hub.redis_url = self
            .redis_url
            .filter(|u| !u.is_empty())
            .or_else(seed_redis_url)
            .map(Secret);
        Ok(hub)
    }
}

/// Seed 001's Redis settings: `ENABLE_REDIS=true` with `REDIS_HOST` (localhost),
/// `REDIS_PORT` (6379), `REDIS_PASSWORD` and `REDIS_DB` (0).
fn seed_redis_url() -> Option<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if !matches!(var("ENABLE_REDIS").as_deref(), Some("true" | "1" | "yes")) {
        return None;
    }
    let host = var("REDIS_HOST").unwrap_or_else(|| "localhost".into());
    let port = var("REDIS_PORT").unwrap_or_else(|| "6379".into());
    let db = var("REDIS_DB").unwrap_or_else(|| "0".into());
    let auth = var("REDIS_PASSWORD")
        .map(|p| format!(":{p}@"))
        .unwrap_or_default();
    Some(format!("redis://{auth}{host}:{port}/{db}"))
}

fn main() -> std::process::ExitCode {
    if std::env::var("STOCKY_BACKTRACE").is_ok_and(|v| v == "1") {
        // Before any thread exists: errors capture their backtrace from here on.
        std::env::set_var("RUST_LIB_BACKTRACE", "1");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("stocky: error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            std::process::ExitCode::FAILURE
        }
    }
}

/// A failure as one readable paragraph: what failed and why, causes joined by ": ". The
/// backtrace only when asked for with `STOCKY_BACKTRACE=1` (`RUST_BACKTRACE` alone does
/// not turn a configuration mistake into 30 frames).
fn report(error: &anyhow::Error) {
    eprintln!("stocky: error: {error:#}");
    if std::env::var("STOCKY_BACKTRACE").is_ok_and(|v| v == "1") {
        eprintln!("{}", error.backtrace());
    }
}

/// Logs on stderr: `format` `text` (ANSI colours only when stderr is a terminal) or `json`.
fn init_logs(format: &str) {
    use std::io::IsTerminal;
    // Seed 004's SYNC_DEBUG: the edge's sync rounds at debug level.
    let sync_debug = std::env::var("SYNC_DEBUG").is_ok_and(|v| matches!(v.as_str(), "true" | "1"));
    let default_filter = if sync_debug {
        "info,stocky_edge=debug"
    } else {
        "info"
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        logs.json().flatten_event(true).init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

async fn run() -> anyhow::Result<()> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let file = match config_file::path_from(&args[1..]) {
        Some(path) => config_file::ConfigFile::load(&path, &Cli::command())?,
        None => config_file::ConfigFile::default(),
    };
    let matches = file.apply(Cli::command()).get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logs(&cli.log_format);
    match cli.command {
        Command::Config(ConfigCommand::Check { section }) => {
            print!(
                "{}",
                config_file::check(&Cli::command(), &file, section.as_deref())?
            );
            Ok(())
        }
        Command::Config(ConfigCommand::Default) => {
            print!("{}", config_file::default_file(&Cli::command()));
            Ok(())
        }
        Command::Probe { url, timeout_secs } => probe(&url, timeout_secs).await,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "stocky", &mut std::io::stdout());
            Ok(())
        }
        Command::Hub(args) => run_hub(args.into_config()?).await,
        Command::Edge(args) => edge::run(args).await,
        Command::Backup(args) => {
            let out = args.out.unwrap_or_else(|| {
                PathBuf::from(format!(
                    "stocky-backup-{}.json",
                    stocky_core::time::now_millis()
                ))
            });
            backup::run_backup(args.source.target(false).await?, &args.databases, &out).await
        }
        Command::Restore(args) => {
            let target = args.source.target(true).await?;
            backup::run_restore(
                target,
                &args.file,
                args.merge_strategy.as_deref(),
                args.overwrite,
            )
            .await
        }
        Command::Admin(args) => match &args.url {
            Some(url) => {
                let client = stocky_client::Client::new(url)?;
                let token = args
                    .token
                    .context("--url needs --token (or STOCKY_TOKEN)")?;
                admin::run_remote(&client.with_token(token), args.command).await
            }
            None => admin::run(&args.database.location()?, args.command).await,
        },
        Command::Snapshot(args) => {
            let db = stocky_store::sqlite_file(args.db_path.as_deref(), &args.data_dir);
            backup::run_snapshot(&db, &args.out)
        }
    }
}

/// `stocky probe URL`: succeeds on a 2xx answer within the timeout.
async fn probe(url: &str, timeout_secs: u64) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout_secs.max(1)))
        .build()?;
    let status = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("no answer from {url}"))?
        .status();
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    Ok(())
}

async fn run_hub(config: HubConfig) -> anyhow::Result<()> {
    let ws_path = config.server.ws_path.clone();
    let db = config
        .server
        .database_location()
        .context("starting the hub")?;
    let hub = Hub::start(config).await.context("starting the hub")?;
    let addr = hub.local_addr();
    // Written with errors ignored: a closed stdout must not take the hub down.
    let mut banner = format!(
        "Stocky hub listening on http://{addr}\n  WebSocket: ws://{addr}{ws_path}\n  \
         REST API:  http://{addr}/api/stock\n  Database:  {db:?}\n"
    );
    // Shown once, on stdout (not in the logs): the first owner's credentials.
    if let Some((email, password)) = &hub.initial_owner {
        banner.push_str(&format!(
            "First start: created the owner account {email} with password {password}\n  \
             Log in: curl -X POST http://{addr}/api/auth/login -H 'Content-Type: application/json' \
             -d '{{\"email\":\"{email}\",\"password\":\"{password}\"}}'\n"
        ));
    }
    let mut stdout = std::io::stdout();
    let _ = stdout
        .write_all(banner.as_bytes())
        .and_then(|()| stdout.flush());
    let stop = hub.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; finishing pending commits");
        stop.cancel();
    });
    hub.wait().await.context("hub stopped with an error")?;
    tracing::info!("hub stopped cleanly");
    Ok(())
}

pub(crate) async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The sync rules in `path`, checked.
fn read_sync_rules(path: &std::path::Path) -> anyhow::Result<stocky_core::sync_rules::SyncRules> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading the sync rules {}: {e}", path.display()))?;
    let rules: stocky_core::sync_rules::SyncRules = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a set of sync rules: {e}", path.display()))?;
    rules
        .check()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(rules)
}
