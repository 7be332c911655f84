//! `stocky edge`: run a store node, and `stocky edge activate` to enrol it with a hub.
//!
//! Settings: flags, then seed 004's environment names (`REMOTE_API_URL`, `REMOTE_API_KEY`,
//! `SYNC_INTERVAL_MINUTES`; `SYNC_DEBUG=true` logs every sync round), then `edge.json`
//! written by the activation.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use stocky_edge::{Edge, EdgeOptions};
use stocky_server::config::Secret;

use crate::backup::Progress;

#[derive(Args)]
pub struct EdgeArgs {
    #[command(subcommand)]
    command: Option<EdgeCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum EdgeCommand {
    /// Enrol this store with a hub using a one-time code from the hub's admin
    /// (`POST /api/admin/sites/{siteId}/activation-codes`), then download its data.
    Activate {
        /// The hub's base URL, e.g. http://hub.example:3000.
        #[arg(long, env = "REMOTE_API_URL")]
        hub: String,
        /// The 6-digit activation code.
        #[arg(long)]
        code: String,
        /// A name for this device at the hub.
        #[arg(long)]
        name: Option<String>,
        /// Where the edge keeps its state.
        #[arg(long, env = "STOCKY_DATA_DIR", default_value = "./stocky-edge")]
        data_dir: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Where the edge keeps its state (activated with `stocky edge activate`).
    #[arg(long, env = "STOCKY_DATA_DIR", default_value = "./stocky-edge")]
    data_dir: PathBuf,
    /// Address to listen on for the store's registers (0.0.0.0 for the LAN).
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port for the store's registers.
    #[arg(long, env = "PORT", default_value_t = stocky_edge::DEFAULT_PORT)]
    port: u16,
    /// Local operator credential (acts as the owner at this edge).
    #[arg(long, env = "STOCKY_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// The hub's URL, overriding edge.json (seed 004's REMOTE_API_URL).
    #[arg(long = "hub", env = "REMOTE_API_URL")]
    hub_url: Option<String>,
    /// A device API key, overriding edge.json (seed 004's REMOTE_API_KEY).
    #[arg(long, env = "REMOTE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Minutes between backup pulls while the hub's live stream is away (seed 004's
    /// SYNC_INTERVAL_MINUTES) [default: from edge.json, 5].
    #[arg(long, env = "SYNC_INTERVAL_MINUTES")]
    sync_interval_minutes: Option<u64>,
    /// Operations per push request [default: from edge.json, 50; at most 500].
    #[arg(long, env = "STOCKY_PUSH_BATCH")]
    push_batch_size: Option<usize>,
    /// REST requests and WebSocket commands per credential per minute (0 = unlimited).
    #[arg(long, env = "STOCKY_RATE_LIMIT", default_value_t = 6000)]
    rate_limit: u32,
    /// Requests per client IP per minute (0 = unlimited).
    #[arg(long, env = "STOCKY_RATE_LIMIT_IP", default_value_t = 12_000)]
    rate_limit_ip: u32,
    /// A bearer token `GET /metrics` requires [default: none, the metrics are open].
    #[arg(long, env = "STOCKY_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
}

pub async fn run(args: EdgeArgs) -> anyhow::Result<()> {
    match args.command {
        Some(EdgeCommand::Activate {
            hub,
            code,
            name,
            data_dir,
        }) => {
            let mut bar: Option<Progress> = None;
            let config = stocky_edge::activate(
                &hub,
                &code,
                name.as_deref(),
                &data_dir,
                |done, total, label| {
                    bar.get_or_insert_with(|| Progress::new("activate", total))
                        .show(done, label);
                },
            )
            .await
            .context("activation failed")?;
            if let Some(bar) = bar {
                bar.done();
            }
            println!(
                "activated: tenant {} site {} device {}\n  run it: stocky edge --data-dir {}",
                config.tenant_id,
                config.site_id,
                config.device_id,
                data_dir.display()
            );
            Ok(())
        }
        None => serve(args.run).await,
    }
}

async fn serve(args: RunArgs) -> anyhow::Result<()> {
    let mut options = EdgeOptions::for_data_dir(&args.data_dir);
    options.listen = SocketAddr::new(args.host, args.port);
    options.admin_token = args.admin_token.map(Secret);
    options.hub_url = args.hub_url.filter(|u| !u.is_empty());
    options.api_key = args.api_key.filter(|k| !k.is_empty()).map(Secret);
    options.sync_interval_minutes = args.sync_interval_minutes;
    options.push_batch_size = args.push_batch_size;
    options.rate_per_credential = args.rate_limit;
    options.rate_per_ip = args.rate_limit_ip;
    options.build_commit = crate::build_commit();
    options.metrics_token = args.metrics_token.filter(|t| !t.is_empty()).map(Secret);
    let edge = Edge::start(options).await.context("starting the edge")?;
    let addr = edge.local_addr();
    let banner = format!(
        "Stocky edge listening on http://{addr}\n  WebSocket: ws://{addr}/ws\n  Site: {} (device {}), hub {}\n  Sync status: http://{addr}/api/sync/status\n",
        edge.config.site_id, edge.config.device_id, edge.config.hub_url
    );
    let mut stdout = std::io::stdout();
    let _ = stdout
        .write_all(banner.as_bytes())
        .and_then(|()| stdout.flush());
    let stop = edge.shutdown_token();
    tokio::spawn(async move {
        crate::wait_for_signal().await;
        tracing::info!("shutdown requested; finishing pending commits");
        stop.cancel();
    });
    edge.wait().await.context("edge stopped with an error")?;
    tracing::info!("edge stopped cleanly");
    Ok(())
}
