//! The Rust SDK for Stocky hubs and edges: typed REST calls ([`Client`]) and a live event
//! subscription ([`Subscription`]) that resumes, detects gaps, reconnects and refreshes its
//! credentials by itself.
//!
//! It owns nothing on the server side: it speaks the protocol of `docs/protocol.md` with the
//! types of [`stocky_core::protocol`] and [`stocky_core::api`], over an HTTP client and a
//! WebSocket client only (no axum, no database driver, no Redis).
//!
//! ```no_run
//! # async fn demo() -> Result<(), stocky_client::ClientError> {
//! use stocky_client::{Client, Start, SubscribeOptions, Update};
//! let client = Client::new("http://127.0.0.1:3000")?;
//! client.login("owner@stocky.local", "secret").await?;
//! let mut live = client.subscribe(SubscribeOptions::new(Start::Now));
//! while let Some(update) = live.next().await {
//!     if let Update::Event(event) = update? {
//!         println!("{} {}", event.id, event.event);
//!     }
//! }
//! # Ok(()) }
//! ```

mod client;
mod error;
mod subscription;

pub use client::{Client, Credential};
pub use error::ClientError;
pub use stocky_core::api;
pub use stocky_core::protocol::server::{
    Ack, AuthSuccess, CommandError, EventFrame, FullRefresh, StockChange,
};
pub use subscription::{Backoff, Start, SubscribeOptions, Subscription, Update};
