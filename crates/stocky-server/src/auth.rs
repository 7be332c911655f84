//! Authentication: who is calling, and what they may do.
//!
//! A credential is one of: an access token (JWT, HS256, from `/api/auth/login`), an API key
//! (`sk_…`, stored hashed), or `STOCKY_ADMIN_TOKEN` (an owner key of the default tenant for
//! automation). It arrives as `Authorization: Bearer …`, `X-API-Key: …` (seed 004), or — on
//! the WebSocket only — `?token=…` or an `auth` message (seed 001). The result is a
//! [`Principal`]: tenant, home site, role and modules, checked against the role × action
//! table on every route and used to route events.
//!
//! Failures say only "invalid credentials": no detail about which part was wrong. Secrets
//! are never logged and never appear in `Debug` output.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use stocky_core::auth::{allows, verify, Action, ModuleMap, Role};
use stocky_core::{DEFAULT_SITE, DEFAULT_TENANT};
use stocky_store::{Account, Store};

use crate::error::ApiError;
use crate::AppState;

/// How a principal authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    ApiKey,
    AdminToken,
    /// `--dev` on loopback, no credential given.
    Dev,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub kind: Kind,
    /// User id, API key id, or `admin` / `dev`.
    pub id: Arc<str>,
    pub tenant: Arc<str>,
    /// Home site; `None` for every site.
    pub site: Option<Arc<str>>,
    pub role: Role,
    /// Enabled modules; `None` for all.
    pub modules: Option<Arc<[String]>>,
    /// Login session (access tokens only): logout revokes it.
    pub session: Option<String>,
    /// When the credential expires (seconds since the epoch), for access tokens.
    pub expires_at: Option<i64>,
    /// The device a store node's credential was issued to (API keys from activation).
    pub device: Option<Arc<str>>,
}

impl Principal {
    fn from_account(kind: Kind, account: Account) -> Self {
        Principal {
            kind,
            id: account.id.into(),
            tenant: account.tenant.into(),
            site: account.site.map(Into::into),
            role: account.role,
            modules: account.modules.map(Into::into),
            session: None,
            expires_at: None,
            device: None,
        }
    }

    /// The default tenant's owner (admin token, dev mode).
    fn owner(kind: Kind, id: &str) -> Self {
        Principal {
            kind,
            id: id.into(),
            tenant: DEFAULT_TENANT.into(),
            site: None,
            role: Role::Owner,
            modules: None,
            session: None,
            expires_at: None,
            device: None,
        }
    }

    /// 403 unless the role may do `action`.
    pub fn require(&self, action: Action) -> Result<(), ApiError> {
        if allows(self.role, action) {
            Ok(())
        } else {
            Err(forbidden(self.role, action))
        }
    }

    /// The store node this principal is: `(device, site)` of a device credential.
    pub fn store_node(&self) -> Option<(Arc<str>, Arc<str>)> {
        Some((self.device.clone()?, self.site.clone()?))
    }

    /// [`Principal::store_node`], or a `403` saying only a store node may `what`.
    pub fn require_store_node(&self, what: &str) -> Result<(Arc<str>, Arc<str>), ApiError> {
        self.store_node().ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("only a store node's device credential may {what}"),
            )
        })
    }

    /// Whose idempotency keys this principal's are: its credential, so another caller's
    /// key neither blocks its commands nor returns their events.
    pub fn op_scope(&self) -> Arc<str> {
        let kind = match self.kind {
            Kind::User => "user",
            Kind::ApiKey => "key",
            Kind::AdminToken => "admin",
            Kind::Dev => "dev",
        };
        format!("{kind}:{}/{}", self.tenant, self.id).into()
    }

    /// The key its request budget is counted under.
    pub fn rate_key(&self) -> String {
        format!("{}/{}", self.tenant, self.id)
    }

    /// The site commands apply to when none is named: the home site, else `default`.
    /// Who is acting, for movements, sales and the audit log: a user's id, `key:<id>` for
    /// an API key, `admin` or `dev`.
    pub fn actor(&self) -> Arc<str> {
        match self.kind {
            Kind::User => self.id.clone(),
            Kind::ApiKey => format!("key:{}", self.id).into(),
            Kind::AdminToken | Kind::Dev => self.id.clone(),
        }
    }

    pub fn home_site(&self) -> Arc<str> {
        self.site.clone().unwrap_or_else(|| DEFAULT_SITE.into())
    }

    /// Whether this principal may see `site`'s data and events.
    pub fn sees_site(&self, site: &str) -> bool {
        self.role.is_admin()
            || site == stocky_core::TENANT_WIDE
            || self.site.as_deref().is_none_or(|home| home == site)
    }

    /// Whether an event of type `event` at `site` is delivered to this principal: its site
    /// (unless the role sees every site), its module (when modules are limited) and, for
    /// admin-only events, its role.
    pub fn receives(&self, map: &ModuleMap, event: &str, site: &str) -> bool {
        if !self.sees_site(site) {
            return false;
        }
        if map
            .least_role(event)
            .is_some_and(|least| !self.role.at_least(least))
        {
            return false;
        }
        match &self.modules {
            None => true,
            Some(enabled) => map
                .module_of(event)
                .is_none_or(|module| enabled.iter().any(|m| m == module)),
        }
    }
}

/// A 403 that names the role and what it may not do.
pub fn forbidden(role: Role, action: Action) -> ApiError {
    let what = match action {
        Action::Read => "read this tenant's data",
        Action::Sell => "sell or refund",
        Action::ReceiveStock => "add stock",
        Action::SetStock => "set absolute stock",
        Action::WriteDocuments => "edit documents",
        Action::ReadBackups => "read backups",
        Action::RestoreBackups => "restore, compare or delete databases",
        Action::ManageAccess => "manage users, sites and API keys",
        Action::EditCatalog => "edit the product catalog",
        Action::VoidSale => "void a sale",
        Action::ReadAudit => "read the audit log",
    };
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("role {} may not {what}", role.as_str()),
    )
}

/// The one answer to every bad credential.
pub fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or invalid credentials",
    )
}

/// Secrets and policy for checking credentials.
pub struct Authenticator {
    jwt_secret: Vec<u8>,
    admin_token: Option<String>,
    pub dev: bool,
    pub modules: ModuleMap,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("dev", &self.dev)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(
        jwt_secret: Vec<u8>,
        admin_token: Option<String>,
        dev: bool,
        modules: ModuleMap,
    ) -> Self {
        Self {
            jwt_secret,
            admin_token: admin_token.filter(|t| !t.is_empty()),
            dev,
            modules,
        }
    }

    pub fn jwt_secret(&self) -> &[u8] {
        &self.jwt_secret
    }

    /// Checks a credential; every failure is the same [`unauthorized`].
    pub async fn authenticate(
        &self,
        store: &Store,
        credential: &str,
    ) -> Result<Principal, ApiError> {
        if let Some(admin) = &self.admin_token {
            if constant_time_eq(admin.as_bytes(), credential.as_bytes()) {
                return Ok(Principal::owner(Kind::AdminToken, "admin"));
            }
        }
        if credential.starts_with(API_KEY_PREFIX) {
            let hash = digest(credential);
            let holder = store.accounts(move |a| a.api_key(&hash)).await?;
            return holder
                .map(|h| Principal {
                    device: h.device.map(Into::into),
                    ..Principal::from_account(Kind::ApiKey, h.account)
                })
                .ok_or_else(unauthorized);
        }
        let now = stocky_core::time::now_millis() / 1000;
        let claims = verify(credential, &self.jwt_secret, now).map_err(|_| unauthorized())?;
        let sid = claims.sid.clone();
        if !store.accounts(move |a| a.session_active(&sid)).await? {
            return Err(unauthorized());
        }
        Ok(Principal {
            kind: Kind::User,
            id: claims.user_id.into(),
            tenant: claims.tenant_id.into(),
            site: claims.site_id.map(Into::into),
            role: claims.role,
            modules: claims.modules.map(Into::into),
            session: Some(claims.sid),
            expires_at: Some(claims.exp),
            device: None,
        })
    }

    /// The principal of a request without credentials, in dev mode only.
    pub fn anonymous(&self) -> Option<Principal> {
        self.dev.then(|| Principal::owner(Kind::Dev, "dev"))
    }
}

/// The credential in `Authorization: Bearer …` or `X-API-Key`, if any.
pub fn credential(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(value.trim().to_owned());
    }
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// `429` for a client IP past its budget of bad credentials: every way in that takes a
/// credential (the `/api` middleware, WebSocket upgrades, refresh) checks it first.
pub fn throttled_ip_refusal(state: &AppState, ip: &str) -> Option<Response> {
    let retry = state.limits.failed_auth_per_ip.blocked(ip).err()?;
    state.metrics.rate_limited("failed_auth");
    Some(crate::rest::too_many(retry))
}

/// Middleware for `/api`: attaches the caller's [`Principal`] or answers 401.
pub async fn require(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let ip = client_ip(&request);
    let failures = &state.limits.failed_auth_per_ip;
    if let Some(refused) = ip
        .as_deref()
        .and_then(|ip| throttled_ip_refusal(&state, ip))
    {
        return refused;
    }
    let principal = match credential(request.headers()) {
        Some(credential) => state.auth.authenticate(&state.store, &credential).await,
        None => state.auth.anonymous().ok_or_else(unauthorized),
    };
    match principal {
        Ok(principal) => {
            let tenant = crate::access_log::Tenant(principal.tenant.clone());
            request.extensions_mut().insert(principal);
            let mut response = next.run(request).await;
            response.extensions_mut().insert(tenant);
            response
        }
        Err(e) => {
            if let (Some(ip), StatusCode::UNAUTHORIZED) = (&ip, e.status) {
                let _ = failures.hit(ip);
            }
            e.into_response()
        }
    }
}

/// The client's IP (the socket's peer), as the accept loop recorded it.
pub fn client_ip(request: &Request) -> Option<String> {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip().to_string())
}

/// Prefix of every API key.
pub const API_KEY_PREFIX: &str = "sk_";

/// 32 random bytes, URL-safe base64.
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Length of a generated password.
pub const GENERATED_PASSWORD_CHARS: usize = 20;

/// A generated password (the first-start owner, `stocky admin` without `--password`):
/// 20 URL-safe base64 characters, about 120 random bits.
pub fn generate_password() -> String {
    let mut password = random_token("");
    password.truncate(GENERATED_PASSWORD_CHARS);
    password
}

/// SHA-256 hex digest: how API keys and refresh tokens are stored.
pub fn digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Hashes a password with argon2id (blocking: call from a blocking thread).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the OS random source is available");
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

/// Password work (argon2 hashes and verifies) running at once, process-wide: one per
/// core. Each takes about 19 MiB and tens of milliseconds on purpose, so a burst of logins
/// queues here instead of taking memory and every core.
fn password_work() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        tokio::sync::Semaphore::new(cores.max(1))
    })
}

/// Runs password work `f` on a blocking thread, at most one per core at a time.
pub async fn password_work_off_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let internal = |e: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e);
    let _permit = password_work()
        .acquire()
        .await
        .map_err(|e| internal(e.to_string()))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal(e.to_string()))
}

/// [`hash_password`] on a blocking thread (argon2 takes tens of milliseconds on purpose).
pub async fn hash_password_off_thread(password: String) -> Result<String, ApiError> {
    password_work_off_thread(move || hash_password(&password)).await?
}

/// Checks a password against its argon2 hash (blocking).
pub fn password_matches(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// The JWT secret: `JWT_SECRET` when given, else one generated on first start and kept in
/// `<data_dir>/jwt-secret` (mode 0600).
pub fn load_or_create_secret(
    data_dir: &std::path::Path,
    configured: Option<&str>,
) -> std::io::Result<Vec<u8>> {
    if let Some(secret) = configured.filter(|s| !s.is_empty()) {
        return Ok(secret.as_bytes().to_vec());
    }
    let path = data_dir.join("jwt-secret");
    match std::fs::read(&path) {
        Ok(secret) if secret.len() >= 32 => return Ok(secret),
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} is too short; delete it to regenerate",
                path.display()
            )))
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    std::fs::create_dir_all(data_dir)?;
    let secret = random_token("").into_bytes();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&path)?, &secret)?;
    Ok(secret)
}
