//! The product catalog (seed 003 §5.2 `products`): master data, per tenant, keyed by seed
//! 000's numeric `productId` (the stock key), with a version for optimistic concurrency.
//!
//! Conflict rule (seed 003 §6.4), the same on every tier: a revision replaces the stored
//! one when its `version` is higher, or when versions are equal and its server timestamp
//! (`lastModifiedAt`) is later ([`Revision::wins_over`]). A local edit always makes
//! `version + 1`, so an edit made on a stale copy loses to the edit it did not see.

use serde_json::{json, Map, Value};

use crate::money;
use crate::stock::{type_name, ProductId, MAX_PRODUCT_ID};
use crate::time::{iso8601, parse_iso8601};

/// Largest `metadata` object, as JSON text.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

pub const PRODUCT_CREATED: &str = "product:created";
pub const PRODUCT_UPDATED: &str = "product:updated";
pub const PRODUCT_DELETED: &str = "product:deleted";

/// A request refused: `code` names the problem.
pub type ProductInvalid = crate::refusal::Refusal;

use crate::refusal::refuse as invalid;

/// The editable fields of a product (amounts in minor units).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProductFields {
    pub sku: Option<String>,
    pub name: String,
    pub category: Option<String>,
    pub price: i64,
    pub cost: Option<i64>,
    pub barcode: Option<String>,
    /// A JSON object, as text.
    pub metadata: Option<String>,
}

/// One stored revision of a product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub fields: ProductFields,
    pub version: i64,
    /// The server time of the last change: the tie-breaker between equal versions.
    pub last_modified_at: i64,
    pub last_modified_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// A deleted product stays as a tombstone so that the deletion syncs.
    pub deleted: bool,
}

/// The part of a revision the conflict rule compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revision {
    pub version: i64,
    pub last_modified_at: i64,
}

impl Revision {
    /// Seed 003 §6.4: higher version wins; equal versions, the later server time.
    pub fn wins_over(self, stored: Revision) -> bool {
        (self.version, self.last_modified_at) > (stored.version, stored.last_modified_at)
    }
}

impl Product {
    pub fn revision(&self) -> Revision {
        Revision {
            version: self.version,
            last_modified_at: self.last_modified_at,
        }
    }

    /// The API form (seed 003 field names).
    pub fn to_json(&self) -> Value {
        let f = &self.fields;
        json!({
            "id": self.id,
            "productId": self.id,
            "sku": f.sku,
            "name": f.name,
            "category": f.category,
            "price": money::to_json(f.price),
            "cost": f.cost.map(money::to_json),
            "barcode": f.barcode,
            "metadata": f.metadata.as_deref()
                .and_then(|m| serde_json::from_str::<Value>(m).ok()),
            "version": self.version,
            "lastModifiedAt": iso8601(self.last_modified_at),
            "lastModifiedBy": self.last_modified_by,
            "createdAt": iso8601(self.created_at),
            "updatedAt": iso8601(self.updated_at),
            "deleted": self.deleted,
        })
    }

    /// Reads a revision in its API form (from the other tier), keeping its version and
    /// times.
    pub fn from_json(value: &Value) -> Result<Product, ProductInvalid> {
        let Value::Object(o) = value else {
            return invalid("invalid_body", "a product must be a JSON object");
        };
        let id = product_id(o.get("id").or(o.get("productId")))?;
        let deleted = o.get("deleted").and_then(Value::as_bool).unwrap_or(false);
        let fields = if deleted {
            ProductFields {
                name: o
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                ..ProductFields::default()
            }
        } else {
            ProductFields::parse(o, None)?
        };
        let version = match o.get("version").and_then(Value::as_i64) {
            Some(v) if v >= 1 => v,
            _ => return invalid("invalid_version", "version must be a positive integer"),
        };
        let time = |key: &str| -> Result<i64, ProductInvalid> {
            o.get(key)
                .and_then(Value::as_str)
                .and_then(parse_iso8601)
                .ok_or_else(|| ProductInvalid {
                    code: "invalid_timestamp",
                    message: format!("{key} must be an ISO-8601 time"),
                })
        };
        Ok(Product {
            id,
            fields,
            version,
            last_modified_at: time("lastModifiedAt")?,
            last_modified_by: o
                .get("lastModifiedBy")
                .and_then(Value::as_str)
                .map(str::to_owned),
            created_at: time("createdAt")?,
            updated_at: time("updatedAt")?,
            deleted,
        })
    }
}

/// Reads a product id (`1..=MAX_PRODUCT_ID`, a number or its decimal string).
pub fn product_id(value: Option<&Value>) -> Result<ProductId, ProductInvalid> {
    let id = match value {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    match id {
        Some(id) if (1..=MAX_PRODUCT_ID).contains(&id) => Ok(id),
        _ => invalid(
            "invalid_product_id",
            format!("productId must be an integer from 1 to {MAX_PRODUCT_ID}"),
        ),
    }
}

fn text(
    o: &Map<String, Value>,
    key: &str,
    max: usize,
    base: Option<&Option<String>>,
) -> Result<Option<String>, ProductInvalid> {
    match o.get(key) {
        None => Ok(base.cloned().flatten()),
        Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max && !s.chars().any(char::is_control) => {
            Ok(Some(s.clone()))
        }
        Some(v) => invalid(
            "invalid_field",
            format!(
                "{key} must be a string of at most {max} characters without control characters, got {}",
                type_name(v)
            ),
        ),
    }
}

impl ProductFields {
    /// The JSON Schema of the body [`ProductFields::parse`] reads, from the limits it
    /// enforces: `name` and `price` are required for a new product (`whole`), any field
    /// may be left out of a `PATCH`. Money is a JSON number with at most two decimals.
    /// `id`/`productId` (create) and `version` (the optimistic precondition) ride along.
    pub fn schema(whole: bool) -> schemars::Schema {
        let text = |max: usize| {
            serde_json::json!({
                "type": ["string", "null"], "maxLength": max,
                "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
            })
        };
        let money = serde_json::json!({
            "type": ["number", "null"], "minimum": 0,
            "maximum": crate::money::MAX_MONEY / crate::money::SCALE, "multipleOf": 0.01,
        });
        let body = serde_json::json!({
            "type": "object",
            "required": if whole { vec!["name", "price"] } else { Vec::new() },
            "properties": {
                "id": {"type": "integer", "minimum": 1, "maximum": crate::stock::MAX_PRODUCT_ID},
                "version": {"type": "integer", "minimum": 1},
                "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"},
                "price": money,
                "cost": money,
                "sku": text(64),
                "barcode": text(64),
                "category": text(100),
                "metadata": {
                    "type": ["object", "null"],
                    "description": format!("Free-form, at most {MAX_METADATA_BYTES} bytes as JSON."),
                },
            },
        });
        schemars::Schema::try_from(body).expect("an object is a schema")
    }

    /// Reads the editable fields; with `base` (a `PATCH`), absent fields keep its values.
    /// `name` and `price` are required for a new product.
    pub fn parse(
        o: &Map<String, Value>,
        base: Option<&ProductFields>,
    ) -> Result<ProductFields, ProductInvalid> {
        let name = match (o.get("name"), base) {
            (Some(Value::String(s)), _) if !s.trim().is_empty() && s.chars().count() <= 200 => {
                s.clone()
            }
            (None, Some(b)) => b.name.clone(),
            _ => {
                return invalid(
                    "invalid_name",
                    "name is required: a string of 1 to 200 characters",
                )
            }
        };
        let amount = |key: &str, code: &'static str| -> Result<Option<i64>, ProductInvalid> {
            match o.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => money::parse_amount(v, key)
                    .map(Some)
                    .map_err(|message| ProductInvalid { code, message }),
            }
        };
        let price = match (amount("price", "invalid_price")?, base) {
            (Some(p), _) => p,
            (None, Some(b)) if !o.contains_key("price") => b.price,
            _ => return invalid("invalid_price", "price is required: a number ≥ 0"),
        };
        let cost = match (o.contains_key("cost"), base) {
            (false, Some(b)) => b.cost,
            _ => amount("cost", "invalid_cost")?,
        };
        let metadata = match o.get("metadata") {
            None => base.and_then(|b| b.metadata.clone()),
            Some(Value::Null) => None,
            Some(m @ Value::Object(_)) => {
                let text = m.to_string();
                if text.len() > MAX_METADATA_BYTES {
                    return invalid(
                        "invalid_metadata",
                        format!("metadata is larger than {MAX_METADATA_BYTES} bytes"),
                    );
                }
                Some(text)
            }
            Some(v) => {
                return invalid(
                    "invalid_metadata",
                    format!("metadata must be an object, got {}", type_name(v)),
                )
            }
        };
        Ok(ProductFields {
            sku: text(o, "sku", 64, base.map(|b| &b.sku))?,
            name,
            category: text(o, "category", 100, base.map(|b| &b.category))?,
            price,
            cost,
            barcode: text(o, "barcode", 64, base.map(|b| &b.barcode))?,
            metadata,
        })
    }
}

/// A change to the catalog, decided by the writer against the stored revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductWrite {
    /// Create (`id` absent: the next free id) or replace; `if_version` is the optimistic
    /// precondition (`If-Match` / `version`): the write applies only on that version.
    Put {
        id: Option<ProductId>,
        fields: ProductFields,
        if_version: Option<i64>,
        /// `true` for `POST` (create only: an existing id is a conflict).
        create_only: bool,
    },
    /// Merge the listed fields into the stored product.
    Patch {
        id: ProductId,
        fields: Map<String, Value>,
        if_version: Option<i64>,
    },
    Delete {
        id: ProductId,
        if_version: Option<i64>,
    },
    /// A revision from the other tier, taken when it wins ([`Revision::wins_over`]).
    Merge(Vec<Product>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_version_wins_then_later_server_time() {
        let r = |version, last_modified_at| Revision {
            version,
            last_modified_at,
        };
        assert!(r(3, 1).wins_over(r(2, 99)));
        assert!(!r(2, 99).wins_over(r(3, 1)), "a stale version loses");
        assert!(r(2, 10).wins_over(r(2, 9)), "equal versions: later time");
        assert!(
            !r(2, 10).wins_over(r(2, 10)),
            "the same revision changes nothing"
        );
    }

    #[test]
    fn fields_are_checked_and_patches_keep_the_rest() {
        let o = |v: Value| v.as_object().unwrap().clone();
        let f = ProductFields::parse(
            &o(json!({"name":"Café","price":2.5,"sku":"CAF-1","metadata":{"a":1}})),
            None,
        )
        .unwrap();
        assert_eq!((f.price, f.sku.as_deref()), (250, Some("CAF-1")));
        let p = ProductFields::parse(&o(json!({"price": 3})), Some(&f)).unwrap();
        assert_eq!(
            (p.name.as_str(), p.price, p.sku),
            ("Café", 300, f.sku.clone())
        );
        let err = |v| ProductFields::parse(&o(v), None).unwrap_err().code;
        assert_eq!(err(json!({"price": 1})), "invalid_name");
        assert_eq!(err(json!({"name": "x", "price": -1})), "invalid_price");
        assert_eq!(
            err(json!({"name": "x", "price": 1, "metadata": 3})),
            "invalid_metadata"
        );
        assert_eq!(
            err(json!({"name": "x", "price": 1, "sku": 3})),
            "invalid_field"
        );
        let product = Product {
            id: 7,
            fields: f,
            version: 2,
            last_modified_at: 5000,
            last_modified_by: Some("u1".into()),
            created_at: 1000,
            updated_at: 5000,
            deleted: false,
        };
        assert_eq!(Product::from_json(&product.to_json()).unwrap(), product);
    }
}
