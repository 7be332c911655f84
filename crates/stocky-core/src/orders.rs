//! Remote orders (seed 004): created at the hub by an online channel (a WhatsApp bot),
//! numbered by the store — `dailyNumber`, per site and per local business day, 1, 2, 3, …
//! with no gap and no reuse — and followed through their status on both tiers.
//!
//! Conflict rules: an order's `dailyNumber` is the store's and never changes once set;
//! its status and notes are last-writer-wins by `(version, updatedAt)`, the same on both
//! tiers ([`Order::wins_over`]).

use serde_json::{json, Map, Value};

use crate::sales::is_uuid;
use crate::stock::type_name;
use crate::time::iso8601;

/// Seed 002's event names (module `orders`).
pub const ORDER_CREATED: &str = "order_created";
pub const ORDER_UPDATED: &str = "order_updated";
/// Seed 004: the store's WebSocket hears of a new order at once (`{"orderId"}`).
pub const ORDER_NEW: &str = "order:new";

/// Most lines of an order.
pub const MAX_ORDER_LINES: usize = 500;
/// Largest customer, address or line object, as JSON text.
pub const MAX_PART_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    Pending,
    Accepted,
    Preparing,
    Ready,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::Pending,
        OrderStatus::Accepted,
        OrderStatus::Preparing,
        OrderStatus::Ready,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Accepted => "accepted",
            OrderStatus::Preparing => "preparing",
            OrderStatus::Ready => "ready",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// Case-insensitive.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
    }
}

/// An order as both tiers keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: String,
    pub site_id: String,
    /// The online channel (`whatsapp`, …) and its own id for the order (idempotency).
    pub channel: Option<String>,
    pub external_id: Option<String>,
    pub daily_number: Option<i64>,
    /// The store's business day the number belongs to (`YYYY-MM-DD`).
    pub business_day: Option<String>,
    pub status: OrderStatus,
    /// JSON texts as the channel sent them.
    pub customer: Option<String>,
    pub address: Option<String>,
    pub lines: String,
    pub notes: Option<String>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Order {
    /// LWW by `(version, updatedAt)`: whether this revision replaces `stored`.
    pub fn wins_over(&self, stored: &Order) -> bool {
        (self.version, self.updated_at) > (stored.version, stored.updated_at)
    }

    pub fn to_json(&self) -> Value {
        let parse = |text: &Option<String>| {
            text.as_deref()
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
        };
        json!({
            "id": self.id,
            "orderId": self.id,
            "siteId": self.site_id,
            "channel": self.channel,
            "externalId": self.external_id,
            "dailyNumber": self.daily_number,
            "businessDay": self.business_day,
            "status": self.status.as_str(),
            "customer": parse(&self.customer),
            "address": parse(&self.address),
            "lines": serde_json::from_str::<Value>(&self.lines).unwrap_or(Value::Null),
            "notes": self.notes,
            "version": self.version,
            "createdAt": iso8601(self.created_at),
            "updatedAt": iso8601(self.updated_at),
        })
    }

    /// Reads an order in its API form (from the other tier), keeping version and times.
    pub fn from_json(value: &Value, site: &str) -> Result<Order, OrderInvalid> {
        let Value::Object(o) = value else {
            return invalid("invalid_body", "an order must be a JSON object");
        };
        let new = NewOrder::parse(o)?;
        let time = |key: &str| {
            o.get(key)
                .and_then(Value::as_str)
                .and_then(crate::time::parse_iso8601)
        };
        let (created_at, updated_at) = match (time("createdAt"), time("updatedAt")) {
            (Some(c), Some(u)) => (c, u),
            _ => return invalid("invalid_timestamp", "createdAt and updatedAt are required"),
        };
        let mut order = new.into_order(site, created_at);
        order.id = o
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| is_uuid(s))
            .ok_or_else(|| OrderInvalid {
                code: "invalid_order_id",
                message: "id must be a UUID".into(),
            })?
            .to_ascii_lowercase();
        order.updated_at = updated_at;
        order.version = o.get("version").and_then(Value::as_i64).unwrap_or(1).max(1);
        order.daily_number = o.get("dailyNumber").and_then(Value::as_i64);
        order.business_day = o
            .get("businessDay")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(order)
    }
}

/// A request refused: `code` names the problem.
pub type OrderInvalid = crate::refusal::Refusal;

use crate::refusal::refuse as invalid;

fn object_text(o: &Map<String, Value>, key: &str) -> Result<Option<String>, OrderInvalid> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => {
            let text = v.to_string();
            if text.len() > MAX_PART_BYTES {
                return invalid(
                    "invalid_field",
                    format!("{key} is larger than {MAX_PART_BYTES} bytes"),
                );
            }
            Ok(Some(text))
        }
        Some(v) => invalid(
            "invalid_field",
            format!("{key} must be an object, got {}", type_name(v)),
        ),
    }
}

fn short_text(
    o: &Map<String, Value>,
    key: &str,
    max: usize,
) -> Result<Option<String>, OrderInvalid> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= max => Ok(Some(s.clone())),
        Some(Value::Number(n)) if key.ends_with("Id") => Ok(Some(n.to_string())),
        Some(_) => invalid(
            "invalid_field",
            format!("{key} must be a string of 1 to {max} bytes"),
        ),
    }
}

/// `POST /api/orders`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub id: Option<String>,
    pub channel: Option<String>,
    pub external_id: Option<String>,
    pub status: OrderStatus,
    pub customer: Option<String>,
    pub address: Option<String>,
    pub lines: String,
    pub notes: Option<String>,
}

impl NewOrder {
    pub fn parse(o: &Map<String, Value>) -> Result<NewOrder, OrderInvalid> {
        let id = match o.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if is_uuid(s) => Some(s.to_ascii_lowercase()),
            Some(_) => return invalid("invalid_order_id", "id must be a UUID"),
        };
        let lines = match o.get("lines").or(o.get("items")) {
            Some(Value::Array(lines)) if !lines.is_empty() && lines.len() <= MAX_ORDER_LINES => {
                for (n, line) in lines.iter().enumerate() {
                    let Value::Object(l) = line else {
                        return invalid("invalid_lines", format!("lines[{n}] must be an object"));
                    };
                    match l.get("quantity").and_then(Value::as_f64) {
                        Some(q) if q > 0.0 => {}
                        _ => {
                            return invalid(
                                "invalid_quantity",
                                format!("lines[{n}].quantity must be a positive number"),
                            )
                        }
                    }
                }
                let text = Value::Array(lines.clone()).to_string();
                if text.len() > MAX_PART_BYTES * 8 {
                    return invalid("invalid_lines", "lines are too large");
                }
                text
            }
            _ => {
                return invalid(
                    "invalid_lines",
                    format!("lines must be an array of 1 to {MAX_ORDER_LINES} lines"),
                )
            }
        };
        let status = match o.get("status") {
            None | Some(Value::Null) => OrderStatus::Pending,
            Some(Value::String(s)) => OrderStatus::parse(s).ok_or_else(|| OrderInvalid {
                code: "invalid_status",
                message: format!("status {s:?} is not an order status"),
            })?,
            Some(_) => return invalid("invalid_status", "status must be a string"),
        };
        Ok(NewOrder {
            id,
            channel: short_text(o, "channel", 64)?,
            external_id: short_text(o, "externalId", 128)?.or(short_text(
                o,
                "channelOrderId",
                128,
            )?),
            status,
            customer: object_text(o, "customer")?,
            address: object_text(o, "address")?,
            lines,
            notes: short_text(o, "notes", 2000)?,
        })
    }

    pub fn into_order(self, site: &str, now: i64) -> Order {
        Order {
            id: self.id.unwrap_or_default(),
            site_id: site.to_owned(),
            channel: self.channel,
            external_id: self.external_id,
            daily_number: None,
            business_day: None,
            status: self.status,
            customer: self.customer,
            address: self.address,
            lines: self.lines,
            notes: self.notes,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }
}

/// When a store's business day starts: its UTC offset and the local time the day begins
/// (a restaurant open past midnight keeps numbering yesterday's orders until then).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BusinessClock {
    pub utc_offset_minutes: i32,
    pub day_start_minutes: i32,
}

impl BusinessClock {
    /// From a site's configuration (`POST /api/sync/config`): `timezone` as a UTC offset
    /// (`"-05:00"`, `"+01:00"`, `"UTC"`) or `utcOffsetMinutes`, and `businessDayStart`
    /// (`"HH:MM"`, default `"00:00"`), at the top level or under `restaurantConfig`.
    pub fn from_config(config: &Value) -> Result<BusinessClock, OrderInvalid> {
        let find = |key: &str| {
            config
                .get(key)
                .or_else(|| config.get("restaurantConfig").and_then(|c| c.get(key)))
        };
        let utc_offset_minutes = match (find("utcOffsetMinutes"), find("timezone")) {
            (Some(v), _) if !v.is_number() && !v.is_null() => {
                return invalid("invalid_config", "utcOffsetMinutes must be a number")
            }
            (Some(Value::Number(n)), _) => n
                .as_i64()
                .filter(|m| m.abs() <= 14 * 60)
                .ok_or_else(|| OrderInvalid {
                    code: "invalid_config",
                    message: "utcOffsetMinutes must be within ±840".into(),
                })? as i32,
            (_, Some(Value::String(tz))) if tz.starts_with(['+', '-']) => {
                parse_offset(tz).ok_or_else(|| OrderInvalid {
                    code: "invalid_config",
                    message: format!("timezone {tz:?} must be a UTC offset such as \"-05:00\""),
                })?
            }
            (_, Some(Value::String(tz))) => parse_offset(tz)
                .or_else(|| fixed_zone(tz))
                .ok_or_else(|| OrderInvalid {
                    code: UNSUPPORTED_TIMEZONE,
                    message: format!(
                        "timezone {tz:?} is neither a UTC offset such as \"-05:00\" nor a zone without daylight saving time that Stocky knows"
                    ),
                })?,
            _ => 0,
        };
        let day_start_minutes = match find("businessDayStart") {
            None | Some(Value::Null) => 0,
            Some(Value::String(hhmm)) => parse_hhmm(hhmm).ok_or_else(|| OrderInvalid {
                code: "invalid_config",
                message: format!("businessDayStart {hhmm:?} must be HH:MM"),
            })?,
            Some(_) => return invalid("invalid_config", "businessDayStart must be \"HH:MM\""),
        };
        Ok(BusinessClock {
            utc_offset_minutes,
            day_start_minutes,
        })
    }

    /// The business day (`YYYY-MM-DD`) the instant `ms` belongs to.
    pub fn day_of(&self, ms: i64) -> String {
        let shifted =
            ms + (self.utc_offset_minutes as i64 - self.day_start_minutes as i64) * 60_000;
        iso8601(shifted)[..10].to_owned()
    }
}

fn parse_hhmm(text: &str) -> Option<i32> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 60 + m)
}

/// The code of a configuration whose `timezone` names a zone Stocky cannot compute (one
/// with daylight saving time, or unknown): the configuration is kept, and its business
/// days start at UTC midnight plus `businessDayStart` until it names an offset.
pub const UNSUPPORTED_TIMEZONE: &str = "unsupported_timezone";

/// Time zones without daylight saving time, by name, as UTC offsets in minutes (the seeds'
/// stores are in Latin America; zones with DST need a time zone database, which Stocky
/// does not carry).
fn fixed_zone(name: &str) -> Option<i32> {
    const ZONES: [(&str, i32); 24] = [
        ("UTC", 0),
        ("Etc/UTC", 0),
        ("GMT", 0),
        ("America/Bogota", -300),
        ("America/Lima", -300),
        ("America/Guayaquil", -300),
        ("America/Panama", -300),
        ("America/Cancun", -300),
        ("America/Jamaica", -300),
        ("America/Mexico_City", -360),
        ("America/Monterrey", -360),
        ("America/Guatemala", -360),
        ("America/Costa_Rica", -360),
        ("America/El_Salvador", -360),
        ("America/Tegucigalpa", -360),
        ("America/Managua", -360),
        ("America/Caracas", -240),
        ("America/La_Paz", -240),
        ("America/Puerto_Rico", -240),
        ("America/Santo_Domingo", -240),
        ("America/Argentina/Buenos_Aires", -180),
        ("America/Buenos_Aires", -180),
        ("America/Sao_Paulo", -180),
        ("America/Montevideo", -180),
    ];
    ZONES
        .iter()
        .find(|(zone, _)| zone.eq_ignore_ascii_case(name))
        .map(|(_, offset)| *offset)
}

fn parse_offset(text: &str) -> Option<i32> {
    if text.eq_ignore_ascii_case("UTC") || text == "Z" {
        return Some(0);
    }
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let minutes = parse_hhmm(&text[1..]).filter(|m| *m <= 14 * 60)?;
    Some(sign * minutes)
}

/// A change to an order, decided by the writer against the stored one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    /// At the hub: a channel's new order (idempotent by id, and by channel + external id).
    Create(Box<Order>),
    /// At the store: an order from the hub arrives and gets the next daily number (or
    /// keeps the one it got before a crash).
    Arrive(Box<Order>),
    /// At the hub: the store's numbers (`POST /api/sync/orders/confirm`).
    Confirm {
        id: String,
        daily_number: i64,
        business_day: Option<String>,
    },
    /// A local status or notes change (`PATCH /api/orders/{id}`).
    Update {
        id: String,
        status: Option<OrderStatus>,
        notes: Option<String>,
        if_version: Option<i64>,
    },
    /// A revision from the other tier (LWW by version, then time; the number is kept).
    Merge(Box<Order>),
}

impl OrderCommand {
    pub fn id(&self) -> &str {
        match self {
            OrderCommand::Create(o) | OrderCommand::Arrive(o) | OrderCommand::Merge(o) => &o.id,
            OrderCommand::Confirm { id, .. } | OrderCommand::Update { id, .. } => id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_business_day_follows_the_offset_and_the_day_start() {
        let clock = BusinessClock::from_config(&json!({
            "restaurantConfig": {"timezone": "-05:00", "businessDayStart": "04:00"}
        }))
        .unwrap();
        let at = |iso: &str| crate::time::parse_iso8601(iso).unwrap();
        // 2026-12-06 08:59 UTC = 03:59 local: still the 5th's business day.
        assert_eq!(clock.day_of(at("2026-12-06T08:59:00.000Z")), "2026-12-05");
        assert_eq!(clock.day_of(at("2026-12-06T09:00:00.000Z")), "2026-12-06");
        assert_eq!(
            BusinessClock::default().day_of(at("2026-12-06T00:00:00.000Z")),
            "2026-12-06"
        );
        assert_eq!(
            BusinessClock::from_config(&json!({"timezone": "America/Bogota"}))
                .unwrap()
                .utc_offset_minutes,
            -300
        );
        assert_eq!(
            BusinessClock::from_config(&json!({"timezone": "Europe/Madrid"}))
                .unwrap_err()
                .code,
            UNSUPPORTED_TIMEZONE
        );
        assert_eq!(
            BusinessClock::from_config(&json!({"utcOffsetMinutes": 60}))
                .unwrap()
                .utc_offset_minutes,
            60
        );
    }

    #[test]
    fn orders_are_checked_and_round_trip() {
        let o = json!({"channel": "whatsapp", "externalId": "wa-1",
                       "customer": {"firstName": "Ana"}, "lines": [{"name": "Pizza", "quantity": 2}]});
        let mut order = NewOrder::parse(o.as_object().unwrap())
            .unwrap()
            .into_order("s1", 1000);
        order.id = "0b6f4a8e-3d7c-4f1a-9a57-1c2d3e4f5a6b".into();
        order.daily_number = Some(3);
        let back = Order::from_json(&order.to_json(), "s1").unwrap();
        assert_eq!(back, order);
        let code = |v: Value| NewOrder::parse(v.as_object().unwrap()).unwrap_err().code;
        assert_eq!(code(json!({"lines": []})), "invalid_lines");
        assert_eq!(
            code(json!({"lines": [{"quantity": 0}]})),
            "invalid_quantity"
        );
        assert_eq!(
            code(json!({"lines": [{"quantity": 1}], "status": "x"})),
            "invalid_status"
        );
    }
}
