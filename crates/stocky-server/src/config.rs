//! Settings of a running gateway (hub or edge): where it listens, where it keeps data, and
//! its limits.
//!
//! The binary fills this from flags, environment and defaults; tests build it directly
//! with [`ServerConfig::for_data_dir`]. Every limit here is enforced somewhere and named in
//! the error a client sees when it trips.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use stocky_store::{Location, StoreError, StoreOptions};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Directory for the database and anything else the hub keeps.
    pub data_dir: PathBuf,
    /// SQLite file; defaults to `<data_dir>/stocky.db` (seed 000's `DB_PATH`).
    pub db_path: Option<PathBuf>,
    /// WebSocket path (seed 000's `WS_PATH`).
    pub ws_path: String,
    /// Allowed browser origins (seed 000's `CORS_ORIGINS`); `*` allows any.
    pub cors_origins: Vec<String>,
    /// Event log retention, group commit, writer queue.
    pub store: StoreOptions,
    /// Server WebSocket ping period; a connection silent for a whole period after a ping
    /// is dropped (seed 000's dead-connection cleanup, seed 001's 30 s heartbeat).
    pub ping_interval: Duration,
    /// Events a connection may fall behind the live stream before it is disconnected
    /// with a resync reason (the bound of every per-connection queue).
    pub send_queue: usize,
    /// Largest WebSocket message accepted as a command; larger ones get `stock:error`.
    pub max_message_bytes: usize,
    /// Largest HTTP body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Largest body accepted by backup restore and compare (backups are big); 413 above.
    pub max_restore_bytes: usize,
    /// A socket write that takes longer than this drops the connection.
    pub write_timeout: Duration,
    /// How long shutdown waits for connections to finish before giving up on them.
    pub shutdown_grace: Duration,
    /// Access-token signing secret (`JWT_SECRET`); generated and kept in the data dir
    /// when absent.
    pub jwt_secret: Option<Secret>,
    /// `STOCKY_ADMIN_TOKEN`: accepted as an owner API key of the default tenant.
    pub admin_token: Option<Secret>,
    /// Open access without credentials (owner of the default tenant); only on loopback.
    pub dev: bool,
    /// Access-token (and so WebSocket session) lifetime.
    pub access_ttl: Duration,
    /// Refresh-token lifetime.
    pub refresh_ttl: Duration,
    /// What a second connection of the same user and device does (seed 002).
    pub session_policy: SessionPolicy,
    /// Event → module entries added to (or replacing) seed 002's default map.
    pub module_overrides: Vec<(String, String)>,
    /// How long a WebSocket may stay unauthenticated.
    pub auth_timeout: Duration,
    /// Requests allowed per credential per `rate_window` (0 = unlimited).
    pub rate_per_credential: u32,
    /// Requests allowed per client IP per `rate_window` (0 = unlimited).
    pub rate_per_ip: u32,
    pub rate_window: Duration,
    /// Failed logins allowed per email and per IP per `rate_window`.
    pub login_failures: u32,
    /// How often the hub checks the log for events it has not delivered (written by
    /// another instance or process, or missed on the bus).
    pub log_poll: Duration,
    /// The git commit the binary was built from, for `GET /version` (set by the binary).
    pub build_commit: Option<&'static str>,
    /// When set, `GET /metrics` needs `Authorization: Bearer <this>` (`STOCKY_METRICS_TOKEN`).
    pub metrics_token: Option<Secret>,
    /// PostgreSQL (`DATABASE_URL`); none = the embedded SQLite file.
    pub database_url: Option<Secret>,
    /// How each document collection syncs between the hub and store nodes (direction,
    /// conflict policy, field priorities); the hub enforces them on pushes and hands them
    /// to a store node at activation.
    pub sync_rules: stocky_core::sync_rules::SyncRules,
    /// A request's headers (and an idle keep-alive connection's next request) must arrive
    /// within this (`STOCKY_HEADER_TIMEOUT_SECS`).
    pub header_timeout: Duration,
    /// A request body must arrive within this.
    pub body_timeout: Duration,
    /// Open connections at most, WebSockets included (`STOCKY_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the client, for every per-IP limit
    /// (`STOCKY_TRUSTED_PROXIES`; none by default).
    pub trusted_proxies: crate::client_addr::TrustedProxies,
    /// Users come from upstream (a store node mirrors the hub's): creating them here is
    /// refused, since the next mirror would remove them.
    pub users_from_upstream: bool,
}

/// A secret setting: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One connection per user and device (seed 002).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionPolicy {
    /// The newer connection wins; the older is closed with a reason.
    Replace,
    /// The newer connection is refused while the older is open.
    Reject,
}

impl ServerConfig {
    /// Defaults for a hub keeping its data in `data_dir`, listening on 127.0.0.1:3000.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            data_dir: data_dir.into(),
            db_path: None,
            ws_path: "/ws".into(),
            cors_origins: [
                "http://localhost:3000",
                "http://localhost:4321",
                "http://localhost:5173",
            ]
            .map(String::from)
            .to_vec(),
            store: StoreOptions::default(),
            ping_interval: Duration::from_secs(30),
            send_queue: 4096,
            max_message_bytes: 128 * 1024,
            max_body_bytes: 1024 * 1024,
            max_restore_bytes: 64 * 1024 * 1024,
            write_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            jwt_secret: None,
            admin_token: None,
            dev: false,
            access_ttl: Duration::from_secs(3600),
            refresh_ttl: Duration::from_secs(30 * 86_400),
            session_policy: SessionPolicy::Replace,
            module_overrides: Vec::new(),
            auth_timeout: Duration::from_secs(10),
            rate_per_credential: 6000,
            rate_per_ip: 12_000,
            rate_window: Duration::from_secs(60),
            login_failures: 5,
            log_poll: Duration::from_secs(1),
            build_commit: None,
            metrics_token: None,
            database_url: None,
            sync_rules: Default::default(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 100_000,
            trusted_proxies: crate::client_addr::TrustedProxies::default(),
            users_from_upstream: false,
        }
    }

    /// Where the data lives: PostgreSQL when `database_url` is set, else the SQLite file.
    /// Fails on a `database_url` with a scheme Stocky does not speak (`mysql://…`).
    pub fn database_location(&self) -> Result<Location, StoreError> {
        Location::from_settings(
            self.database_url.as_ref().map(|url| url.0.as_str()),
            self.db_path.as_deref(),
            &self.data_dir,
        )
    }
}
