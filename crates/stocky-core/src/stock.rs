//! Stock commands (seed 000) and the rules that turn them into ledger movements.
//!
//! Validation happens in seed 000's three levels:
//! 1. **format** — the message is JSON with a known `event` ([`StockOp::from_event`]),
//! 2. **types** — [`StockCommand::parse`]: a non-empty array of `{productId, stock|quantity}`
//!    with positive integer ids and non-negative (absolute) or positive (relative) integers,
//! 3. **business** — [`plan`]: against the current on-hand quantities, inside the writer's
//!    transaction, plus an optional [`BusinessValidator`] (seed 000's `setValidator`).
//!
//! Invariant: a command is all-or-nothing. [`plan`] either returns one movement per line or
//! a [`Rejection`]; the caller writes all of them or none.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

/// Product identifier as seed 000 sends it: a positive JSON integer.
pub type ProductId = i64;

/// Largest quantity or stock level accepted (keeps every sum far from `i64` overflow and
/// exactly representable as a JavaScript number).
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;
/// Whether `delta` is a movement size the ledger accepts: at most [`MAX_AMOUNT`] either
/// way. Checked without `abs`, which wraps on `i64::MIN`.
pub fn delta_in_range(delta: i64) -> bool {
    delta.checked_abs().is_some_and(|size| size <= MAX_AMOUNT)
}

/// Largest product id accepted (JavaScript's `Number.MAX_SAFE_INTEGER`).
pub const MAX_PRODUCT_ID: i64 = 9_007_199_254_740_991;
/// Most lines one command may carry; larger batches must be split by the client.
pub const MAX_LINES: usize = 1000;

/// The four stock operations of seed 000.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StockOp {
    /// `stock:update` — set absolute stock.
    Update,
    /// `stock:add` — increase stock.
    Add,
    /// `stock:subtract` — decrease stock; never below zero.
    Subtract,
    /// `stock:sync` — full synchronisation: set absolute stock of every listed product.
    Sync,
}

impl StockOp {
    pub const ALL: [StockOp; 4] = [
        StockOp::Update,
        StockOp::Add,
        StockOp::Subtract,
        StockOp::Sync,
    ];

    /// The WebSocket event name (`stock:update`, ...).
    pub fn event_name(self) -> &'static str {
        match self {
            StockOp::Update => "stock:update",
            StockOp::Add => "stock:add",
            StockOp::Subtract => "stock:subtract",
            StockOp::Sync => "stock:sync",
        }
    }

    /// Parses a WebSocket event name; `None` for anything that is not a stock command.
    pub fn from_event(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.event_name() == name)
    }

    /// The ledger's movement kind (`update`, `add`, `subtract`, `sync`).
    pub fn kind(self) -> &'static str {
        &self.event_name()[6..]
    }

    /// The array field of seed 000's REST body (`updates`, `additions`, ...).
    pub fn rest_field(self) -> &'static str {
        match self {
            StockOp::Update => "updates",
            StockOp::Add => "additions",
            StockOp::Subtract => "subtractions",
            StockOp::Sync => "stockData",
        }
    }

    /// The JSON Schema of seed 000's REST body (`{"updates": [{"productId", "stock"}]}`,
    /// ...), from the limits [`StockCommand::parse`] enforces.
    pub fn rest_body_schema(self) -> schemars::Schema {
        let amount = self.amount_field();
        let line = serde_json::json!({
            "type": "object",
            "required": ["productId", amount],
            "properties": {
                "productId": {"type": "integer", "minimum": 1, "maximum": MAX_PRODUCT_ID},
                amount: {
                    "type": "integer",
                    "minimum": if self.is_absolute() { 0 } else { 1 },
                    "maximum": MAX_AMOUNT,
                },
            },
        });
        let field = self.rest_field();
        let body = serde_json::json!({
            "type": "object",
            "required": [field],
            "properties": {
                field: {"type": "array", "minItems": 1, "maxItems": MAX_LINES, "items": line},
            },
        });
        schemars::Schema::try_from(body).expect("an object is a schema")
    }

    /// Whether the amount is an absolute stock level (`stock`) or a delta (`quantity`).
    pub fn is_absolute(self) -> bool {
        matches!(self, StockOp::Update | StockOp::Sync)
    }

    /// The field that carries the amount in each line (`stock` or `quantity`).
    pub fn amount_field(self) -> &'static str {
        if self.is_absolute() {
            "stock"
        } else {
            "quantity"
        }
    }
}

impl fmt::Display for StockOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.event_name())
    }
}

/// One line of a command: a product and its absolute stock or delta quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StockLine {
    pub product_id: ProductId,
    /// `stock` for absolute operations, `quantity` for relative ones.
    pub amount: i64,
}

/// A type-checked stock command, ready for business validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockCommand {
    pub op: StockOp,
    pub lines: Vec<StockLine>,
}

/// A level-2 (types) validation failure; the message names the offending field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidCommand(pub String);

impl StockCommand {
    /// The lines as seed 000 writes them: `[{"productId", "stock" | "quantity"}]` — what
    /// [`StockCommand::parse`] reads back.
    pub fn lines_json(&self) -> Value {
        let amount = self.op.amount_field();
        Value::Array(
            self.lines
                .iter()
                .map(|line| {
                    let mut obj = serde_json::Map::with_capacity(2);
                    obj.insert("productId".into(), line.product_id.into());
                    obj.insert(amount.into(), line.amount.into());
                    Value::Object(obj)
                })
                .collect(),
        )
    }

    /// The REST body of this command: `{"<rest field>": [lines]}` (e.g. `additions`).
    pub fn rest_body(&self) -> Value {
        let mut obj = serde_json::Map::with_capacity(1);
        obj.insert(self.op.rest_field().into(), self.lines_json());
        Value::Object(obj)
    }

    /// Type-checks seed 000's `data` array for `op` (`field` names it in messages, e.g.
    /// `data` on WebSocket, `updates` on REST). Extra fields in a line are ignored.
    pub fn parse(op: StockOp, field: &str, data: Option<&Value>) -> Result<Self, InvalidCommand> {
        let fail = |msg: String| Err(InvalidCommand(msg));
        let items = match data {
            None | Some(Value::Null) => {
                return fail(format!("{field} is required (an array of lines)"))
            }
            Some(Value::Array(items)) => items,
            Some(other) => {
                return fail(format!(
                    "{field} must be an array, got {}",
                    type_name(other)
                ))
            }
        };
        if items.is_empty() {
            return fail(format!("{field} must not be empty"));
        }
        if items.len() > MAX_LINES {
            return fail(format!(
                "{field} has {} lines; at most {MAX_LINES} per command",
                items.len()
            ));
        }
        let amount_field = op.amount_field();
        let mut lines = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Value::Object(obj) = item else {
                return fail(format!(
                    "{field}[{i}] must be an object, got {}",
                    type_name(item)
                ));
            };
            let product_id = integer(obj.get("productId"), 1, MAX_PRODUCT_ID)
                .map_err(|why| InvalidCommand(format!("{field}[{i}].productId {why}")))?;
            let min = if op.is_absolute() { 0 } else { 1 };
            let amount = integer(obj.get(amount_field), min, MAX_AMOUNT)
                .map_err(|why| InvalidCommand(format!("{field}[{i}].{amount_field} {why}")))?;
            lines.push(StockLine { product_id, amount });
        }
        Ok(StockCommand { op, lines })
    }
}

fn integer(value: Option<&Value>, min: i64, max: i64) -> Result<i64, String> {
    let kind = if min > 0 {
        "a positive integer"
    } else {
        "a non-negative integer"
    };
    match value {
        None => Err(format!("is required ({kind})")),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if (min..=max).contains(&v) => Ok(v),
            Some(v) if v < min => Err(format!("must be {kind}, got {v}")),
            Some(v) => Err(format!("must be at most {max}, got {v}")),
            None => Err(format!("must be {kind}, got {n}")),
        },
        Some(other) => Err(format!("must be {kind}, got {}", type_name(other))),
    }
}

/// JSON type names as a JavaScript developer would say them.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The effect of one command line on one product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Movement {
    pub product_id: ProductId,
    /// The line's amount as sent (absolute stock or quantity).
    pub amount: i64,
    /// Signed change to on-hand stock; the ledger records exactly this.
    pub delta: i64,
    /// On-hand stock before the line, `None` if the product had no stock record.
    pub before: Option<i64>,
    /// On-hand stock after the line.
    pub after: i64,
}

/// Why a well-formed command was refused by a business rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Seed 000: subtracting more than is on hand.
    #[error("Stock insuficiente. Actual: {available}, Solicitado: {requested}")]
    InsufficientStock {
        product_id: ProductId,
        available: i64,
        requested: i64,
    },
    /// Seed 000: subtracting from a product that has no stock record.
    #[error("Producto {product_id} no encontrado")]
    UnknownProduct { product_id: ProductId },
    /// The sum would leave the accepted range.
    #[error("Stock of product {product_id} would exceed {MAX_AMOUNT}")]
    Overflow { product_id: ProductId },
    /// A custom [`BusinessValidator`] refused the command.
    #[error("{0}")]
    Custom(String),
    /// A document write's version precondition (`If-Match`, `version`) does not hold.
    #[error("version conflict on record {id:?}: expected version {expected}, current is {}", actual.map_or("absent".to_string(), |v| v.to_string()))]
    VersionConflict {
        id: String,
        expected: i64,
        actual: Option<i64>,
    },
    /// The record (or database) a write needs does not exist.
    #[error("{what} not found")]
    NotFound { what: String },
    /// An idempotency key (`opId`, `Idempotency-Key`) already used by this caller for a
    /// different command.
    #[error("idempotency key {op_id:?} was already used for a different command")]
    IdempotencyConflict { op_id: String },
    /// A domain rule of sales or the catalog refused the write (`code` names it);
    /// `conflict` when it clashes with what is stored (409) rather than being invalid (422).
    #[error("{message}")]
    Refused {
        code: &'static str,
        message: String,
        conflict: bool,
    },
}

impl Rejection {
    /// Stable machine code for clients and HTTP errors.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::InsufficientStock { .. } => "insufficient_stock",
            Rejection::UnknownProduct { .. } => "product_not_found",
            Rejection::Overflow { .. } => "stock_overflow",
            Rejection::Custom(_) => "rejected_by_validator",
            Rejection::VersionConflict { .. } => "version_conflict",
            Rejection::NotFound { .. } => "not_found",
            Rejection::IdempotencyConflict { .. } => "idempotency_key_reused",
            Rejection::Refused { code, .. } => code,
        }
    }

    /// The product the rejection is about, when there is one.
    pub fn product_id(&self) -> Option<ProductId> {
        match self {
            Rejection::InsufficientStock { product_id, .. }
            | Rejection::UnknownProduct { product_id }
            | Rejection::Overflow { product_id } => Some(*product_id),
            Rejection::Custom(_)
            | Rejection::VersionConflict { .. }
            | Rejection::NotFound { .. }
            | Rejection::IdempotencyConflict { .. }
            | Rejection::Refused { .. } => None,
        }
    }
}

/// Read access to current on-hand stock, as the writer sees it inside its transaction.
pub trait StockView {
    /// On-hand stock of `product`, `None` when the product has no stock record.
    fn on_hand(&mut self, product: ProductId) -> Option<i64>;
}

impl<F: FnMut(ProductId) -> Option<i64>> StockView for F {
    fn on_hand(&mut self, product: ProductId) -> Option<i64> {
        self(product)
    }
}

/// Seed 000's `setValidator`: custom business rules run by the writer before a command is
/// applied, against the stock it sees. Must be fast and must not block: it runs on the
/// single writer, inside the transaction. `Err(reason)` refuses the whole command.
pub trait BusinessValidator: Send + Sync + 'static {
    fn validate(&self, command: &StockCommand, stock: &mut dyn StockView) -> Result<(), String>;
}

/// Applies the built-in business rules to `command` against `view`, line by line, as if the
/// lines ran in order (a product may appear twice). Returns one movement per line, or the
/// first rejection. Never partially applies anything: the caller writes all or nothing.
pub fn plan(command: &StockCommand, view: &mut dyn StockView) -> Result<Vec<Movement>, Rejection> {
    let mut pending: HashMap<ProductId, i64> = HashMap::new();
    let mut movements = Vec::with_capacity(command.lines.len());
    for line in &command.lines {
        let product_id = line.product_id;
        let before = match pending.get(&product_id) {
            Some(v) => Some(*v),
            None => view.on_hand(product_id),
        };
        let after = match command.op {
            StockOp::Update | StockOp::Sync => line.amount,
            StockOp::Add => before.unwrap_or(0) + line.amount,
            StockOp::Subtract => {
                let available = before.ok_or(Rejection::UnknownProduct { product_id })?;
                if available < line.amount {
                    return Err(Rejection::InsufficientStock {
                        product_id,
                        available,
                        requested: line.amount,
                    });
                }
                available - line.amount
            }
        };
        if after > MAX_AMOUNT {
            return Err(Rejection::Overflow { product_id });
        }
        pending.insert(product_id, after);
        movements.push(Movement {
            product_id,
            amount: line.amount,
            delta: after - before.unwrap_or(0),
            before,
            after,
        });
    }
    Ok(movements)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(op: StockOp, data: Value) -> Result<StockCommand, InvalidCommand> {
        StockCommand::parse(op, "data", Some(&data))
    }

    #[test]
    fn parses_seed_payloads() {
        let cmd = parse(
            StockOp::Update,
            json!([{"productId":1,"stock":100},{"productId":2,"stock":50}]),
        )
        .unwrap();
        assert_eq!(
            cmd.lines,
            vec![
                StockLine {
                    product_id: 1,
                    amount: 100
                },
                StockLine {
                    product_id: 2,
                    amount: 50
                }
            ]
        );
        let cmd = parse(
            StockOp::Add,
            json!([{"productId":1,"quantity":25,"name":"extra ok"}]),
        )
        .unwrap();
        assert_eq!(cmd.lines[0].amount, 25);
    }

    #[test]
    fn type_errors_name_the_problem() {
        let cases = [
            (StockOp::Add, json!([]), "data must not be empty"),
            (
                StockOp::Add,
                json!({"productId":1}),
                "data must be an array, got object",
            ),
            (
                StockOp::Add,
                json!([{"productId":1,"quantity":0}]),
                "data[0].quantity must be a positive integer, got 0",
            ),
            (
                StockOp::Add,
                json!([{"productId":1,"quantity":-2}]),
                "data[0].quantity must be a positive integer, got -2",
            ),
            (
                StockOp::Add,
                json!([{"productId":1,"quantity":1.5}]),
                "data[0].quantity must be a positive integer, got 1.5",
            ),
            (
                StockOp::Add,
                json!([{"productId":"1","quantity":1}]),
                "data[0].productId must be a positive integer, got string",
            ),
            (
                StockOp::Update,
                json!([{"productId":1}]),
                "data[0].stock is required (a non-negative integer)",
            ),
            (
                StockOp::Update,
                json!([{"productId":1,"stock":-1}]),
                "data[0].stock must be a non-negative integer, got -1",
            ),
            (
                StockOp::Sync,
                json!([1]),
                "data[0] must be an object, got number",
            ),
        ];
        for (op, data, want) in cases {
            assert_eq!(parse(op, data).unwrap_err().0, want);
        }
        assert!(parse(StockOp::Update, json!([{"productId":1,"stock":0}])).is_ok());
        assert_eq!(
            StockCommand::parse(StockOp::Add, "additions", None)
                .unwrap_err()
                .0,
            "additions is required (an array of lines)"
        );
    }

    fn stock_of(pairs: &[(ProductId, i64)]) -> impl FnMut(ProductId) -> Option<i64> + '_ {
        move |p| pairs.iter().find(|(id, _)| *id == p).map(|(_, s)| *s)
    }

    #[test]
    fn subtract_below_zero_is_refused_with_both_numbers() {
        let cmd = parse(StockOp::Subtract, json!([{"productId":1,"quantity":15}])).unwrap();
        let err = plan(&cmd, &mut stock_of(&[(1, 10)])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Stock insuficiente. Actual: 10, Solicitado: 15"
        );
        let err = plan(&cmd, &mut stock_of(&[])).unwrap_err();
        assert_eq!(err.to_string(), "Producto 1 no encontrado");
    }

    #[test]
    fn repeated_products_see_earlier_lines() {
        let cmd = parse(
            StockOp::Subtract,
            json!([{"productId":1,"quantity":6},{"productId":1,"quantity":6}]),
        )
        .unwrap();
        let err = plan(&cmd, &mut stock_of(&[(1, 10)])).unwrap_err();
        assert_eq!(
            err,
            Rejection::InsufficientStock {
                product_id: 1,
                available: 4,
                requested: 6
            }
        );
    }

    #[test]
    fn absolute_sets_become_deltas_and_create_products() {
        let cmd = parse(
            StockOp::Update,
            json!([{"productId":1,"stock":7},{"productId":9,"stock":3}]),
        )
        .unwrap();
        let m = plan(&cmd, &mut stock_of(&[(1, 10)])).unwrap();
        assert_eq!((m[0].delta, m[0].after, m[0].before), (-3, 7, Some(10)));
        assert_eq!((m[1].delta, m[1].after, m[1].before), (3, 3, None));
        let add = parse(StockOp::Add, json!([{"productId":5,"quantity":4}])).unwrap();
        assert_eq!(plan(&add, &mut stock_of(&[])).unwrap()[0].after, 4);
    }

    #[test]
    fn ledger_sum_equals_stock_for_any_sequence() {
        // A small deterministic walk over many random commands: the sum of deltas per
        // product always equals its final stock, and stock never goes negative.
        let mut state: HashMap<ProductId, i64> = HashMap::new();
        let mut ledger: HashMap<ProductId, i64> = HashMap::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _ in 0..5000 {
            let op = StockOp::ALL[next(4) as usize];
            let lines = (0..1 + next(3))
                .map(|_| StockLine {
                    product_id: 1 + next(5) as i64,
                    amount: next(20) as i64 + 1,
                })
                .collect();
            let cmd = StockCommand { op, lines };
            let snapshot = state.clone();
            if let Ok(moves) = plan(&cmd, &mut |p| snapshot.get(&p).copied()) {
                for m in moves {
                    *ledger.entry(m.product_id).or_default() += m.delta;
                    state.insert(m.product_id, m.after);
                }
            }
            assert!(state.values().all(|v| *v >= 0));
        }
        assert_eq!(state, ledger);
    }
}

/// One ledger movement as a backup carries it (`_stock` database, `movements` store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The movement's UUID: restoring the same movement twice is a no-op.
    pub id: String,
    pub site: String,
    pub product_id: ProductId,
    pub delta: i64,
    pub kind: String,
    pub reason: Option<String>,
    pub origin_client: Option<String>,
    pub origin_op: Option<String>,
    pub server_time: i64,
    /// When the register says it happened (sales); `None` when unknown.
    pub client_time: Option<i64>,
    /// The user whose action it was, when known.
    pub user_id: Option<String>,
}

/// Parses the `movements` of a `_stock` backup; every problem is found before anything is
/// written.
pub fn parse_ledger(movements: Option<&Value>) -> Result<Vec<LedgerEntry>, InvalidCommand> {
    let fail = |msg: String| InvalidCommand(msg);
    let Some(Value::Array(items)) = movements else {
        return Err(fail(
            "backup.movements must be an array of ledger movements".into(),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("backup.movements[{i}]");
            let Value::Object(o) = item else {
                return Err(fail(format!("{at} must be an object")));
            };
            let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
            let required = |k: &str| {
                text(k)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| fail(format!("{at}.{k} is required")))
            };
            let id = required("id")?;
            if id.len() > 64 {
                return Err(fail(format!("{at}.id is too long")));
            }
            let product_id = integer(o.get("productId"), 1, MAX_PRODUCT_ID)
                .map_err(|w| fail(format!("{at}.productId {w}")))?;
            let delta = o
                .get("delta")
                .and_then(Value::as_i64)
                .filter(|d| delta_in_range(*d))
                .ok_or_else(|| {
                    fail(format!(
                        "{at}.delta must be an integer of at most {MAX_AMOUNT} in size"
                    ))
                })?;
            let server_time = text("serverTime")
                .and_then(|t| crate::time::parse_iso8601(&t))
                .ok_or_else(|| fail(format!("{at}.serverTime must be an ISO-8601 timestamp")))?;
            Ok(LedgerEntry {
                id,
                site: text("siteId").unwrap_or_else(|| crate::DEFAULT_SITE.to_owned()),
                product_id,
                delta,
                kind: required("kind")?,
                reason: text("reason"),
                origin_client: text("originClient"),
                origin_op: text("originOp"),
                server_time,
                client_time: match text("clientTime") {
                    None => None,
                    Some(t) => Some(crate::time::parse_iso8601(&t).ok_or_else(|| {
                        fail(format!("{at}.clientTime must be an ISO-8601 timestamp"))
                    })?),
                },
                user_id: text("userId"),
            })
        })
        .collect()
}

/// One product's level after a ledger restore (the `data` lines of its `stock:sync` event).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiteLevel {
    pub product_id: ProductId,
    pub stock: i64,
    pub site_id: String,
}

/// What restoring ledger movements did (`_stock` backups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRestored {
    /// The resulting level of every product the movements touch.
    pub levels: Vec<SiteLevel>,
    /// Per movement, in the order given, what became of it.
    pub appended: Vec<Appended>,
}

impl LedgerRestored {
    /// Movements appended.
    pub fn restored(&self) -> usize {
        self.appended
            .iter()
            .filter(|a| **a == Appended::New)
            .count()
    }

    /// Movements not appended (already in the ledger, or an id another tenant's has).
    pub fn skipped(&self) -> usize {
        self.appended.len() - self.restored()
    }
}

/// What appending one movement by its UUID did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    New,
    /// This tenant's ledger has it already (a retry). Ids are per tenant: another
    /// tenant's movement with the same id neither blocks nor shows.
    AlreadyThere,
}

/// A site's thresholds for one product (seed 003 `inventory.minStock` / `maxStock`), set
/// with `PUT /api/inventory/{productId}`. `None` clears a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub product_id: ProductId,
    pub min_stock: Option<i64>,
    pub max_stock: Option<i64>,
}

impl Thresholds {
    /// Reads `{minStock, maxStock}`: whole numbers from 0 to [`MAX_AMOUNT`], max ≥ min.
    pub fn parse(product_id: ProductId, body: &Value) -> Result<Thresholds, InvalidCommand> {
        let Value::Object(o) = body else {
            return Err(InvalidCommand(
                "body must be a JSON object with minStock and/or maxStock".into(),
            ));
        };
        if !o.contains_key("minStock") && !o.contains_key("maxStock") {
            return Err(InvalidCommand("give minStock and/or maxStock".into()));
        }
        let field = |key: &str| match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .filter(|n| (0..=MAX_AMOUNT).contains(n))
                .map(Some)
                .ok_or_else(|| {
                    InvalidCommand(format!(
                        "{key} must be a whole number from 0 to {MAX_AMOUNT}, or null"
                    ))
                }),
        };
        let (min_stock, max_stock) = (field("minStock")?, field("maxStock")?);
        if let (Some(min), Some(max)) = (min_stock, max_stock) {
            if max < min {
                return Err(InvalidCommand(format!(
                    "maxStock ({max}) must not be below minStock ({min})"
                )));
            }
        }
        Ok(Thresholds {
            product_id,
            min_stock,
            max_stock,
        })
    }
}
