//! An activated edge's identity, kept in `<data-dir>/edge.json` (mode 0600): which hub,
//! tenant, site and device it is, and its device credential. Written once, atomically, at
//! the end of a successful activation; its presence means "activated".

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::EdgeError;

/// The file's name inside the data dir.
pub const FILE: &str = "edge.json";

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EdgeConfig {
    /// The hub's base URL (`http://host:port`).
    pub hub_url: String,
    pub tenant_id: String,
    pub site_id: String,
    pub device_id: String,
    /// The device credential (an API key of the hub), sent as `Authorization: Bearer`.
    pub api_key: String,
    /// ISO 8601.
    pub activated_at: String,
    /// Operations per push request (seed 003: 50).
    #[serde(default = "default_batch")]
    pub push_batch_size: usize,
    /// The slow poll period while the hub is unreachable (seed 004 `SYNC_INTERVAL_MINUTES`).
    #[serde(default = "default_interval")]
    pub sync_interval_minutes: u64,
    /// How each document collection syncs (the hub's rules, handed over at activation).
    #[serde(default)]
    pub sync_rules: stocky_core::sync_rules::SyncRules,
}

fn default_batch() -> usize {
    50
}

fn default_interval() -> u64 {
    5
}

impl std::fmt::Debug for EdgeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeConfig")
            .field("hub_url", &self.hub_url)
            .field("tenant_id", &self.tenant_id)
            .field("site_id", &self.site_id)
            .field("device_id", &self.device_id)
            .field("api_key", &"***")
            .finish()
    }
}

impl EdgeConfig {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE)
    }

    /// The configuration of an activated edge.
    pub fn load(data_dir: &Path) -> Result<EdgeConfig, EdgeError> {
        let path = Self::path(data_dir);
        let text = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                EdgeError::NotActivated(data_dir.to_owned())
            } else {
                EdgeError::Io(format!("reading {}: {e}", path.display()))
            }
        })?;
        serde_json::from_slice(&text).map_err(|e| {
            EdgeError::Io(format!(
                "{} is not an edge configuration: {e}",
                path.display()
            ))
        })
    }

    /// Writes the file atomically (temp file, then rename), readable by its owner only.
    pub fn save(&self, data_dir: &Path) -> Result<(), EdgeError> {
        let path = Self::path(data_dir);
        let temp = path.with_extension("json.partial");
        let io = |e: std::io::Error| EdgeError::Io(format!("writing {}: {e}", path.display()));
        let text = serde_json::to_vec_pretty(self).expect("a config serialises");
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&temp).map_err(io)?;
            file.write_all(&text).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&temp, &path).map_err(io)
    }
}
