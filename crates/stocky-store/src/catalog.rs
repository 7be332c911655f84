//! The product catalog at rest: the `products` table, one row per product and tenant, keyed
//! by seed 000's numeric `productId`.
//!
//! Invariants:
//! - a product's `version` only grows; every local change is `version + 1` and a revision
//!   from the other tier is taken only when it wins by `stocky_core::catalog::Revision`
//!   (higher version, then later `lastModifiedAt`), with its own version and times, so both
//!   tiers end with the same revision;
//! - a delete keeps a tombstone (`deleted_at`), so it syncs and a later write continues
//!   the version;
//! - `event_id` is the event of the last change: the order changes are pulled in.

use stocky_core::catalog::{
    Product, ProductFields, ProductInvalid, ProductWrite, PRODUCT_CREATED, PRODUCT_DELETED,
    PRODUCT_UPDATED,
};
use stocky_core::stock::{ProductId, Rejection};

use crate::sql::{args, Arg, Conn, DbError, Row};
use crate::{unavailable, Reads, StoreError, SubmitError};

/// One product a catalog write changed.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductChange {
    pub before: Option<Product>,
    pub after: Product,
}

impl ProductChange {
    /// `product:created`, `product:updated` or `product:deleted`.
    pub fn event(&self) -> &'static str {
        match (&self.before, self.after.deleted) {
            (_, true) => PRODUCT_DELETED,
            (None, false) => PRODUCT_CREATED,
            (Some(b), false) if b.deleted => PRODUCT_CREATED,
            (Some(_), false) => PRODUCT_UPDATED,
        }
    }
}

const COLUMNS: &str = "id, sku, name, category, price, cost, barcode, metadata, version,
    last_modified_at, last_modified_by, created_at, updated_at, deleted_at";

fn product(row: &mut Row) -> Result<Product, DbError> {
    Ok(Product {
        id: row.int(0)?,
        fields: ProductFields {
            sku: row.opt_text(1)?,
            name: row.text(2)?,
            category: row.opt_text(3)?,
            price: row.int(4)?,
            cost: row.opt_int(5)?,
            barcode: row.opt_text(6)?,
            metadata: row.opt_text(7)?,
        },
        version: row.int(8)?,
        last_modified_at: row.int(9)?,
        last_modified_by: row.opt_text(10)?,
        created_at: row.int(11)?,
        updated_at: row.int(12)?,
        deleted: row.opt_int(13)?.is_some(),
    })
}

fn load(conn: &mut dyn Conn, tenant: &str, id: ProductId) -> Result<Option<Product>, DbError> {
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM products WHERE tenant_id = $1 AND id = $2"),
        args![tenant, id],
    )?
    .map(|mut r| product(&mut r))
    .transpose()
}

fn store(
    conn: &mut dyn Conn,
    tenant: &str,
    p: &Product,
    event_id: u64,
    via: &str,
) -> Result<(), DbError> {
    let f = &p.fields;
    let deleted_at = p.deleted.then_some(p.updated_at);
    conn.execute(
        "INSERT INTO products (tenant_id, id, sku, name, category, price, cost, barcode, metadata,
            version, last_modified_at, last_modified_by, created_at, updated_at, deleted_at, event_id,
            modified_via)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         ON CONFLICT (tenant_id, id) DO UPDATE SET sku = excluded.sku, name = excluded.name,
            category = excluded.category, price = excluded.price, cost = excluded.cost,
            barcode = excluded.barcode, metadata = excluded.metadata, version = excluded.version,
            last_modified_at = excluded.last_modified_at,
            last_modified_by = excluded.last_modified_by, updated_at = excluded.updated_at,
            deleted_at = excluded.deleted_at, event_id = excluded.event_id,
            modified_via = excluded.modified_via",
        args![
            tenant,
            p.id,
            &f.sku,
            &f.name,
            &f.category,
            f.price,
            f.cost,
            &f.barcode,
            &f.metadata,
            p.version,
            p.last_modified_at,
            &p.last_modified_by,
            p.created_at,
            p.updated_at,
            deleted_at,
            event_id as i64,
            via
        ],
    )?;
    Ok(())
}

fn refused(code: &'static str, message: String, conflict: bool) -> SubmitError {
    SubmitError::Rejected(Rejection::Refused {
        code,
        message,
        conflict,
    })
}

fn check_version(
    id: ProductId,
    expected: Option<i64>,
    stored: Option<&Product>,
) -> Result<(), SubmitError> {
    match expected {
        Some(expected) if stored.map(|p| p.version) != Some(expected) => {
            Err(SubmitError::Rejected(Rejection::VersionConflict {
                id: id.to_string(),
                expected,
                actual: stored.map(|p| p.version),
            }))
        }
        _ => Ok(()),
    }
}

/// Runs a catalog write (writer only, inside the command's savepoint); returns the
/// products it changed (none: nothing to do).
/// `by`: who edits (a local change's `lastModifiedBy`); `via`: the client it came through.
pub(crate) fn apply(
    conn: &mut dyn Conn,
    tenant: &str,
    write: &ProductWrite,
    by: &str,
    via: &str,
    event_id: u64,
    now: i64,
) -> Result<Vec<ProductChange>, SubmitError> {
    let local = |before: Option<Product>, id: ProductId, fields: ProductFields, deleted: bool| {
        let after = Product {
            id,
            fields,
            version: before.as_ref().map_or(1, |b| b.version + 1),
            last_modified_at: now,
            last_modified_by: Some(by.to_owned()),
            created_at: before
                .as_ref()
                .filter(|b| !b.deleted)
                .map_or(now, |b| b.created_at),
            updated_at: now,
            deleted,
        };
        ProductChange { before, after }
    };
    let changes = match write {
        ProductWrite::Put {
            id,
            fields,
            if_version,
            create_only,
        } => {
            let id = match id {
                Some(id) => *id,
                None => conn
                    .query_one(
                        "SELECT COALESCE(MAX(id), 0) + 1 FROM products WHERE tenant_id = $1",
                        args![tenant],
                    )
                    .and_then(|r| r.int(0))
                    .map_err(unavailable)?,
            };
            let before = load(conn, tenant, id).map_err(unavailable)?;
            if *create_only && before.as_ref().is_some_and(|b| !b.deleted) {
                return Err(refused(
                    "product_exists",
                    format!("product {id} exists; PUT /api/products/{id} changes it"),
                    true,
                ));
            }
            check_version(id, *if_version, before.as_ref())?;
            if before
                .as_ref()
                .is_some_and(|b| !b.deleted && &b.fields == fields)
            {
                return Ok(Vec::new());
            }
            vec![local(before, id, fields.clone(), false)]
        }
        ProductWrite::Patch {
            id,
            fields,
            if_version,
        } => {
            let before = load(conn, tenant, *id).map_err(unavailable)?;
            let Some(current) = before.as_ref().filter(|b| !b.deleted) else {
                return Err(SubmitError::Rejected(Rejection::NotFound {
                    what: format!("product {id}"),
                }));
            };
            check_version(*id, *if_version, before.as_ref())?;
            let merged = ProductFields::parse(fields, Some(&current.fields)).map_err(invalid)?;
            if merged == current.fields {
                return Ok(Vec::new());
            }
            vec![local(before, *id, merged, false)]
        }
        ProductWrite::Delete { id, if_version } => {
            let before = load(conn, tenant, *id).map_err(unavailable)?;
            let Some(current) = before.as_ref().filter(|b| !b.deleted) else {
                return Err(SubmitError::Rejected(Rejection::NotFound {
                    what: format!("product {id}"),
                }));
            };
            check_version(*id, *if_version, before.as_ref())?;
            let fields = current.fields.clone();
            vec![local(before, *id, fields, true)]
        }
        ProductWrite::Merge(revisions) => {
            let mut changes = Vec::new();
            for incoming in revisions {
                let before = load(conn, tenant, incoming.id).map_err(unavailable)?;
                let wins = before
                    .as_ref()
                    .is_none_or(|b| incoming.revision().wins_over(b.revision()));
                if wins {
                    changes.push(ProductChange {
                        before,
                        after: incoming.clone(),
                    });
                }
            }
            changes
        }
    };
    for change in &changes {
        store(conn, tenant, &change.after, event_id, via).map_err(unavailable)?;
    }
    Ok(changes)
}

fn invalid(e: ProductInvalid) -> SubmitError {
    refused(e.code, e.message, false)
}

/// `GET /api/products` filters.
#[derive(Debug, Clone, Default)]
pub struct ProductFilter {
    /// Exact SKU.
    pub sku: Option<String>,
    /// Exact barcode.
    pub barcode: Option<String>,
    /// Part of the name, SKU or barcode, case-insensitive (ASCII).
    pub q: Option<String>,
    pub category: Option<String>,
    /// Ids after this one (paging).
    pub after: Option<ProductId>,
    pub limit: usize,
    /// Include tombstones.
    pub deleted: bool,
}

impl Reads<'_> {
    pub fn product(&mut self, tenant: &str, id: ProductId) -> Result<Option<Product>, StoreError> {
        Ok(load(self.0, tenant, id)?)
    }

    /// Products by id, filtered.
    pub fn products(
        &mut self,
        tenant: &str,
        filter: &ProductFilter,
    ) -> Result<Vec<Product>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM products WHERE tenant_id = $1");
        let mut params: Vec<Arg<'_>> = vec![Arg::Text(tenant)];
        if !filter.deleted {
            sql += " AND deleted_at IS NULL";
        }
        if let Some(sku) = &filter.sku {
            params.push(Arg::Text(sku));
            sql += &format!(" AND sku = ${}", params.len());
        }
        if let Some(barcode) = &filter.barcode {
            params.push(Arg::Text(barcode));
            sql += &format!(" AND barcode = ${}", params.len());
        }
        if let Some(category) = &filter.category {
            params.push(Arg::Text(category));
            sql += &format!(" AND category = ${}", params.len());
        }
        let pattern;
        if let Some(q) = &filter.q {
            let escaped: String = q
                .to_lowercase()
                .chars()
                .flat_map(|c| match c {
                    '%' | '_' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            pattern = format!("%{escaped}%");
            params.push(Arg::Text(&pattern));
            let n = params.len();
            sql += &format!(
                " AND (lower(name) LIKE ${n} ESCAPE '\\' OR lower(COALESCE(sku, '')) LIKE ${n} ESCAPE '\\'
                   OR COALESCE(barcode, '') LIKE ${n} ESCAPE '\\')"
            );
        }
        if let Some(after) = filter.after {
            params.push(Arg::Int(after));
            sql += &format!(" AND id > ${}", params.len());
        }
        sql += &format!(" ORDER BY id LIMIT {}", filter.limit.clamp(1, 1000));
        let rows = self.0.query(&sql, &params)?;
        Ok(rows
            .into_iter()
            .map(|mut r| product(&mut r))
            .collect::<Result<_, _>>()?)
    }

    /// Catalog changes after the cursor `(event_id, id)` (tombstones included), in that
    /// order, leaving out those that came through `skip_via` (what the other side sent
    /// us): for sync. Each comes with its cursor's event id.
    pub fn products_after(
        &mut self,
        tenant: &str,
        after: (u64, ProductId),
        skip_via: &str,
        limit: usize,
    ) -> Result<Vec<(u64, Product)>, StoreError> {
        let rows = self.0.query(
            &format!(
                "SELECT {COLUMNS}, event_id FROM products WHERE tenant_id = $1
                   AND (event_id > $2 OR (event_id = $2 AND id > $3))
                   AND (modified_via IS NULL OR modified_via <> $4)
                 ORDER BY event_id, id LIMIT {}",
                limit.clamp(1, 10_000)
            ),
            args![tenant, after.0 as i64, after.1, skip_via],
        )?;
        Ok(rows
            .into_iter()
            .map(|mut r| Ok((r.int(14)? as u64, product(&mut r)?)))
            .collect::<Result<_, DbError>>()?)
    }
}
