//! Tenants, sites, users, devices, API keys and login sessions.
//!
//! These writes carry no event, so they do not go through the writer thread: they run on
//! a pooled read-write connection and rely on SQLite's locking (the writer holds its lock
//! for one group commit at a time; `busy_timeout` covers the wait). Secrets never reach
//! this module in clear: passwords arrive hashed (argon2), keys and refresh tokens as
//! SHA-256 digests.

use rusqlite::{params, Connection, OptionalExtension};
use stocky_core::auth::Role;
use stocky_core::time::now_millis;

use crate::{sequencer, StoreError};

/// Who a credential speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub tenant: String,
    pub role: Role,
    /// Home site; `None` for every site.
    pub site: Option<String>,
    /// Enabled modules; `None` for all.
    pub modules: Option<Vec<String>>,
}

/// A user with the hash to check a password against.
#[derive(Debug, Clone)]
pub struct UserLogin {
    pub account: Account,
    pub email: String,
    pub password_hash: String,
}

/// A login session found by its refresh token.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub account: Account,
    pub device: Option<String>,
    pub expires_at: i64,
}

/// Listing rows for admins (no secrets).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    pub id: String,
    pub name: String,
    pub role: Option<String>,
    pub site_id: Option<String>,
    pub modules: Option<Vec<String>>,
    pub created_at: i64,
    pub revoked: bool,
}

fn modules_to_text(modules: &Option<Vec<String>>) -> Option<String> {
    modules
        .as_ref()
        .map(|m| serde_json::to_string(m).unwrap_or_else(|_| "[]".into()))
}

fn modules_from_text(text: Option<String>) -> Option<Vec<String>> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

fn role_of(text: &str) -> rusqlite::Result<Role> {
    Role::parse(text).ok_or_else(|| {
        rusqlite::Error::InvalidColumnType(0, format!("role {text:?}"), rusqlite::types::Type::Text)
    })
}

/// A listing row: `id, name, role, site_id, modules, created_at, revoked`.
fn listed(r: &rusqlite::Row<'_>) -> rusqlite::Result<Listed> {
    Ok(Listed {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        site_id: r.get(3)?,
        modules: modules_from_text(r.get(4)?),
        created_at: r.get(5)?,
        revoked: r.get(6)?,
    })
}

/// An account from five columns starting at `at`: `id, tenant_id, role, site_id, modules`.
fn account_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Account> {
    Ok(Account {
        id: r.get(at)?,
        tenant: r.get(at + 1)?,
        role: role_of(&r.get::<_, String>(at + 2)?)?,
        site: r.get(at + 3)?,
        modules: modules_from_text(r.get(at + 4)?),
    })
}

fn conflict(what: String) -> StoreError {
    StoreError::Conflict(what)
}

fn map_unique(e: rusqlite::Error, what: impl FnOnce() -> String) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            conflict(what())
        }
        _ => StoreError::Sqlite(e),
    }
}

/// Creates a tenant with its event stream and a `default` site.
/// Creates a tenant with its event stream and a `default` site, and (when given) its
/// first owner — all in one transaction.
pub(crate) fn create_tenant(
    conn: &mut Connection,
    id: &str,
    name: &str,
    owner: Option<(&Account, &str, &str)>,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let now = now_millis();
    tx.execute(
        "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3)",
        params![id, name, now],
    )
    .map_err(|e| map_unique(e, || format!("tenant {id:?} already exists")))?;
    tx.execute(
        "INSERT INTO sites (tenant_id, id, name, created_at) VALUES (?1, ?2, 'Default site', ?3)",
        params![id, stocky_core::DEFAULT_SITE, now],
    )?;
    tx.execute(
        "INSERT INTO streams (tenant_id, epoch, head) VALUES (?1, ?2, 0)",
        params![id, sequencer::new_epoch()],
    )?;
    if let Some((account, email, password_hash)) = owner {
        create_user(&tx, account, email, password_hash)?;
    }
    tx.commit()?;
    Ok(())
}

pub(crate) fn list_tenants(conn: &mut Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT id, name FROM tenants ORDER BY id")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn create_site(
    conn: &mut Connection,
    tenant: &str,
    id: &str,
    name: &str,
) -> Result<(), StoreError> {
    ensure_tenant(conn, tenant)?;
    conn.execute(
        "INSERT INTO sites (tenant_id, id, name, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![tenant, id, name, now_millis()],
    )
    .map_err(|e| map_unique(e, || format!("site {id:?} already exists")))?;
    Ok(())
}

pub(crate) fn site_exists(conn: &Connection, tenant: &str, site: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM sites WHERE tenant_id = ?1 AND id = ?2)")?
        .query_row(params![tenant, site], |r| r.get(0))?)
}

pub(crate) fn list_sites(
    conn: &mut Connection,
    tenant: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT id, name FROM sites WHERE tenant_id = ?1 ORDER BY id")?;
    let rows = stmt.query_map(params![tenant], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn ensure_tenant(conn: &Connection, tenant: &str) -> Result<(), StoreError> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = ?1)",
        params![tenant],
        |r| r.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("tenant {tenant:?}")))
    }
}

fn ensure_site(conn: &Connection, tenant: &str, site: &Option<String>) -> Result<(), StoreError> {
    ensure_tenant(conn, tenant)?;
    match site {
        Some(site) if !site_exists(conn, tenant, site)? => {
            Err(StoreError::NotFound(format!("site {site:?}")))
        }
        _ => Ok(()),
    }
}

pub(crate) fn create_user(
    conn: &Connection,
    account: &Account,
    email: &str,
    password_hash: &str,
) -> Result<(), StoreError> {
    ensure_site(conn, &account.tenant, &account.site)?;
    conn.execute(
        "INSERT INTO users (id, tenant_id, email, password_hash, role, site_id, modules, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            account.id,
            account.tenant,
            email,
            password_hash,
            account.role.as_str(),
            account.site,
            modules_to_text(&account.modules),
            now_millis()
        ],
    )
    .map_err(|e| map_unique(e, || format!("a user with email {email:?} already exists")))?;
    Ok(())
}

pub(crate) fn user_by_email(
    conn: &mut Connection,
    email: &str,
) -> Result<Option<UserLogin>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT id, tenant_id, role, site_id, modules, email, password_hash FROM users
             WHERE email = ?1 AND disabled_at IS NULL",
        )?
        .query_row(params![email], |r| {
            Ok(UserLogin {
                account: account_at(r, 0)?,
                email: r.get(5)?,
                password_hash: r.get(6)?,
            })
        })
        .optional()?)
}

pub(crate) fn count_users(conn: &mut Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
}

pub(crate) fn list_users(conn: &mut Connection, tenant: &str) -> Result<Vec<Listed>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, email, role, site_id, modules, created_at, disabled_at IS NOT NULL FROM users
         WHERE tenant_id = ?1 ORDER BY created_at, email",
    )?;
    let rows = stmt.query_map(params![tenant], listed)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn create_api_key(
    conn: &mut Connection,
    account: &Account,
    name: &str,
    key_hash: &str,
) -> Result<(), StoreError> {
    ensure_site(conn, &account.tenant, &account.site)?;
    conn.execute(
        "INSERT INTO api_keys (id, tenant_id, name, key_hash, role, site_id, modules, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            account.id,
            account.tenant,
            name,
            key_hash,
            account.role.as_str(),
            account.site,
            modules_to_text(&account.modules),
            now_millis()
        ],
    )?;
    Ok(())
}

pub(crate) fn api_key(
    conn: &mut Connection,
    key_hash: &str,
) -> Result<Option<Account>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT id, tenant_id, role, site_id, modules FROM api_keys WHERE key_hash = ?1 AND revoked_at IS NULL",
        )?
        .query_row(params![key_hash], |r| account_at(r, 0))
        .optional()?)
}

pub(crate) fn list_api_keys(
    conn: &mut Connection,
    tenant: &str,
) -> Result<Vec<Listed>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, role, site_id, modules, created_at, revoked_at IS NOT NULL FROM api_keys
         WHERE tenant_id = ?1 ORDER BY created_at, id",
    )?;
    let rows = stmt.query_map(params![tenant], listed)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes a key of `tenant`; `false` when there is no such (unrevoked) key.
pub(crate) fn revoke_api_key(
    conn: &mut Connection,
    tenant: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE api_keys SET revoked_at = ?3 WHERE tenant_id = ?1 AND id = ?2 AND revoked_at IS NULL",
        params![tenant, id, now_millis()],
    )?;
    Ok(n == 1)
}

pub(crate) fn create_session(
    conn: &mut Connection,
    id: &str,
    account: &Account,
    device: Option<&str>,
    refresh_hash: &str,
    expires_at: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO sessions (id, tenant_id, user_id, device_id, refresh_hash, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![id, account.tenant, account.id, device, refresh_hash, now_millis(), expires_at],
    )?;
    Ok(())
}

/// Finds a live session by its refresh token and replaces the token (rotation): an old
/// refresh token works once.
pub(crate) fn rotate_session(
    conn: &mut Connection,
    refresh_hash: &str,
    new_hash: &str,
    now: i64,
) -> Result<Option<Session>, StoreError> {
    let tx = conn.transaction()?;
    let found = tx
        .query_row(
            "SELECT s.id, s.device_id, s.expires_at, u.id, u.tenant_id, u.role, u.site_id, u.modules
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.refresh_hash = ?1 AND s.revoked_at IS NULL AND s.expires_at > ?2 AND u.disabled_at IS NULL",
            params![refresh_hash, now],
            |r| {
                Ok(Session {
                    id: r.get(0)?,
                    device: r.get(1)?,
                    expires_at: r.get(2)?,
                    account: account_at(r, 3)?,
                })
            },
        )
        .optional()?;
    if let Some(session) = &found {
        tx.execute(
            "UPDATE sessions SET refresh_hash = ?2 WHERE id = ?1",
            params![session.id, new_hash],
        )?;
    }
    tx.commit()?;
    Ok(found)
}

/// Whether a session exists and was not logged out.
pub(crate) fn session_active(conn: &mut Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM sessions WHERE id = ?1 AND revoked_at IS NULL)",
        )?
        .query_row(params![id], |r| r.get(0))?)
}

pub(crate) fn revoke_session(conn: &mut Connection, id: &str) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE sessions SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, now_millis()],
    )?;
    Ok(n == 1)
}

/// Registers a device (register, edge, kiosk) at a site of the tenant.
pub(crate) fn create_device(
    conn: &mut Connection,
    tenant: &str,
    id: &str,
    site: &str,
    name: &str,
) -> Result<(), StoreError> {
    ensure_site(conn, tenant, &Some(site.to_owned()))?;
    conn.execute(
        "INSERT INTO devices (tenant_id, id, site_id, name, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![tenant, id, site, name, now_millis()],
    )
    .map_err(|e| map_unique(e, || format!("device {id:?} already exists")))?;
    Ok(())
}

/// A tenant's devices as (id, site, name).
pub(crate) fn list_devices(
    conn: &mut Connection,
    tenant: &str,
) -> Result<Vec<(String, String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, site_id, name FROM devices WHERE tenant_id = ?1 ORDER BY site_id, id",
    )?;
    let rows = stmt.query_map(params![tenant], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
