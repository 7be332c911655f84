//! The gateway both tiers serve (hub and edge): REST, the WebSocket protocol, the fan-out
//! and authentication, over a store. What differs between tiers comes in through
//! [`Wiring`] — where sessions are registered beyond this process
//! ([`ws::SessionDirectory`]), the business validator — and through the tasks a tier
//! spawns on [`AppState::tasks`] before serving (the hub's Redis bus, for instance).
//!
//! [`Gateway::prepare`] binds the listener and opens the store; [`Prepared::serve`]
//! serves until [`Gateway::stop`] (or the shutdown token) — then it stops accepting, lets
//! every WebSocket session deliver what its in-flight commands produced and close with a
//! "reconnect" reason, waits for the writer to commit everything still queued, and
//! returns.
//!
//! Every task the gateway spawns is tracked in [`AppState::tasks`] and watches
//! [`AppState::shutdown`].

pub mod access_log;
pub mod auth;
pub mod backup;
pub mod client_addr;
pub mod config;
pub mod error;
pub mod fanout;
mod follow;
pub mod http;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod openapi;
pub mod presence;
pub mod rest;
pub mod ui;
pub mod ws;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method};
use axum::routing::get;
use axum::Router;
use stocky_core::stock::BusinessValidator;
use stocky_store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowOrigin, CorsLayer};

use auth::Authenticator;
pub use config::ServerConfig;
use fanout::{Fanout, Stream};
use limits::Limiter;
use stocky_core::auth::ModuleMap;

/// Why the gateway could not start or stopped abnormally. Each message carries its cause, so
/// none of them has a `source()` (a report that walks the chain would repeat it).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("invalid CORS origin {0:?}")]
    CorsOrigin(String),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("internal task failed: {0}")]
    Task(String),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Shared state of every request and connection. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub fanout: Arc<Fanout>,
    pub config: Arc<ServerConfig>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    pub auth: Arc<Authenticator>,
    pub registry: Arc<ws::Registry>,
    pub limits: Arc<Limits>,
    pub metrics: Arc<metrics::Metrics>,
    /// The tier's own readiness checks ([`Wiring::readiness`]).
    pub readiness: Arc<[Arc<dyn ReadinessCheck>]>,
    next_connection: Arc<AtomicU64>,
}

/// The gateway's abuse limiters.
pub struct Limits {
    pub per_credential: Limiter,
    pub per_ip: Limiter,
    pub login_per_email: Limiter,
    pub login_per_ip: Limiter,
    /// Requests with a bad credential (`401`) per client IP: past it, every request from
    /// that IP that needs a credential is `429` until the window ends.
    pub failed_auth_per_ip: Limiter,
}

impl AppState {
    /// A fresh connection number (never 0, which marks REST-originated commands).
    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// A tenant's live stream, opened from the database for tenants created after start.
    pub async fn tenant_stream(&self, tenant: &Arc<str>) -> Result<Arc<Stream>, StoreError> {
        if let Some(stream) = self.fanout.stream(tenant) {
            return Ok(stream);
        }
        let (epoch, head) = self.store.stream_head(tenant).await?;
        Ok(self.fanout.stream_or_insert(&stocky_store::StreamHead {
            tenant: tenant.clone(),
            epoch: epoch.into(),
            head,
        }))
    }
}

/// What differs between the tiers that serve this gateway.
#[derive(Default)]
pub struct Wiring {
    /// Seed 000's `setValidator`: business rules applied to every stock command.
    pub validator: Option<Arc<dyn BusinessValidator>>,
    /// Where sessions are registered beyond this process (none: this process only).
    pub sessions: Option<Arc<dyn ws::SessionDirectory>>,
    /// The tier's own routes behind the gateway's authentication and rate limits.
    pub routes: openapi::ApiRoutes,
    /// The tier's own routes without authentication (they check what they need).
    pub public_routes: openapi::ApiRoutes,
    /// The tier's name in its API description (`Stocky hub`, `Stocky edge`).
    pub api_title: &'static str,
    /// The tier's own pages ([`ui`]): the hub's back office, the edge's register.
    pub pages: &'static [ui::Asset],
    /// What `GET /readyz` reports besides the database and the writer (Redis at a hub,
    /// the hub at an edge).
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
}

/// A part `GET /readyz` reports on. A part that is not `required` shows its state without
/// making the instance not ready: a hub without Redis still serves its clients, an edge
/// without its hub still sells.
pub trait ReadinessCheck: Send + Sync + 'static {
    /// The key in `checks`.
    fn name(&self) -> &'static str;
    /// `Err(why)` when the part is not working now. Must not block.
    fn state(&self) -> Result<(), String>;
    fn required(&self) -> bool {
        false
    }
}

/// A gateway whose listener is bound and whose store is open, not serving yet: the tier
/// finishes its own start-up on [`Prepared::state`] (bootstrap, background tasks), then
/// calls [`Prepared::serve`]. Dropping it instead releases the port and the store.
pub struct Prepared {
    state: AppState,
    listener: TcpListener,
    addr: SocketAddr,
    writer: stocky_store::WriterGuard,
    cors: CorsLayer,
    routes: (openapi::ApiRoutes, openapi::ApiRoutes),
    api_title: &'static str,
    pages: &'static [ui::Asset],
}

/// A running gateway.
pub struct Gateway {
    addr: SocketAddr,
    shutdown: CancellationToken,
    run: JoinHandle<Result<(), GatewayError>>,
}

impl Gateway {
    /// Prepares with the default wiring and serves.
    pub async fn start(config: ServerConfig) -> Result<Gateway, GatewayError> {
        Ok(Self::prepare(config, Wiring::default()).await?.serve())
    }

    /// Binds the listener (first: a start that fails on its port changes nothing), then
    /// opens the store. Returns before serving.
    pub async fn prepare(config: ServerConfig, wiring: Wiring) -> Result<Prepared, GatewayError> {
        let cors = cors_layer(&config.cors_origins)?;
        if config.dev && !config.listen.ip().is_loopback() {
            return Err(GatewayError::Config(format!(
                "dev mode opens access without credentials and is only allowed on a loopback address, not {}",
                config.listen.ip()
            )));
        }
        let secret = auth::load_or_create_secret(
            &config.data_dir,
            config.jwt_secret.as_ref().map(|s| s.0.as_str()),
        )
        .map_err(|e| GatewayError::Config(format!("JWT secret: {e}")))?;
        let authenticator = Authenticator::new(
            secret,
            config.admin_token.as_ref().map(|s| s.0.clone()),
            config.dev,
            ModuleMap::default().with(config.module_overrides.clone()),
        );
        let location = config
            .database_location()
            .map_err(|e| GatewayError::Config(e.to_string()))?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|error| GatewayError::Bind {
                    addr: config.listen,
                    error,
                })?;
        let addr = listener.local_addr().map_err(GatewayError::Serve)?;
        let metrics = Arc::new(metrics::Metrics::default());
        let fanout = Arc::new(Fanout::new(config.send_queue).with_metrics(metrics.clone()));
        let (store, writer, heads) = Store::open(
            &location,
            config.store.clone(),
            fanout.clone(),
            wiring.validator,
        )
        .await?;
        tracing::info!(database = %store.describe(), "store open");
        fanout.add_streams(&heads);

        let tasks = TaskTracker::new();
        let limits = Limits {
            per_credential: Limiter::new(config.rate_per_credential, config.rate_window),
            per_ip: Limiter::new(config.rate_per_ip, config.rate_window),
            login_per_email: Limiter::new(config.login_failures, config.rate_window),
            login_per_ip: Limiter::new(config.login_failures.saturating_mul(4), config.rate_window),
            failed_auth_per_ip: Limiter::new(
                config.login_failures.saturating_mul(20),
                config.rate_window,
            ),
        };
        let registry = match wiring.sessions {
            Some(directory) => ws::Registry::shared(directory, tasks.clone()),
            None => ws::Registry::default(),
        };
        let state = AppState {
            store,
            fanout,
            metrics,
            readiness: wiring.readiness.into(),
            config: Arc::new(config),
            shutdown: CancellationToken::new(),
            tasks,
            auth: Arc::new(authenticator),
            registry: Arc::new(registry),
            limits: Arc::new(limits),
            next_connection: Arc::new(AtomicU64::new(1)),
        };
        Ok(Prepared {
            state,
            listener,
            addr,
            writer,
            cors,
            routes: (wiring.routes, wiring.public_routes),
            api_title: wiring.api_title,
            pages: wiring.pages,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A token that stops the gateway when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops gracefully and waits until everything pending is committed.
    pub async fn stop(self) -> Result<(), GatewayError> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the gateway has stopped (after its token was cancelled).
    pub async fn wait(self) -> Result<(), GatewayError> {
        self.run
            .await
            .map_err(|e| GatewayError::Task(e.to_string()))?
    }
}

impl Prepared {
    /// The shared state, for the tier's own start-up and tasks.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts the gateway's own tasks (log pruning, log follower) and serves.
    pub fn serve(self) -> Gateway {
        let Prepared {
            state,
            listener,
            addr,
            writer,
            cors,
            routes: (protected, public),
            api_title,
            pages,
        } = self;
        let tasks = state.tasks.clone();
        let shutdown = state.shutdown.clone();
        tasks.spawn(prune_ticker(state.clone()));
        let (gaps, gap_reports) = tokio::sync::mpsc::channel(1024);
        state.fanout.report_gaps_to(gaps);
        tasks.spawn(follow::run(state.clone(), gap_reports));

        let app = Router::new()
            .merge(openapi::serve(
                rest::routes(&state, protected, public),
                api_title,
            ))
            .merge(ui::routes(pages))
            .route(&state.config.ws_path, get(ws::upgrade))
            .fallback(rest::not_found)
            .layer(axum::middleware::from_fn(error::envelope_rejections))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                access_log::log,
            ))
            .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
            .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
                state.config.body_timeout,
            ))
            .layer(cors)
            .with_state(state.clone());
        let grace = state.config.shutdown_grace;
        let stop = shutdown.clone();
        let limits = http::ConnectionLimits {
            header_timeout: state.config.header_timeout,
            max_connections: state.config.max_connections,
            trusted_proxies: Arc::new(state.config.trusted_proxies.clone()),
        };
        let run = tokio::spawn(async move {
            http::serve(listener, app, limits, stop, grace).await;
            tasks.close();
            if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
                tracing::warn!("shutdown: some connections did not finish within {grace:?}");
            }
            // Releasing the last store handle lets the writer drain its queue and stop.
            drop(state);
            tokio::task::spawn_blocking(move || writer.join())
                .await
                .map_err(|e| GatewayError::Task(e.to_string()))
        });
        Gateway {
            addr,
            shutdown,
            run,
        }
    }
}

/// A random id (128 bits, hex).
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How long a session's row is kept after it expired or was logged out.
const SESSION_KEEP: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
/// How often ended sessions are purged.
const SESSION_PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Asks the writer to prune the event log now and then, so the TTL holds on an idle hub,
/// and purges ended login sessions every hour (from the start), so `sessions` does not
/// grow with every login ever made.
async fn prune_ticker(state: AppState) {
    let period = (state.config.store.event_ttl / 4).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(30),
    );
    let mut tick = tokio::time::interval(period);
    let mut purge = tokio::time::interval(SESSION_PURGE_EVERY);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => state.store.prune_soon(),
            _ = purge.tick() => purge_sessions(&state).await,
        }
    }
}

/// Deletes the sessions that ended (expired or logged out) over [`SESSION_KEEP`] ago.
async fn purge_sessions(state: &AppState) {
    let before = stocky_core::time::now_millis() - SESSION_KEEP.as_millis() as i64;
    match state
        .store
        .accounts(move |a| a.purge_sessions(before))
        .await
    {
        Ok(0) => {}
        Ok(purged) => tracing::info!(purged, "sessions that ended over a week ago purged"),
        Err(e) => tracing::warn!(error = %e, "purging ended sessions failed; retrying in an hour"),
    }
}

fn cors_layer(origins: &[String]) -> Result<CorsLayer, GatewayError> {
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::HeaderName::from_static("idempotency-key"),
            header::HeaderName::from_static("if-match"),
            header::HeaderName::from_static("x-api-key"),
            header::HeaderName::from_static("x-device-id"),
        ]);
    if origins.iter().any(|o| o == "*") {
        return Ok(layer.allow_origin(AllowOrigin::any()));
    }
    let values = origins
        .iter()
        .map(|o| HeaderValue::from_str(o).map_err(|_| GatewayError::CorsOrigin(o.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(layer.allow_origin(values).allow_credentials(true))
}
