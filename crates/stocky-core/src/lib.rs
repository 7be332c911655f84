//! Stocky's I/O-free heart: the domain types, the wire protocol and the rules that every
//! tier (hub, edge, SDK) must agree on.
//!
//! Nothing in this crate touches a socket, a file or a clock it was not handed, so every
//! rule here is unit-testable and shared verbatim by every backend.

pub mod accounts;
pub mod api;
pub mod auth;
pub mod documents;
pub mod protocol;
pub mod stock;
pub mod sync_rules;
pub mod time;

/// The tenant every hub has from its first start; real tenants arrive with authentication.
pub const DEFAULT_TENANT: &str = "default";
/// The site (shop, sede) every tenant has from its first start.
pub const DEFAULT_SITE: &str = "default";
