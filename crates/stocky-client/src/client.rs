//! [`Client`]: the typed REST API of a hub or edge, and the credential every call (and
//! every [`crate::Subscription`]) uses.
//!
//! Invariants: the credential sits behind a plain mutex that is never held across an
//! `.await`; refreshes are single-flight (one `POST /api/auth/refresh` at a time, the
//! others wait and reuse its result), and an access token is refreshed before it expires,
//! once less than a fifth of its lifetime (or 30 s) is left.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use stocky_core::api::{
    LoginRequest, NewApiKey, NewDevice, NewSite, NewUser, PasswordChange, PasswordReset,
    RefreshRequest, SiteUsers, StockCommandResult, StockListing, StockRow, StockStatus, TokenGrant,
    UserUpdate, UserView,
};
use stocky_core::stock::{StockCommand, StockLine, StockOp};
use stocky_core::time::now_millis;

use crate::error::ClientError;
use crate::subscription::{SubscribeOptions, Subscription};

/// How a client proves who it is.
#[derive(Clone, Default)]
pub enum Credential {
    #[default]
    None,
    /// A credential used as it is: an API key (`sk_…`), `STOCKY_ADMIN_TOKEN`, or an access
    /// token obtained elsewhere. It is never refreshed.
    Token(String),
    /// A login session: the access token is refreshed with the refresh token before it
    /// expires.
    Session {
        access: String,
        refresh: String,
        /// Milliseconds since the epoch.
        expires_at_ms: i64,
        lifetime_ms: i64,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach logs.
        match self {
            Credential::None => f.write_str("None"),
            Credential::Token(_) => f.write_str("Token(…)"),
            Credential::Session { expires_at_ms, .. } => {
                write!(f, "Session {{ expires_at_ms: {expires_at_ms}, .. }}")
            }
        }
    }
}

impl Credential {
    fn token(&self) -> Option<&str> {
        match self {
            Credential::None => None,
            Credential::Token(t) => Some(t),
            Credential::Session { access, .. } => Some(access),
        }
    }

    /// When a session's access token should be refreshed: a fifth of its lifetime (at
    /// least 30 s, at most half) before it expires. `None` for other credentials.
    fn refresh_at_ms(&self) -> Option<i64> {
        match self {
            Credential::Session {
                expires_at_ms,
                lifetime_ms,
                ..
            } => Some(expires_at_ms - (lifetime_ms / 5).max(30_000).min(*lifetime_ms / 2)),
            _ => None,
        }
    }

    /// A session whose access token should be refreshed now.
    fn refresh_due(&self, now_ms: i64) -> bool {
        self.refresh_at_ms().is_some_and(|at| now_ms >= at)
    }
}

/// A hub or edge, its REST API, and the credential for it. Cheap to clone; clones share
/// the credential (a refresh by one is seen by all).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `http://host:port`, no trailing slash.
    base: String,
    /// `ws://host:port/ws`.
    ws_url: String,
    credential: Mutex<Credential>,
    refreshing: tokio::sync::Mutex<()>,
}

/// Splits what a user typed (`localhost:3000`, `http://h:3000/`, `ws://h:3000/ws`) into
/// the REST base and the WebSocket URL.
fn endpoints(url: &str) -> Result<(String, String), ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = url.trim();
    let (scheme, rest) = match trimmed.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("http".to_owned(), trimmed),
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let (http, ws) = match scheme.as_str() {
        "http" | "ws" => ("http", "ws"),
        // Kept lean on purpose: no TLS stack is built in. Put a TLS-terminating proxy in
        // front, or speak plain HTTP on a private network.
        "https" | "wss" => {
            return Err(invalid(
                "TLS (https/wss) is not built into this SDK yet; use http:// or ws://",
            ))
        }
        _ => return Err(invalid("the scheme must be http or ws")),
    };
    let ws_path = match scheme.as_str() {
        "ws" if !path.is_empty() => path.to_owned(),
        _ => "/ws".to_owned(),
    };
    Ok((
        format!("{http}://{host}"),
        format!("{ws}://{host}{ws_path}"),
    ))
}

impl Client {
    /// A client for the server at `url`: `http://host:port`, `host:port` (http assumed) or
    /// the WebSocket URL `ws://host:port/ws` (its path is the WebSocket path).
    pub fn new(url: &str) -> Result<Self, ClientError> {
        let (base, ws_url) = endpoints(url)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|source| ClientError::Http {
                url: base.clone(),
                source,
            })?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                ws_url,
                credential: Mutex::new(Credential::None),
                refreshing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The same client, authenticating with `token` (API key, operator token, access token).
    pub fn with_token(self, token: impl Into<String>) -> Self {
        self.set_credential(Credential::Token(token.into()));
        self
    }

    pub fn set_credential(&self, credential: Credential) {
        *self.lock() = credential;
    }

    pub fn credential(&self) -> Credential {
        self.lock().clone()
    }

    /// `http://host:port`.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// `ws://host:port/ws`.
    pub fn ws_url(&self) -> &str {
        &self.inner.ws_url
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Credential> {
        self.inner
            .credential
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a live subscription (see [`Subscription`]).
    pub fn subscribe(&self, options: SubscribeOptions) -> Subscription {
        Subscription::start(self.clone(), options)
    }

    // ---- credentials ------------------------------------------------------------------

    /// `POST /api/auth/login`; the client keeps the session and refreshes it by itself.
    pub async fn login(&self, email: &str, password: &str) -> Result<TokenGrant, ClientError> {
        self.login_on_device(email, password, None).await
    }

    /// Login naming the device (for the one-connection-per-user-and-device rule).
    pub async fn login_on_device(
        &self,
        email: &str,
        password: &str,
        device_id: Option<&str>,
    ) -> Result<TokenGrant, ClientError> {
        let body = LoginRequest {
            email: email.to_owned(),
            password: password.to_owned(),
            device_id: device_id.map(str::to_owned),
        };
        let grant: TokenGrant = self
            .send(Method::POST, "/api/auth/login", Some(&body), None, false)
            .await?;
        self.keep(&grant);
        Ok(grant)
    }

    fn keep(&self, grant: &TokenGrant) {
        let lifetime_ms = (grant.expires_in as i64).saturating_mul(1000);
        self.set_credential(Credential::Session {
            access: grant.access_token.clone(),
            refresh: grant.refresh_token.clone(),
            expires_at_ms: now_millis().saturating_add(lifetime_ms),
            lifetime_ms,
        });
    }

    /// `POST /api/auth/refresh`: a new access token (and a rotated refresh token), kept
    /// as the client's credential. Several callers at once share one refresh.
    pub async fn refresh(&self) -> Result<(), ClientError> {
        let before = self.lock().token().map(str::to_owned);
        let _turn = self.inner.refreshing.lock().await;
        let (refresh, current) = match &*self.lock() {
            Credential::Session {
                refresh, access, ..
            } => (refresh.clone(), access.clone()),
            _ => return Err(ClientError::NoCredential),
        };
        if before.as_deref() != Some(current.as_str()) {
            return Ok(()); // another caller refreshed while this one waited
        }
        let body = RefreshRequest {
            refresh_token: refresh,
        };
        let path = "/api/auth/refresh";
        let request = self.inner.http.post(self.url(path)).json(&body);
        let grant: TokenGrant = self.finish(path, request).await?;
        self.keep(&grant);
        Ok(())
    }

    /// The token to send now, refreshed first when it is about to expire.
    pub async fn token(&self) -> Result<Option<String>, ClientError> {
        let due = self.lock().refresh_due(now_millis());
        if due {
            self.refresh().await?;
        }
        Ok(self.lock().token().map(str::to_owned))
    }

    /// When the session's access token should be refreshed (none for other credentials).
    pub(crate) fn refresh_deadline_ms(&self) -> Option<i64> {
        self.lock().refresh_at_ms()
    }

    pub(crate) fn has_session(&self) -> bool {
        matches!(&*self.lock(), Credential::Session { .. })
    }

    /// `POST /api/auth/logout`: ends the session server-side and forgets it here.
    pub async fn logout(&self) -> Result<(), ClientError> {
        let _: Value = self
            .post("/api/auth/logout", &serde_json::json!({}))
            .await?;
        self.set_credential(Credential::None);
        Ok(())
    }

    /// `GET /api/auth/me`.
    pub async fn me(&self) -> Result<Value, ClientError> {
        self.get("/api/auth/me").await
    }

    // ---- stock ------------------------------------------------------------------------

    /// One of seed 000's commands over REST; `idempotency_key` makes a retry a no-op.
    pub async fn stock_command(
        &self,
        command: &StockCommand,
        idempotency_key: Option<&str>,
    ) -> Result<StockCommandResult, ClientError> {
        let path = format!("/api/stock/{}", command.op.kind());
        self.send(
            Method::POST,
            &path,
            Some(&command.rest_body()),
            idempotency_key,
            true,
        )
        .await
    }

    /// `POST /api/stock/update` with `(productId, stock)` pairs.
    pub async fn update_stock(
        &self,
        lines: &[(i64, i64)],
    ) -> Result<StockCommandResult, ClientError> {
        self.stock_command(&command(StockOp::Update, lines), None)
            .await
    }

    /// `POST /api/stock/add` with `(productId, quantity)` pairs.
    pub async fn add_stock(&self, lines: &[(i64, i64)]) -> Result<StockCommandResult, ClientError> {
        self.stock_command(&command(StockOp::Add, lines), None)
            .await
    }

    /// `POST /api/stock/subtract` with `(productId, quantity)` pairs.
    pub async fn subtract_stock(
        &self,
        lines: &[(i64, i64)],
    ) -> Result<StockCommandResult, ClientError> {
        self.stock_command(&command(StockOp::Subtract, lines), None)
            .await
    }

    /// `POST /api/stock/sync` with `(productId, stock)` pairs.
    pub async fn sync_stock(
        &self,
        lines: &[(i64, i64)],
    ) -> Result<StockCommandResult, ClientError> {
        self.stock_command(&command(StockOp::Sync, lines), None)
            .await
    }

    /// `GET /api/stock`: the site's stock with the stream head it reflects.
    pub async fn stock(&self) -> Result<StockListing, ClientError> {
        self.get("/api/stock").await
    }

    /// `GET /api/stock/:productId`; `None` when the product has no stock record.
    pub async fn stock_of(&self, product_id: i64) -> Result<Option<StockRow>, ClientError> {
        match self.get(&format!("/api/stock/{product_id}")).await {
            Ok(row) => Ok(Some(row)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /api/stock/status`.
    pub async fn status(&self) -> Result<StockStatus, ClientError> {
        self.get("/api/stock/status").await
    }

    /// `POST /api/events`: an application event (`SALE_CREATED`, `order_created`, …).
    pub async fn publish_event(
        &self,
        event: &str,
        data: &Value,
        site_id: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut body = serde_json::json!({"type": event, "data": data});
        if let Some(site) = site_id {
            body["siteId"] = site.into();
        }
        self.send(
            Method::POST,
            "/api/events",
            Some(&body),
            idempotency_key,
            true,
        )
        .await
    }

    // ---- documents (seed 000's /api/sync/:db/:store) ------------------------------------

    /// `GET /api/sync/:db/:store`.
    pub async fn documents(&self, db: &str, store: &str) -> Result<Value, ClientError> {
        self.get(&format!("/api/sync/{}/{}", seg(db), seg(store)))
            .await
    }

    /// `GET /api/sync/:db/:store/:id`; `None` when there is no such record.
    pub async fn document(
        &self,
        db: &str,
        store: &str,
        id: &str,
    ) -> Result<Option<Value>, ClientError> {
        match self
            .get(&format!("/api/sync/{}/{}/{}", seg(db), seg(store), seg(id)))
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /api/sync/:db/:store` with `{"data":[records…]}` (bulk upsert).
    pub async fn post_documents(
        &self,
        db: &str,
        store: &str,
        body: &Value,
    ) -> Result<Value, ClientError> {
        self.post(&format!("/api/sync/{}/{}", seg(db), seg(store)), body)
            .await
    }

    /// `PUT /api/sync/:db/:store/:id` (`if_match`: the version the write expects).
    pub async fn put_document(
        &self,
        db: &str,
        store: &str,
        id: &str,
        body: &Value,
        if_match: Option<u64>,
    ) -> Result<Value, ClientError> {
        self.document_write(Method::PUT, db, store, id, Some(body), if_match)
            .await
    }

    /// `PATCH /api/sync/:db/:store/:id`.
    pub async fn patch_document(
        &self,
        db: &str,
        store: &str,
        id: &str,
        body: &Value,
        if_match: Option<u64>,
    ) -> Result<Value, ClientError> {
        self.document_write(Method::PATCH, db, store, id, Some(body), if_match)
            .await
    }

    /// `DELETE /api/sync/:db/:store/:id`.
    pub async fn delete_document(
        &self,
        db: &str,
        store: &str,
        id: &str,
    ) -> Result<Value, ClientError> {
        self.document_write(Method::DELETE, db, store, id, None, None)
            .await
    }

    async fn document_write(
        &self,
        method: Method,
        db: &str,
        store: &str,
        id: &str,
        body: Option<&Value>,
        if_match: Option<u64>,
    ) -> Result<Value, ClientError> {
        let path = format!("/api/sync/{}/{}/{}", seg(db), seg(store), seg(id));
        let mut request = self.request(method, &path).await?;
        if let Some(version) = if_match {
            request = request.header("If-Match", version.to_string());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.finish(&path, request).await
    }

    /// `GET /api/sync/:db/:store/since/:timestamp`.
    pub async fn documents_since(
        &self,
        db: &str,
        store: &str,
        since: &str,
    ) -> Result<Value, ClientError> {
        self.get(&format!(
            "/api/sync/{}/{}/since/{}",
            seg(db),
            seg(store),
            seg(since)
        ))
        .await
    }

    // ---- backups --------------------------------------------------------------------

    /// `GET /api/backup`: the databases there are.
    pub async fn backups(&self) -> Result<Value, ClientError> {
        self.get("/api/backup").await
    }

    /// `GET /api/backup/:db`: a full backup (`_stock` is the stock ledger).
    pub async fn backup(&self, db: &str) -> Result<Value, ClientError> {
        self.get(&format!("/api/backup/{}", seg(db))).await
    }

    /// `POST /api/backup/:db/restore` with the backup (and its `strategy`, `overwrite`).
    pub async fn restore(&self, db: &str, body: &Value) -> Result<Value, ClientError> {
        self.post(&format!("/api/backup/{}/restore", seg(db)), body)
            .await
    }

    /// `POST /api/backup/:db/compare`.
    pub async fn compare(&self, db: &str, body: &Value) -> Result<Value, ClientError> {
        self.post(&format!("/api/backup/{}/compare", seg(db)), body)
            .await
    }

    // ---- administration -----------------------------------------------------------------

    pub async fn sites(&self) -> Result<Value, ClientError> {
        self.get("/api/admin/sites").await
    }

    pub async fn create_site(&self, site: &NewSite) -> Result<Value, ClientError> {
        self.post("/api/admin/sites", site).await
    }

    /// `POST /api/admin/sites/{siteId}/activation-codes` (hub): a one-time code that
    /// enrols a store node for `site` (`stocky edge activate --code`).
    pub async fn create_activation_code(&self, site: &str) -> Result<String, ClientError> {
        let path = format!("/api/admin/sites/{}/activation-codes", seg(site));
        let answer: Value = self.post(&path, &serde_json::json!({})).await?;
        answer["code"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Decode {
                url: path,
                message: format!("no code in {answer}"),
            })
    }

    pub async fn devices(&self) -> Result<Value, ClientError> {
        self.get("/api/admin/devices").await
    }

    pub async fn create_device(&self, device: &NewDevice) -> Result<Value, ClientError> {
        self.post("/api/admin/devices", device).await
    }

    pub async fn users(&self) -> Result<Value, ClientError> {
        self.get("/api/admin/users").await
    }

    /// `POST /api/admin/users`.
    pub async fn create_user(&self, user: &NewUser) -> Result<Value, ClientError> {
        self.post("/api/admin/users", user).await
    }

    /// `PATCH /api/admin/users/{id}`: a user's role, site, modules or access; their
    /// sessions end.
    pub async fn update_user(
        &self,
        id: &str,
        change: &UserUpdate,
    ) -> Result<UserView, ClientError> {
        let path = format!("/api/admin/users/{}", seg(id));
        self.send(Method::PATCH, &path, Some(change), None, true)
            .await
    }

    /// `POST /api/admin/users/{id}/password`: sets another user's password; their
    /// sessions end.
    pub async fn reset_user_password(
        &self,
        id: &str,
        password: &str,
    ) -> Result<UserView, ClientError> {
        let path = format!("/api/admin/users/{}/password", seg(id));
        let body = PasswordReset {
            password: password.to_owned(),
        };
        self.post(&path, &body).await
    }

    /// `POST /api/auth/password`: the signed-in user's own password (this session stays,
    /// the others end).
    pub async fn change_password(&self, current: &str, new: &str) -> Result<(), ClientError> {
        let body = PasswordChange {
            current_password: current.to_owned(),
            new_password: new.to_owned(),
        };
        let _: Value = self.post("/api/auth/password", &body).await?;
        Ok(())
    }

    pub async fn api_keys(&self) -> Result<Value, ClientError> {
        self.get("/api/admin/api-keys").await
    }

    /// `POST /api/admin/api-keys`: the answer holds the key, shown only this once.
    pub async fn create_api_key(&self, key: &NewApiKey) -> Result<Value, ClientError> {
        self.post("/api/admin/api-keys", key).await
    }

    pub async fn revoke_api_key(&self, id: &str) -> Result<Value, ClientError> {
        let path = format!("/api/admin/api-keys/{}", seg(id));
        let request = self.request(Method::DELETE, &path).await?;
        self.finish(&path, request).await
    }

    /// `GET /api/sync/users` (a store node's device credential only): its site's users
    /// with their password hashes, for offline sign-in.
    pub async fn site_users(&self) -> Result<SiteUsers, ClientError> {
        self.get("/api/sync/users").await
    }

    /// `POST /api/admin/tenants` (the hub operator only): `body` is
    /// `{"id","name","owner":{"email","password"}}`.
    pub async fn create_tenant(&self, body: &Value) -> Result<Value, ClientError> {
        self.post("/api/admin/tenants", body).await
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<Value, ClientError> {
        self.send::<Value, ()>(Method::GET, "/health", None, None, false)
            .await
    }

    // ---- plumbing -----------------------------------------------------------------------

    /// Any route, for what the typed calls do not cover (and for tests of the wire): the
    /// status and the JSON answer (a JSON string holding the text when it is not JSON),
    /// without turning error statuses into errors. The credential goes along, if any.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Value), ClientError> {
        let method =
            Method::from_bytes(method.as_bytes()).map_err(|e| ClientError::InvalidUrl {
                url: path.to_owned(),
                reason: format!("method: {e}"),
            })?;
        let mut request = self.request(method, path).await?;
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let url = self.url(path);
        let response = request.send().await.map_err(|source| ClientError::Http {
            url: url.clone(),
            source,
        })?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|source| ClientError::Http { url, source })?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// `GET path` with the credential, decoded as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send::<T, ()>(Method::GET, path, None, None, true)
            .await
    }

    /// `POST path` with a JSON body and the credential, decoded as `T`.
    pub async fn post<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(Method::POST, path, Some(body), None, true).await
    }

    async fn send<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        idempotency_key: Option<&str>,
        authenticated: bool,
    ) -> Result<T, ClientError> {
        let mut request = if authenticated {
            self.request(method, path).await?
        } else {
            self.inner.http.request(method, self.url(path))
        };
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.finish(path, request).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.inner.base)
    }

    /// A request carrying the current (refreshed if due) credential.
    async fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, ClientError> {
        let request = self.inner.http.request(method, self.url(path));
        Ok(match self.token().await? {
            Some(token) => request.bearer_auth(token),
            None => request,
        })
    }

    async fn finish<T: DeserializeOwned>(
        &self,
        path: &str,
        request: RequestBuilder,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let response = request.send().await.map_err(|source| ClientError::Http {
            url: url.clone(),
            source,
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|source| ClientError::Http { url, source })?;
        if !status.is_success() {
            return Err(ClientError::from_envelope(status.as_u16(), &text));
        }
        serde_json::from_str(&text).map_err(|e| self.decode(path, e))
    }

    fn decode(&self, path: &str, e: impl std::fmt::Display) -> ClientError {
        ClientError::Decode {
            url: self.url(path),
            message: e.to_string(),
        }
    }
}

fn command(op: StockOp, lines: &[(i64, i64)]) -> StockCommand {
    StockCommand {
        op,
        lines: lines
            .iter()
            .map(|&(product_id, amount)| StockLine { product_id, amount })
            .collect(),
    }
}

/// Percent-encodes one path segment.
fn seg(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_accept_what_people_type() {
        let cases = [
            (
                "localhost:3000",
                "http://localhost:3000",
                "ws://localhost:3000/ws",
            ),
            ("http://h:1/", "http://h:1", "ws://h:1/ws"),
            ("ws://h:2/ws", "http://h:2", "ws://h:2/ws"),
            ("ws://h:2/live/", "http://h:2", "ws://h:2/live"),
            ("ws://h:2", "http://h:2", "ws://h:2/ws"),
        ];
        for (input, base, ws) in cases {
            assert_eq!(
                endpoints(input).unwrap(),
                (base.into(), ws.into()),
                "{input}"
            );
        }
        assert!(endpoints("ftp://h").is_err());
        assert!(
            endpoints("https://h").is_err(),
            "no TLS stack: refused up front"
        );
        assert!(endpoints("http://").is_err());
    }

    #[test]
    fn sessions_refresh_before_expiry() {
        let session = Credential::Session {
            access: "a".into(),
            refresh: "r".into(),
            expires_at_ms: 1_000_000,
            lifetime_ms: 600_000,
        };
        assert!(!session.refresh_due(800_000));
        assert!(session.refresh_due(881_000));
        assert!(!Credential::Token("t".into()).refresh_due(i64::MAX));
        assert_eq!(
            format!("{:?}", Credential::Token("secret".into())),
            "Token(…)"
        );
    }
}
