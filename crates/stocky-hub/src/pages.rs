//! The hub's back office (`/`): sign-in, live stock per site, the sales feed with its
//! badge, stores and their sync state, transfers, the orders board, users/devices/
//! activation codes and the audit log — one page over the browser SDK, served by the
//! binary ([`stocky_server::ui`]).

use stocky_server::asset;
use stocky_server::ui::Asset;

/// The back office's files.
pub const PAGES: &[Asset] = &[
    asset!("/", "ui/index.html"),
    asset!("/ui/backoffice.js", "ui/backoffice.js"),
];
