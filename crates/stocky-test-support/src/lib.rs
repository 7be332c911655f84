//! Test harness shared by every crate's tests: a real hub on port 0 with a temp data dir
//! ([`TestHub`]), the SDK pointed at it ([`TestHub::sdk`]), a raw protocol probe
//! ([`Client`], for tests about the exact bytes on the wire), and hub processes
//! ([`process::HubProcess`]).
//!
//! The hub stores its data in SQLite in the temp dir, or — when `STOCKY_TEST_DATABASE_URL`
//! names a PostgreSQL server (CI sets it) — in a fresh PostgreSQL database of its own, so
//! every test here runs against the engine under test.

pub mod fault_proxy;
pub mod process;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use stocky_hub::Hub;
pub use stocky_hub::HubConfig;
use stocky_server::config::Secret;
use stocky_store::testing::{postgres_url, PostgresDatabase};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(10);

/// A test hub's data: a temp dir and, when PostgreSQL is under test, its own database.
pub struct DataDir {
    dir: TempDir,
    postgres: Option<Arc<PostgresDatabase>>,
}

impl DataDir {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The PostgreSQL database, when that is the engine under test.
    pub fn postgres(&self) -> Option<&PostgresDatabase> {
        self.postgres.as_deref()
    }
}

/// Fresh test data (a new PostgreSQL database too when one is under test).
pub fn data_dir() -> Result<DataDir> {
    Ok(DataDir {
        dir: tempfile::tempdir()?,
        postgres: postgres_url().map(|url| Arc::new(PostgresDatabase::create(&url))),
    })
}

pub struct TestHub {
    pub hub: Option<Hub>,
    pub dir: DataDir,
    pub http: String,
    pub ws: String,
    /// A plain HTTP client with the operator credential, for tests of malformed requests
    /// (everything else goes through the SDK).
    pub client: reqwest::Client,
}

/// The owner credential every test hub accepts (`STOCKY_ADMIN_TOKEN`).
pub const ADMIN: &str = "test-admin-token";

pub fn config(dir: &DataDir) -> HubConfig {
    let mut config = HubConfig::for_data_dir(dir.path());
    config.server.listen = "127.0.0.1:0".parse().expect("valid address");
    config.server.admin_token = Some(Secret(ADMIN.into()));
    config.server.database_url = dir.postgres.as_ref().map(|db| Secret(db.url().into()));
    config
}

/// An HTTP client that sends `token` on every request.
pub fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("a valid header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("a client")
}

impl TestHub {
    pub async fn start() -> Result<Self> {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut HubConfig)) -> Result<Self> {
        let dir = data_dir()?;
        let mut config = config(&dir);
        tweak(&mut config);
        Self::start_in(dir, config).await
    }

    /// Points `config` at this hub's database (another instance sharing it).
    pub fn share_database(&self, config: &mut HubConfig) {
        config.server.db_path = Some(self.dir.path().join("stocky.db"));
        config.server.database_url = self.dir.postgres.as_ref().map(|db| Secret(db.url().into()));
    }

    pub async fn start_in(dir: DataDir, config: HubConfig) -> Result<Self> {
        let hub = Hub::start(config).await?;
        let addr = hub.local_addr();
        Ok(TestHub {
            hub: Some(hub),
            dir,
            http: format!("http://{addr}"),
            ws: format!("ws://{addr}/ws?token={ADMIN}"),
            client: client_with(ADMIN),
        })
    }

    /// Stops the hub gracefully, keeping the data dir for a restart.
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(hub) = self.hub.take() {
            hub.stop().await?;
        }
        Ok(())
    }

    /// The SDK, authenticated as the operator (owner of the default tenant).
    pub fn sdk(&self) -> stocky_client::Client {
        self.sdk_with(ADMIN)
    }

    /// The SDK with another credential.
    pub fn sdk_with(&self, token: &str) -> stocky_client::Client {
        stocky_client::Client::new(&self.http)
            .expect("a test hub's URL is valid")
            .with_token(token)
    }

    /// Restarts the hub on the same data, port and configuration tweak.
    pub async fn restart_with(&mut self, tweak: impl FnOnce(&mut HubConfig)) -> Result<()> {
        self.stop().await?;
        let addr: std::net::SocketAddr = self.http.trim_start_matches("http://").parse()?;
        let mut config = config(&self.dir);
        config.server.listen = addr;
        tweak(&mut config);
        self.hub = Some(Hub::start(config).await?);
        Ok(())
    }

    pub async fn connect(&self) -> Result<Client> {
        Client::connect(&self.ws).await
    }

    /// The WebSocket URL with another credential (and extra query, e.g. `&deviceId=x`).
    pub fn ws_with(&self, token: &str, extra: &str) -> String {
        let base = self.ws.split('?').next().unwrap_or_default();
        format!("{base}?token={token}{extra}")
    }

    /// Logs in and returns the access token (and the whole answer).
    pub async fn login(&self, email: &str, password: &str) -> Result<(String, Value)> {
        let (status, body) = self
            .as_(
                None,
                "POST",
                "/api/auth/login",
                Some(serde_json::json!({"email": email, "password": password})),
            )
            .await?;
        if status != 200 {
            bail!("login {email}: {status} {body}");
        }
        Ok((
            body["accessToken"].as_str().unwrap_or_default().to_owned(),
            body,
        ))
    }

    /// A request with a specific credential (or none), through the SDK.
    pub async fn as_(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let sdk = match token {
            Some(token) => self.sdk_with(token),
            None => stocky_client::Client::new(&self.http)?,
        };
        Ok(sdk.call(method, path, body.as_ref(), &[]).await?)
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        self.call("POST", path, Some(body), &[]).await
    }

    /// Any method, optional JSON body and extra headers, as the operator.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Value)> {
        Ok(self
            .sdk()
            .call(method, path, body.as_ref(), headers)
            .await?)
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        self.call("GET", path, None, &[]).await
    }

    pub async fn stock(&self, product: i64) -> Result<i64> {
        let (status, body) = self.get(&format!("/api/stock/{product}")).await?;
        if status != 200 {
            bail!("GET stock {product}: {status} {body}");
        }
        body["stock"]
            .as_i64()
            .ok_or_else(|| anyhow!("no stock in {body}"))
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub client_id: String,
    pub welcome: Value,
    /// `auth_success` (when the URL carried a token).
    pub auth: Value,
}

/// How a connection ended.
#[derive(Debug)]
pub enum Ended {
    Closed(Option<(CloseCode, String)>),
    Broken(String),
}

impl Client {
    pub async fn connect(url: &str) -> Result<Self> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        Self::after_handshake(ws).await
    }

    /// Connects with a 4 KiB socket receive buffer, so that a client that stops reading
    /// pushes back on the server quickly.
    pub async fn connect_small_buffer(url: &str) -> Result<Self> {
        let addr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()?;
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        let tcp = socket.connect(addr).await?;
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp)).await?;
        Self::after_handshake(ws).await
    }

    async fn after_handshake(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Result<Self> {
        let mut client = Client {
            ws,
            client_id: String::new(),
            welcome: Value::Null,
            auth: Value::Null,
        };
        let welcome = client.recv().await?;
        if welcome["type"] != "welcome" {
            bail!("expected welcome, got {welcome}");
        }
        client.client_id = welcome["clientId"].as_str().unwrap_or_default().to_owned();
        if welcome["authRequired"] != true {
            let auth = client.recv().await?;
            if auth["type"] != "auth_success" {
                bail!("expected auth_success, got {auth}");
            }
            client.auth = auth;
        }
        client.welcome = welcome;
        Ok(client)
    }

    pub async fn send(&mut self, value: Value) -> Result<()> {
        self.ws.send(Message::text(value.to_string())).await?;
        Ok(())
    }

    pub async fn send_raw(&mut self, text: &str) -> Result<()> {
        self.ws.send(Message::text(text.to_owned())).await?;
        Ok(())
    }

    /// Next JSON message (control frames skipped), within [`WAIT`].
    pub async fn recv(&mut self) -> Result<Value> {
        tokio::time::timeout(WAIT, self.next_json())
            .await
            .context("timed out waiting for a message")?
    }

    async fn next_json(&mut self) -> Result<Value> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text)?),
                Some(Ok(Message::Close(frame))) => bail!("connection closed: {frame:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!("connection broken: {e}"),
                None => bail!("connection ended"),
            }
        }
    }

    /// Asserts that nothing arrives within `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) -> Result<()> {
        match tokio::time::timeout(quiet, self.next_json()).await {
            Err(_) => Ok(()),
            Ok(Ok(v)) => bail!("expected silence, got {v}"),
            Ok(Err(e)) => bail!("expected silence, got {e}"),
        }
    }

    /// Reads until the connection ends; returns how, and how many text frames came first.
    pub async fn until_end(&mut self) -> Result<(Ended, usize)> {
        let mut texts = 0;
        let ended = tokio::time::timeout(WAIT * 2, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(_))) => texts += 1,
                    Some(Ok(Message::Close(frame))) => {
                        return Ended::Closed(frame.map(|f| (f.code, f.reason.to_string())));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Ended::Broken(e.to_string()),
                    None => return Ended::Broken("ended".into()),
                }
            }
        })
        .await
        .context("connection did not end")?;
        Ok((ended, texts))
    }

    /// Sends a command and returns its ack (or error), skipping other clients' events.
    /// Next event frame (skipping control frames such as pongs).
    pub async fn next_event(&mut self) -> Result<Value> {
        loop {
            let message = self.recv().await?;
            if message.get("id").is_some() && message.get("type").is_none() {
                return Ok(message);
            }
        }
    }

    pub async fn command(&mut self, event: &str, data: Value) -> Result<Value> {
        self.send(serde_json::json!({"event": event, "data": data}))
            .await?;
        loop {
            let message = self.recv().await?;
            if message["type"] == "ack" || message["event"] == "stock:error" {
                return Ok(message);
            }
        }
    }
}
