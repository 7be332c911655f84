//! The gateway shared by hub and edge: REST, the WebSocket protocol and the fan-out, over
//! a store.
//!
//! [`Hub::start`] binds the listener, opens the store, creates the first owner on a
//! database without users, and serves until [`Hub::stop`] (or the shutdown token) — then
//! it stops accepting, lets every WebSocket session deliver what its in-flight commands
//! produced and close with a "reconnect" reason, waits for the writer to commit everything
//! still queued, and returns.
//!
//! Every task the hub spawns is tracked in [`AppState::tasks`] and watches
//! [`AppState::shutdown`].

pub mod auth;
pub mod backup;
mod bus;
pub mod config;
pub mod error;
pub mod fanout;
mod follow;
pub mod limits;
pub mod rest;
pub mod ws;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use stocky_core::stock::BusinessValidator;
use stocky_core::DEFAULT_TENANT;
use stocky_store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowOrigin, CorsLayer};

use auth::Authenticator;
pub use config::HubConfig;
use fanout::{Fanout, Stream};
use limits::Limiter;
use stocky_core::auth::ModuleMap;

/// Why the hub could not start or stopped abnormally. Each message carries its cause, so
/// none of them has a `source()` (a report that walks the chain would repeat it).
#[derive(Debug, thiserror::Error)]
pub enum HubError {
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
    pub config: Arc<HubConfig>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    pub auth: Arc<Authenticator>,
    pub registry: Arc<ws::Registry>,
    pub limits: Arc<Limits>,
    next_connection: Arc<AtomicU64>,
}

/// The hub's abuse limiters.
pub struct Limits {
    pub per_credential: Limiter,
    pub per_ip: Limiter,
    pub login_per_email: Limiter,
    pub login_per_ip: Limiter,
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

/// A running hub.
pub struct Hub {
    addr: SocketAddr,
    /// Set on the very first start: the owner account created, and its password.
    pub initial_owner: Option<(String, String)>,
    shutdown: CancellationToken,
    run: JoinHandle<Result<(), HubError>>,
}

impl Hub {
    /// Binds the listener, opens the store and starts serving. Returns once the listener
    /// is bound.
    pub async fn start(config: HubConfig) -> Result<Hub, HubError> {
        Self::start_with(config, None).await
    }

    /// Like [`Hub::start`], with a custom business validator (seed 000's `setValidator`).
    pub async fn start_with(
        config: HubConfig,
        validator: Option<Arc<dyn BusinessValidator>>,
    ) -> Result<Hub, HubError> {
        let cors = cors_layer(&config.cors_origins)?;
        if config.dev && !config.listen.ip().is_loopback() {
            return Err(HubError::Config(format!(
                "dev mode opens access without credentials and is only allowed on a loopback address, not {}",
                config.listen.ip()
            )));
        }
        let secret = auth::load_or_create_secret(
            &config.data_dir,
            config.jwt_secret.as_ref().map(|s| s.0.as_str()),
        )
        .map_err(|e| HubError::Config(format!("JWT secret: {e}")))?;
        let authenticator = Authenticator::new(
            secret,
            config.admin_token.as_ref().map(|s| s.0.clone()),
            config.dev,
            ModuleMap::default().with(config.module_overrides.clone()),
        );
        let location = config
            .database_location()
            .map_err(|e| HubError::Config(e.to_string()))?;
        let redis = match &config.redis_url {
            Some(url) => Some(
                redis::Client::open(url.0.as_str())
                    .map_err(|e| HubError::Config(format!("REDIS_URL is not a Redis URL: {e}")))?,
            ),
            None => None,
        };
        // The port first: a start that fails must not have created the first owner, whose
        // password is shown only by the start that creates it.
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|error| HubError::Bind {
                addr: config.listen,
                error,
            })?;
        let addr = listener.local_addr().map_err(HubError::Serve)?;
        let fanout = Arc::new(Fanout::new(config.send_queue));
        let (store, writer, heads) =
            Store::open(&location, config.store.clone(), fanout.clone(), validator).await?;
        tracing::info!(database = %store.describe(), "store open");
        fanout.add_streams(&heads);
        // The last step that can fail: after it, the hub serves and the binary prints the
        // password.
        let initial_owner = bootstrap_owner(&store).await?;

        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let limits = Limits {
            per_credential: Limiter::new(config.rate_per_credential, config.rate_window),
            per_ip: Limiter::new(config.rate_per_ip, config.rate_window),
            login_per_email: Limiter::new(config.login_failures, config.rate_window),
            login_per_ip: Limiter::new(config.login_failures.saturating_mul(4), config.rate_window),
        };
        let instance = random_id();
        let cluster = redis
            .clone()
            .map(|client| Arc::new(ws::cluster::Cluster::new(client, instance.clone())));
        let registry = match &cluster {
            Some(cluster) => ws::Registry::shared(cluster.clone(), tasks.clone()),
            None => ws::Registry::default(),
        };
        let state = AppState {
            store,
            fanout,
            config: Arc::new(config),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
            auth: Arc::new(authenticator),
            registry: Arc::new(registry),
            limits: Arc::new(limits),
            next_connection: Arc::new(AtomicU64::new(1)),
        };
        tasks.spawn(prune_ticker(state.clone()));
        let (gaps, gap_reports) = tokio::sync::mpsc::channel(1024);
        state.fanout.report_gaps_to(gaps);
        tasks.spawn(follow::run(state.clone(), gap_reports));
        if let Some(client) = redis {
            let registry = state.registry.clone();
            tasks.spawn(ws::cluster::listen_for_kicks(
                client.clone(),
                instance.clone(),
                move |key, connection| registry.kick(key, connection),
                shutdown.clone(),
            ));
            let (relay, commits) = tokio::sync::mpsc::channel(bus::RELAY_QUEUE);
            state.fanout.relay_to(relay);
            tasks.spawn(bus::relay(
                client.clone(),
                instance.clone(),
                commits,
                shutdown.clone(),
            ));
            tasks.spawn(bus::listen(
                client,
                instance,
                state.fanout.clone(),
                shutdown.clone(),
            ));
        }

        let app = Router::new()
            .merge(rest::routes(&state))
            .route(&state.config.ws_path, get(ws::upgrade))
            .fallback(rest::not_found)
            .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
            .layer(cors)
            .with_state(state.clone());
        let grace = state.config.shutdown_grace;
        let stop = shutdown.clone();
        let run = tokio::spawn(async move {
            // Writers flush once per batch on purpose; Nagle would only hold the last frame
            // of a batch back until the peer's delayed ACK (~40 ms).
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
            });
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            tasks.close();
            if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
                tracing::warn!("shutdown: some connections did not finish within {grace:?}");
            }
            // Releasing the last store handle lets the writer drain its queue and stop.
            drop(state);
            tokio::task::spawn_blocking(move || writer.join())
                .await
                .map_err(|e| HubError::Task(e.to_string()))?;
            served.map_err(HubError::Serve)
        });
        Ok(Hub {
            addr,
            initial_owner,
            shutdown,
            run,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A token that stops the hub when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops gracefully and waits until everything pending is committed.
    pub async fn stop(self) -> Result<(), HubError> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the hub has stopped (after its token was cancelled).
    pub async fn wait(self) -> Result<(), HubError> {
        self.run.await.map_err(|e| HubError::Task(e.to_string()))?
    }
}

/// The login of the owner the hub creates on its very first start.
const FIRST_OWNER_EMAIL: &str = "owner@stocky.local";

/// On the very first start (no users at all), creates the owner of the default tenant
/// with a random password, returned once so the binary can print how to log in. Called
/// once the listener is bound, so a start that fails on its port creates no owner.
async fn bootstrap_owner(store: &Store) -> Result<Option<(String, String)>, HubError> {
    if store.accounts(|a| a.count_users()).await? > 0 {
        return Ok(None);
    }
    let email = FIRST_OWNER_EMAIL.to_string();
    let password = auth::generate_password();
    let hash = auth::hash_password_off_thread(password.clone())
        .await
        .map_err(|e| HubError::Task(e.message))?;
    let account = stocky_store::Account {
        id: random_id(),
        tenant: DEFAULT_TENANT.into(),
        role: stocky_core::auth::Role::Owner,
        site: None,
        modules: None,
    };
    let login = email.clone();
    match store
        .accounts(move |a| a.create_user(&account, &login, &hash))
        .await
    {
        Ok(()) => Ok(Some((email, password))),
        // Another instance starting on the same empty database created it first.
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A random id (128 bits, hex).
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Asks the writer to prune the event log now and then, so the TTL holds on an idle hub.
async fn prune_ticker(state: AppState) {
    let period = (state.config.store.event_ttl / 4).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(30),
    );
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => state.store.prune_soon(),
        }
    }
}

fn cors_layer(origins: &[String]) -> Result<CorsLayer, HubError> {
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
        ]);
    if origins.iter().any(|o| o == "*") {
        return Ok(layer.allow_origin(AllowOrigin::any()));
    }
    let values = origins
        .iter()
        .map(|o| HeaderValue::from_str(o).map_err(|_| HubError::CorsOrigin(o.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(layer.allow_origin(values).allow_credentials(true))
}
