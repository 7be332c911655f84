//! The tables of the sync between tiers, through [`SyncTables`] (on the store's account
//! connection pool, beside the writer):
//!
//! - at the hub, one-time **activation codes** for store nodes: only a digest of the code is
//!   kept; redeeming one registers the device and creates its credential in the same
//!   transaction that marks the code used, so a code works once;
//! - at an edge, the **outbox** is the local ledger itself: every movement not brought down
//!   from upstream is an operation to push, read in `(event_id, id)` order after a cursor
//!   kept in `sync_state` (so nothing is written twice to queue it, and a change and its
//!   outbox entry are one transaction by construction); refused operations go to
//!   `quarantine`.

use stocky_core::stock::LedgerEntry;

use crate::sql::{args, in_tx, Conn, DbError, Row, TxMode};
use crate::{accounts, Account, StoreError};

/// `origin_client` of movements brought down from upstream: never pushed back.
pub const UPSTREAM_ORIGIN: &str = "upstream";

/// The sync tables, on one pooled connection.
pub struct SyncTables<'c>(pub(crate) &'c mut dyn Conn);

/// What redeeming an activation code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// The device and its credential were created: the code's tenant and site.
    Activated {
        tenant: String,
        site: String,
    },
    Unknown,
    Used,
    Expired,
    Revoked,
}

/// A position in the ledger's `(event_id, id)` order: everything up to the movement `id`
/// of event `event_id`; an empty `id` means every movement of `event_id` (so
/// `(head, "")` is "all of the log up to `head`", and the default is the start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxCursor {
    pub event_id: u64,
    pub id: String,
}

/// One operation waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub entry: LedgerEntry,
    pub cursor: OutboxCursor,
}

/// The columns [`ledger_entry`] reads, in its order (0–10).
const MOVEMENT_COLUMNS: &str = "id, site_id, product_id, delta, kind, reason, origin_client,
    origin_op, server_time, client_time, user_id";

/// A movement from [`MOVEMENT_COLUMNS`].
fn ledger_entry(r: &mut Row) -> Result<LedgerEntry, DbError> {
    Ok(LedgerEntry {
        id: r.text(0)?,
        site: r.text(1)?,
        product_id: r.int(2)?,
        delta: r.int(3)?,
        kind: r.text(4)?,
        reason: r.opt_text(5)?,
        origin_client: r.opt_text(6)?,
        origin_op: r.opt_text(7)?,
        server_time: r.int(8)?,
        client_time: r.opt_int(9)?,
        user_id: r.opt_text(10)?,
    })
}

/// Movements with their position, from [`ledger_entry`]'s columns plus `event_id` (11).
fn pending_rows(rows: Vec<Row>) -> Result<Vec<Pending>, StoreError> {
    rows.into_iter()
        .map(|mut r| {
            let entry = ledger_entry(&mut r)?;
            let cursor = OutboxCursor {
                event_id: r.int(11)? as u64,
                id: entry.id.clone(),
            };
            Ok(Pending { entry, cursor })
        })
        .collect::<Result<_, DbError>>()
        .map_err(StoreError::from)
}

impl SyncTables<'_> {
    /// Writes the audit entry of a change made just before on this connection.
    pub fn audit(&mut self, entry: &crate::audit::AccountAudit) -> Result<(), StoreError> {
        Ok(entry.write(self.0, stocky_core::time::now_millis())?)
    }

    /// Stores a new code's digest for `site`, valid until `expires_at`. A code that is
    /// still live with the same digest is a conflict (draw another); a dead one (used,
    /// revoked or expired) is replaced.
    pub fn create_activation_code(
        &mut self,
        code_hash: &str,
        tenant: &str,
        site: &str,
        created_by: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        in_tx(self.0, TxMode::Plain, |tx| -> Result<(), StoreError> {
            if !accounts::site_exists(tx, tenant, site)? {
                return Err(StoreError::NotFound(format!("site {site:?}")));
            }
            let live = tx
                .query_opt(
                    "SELECT 1 FROM activation_codes WHERE code_hash = $1
                     AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
                    args![code_hash, now],
                )?
                .is_some();
            if live {
                return Err(StoreError::Conflict("activation code in use".into()));
            }
            tx.execute(
                "DELETE FROM activation_codes WHERE code_hash = $1",
                args![code_hash],
            )?;
            tx.execute(
                "INSERT INTO activation_codes (code_hash, tenant_id, site_id, created_by,
                    created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
                args![code_hash, tenant, site, created_by, now, expires_at],
            )?;
            Ok(())
        })
    }

    /// Revokes a live code of `tenant`'s `site`; `false` when there is none.
    pub fn revoke_activation_code(
        &mut self,
        tenant: &str,
        site: &str,
        code_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let changed = self.0.execute(
            "UPDATE activation_codes SET revoked_at = $4 WHERE code_hash = $1 AND tenant_id = $2
             AND site_id = $3 AND used_at IS NULL AND revoked_at IS NULL",
            args![code_hash, tenant, site, now],
        )?;
        Ok(changed > 0)
    }

    /// Redeems a code: checks it, registers device `device_id` (named `device_name`) at
    /// the code's site and creates its API key (`key`: the account, its name and the key's
    /// digest; the account's tenant and site are taken from the code), then marks the code
    /// used — all in one transaction.
    pub fn redeem_activation_code(
        &mut self,
        code_hash: &str,
        now: i64,
        device_id: &str,
        device_name: &str,
        key: (&Account, &str, &str),
    ) -> Result<Redeemed, StoreError> {
        in_tx(
            self.0,
            TxMode::Plain,
            |tx| -> Result<Redeemed, StoreError> {
                let Some(mut row) = tx.query_opt(
                    "SELECT tenant_id, site_id, expires_at, used_at, revoked_at
                 FROM activation_codes WHERE code_hash = $1",
                    args![code_hash],
                )?
                else {
                    return Ok(Redeemed::Unknown);
                };
                let (tenant, site) = (row.text(0)?, row.text(1)?);
                if row.opt_int(4)?.is_some() {
                    return Ok(Redeemed::Revoked);
                }
                if row.opt_int(3)?.is_some() {
                    return Ok(Redeemed::Used);
                }
                if row.int(2)? <= now {
                    return Ok(Redeemed::Expired);
                }
                accounts::create_device(tx, &tenant, device_id, &site, device_name)?;
                let (account, key_name, key_hash) = key;
                let account = Account {
                    tenant: tenant.clone(),
                    site: Some(site.clone()),
                    ..account.clone()
                };
                accounts::create_api_key(tx, &account, key_name, key_hash)?;
                accounts::bind_key_to_device(tx, &account.id, device_id)?;
                tx.execute(
                    "UPDATE activation_codes SET used_at = $2, device_id = $3 WHERE code_hash = $1",
                    args![code_hash, now, device_id],
                )?;
                Ok(Redeemed::Activated { tenant, site })
            },
        )
    }

    /// A value of `sync_state`.
    pub fn state(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        match self
            .0
            .query_opt("SELECT value FROM sync_state WHERE key = $1", args![key])?
        {
            Some(mut row) => Ok(Some(row.text(0)?)),
            None => Ok(None),
        }
    }

    pub fn set_state(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT INTO sync_state (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            args![key, value],
        )?;
        Ok(())
    }

    /// Up to `limit` operations of `tenant` after `after`, oldest first (movements brought
    /// down from upstream excluded): the edge's outbox.
    pub fn outbox(
        &mut self,
        tenant: &str,
        after: &OutboxCursor,
        limit: usize,
    ) -> Result<Vec<Pending>, StoreError> {
        self.movements_after(tenant, None, after, limit, Some(UPSTREAM_ORIGIN))
    }

    /// Up to `limit` ledger movements of `tenant` (of `site` only, when given) after
    /// `after` in `(event_id, id)` order, leaving out those whose origin is `skip_origin`
    /// and those that change nothing (a set to the level there already was).
    /// The ledger is append-only, so a cursor never misses or repeats a movement.
    pub fn movements_after(
        &mut self,
        tenant: &str,
        site: Option<&str>,
        after: &OutboxCursor,
        limit: usize,
        skip_origin: Option<&str>,
    ) -> Result<Vec<Pending>, StoreError> {
        let rows = self.0.query(
            &format!(
                "SELECT {MOVEMENT_COLUMNS}, event_id FROM movements
             WHERE tenant_id = $1 AND event_id >= $2
               AND (event_id > $2 OR ($3 <> '' AND id > $3))
               AND ($4 = '' OR site_id = $4)
               AND ($5 = '' OR origin_client IS NULL OR origin_client <> $5)
               AND delta <> 0
             ORDER BY event_id, id LIMIT $6"
            ),
            args![
                tenant,
                after.event_id as i64,
                after.id.as_str(),
                site.unwrap_or(""),
                skip_origin.unwrap_or(""),
                limit as i64
            ],
        )?;
        pending_rows(rows)
    }

    /// A product's movements at `site`, newest first: up to `limit` before `before` (the
    /// `(event_id, id)` of the last one of the previous page; none = from the newest).
    pub fn product_history(
        &mut self,
        tenant: &str,
        site: &str,
        product_id: i64,
        before: Option<&OutboxCursor>,
        limit: usize,
    ) -> Result<Vec<Pending>, StoreError> {
        let (event, id) = before.map_or((i64::MAX, String::new()), |c| {
            (c.event_id as i64, c.id.clone())
        });
        let rows = self.0.query(
            &crate::bulk_index::history_sql(&format!("{MOVEMENT_COLUMNS}, event_id")),
            args![tenant, site, product_id, event, id.as_str(), limit as i64],
        )?;
        pending_rows(rows)
    }

    /// Every movement of `tenant` of kind `kind`, in ledger order.
    pub fn movements_of_kind(
        &mut self,
        tenant: &str,
        kind: &str,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows = self.0.query(
            &format!(
                "SELECT {MOVEMENT_COLUMNS} FROM movements WHERE tenant_id = $1 AND kind = $2
                 ORDER BY event_id, id"
            ),
            args![tenant, kind],
        )?;
        rows.into_iter()
            .map(|mut r| ledger_entry(&mut r))
            .collect::<Result<_, DbError>>()
            .map_err(StoreError::from)
    }

    /// How many operations wait after `after`, and the server time of the oldest.
    pub fn outbox_depth(
        &mut self,
        tenant: &str,
        after: &OutboxCursor,
    ) -> Result<(u64, Option<i64>), StoreError> {
        let row = self.0.query_one(
            "SELECT COUNT(*), MIN(server_time) FROM movements
             WHERE tenant_id = $1 AND event_id >= $2
               AND (event_id > $2 OR ($3 <> '' AND id > $3))
               AND (origin_client IS NULL OR origin_client <> $4) AND delta <> 0",
            args![
                tenant,
                after.event_id as i64,
                after.id.as_str(),
                UPSTREAM_ORIGIN
            ],
        )?;
        Ok((row.int(0)? as u64, row.opt_int(1)?))
    }

    /// Puts an operation the upstream refused aside, with its reason.
    pub fn quarantine(
        &mut self,
        op_id: &str,
        operation: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT INTO quarantine (op_id, operation, reason, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (op_id) DO UPDATE SET reason = excluded.reason",
            args![op_id, operation, reason, now],
        )?;
        Ok(())
    }

    /// Takes an operation out of the quarantine; `false` when it is not there.
    pub fn release(&mut self, op_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .0
            .execute("DELETE FROM quarantine WHERE op_id = $1", args![op_id])?
            > 0)
    }

    /// The quarantine: `(op_id, operation JSON, reason, created_at)`, oldest first.
    pub fn quarantined(&mut self) -> Result<Vec<(String, String, String, i64)>, StoreError> {
        let rows = self.0.query(
            "SELECT op_id, operation, reason, created_at FROM quarantine ORDER BY created_at, op_id",
            args![],
        )?;
        rows.into_iter()
            .map(|mut r| Ok((r.text(0)?, r.text(1)?, r.text(2)?, r.int(3)?)))
            .collect::<Result<_, DbError>>()
            .map_err(StoreError::from)
    }
}
