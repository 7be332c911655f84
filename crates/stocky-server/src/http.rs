//! The HTTP/1 accept loop (in place of `axum::serve`), with what a server facing the
//! internet needs and `axum::serve` does not give:
//!
//! - a **header read timeout** ([`ConnectionLimits::header_timeout`]): a request's headers
//!   must arrive within it, and so must the next request's on an idle keep-alive
//!   connection, so half-sent headers and idle sockets (slowloris) are closed;
//! - a **connection cap** ([`ConnectionLimits::max_connections`]): beyond it new
//!   connections are closed at once, before anything is read, instead of exhausting file
//!   descriptors and memory (WebSocket connections count until they close);
//! - the client's address in `ConnectInfo`: the socket peer, or behind a trusted reverse
//!   proxy the address it forwards (`client_addr`);
//! - `TCP_NODELAY` on every connection (writers flush once per batch on purpose; Nagle
//!   would hold the last frame of a batch until the peer's delayed ACK, ~40 ms);
//! - graceful shutdown: on `shutdown`, accepting stops and open connections finish their
//!   request in flight.
//!
//! Request bodies have their own timeout (`tower_http`'s body timeout, in the router).

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::client_addr::{self, TrustedProxies};

/// Limits on connections, and whose forwarded addresses are believed.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    /// Peers whose `X-Forwarded-For` names the client (`ConnectInfo` carries the client's
    /// address, see `client_addr`).
    pub trusted_proxies: Arc<TrustedProxies>,
}

/// Serves `app` on `listener` until `shutdown`, then waits up to `grace` for the open
/// connections to finish their request in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    let mut refused = 0u64;
    loop {
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, typically: let connections close first.
                    tracing::warn!(error = %e, "accept failed; pausing");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    max = limits.max_connections,
                    refused,
                    "connection cap reached; closing new connections"
                );
            }
            drop(stream);
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let proxies = limits.trusted_proxies.clone();
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut request: hyper::Request<Incoming>| {
                let client = client_addr::client(&proxies, remote, request.headers());
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(client));
                request.map(Body::new)
            },
        ));
        let (shutdown, header_timeout) = (shutdown.clone(), limits.header_timeout);
        connections.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let mut connection = pin!(builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades());
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::trace!(error = %e, %remote, "connection ended with an error");
                    }
                }
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: some requests did not finish within {grace:?}");
    }
}
