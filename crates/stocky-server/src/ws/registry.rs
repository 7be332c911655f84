//! One connection per user per device (seed 002): the registry of who is connected.
//!
//! Keyed by (tenant, user or key id, device). Under [`SessionPolicy::Replace`] a newer
//! connection takes the slot and the older one is told to close (its token is cancelled);
//! under [`SessionPolicy::Reject`] the newer one is refused while the older is open.
//! A connection releases its slot when it ends — only if it still holds it.
//!
//! With Redis configured the policy holds across instances: after the local claim the slot
//! is claimed in the shared registry too ([`super::cluster`]), and a kick from another
//! instance cancels the local holder like a local replacement would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cluster::{Claimed, Cluster};
use crate::config::SessionPolicy;

type Key = (Arc<str>, Arc<str>, String);

#[derive(Default)]
pub struct Registry {
    slots: Mutex<HashMap<Key, (u64, CancellationToken)>>,
    /// The shared registry and the tracker its release calls run on.
    cluster: Option<(Arc<Cluster>, TaskTracker)>,
}

/// A held slot; dropping it releases the slot if this connection still holds it.
pub struct Slot {
    registry: Arc<Registry>,
    key: Key,
    connection: u64,
    /// The slot's key in the shared registry, while this connection holds it there.
    shared_key: Option<String>,
    /// Cancelled when a newer connection replaces this one.
    pub replaced: CancellationToken,
}

impl Registry {
    /// A registry shared with other instances through `cluster`.
    pub fn shared(cluster: Arc<Cluster>, tasks: TaskTracker) -> Self {
        Self {
            slots: Mutex::default(),
            cluster: Some((cluster, tasks)),
        }
    }

    /// Takes the slot for `key` here and, when shared, across instances (for `ttl`, the
    /// credential's remaining lifetime); `None` when the policy is `Reject` and it is taken.
    pub async fn claim(
        self: &Arc<Self>,
        key: Key,
        connection: u64,
        policy: SessionPolicy,
        ttl: Duration,
    ) -> Option<Slot> {
        let mut slot = self.claim_here(key, connection, policy)?;
        if let Some((cluster, _)) = &self.cluster {
            let shared_key = Cluster::key(&slot.key.0, &slot.key.1, &slot.key.2);
            let owner = cluster.owner(connection);
            // Redis unreachable: the policy holds per instance until it is back.
            if let Ok(Claimed::Refused { .. }) =
                cluster.claim(&shared_key, &owner, ttl, policy).await
            {
                return None;
            }
            slot.shared_key = Some(shared_key);
        }
        Some(slot)
    }

    /// Closes (as replaced) the local connection `connection` if it holds the slot whose
    /// shared key is `shared_key` — another instance took the slot.
    pub fn kick(&self, shared_key: &str, connection: u64) {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        for (key, (holder, replaced)) in slots.iter() {
            if *holder == connection && Cluster::key(&key.0, &key.1, &key.2) == shared_key {
                replaced.cancel();
            }
        }
    }

    fn claim_here(
        self: &Arc<Self>,
        key: Key,
        connection: u64,
        policy: SessionPolicy,
    ) -> Option<Slot> {
        let replaced = CancellationToken::new();
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, older)) = slots.get(&key) {
            match policy {
                SessionPolicy::Reject => return None,
                SessionPolicy::Replace => older.cancel(),
            }
        }
        slots.insert(key.clone(), (connection, replaced.clone()));
        Some(Slot {
            registry: self.clone(),
            key,
            connection,
            shared_key: None,
            replaced,
        })
    }
}

impl Slot {
    /// Extends the shared slot to `ttl` from now, in the background (credentials without
    /// an expiry, such as API keys, renew it while connected).
    pub fn refresh_soon(&self, ttl: Duration) {
        if let (Some((cluster, tasks)), Some(shared_key)) =
            (&self.registry.cluster, &self.shared_key)
        {
            let (cluster, shared_key) = (cluster.clone(), shared_key.clone());
            let owner = cluster.owner(self.connection);
            tasks.spawn(async move { cluster.refresh(&shared_key, &owner, ttl).await });
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let (Some((cluster, tasks)), Some(shared_key)) =
            (&self.registry.cluster, self.shared_key.take())
        {
            let (cluster, owner) = (cluster.clone(), cluster.owner(self.connection));
            tasks.spawn(async move { cluster.release(&shared_key, &owner).await });
        }
        let mut slots = self
            .registry
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if slots
            .get(&self.key)
            .is_some_and(|(c, _)| *c == self.connection)
        {
            slots.remove(&self.key);
        }
    }
}
