//! A deliberately minimal WebSocket client for load generation.
//!
//! It never parses JSON: it splits the byte stream into frames by their headers and tells
//! frames apart by a prefix of their payload (`{"type":"ack"`, …). That keeps the client's
//! cost per received frame far below the hub's, so the figures measure the hub.

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// What a received frame is, judged by its payload's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ack,
    Error,
    SyncComplete,
    FullRefresh,
    Welcome,
    AuthSuccess,
    /// Anything else: an event frame.
    Event,
    /// A WebSocket control frame (ping, pong, close).
    Control,
}

fn classify(opcode: u8, payload: &[u8]) -> Kind {
    if opcode >= 8 {
        return Kind::Control;
    }
    const PREFIXES: [(&[u8], Kind); 6] = [
        (b"{\"type\":\"ack\"", Kind::Ack),
        (b"{\"event\":\"stock:error\"", Kind::Error),
        (b"{\"type\":\"sync_complete\"", Kind::SyncComplete),
        (b"{\"type\":\"full_refresh\"", Kind::FullRefresh),
        (b"{\"type\":\"welcome\"", Kind::Welcome),
        (b"{\"type\":\"auth_success\"", Kind::AuthSuccess),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| payload.starts_with(prefix))
        .map_or(Kind::Event, |(_, kind)| *kind)
}

pub struct WsClient {
    read: OwnedReadHalf,
    write: Option<SendHalf>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl WsClient {
    /// Connects and completes the opening handshake (`path` may carry a query).
    pub async fn connect(addr: &str, path: &str) -> Result<Self> {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let (read, write) = stream.into_split();
        let mut client = WsClient {
            read,
            write: Some(SendHalf(write)),
            buf: vec![0; 16 * 1024],
            start: 0,
            end: 0,
        };
        loop {
            if let Some(pos) = client.buf[..client.end]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
            {
                if !client.buf.starts_with(b"HTTP/1.1 101") {
                    bail!(
                        "handshake refused: {}",
                        String::from_utf8_lossy(&client.buf[..pos])
                    );
                }
                client.start = pos + 4;
                return Ok(client);
            }
            if client.end == client.buf.len() {
                bail!("handshake response too long");
            }
            let n = client.read.read(&mut client.buf[client.end..]).await?;
            if n == 0 {
                bail!("connection closed during handshake");
            }
            client.end += n;
        }
    }

    /// Sends one text message.
    pub async fn send_text(&mut self, text: &[u8]) -> Result<()> {
        self.write
            .as_mut()
            .context("the send half was split off")?
            .send_text(text)
            .await
    }

    /// Splits off the sending half, so that one task sends while another reads.
    pub fn split(mut self) -> Result<(SendHalf, WsClient)> {
        let write = self.write.take().context("already split")?;
        Ok((write, self))
    }

    /// Reads the next frame and says what it was; `None` when the connection ended.
    pub async fn next(&mut self) -> Result<Option<Kind>> {
        loop {
            if let Some((kind, consumed)) = parse(&self.buf[self.start..self.end]) {
                self.start += consumed;
                return Ok(Some(kind));
            }
            // Make room: move the partial frame to the front, grow for big frames.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                let len = self.buf.len();
                self.buf.resize(len * 2, 0);
            }
            let n = self.read.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return Ok(None);
            }
            self.end += n;
        }
    }
}

/// The writing half of a connection.
pub struct SendHalf(OwnedWriteHalf);

impl SendHalf {
    /// Sends one text message (masked with a zero key, as the protocol allows).
    pub async fn send_text(&mut self, text: &[u8]) -> Result<()> {
        self.send_many(&[text]).await
    }

    /// Sends several text messages in one write.
    pub async fn send_many(&mut self, texts: &[&[u8]]) -> Result<()> {
        let mut frames = Vec::with_capacity(texts.iter().map(|t| t.len() + 14).sum());
        for text in texts {
            encode_text(&mut frames, text);
        }
        self.0.write_all(&frames).await?;
        Ok(())
    }
}

fn encode_text(out: &mut Vec<u8>, text: &[u8]) {
    out.push(0x81);
    match text.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(text);
}

/// Parses one complete server frame at the start of `bytes`: its kind and length.
fn parse(bytes: &[u8]) -> Option<(Kind, usize)> {
    if bytes.len() < 2 {
        return None;
    }
    let opcode = bytes[0] & 0x0f;
    let (len, header) = match bytes[1] & 0x7f {
        126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
        127 if bytes.len() >= 10 => (
            u64::from_be_bytes(bytes[2..10].try_into().ok()?) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    let total = header + len;
    (bytes.len() >= total).then(|| (classify(opcode, &bytes[header..total]), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_classify() {
        let mut bytes = vec![0x81, 13];
        bytes.extend_from_slice(b"{\"type\":\"ack\"");
        bytes.extend_from_slice(&[0x81, 126, 0, 200]);
        bytes.extend(std::iter::repeat_n(b'x', 200));
        assert_eq!(parse(&bytes), Some((Kind::Ack, 15)));
        assert_eq!(parse(&bytes[15..]), Some((Kind::Event, 204)));
        assert_eq!(parse(&bytes[15..100]), None);
    }
}
