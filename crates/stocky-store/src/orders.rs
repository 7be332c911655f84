//! Seed 004 at rest: orders with their daily numbers, a site's menu and configuration
//! (`site_data`), and customers with per-field stamps.
//!
//! Invariants:
//! - a daily number is drawn from `order_numbers` (per tenant, site and business day) in
//!   the same transaction that stores the order with it: numbers of a day are 1, 2, 3, …
//!   with no gap and no reuse, across restarts; an order that has a number keeps it;
//! - an order created twice (same id, or same channel and external id) is stored once;
//! - a site's menu or configuration is replaced whole, in one transaction;
//! - customers merge field by field (`stocky_core::customers`), so both tiers converge.

use serde_json::{json, Value};
use stocky_core::customers::{Customer, CUSTOMER_UPDATED};
use stocky_core::orders::{
    BusinessClock, Order, OrderCommand, OrderStatus, ORDER_CREATED, ORDER_NEW, ORDER_UPDATED,
};
use stocky_core::stock::Rejection;
use stocky_core::sync_rules::Side;

use crate::sql::{args, Arg, Conn, DbError, Row};
use crate::{unavailable, Reads, StoreError, SubmitError};

/// What an order command did, and the events it raises as `(name, site, data)`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderDone {
    pub before: Option<Order>,
    pub after: Order,
    pub events: Vec<(&'static str, String, String)>,
}

/// A site's data replaced whole by its store (seed 004: local → remote).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteDataKind {
    /// Categories → subcategories → products → variants, modifiers, …
    Menu,
    /// RestaurantConfig, BusinessHours (and the business clock: `timezone`,
    /// `businessDayStart`).
    Config,
}

impl SiteDataKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SiteDataKind::Menu => "menu",
            SiteDataKind::Config => "config",
        }
    }

    pub fn event(self) -> &'static str {
        match self {
            SiteDataKind::Menu => "menu:updated",
            SiteDataKind::Config => "config:updated",
        }
    }
}

const COLUMNS: &str = "id, site_id, channel, external_id, daily_number, business_day, status,
    customer, address, lines, notes, version, created_at, updated_at";

fn order(r: &mut Row) -> Result<Order, DbError> {
    let status = r.text(6)?;
    Ok(Order {
        id: r.text(0)?,
        site_id: r.text(1)?,
        channel: r.opt_text(2)?,
        external_id: r.opt_text(3)?,
        daily_number: r.opt_int(4)?,
        business_day: r.opt_text(5)?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| DbError::other(format!("order status {status:?}")))?,
        customer: r.opt_text(7)?,
        address: r.opt_text(8)?,
        lines: r.text(9)?,
        notes: r.opt_text(10)?,
        version: r.int(11)?,
        created_at: r.int(12)?,
        updated_at: r.int(13)?,
    })
}

fn load(conn: &mut dyn Conn, tenant: &str, id: &str) -> Result<Option<Order>, DbError> {
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM orders WHERE tenant_id = $1 AND id = $2"),
        args![tenant, id],
    )?
    .map(|mut r| order(&mut r))
    .transpose()
}

fn by_external(conn: &mut dyn Conn, tenant: &str, o: &Order) -> Result<Option<Order>, DbError> {
    let (Some(channel), Some(external)) = (&o.channel, &o.external_id) else {
        return Ok(None);
    };
    conn.query_opt(
        &format!(
            "SELECT {COLUMNS} FROM orders WHERE tenant_id = $1 AND site_id = $2 AND channel = $3
             AND external_id = $4"
        ),
        args![tenant, &o.site_id, channel, external],
    )?
    .map(|mut r| order(&mut r))
    .transpose()
}

fn store(
    conn: &mut dyn Conn,
    tenant: &str,
    o: &Order,
    event_id: u64,
    via: &str,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO orders (tenant_id, id, site_id, channel, external_id, daily_number,
            business_day, status, customer, address, lines, notes, version, created_at,
            updated_at, event_id, modified_via)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         ON CONFLICT (tenant_id, id) DO UPDATE SET daily_number = excluded.daily_number,
            business_day = excluded.business_day, status = excluded.status,
            notes = excluded.notes, version = excluded.version,
            updated_at = excluded.updated_at, event_id = excluded.event_id,
            modified_via = excluded.modified_via",
        args![
            tenant,
            &o.id,
            &o.site_id,
            &o.channel,
            &o.external_id,
            o.daily_number,
            &o.business_day,
            o.status.as_str(),
            &o.customer,
            &o.address,
            &o.lines,
            &o.notes,
            o.version,
            o.created_at,
            o.updated_at,
            event_id as i64,
            via
        ],
    )?;
    Ok(())
}

/// The business clock of `site` from its stored configuration (UTC midnight without one).
fn clock(conn: &mut dyn Conn, tenant: &str, site: &str) -> Result<BusinessClock, SubmitError> {
    let config = site_data(conn, tenant, site, SiteDataKind::Config).map_err(unavailable)?;
    let config = config.and_then(|(body, _, _)| serde_json::from_str::<Value>(&body).ok());
    Ok(match config.map(|c| BusinessClock::from_config(&c)) {
        Some(Ok(clock)) => clock,
        Some(Err(e)) => {
            tracing::warn!(site, reason = %e, "numbering orders by UTC days");
            BusinessClock::default()
        }
        None => BusinessClock::default(),
    })
}

/// The next number of `day` at `site`.
fn next_number(conn: &mut dyn Conn, tenant: &str, site: &str, day: &str) -> Result<i64, DbError> {
    conn.query_one(
        "INSERT INTO order_numbers (tenant_id, site_id, business_day, last_number)
         VALUES ($1, $2, $3, 1)
         ON CONFLICT (tenant_id, site_id, business_day)
         DO UPDATE SET last_number = order_numbers.last_number + 1
         RETURNING last_number",
        args![tenant, site, day],
    )?
    .int(0)
}

fn refused(code: &'static str, message: String) -> SubmitError {
    SubmitError::Rejected(Rejection::Refused {
        code,
        message,
        conflict: true,
    })
}

/// Runs an order command (writer only, in the command's savepoint). `Ok(None)`: nothing
/// to do (a repeat).
pub(crate) fn apply(
    conn: &mut dyn Conn,
    tenant: &str,
    command: &OrderCommand,
    via: &str,
    event_id: u64,
    now: i64,
) -> Result<Option<OrderDone>, SubmitError> {
    let before = load(conn, tenant, command.id()).map_err(unavailable)?;
    let data = |o: &Order| o.to_json().to_string();
    let updated = |o: &Order| vec![(ORDER_UPDATED, o.site_id.clone(), data(o))];
    let (after, events) = match command {
        OrderCommand::Create(o) => {
            if before.as_ref().is_some_and(|b| b.site_id != o.site_id) {
                return Err(refused(
                    "order_id_conflict",
                    format!("order id {} is taken", o.id),
                ));
            }
            if before.is_some() || by_external(conn, tenant, o).map_err(unavailable)?.is_some() {
                return Ok(None);
            }
            let new = json!({"orderId": o.id, "siteId": o.site_id}).to_string();
            let events = vec![
                (ORDER_CREATED, o.site_id.clone(), data(o)),
                (ORDER_NEW, o.site_id.clone(), new),
            ];
            ((**o).clone(), events)
        }
        OrderCommand::Arrive(o) => {
            if before.as_ref().is_some_and(|b| b.daily_number.is_some()) {
                return Ok(None);
            }
            let mut o = (**o).clone();
            let day = clock(conn, tenant, &o.site_id)?.day_of(o.created_at);
            o.daily_number =
                Some(next_number(conn, tenant, &o.site_id, &day).map_err(unavailable)?);
            o.business_day = Some(day);
            let events = vec![(ORDER_CREATED, o.site_id.clone(), data(&o))];
            (o, events)
        }
        OrderCommand::Confirm {
            id,
            daily_number,
            business_day,
        } => {
            let Some(mut o) = before.clone() else {
                return Err(SubmitError::Rejected(Rejection::NotFound {
                    what: format!("order {id}"),
                }));
            };
            match o.daily_number {
                Some(n) if n == *daily_number => return Ok(None),
                Some(n) => {
                    return Err(refused(
                        "daily_number_conflict",
                        format!("order {id} has daily number {n} already"),
                    ))
                }
                None => {}
            }
            o.daily_number = Some(*daily_number);
            o.business_day = business_day.clone();
            let events = updated(&o);
            (o, events)
        }
        OrderCommand::Update {
            id,
            status,
            notes,
            if_version,
        } => {
            let Some(mut o) = before.clone() else {
                return Err(SubmitError::Rejected(Rejection::NotFound {
                    what: format!("order {id}"),
                }));
            };
            if let Some(expected) = if_version {
                if *expected != o.version {
                    return Err(SubmitError::Rejected(Rejection::VersionConflict {
                        id: id.clone(),
                        expected: *expected,
                        actual: Some(o.version),
                    }));
                }
            }
            let unchanged = status.is_none_or(|s| s == o.status)
                && notes.as_ref().is_none_or(|n| Some(n) == o.notes.as_ref());
            if unchanged {
                return Ok(None);
            }
            if let Some(s) = status {
                o.status = *s;
            }
            if notes.is_some() {
                o.notes = notes.clone();
            }
            o.version += 1;
            o.updated_at = now;
            let events = updated(&o);
            (o, events)
        }
        OrderCommand::Merge(incoming)
            if before
                .as_ref()
                .is_some_and(|b| b.site_id != incoming.site_id) =>
        {
            return Err(refused(
                "order_site_conflict",
                format!("order {} belongs to another site", incoming.id),
            ));
        }
        OrderCommand::Merge(incoming) => match &before {
            None => {
                let o = (**incoming).clone();
                let events = vec![(ORDER_CREATED, o.site_id.clone(), data(&o))];
                (o, events)
            }
            Some(stored) => {
                let mut o = if incoming.wins_over(stored) {
                    (**incoming).clone()
                } else {
                    stored.clone()
                };
                // The number is the store's and never changes once set.
                o.daily_number = stored.daily_number.or(incoming.daily_number);
                o.business_day = stored
                    .daily_number
                    .map_or(incoming.business_day.clone(), |_| {
                        stored.business_day.clone()
                    });
                if &o == stored {
                    return Ok(None);
                }
                let events = updated(&o);
                (o, events)
            }
        },
    };
    store(conn, tenant, &after, event_id, via).map_err(unavailable)?;
    Ok(Some(OrderDone {
        before,
        after,
        events,
    }))
}

fn site_data(
    conn: &mut dyn Conn,
    tenant: &str,
    site: &str,
    kind: SiteDataKind,
) -> Result<Option<(String, i64, i64)>, DbError> {
    conn.query_opt(
        "SELECT body, version, updated_at FROM site_data
         WHERE tenant_id = $1 AND site_id = $2 AND kind = $3",
        args![tenant, site, kind.as_str()],
    )?
    .map(|mut r| Ok((r.text(0)?, r.int(1)?, r.int(2)?)))
    .transpose()
}

/// Replaces a site's menu or configuration (writer only); returns the new version, or
/// `None` when the body is the one stored.
pub(crate) fn set_site_data(
    conn: &mut dyn Conn,
    tenant: &str,
    site: &str,
    kind: SiteDataKind,
    body: &Value,
    event_id: u64,
    now: i64,
) -> Result<Option<i64>, SubmitError> {
    if kind == SiteDataKind::Config {
        // A zone Stocky cannot compute is kept (it is the store's configuration); its days
        // then start at UTC midnight (see `clock`). Anything else malformed is refused.
        match BusinessClock::from_config(body) {
            Err(e) if e.code != stocky_core::orders::UNSUPPORTED_TIMEZONE => {
                return Err(refused_invalid(e.code, e.message))
            }
            _ => {}
        }
    }
    let text = body.to_string();
    let stored = site_data(conn, tenant, site, kind).map_err(unavailable)?;
    if stored.as_ref().is_some_and(|(b, _, _)| *b == text) {
        return Ok(None);
    }
    let version = stored.map_or(1, |(_, v, _)| v + 1);
    conn.execute(
        "INSERT INTO site_data (tenant_id, site_id, kind, body, version, updated_at, event_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant_id, site_id, kind) DO UPDATE SET body = excluded.body,
            version = excluded.version, updated_at = excluded.updated_at,
            event_id = excluded.event_id",
        args![
            tenant,
            site,
            kind.as_str(),
            &text,
            version,
            now,
            event_id as i64
        ],
    )
    .map_err(unavailable)?;
    Ok(Some(version))
}

fn refused_invalid(code: &'static str, message: String) -> SubmitError {
    SubmitError::Rejected(Rejection::Refused {
        code,
        message,
        conflict: false,
    })
}

fn load_customer(conn: &mut dyn Conn, tenant: &str, id: &str) -> Result<Option<Customer>, DbError> {
    conn.query_opt(
        "SELECT body FROM customers WHERE tenant_id = $1 AND id = $2",
        args![tenant, id],
    )?
    .map(|mut r| {
        let body: Value = serde_json::from_str(&r.text(0)?)
            .map_err(|e| DbError::other(format!("a stored customer does not read: {e}")))?;
        Customer::from_json(&body, Side::Remote, 0)
            .map_err(|e| DbError::other(format!("a stored customer does not read: {e}")))
    })
    .transpose()
}

/// Merges customers (writer only): each is merged field by field into the stored one.
/// Returns the customers that changed, as they now are.
pub(crate) fn merge_customers(
    conn: &mut dyn Conn,
    tenant: &str,
    incoming: &[Customer],
    via: &str,
    event_id: u64,
) -> Result<Vec<Customer>, SubmitError> {
    let mut changed = Vec::new();
    for customer in incoming {
        let mut stored = load_customer(conn, tenant, &customer.id)
            .map_err(unavailable)?
            .unwrap_or_else(|| Customer {
                id: customer.id.clone(),
                ..Customer::default()
            });
        if !stored.merge(customer) {
            continue;
        }
        let body = stored.to_json().to_string();
        let by = match stored.modified_by() {
            Side::Local => "LOCAL",
            Side::Remote => "REMOTE",
        };
        conn.execute(
            "INSERT INTO customers (tenant_id, id, body, updated_at, modified_by, event_id, modified_via)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (tenant_id, id) DO UPDATE SET body = excluded.body,
                updated_at = excluded.updated_at, modified_by = excluded.modified_by,
                event_id = excluded.event_id, modified_via = excluded.modified_via",
            args![tenant, &stored.id, &body, stored.updated_at(), by, event_id as i64, via],
        )
        .map_err(unavailable)?;
        changed.push(stored);
    }
    Ok(changed)
}

/// The customers event's data.
pub(crate) fn customers_event(changed: &[Customer]) -> (&'static str, String) {
    let list: Vec<Value> = changed.iter().map(Customer::to_json).collect();
    (CUSTOMER_UPDATED, json!({"customers": list}).to_string())
}

/// A place in the log: an event id and a record id (records changed by one command
/// share the event).
pub type LogPosition = (u64, String);

/// `GET /api/orders` filters.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub site: Option<String>,
    pub status: Option<OrderStatus>,
    /// The business day (`YYYY-MM-DD`).
    pub day: Option<String>,
    /// Only orders without a daily number yet (seed 004's pending orders).
    pub pending: bool,
    pub limit: usize,
}

impl Reads<'_> {
    pub fn order(&mut self, tenant: &str, id: &str) -> Result<Option<Order>, StoreError> {
        Ok(load(self.0, tenant, id)?)
    }

    /// An order by its channel's id at a site.
    pub fn order_by_external(
        &mut self,
        tenant: &str,
        site: &str,
        channel: &str,
        external: &str,
    ) -> Result<Option<Order>, StoreError> {
        let probe = Order {
            site_id: site.to_owned(),
            channel: Some(channel.to_owned()),
            external_id: Some(external.to_owned()),
            ..empty_order()
        };
        Ok(by_external(self.0, tenant, &probe)?)
    }

    /// Orders, oldest first for pending ones, else by daily number then creation.
    pub fn orders(&mut self, tenant: &str, filter: &OrderFilter) -> Result<Vec<Order>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM orders WHERE tenant_id = $1");
        let mut params: Vec<Arg<'_>> = vec![Arg::Text(tenant)];
        if let Some(site) = &filter.site {
            params.push(Arg::Text(site));
            sql += &format!(" AND site_id = ${}", params.len());
        }
        if let Some(status) = filter.status {
            params.push(Arg::Text(status.as_str()));
            sql += &format!(" AND status = ${}", params.len());
        }
        if let Some(day) = &filter.day {
            params.push(Arg::Text(day));
            sql += &format!(" AND business_day = ${}", params.len());
        }
        if filter.pending {
            sql += " AND daily_number IS NULL AND status <> 'cancelled'";
        }
        // Numbered orders by day and number, then the unnumbered by arrival (the same on
        // both engines: a boolean key, not NULL ordering).
        sql += &format!(
            " ORDER BY daily_number IS NULL, business_day, daily_number, created_at, id LIMIT {}",
            filter.limit.clamp(1, 1000)
        );
        let rows = self.0.query(&sql, &params)?;
        Ok(rows
            .into_iter()
            .map(|mut r| order(&mut r))
            .collect::<Result<_, _>>()?)
    }

    /// Numbered orders of `site` changed after `event_id` (not through `skip_via`), oldest
    /// change first, with their change's event id: what sync hands to the other tier.
    pub fn orders_after(
        &mut self,
        tenant: &str,
        site: &str,
        event_id: u64,
        skip_via: &str,
        limit: usize,
    ) -> Result<Vec<(u64, Order)>, StoreError> {
        let rows = self.0.query(
            &format!(
                "SELECT {COLUMNS}, event_id FROM orders WHERE tenant_id = $1 AND site_id = $2
                   AND event_id > $3 AND daily_number IS NOT NULL
                   AND (modified_via IS NULL OR modified_via <> $4)
                 ORDER BY event_id, id LIMIT {}",
                limit.clamp(1, 10_000)
            ),
            args![tenant, site, event_id as i64, skip_via],
        )?;
        Ok(rows
            .into_iter()
            .map(|mut r| Ok((r.int(14)? as u64, order(&mut r)?)))
            .collect::<Result<_, DbError>>()?)
    }

    /// A site's menu or configuration: `(body, version, updated_at)`.
    pub fn site_data(
        &mut self,
        tenant: &str,
        site: &str,
        kind: SiteDataKind,
    ) -> Result<Option<(Value, i64, i64)>, StoreError> {
        Ok(
            site_data(self.0, tenant, site, kind)?.map(|(body, version, at)| {
                (
                    serde_json::from_str(&body).unwrap_or(Value::Null),
                    version,
                    at,
                )
            }),
        )
    }

    pub fn customer(&mut self, tenant: &str, id: &str) -> Result<Option<Customer>, StoreError> {
        Ok(load_customer(self.0, tenant, id)?)
    }

    /// Customers whose last field write is after `since` (ms), oldest first, leaving out
    /// those last changed through `skip_via`.
    pub fn customers_since(
        &mut self,
        tenant: &str,
        since: i64,
        skip_via: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Customer>, StoreError> {
        let rows = self.0.query(
            &format!(
                "SELECT body FROM customers WHERE tenant_id = $1 AND updated_at > $2
                   AND (modified_via IS NULL OR modified_via <> $3)
                 ORDER BY updated_at, id LIMIT {}",
                limit.clamp(1, 10_000)
            ),
            args![tenant, since, skip_via.unwrap_or("")],
        )?;
        rows.into_iter()
            .map(|mut r| {
                let body: Value = serde_json::from_str(&r.text(0)?)
                    .map_err(|e| StoreError::Schema(format!("a stored customer: {e}")))?;
                Customer::from_json(&body, Side::Remote, 0)
                    .map_err(|e| StoreError::Schema(format!("a stored customer: {e}")))
            })
            .collect()
    }

    /// Customers changed after the log position `(event_id, id)`, in log order, each with
    /// its position: the order a store follows the hub's changes in (a write that arrives
    /// late with an older stamp is not missed).
    pub fn customers_after(
        &mut self,
        tenant: &str,
        after: (u64, &str),
        limit: usize,
    ) -> Result<Vec<(LogPosition, Customer)>, StoreError> {
        let rows = self.0.query(
            &format!(
                "SELECT body, event_id, id FROM customers WHERE tenant_id = $1
                   AND (event_id > $2 OR (event_id = $2 AND id > $3))
                 ORDER BY event_id, id LIMIT {}",
                limit.clamp(1, 10_000)
            ),
            args![tenant, after.0 as i64, after.1],
        )?;
        rows.into_iter()
            .map(|mut r| {
                let body: Value = serde_json::from_str(&r.text(0)?)
                    .map_err(|e| StoreError::Schema(format!("a stored customer: {e}")))?;
                let customer = Customer::from_json(&body, Side::Remote, 0)
                    .map_err(|e| StoreError::Schema(format!("a stored customer: {e}")))?;
                Ok(((r.int(1)? as u64, r.text(2)?), customer))
            })
            .collect()
    }

    /// How many orders of `site` wait for a daily number, and when the last sync round of
    /// the site was (seed 004's status).
    pub fn pending_orders(&mut self, tenant: &str, site: &str) -> Result<u64, StoreError> {
        Ok(self
            .0
            .query_one(
                "SELECT COUNT(*) FROM orders WHERE tenant_id = $1 AND site_id = $2
                   AND daily_number IS NULL AND status <> 'cancelled'",
                args![tenant, site],
            )?
            .int(0)? as u64)
    }
}

fn empty_order() -> Order {
    Order {
        id: String::new(),
        site_id: String::new(),
        channel: None,
        external_id: None,
        daily_number: None,
        business_day: None,
        status: OrderStatus::Pending,
        customer: None,
        address: None,
        lines: "[]".into(),
        notes: None,
        version: 1,
        created_at: 0,
        updated_at: 0,
    }
}
