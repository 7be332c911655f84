//! One connection per user per device (seed 002): the registry of who is connected.
//!
//! Keyed by (tenant, user or key id, device). Under [`SessionPolicy::Replace`] a newer
//! connection takes the slot and the older one is told to close (its token is cancelled);
//! under [`SessionPolicy::Reject`] the newer one is refused while the older is open.
//! A connection releases its slot when it ends — only if it still holds it.
//!
//! With a [`SessionDirectory`] (the hub's Redis registry) the policy holds across
//! instances: after the local claim the slot is claimed in the directory too, and a kick
//! from another instance ([`Registry::kick`]) cancels the local holder like a local
//! replacement would.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::SessionPolicy;

type Key = (Arc<str>, Arc<str>, String);

/// A boxed future of a directory call.
pub type DirectoryCall<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where sessions are registered beyond this process: the point where tiers differ (the
/// hub shares slots between instances through Redis; a lone hub or an edge has none).
///
/// A directory that cannot be reached must answer `claim` with `true` (the policy then
/// holds per instance): it never refuses connections because it is away.
pub trait SessionDirectory: Send + Sync + 'static {
    /// The directory's key of the slot (tenant, user or key id, device).
    fn key(&self, tenant: &str, id: &str, device: &str) -> String;
    /// Claims `key` for this process's `connection` for `ttl`; `false` when the policy is
    /// `Reject` and another connection holds it. Under `Replace` the previous holder is
    /// told to close (its process then calls [`Registry::kick`]).
    fn claim(
        &self,
        key: String,
        connection: u64,
        ttl: Duration,
        policy: SessionPolicy,
    ) -> DirectoryCall<'_, bool>;
    /// Releases `key` if `connection` still holds it.
    fn release(self: Arc<Self>, key: String, connection: u64) -> DirectoryCall<'static, ()>;
    /// Extends `key` to `ttl` from now if `connection` still holds it.
    fn refresh(
        self: Arc<Self>,
        key: String,
        connection: u64,
        ttl: Duration,
    ) -> DirectoryCall<'static, ()>;
}

#[derive(Default)]
pub struct Registry {
    slots: Mutex<HashMap<Key, (u64, CancellationToken)>>,
    /// The shared directory and the tracker its release calls run on.
    directory: Option<(Arc<dyn SessionDirectory>, TaskTracker)>,
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
    /// A registry shared with other instances through `directory`.
    pub fn shared(directory: Arc<dyn SessionDirectory>, tasks: TaskTracker) -> Self {
        Self {
            slots: Mutex::default(),
            directory: Some((directory, tasks)),
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
        if let Some((directory, _)) = &self.directory {
            let shared_key = directory.key(&slot.key.0, &slot.key.1, &slot.key.2);
            if !directory
                .claim(shared_key.clone(), connection, ttl, policy)
                .await
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
        let Some((directory, _)) = &self.directory else {
            return;
        };
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        for (key, (holder, replaced)) in slots.iter() {
            if *holder == connection && directory.key(&key.0, &key.1, &key.2) == shared_key {
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
        if let (Some((directory, tasks)), Some(shared_key)) =
            (&self.registry.directory, &self.shared_key)
        {
            tasks.spawn(
                directory
                    .clone()
                    .refresh(shared_key.clone(), self.connection, ttl),
            );
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let (Some((directory, tasks)), Some(shared_key)) =
            (&self.registry.directory, self.shared_key.take())
        {
            tasks.spawn(directory.clone().release(shared_key, self.connection));
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
