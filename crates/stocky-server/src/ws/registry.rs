//! One connection per user per device (seed 002): the registry of who is connected.
//!
//! Keyed by (tenant, user or key id, device). Under [`SessionPolicy::Replace`] a newer
//! connection takes the slot and the older one is told to close (its token is cancelled);
//! under [`SessionPolicy::Reject`] the newer one is refused while the older is open.
//! A connection releases its slot when it ends — only if it still holds it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::config::SessionPolicy;

type Key = (Arc<str>, Arc<str>, String);

#[derive(Default)]
pub struct Registry {
    slots: Mutex<HashMap<Key, (u64, CancellationToken)>>,
}

/// A held slot; dropping it releases the slot if this connection still holds it.
pub struct Slot {
    registry: Arc<Registry>,
    key: Key,
    connection: u64,
    /// Cancelled when a newer connection replaces this one.
    pub replaced: CancellationToken,
}

impl Registry {
    /// Takes the slot for `key`; `None` when the policy is `Reject` and it is taken.
    pub fn claim(
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
            replaced,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
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
