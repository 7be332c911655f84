//! Sales (seeds 001 and 003): append-only facts with a UUID, their lines, payments, refunds
//! and voids, and the ledger movements they imply.
//!
//! A sale is kept as one [`SaleRecord`]. Its lines, total, site and time never change after
//! it is recorded; what can happen later only adds to it: a payment is confirmed, a refund
//! is appended, the sale is voided. So two copies of a sale (the edge's and the hub's) merge
//! by union ([`SaleRecord::merge`]) and converge whichever arrives first.
//!
//! The stock side is derived, never edited: [`SaleRecord::movements`] lists every ledger
//! movement the record implies, with ids made from the sale's id (and a refund's id or a
//! void's time), so
//! appending them is idempotent (a movement already in the ledger is skipped) and a sale
//! pushed twice — or pushed as movements and as a sale — counts once.
//!
//! Amounts are minor units ([`crate::money`]); quantities are whole units, checked.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::money;
use crate::stock::{type_name, ProductId, MAX_AMOUNT, MAX_PRODUCT_ID};
use crate::time::{iso8601, parse_iso8601};

/// Most lines in one sale.
pub const MAX_SALE_LINES: usize = 500;
/// Most payments of one sale.
pub const MAX_PAYMENTS: usize = 20;
/// Longest free text (notes, reasons, payment methods, device ids).
pub const MAX_TEXT: usize = 500;

/// Seed 001's event on a new sale and on a confirmed payment (admins only).
pub const SALE_CREATED: &str = "SALE_CREATED";
/// A refund or a merged change (seed 001's "future" event).
pub const SALE_UPDATED: &str = "SALE_UPDATED";
/// A void (seed 001's "future" event).
pub const SALE_CANCELLED: &str = "SALE_CANCELLED";

/// A request refused: `code` names the problem.
pub type SaleInvalid = crate::refusal::Refusal;

use crate::refusal::refuse as invalid;

/// Whether `text` is a UUID in its canonical text form (8-4-4-4-12 hex digits).
pub fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// One line of a sale, amounts in minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaleLine {
    pub product_id: ProductId,
    pub quantity: i64,
    pub unit_price: i64,
    /// Off the whole line, not per unit.
    pub discount: i64,
}

impl SaleLine {
    /// `quantity × unitPrice − discount`, or `None` when it overflows or goes negative.
    pub fn total(&self) -> Option<i64> {
        self.quantity
            .checked_mul(self.unit_price)?
            .checked_sub(self.discount)
            .filter(|t| *t >= 0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentStatus {
    Pending,
    Confirmed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub id: String,
    pub method: String,
    pub amount: i64,
    pub status: PaymentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_at: Option<i64>,
}

/// A refund: the quantities given back (stock returns), appended, never edited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    pub id: String,
    pub lines: Vec<RefundLine>,
    pub reason: Option<String>,
    pub at: i64,
    pub user_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundLine {
    pub product_id: ProductId,
    pub quantity: i64,
}

/// A void: the sale is cancelled and what was not refunded yet goes back to stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Void {
    pub at: i64,
    pub reason: Option<String>,
    pub user_id: Option<String>,
    /// What went back to stock.
    pub lines: Vec<RefundLine>,
}

/// Where a sale stands, derived from its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleStatus {
    /// Some payment is not confirmed yet, or payments do not cover the total.
    Pending,
    /// Paid in full.
    Completed,
    PartiallyRefunded,
    Refunded,
    Cancelled,
}

impl SaleStatus {
    pub const ALL: [SaleStatus; 5] = [
        SaleStatus::Pending,
        SaleStatus::Completed,
        SaleStatus::PartiallyRefunded,
        SaleStatus::Refunded,
        SaleStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SaleStatus::Pending => "pending",
            SaleStatus::Completed => "completed",
            SaleStatus::PartiallyRefunded => "partially_refunded",
            SaleStatus::Refunded => "refunded",
            SaleStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A sale as kept by every tier (stored form: amounts in minor units, times in ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaleRecord {
    pub id: String,
    pub site_id: String,
    /// The register or device that made it.
    pub device_id: Option<String>,
    pub user_id: Option<String>,
    pub lines: Vec<SaleLine>,
    pub payments: Vec<Payment>,
    pub total: i64,
    #[serde(default)]
    pub refunds: Vec<Refund>,
    #[serde(default)]
    pub void: Option<Void>,
    pub notes: Option<String>,
    /// When the register says it happened.
    pub client_time: Option<i64>,
    /// When the first tier recorded it (kept when it is synced on).
    pub server_time: i64,
}

/// A ledger movement a sale implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleMovement {
    pub id: String,
    pub product_id: ProductId,
    pub delta: i64,
    /// `sale` or `refund` (a void is a refund with reason `void`).
    pub kind: &'static str,
    pub reason: Option<String>,
    /// Server time of the fact (the sale's, the refund's, the void's).
    pub time: i64,
    /// Who did it, when it was not the sale's user (a refund, a void).
    pub user: Option<String>,
}

impl SaleRecord {
    pub fn status(&self) -> SaleStatus {
        if self.void.is_some() {
            return SaleStatus::Cancelled;
        }
        let sold: i64 = self.lines.iter().map(|l| l.quantity).sum();
        let refunded: i64 = self
            .refunds
            .iter()
            .flat_map(|r| &r.lines)
            .map(|l| l.quantity)
            .sum();
        if refunded > 0 {
            return if refunded >= sold {
                SaleStatus::Refunded
            } else {
                SaleStatus::PartiallyRefunded
            };
        }
        let paid: i64 = self
            .payments
            .iter()
            .filter(|p| p.status == PaymentStatus::Confirmed)
            .map(|p| p.amount)
            .sum();
        let all_confirmed = self
            .payments
            .iter()
            .all(|p| p.status == PaymentStatus::Confirmed);
        if all_confirmed && paid >= self.total {
            SaleStatus::Completed
        } else {
            SaleStatus::Pending
        }
    }

    /// Units of `product` sold and not yet given back (by refunds or a void).
    pub fn returnable(&self, product: ProductId) -> i64 {
        let sold: i64 = self
            .lines
            .iter()
            .filter(|l| l.product_id == product)
            .map(|l| l.quantity)
            .sum();
        let back: i64 = self
            .refunds
            .iter()
            .flat_map(|r| &r.lines)
            .chain(self.void.iter().flat_map(|v| &v.lines))
            .filter(|l| l.product_id == product)
            .map(|l| l.quantity)
            .sum();
        sold - back
    }

    /// Every ledger movement this record implies, with deterministic ids.
    pub fn movements(&self) -> Vec<SaleMovement> {
        let time = self.server_time;
        let mut out: Vec<SaleMovement> = self
            .lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.quantity != 0)
            .map(|(n, l)| SaleMovement {
                id: format!("{}:{n}", self.id),
                product_id: l.product_id,
                delta: -l.quantity,
                kind: "sale",
                reason: None,
                time,
                user: None,
            })
            .collect();
        // A refund's and a void's ids carry the sale's (a refund id reused on another sale
        // still names other movements) and the void's time (two tiers voiding the same sale
        // with different quantities left make two facts, which both ledgers get).
        let sale = &self.id[..8.min(self.id.len())];
        for refund in &self.refunds {
            out.extend(refund.lines.iter().enumerate().map(|(n, l)| SaleMovement {
                id: format!("{sale}:{}:{n}", refund.id),
                product_id: l.product_id,
                delta: l.quantity,
                kind: "refund",
                reason: refund.reason.clone(),
                time: refund.at,
                user: refund.user_id.clone(),
            }));
        }
        if let Some(void) = &self.void {
            out.extend(void.lines.iter().enumerate().map(|(n, l)| SaleMovement {
                id: format!("{}:void:{}:{n}", self.id, void.at),
                product_id: l.product_id,
                delta: l.quantity,
                kind: "refund",
                reason: Some("void".into()),
                time: void.at,
                user: void.user_id.clone(),
            }));
        }
        out
    }

    /// Merges another copy of this sale (from the other tier): confirmed payments stay
    /// confirmed, refunds are the union by id, the earliest void stands. Returns whether
    /// anything changed, or an error when the two are not the same sale.
    pub fn merge(&mut self, other: &SaleRecord) -> Result<bool, SaleInvalid> {
        if self.lines != other.lines || self.total != other.total || self.site_id != other.site_id {
            return invalid(
                "sale_id_conflict",
                format!(
                    "sale {} exists with other lines, total or site; a sale is never edited",
                    self.id
                ),
            );
        }
        let mut changed = false;
        for theirs in &other.payments {
            match self.payments.iter_mut().find(|p| p.id == theirs.id) {
                Some(mine) => {
                    if mine.status == PaymentStatus::Pending
                        && theirs.status == PaymentStatus::Confirmed
                    {
                        *mine = theirs.clone();
                        changed = true;
                    }
                }
                None => {
                    self.payments.push(theirs.clone());
                    changed = true;
                }
            }
        }
        for refund in &other.refunds {
            if !self.refunds.iter().any(|r| r.id == refund.id) {
                self.refunds.push(refund.clone());
                changed = true;
            }
        }
        if let Some(theirs) = &other.void {
            if self.void.as_ref().is_none_or(|mine| theirs.at < mine.at) {
                self.void = Some(theirs.clone());
                changed = true;
            }
        }
        Ok(changed)
    }

    /// The API form: amounts as decimals, times as ISO 8601, the derived status.
    pub fn to_json(&self, unknown_products: &[ProductId]) -> Value {
        let lines: Vec<Value> = self
            .lines
            .iter()
            .map(|l| {
                json!({
                    "productId": l.product_id,
                    "quantity": l.quantity,
                    "unitPrice": money::to_json(l.unit_price),
                    "discount": money::to_json(l.discount),
                    "total": money::to_json(l.total().unwrap_or(0)),
                })
            })
            .collect();
        let payments: Vec<Value> = self
            .payments
            .iter()
            .map(|p| {
                json!({
                    "id": p.id,
                    "method": p.method,
                    "amount": money::to_json(p.amount),
                    "status": p.status,
                    "confirmedAt": p.confirmed_at.map(iso8601),
                })
            })
            .collect();
        let refunds: Vec<Value> = self
            .refunds
            .iter()
            .map(|r| {
                json!({
                    "id": r.id, "lines": r.lines, "reason": r.reason,
                    "at": iso8601(r.at), "userId": r.user_id,
                })
            })
            .collect();
        json!({
            "id": self.id,
            "siteId": self.site_id,
            "deviceId": self.device_id,
            "userId": self.user_id,
            "status": self.status().as_str(),
            "lines": lines,
            "payments": payments,
            "total": money::to_json(self.total),
            "refunds": refunds,
            "void": self.void.as_ref().map(|v| json!({
                "at": iso8601(v.at), "reason": v.reason, "userId": v.user_id, "lines": v.lines,
            })),
            "notes": self.notes,
            "clientTimestamp": self.client_time.map(iso8601),
            "serverTimestamp": iso8601(self.server_time),
            "needsReview": !unknown_products.is_empty(),
            "unknownProducts": unknown_products,
        })
    }

    /// Reads a sale in its API form (a sale pushed by an edge), keeping its times.
    pub fn from_json(body: &Value, site: &str, now: i64) -> Result<SaleRecord, SaleInvalid> {
        let Value::Object(o) = body else {
            return invalid("invalid_body", "a sale must be a JSON object");
        };
        let new = NewSale::parse(o)?;
        let mut record = new.into_record(site, None, now);
        if let Some(at) = time_field(o, "serverTimestamp")? {
            record.server_time = at;
        }
        record.user_id = text(o, "userId")?;
        // Payments come with their state; refunds and a void as the edge recorded them.
        if let Some(Value::Array(refunds)) = o.get("refunds") {
            for (n, r) in refunds.iter().enumerate() {
                let at = format!("refunds[{n}]");
                let r = r.as_object().ok_or_else(|| SaleInvalid {
                    code: "invalid_refund",
                    message: format!("{at} must be an object"),
                })?;
                let request = RefundRequest::parse(r)?;
                let id = request.id.ok_or_else(|| SaleInvalid {
                    code: "invalid_refund",
                    message: format!("{at}.id is required"),
                })?;
                record.refunds.push(Refund {
                    id,
                    lines: request.lines.unwrap_or_default(),
                    reason: request.reason,
                    at: time_field(r, "at")?.unwrap_or(now),
                    user_id: text(r, "userId")?,
                });
            }
        }
        if let Some(Value::Object(v)) = o.get("void") {
            record.void = Some(Void {
                at: time_field(v, "at")?.unwrap_or(now),
                reason: text(v, "reason")?,
                user_id: text(v, "userId")?,
                lines: parse_refund_lines(v.get("lines"), true)?.unwrap_or_default(),
            });
        }
        Ok(record)
    }
}

/// A sale as a register sends it (`POST /api/sales`), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSale {
    /// The sale's UUID (the client's; one is made when it gives none).
    pub id: Option<String>,
    pub device_id: Option<String>,
    pub lines: Vec<SaleLine>,
    pub payments: Vec<Payment>,
    pub total: i64,
    pub notes: Option<String>,
    pub client_time: Option<i64>,
}

fn text(o: &Map<String, Value>, key: &str) -> Result<Option<String>, SaleInvalid> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_TEXT => Ok(Some(s.clone())),
        Some(_) => invalid(
            "invalid_field",
            format!("{key} must be a string of at most {MAX_TEXT} bytes"),
        ),
    }
}

fn time_field(o: &Map<String, Value>, key: &str) -> Result<Option<i64>, SaleInvalid> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match parse_iso8601(s) {
            Some(t) => Ok(Some(t)),
            None => invalid(
                "invalid_timestamp",
                format!("{key} must be an ISO-8601 time, got {s:?}"),
            ),
        },
        Some(v) => invalid(
            "invalid_timestamp",
            format!("{key} must be an ISO-8601 string, got {}", type_name(v)),
        ),
    }
}

fn product_id(value: Option<&Value>, at: &str) -> Result<ProductId, SaleInvalid> {
    match value.and_then(Value::as_i64) {
        Some(p) if (1..=MAX_PRODUCT_ID).contains(&p) => Ok(p),
        _ => invalid(
            "invalid_product_id",
            format!("{at}.productId must be an integer from 1 to {MAX_PRODUCT_ID}"),
        ),
    }
}

fn quantity(value: Option<&Value>, at: &str) -> Result<i64, SaleInvalid> {
    match value.and_then(Value::as_i64) {
        Some(q) if q > 0 && q <= MAX_AMOUNT => Ok(q),
        Some(q) if q <= 0 => invalid(
            "invalid_quantity",
            format!("{at}.quantity must be positive, got {q}"),
        ),
        _ => invalid(
            "invalid_quantity",
            format!("{at}.quantity must be a whole number from 1 to {MAX_AMOUNT}"),
        ),
    }
}

fn amount(
    o: &Map<String, Value>,
    key: &str,
    at: &str,
    code: &'static str,
) -> Result<Option<i64>, SaleInvalid> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => money::parse_amount(v, &format!("{at}.{key}"))
            .map(Some)
            .map_err(|message| SaleInvalid { code, message }),
    }
}

impl NewSale {
    /// The JSON Schema of the body [`NewSale::parse`] reads, from the limits it enforces
    /// (money is a JSON number with at most two decimals; `items` and `price` are accepted
    /// as aliases of `lines` and `unitPrice`). What a schema cannot say is checked by the
    /// parser: line totals add up to `total`, payments to the total, unique payment ids.
    pub fn schema() -> schemars::Schema {
        let money = serde_json::json!({
            "type": "number", "minimum": 0, "maximum": money::MAX_MONEY / money::SCALE,
            "multipleOf": 0.01,
        });
        let text = serde_json::json!({"type": ["string", "null"], "maxLength": MAX_TEXT});
        let body = serde_json::json!({
            "type": "object",
            "required": ["lines"],
            "properties": {
                "id": {
                    "type": ["string", "null"],
                    "description": "The sale's UUID, made by the register: a retry with the same id is a no-op.",
                    "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
                },
                "deviceId": text,
                "lines": {
                    "type": "array", "minItems": 1, "maxItems": MAX_SALE_LINES,
                    "items": {
                        "type": "object",
                        "required": ["productId", "quantity", "unitPrice"],
                        "properties": {
                            "productId": {"type": "integer", "minimum": 1, "maximum": MAX_PRODUCT_ID},
                            "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT},
                            "unitPrice": money,
                            "discount": money,
                        },
                    },
                },
                "payments": {
                    "type": ["array", "null"], "maxItems": MAX_PAYMENTS,
                    "items": {
                        "type": "object",
                        "required": ["method", "amount"],
                        "properties": {
                            "id": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[^/]*$"},
                            "method": {"type": "string", "minLength": 1, "maxLength": 64},
                            "amount": money,
                            "status": {"enum": ["pending", "confirmed", "approved", "paid"]},
                            "confirmedAt": {"type": ["string", "null"], "format": "date-time"},
                        },
                    },
                },
                "total": money,
                "notes": text,
                "clientTimestamp": {"type": ["string", "null"], "format": "date-time"},
            },
        });
        schemars::Schema::try_from(body).expect("an object is a schema")
    }

    pub fn parse(o: &Map<String, Value>) -> Result<NewSale, SaleInvalid> {
        let id = match o.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if is_uuid(s) => Some(s.to_ascii_lowercase()),
            Some(v) => {
                return invalid(
                    "invalid_sale_id",
                    format!("id must be a UUID (8-4-4-4-12 hex digits), got {v}"),
                )
            }
        };
        let Some(Value::Array(raw_lines)) = o.get("lines").or(o.get("items")) else {
            return invalid("invalid_lines", "lines must be an array of sale lines");
        };
        if raw_lines.is_empty() {
            return invalid("invalid_lines", "a sale needs at least one line");
        }
        if raw_lines.len() > MAX_SALE_LINES {
            return invalid(
                "too_many_lines",
                format!(
                    "a sale has at most {MAX_SALE_LINES} lines, got {}",
                    raw_lines.len()
                ),
            );
        }
        let mut lines = Vec::with_capacity(raw_lines.len());
        let mut total: i64 = 0;
        for (n, raw) in raw_lines.iter().enumerate() {
            let at = format!("lines[{n}]");
            let Value::Object(l) = raw else {
                return invalid("invalid_lines", format!("{at} must be an object"));
            };
            let line = SaleLine {
                product_id: product_id(l.get("productId"), &at)?,
                quantity: quantity(l.get("quantity"), &at)?,
                unit_price: amount(l, "unitPrice", &at, "invalid_price")?
                    .or(amount(l, "price", &at, "invalid_price")?)
                    .ok_or_else(|| SaleInvalid {
                        code: "invalid_price",
                        message: format!("{at}.unitPrice is required"),
                    })?,
                discount: amount(l, "discount", &at, "invalid_discount")?.unwrap_or(0),
            };
            let line_total = match line.quantity.checked_mul(line.unit_price) {
                Some(gross) if gross > money::MAX_MONEY => {
                    return invalid(
                        "invalid_total",
                        format!("{at}: the line total is too large"),
                    )
                }
                Some(_) => line.total().ok_or_else(|| SaleInvalid {
                    code: "invalid_discount",
                    message: format!("{at}: the discount is larger than the line"),
                })?,
                None => {
                    return invalid(
                        "invalid_total",
                        format!("{at}: the line total is too large"),
                    )
                }
            };
            total = total
                .checked_add(line_total)
                .filter(|t| *t <= money::MAX_MONEY)
                .ok_or_else(|| SaleInvalid {
                    code: "invalid_total",
                    message: "the sale's total is too large".into(),
                })?;
            lines.push(line);
        }
        if let Some(given) = amount(o, "total", "sale", "invalid_total")? {
            if given != total {
                return invalid(
                    "total_mismatch",
                    format!(
                        "total is {} but the lines add up to {}",
                        money::to_json(given),
                        money::to_json(total)
                    ),
                );
            }
        }
        let payments = match o.get("payments") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(raw)) if raw.len() <= MAX_PAYMENTS => {
                let mut payments = Vec::with_capacity(raw.len());
                for (n, p) in raw.iter().enumerate() {
                    payments.push(parse_payment(p, n)?);
                }
                payments
            }
            Some(_) => {
                return invalid(
                    "invalid_payment",
                    format!("payments must be an array of at most {MAX_PAYMENTS} payments"),
                )
            }
        };
        let mut ids = std::collections::HashSet::new();
        if let Some(p) = payments.iter().find(|p| !ids.insert(&p.id)) {
            return invalid(
                "invalid_payment",
                format!("payment id {:?} is given twice", p.id),
            );
        }
        let paid = payments.iter().map(|p| p.amount).sum::<i64>();
        if !payments.is_empty() && paid != total {
            return invalid(
                "payments_mismatch",
                format!(
                    "payments add up to {} but the total is {}",
                    money::to_json(paid),
                    money::to_json(total)
                ),
            );
        }
        Ok(NewSale {
            id,
            device_id: text(o, "deviceId")?,
            lines,
            payments,
            total,
            notes: text(o, "notes")?,
            client_time: time_field(o, "clientTimestamp")?,
        })
    }

    /// The record of this sale as first recorded at `site` by `user`, at `now`.
    pub fn into_record(self, site: &str, user: Option<&str>, now: i64) -> SaleRecord {
        SaleRecord {
            id: self.id.unwrap_or_else(|| uuid_like(now)),
            site_id: site.to_owned(),
            device_id: self.device_id,
            user_id: user.map(str::to_owned),
            lines: self.lines,
            payments: self.payments,
            total: self.total,
            refunds: Vec::new(),
            void: None,
            notes: self.notes,
            client_time: self.client_time,
            server_time: now,
        }
    }
}

/// A random UUID (version 4 layout) made from the clock and std's random hasher seeds, for
/// sales that arrive without one (the gateway passes its own when it can).
fn uuid_like(now: i64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_i64(now);
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn parse_payment(raw: &Value, n: usize) -> Result<Payment, SaleInvalid> {
    let at = format!("payments[{n}]");
    let Value::Object(p) = raw else {
        return invalid("invalid_payment", format!("{at} must be an object"));
    };
    let id = match p.get("id") {
        None | Some(Value::Null) => format!("p{}", n + 1),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 100 && !s.contains('/') => s.clone(),
        Some(_) => {
            return invalid(
                "invalid_payment",
                format!("{at}.id must be a string of 1 to 100 bytes without '/'"),
            )
        }
    };
    let method = match p.get("method") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 64 => s.clone(),
        _ => {
            return invalid(
                "invalid_payment",
                format!("{at}.method must be a string of 1 to 64 bytes (cash, card, …)"),
            )
        }
    };
    let amount = amount(p, "amount", &at, "invalid_payment")?.ok_or_else(|| SaleInvalid {
        code: "invalid_payment",
        message: format!("{at}.amount is required"),
    })?;
    let status = match p.get("status").and_then(Value::as_str) {
        None => PaymentStatus::Confirmed,
        Some("confirmed" | "approved" | "paid") => PaymentStatus::Confirmed,
        Some("pending") => PaymentStatus::Pending,
        Some(other) => {
            return invalid(
                "invalid_payment",
                format!("{at}.status must be \"pending\" or \"confirmed\", got {other:?}"),
            )
        }
    };
    let confirmed_at = time_field(p, "confirmedAt")?;
    Ok(Payment {
        id,
        method,
        amount,
        status,
        confirmed_at,
    })
}

/// `POST /api/sales/{id}/refunds`: what to give back (`lines` absent: everything left).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub id: Option<String>,
    pub lines: Option<Vec<RefundLine>>,
    pub reason: Option<String>,
}

/// `lines` of a refund or a void: `allow_empty` for a void's (a sale refunded in full
/// before it was voided gives nothing back).
fn parse_refund_lines(
    value: Option<&Value>,
    allow_empty: bool,
) -> Result<Option<Vec<RefundLine>>, SaleInvalid> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(raw))
            if (allow_empty || !raw.is_empty()) && raw.len() <= MAX_SALE_LINES =>
        {
            let mut lines = Vec::with_capacity(raw.len());
            for (n, l) in raw.iter().enumerate() {
                let at = format!("lines[{n}]");
                let Value::Object(l) = l else {
                    return invalid("invalid_refund", format!("{at} must be an object"));
                };
                lines.push(RefundLine {
                    product_id: product_id(l.get("productId"), &at)?,
                    quantity: quantity(l.get("quantity"), &at)?,
                });
            }
            Ok(Some(lines))
        }
        Some(_) => invalid(
            "invalid_refund",
            format!("lines must be an array of 1 to {MAX_SALE_LINES} {{productId, quantity}}"),
        ),
    }
}

impl RefundRequest {
    pub fn parse(o: &Map<String, Value>) -> Result<RefundRequest, SaleInvalid> {
        let id = match o.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if is_uuid(s) => Some(s.to_ascii_lowercase()),
            Some(_) => return invalid("invalid_refund", "id must be a UUID"),
        };
        Ok(RefundRequest {
            id,
            lines: parse_refund_lines(o.get("lines"), false)?,
            reason: text(o, "reason")?,
        })
    }
}

/// A change to a sale, decided by the writer against the sale as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaleCommand {
    /// `POST /api/sales`: record a new sale; the same sale again is a duplicate (changes
    /// nothing), another sale under its id a conflict.
    Create(SaleRecord),
    /// Merge another tier's copy of a sale (a push, a pull): new, or its later facts.
    Record(SaleRecord),
    /// Seed 001's `confirmPayment`.
    ConfirmPayment {
        sale: String,
        payment: String,
        at: i64,
    },
    Refund {
        sale: String,
        refund: RefundRequest,
        user: Option<String>,
        at: i64,
    },
    Void {
        sale: String,
        reason: Option<String>,
        user: Option<String>,
        at: i64,
    },
}

impl SaleCommand {
    pub fn sale_id(&self) -> &str {
        match self {
            SaleCommand::Create(r) | SaleCommand::Record(r) => &r.id,
            SaleCommand::ConfirmPayment { sale, .. }
            | SaleCommand::Refund { sale, .. }
            | SaleCommand::Void { sale, .. } => sale,
        }
    }
}

/// Why a sale command was refused (nothing changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaleRefusal {
    NotFound(String),
    Invalid(SaleInvalid),
}

/// The sale after `command`, and the event it is announced with; `None` when nothing
/// changes (a replay). `current` is the sale as stored, if it is.
pub fn decide(
    current: Option<&SaleRecord>,
    command: &SaleCommand,
) -> Result<Option<(SaleRecord, &'static str)>, SaleRefusal> {
    let existing = |id: &str| {
        current
            .cloned()
            .ok_or_else(|| SaleRefusal::NotFound(format!("sale {id}")))
    };
    match command {
        SaleCommand::Create(incoming) => match current {
            None => Ok(Some((incoming.clone(), SALE_CREATED))),
            Some(stored) => {
                // A retry of the same sale; the check is merge's (lines, total, site).
                stored
                    .clone()
                    .merge(&stored_facts(stored, incoming))
                    .map_err(SaleRefusal::Invalid)?;
                Ok(None)
            }
        },
        SaleCommand::Record(incoming) => match current {
            None => Ok(Some((incoming.clone(), SALE_CREATED))),
            Some(stored) => {
                let mut merged = stored.clone();
                let changed = merged.merge(incoming).map_err(SaleRefusal::Invalid)?;
                let confirmed = |r: &SaleRecord| {
                    r.payments
                        .iter()
                        .filter(|p| p.status == PaymentStatus::Confirmed)
                        .count()
                };
                let event = if merged.void.is_some() && stored.void.is_none() {
                    SALE_CANCELLED
                } else if merged.refunds.len() == stored.refunds.len()
                    && confirmed(&merged) > confirmed(stored)
                {
                    // Seed 001: a confirmed payment announces the sale, wherever it was
                    // confirmed.
                    SALE_CREATED
                } else {
                    SALE_UPDATED
                };
                Ok(changed.then_some((merged, event)))
            }
        },
        SaleCommand::ConfirmPayment { sale, payment, at } => {
            let mut record = existing(sale)?;
            let Some(p) = record.payments.iter_mut().find(|p| &p.id == payment) else {
                return Err(SaleRefusal::NotFound(format!(
                    "payment {payment:?} of sale {sale}"
                )));
            };
            if p.status == PaymentStatus::Confirmed {
                return Ok(None);
            }
            if record.void.is_some() {
                return Err(SaleRefusal::Invalid(SaleInvalid {
                    code: "sale_cancelled",
                    message: format!("sale {sale} is cancelled"),
                }));
            }
            p.status = PaymentStatus::Confirmed;
            p.confirmed_at = Some(*at);
            // Seed 001: a confirmed payment announces the (now approved) sale again.
            Ok(Some((record, SALE_CREATED)))
        }
        SaleCommand::Refund {
            sale,
            refund,
            user,
            at,
        } => {
            let mut record = existing(sale)?;
            let id = refund
                .id
                .clone()
                .unwrap_or_else(|| uuid_like(*at ^ record.refunds.len() as i64));
            if record.refunds.iter().any(|r| r.id == id) {
                return Ok(None);
            }
            if record.void.is_some() {
                return Err(SaleRefusal::Invalid(SaleInvalid {
                    code: "sale_cancelled",
                    message: format!("sale {sale} is cancelled; nothing is left to refund"),
                }));
            }
            let lines = match &refund.lines {
                Some(lines) => lines.clone(),
                None => remaining(&record),
            };
            let mut asked = std::collections::BTreeMap::<ProductId, i64>::new();
            for l in &lines {
                *asked.entry(l.product_id).or_default() += l.quantity;
            }
            for (product, quantity) in &asked {
                let left = record.returnable(*product);
                if *quantity > left {
                    return Err(SaleRefusal::Invalid(SaleInvalid {
                        code: "refund_exceeds_sale",
                        message: format!(
                            "product {product}: {quantity} to refund, {left} sold and not refunded"
                        ),
                    }));
                }
            }
            if lines.is_empty() {
                return Err(SaleRefusal::Invalid(SaleInvalid {
                    code: "refund_exceeds_sale",
                    message: format!("sale {sale} has nothing left to refund"),
                }));
            }
            record.refunds.push(Refund {
                id,
                lines,
                reason: refund.reason.clone(),
                at: *at,
                user_id: user.clone(),
            });
            Ok(Some((record, SALE_UPDATED)))
        }
        SaleCommand::Void {
            sale,
            reason,
            user,
            at,
        } => {
            let mut record = existing(sale)?;
            if record.void.is_some() {
                return Ok(None);
            }
            record.void = Some(Void {
                at: *at,
                reason: reason.clone(),
                user_id: user.clone(),
                lines: remaining(&record),
            });
            Ok(Some((record, SALE_CANCELLED)))
        }
    }
}

/// `incoming`'s identity (lines, total, site) with `stored`'s facts: merging it checks that
/// both are the same sale and changes nothing.
fn stored_facts(stored: &SaleRecord, incoming: &SaleRecord) -> SaleRecord {
    SaleRecord {
        lines: incoming.lines.clone(),
        total: incoming.total,
        site_id: incoming.site_id.clone(),
        ..stored.clone()
    }
}

/// What is sold and not yet given back, per product (in first-line order).
fn remaining(record: &SaleRecord) -> Vec<RefundLine> {
    let mut seen = std::collections::BTreeSet::new();
    record
        .lines
        .iter()
        .filter(|l| seen.insert(l.product_id))
        .map(|l| RefundLine {
            product_id: l.product_id,
            quantity: record.returnable(l.product_id),
        })
        .filter(|l| l.quantity > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale() -> SaleRecord {
        let body = json!({
            "id": "0b6f4a8e-3d7c-4f1a-9a57-1c2d3e4f5a6b",
            "lines": [
                {"productId": 1, "quantity": 2, "unitPrice": 10.5},
                {"productId": 2, "quantity": 1, "unitPrice": 5, "discount": 1}
            ],
            "payments": [{"id": "card", "method": "card", "amount": 25, "status": "pending"}],
            "total": 25
        });
        NewSale::parse(body.as_object().unwrap())
            .unwrap()
            .into_record("s1", Some("u1"), 1000)
    }

    #[test]
    fn totals_add_up_exactly_and_bad_input_is_named() {
        let s = sale();
        assert_eq!(s.total, 2500);
        assert_eq!(s.status(), SaleStatus::Pending);
        let bad = |body: Value| NewSale::parse(body.as_object().unwrap()).unwrap_err().code;
        let line = |l: Value| json!({"lines": [l]});
        assert_eq!(
            bad(line(json!({"productId":1,"quantity":-1,"unitPrice":1}))),
            "invalid_quantity"
        );
        assert_eq!(
            bad(line(json!({"productId":1,"quantity":1,"unitPrice":-1}))),
            "invalid_price"
        );
        assert_eq!(
            bad(line(
                json!({"productId":1,"quantity":1,"unitPrice":1,"discount":2})
            )),
            "invalid_discount"
        );
        assert_eq!(
            bad(json!({"lines":[{"productId":1,"quantity":1,"unitPrice":1}],"total":2})),
            "total_mismatch"
        );
        assert_eq!(
            bad(json!({"id":"nope","lines":[{"productId":1,"quantity":1,"unitPrice":1}]})),
            "invalid_sale_id"
        );
        assert_eq!(
            bad(json!({"lines":[{"productId":1,"quantity":1,"unitPrice":1}],
                       "payments":[{"method":"cash","amount":0.5}]})),
            "payments_mismatch"
        );
        let many: Vec<Value> = (0..=MAX_SALE_LINES)
            .map(|_| json!({"productId":1,"quantity":1,"unitPrice":1}))
            .collect();
        assert_eq!(bad(json!({ "lines": many })), "too_many_lines");
    }

    #[test]
    fn refunds_voids_and_payments_move_stock_once_and_merge_by_union() {
        let s = sale();
        let confirm = SaleCommand::ConfirmPayment {
            sale: s.id.clone(),
            payment: "card".into(),
            at: 2000,
        };
        let (paid, event) = decide(Some(&s), &confirm).unwrap().unwrap();
        assert_eq!(
            (paid.status(), event),
            (SaleStatus::Completed, SALE_CREATED)
        );
        assert_eq!(decide(Some(&paid), &confirm).unwrap(), None, "replay");

        let refund = SaleCommand::Refund {
            sale: s.id.clone(),
            refund: RefundRequest {
                id: Some("11111111-2222-4333-8444-555555555555".into()),
                lines: Some(vec![RefundLine {
                    product_id: 1,
                    quantity: 1,
                }]),
                reason: Some("broken".into()),
            },
            user: None,
            at: 3000,
        };
        let (refunded, _) = decide(Some(&paid), &refund).unwrap().unwrap();
        assert_eq!(refunded.status(), SaleStatus::PartiallyRefunded);
        assert_eq!(decide(Some(&refunded), &refund).unwrap(), None, "replay");
        let too_much = SaleCommand::Refund {
            sale: s.id.clone(),
            refund: RefundRequest {
                id: None,
                lines: Some(vec![RefundLine {
                    product_id: 1,
                    quantity: 2,
                }]),
                reason: None,
            },
            user: None,
            at: 3500,
        };
        assert!(matches!(
            decide(Some(&refunded), &too_much),
            Err(SaleRefusal::Invalid(SaleInvalid {
                code: "refund_exceeds_sale",
                ..
            }))
        ));
        let void = SaleCommand::Void {
            sale: s.id.clone(),
            reason: None,
            user: None,
            at: 4000,
        };
        let (voided, event) = decide(Some(&refunded), &void).unwrap().unwrap();
        assert_eq!(
            (voided.status(), event),
            (SaleStatus::Cancelled, SALE_CANCELLED)
        );
        // Every unit sold came back exactly once.
        let net: i64 = voided.movements().iter().map(|m| m.delta).sum();
        assert_eq!(net, 0);
        let mut ids: Vec<String> = voided.movements().into_iter().map(|m| m.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(
            ids.len(),
            voided.movements().len(),
            "movement ids are unique"
        );

        // The other tier's copy merges by union, in either order, to the same record.
        let mut a = s.clone();
        assert!(a.merge(&voided).unwrap());
        assert_eq!(a, voided);
        let mut b = voided.clone();
        assert!(!b.merge(&s).unwrap());
        let mut other = s.clone();
        other.total += 1;
        assert_eq!(
            s.clone().merge(&other).unwrap_err().code,
            "sale_id_conflict"
        );
        // The API form reads back as the same sale.
        let back = SaleRecord::from_json(&voided.to_json(&[]), "s1", 9999).unwrap();
        assert_eq!(back, voided);
    }

    #[test]
    fn a_sale_refunded_in_full_then_voided_still_travels_and_ids_stay_apart() {
        let s = sale();
        let refund_all = |sale: &SaleRecord, id: &str| SaleCommand::Refund {
            sale: sale.id.clone(),
            refund: RefundRequest {
                id: Some(id.into()),
                lines: None,
                reason: None,
            },
            user: None,
            at: 2000,
        };
        let refund_id = "11111111-2222-4333-8444-555555555555";
        let (refunded, _) = decide(Some(&s), &refund_all(&s, refund_id))
            .unwrap()
            .unwrap();
        assert_eq!(refunded.status(), SaleStatus::Refunded);
        let void = SaleCommand::Void {
            sale: s.id.clone(),
            reason: None,
            user: None,
            at: 3000,
        };
        let (voided, _) = decide(Some(&refunded), &void).unwrap().unwrap();
        assert!(voided.void.as_ref().unwrap().lines.is_empty());
        let back = SaleRecord::from_json(&voided.to_json(&[]), "s1", 9999).unwrap();
        assert_eq!(back, voided, "an empty void travels");

        // The same refund id on another sale names other movements.
        let mut other = sale();
        other.id = "22222222-3333-4444-8555-666666666666".into();
        let (other, _) = decide(Some(&other), &refund_all(&other, refund_id))
            .unwrap()
            .unwrap();
        let ids = |r: &SaleRecord| -> Vec<String> {
            r.movements()
                .into_iter()
                .filter(|m| m.kind == "refund")
                .map(|m| m.id)
                .collect()
        };
        assert!(ids(&refunded).iter().all(|id| !ids(&other).contains(id)));
        assert!(ids(&voided)
            .iter()
            .chain(&ids(&other))
            .all(|id| id.len() <= 64));
    }
}
