//! The store tier: a node that serves the gateway ([`stocky_server`]) to the store's
//! registers on its own SQLite database and keeps selling when the internet is down, and
//! that syncs with the hub through the SDK ([`stocky_client`]).
//!
//! What only the edge has, around the shared gateway:
//! - activation with a one-time code ([`activate`]) and its identity ([`config`]);
//! - the push worker ([`push`]): the local ledger's own movements go up in batches,
//!   idempotent by movement UUID, with backoff;
//! - the pull worker ([`pull`]): the hub's movements for this site come down by cursor,
//!   woken by the hub's live stream;
//! - document collections both ways by the hub's sync rules ([`documents`]);
//! - the site's users, mirrored for offline sign-in ([`users`]);
//! - the sync status and log routes ([`status`]), the quarantine's ([`quarantine`]) and
//!   rotating the device credential ([`credential`]).
//!
//! Data layout: the edge keeps its one site's data under the local tenant and site
//! `default`; the hub's tenant and site ids live in `edge.json` and are used on the wire.
//! A local command commits its movements (the outbox) with its event in one SQLite
//! transaction, so nothing accepted locally can be lost before it is pushed.

pub mod activate;
pub mod config;
mod credential;
mod documents;
mod log;
pub mod pages;
pub mod pull;
pub mod push;
pub mod quarantine;
mod remote;
mod retail;
pub mod status;
pub mod users;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use stocky_server::config::Secret;
use stocky_server::{Gateway, GatewayError, ServerConfig, Wiring};

pub use activate::activate;
pub use config::EdgeConfig;
pub use status::SyncStatus;

/// The port an edge listens on by default (the hub's is 3000).
pub const DEFAULT_PORT: u16 = 3001;

/// Why an edge could not be activated or started.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("{0} holds no activated edge: run `stocky edge activate --hub URL --code CODE` first")]
    NotActivated(PathBuf),
    #[error("{0} already holds an activated edge (edge.json); use another --data-dir")]
    AlreadyActivated(PathBuf),
    #[error(transparent)]
    Hub(#[from] stocky_client::ClientError),
    #[error(transparent)]
    Store(#[from] stocky_store::StoreError),
    #[error("the local database refused the write: {0}")]
    Submit(#[from] stocky_store::SubmitError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("downloading from the hub failed: {0}")]
    Sync(#[from] push::PushError),
    #[error("{0}")]
    Io(String),
}

/// The origin of what the edge writes on upstream's behalf (its snapshot, pulled
/// movements): the local tenant and site, and the upstream marker as client.
pub(crate) fn upstream_origin() -> stocky_store::Origin {
    stocky_store::Origin::system(
        stocky_core::DEFAULT_TENANT.into(),
        stocky_core::DEFAULT_SITE.into(),
        stocky_store::UPSTREAM_ORIGIN,
    )
}

/// The edge's SQLite file.
pub fn database(data_dir: &Path) -> PathBuf {
    data_dir.join("stocky.db")
}

/// How to run an activated edge.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// `STOCKY_ADMIN_TOKEN`: the local operator credential.
    pub admin_token: Option<Secret>,
    /// Overrides of `edge.json` (seed 004's `REMOTE_API_URL`, `REMOTE_API_KEY`).
    pub hub_url: Option<String>,
    pub api_key: Option<Secret>,
    /// Overrides the slow poll period (seed 004 `SYNC_INTERVAL_MINUTES`).
    pub sync_interval_minutes: Option<u64>,
    /// Overrides the operations per push request (seed 003: 50; at most 500).
    pub push_batch_size: Option<usize>,
    /// The gateway's rate limits per credential and per IP (0 = unlimited).
    pub rate_per_credential: u32,
    pub rate_per_ip: u32,
    /// The git commit the binary was built from, for `GET /version`.
    pub build_commit: Option<&'static str>,
    /// The bearer token `GET /metrics` requires, if any.
    pub metrics_token: Option<Secret>,
}

impl EdgeOptions {
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        EdgeOptions {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            admin_token: None,
            hub_url: None,
            api_key: None,
            sync_interval_minutes: None,
            push_batch_size: None,
            rate_per_credential: 6000,
            rate_per_ip: 12_000,
            build_commit: None,
            metrics_token: None,
        }
    }
}

/// A running edge.
pub struct Edge {
    gateway: Gateway,
    pub config: EdgeConfig,
    status: Arc<Mutex<SyncStatus>>,
}

impl Edge {
    /// Starts the gateway on the local database with the push worker beside it.
    pub async fn start(options: EdgeOptions) -> Result<Edge, EdgeError> {
        let mut config = EdgeConfig::load(&options.data_dir)?;
        if let Some(url) = options.hub_url {
            config.hub_url = url;
        }
        if let Some(key) = options.api_key {
            config.api_key = key.0;
        }
        if let Some(minutes) = options.sync_interval_minutes {
            config.sync_interval_minutes = minutes.max(1);
        }
        if let Some(batch) = options.push_batch_size {
            config.push_batch_size = batch.clamp(1, 500);
        }
        let mut server = ServerConfig::for_data_dir(&options.data_dir);
        server.listen = options.listen;
        server.db_path = Some(database(&options.data_dir));
        server.admin_token = options.admin_token;
        server.rate_per_credential = options.rate_per_credential;
        server.rate_per_ip = options.rate_per_ip;
        server.build_commit = options.build_commit;
        server.metrics_token = options.metrics_token;
        server.users_from_upstream = true;
        let status = Arc::new(Mutex::new(SyncStatus::default()));
        let hub = stocky_client::Client::new(&config.hub_url)?.with_token(config.api_key.clone());
        let upstream = quarantine::Upstream {
            hub: hub.clone(),
            site: config.site_id.clone(),
        };
        let wiring = Wiring {
            routes: status::routes(status.clone(), config.site_id.clone())
                .merge(quarantine::routes(upstream))
                .merge(remote::routes())
                .merge(credential::routes(credential::Rotation {
                    hub: hub.clone(),
                    data_dir: options.data_dir.clone(),
                })),
            pages: pages::PAGES,
            api_title: "Stocky edge",
            readiness: vec![Arc::new(status::UpstreamCheck(status.clone()))],
            ..Wiring::default()
        };
        let prepared = Gateway::prepare(server, wiring).await?;
        let state = prepared.state();
        let wake_pull = Arc::new(tokio::sync::Notify::new());
        let rules = Arc::new(config.sync_rules.clone());
        state.tasks.spawn(push::run(
            state.store.clone(),
            hub.clone(),
            config.site_id.clone(),
            rules.clone(),
            config.push_batch_size,
            status.clone(),
            wake_pull.clone(),
            state.shutdown.clone(),
        ));
        state.tasks.spawn(pull::run(
            state.store.clone(),
            hub.clone(),
            config.site_id.clone(),
            rules,
            wake_pull.clone(),
            std::time::Duration::from_secs(config.sync_interval_minutes.max(1) * 60),
            status.clone(),
            state.shutdown.clone(),
        ));
        let wake_users = Arc::new(tokio::sync::Notify::new());
        state.tasks.spawn(users::run(
            state.store.clone(),
            hub.clone(),
            wake_users.clone(),
            std::time::Duration::from_secs(config.sync_interval_minutes.max(1) * 60),
            status.clone(),
            state.shutdown.clone(),
        ));
        state.tasks.spawn(pull::watch(
            hub,
            config.device_id.clone(),
            wake_pull,
            wake_users,
            status.clone(),
            state.shutdown.clone(),
        ));
        state.tasks.spawn(status::export_outbox(
            state.clone(),
            config.site_id.clone(),
            state.shutdown.clone(),
        ));
        tracing::info!(site = %config.site_id, device = %config.device_id, hub = %config.hub_url, "edge ready");
        Ok(Edge {
            gateway: prepared.serve(),
            config,
            status,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.gateway.local_addr()
    }

    /// What the push worker last saw.
    pub fn status(&self) -> SyncStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn shutdown_token(&self) -> tokio_util::sync::CancellationToken {
        self.gateway.shutdown_token()
    }

    /// Stops gracefully: the gateway drains, the push worker stops between rounds.
    pub async fn stop(self) -> Result<(), EdgeError> {
        Ok(self.gateway.stop().await?)
    }

    pub async fn wait(self) -> Result<(), EdgeError> {
        Ok(self.gateway.wait().await?)
    }
}
