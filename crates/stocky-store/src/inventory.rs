//! Inventory per site (seed 003 `inventory`): a `stock` row is one site's inventory of one
//! product — `on_hand` (the ledger sum, kept materialised), `min_stock`, `max_stock` and
//! `updated_at` — and the low-stock alert a change raises.
//!
//! Invariants: thresholds never change `on_hand` (setting them writes no movement); a
//! `stock:low` event is raised in the same transaction as the change that crossed below
//! `min_stock` (from "at or above" to "below"), once per crossing, never for a level that
//! was already low.

use serde_json::{json, Value};
use stocky_core::stock::{ProductId, Thresholds};
use stocky_core::time::iso8601;

use crate::sql::{args, Conn, DbError, Row};
use crate::{unavailable, Reads, StoreError, SubmitError};

/// The event raised when a product's level crosses below its `minStock`.
pub const STOCK_LOW: &str = "stock:low";
/// The event of a thresholds change.
pub const THRESHOLDS_EVENT: &str = "inventory:thresholds";

/// A site's inventory of one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryLevel {
    pub site_id: String,
    pub product_id: ProductId,
    pub quantity: i64,
    pub min_stock: Option<i64>,
    pub max_stock: Option<i64>,
    /// `None`: the product never had a row at this site.
    pub last_updated_at: Option<i64>,
}

impl InventoryLevel {
    pub fn is_low(&self) -> bool {
        self.min_stock.is_some_and(|min| self.quantity < min)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "siteId": self.site_id,
            "productId": self.product_id,
            "quantity": self.quantity,
            "minStock": self.min_stock,
            "maxStock": self.max_stock,
            "low": self.is_low(),
            "lastUpdatedAt": self.last_updated_at.map(iso8601),
        })
    }
}

/// A level before and after a change, with the threshold in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LevelChange {
    pub site: String,
    pub product: ProductId,
    pub before: i64,
    pub after: i64,
    pub min_stock: Option<i64>,
}

impl LevelChange {
    fn crossed_low(&self) -> bool {
        self.min_stock
            .is_some_and(|min| self.before >= min && self.after < min)
    }
}

/// The `stock:low` events for the changes that crossed below their minimum: one per site,
/// as `(site, data)`.
pub(crate) fn low_stock_alerts(changes: &[LevelChange]) -> Vec<(String, String)> {
    let mut by_site: std::collections::BTreeMap<&str, Vec<Value>> = Default::default();
    for c in changes.iter().filter(|c| c.crossed_low()) {
        by_site.entry(&c.site).or_default().push(json!({
            "productId": c.product,
            "stock": c.after,
            "minStock": c.min_stock,
        }));
    }
    by_site
        .into_iter()
        .map(|(site, products)| {
            let data = json!({"siteId": site, "products": products}).to_string();
            (site.to_owned(), data)
        })
        .collect()
}

fn level(site: &str, product: ProductId, row: Option<Row>) -> Result<InventoryLevel, DbError> {
    Ok(match row {
        Some(r) => InventoryLevel {
            site_id: site.to_owned(),
            product_id: product,
            quantity: r.int(0)?,
            min_stock: r.opt_int(1)?,
            max_stock: r.opt_int(2)?,
            last_updated_at: Some(r.int(3)?),
        },
        None => InventoryLevel {
            site_id: site.to_owned(),
            product_id: product,
            quantity: 0,
            min_stock: None,
            max_stock: None,
            last_updated_at: None,
        },
    })
}

fn load(
    conn: &mut dyn Conn,
    tenant: &str,
    site: &str,
    product: ProductId,
) -> Result<InventoryLevel, DbError> {
    let row = conn.query_opt(
        "SELECT on_hand, min_stock, max_stock, updated_at FROM stock
         WHERE tenant_id = $1 AND site_id = $2 AND product_id = $3",
        args![tenant, site, product],
    )?;
    level(site, product, row)
}

/// Sets a product's thresholds at `site` (writer only); a product without a row gets one
/// at 0 (its ledger is empty). Returns the level before and after.
pub(crate) fn set_thresholds(
    conn: &mut dyn Conn,
    tenant: &str,
    site: &str,
    t: &Thresholds,
    event_id: u64,
    now: i64,
) -> Result<(InventoryLevel, InventoryLevel), SubmitError> {
    let before = load(conn, tenant, site, t.product_id).map_err(unavailable)?;
    conn.execute(
        "INSERT INTO stock (tenant_id, site_id, product_id, on_hand, updated_at, last_event_id,
            min_stock, max_stock)
         VALUES ($1, $2, $3, 0, $4, $5, $6, $7)
         ON CONFLICT (tenant_id, site_id, product_id) DO UPDATE SET
            min_stock = excluded.min_stock, max_stock = excluded.max_stock,
            updated_at = excluded.updated_at, last_event_id = excluded.last_event_id",
        args![
            tenant,
            site,
            t.product_id,
            now,
            event_id as i64,
            t.min_stock,
            t.max_stock
        ],
    )
    .map_err(unavailable)?;
    let after = InventoryLevel {
        min_stock: t.min_stock,
        max_stock: t.max_stock,
        last_updated_at: Some(now),
        ..before.clone()
    };
    Ok((before, after))
}

impl Reads<'_> {
    /// One product's inventory at `site` (quantity 0 and no thresholds when it has none).
    pub fn inventory_level(
        &mut self,
        tenant: &str,
        site: &str,
        product: ProductId,
    ) -> Result<InventoryLevel, StoreError> {
        Ok(load(self.0, tenant, site, product)?)
    }

    /// Every product's inventory at `site`, by product id; `low_only`: those below their
    /// minimum.
    pub fn inventory(
        &mut self,
        tenant: &str,
        site: &str,
        low_only: bool,
    ) -> Result<Vec<InventoryLevel>, StoreError> {
        let rows = self.0.query(
            &format!(
                "SELECT on_hand, min_stock, max_stock, updated_at, product_id FROM stock
                 WHERE tenant_id = $1 AND site_id = $2 {} ORDER BY product_id",
                if low_only {
                    "AND min_stock IS NOT NULL AND on_hand < min_stock"
                } else {
                    ""
                }
            ),
            args![tenant, site],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let product = r.int(4)?;
            out.push(level(site, product, Some(r))?);
        }
        Ok(out)
    }
}
