//! What a client sends: the upgrade request's query (`?token&deviceId&lastEventId&epoch`)
//! and the client → server messages other than commands' parsing (which is
//! [`super::parse_client_message`], the server's side).
//!
//! Both sides use [`ConnectParams`], so the names of the query parameters exist once.

use serde::Serialize;
use serde_json::Value;

use crate::stock::StockCommand;

/// The WebSocket upgrade's query parameters (`docs/protocol.md` §2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectParams {
    /// A credential: access token, API key or operator token.
    pub token: Option<String>,
    /// The device slot for the one-connection-per-user-and-device rule.
    pub device_id: Option<String>,
    /// Resume after this id (the server replays, or sends `full_refresh`).
    pub last_event_id: Option<u64>,
    /// The epoch `last_event_id` belongs to.
    pub epoch: Option<String>,
}

/// A query parameter the server cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lastEventId must be a non-negative integer")]
pub struct InvalidLastEventId;

impl ConnectParams {
    pub const TOKEN: &'static str = "token";
    pub const DEVICE_ID: &'static str = "deviceId";
    pub const LAST_EVENT_ID: &'static str = "lastEventId";
    pub const EPOCH: &'static str = "epoch";

    /// Reads the parameters from decoded query pairs; unknown keys are ignored, an empty
    /// `token` counts as none.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, InvalidLastEventId> {
        let mut params = ConnectParams::default();
        for (key, value) in pairs {
            match key {
                Self::TOKEN if !value.is_empty() => params.token = Some(value.to_owned()),
                Self::DEVICE_ID => params.device_id = Some(value.to_owned()),
                Self::LAST_EVENT_ID => {
                    params.last_event_id = Some(value.parse().map_err(|_| InvalidLastEventId)?)
                }
                Self::EPOCH => params.epoch = Some(value.to_owned()),
                _ => {}
            }
        }
        Ok(params)
    }

    /// The query string (without `?`), percent-encoded.
    pub fn to_query(&self) -> String {
        let mut out = String::new();
        let mut push = |key: &str, value: &str| {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(key);
            out.push('=');
            percent_encode(value, &mut out);
        };
        if let Some(token) = &self.token {
            push(Self::TOKEN, token);
        }
        if let Some(device) = &self.device_id {
            push(Self::DEVICE_ID, device);
        }
        if let Some(id) = self.last_event_id {
            push(Self::LAST_EVENT_ID, &id.to_string());
            if let Some(epoch) = &self.epoch {
                push(Self::EPOCH, epoch);
            }
        }
        out
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encode(value: &str, out: &mut String) {
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

/// `{"event":"stock:…","data":[…],"opId"}`: a seed 000 command.
pub fn encode_command(command: &StockCommand, op_id: Option<&str>) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Frame<'a> {
        event: &'static str,
        data: Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        op_id: Option<&'a str>,
    }
    to_json(&Frame {
        event: command.op.event_name(),
        data: command.lines_json(),
        op_id,
    })
}

/// `{"type":"auth","token","deviceId"}` (seed 001).
pub fn encode_auth(token: &str, device_id: Option<&str>) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Frame<'a> {
        r#type: &'static str,
        token: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        device_id: Option<&'a str>,
    }
    to_json(&Frame {
        r#type: "auth",
        token,
        device_id,
    })
}

/// `{"type":"request_sync","lastEventId","epoch"}` (seed 002).
pub fn encode_request_sync(last_event_id: u64, epoch: Option<&str>) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Frame<'a> {
        r#type: &'static str,
        last_event_id: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
    }
    to_json(&Frame {
        r#type: "request_sync",
        last_event_id,
        epoch,
    })
}

/// `{"type":"ping"}`.
pub fn encode_ping() -> String {
    r#"{"type":"ping"}"#.to_owned()
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("serialising plain structs cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{parse_client_message, ClientMessage};
    use crate::stock::{StockLine, StockOp};

    #[test]
    fn query_round_trips_and_encodes() {
        let params = ConnectParams {
            token: Some("a.b+c".into()),
            device_id: Some("pos 1".into()),
            last_event_id: Some(7),
            epoch: Some("e".into()),
        };
        assert_eq!(
            params.to_query(),
            "token=a.b%2Bc&deviceId=pos%201&lastEventId=7&epoch=e"
        );
        let parsed = ConnectParams::from_pairs([
            ("token", "a.b+c"),
            ("deviceId", "pos 1"),
            ("lastEventId", "7"),
            ("epoch", "e"),
            ("other", "x"),
        ])
        .unwrap();
        assert_eq!(parsed, params);
        assert_eq!(
            ConnectParams::from_pairs([("lastEventId", "-1")]),
            Err(InvalidLastEventId)
        );
        assert_eq!(
            ConnectParams::from_pairs([("token", "")]).unwrap().token,
            None
        );
    }

    #[test]
    fn encoded_messages_parse_back() {
        let command = StockCommand {
            op: StockOp::Subtract,
            lines: vec![StockLine {
                product_id: 3,
                amount: 2,
            }],
        };
        let msg = parse_client_message(&encode_command(&command, Some("op-1"))).unwrap();
        assert_eq!(
            msg,
            ClientMessage::Command {
                command,
                op_id: Some("op-1".into())
            }
        );
        assert_eq!(
            parse_client_message(&encode_request_sync(4, Some("e"))).unwrap(),
            ClientMessage::RequestSync {
                last_event_id: 4,
                epoch: Some("e".into())
            }
        );
        assert_eq!(
            parse_client_message(&encode_auth("t", Some("d"))).unwrap(),
            ClientMessage::Auth {
                token: "t".into(),
                device_id: Some("d".into())
            }
        );
        assert_eq!(
            parse_client_message(&encode_ping()).unwrap(),
            ClientMessage::Ping
        );
    }
}
