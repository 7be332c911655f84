//! Server → client frames as typed values, for SDKs and tests that read the protocol.
//!
//! The hub renders these with the encoders in [`super`]; this module is their inverse.
//! Unknown extra fields are ignored (the protocol may add fields), missing optional ones
//! default, so an older SDK keeps working against a newer server.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StockLevel;

/// `welcome`: the first frame of every connection that is not refused at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Welcome {
    pub client_id: String,
    /// The stream head when the connection subscribed; absent before authentication.
    #[serde(default)]
    pub last_event_id: Option<u64>,
    #[serde(default)]
    pub epoch: Option<String>,
    #[serde(default)]
    pub auth_required: bool,
    pub timestamp: String,
}

/// `auth_success` (seed 001): who the connection is, and the head its `prev` chain starts at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthSuccess {
    pub user_id: String,
    pub tenant_id: String,
    #[serde(default)]
    pub site_id: Option<String>,
    pub role: String,
    #[serde(default)]
    pub modules: Option<Vec<String>>,
    pub device_id: String,
    /// When the server will close with 4001 (ISO 8601); `None` for credentials that do not
    /// expire.
    #[serde(default)]
    pub expires_at: Option<String>,
    pub last_event_id: u64,
    pub epoch: String,
}

/// An event's routing scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventScope {
    pub tenant_id: String,
    pub site_id: String,
}

/// A committed change, as every entitled connection but its sender receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventFrame {
    pub id: u64,
    /// The previous event id this connection was entitled to: `prev != lastEventId` is a
    /// real gap.
    pub prev: u64,
    pub epoch: String,
    pub event: String,
    pub data: Value,
    pub client_id: String,
    pub timestamp: String,
    pub scope: EventScope,
    /// The origin's idempotency key (`opId` / `Idempotency-Key`), when it had one: lets a
    /// client recognise its own change in a replay after it reconnected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_id: Option<String>,
}

/// One line of a stock event's `data`: the line as sent plus the resulting `stock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockChange {
    pub product_id: i64,
    /// The amount added or subtracted; absent for absolute sets (`update`, `sync`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
    pub stock: i64,
}

impl EventFrame {
    /// The lines of a `stock:*` event; `None` for other events.
    pub fn stock_changes(&self) -> Option<Vec<StockChange>> {
        if !self.event.starts_with("stock:") {
            return None;
        }
        serde_json::from_value(self.data.clone()).ok()
    }
}

/// What the sender of a committed command receives in place of the echo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ack {
    pub id: u64,
    pub prev: u64,
    pub epoch: String,
    /// The command's event name.
    pub command: String,
    pub data: Value,
    pub client_id: String,
    pub timestamp: String,
    #[serde(default)]
    pub op_id: Option<String>,
    /// A retry of an op already applied: not a new event, outside the stream order.
    #[serde(default)]
    pub duplicate: bool,
}

/// Seed 000's `stock:error` payload (to the sender only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandError {
    pub error: String,
    pub reason: String,
    #[serde(default)]
    pub original_event: Option<String>,
    pub code: String,
    #[serde(default)]
    pub op_id: Option<String>,
}

/// `sync_complete`: the replay is over; `last_event_id` counts skipped events as seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncComplete {
    pub last_event_id: u64,
    pub epoch: String,
    #[serde(default)]
    pub replayed: usize,
}

/// `full_refresh`: the missed events are gone; the whole stock as of `last_event_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FullRefresh {
    pub reason: String,
    pub epoch: String,
    pub last_event_id: u64,
    pub stock: Vec<StockLevel>,
    pub timestamp: String,
}

/// Any frame the server sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    Welcome(Welcome),
    AuthSuccess(AuthSuccess),
    /// `auth_error`: the server closes with 1008 after it.
    AuthError {
        error: String,
    },
    Ack(Ack),
    SyncComplete(SyncComplete),
    FullRefresh(FullRefresh),
    Pong,
    Event(EventFrame),
    /// `stock:error` for one of this connection's messages.
    CommandError(CommandError),
}

/// Why a text frame is not a server message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unknown frame type {0:?}")]
    UnknownType(String),
    #[error("a frame needs a \"type\" or an \"event\"")]
    Untyped,
}

/// Decodes one text frame of the server.
pub fn parse_server_message(text: &str) -> Result<ServerMessage, DecodeError> {
    let value: Value = serde_json::from_str(text)?;
    let kind = value.get("type").and_then(Value::as_str).map(str::to_owned);
    Ok(match kind.as_deref() {
        Some("welcome") => ServerMessage::Welcome(serde_json::from_value(value)?),
        Some("auth_success") => ServerMessage::AuthSuccess(serde_json::from_value(value)?),
        Some("auth_error") => {
            #[derive(Deserialize)]
            struct Frame {
                error: String,
            }
            let Frame { error } = serde_json::from_value(value)?;
            ServerMessage::AuthError { error }
        }
        Some("ack") => ServerMessage::Ack(serde_json::from_value(value)?),
        Some("sync_complete") => ServerMessage::SyncComplete(serde_json::from_value(value)?),
        Some("full_refresh") => ServerMessage::FullRefresh(serde_json::from_value(value)?),
        Some("pong") => ServerMessage::Pong,
        Some(other) => return Err(DecodeError::UnknownType(other.to_owned())),
        None => match value.get("event").and_then(Value::as_str) {
            Some("stock:error") if value.get("id").is_none() => {
                #[derive(Deserialize)]
                struct Frame {
                    data: CommandError,
                }
                let Frame { data } = serde_json::from_value(value)?;
                ServerMessage::CommandError(data)
            }
            Some(_) => ServerMessage::Event(serde_json::from_value(value)?),
            None => return Err(DecodeError::Untyped),
        },
    })
}
