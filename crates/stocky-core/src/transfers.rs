//! Transfers between stores (seed 003 §5.3): strong consistency for the one operation that
//! touches two sites.
//!
//! A transfer goes `PENDING` (requested; both sites were online) → `PROCESSING` (the origin
//! approved it after a stock check) → `COMPLETED` (one transaction moved the stock: a
//! `transfer_out` movement at the origin and a `transfer_in` at the destination), or
//! `PENDING` → `REJECTED`. `PROCESSING` is the durable job: a transfer in it is executed
//! when both sites are online, and executing it again does nothing (its movements have
//! ids made from the transfer's, and a completed transfer is never executed twice).

use serde_json::{json, Map, Value};

use crate::stock::{type_name, ProductId, MAX_AMOUNT, MAX_PRODUCT_ID};
use crate::time::iso8601;

/// The event the origin site gets when a transfer is requested.
pub const TRANSFER_REQUESTED: &str = "transfer:requested";
/// Both sites, when the origin approves.
pub const TRANSFER_APPROVED: &str = "transfer:approved";
/// Both sites, when the origin rejects.
pub const TRANSFER_REJECTED: &str = "transfer:rejected";
/// Seed 003: the origin, when the stock left.
pub const TRANSFER_OUT: &str = "TRANSFER_OUT";
/// Seed 003: the destination, when the stock arrived.
pub const TRANSFER_IN: &str = "TRANSFER_IN";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferStatus {
    Pending,
    Processing,
    Completed,
    Rejected,
}

impl TransferStatus {
    pub const ALL: [TransferStatus; 4] = [
        TransferStatus::Pending,
        TransferStatus::Processing,
        TransferStatus::Completed,
        TransferStatus::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TransferStatus::Pending => "PENDING",
            TransferStatus::Processing => "PROCESSING",
            TransferStatus::Completed => "COMPLETED",
            TransferStatus::Rejected => "REJECTED",
        }
    }

    /// Case-insensitive (`pending`, `PENDING`).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
    }
}

/// A transfer as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub id: String,
    pub from_site: String,
    pub to_site: String,
    pub product_id: ProductId,
    pub quantity: i64,
    pub status: TransferStatus,
    pub reason: Option<String>,
    pub requested_by: String,
    pub approved_by: Option<String>,
    pub rejected_by: Option<String>,
    pub rejection_reason: Option<String>,
    pub created_at: i64,
    pub approved_at: Option<i64>,
    pub completed_at: Option<i64>,
    /// Execution attempts that failed (a site offline, the database away).
    pub attempts: i64,
    pub last_error: Option<String>,
}

impl Transfer {
    /// The ids of its two movements: they make executing it twice harmless.
    pub fn movement_ids(&self) -> (String, String) {
        (
            format!("transfer:{}:out", self.id),
            format!("transfer:{}:in", self.id),
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "fromSiteId": self.from_site,
            "toSiteId": self.to_site,
            "productId": self.product_id,
            "quantity": self.quantity,
            "status": self.status.as_str(),
            "reason": self.reason,
            "requestedBy": self.requested_by,
            "approvedBy": self.approved_by,
            "rejectedBy": self.rejected_by,
            "rejectionReason": self.rejection_reason,
            "createdAt": iso8601(self.created_at),
            "approvedAt": self.approved_at.map(iso8601),
            "completedAt": self.completed_at.map(iso8601),
            "attempts": self.attempts,
            "lastError": self.last_error,
        })
    }
}

/// `POST /api/transfers/request`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    pub from_site: String,
    pub to_site: String,
    pub product_id: ProductId,
    pub quantity: i64,
    pub reason: Option<String>,
}

/// A request refused: `code` names the problem.
pub type TransferInvalid = crate::refusal::Refusal;

use crate::refusal::refuse as invalid;

impl TransferRequest {
    /// Reads `{fromSiteId, toSiteId, productId, quantity, reason?}` (seed 003's
    /// `fromSedeId` / `toSedeId` too).
    pub fn parse(o: &Map<String, Value>) -> Result<TransferRequest, TransferInvalid> {
        let site = |keys: [&str; 2]| -> Result<String, TransferInvalid> {
            match keys.iter().find_map(|k| o.get(*k)) {
                Some(Value::String(s)) if !s.is_empty() && s.len() <= 64 => Ok(s.clone()),
                Some(v) => invalid(
                    "invalid_site",
                    format!("{} must be a site id, got {}", keys[0], type_name(v)),
                ),
                None => invalid("invalid_site", format!("{} is required", keys[0])),
            }
        };
        let from_site = site(["fromSiteId", "fromSedeId"])?;
        let to_site = site(["toSiteId", "toSedeId"])?;
        if from_site == to_site {
            return invalid(
                "invalid_site",
                "fromSiteId and toSiteId must be different sites",
            );
        }
        let product_id = match o.get("productId").and_then(Value::as_i64) {
            Some(p) if (1..=MAX_PRODUCT_ID).contains(&p) => p,
            _ => {
                return invalid(
                    "invalid_product_id",
                    format!("productId must be an integer from 1 to {MAX_PRODUCT_ID}"),
                )
            }
        };
        let quantity = match o.get("quantity").and_then(Value::as_i64) {
            Some(q) if q > 0 && q <= MAX_AMOUNT => q,
            _ => {
                return invalid(
                    "invalid_quantity",
                    format!("quantity must be a whole number from 1 to {MAX_AMOUNT}"),
                )
            }
        };
        let reason = match o.get("reason") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.len() <= 500 => Some(s.clone()),
            Some(_) => return invalid("invalid_field", "reason is a string of at most 500 bytes"),
        };
        Ok(TransferRequest {
            from_site,
            to_site,
            product_id,
            quantity,
            reason,
        })
    }
}

/// A change to a transfer, decided by the writer against the stored one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferCommand {
    Request(Box<Transfer>),
    Approve {
        id: String,
        by: String,
    },
    Reject {
        id: String,
        by: String,
        reason: Option<String>,
    },
    /// Move the stock of a `PROCESSING` transfer and complete it.
    Execute {
        id: String,
    },
}

impl TransferCommand {
    pub fn id(&self) -> &str {
        match self {
            TransferCommand::Request(t) => &t.id,
            TransferCommand::Approve { id, .. }
            | TransferCommand::Reject { id, .. }
            | TransferCommand::Execute { id } => id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        let parse = |v: Value| TransferRequest::parse(v.as_object().unwrap());
        let ok = parse(json!({"fromSedeId": "a", "toSiteId": "b", "productId": 1, "quantity": 2}))
            .unwrap();
        assert_eq!((ok.from_site.as_str(), ok.quantity), ("a", 2));
        let code = |v| parse(v).unwrap_err().code;
        assert_eq!(
            code(json!({"fromSiteId": "a", "toSiteId": "a", "productId": 1, "quantity": 1})),
            "invalid_site"
        );
        assert_eq!(
            code(json!({"fromSiteId": "a", "toSiteId": "b", "productId": 1, "quantity": 0})),
            "invalid_quantity"
        );
        assert_eq!(
            code(json!({"fromSiteId": "a", "toSiteId": "b", "quantity": 1})),
            "invalid_product_id"
        );
        assert_eq!(
            TransferStatus::parse("pending"),
            Some(TransferStatus::Pending)
        );
    }
}
