//! The browser side, served by the binary itself (no CDN, no build step): the browser SDK
//! at `/sdk/stocky.js` (+ `/sdk/stocky.d.ts`), the look both tiers share under `/ui/`, the
//! API reference at `/docs` (it renders `/api/openapi.json`, see [`crate::openapi`]), a
//! page running seed 000's `StockManager` verbatim at `/examples/stock-manager.html`, and
//! each tier's own pages (the hub's back office, the edge's register), which the tier
//! hands over in [`crate::Wiring::pages`].
//!
//! Invariants:
//! - Every file is compiled into the binary ([`asset!`]); what is served is what was built,
//!   unless `STOCKY_UI_FROM_SOURCE=1` is set, which reads each file from its source path at
//!   every request (for working on the pages without rebuilding; the path only exists on
//!   the machine that built the binary).
//! - Pages run under a strict Content-Security-Policy: scripts, styles and connections to
//!   this origin only (`'self'`, plus `ws:`/`wss:` for the WebSocket), no inline script, no
//!   framing. Credentials never live in a page's URL or markup: the pages sign in over REST
//!   and keep tokens in `localStorage`.
//! - Responses carry an `ETag` (SHA-256 of the body) and `Cache-Control: no-cache`, so a
//!   browser revalidates and an upgraded binary's pages are never mixed with stale ones.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::AppState;

/// One file served at `path`.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// The URL path, e.g. `/` or `/ui/app.css`.
    pub path: &'static str,
    /// The file it was compiled from (absolute, on the building machine).
    pub source: &'static str,
    /// The file's content, compiled in.
    pub body: &'static [u8],
}

/// An [`Asset`] compiled from `file`, relative to the calling crate's manifest directory.
#[macro_export]
macro_rules! asset {
    ($path:literal, $file:literal) => {
        $crate::ui::Asset {
            path: $path,
            source: concat!(env!("CARGO_MANIFEST_DIR"), "/", $file),
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $file)),
        }
    };
}

/// What both tiers serve: the SDK, the shared look and helpers, the seed 000 example.
pub const SHARED: &[Asset] = &[
    asset!("/sdk/stocky.js", "ui/sdk/stocky.js"),
    asset!("/sdk/stocky.d.ts", "ui/sdk/stocky.d.ts"),
    asset!("/ui/app.css", "ui/common/app.css"),
    asset!("/ui/app.js", "ui/common/app.js"),
    asset!("/favicon.svg", "ui/common/favicon.svg"),
    asset!(
        "/examples/stock-manager.html",
        "ui/examples/stock-manager.html"
    ),
    asset!("/examples/stock-manager.js", "ui/examples/stock-manager.js"),
    asset!("/docs", "ui/docs/index.html"),
    asset!("/docs/docs.js", "ui/docs/docs.js"),
    asset!("/docs/docs.css", "ui/docs/docs.css"),
];

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'self'";

/// The routes serving [`SHARED`] and the tier's `pages` (a tier's page wins over a shared
/// file at the same path).
pub fn routes(pages: &'static [Asset]) -> Router<AppState> {
    let mut router = Router::new();
    let mut seen = std::collections::HashSet::new();
    for asset in pages.iter().chain(SHARED) {
        if !seen.insert(asset.path) {
            continue;
        }
        let served = Served::new(asset);
        router = router.route(
            asset.path,
            get(move |headers: HeaderMap| std::future::ready(served.respond(&headers))),
        );
    }
    router
}

/// An asset with what its responses need, computed once.
#[derive(Clone)]
struct Served {
    asset: &'static Asset,
    content_type: &'static str,
    etag: HeaderValue,
}

impl Served {
    fn new(asset: &'static Asset) -> Served {
        Served {
            asset,
            content_type: content_type(asset.source),
            etag: etag(asset.body),
        }
    }

    fn respond(&self, request: &HeaderMap) -> Response {
        if from_source() {
            return match std::fs::read(self.asset.source) {
                Ok(body) => self.body(etag(&body), body),
                Err(e) => (
                    StatusCode::NOT_FOUND,
                    format!(
                        "STOCKY_UI_FROM_SOURCE: cannot read {}: {e}",
                        self.asset.source
                    ),
                )
                    .into_response(),
            };
        }
        if request.get(header::IF_NONE_MATCH) == Some(&self.etag) {
            return (
                StatusCode::NOT_MODIFIED,
                [(header::ETAG, self.etag.clone())],
            )
                .into_response();
        }
        self.body(self.etag.clone(), self.asset.body.to_vec())
    }

    fn body(&self, etag: HeaderValue, body: Vec<u8>) -> Response {
        (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(self.content_type),
                ),
                (header::ETAG, etag),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CSP),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ),
            ],
            body,
        )
            .into_response()
    }
}

/// `STOCKY_UI_FROM_SOURCE=1`: serve the files from their source paths (development).
fn from_source() -> bool {
    static FROM_SOURCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FROM_SOURCE.get_or_init(|| std::env::var("STOCKY_UI_FROM_SOURCE").is_ok_and(|v| v == "1"))
}

fn etag(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header value")
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("ts") => "application/typescript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shared_file_has_a_known_type_and_content() {
        for asset in SHARED {
            assert_ne!(
                content_type(asset.source),
                "application/octet-stream",
                "{}",
                asset.path
            );
            assert!(!asset.body.is_empty(), "{} is empty", asset.path);
        }
    }
}
