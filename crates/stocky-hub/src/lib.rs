//! The cloud tier: what only the hub has, around the shared gateway ([`stocky_server`]).
//!
//! - start-up wiring and its config ([`HubConfig`]: the gateway's settings plus Redis);
//! - the Redis Streams bus between hub instances ([`bus`]): this instance's commits go
//!   out, the others' come in to the fan-out;
//! - the cross-instance session registry ([`sessions`]), the gateway's
//!   [`stocky_server::ws::SessionDirectory`];
//! - the first owner, created on a database without users ([`Hub::initial_owner`]);
//! - store-node activation: one-time codes and `POST /activate` ([`activation`]);
//! - the users a store node mirrors for offline sign-in ([`site_users`]);
//! - rotating a store node's device credential ([`device_key`]).
//!
//! Start-up order: the gateway binds its port and opens the store, then the hub creates
//! the first owner and starts its Redis tasks, then it serves. A start that fails at any
//! step has created no owner (whose password only the creating start shows).

pub mod activation;
pub mod bus;
pub mod device_key;
pub mod pages;
pub mod sessions;
pub mod site_users;
pub mod store_status;
pub mod transfers;

use std::net::SocketAddr;
use std::sync::Arc;

use stocky_core::stock::BusinessValidator;
use stocky_core::DEFAULT_TENANT;
use stocky_server::config::Secret;
use stocky_server::{auth, random_id, Gateway, GatewayError, ServerConfig, Wiring};
use stocky_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

/// A hub's settings: the gateway's, plus what only the cloud has.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub server: ServerConfig,
    /// Redis, for events and sessions between hub instances (`REDIS_URL`); none = this
    /// instance only. `rediss://` connects with TLS, verifying the server's certificate
    /// against the system's roots and [`HubConfig::redis_ca_file`].
    pub redis_url: Option<Secret>,
    /// A PEM file of root certificates to trust for `rediss://` (a private CA).
    pub redis_ca_file: Option<std::path::PathBuf>,
}

impl HubConfig {
    /// Defaults for a hub keeping its data in `data_dir`, listening on 127.0.0.1:3000.
    pub fn for_data_dir(data_dir: impl Into<std::path::PathBuf>) -> Self {
        HubConfig {
            server: ServerConfig::for_data_dir(data_dir),
            redis_url: None,
            redis_ca_file: None,
        }
    }
}

/// Why a hub could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("creating the first owner failed: {0}")]
    Bootstrap(String),
}

/// A running hub.
pub struct Hub {
    gateway: Gateway,
    /// Set on the very first start: the owner account created, and its password.
    pub initial_owner: Option<(String, String)>,
}

impl Hub {
    /// Starts a hub with no custom business validator.
    pub async fn start(config: HubConfig) -> Result<Hub, HubError> {
        Self::start_with(config, None).await
    }

    /// Like [`Hub::start`], with a custom business validator (seed 000's `setValidator`).
    pub async fn start_with(
        config: HubConfig,
        validator: Option<Arc<dyn BusinessValidator>>,
    ) -> Result<Hub, HubError> {
        let redis = match &config.redis_url {
            Some(url) => Some(redis_client(&url.0, config.redis_ca_file.as_deref())?),
            None => None,
        };
        let instance = random_id();
        let directory = redis
            .clone()
            .map(|client| Arc::new(sessions::Cluster::new(client, instance.clone())));
        let runner = transfers::Runner::default();
        let bus_health = Arc::new(bus::BusHealth::default());
        let wiring = Wiring {
            validator,
            sessions: directory
                .clone()
                .map(|d| d as Arc<dyn stocky_server::ws::SessionDirectory>),
            routes: activation::routes()
                .merge(site_users::routes())
                .merge(device_key::routes())
                .merge(transfers::routes(runner.clone()))
                .merge(store_status::routes()),
            public_routes: activation::public_routes(),
            api_title: "Stocky hub",
            pages: pages::PAGES,
            readiness: match &redis {
                Some(_) => vec![bus_health.clone() as Arc<dyn stocky_server::ReadinessCheck>],
                None => Vec::new(),
            },
        };
        let prepared = Gateway::prepare(config.server, wiring).await?;
        let initial_owner = bootstrap_owner(&prepared.state().store).await?;
        {
            let state = prepared.state();
            state.tasks.spawn(transfers::run(
                state.clone(),
                runner,
                state.shutdown.clone(),
            ));
        }
        if let Some(client) = redis {
            let state = prepared.state();
            let (tasks, shutdown) = (&state.tasks, &state.shutdown);
            let registry = state.registry.clone();
            tasks.spawn(sessions::listen_for_kicks(
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
                state.metrics.clone(),
                bus_health.clone(),
                shutdown.clone(),
            ));
            tasks.spawn(bus::listen(
                client,
                instance,
                state.fanout.clone(),
                bus_health,
                shutdown.clone(),
            ));
        }
        Ok(Hub {
            gateway: prepared.serve(),
            initial_owner,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.gateway.local_addr()
    }

    /// A token that stops the hub when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.gateway.shutdown_token()
    }

    /// Stops gracefully and waits until everything pending is committed.
    pub async fn stop(self) -> Result<(), HubError> {
        Ok(self.gateway.stop().await?)
    }

    /// Waits until the hub has stopped (after its token was cancelled).
    pub async fn wait(self) -> Result<(), HubError> {
        Ok(self.gateway.wait().await?)
    }
}

/// The Redis client for `url`; `rediss://` with TLS (rustls), trusting `ca_file`'s roots
/// as well as the system's.
fn redis_client(url: &str, ca_file: Option<&std::path::Path>) -> Result<redis::Client, HubError> {
    let invalid =
        |e: redis::RedisError| HubError::Config(format!("REDIS_URL is not a Redis URL: {e}"));
    match ca_file {
        None => redis::Client::open(url).map_err(invalid),
        Some(path) => {
            if !url.starts_with("rediss://") {
                return Err(HubError::Config(
                    "a Redis CA file is only used with rediss:// URLs".into(),
                ));
            }
            let root_cert = std::fs::read(path).map_err(|e| {
                HubError::Config(format!(
                    "cannot read the Redis CA file {}: {e}",
                    path.display()
                ))
            })?;
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert),
            };
            redis::Client::build_with_tls(url, certificates).map_err(invalid)
        }
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
        .map_err(|e| HubError::Bootstrap(e.message))?;
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
