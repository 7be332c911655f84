//! The store's register (`/` on the edge): sign-in (works offline, against the users the
//! edge mirrors), product search and grid, cart, sell, refunds, the day's orders with
//! their daily numbers, and the sync badge — one page over the browser SDK, served by the
//! binary ([`stocky_server::ui`]), working with the hub down.

use stocky_server::asset;
use stocky_server::ui::Asset;

/// The register's files.
pub const PAGES: &[Asset] = &[
    asset!("/", "ui/index.html"),
    asset!("/ui/register.js", "ui/register.js"),
];
