//! `stocky edge activate --hub URL --code 123456`: redeems the code at the hub
//! (`POST /activate`), creates the local database, downloads the site's stock as the
//! starting point of the local ledger, the site's users (offline sign-in) and the
//! document collections that come down (the catalog), and only then writes `edge.json` — so an activation
//! that fails half-way leaves no "activated" edge behind and can simply be run again with
//! a new code.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use stocky_client::Client;
use stocky_core::stock::LedgerEntry;
use stocky_core::time::{iso8601, now_millis};
use stocky_core::DEFAULT_SITE;
use stocky_store::{Command, Location, Store, StoreOptions, Unobserved, UPSTREAM_ORIGIN};

use crate::config::EdgeConfig;
use crate::{database, EdgeError};

/// The kind of the movements that carry the hub's stock at activation into the local
/// ledger (one per product, standing for the hub's history up to then).
pub(crate) const SNAPSHOT_KIND: &str = "snapshot";

/// What the hub answers to `POST /activate`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Activated {
    tenant_id: String,
    site_id: String,
    device_id: String,
    api_key: String,
    #[serde(default)]
    config: ActivatedConfig,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ActivatedConfig {
    sync_interval_minutes: Option<u64>,
    push_batch_size: Option<usize>,
    sync_rules: Option<stocky_core::sync_rules::SyncRules>,
}

/// Activates the edge in `data_dir` with `code` at `hub_url`; `progress(done, total,
/// label)` follows the download.
pub async fn activate(
    hub_url: &str,
    code: &str,
    name: Option<&str>,
    data_dir: &Path,
    mut progress: impl FnMut(u64, u64, &str),
) -> Result<EdgeConfig, EdgeError> {
    if EdgeConfig::path(data_dir).exists() {
        return Err(EdgeError::AlreadyActivated(data_dir.to_owned()));
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| EdgeError::Io(format!("creating {}: {e}", data_dir.display())))?;
    let hub = Client::new(hub_url)?;
    progress(0, 5, "activating");
    let activated: Activated = hub
        .post("/activate", &json!({"code": code.trim(), "name": name}))
        .await?;
    let device = hub.clone().with_token(activated.api_key.clone());
    progress(1, 5, "downloading stock");
    let listing = device.stock().await?;
    progress(2, 5, "downloading the site's users");
    let users = device.site_users().await?;

    let (store, writer, _) = Store::open(
        &Location::Sqlite(database(data_dir)),
        StoreOptions::default(),
        Arc::new(Unobserved),
        None,
    )
    .await?;
    // The hub's stock becomes the local ledger's starting point: one movement per product,
    // marked as coming from upstream (never pushed back), with ids that make a repeated
    // download a no-op.
    let entries: Vec<LedgerEntry> = listing
        .data
        .iter()
        .map(|row| LedgerEntry {
            id: format!(
                "snapshot-{}-{}-{}",
                listing.epoch, listing.last_event_id, row.product_id
            ),
            site: DEFAULT_SITE.to_owned(),
            product_id: row.product_id,
            delta: row.stock,
            kind: SNAPSHOT_KIND.into(),
            reason: Some("initial stock from the hub".into()),
            origin_client: Some(UPSTREAM_ORIGIN.into()),
            origin_op: None,
            server_time: now_millis(),
            client_time: None,
            user_id: None,
        })
        .filter(|e| e.delta != 0)
        .collect();
    progress(3, 5, "writing the local ledger and users");
    crate::users::mirror(&store, users).await?;
    if !entries.is_empty() {
        let origin = crate::upstream_origin();
        store
            .submit(Command::RestoreLedger(entries), origin)
            .await?;
    }
    let (epoch, head) = (listing.epoch.clone(), listing.last_event_id.to_string());
    store
        .sync(move |s| {
            s.set_state(crate::pull::EPOCH_KEY, &epoch)?;
            // The snapshot holds every hub movement up to `head`: pull after it.
            s.set_state(crate::pull::CURSOR_KEY, &format!("{head} "))?;
            s.set_state("hub.last_event_id", &head)
        })
        .await?;
    // The catalog and the other collections that come down, and whatever moved at the hub
    // since the stock was read: the same pull the running edge does.
    let sync_rules = activated.config.sync_rules.unwrap_or_default();
    let mut pulled = 0;
    loop {
        let (count, more) =
            crate::pull::pull_once(&store, &device, &activated.site_id, &sync_rules).await?;
        pulled += count as u64;
        progress(4, 5, &format!("downloading documents ({pulled})"));
        if !more {
            break;
        }
    }
    drop(store);
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|e| EdgeError::Io(e.to_string()))?;

    let config = EdgeConfig {
        hub_url: hub.base_url().to_owned(),
        tenant_id: activated.tenant_id,
        site_id: activated.site_id,
        device_id: activated.device_id,
        api_key: activated.api_key,
        activated_at: iso8601(now_millis()),
        push_batch_size: activated.config.push_batch_size.unwrap_or(50).clamp(1, 500),
        sync_interval_minutes: activated.config.sync_interval_minutes.unwrap_or(5).max(1),
        sync_rules,
    };
    config.save(data_dir)?;
    progress(5, 5, "ready");
    Ok(config)
}
