//! Who may do what: roles, the role × action table, access tokens (JWT, HS256) and the
//! event → module map that routes events to connections (seed 002).
//!
//! Everything here is pure: the server supplies secrets, clocks and storage.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// A user's or key's role, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Manager,
    Cashier,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Manager, Role::Cashier];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Cashier => "cashier",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Owners and admins see every site of their tenant and admin-only events.
    pub fn is_admin(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }

    /// Whether this role has at least the powers of `other` (owner and admin rank alike).
    pub fn at_least(self, other: Role) -> bool {
        let rank = |r: Role| match r {
            Role::Owner | Role::Admin => 2,
            Role::Manager => 1,
            Role::Cashier => 0,
        };
        rank(self) >= rank(other)
    }
}

/// Everything a credential can be asked to do. See [`allows`] and `docs/security.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read stock, status, document collections; receive events.
    Read,
    /// `stock:subtract`: sell.
    Sell,
    /// `stock:add`: receive goods, returns.
    ReceiveStock,
    /// `stock:update`, `stock:sync`: set absolute stock (counts, corrections).
    SetStock,
    /// Create, change and delete documents (catalog, customers, …).
    WriteDocuments,
    /// Read full and incremental backups.
    ReadBackups,
    /// Restore, compare and delete databases.
    RestoreBackups,
    /// Create and list users and sites; create and revoke API keys.
    ManageAccess,
    /// Create, change and delete products of the catalog.
    EditCatalog,
    /// Cancel (void) a sale: everything not refunded goes back to stock.
    VoidSale,
    /// Read the audit log.
    ReadAudit,
}

/// What a stock command needs the role to allow.
pub fn stock_action(op: crate::stock::StockOp) -> Action {
    use crate::stock::StockOp;
    match op {
        StockOp::Subtract => Action::Sell,
        StockOp::Add => Action::ReceiveStock,
        StockOp::Update | StockOp::Sync => Action::SetStock,
    }
}

/// The role × action table: owner and admin may do everything; a manager runs a shop
/// (stock, catalog, backups to read); a cashier sells and reads.
pub fn allows(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::Owner | Role::Admin => true,
        Role::Manager => matches!(
            action,
            Read | Sell
                | ReceiveStock
                | SetStock
                | WriteDocuments
                | ReadBackups
                | EditCatalog
                | VoidSale
        ),
        Role::Cashier => matches!(action, Read | Sell),
    }
}

/// The claims of an access token: seed 003's `{userId, tenantId, sedeId, role, exp}` plus
/// the enabled modules and the session it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub user_id: String,
    pub tenant_id: String,
    /// Home site; `None` means every site of the tenant.
    pub site_id: Option<String>,
    pub role: Role,
    /// Enabled modules; `None` means all.
    pub modules: Option<Vec<String>>,
    /// Session id: logout revokes it.
    pub sid: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    pub iat: i64,
}

/// Why a token was not accepted (deliberately coarse: callers answer 401 without detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

/// Signs `claims` as a compact JWT (HS256).
pub fn sign(claims: &Claims, secret: &[u8]) -> String {
    let payload = serde_json::to_vec(claims).expect("claims serialise");
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Verifies a JWT's signature (constant time) and expiry against `now_secs`.
pub fn verify(token: &str, secret: &[u8], now_secs: i64) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    let mut m = mac(secret);
    m.update(header.as_bytes());
    m.update(b".");
    m.update(payload.as_bytes());
    m.verify_slice(&signature)
        .map_err(|_| TokenError::BadSignature)?;
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed)?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
    if header["alg"] != "HS256" {
        return Err(TokenError::Malformed);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    if claims.exp <= now_secs {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// A site's users changed at the hub (`{"userId"}`, scoped to the site): its store node
/// refreshes its copy of them at once, instead of at its next slow poll.
pub const USER_CHANGED_EVENT: &str = "user:changed";

/// Which module an event belongs to (seed 002's `events.config`), and which events only
/// some roles receive: owners and admins for seed 001's `SALE_CREATED` (and the other sale
/// events), managers and up for `stock:low` and `user:changed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleMap {
    /// Exact event names.
    modules: HashMap<String, String>,
    /// Families, keyed by the part before `:` (`stock` for `stock:*`), so that routing
    /// (on the fan-out's hot path) looks them up without allocating.
    families: HashMap<String, String>,
    /// Events with a least role; everyone else's connections never see them.
    least_role: Vec<(String, Role)>,
}

impl Default for ModuleMap {
    /// Seed 002's example map, plus Stocky's own event families.
    fn default() -> Self {
        let pairs = [
            ("order_created", "orders"),
            ("order_updated", "orders"),
            ("transaction_approved", "transactions"),
            ("transaction_failed", "transactions"),
            ("chat_message", "chat"),
            ("SALE_CREATED", "sales"),
            ("SALE_UPDATED", "sales"),
            ("SALE_CANCELLED", "sales"),
            ("product:*", "catalog"),
            ("stock:*", "inventory"),
            ("inventory:*", "inventory"),
            ("transfer:*", "inventory"),
            ("order:*", "orders"),
            ("customer:*", "customers"),
            ("menu:*", "menu"),
            ("config:*", "menu"),
            ("TRANSFER_OUT", "inventory"),
            ("TRANSFER_IN", "inventory"),
            ("sync:*", "documents"),
            ("backup:*", "documents"),
        ];
        let map = ModuleMap {
            modules: HashMap::new(),
            families: HashMap::new(),
            least_role: [
                ("SALE_CREATED", Role::Admin),
                ("SALE_UPDATED", Role::Admin),
                ("SALE_CANCELLED", Role::Admin),
                ("stock:negative", Role::Admin),
                ("site:status", Role::Admin),
                ("stock:low", Role::Manager),
                (USER_CHANGED_EVENT, Role::Manager),
            ]
            .map(|(e, r)| (e.to_owned(), r))
            .to_vec(),
        };
        map.with(pairs.iter().map(|(e, m)| (e.to_string(), m.to_string())))
    }
}

impl ModuleMap {
    /// Adds or replaces entries (`event` may be a family like `stock:*`).
    pub fn with(mut self, entries: impl IntoIterator<Item = (String, String)>) -> Self {
        for (event, module) in entries {
            match event.strip_suffix(":*") {
                Some(family) => self.families.insert(family.to_owned(), module),
                None => self.modules.insert(event, module),
            };
        }
        self
    }

    /// The module of `event`: an exact entry, else its family (`stock:*`), else none
    /// (an event without a module reaches every connection its scope allows).
    pub fn module_of(&self, event: &str) -> Option<&str> {
        if let Some(m) = self.modules.get(event) {
            return Some(m);
        }
        let (family, _) = event.split_once(':')?;
        self.families.get(family).map(String::as_str)
    }

    pub fn admin_only(&self, event: &str) -> bool {
        self.least_role(event) == Some(Role::Admin)
    }

    /// The least role that receives `event`, if it is restricted.
    pub fn least_role(&self, event: &str) -> Option<Role> {
        self.least_role
            .iter()
            .find(|(e, _)| e == event)
            .map(|(_, r)| *r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            user_id: "u1".into(),
            tenant_id: "t1".into(),
            site_id: Some("s1".into()),
            role: Role::Cashier,
            modules: Some(vec!["inventory".into()]),
            sid: "sess".into(),
            exp,
            iat: 0,
        }
    }

    #[test]
    fn tokens_round_trip_and_fail_closed() {
        let token = sign(&claims(2000), b"secret");
        assert_eq!(verify(&token, b"secret", 1000).unwrap(), claims(2000));
        assert_eq!(
            verify(&token, b"other", 1000),
            Err(TokenError::BadSignature)
        );
        assert_eq!(verify(&token, b"secret", 2000), Err(TokenError::Expired));
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                role: Role::Owner,
                ..claims(2000)
            })
            .unwrap(),
        );
        parts[1] = &forged;
        assert_eq!(
            verify(&parts.join("."), b"secret", 1000),
            Err(TokenError::BadSignature)
        );
        assert_eq!(verify("a.b", b"secret", 0), Err(TokenError::Malformed));
    }

    #[test]
    fn role_table() {
        assert!(allows(Role::Cashier, Action::Sell) && allows(Role::Cashier, Action::Read));
        for action in [
            Action::SetStock,
            Action::WriteDocuments,
            Action::ManageAccess,
            Action::RestoreBackups,
        ] {
            assert!(!allows(Role::Cashier, action), "{action:?}");
        }
        assert!(
            allows(Role::Manager, Action::SetStock) && !allows(Role::Manager, Action::ManageAccess)
        );
        assert!(allows(Role::Admin, Action::RestoreBackups));
    }

    #[test]
    fn module_map_uses_exact_entries_then_families() {
        let map = ModuleMap::default();
        assert_eq!(map.module_of("order_created"), Some("orders"));
        assert_eq!(map.module_of("stock:subtract"), Some("inventory"));
        assert_eq!(map.module_of("unmapped"), None);
        assert!(map.admin_only("SALE_CREATED"));
        let custom = map.with([("stock:*".to_string(), "warehouse".to_string())]);
        assert_eq!(custom.module_of("stock:add"), Some("warehouse"));
    }
}
