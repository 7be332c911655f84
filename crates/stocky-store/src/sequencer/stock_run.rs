//! Stock commands (seed 000's update, add, subtract, sync), staged a run at a time: the
//! writer's hot path. A run is the consecutive stock commands of a batch, of any tenants.
//! It costs a few statements in all: one read of the stock levels and one of the
//! idempotency keys it names, then one multi-row insert per table (movements, stock,
//! events, applied keys). Statement count, not row count, is what a PostgreSQL writer pays
//! for (a round trip each); on SQLite it saves the per-command savepoint and statements.
//!
//! Invariants (the same outcome as staging each command alone):
//! - Each command is validated against the stock the commands before it in the run left (an
//!   in-memory view of the levels, read once inside the write transaction, whose tenants'
//!   stream rows are locked). A refused command uses no id and writes nothing.
//! - Ids are consecutive per tenant, in the run's order: a command's own event first, then
//!   the low-stock alerts it set off.
//! - An idempotency key applied before — in the database or earlier in the run — answers
//!   as a duplicate of its event (or an idempotency conflict for another command).
//! - A run has no savepoint of its own (on SQLite a savepoint journals every page it
//!   touches; on PostgreSQL it costs two round trips). If one of its writes fails, the
//!   writer rolls the whole transaction back and stages the batch again with each command
//!   in its own savepoint ([`Writer::stage_stock_alone`]), so a database-side failure never
//!   leaves part of a command behind.

use std::collections::HashMap;
use std::sync::Arc;

use stocky_core::protocol::stock_event_data;
use stocky_core::stock::{plan, Movement, Rejection, StockCommand};

use super::{scoped_op_key, Audit, Heads, Raised, Staged, Writer};
use crate::inventory::{self, LevelChange, STOCK_LOW};
use crate::sql::{args, placeholder_rows, statement_chunks, Arg, Conn, DbError};
use crate::SubmitError;
use crate::{unavailable, Applied, Command, CommittedEvent, Origin, Outcome, StoredEvent};

/// A product's stock at a site of a tenant.
type LevelKey = (Arc<str>, Arc<str>, i64);

/// What the run knows of a product's stock: read from the database, then as its commands
/// leave it.
#[derive(Clone, Copy)]
struct Level {
    /// `None`: the product has no stock record (yet).
    on_hand: Option<i64>,
    min_stock: Option<i64>,
    /// The event that last changed it in this run, if one did.
    changed_by: Option<u64>,
}

/// An idempotency key of a tenant, as `applied_ops` records it (scoped).
type KeyOf = (Arc<str>, String);

/// What a key was used for: the event id and the command's fingerprint, and the event
/// itself when it was used earlier in this run (not in the database yet).
struct UsedKey {
    id: u64,
    fingerprint: Option<String>,
    original: Option<StoredEvent>,
}

/// One ledger row to insert.
struct MovementRow<'a> {
    origin: &'a Origin,
    kind: &'static str,
    product_id: i64,
    delta: i64,
    event_id: u64,
}

/// What a run writes, gathered while its commands are staged.
#[derive(Default)]
struct Writes<'a> {
    movements: Vec<MovementRow<'a>>,
    events: Vec<CommittedEvent>,
    keys: Vec<(Arc<str>, String, u64, String)>,
}

impl Writer {
    /// Stages one stock command in its own savepoint: a database error rolls it back (and
    /// restores `heads` and the batch's audit entries) and answers it `Unavailable`.
    pub(super) fn stage_stock_alone(
        &mut self,
        command: &Command,
        origin: &Origin,
        now: i64,
        heads: &mut Heads,
    ) -> Staged {
        let before = heads.clone();
        let audited = self.audit.len();
        let staged = self.conn.batch("SAVEPOINT stock_command").and_then(|()| {
            let mut staged = self.stage_stock_run(&[(command, origin)], now, heads)?;
            self.conn.batch("RELEASE SAVEPOINT stock_command")?;
            Ok(staged.pop().expect("one outcome per command"))
        });
        match staged {
            Ok(staged) => staged,
            Err(e) => {
                let _ = self
                    .conn
                    .batch("ROLLBACK TO SAVEPOINT stock_command; RELEASE SAVEPOINT stock_command");
                *heads = before;
                self.audit.truncate(audited);
                Staged::Done(Err(unavailable(e)))
            }
        }
    }

    /// Stages `run` (stock commands only) with no savepoint of its own: a database error
    /// leaves the transaction holding part of the run, and the caller rolls it back.
    pub(super) fn stage_stock_run(
        &mut self,
        run: &[(&Command, &Origin)],
        now: i64,
        heads: &mut Heads,
    ) -> Result<Vec<Staged>, DbError> {
        let mut used = self.used_keys(run)?;
        let mut levels = self.levels(run)?;
        let mut writes = Writes::default();
        let mut staged = Vec::with_capacity(run.len());
        for &(command, origin) in run {
            let Command::Stock(stock) = command else {
                staged.push(Staged::Done(Err(SubmitError::Unavailable(
                    "not a stock command".into(),
                ))));
                continue;
            };
            staged.push(self.stage_one(
                command,
                stock,
                origin,
                now,
                heads,
                &mut used,
                &mut levels,
                &mut writes,
            )?);
        }
        write_movements(&mut *self.conn, &writes.movements, now)?;
        write_levels(&mut *self.conn, &levels, now)?;
        super::insert_events(&mut *self.conn, &writes.events)?;
        super::insert_applied_keys(&mut *self.conn, &writes.keys, now)?;
        Ok(staged)
    }

    /// One command of the run: refused, a duplicate, or applied to `levels` with its rows
    /// added to `writes`.
    #[allow(clippy::too_many_arguments)]
    fn stage_one<'a>(
        &mut self,
        command: &Command,
        stock: &StockCommand,
        origin: &'a Origin,
        now: i64,
        heads: &mut Heads,
        used: &mut HashMap<KeyOf, UsedKey>,
        levels: &mut HashMap<LevelKey, Level>,
        writes: &mut Writes<'a>,
    ) -> Result<Staged, DbError> {
        let Some((epoch, head)) = heads.get(&origin.tenant).cloned() else {
            return Ok(Staged::Done(Err(SubmitError::Unavailable(format!(
                "tenant {:?} has no event stream",
                origin.tenant
            )))));
        };
        let op_key = super::op_key(origin, command);
        if let Some((key, print)) = &op_key {
            if let Some(known) = used.get(&(origin.tenant.clone(), key.clone())) {
                if known.fingerprint.as_ref().is_some_and(|f| f != print) {
                    return Ok(Staged::Done(Err(SubmitError::Rejected(
                        Rejection::IdempotencyConflict {
                            op_id: origin.op_id.clone().unwrap_or_default(),
                        },
                    ))));
                }
                let id = known.id;
                let original = match &known.original {
                    Some(event) => Some(event.clone()),
                    None => self.logged_event(&origin.tenant, id)?,
                };
                return Ok(Staged::Done(Ok(Applied::Duplicate {
                    id,
                    epoch,
                    original,
                })));
            }
        }

        let id = head + 1;
        let (movements, changes) = match self.plan_in_run(stock, origin, levels)? {
            Ok(planned) => planned,
            Err(refused) => return Ok(Staged::Done(Err(refused))),
        };
        for m in &movements {
            let level = levels
                .get_mut(&(origin.tenant.clone(), origin.site.clone(), m.product_id))
                .expect("planned products have a level");
            level.on_hand = Some(m.after);
            level.changed_by = Some(id);
        }
        let kind = stock.op.kind();
        writes
            .movements
            .extend(movements.iter().map(|m| MovementRow {
                origin,
                kind,
                product_id: m.product_id,
                delta: m.delta,
                event_id: id,
            }));

        let mut raised = vec![Raised {
            name: Arc::from(stock.op.event_name()),
            site: origin.site.clone(),
            data: stock_event_data(stock.op, &movements),
        }];
        for (site, data) in inventory::low_stock_alerts(&changes) {
            raised.push(Raised {
                name: Arc::from(STOCK_LOW),
                site: Arc::from(site.as_str()),
                data,
            });
        }
        let events = super::number_events(origin, &epoch, id, now, raised);
        let entity = (movements.len() == 1).then(|| movements[0].product_id.to_string());
        let audit = Audit {
            entity_type: "stock",
            entity_id: entity,
            before: None,
            client_time: None,
        };
        self.push_audits(origin, vec![audit], &events, now);
        if let Some((key, print)) = op_key {
            let main = &events[0];
            used.insert(
                (origin.tenant.clone(), key.clone()),
                UsedKey {
                    id,
                    fingerprint: Some(print.clone()),
                    original: Some(StoredEvent {
                        id,
                        site: main.site.to_string(),
                        event: main.event.to_string(),
                        data: main.data.to_string(),
                        client_id: main.client_id.to_string(),
                        created_at: now,
                        op_id: main.op_id.clone(),
                    }),
                },
            );
            writes.keys.push((origin.tenant.clone(), key, id, print));
        }
        let last = id + events.len() as u64 - 1;
        heads.insert(origin.tenant.clone(), (epoch, last));
        writes.events.extend(events.iter().cloned());
        Ok(Staged::New {
            events,
            outcome: Outcome::Stock(movements),
        })
    }

    /// Validates `stock` (the custom validator, then the built-in rules) against the run's
    /// view of the levels; the movements and the low-stock crossings they make, or why the
    /// command is refused. A validator may look at products the run has not read: those are
    /// read now and join the view.
    #[allow(clippy::type_complexity)]
    fn plan_in_run(
        &mut self,
        stock: &StockCommand,
        origin: &Origin,
        levels: &mut HashMap<LevelKey, Level>,
    ) -> Result<Result<(Vec<Movement>, Vec<LevelChange>), SubmitError>, DbError> {
        let Writer {
            conn, validator, ..
        } = self;
        let mut read_error = None;
        let mut view = |product: i64| -> Option<i64> {
            let key = (origin.tenant.clone(), origin.site.clone(), product);
            if let Some(level) = levels.get(&key) {
                return level.on_hand;
            }
            let found = conn.query_opt(
                "SELECT on_hand, min_stock FROM stock
                 WHERE tenant_id = $1 AND site_id = $2 AND product_id = $3",
                args![&*origin.tenant, &*origin.site, product],
            );
            let level = match found.and_then(|row| {
                row.map(|r| Ok::<_, DbError>((r.int(0)?, r.opt_int(1)?)))
                    .transpose()
            }) {
                Ok(row) => Level {
                    on_hand: row.map(|(on_hand, _)| on_hand),
                    min_stock: row.and_then(|(_, min)| min),
                    changed_by: None,
                },
                Err(e) => {
                    read_error.get_or_insert(e);
                    return None;
                }
            };
            levels.insert(key, level);
            level.on_hand
        };
        if let Some(validator) = validator {
            if let Err(reason) = validator.validate(stock, &mut view) {
                return match read_error {
                    Some(e) => Err(e),
                    None => Ok(Err(SubmitError::Rejected(Rejection::Custom(reason)))),
                };
            }
        }
        let planned = plan(stock, &mut view);
        if let Some(e) = read_error {
            return Err(e);
        }
        let movements = match planned {
            Ok(movements) => movements,
            Err(rejection) => return Ok(Err(SubmitError::Rejected(rejection))),
        };
        // Low-stock crossings, only for products with a minimum (most have none): from the
        // level before this command to the one it leaves.
        let mut changes = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for m in &movements {
            if !seen.insert(m.product_id) {
                continue;
            }
            let key = (origin.tenant.clone(), origin.site.clone(), m.product_id);
            let level = levels.get(&key).copied();
            if let Some(min) = level.and_then(|l| l.min_stock) {
                let after = movements
                    .iter()
                    .rev()
                    .find(|later| later.product_id == m.product_id)
                    .map_or(m.after, |later| later.after);
                changes.push(LevelChange {
                    site: origin.site.to_string(),
                    product: m.product_id,
                    before: level.and_then(|l| l.on_hand).unwrap_or(0),
                    after,
                    min_stock: Some(min),
                });
            }
        }
        Ok(Ok((movements, changes)))
    }

    /// The stock levels the run's commands name, read in one statement per tenant and site
    /// ([`Conn::any`]); a product without a record is there as `None`.
    fn levels(&mut self, run: &[(&Command, &Origin)]) -> Result<HashMap<LevelKey, Level>, DbError> {
        let mut wanted: HashMap<(Arc<str>, Arc<str>), std::collections::BTreeSet<i64>> =
            HashMap::new();
        for (command, origin) in run {
            if let Command::Stock(stock) = command {
                wanted
                    .entry((origin.tenant.clone(), origin.site.clone()))
                    .or_default()
                    .extend(stock.lines.iter().map(|l| l.product_id));
            }
        }
        let mut levels = HashMap::new();
        for ((tenant, site), products) in wanted {
            let products: Vec<i64> = products.into_iter().collect();
            for &product in &products {
                levels.insert(
                    (tenant.clone(), site.clone(), product),
                    Level {
                        on_hand: None,
                        min_stock: None,
                        changed_by: None,
                    },
                );
            }
            let sql = format!(
                "SELECT product_id, on_hand, min_stock FROM stock
                 WHERE tenant_id = $1 AND site_id = $2 AND product_id {}",
                self.conn.any(3)
            );
            let params = [Arg::Text(&tenant), Arg::Text(&site), Arg::Ints(&products)];
            for row in self.conn.query(&sql, &params)? {
                let level = levels
                    .get_mut(&(tenant.clone(), site.clone(), row.int(0)?))
                    .expect("only asked-for products come back");
                level.on_hand = Some(row.int(1)?);
                level.min_stock = row.opt_int(2)?;
            }
        }
        Ok(levels)
    }

    /// The run's idempotency keys that were applied before, read in one statement per
    /// tenant (and per [`statement_chunks`] keys).
    fn used_keys(
        &mut self,
        run: &[(&Command, &Origin)],
    ) -> Result<HashMap<KeyOf, UsedKey>, DbError> {
        let mut wanted: HashMap<Arc<str>, Vec<String>> = HashMap::new();
        for (_, origin) in run {
            if let Some(op_id) = &origin.op_id {
                wanted
                    .entry(origin.tenant.clone())
                    .or_default()
                    .push(scoped_op_key(&origin.op_scope, op_id));
            }
        }
        let mut used = HashMap::new();
        for (tenant, mut keys) in wanted {
            keys.sort_unstable();
            keys.dedup();
            for chunk in statement_chunks(&keys) {
                let sql = format!(
                    "SELECT op_id, event_id, fingerprint FROM applied_ops
                     WHERE tenant_id = $1 AND op_id IN {}",
                    placeholder_rows(2, 1, chunk.len())
                );
                let mut params = vec![Arg::Text(&tenant)];
                params.extend(chunk.iter().map(|k| Arg::Text(k)));
                for mut row in self.conn.query(&sql, &params)? {
                    let key = row.text(0)?;
                    let known = UsedKey {
                        id: row.int(1)? as u64,
                        fingerprint: row.opt_text(2)?,
                        original: None,
                    };
                    used.insert((tenant.clone(), key), known);
                }
            }
        }
        Ok(used)
    }
}

/// The run's ledger rows ([`Conn::insert_rows`]).
fn write_movements(conn: &mut dyn Conn, rows: &[MovementRow<'_>], now: i64) -> Result<(), DbError> {
    let ids: Vec<String> = rows
        .iter()
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let mut values = Vec::with_capacity(rows.len() * 11);
    for (row, id) in rows.iter().zip(&ids) {
        let origin = row.origin;
        values.extend_from_slice(args![
            id,
            &*origin.tenant,
            &*origin.site,
            row.product_id,
            row.delta,
            row.kind,
            &*origin.client_id,
            origin.op_id.as_deref(),
            row.event_id as i64,
            now,
            origin.user.as_deref()
        ]);
    }
    conn.insert_rows(
        "INSERT INTO movements (id, tenant_id, site_id, product_id, delta, kind,
            origin_client, origin_op, event_id, server_time, user_id)",
        "",
        11,
        &values,
    )
}

/// The levels the run changed, one upsert row each (PostgreSQL refuses to upsert one row
/// twice in a statement).
fn write_levels(
    conn: &mut dyn Conn,
    levels: &HashMap<LevelKey, Level>,
    now: i64,
) -> Result<(), DbError> {
    let mut values = Vec::new();
    for ((tenant, site, product), level) in levels {
        if let (Some(on_hand), Some(event_id)) = (level.on_hand, level.changed_by) {
            values.extend_from_slice(args![
                &**tenant,
                &**site,
                *product,
                on_hand,
                now,
                event_id as i64
            ]);
        }
    }
    conn.insert_rows(
        "INSERT INTO stock (tenant_id, site_id, product_id, on_hand, updated_at, last_event_id)",
        "ON CONFLICT (tenant_id, site_id, product_id) DO UPDATE SET
            on_hand = excluded.on_hand, updated_at = excluded.updated_at,
            last_event_id = excluded.last_event_id",
        6,
        &values,
    )
}
