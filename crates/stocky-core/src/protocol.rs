//! The WebSocket wire protocol shared by hub, edge and SDKs (see `docs/protocol.md`).
//!
//! Client → server: seed 000 commands `{"event":"stock:…","data":[…]}` (optionally with an
//! `opId` for idempotent retries), and control messages with a `type`: `request_sync`,
//! `ping`. Server → client: event frames (`id`, `prev`, `epoch`, `event`, `data`,
//! `clientId`, `timestamp`, `scope`), and control frames with a `type`: `welcome`, `ack`,
//! `sync_complete`, `full_refresh`, `pong`; errors use seed 000's `stock:error` event.
//!
//! Encoding lives here so that every frame shape is written exactly once; [`server`]
//! decodes the server's frames into typed values, [`connect`] renders what a client sends,
//! [`close`] names the close codes and what a client does about each.

pub mod close;
pub mod connect;
pub mod server;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::stock::{InvalidCommand, Movement, StockCommand, StockOp};
use crate::time::iso8601;

/// Most bytes an `opId` may have.
pub const MAX_OP_ID_LEN: usize = 128;

/// A parsed client message.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientMessage {
    /// A seed 000 stock command; `op_id` makes a retry idempotent.
    Command {
        command: StockCommand,
        op_id: Option<String>,
    },
    /// Replay everything after `last_event_id` (seed 002 `request_sync`).
    RequestSync {
        last_event_id: u64,
        epoch: Option<String>,
    },
    /// Application-level keep-alive for browsers (answered with `pong`).
    Ping,
    /// Seed 001's handshake: `{"type":"auth","token":"…","deviceId":"…"}`.
    Auth {
        token: String,
        device_id: Option<String>,
    },
}

/// Why a client message was refused before reaching the writer: the `error` and `reason`
/// of the resulting `stock:error`, and the `originalEvent` when one could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub error: &'static str,
    pub code: &'static str,
    pub reason: String,
    pub original_event: Option<String>,
}

impl ProtocolError {
    fn new(error: &'static str, code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            error,
            code,
            reason: reason.into(),
            original_event: None,
        }
    }
}

/// Parses one text frame (levels 1 and 2 of seed 000's validation).
/// The `opId` of a message that could not be parsed as a command, when it has a valid
/// one: refusals echo it (protocol §2.3), so the client can match them to what it sent.
pub fn echoed_op_id(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    value
        .get("opId")?
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= MAX_OP_ID_LEN)
        .map(str::to_owned)
}

pub fn parse_client_message(text: &str) -> Result<ClientMessage, ProtocolError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ProtocolError::new("Invalid JSON", "invalid_json", e.to_string()))?;
    let Value::Object(obj) = &value else {
        return Err(ProtocolError::new(
            "Invalid message format",
            "invalid_format",
            "a message must be a JSON object with an \"event\" or a \"type\"",
        ));
    };
    if let Some(event) = obj.get("event") {
        let Some(name) = event.as_str() else {
            return Err(ProtocolError::new(
                "Invalid message format",
                "invalid_format",
                "\"event\" must be a string",
            ));
        };
        let with_event = |mut e: ProtocolError| {
            e.original_event = Some(name.to_owned());
            e
        };
        let Some(op) = StockOp::from_event(name) else {
            return Err(with_event(ProtocolError::new(
                "Unknown event",
                "unknown_event",
                format!("unknown event {name:?}; expected one of stock:update, stock:add, stock:subtract, stock:sync"),
            )));
        };
        let command = StockCommand::parse(op, "data", obj.get("data")).map_err(
            |InvalidCommand(reason)| {
                with_event(ProtocolError::new(
                    "Validation failed",
                    "invalid_data",
                    reason,
                ))
            },
        )?;
        let op_id = match obj.get("opId") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_OP_ID_LEN => Some(s.clone()),
            Some(_) => {
                return Err(with_event(ProtocolError::new(
                    "Validation failed",
                    "invalid_op_id",
                    format!("opId must be a non-empty string of at most {MAX_OP_ID_LEN} bytes"),
                )))
            }
        };
        return Ok(ClientMessage::Command { command, op_id });
    }
    match obj.get("type").and_then(Value::as_str) {
        Some("ping") => Ok(ClientMessage::Ping),
        Some("auth") => {
            let token = obj
                .get("token")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    ProtocolError::new(
                        "Invalid message format",
                        "invalid_format",
                        "auth needs a \"token\" string",
                    )
                })?;
            let device_id = obj
                .get("deviceId")
                .and_then(Value::as_str)
                .map(str::to_owned);
            Ok(ClientMessage::Auth {
                token: token.to_owned(),
                device_id,
            })
        }
        Some("request_sync") => {
            let last_event_id = match obj.get("lastEventId") {
                None | Some(Value::Null) => 0,
                Some(v) => v.as_u64().ok_or_else(|| {
                    ProtocolError::new(
                        "Invalid message format",
                        "invalid_format",
                        "lastEventId must be a non-negative integer",
                    )
                })?,
            };
            let epoch = obj.get("epoch").and_then(Value::as_str).map(str::to_owned);
            Ok(ClientMessage::RequestSync {
                last_event_id,
                epoch,
            })
        }
        Some(other) => Err(ProtocolError::new(
            "Invalid message format",
            "unknown_type",
            format!("unknown message type {other:?}; expected auth, request_sync or ping"),
        )),
        None => Err(ProtocolError::new(
            "Invalid message format",
            "invalid_format",
            "a message must have an \"event\" (a stock command) or a \"type\"",
        )),
    }
}

/// Event routing scope (seed 002): every event belongs to a tenant and a site.
#[derive(Serialize, Debug, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub struct Scope<'a> {
    pub tenant_id: &'a str,
    pub site_id: &'a str,
}

/// The `data` of a stock event: each line as sent, plus the resulting `stock`.
pub fn stock_event_data(op: StockOp, movements: &[Movement]) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Line {
        product_id: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        quantity: Option<i64>,
        stock: i64,
    }
    let lines: Vec<Line> = movements
        .iter()
        .map(|m| Line {
            product_id: m.product_id,
            quantity: (!op.is_absolute()).then_some(m.amount),
            stock: m.after,
        })
        .collect();
    serde_json::to_string(&lines).expect("serialising plain structs cannot fail")
}

/// Everything an event frame is made of; `data` is already-serialised JSON.
#[derive(Debug, Clone, Copy)]
pub struct EventParts<'a> {
    pub id: u64,
    /// The previous event id this connection was entitled to.
    pub prev: u64,
    pub epoch: &'a str,
    pub event: &'a str,
    pub data: &'a str,
    pub client_id: &'a str,
    pub timestamp_ms: i64,
    pub scope: Scope<'a>,
    /// The origin's idempotency key, when it had one (lets a client recognise its own
    /// change in a replay).
    pub op_id: Option<&'a str>,
}

fn raw(json: &str) -> &RawValue {
    // `data` is produced by this crate's own serialisers or read back from the event log,
    // which only ever stores what they produced.
    serde_json::from_str(json)
        .unwrap_or_else(|_| serde_json::from_str("null").expect("\"null\" is valid JSON"))
}

/// `{"id","prev","epoch","event","data","clientId","timestamp","scope"}`: what every other
/// entitled client receives for a committed change.
pub fn encode_event(p: &EventParts<'_>) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Frame<'a> {
        id: u64,
        prev: u64,
        epoch: &'a str,
        event: &'a str,
        data: &'a RawValue,
        client_id: &'a str,
        timestamp: String,
        scope: Scope<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        op_id: Option<&'a str>,
    }
    to_json(&Frame {
        id: p.id,
        prev: p.prev,
        epoch: p.epoch,
        event: p.event,
        data: raw(p.data),
        client_id: p.client_id,
        timestamp: iso8601(p.timestamp_ms),
        scope: p.scope,
        op_id: p.op_id,
    })
}

/// `{"type":"ack",…}`: what the sender gets in place of its own event's echo. The event
/// name travels as `command`, not `event`, so that a seed 000 client — which dispatches on
/// `event` — never mistakes its own change for a broadcast (echo prevention).
pub fn encode_ack(p: &EventParts<'_>, duplicate: bool) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Ack<'a> {
        r#type: &'static str,
        id: u64,
        ids: [u64; 1],
        prev: u64,
        epoch: &'a str,
        command: &'a str,
        data: &'a RawValue,
        client_id: &'a str,
        timestamp: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        op_id: Option<&'a str>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    }
    to_json(&Ack {
        r#type: "ack",
        id: p.id,
        ids: [p.id],
        prev: p.prev,
        epoch: p.epoch,
        command: p.event,
        data: raw(p.data),
        client_id: p.client_id,
        timestamp: iso8601(p.timestamp_ms),
        op_id: p.op_id,
        duplicate,
    })
}

/// Seed 000's `stock:error`, sent to the command's sender only.
pub fn encode_error(
    e: &ProtocolError,
    op_id: Option<&str>,
    client_id: &str,
    now_ms: i64,
) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Data<'a> {
        error: &'a str,
        reason: &'a str,
        original_event: Option<&'a str>,
        code: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        op_id: Option<&'a str>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Frame<'a> {
        event: &'static str,
        data: Data<'a>,
        timestamp: String,
        client_id: &'a str,
    }
    to_json(&Frame {
        event: "stock:error",
        data: Data {
            error: e.error,
            reason: &e.reason,
            original_event: e.original_event.as_deref(),
            code: e.code,
            op_id,
        },
        timestamp: iso8601(now_ms),
        client_id,
    })
}

/// `{"type":"welcome","clientId","lastEventId","epoch","timestamp"}`; before
/// authentication the stream is not known yet, so `lastEventId` and `epoch` are absent and
/// `authRequired` is true.
pub fn encode_welcome(client_id: &str, stream: Option<(u64, &str)>, now_ms: i64) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Welcome<'a> {
        r#type: &'static str,
        client_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        last_event_id: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        auth_required: bool,
        timestamp: String,
    }
    to_json(&Welcome {
        r#type: "welcome",
        client_id,
        last_event_id: stream.map(|(head, _)| head),
        epoch: stream.map(|(_, epoch)| epoch),
        auth_required: stream.is_none(),
        timestamp: iso8601(now_ms),
    })
}

/// Who a connection authenticated as (`auth_success`).
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct AuthInfo<'a> {
    pub user_id: &'a str,
    pub tenant_id: &'a str,
    pub site_id: Option<&'a str>,
    pub role: &'a str,
    pub modules: Option<&'a [String]>,
    pub device_id: &'a str,
    /// When the session ends (the token's expiry), ISO 8601.
    pub expires_at: Option<String>,
}

/// `{"type":"auth_success",…,"lastEventId","epoch"}` (seed 001).
pub fn encode_auth_success(info: &AuthInfo<'_>, head: u64, epoch: &str) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Frame<'a> {
        r#type: &'static str,
        #[serde(flatten)]
        info: &'a AuthInfo<'a>,
        last_event_id: u64,
        epoch: &'a str,
    }
    to_json(&Frame {
        r#type: "auth_success",
        info,
        last_event_id: head,
        epoch,
    })
}

/// `{"type":"auth_error","error"}` (seed 001); the server closes with 1008 after it.
pub fn encode_auth_error(error: &str) -> String {
    #[derive(Serialize)]
    struct Frame<'a> {
        r#type: &'static str,
        error: &'a str,
    }
    to_json(&Frame {
        r#type: "auth_error",
        error,
    })
}

/// `{"type":"sync_complete","lastEventId","epoch","replayed"}`: the replay is over and
/// live events follow.
pub fn encode_sync_complete(last_event_id: u64, epoch: &str, replayed: usize) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct SyncComplete<'a> {
        r#type: &'static str,
        last_event_id: u64,
        epoch: &'a str,
        replayed: usize,
    }
    to_json(&SyncComplete {
        r#type: "sync_complete",
        last_event_id,
        epoch,
        replayed,
    })
}

/// One product in a `full_refresh` snapshot or a stock listing.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StockLevel {
    pub product_id: i64,
    pub stock: i64,
}

/// `{"type":"full_refresh","reason","epoch","lastEventId","stock":[…]}`: the missed events
/// are gone; here is the whole state as of `lastEventId`, resume from there.
pub fn encode_full_refresh(
    reason: &str,
    epoch: &str,
    last_event_id: u64,
    stock: &[StockLevel],
    now_ms: i64,
) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Frame<'a> {
        r#type: &'static str,
        reason: &'a str,
        epoch: &'a str,
        last_event_id: u64,
        stock: &'a [StockLevel],
        timestamp: String,
    }
    to_json(&Frame {
        r#type: "full_refresh",
        reason,
        epoch,
        last_event_id,
        stock,
        timestamp: iso8601(now_ms),
    })
}

/// `{"type":"pong","timestamp"}`.
pub fn encode_pong(now_ms: i64) -> String {
    format!(r#"{{"type":"pong","timestamp":"{}"}}"#, iso8601(now_ms))
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("serialising plain structs cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stock::StockLine;

    #[test]
    fn parses_commands_and_control_messages() {
        let msg = parse_client_message(
            r#"{"event":"stock:add","data":[{"productId":1,"quantity":2}],"opId":"a1"}"#,
        )
        .unwrap();
        assert_eq!(
            msg,
            ClientMessage::Command {
                command: StockCommand {
                    op: StockOp::Add,
                    lines: vec![StockLine {
                        product_id: 1,
                        amount: 2
                    }]
                },
                op_id: Some("a1".into())
            }
        );
        assert_eq!(
            parse_client_message(r#"{"type":"ping"}"#).unwrap(),
            ClientMessage::Ping
        );
        assert_eq!(
            parse_client_message(r#"{"type":"request_sync","lastEventId":7}"#).unwrap(),
            ClientMessage::RequestSync {
                last_event_id: 7,
                epoch: None
            }
        );
    }

    #[test]
    fn errors_carry_kind_reason_and_original_event() {
        let e = parse_client_message("{nope").unwrap_err();
        assert_eq!((e.error, e.code), ("Invalid JSON", "invalid_json"));
        let e = parse_client_message(r#"{"event":"stock:steal","data":[]}"#).unwrap_err();
        assert_eq!(
            (e.error, e.original_event.as_deref()),
            ("Unknown event", Some("stock:steal"))
        );
        let e = parse_client_message(r#"{"event":"stock:add","data":[]}"#).unwrap_err();
        assert_eq!(e.reason, "data must not be empty");
        assert_eq!(e.original_event.as_deref(), Some("stock:add"));
        let e = parse_client_message(r#"[1]"#).unwrap_err();
        assert_eq!(e.error, "Invalid message format");
    }

    #[test]
    fn event_frame_has_the_documented_shape() {
        let data = stock_event_data(
            StockOp::Add,
            &[Movement {
                product_id: 1,
                amount: 5,
                delta: 5,
                before: Some(1),
                after: 6,
            }],
        );
        let parts = EventParts {
            id: 154,
            prev: 153,
            epoch: "e1",
            event: "stock:add",
            data: &data,
            client_id: "client_1_x",
            timestamp_ms: 1_760_005_800_000,
            scope: Scope {
                tenant_id: "t",
                site_id: "s",
            },
            op_id: None,
        };
        let v: Value = serde_json::from_str(&encode_event(&parts)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id":154,"prev":153,"epoch":"e1","event":"stock:add",
                "data":[{"productId":1,"quantity":5,"stock":6}],"clientId":"client_1_x",
                "timestamp":"2025-10-09T10:30:00.000Z","scope":{"tenantId":"t","siteId":"s"}})
        );
        let ack_text = encode_ack(&parts, false);
        assert!(
            ack_text.starts_with(r#"{"type":"ack""#),
            "type leads: {ack_text}"
        );
        let ack: Value = serde_json::from_str(&ack_text).unwrap();
        assert_eq!(
            (ack["type"].as_str(), ack["id"].as_u64()),
            (Some("ack"), Some(154))
        );
        assert!(ack.get("duplicate").is_none());
        assert!(
            ack.get("event").is_none(),
            "a seed 000 client must not treat its ack as an event"
        );
        assert_eq!(ack["command"], "stock:add");
    }

    #[test]
    fn control_frames_lead_with_their_type() {
        for frame in [
            encode_welcome("c", Some((1, "e")), 0),
            encode_welcome("c", None, 0),
            encode_auth_error("nope"),
            encode_sync_complete(1, "e", 0),
            encode_full_refresh("r", "e", 1, &[], 0),
            encode_pong(0),
        ] {
            assert!(frame.starts_with(r#"{"type":""#), "{frame}");
            serde_json::from_str::<Value>(&frame).unwrap();
        }
    }
}
