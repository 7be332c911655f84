//! Stocky's I/O-free heart: the domain types, the wire protocol and the rules that every
//! tier (hub, edge, SDK) must agree on.
//!
//! Nothing in this crate touches a socket, a file or a clock it was not handed, so every
//! rule here is unit-testable and shared verbatim by every backend.

pub mod accounts;
pub mod api;
pub mod auth;
pub mod catalog;
pub mod customers;
pub mod documents;
pub mod money;
pub mod orders;
pub mod protocol;
pub mod refusal;
pub mod sales;
pub mod stock;
pub mod sync_rules;
pub mod time;
pub mod transfers;

/// The tenant every hub has from its first start; real tenants arrive with authentication.
pub const DEFAULT_TENANT: &str = "default";
/// The site (shop, sede) every tenant has from its first start.
pub const DEFAULT_SITE: &str = "default";
/// The site of events that concern the whole tenant (catalog changes): every connection of
/// the tenant may receive them. No real site can have this id (site ids start with a letter
/// or digit).
pub const TENANT_WIDE: &str = "*";
