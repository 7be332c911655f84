//! Customers and their addresses (seed 004): edited at both tiers and merged field by
//! field by who has priority over the field (`modifiedBy` LOCAL = the store, REMOTE = the
//! hub's online channels).
//!
//! | record | LOCAL wins | REMOTE wins |
//! |---|---|---|
//! | customer | `isBanned`, `banReason`, `internalNotes` | `firstName`, `lastName`, `email` |
//! | address | `latitude`, `longitude`, `instructions` | `street`, `address`, `city`, `neighborhood`, `reference` |
//!
//! Every field carries the stamp of its last write: the side and the time. A write to a
//! field is taken when it comes from the field's priority side and the stored value does
//! not (or is older), never when only the stored value comes from it; fields without a
//! priority are last-writer-wins by time. The rule is a join (commutative, associative,
//! idempotent), so both tiers converge whatever order the writes arrive in.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::sales::MAX_TEXT;
use crate::sync_rules::Side;
use crate::time::{iso8601, parse_iso8601};

pub const CUSTOMER_LOCAL_FIELDS: [&str; 3] = ["isBanned", "banReason", "internalNotes"];
pub const CUSTOMER_REMOTE_FIELDS: [&str; 3] = ["firstName", "lastName", "email"];
pub const ADDRESS_LOCAL_FIELDS: [&str; 3] = ["latitude", "longitude", "instructions"];
pub const ADDRESS_REMOTE_FIELDS: [&str; 5] =
    ["street", "address", "city", "neighborhood", "reference"];

/// The event of a customer change (module `customers`).
pub const CUSTOMER_UPDATED: &str = "customer:updated";
/// Largest customer (fields and addresses) as JSON text.
pub const MAX_CUSTOMER_BYTES: usize = 64 * 1024;
/// Fields the server owns.
const META: [&str; 7] = [
    "id",
    "addresses",
    "modifiedBy",
    "updatedAt",
    "version",
    "sync",
    "createdAt",
];

/// Who wrote a field last, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub by: Side,
    pub at: i64,
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Local => "LOCAL",
        Side::Remote => "REMOTE",
    }
}

/// `LOCAL` / `REMOTE` (any case).
pub fn parse_side(text: &str) -> Option<Side> {
    match text.to_ascii_uppercase().as_str() {
        "LOCAL" => Some(Side::Local),
        "REMOTE" => Some(Side::Remote),
        _ => None,
    }
}

/// Fields and their stamps: a customer's own, or one address's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fields {
    pub values: Map<String, Value>,
    pub stamps: BTreeMap<String, Stamp>,
}

impl Fields {
    /// Takes each of `incoming`'s fields that wins over the stored one; returns whether
    /// anything changed.
    fn merge(&mut self, incoming: &Fields, priority: &dyn Fn(&str) -> Option<Side>) -> bool {
        let mut changed = false;
        for (field, value) in &incoming.values {
            let Some(stamp) = incoming.stamps.get(field).copied() else {
                continue;
            };
            let take = match self.stamps.get(field) {
                None => true,
                Some(stored) => wins(
                    priority(field),
                    (stamp, value),
                    (*stored, self.values.get(field).unwrap_or(&Value::Null)),
                ),
            };
            if take
                && (self.values.get(field) != Some(value) || self.stamps.get(field) != Some(&stamp))
            {
                self.values.insert(field.clone(), value.clone());
                self.stamps.insert(field.clone(), stamp);
                changed = true;
            }
        }
        changed
    }

    fn stamps_json(&self) -> Value {
        Value::Object(
            self.stamps
                .iter()
                .map(|(f, s)| (f.clone(), json!({"by": side_name(s.by), "at": s.at})))
                .collect(),
        )
    }

    fn stamps_from(
        value: Option<&Value>,
        values: &Map<String, Value>,
        default: Stamp,
    ) -> BTreeMap<String, Stamp> {
        values
            .keys()
            .map(|field| {
                let stamp = value
                    .and_then(|v| v.get(field))
                    .and_then(|s| {
                        Some(Stamp {
                            by: parse_side(s.get("by")?.as_str()?)?,
                            at: s.get("at")?.as_i64()?,
                        })
                    })
                    .unwrap_or(default);
                (field.clone(), stamp)
            })
            .collect()
    }
}

/// Whether `incoming` replaces `stored` for a field whose priority side is `priority`.
fn wins(priority: Option<Side>, incoming: (Stamp, &Value), stored: (Stamp, &Value)) -> bool {
    let rank = |s: Side| matches!(s, Side::Remote) as u8;
    if let Some(p) = priority {
        match (incoming.0.by == p, stored.0.by == p) {
            (true, false) => return true,
            (false, true) => return false,
            _ => {}
        }
    }
    let key = |(s, v): (Stamp, &Value)| (s.at, rank(s.by), v.to_string());
    key(incoming) > key(stored)
}

fn customer_priority(field: &str) -> Option<Side> {
    if CUSTOMER_LOCAL_FIELDS.contains(&field) {
        Some(Side::Local)
    } else if CUSTOMER_REMOTE_FIELDS.contains(&field) {
        Some(Side::Remote)
    } else {
        None
    }
}

fn address_priority(field: &str) -> Option<Side> {
    if ADDRESS_LOCAL_FIELDS.contains(&field) {
        Some(Side::Local)
    } else if ADDRESS_REMOTE_FIELDS.contains(&field) {
        Some(Side::Remote)
    } else {
        None
    }
}

/// A customer with its addresses (by address id).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Customer {
    pub id: String,
    pub fields: Fields,
    pub addresses: BTreeMap<String, Fields>,
}

/// A request refused: `code` names the problem.
pub type CustomerInvalid = crate::refusal::Refusal;

use crate::refusal::refuse as invalid;

fn check_id(value: Option<&Value>, what: &str) -> Result<String, CustomerInvalid> {
    match value {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 && !s.contains('/') => {
            Ok(s.clone())
        }
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => invalid(
            "invalid_id",
            format!("{what} id must be a string of 1 to 128 bytes"),
        ),
    }
}

impl Customer {
    /// The last write of any field.
    pub fn updated_at(&self) -> i64 {
        self.fields
            .stamps
            .values()
            .chain(self.addresses.values().flat_map(|a| a.stamps.values()))
            .map(|s| s.at)
            .max()
            .unwrap_or(0)
    }

    /// The time of the last field written by `side`, if any.
    pub fn last_write_by(&self, side: Side) -> Option<i64> {
        self.fields
            .stamps
            .values()
            .chain(self.addresses.values().flat_map(|a| a.stamps.values()))
            .filter(|s| s.by == side)
            .map(|s| s.at)
            .max()
    }

    /// Who wrote last (seed 004's `modifiedBy`).
    pub fn modified_by(&self) -> Side {
        self.fields
            .stamps
            .values()
            .chain(self.addresses.values().flat_map(|a| a.stamps.values()))
            .max_by_key(|s| s.at)
            .map_or(Side::Remote, |s| s.by)
    }

    /// Merges another copy or a write, field by field; returns whether anything changed.
    pub fn merge(&mut self, incoming: &Customer) -> bool {
        let mut changed = self.fields.merge(&incoming.fields, &customer_priority);
        for (id, address) in &incoming.addresses {
            changed |= self
                .addresses
                .entry(id.clone())
                .or_default()
                .merge(address, &address_priority);
        }
        changed
    }

    /// The API form: the fields, `addresses`, `modifiedBy`, `updatedAt`, and `sync` with
    /// every field's stamp (what the other tier merges by).
    pub fn to_json(&self) -> Value {
        let mut body = self.fields.values.clone();
        body.insert("id".into(), json!(self.id));
        let addresses: Vec<Value> = self
            .addresses
            .iter()
            .map(|(id, a)| {
                let mut v = a.values.clone();
                v.insert("id".into(), json!(id));
                Value::Object(v)
            })
            .collect();
        body.insert("addresses".into(), Value::Array(addresses));
        body.insert("modifiedBy".into(), json!(side_name(self.modified_by())));
        body.insert("updatedAt".into(), json!(iso8601(self.updated_at())));
        let address_stamps: Map<String, Value> = self
            .addresses
            .iter()
            .map(|(id, a)| (id.clone(), a.stamps_json()))
            .collect();
        body.insert(
            "sync".into(),
            json!({"fields": self.fields.stamps_json(), "addresses": address_stamps}),
        );
        Value::Object(body)
    }

    /// Reads a customer as a client or the other tier sends it. Fields without a stamp in
    /// `sync` get `(modifiedBy or default_side, updatedAt or now)`.
    pub fn from_json(
        value: &Value,
        default_side: Side,
        now: i64,
    ) -> Result<Customer, CustomerInvalid> {
        let Value::Object(o) = value else {
            return invalid("invalid_body", "a customer must be a JSON object");
        };
        if value.to_string().len() > MAX_CUSTOMER_BYTES {
            return invalid(
                "invalid_body",
                format!("a customer is at most {MAX_CUSTOMER_BYTES} bytes"),
            );
        }
        let id = check_id(o.get("id"), "customer")?;
        let by = match o.get("modifiedBy") {
            None | Some(Value::Null) => default_side,
            Some(Value::String(s)) => parse_side(s).ok_or_else(|| CustomerInvalid {
                code: "invalid_modified_by",
                message: format!("modifiedBy must be LOCAL or REMOTE, got {s:?}"),
            })?,
            Some(_) => return invalid("invalid_modified_by", "modifiedBy must be LOCAL or REMOTE"),
        };
        let at = o
            .get("updatedAt")
            .and_then(Value::as_str)
            .and_then(parse_iso8601)
            .unwrap_or(now);
        let default = Stamp { by, at };
        let sync = o.get("sync");
        let values: Map<String, Value> = o
            .iter()
            .filter(|(k, _)| !META.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (field, value) in &values {
            if let Value::String(s) = value {
                if s.len() > MAX_TEXT * 4 {
                    return invalid("invalid_field", format!("{field} is too long"));
                }
            }
        }
        let stamps = Fields::stamps_from(sync.and_then(|s| s.get("fields")), &values, default);
        let mut addresses = BTreeMap::new();
        match o.get("addresses") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) if list.len() <= 50 => {
                for a in list {
                    let Value::Object(a) = a else {
                        return invalid("invalid_address", "each address must be an object");
                    };
                    let aid = check_id(a.get("id"), "address")?;
                    let values: Map<String, Value> = a
                        .iter()
                        .filter(|(k, _)| *k != "id")
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    let stamps = Fields::stamps_from(
                        sync.and_then(|s| s.get("addresses"))
                            .and_then(|s| s.get(&aid)),
                        &values,
                        default,
                    );
                    addresses.insert(aid, Fields { values, stamps });
                }
            }
            Some(_) => {
                return invalid(
                    "invalid_address",
                    "addresses must be an array of at most 50",
                )
            }
        }
        Ok(Customer {
            id,
            fields: Fields { values, stamps },
            addresses,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(id: &str, by: Side, at: i64, fields: Value) -> Customer {
        let mut v = fields;
        v["id"] = json!(id);
        v["modifiedBy"] = json!(side_name(by));
        v["updatedAt"] = json!(iso8601(at));
        Customer::from_json(&v, by, 0).unwrap()
    }

    #[test]
    fn fields_follow_their_priority_side() {
        let mut c = write(
            "c1",
            Side::Remote,
            1000,
            json!({"firstName": "Ana", "isBanned": false}),
        );
        // The store bans (its field) and renames (not its field, but nobody remote set it later).
        c.merge(&write(
            "c1",
            Side::Local,
            2000,
            json!({"isBanned": true, "firstName": "Anita"}),
        ));
        assert_eq!(c.fields.values["isBanned"], true);
        assert_eq!(
            c.fields.values["firstName"], "Ana",
            "REMOTE's firstName stands"
        );
        // The channel cannot unban, even later.
        c.merge(&write(
            "c1",
            Side::Remote,
            3000,
            json!({"isBanned": false, "lastName": "Gil"}),
        ));
        assert_eq!(c.fields.values["isBanned"], true);
        assert_eq!(c.fields.values["lastName"], "Gil");
        let back = Customer::from_json(&c.to_json(), Side::Local, 0).unwrap();
        assert_eq!(back, c);
    }

    /// Random writes merged in two different orders end the same (the property both tiers
    /// rely on), addresses included.
    #[test]
    fn concurrent_edits_converge_whatever_the_order() {
        let fields = ["firstName", "email", "isBanned", "phone", "internalNotes"];
        let address_fields = ["latitude", "street", "floor"];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _round in 0..200 {
            let writes: Vec<Customer> = (0..12)
                .map(|_| {
                    let by = if next() % 2 == 0 {
                        Side::Local
                    } else {
                        Side::Remote
                    };
                    let at = (next() % 5) as i64;
                    let f = fields[(next() % fields.len() as u64) as usize];
                    let af = address_fields[(next() % address_fields.len() as u64) as usize];
                    let value = json!(next() % 3);
                    write(
                        "c",
                        by,
                        at,
                        json!({f: value, "addresses": [{"id": "home", af: value}]}),
                    )
                })
                .collect();
            let mut forward = Customer::default();
            writes.iter().for_each(|w| {
                forward.merge(w);
            });
            let mut backward = Customer::default();
            writes.iter().rev().for_each(|w| {
                backward.merge(w);
            });
            // And twice over: merging is idempotent.
            writes.iter().for_each(|w| {
                backward.merge(w);
            });
            assert_eq!(forward.fields, backward.fields);
            assert_eq!(forward.addresses, backward.addresses);
        }
    }
}
