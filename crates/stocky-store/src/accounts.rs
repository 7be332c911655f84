//! Tenants, sites, users, devices, API keys and login sessions.
//!
//! These writes carry no event, so they do not go through the writer thread: they run on
//! a pooled read-write connection, in short transactions of their own, and rely on the
//! engine's locking (on SQLite the writer holds the database lock for one group commit at
//! a time and `busy_timeout` covers the wait; on PostgreSQL only the touched rows are
//! locked). Secrets never reach this module in clear: passwords arrive hashed (argon2),
//! keys and refresh tokens as SHA-256 digests.

use stocky_core::auth::Role;
use stocky_core::time::now_millis;

use crate::sql::{args, in_tx, Conn, DbError, Row, TxMode};
use crate::StoreError;

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

/// The account an API key speaks for and, for a store node's credential, its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHolder {
    pub account: Account,
    pub device: Option<String>,
}

/// A login session found by its refresh token.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub account: Account,
    pub device: Option<String>,
    pub expires_at: i64,
}

/// A user as owners and admins manage it (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub account: Account,
    pub email: String,
    pub disabled: bool,
}

/// What an owner or admin changes on a user; `None`: unchanged (`Some(None)` site or
/// modules: every site, every module).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserChange {
    pub role: Option<Role>,
    pub site: Option<Option<String>>,
    pub modules: Option<Option<Vec<String>>>,
    pub disabled: Option<bool>,
}

/// What became of a change to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserChanged {
    /// Made (or there was nothing to change): the user before and after.
    Done { before: Box<User>, after: Box<User> },
    /// No such user in the tenant.
    NotFound,
    /// The user is an owner, or the change grants the owner role, and the caller is not an
    /// owner: nothing changed.
    OwnerOnly,
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

fn role_of(text: &str) -> Result<Role, DbError> {
    Role::parse(text).ok_or_else(|| DbError::other(format!("role {text:?}")))
}

/// A listing row: `id, name, role, site_id, modules, created_at, revoked`.
fn listed(r: &mut Row) -> Result<Listed, DbError> {
    Ok(Listed {
        id: r.text(0)?,
        name: r.text(1)?,
        role: r.opt_text(2)?,
        site_id: r.opt_text(3)?,
        modules: modules_from_text(r.opt_text(4)?),
        created_at: r.int(5)?,
        revoked: r.bool(6)?,
    })
}

/// An account from five columns starting at `at`: `id, tenant_id, role, site_id, modules`.
fn account_at(r: &mut Row, at: usize) -> Result<Account, DbError> {
    Ok(Account {
        id: r.text(at)?,
        tenant: r.text(at + 1)?,
        role: role_of(&r.text(at + 2)?)?,
        site: r.opt_text(at + 3)?,
        modules: modules_from_text(r.opt_text(at + 4)?),
    })
}

/// A sign-in row: `id, tenant_id, role, site_id, modules, email, password_hash`.
fn login_at(r: &mut Row) -> Result<UserLogin, DbError> {
    Ok(UserLogin {
        account: account_at(r, 0)?,
        email: r.text(5)?,
        password_hash: r.text(6)?,
    })
}

/// Rows of `(text, text)`.
fn text_pairs(rows: Vec<Row>) -> Result<Vec<(String, String)>, DbError> {
    rows.into_iter()
        .map(|mut r| -> Result<(String, String), DbError> { Ok((r.text(0)?, r.text(1)?)) })
        .collect()
}

/// Listing rows (see [`listed`]).
fn listed_rows(rows: Vec<Row>) -> Result<Vec<Listed>, DbError> {
    rows.into_iter().map(|mut r| listed(&mut r)).collect()
}

fn conflict(what: String) -> StoreError {
    StoreError::Conflict(what)
}

fn map_unique(e: DbError, what: impl FnOnce() -> String) -> StoreError {
    if e.is_unique() {
        conflict(what())
    } else {
        StoreError::Db(e)
    }
}

/// Creates a tenant with its event stream and a `default` site, and (when given) its
/// first owner — all in one transaction.
pub(crate) fn create_tenant(
    conn: &mut dyn Conn,
    id: &str,
    name: &str,
    owner: Option<(&Account, &str, &str)>,
) -> Result<(), StoreError> {
    in_tx(conn, TxMode::Plain, |tx| -> Result<(), StoreError> {
        let now = now_millis();
        tx.execute(
            "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)",
            args![id, name, now],
        )
        .map_err(|e| map_unique(e, || format!("tenant {id:?} already exists")))?;
        tx.execute(
            "INSERT INTO sites (tenant_id, id, name, created_at) VALUES ($1, $2, 'Default site', $3)",
            args![id, stocky_core::DEFAULT_SITE, now],
        )?;
        let epoch = crate::new_epoch();
        tx.execute(
            "INSERT INTO streams (tenant_id, epoch, head) VALUES ($1, $2, 0)",
            args![id, &epoch],
        )?;
        if let Some((account, email, password_hash)) = owner {
            create_user(tx, account, email, password_hash)?;
        }
        Ok(())
    })
}

pub(crate) fn list_tenants(conn: &mut dyn Conn) -> Result<Vec<(String, String)>, StoreError> {
    let rows = conn.query("SELECT id, name FROM tenants ORDER BY id", args![])?;
    Ok(text_pairs(rows)?)
}

pub(crate) fn create_site(
    conn: &mut dyn Conn,
    tenant: &str,
    id: &str,
    name: &str,
) -> Result<(), StoreError> {
    ensure_tenant(conn, tenant)?;
    conn.execute(
        "INSERT INTO sites (tenant_id, id, name, created_at) VALUES ($1, $2, $3, $4)",
        args![tenant, id, name, now_millis()],
    )
    .map_err(|e| map_unique(e, || format!("site {id:?} already exists")))?;
    Ok(())
}

pub(crate) fn site_exists(
    conn: &mut dyn Conn,
    tenant: &str,
    site: &str,
) -> Result<bool, StoreError> {
    Ok(conn
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM sites WHERE tenant_id = $1 AND id = $2)",
            args![tenant, site],
        )?
        .bool(0)?)
}

pub(crate) fn list_sites(
    conn: &mut dyn Conn,
    tenant: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let rows = conn.query(
        "SELECT id, name FROM sites WHERE tenant_id = $1 ORDER BY id",
        args![tenant],
    )?;
    Ok(text_pairs(rows)?)
}

fn ensure_tenant(conn: &mut dyn Conn, tenant: &str) -> Result<(), StoreError> {
    let exists = conn
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)",
            args![tenant],
        )?
        .bool(0)?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("tenant {tenant:?}")))
    }
}

fn ensure_site(conn: &mut dyn Conn, tenant: &str, site: &Option<String>) -> Result<(), StoreError> {
    ensure_tenant(conn, tenant)?;
    match site {
        Some(site) if !site_exists(conn, tenant, site)? => {
            Err(StoreError::NotFound(format!("site {site:?}")))
        }
        _ => Ok(()),
    }
}

pub(crate) fn create_user(
    conn: &mut dyn Conn,
    account: &Account,
    email: &str,
    password_hash: &str,
) -> Result<(), StoreError> {
    ensure_site(conn, &account.tenant, &account.site)?;
    let modules = modules_to_text(&account.modules);
    conn.execute(
        "INSERT INTO users (id, tenant_id, email, password_hash, role, site_id, modules, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        args![
            &account.id,
            &account.tenant,
            email,
            password_hash,
            account.role.as_str(),
            &account.site,
            &modules,
            now_millis()
        ],
    )
    .map_err(|e| map_unique(e, || format!("a user with email {email:?} already exists")))?;
    Ok(())
}

/// Finds an enabled user by email, ignoring case (SQLite's `NOCASE` column collation does
/// not exist on PostgreSQL, so both sides are lowered explicitly).
pub(crate) fn user_by_email(
    conn: &mut dyn Conn,
    email: &str,
) -> Result<Option<UserLogin>, StoreError> {
    conn.query_opt(
        "SELECT id, tenant_id, role, site_id, modules, email, password_hash FROM users
         WHERE lower(email) = lower($1) AND disabled_at IS NULL",
        args![email],
    )?
    .map(|mut r| login_at(&mut r))
    .transpose()
    .map_err(StoreError::from)
}

/// Replaces the password hash of the user with `email` (ignoring case) and logs out every
/// session of theirs, which also invalidates their access tokens — in one transaction.
/// Returns the user's account; `None` when no user has that email.
pub(crate) fn reset_password(
    conn: &mut dyn Conn,
    email: &str,
    password_hash: &str,
) -> Result<Option<Account>, StoreError> {
    in_tx(
        conn,
        TxMode::Plain,
        |tx| -> Result<Option<Account>, StoreError> {
            let Some(mut r) = tx.query_opt(
                "SELECT id, tenant_id, role, site_id, modules FROM users WHERE lower(email) = lower($1)",
                args![email],
            )?
            else {
                return Ok(None);
            };
            let account = account_at(&mut r, 0)?;
            tx.execute(
                "UPDATE users SET password_hash = $2 WHERE id = $1",
                args![&account.id, password_hash],
            )?;
            end_sessions(tx, &account.id, None, now_millis())?;
            Ok(Some(account))
        },
    )
}

/// The user `id` of `tenant`, enabled or not.
pub(crate) fn user(
    conn: &mut dyn Conn,
    tenant: &str,
    id: &str,
) -> Result<Option<User>, StoreError> {
    let Some(mut r) = conn.query_opt(
        "SELECT id, tenant_id, role, site_id, modules, email, disabled_at IS NOT NULL FROM users
         WHERE tenant_id = $1 AND id = $2",
        args![tenant, id],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(User {
        account: account_at(&mut r, 0)?,
        email: r.text(5)?,
        disabled: r.bool(6)?,
    }))
}

/// Applies `change` to user `id` of `tenant` (`by_owner`: the caller is an owner, who alone
/// may change an owner or grant the role). A change of role, site, modules or access ends
/// the user's sessions — their tokens carry the old grant — so they sign in again with the
/// new one. The caller runs it in a transaction.
pub(crate) fn update_user(
    conn: &mut dyn Conn,
    tenant: &str,
    id: &str,
    change: &UserChange,
    by_owner: bool,
) -> Result<UserChanged, StoreError> {
    let Some(user) = user(conn, tenant, id)? else {
        return Ok(UserChanged::NotFound);
    };
    if !by_owner && (user.account.role == Role::Owner || change.role == Some(Role::Owner)) {
        return Ok(UserChanged::OwnerOnly);
    }
    let account = Account {
        role: change.role.unwrap_or(user.account.role),
        site: change
            .site
            .clone()
            .unwrap_or_else(|| user.account.site.clone()),
        modules: change
            .modules
            .clone()
            .unwrap_or_else(|| user.account.modules.clone()),
        ..user.account.clone()
    };
    let updated = User {
        account,
        email: user.email.clone(),
        disabled: change.disabled.unwrap_or(user.disabled),
    };
    if updated == user {
        return Ok(UserChanged::Done {
            before: Box::new(user.clone()),
            after: Box::new(user),
        });
    }
    ensure_site(conn, tenant, &updated.account.site)?;
    let now = now_millis();
    conn.execute(
        "UPDATE users SET role = $3, site_id = $4, modules = $5 WHERE tenant_id = $1 AND id = $2",
        args![
            tenant,
            id,
            updated.account.role.as_str(),
            &updated.account.site,
            &modules_to_text(&updated.account.modules)
        ],
    )?;
    if updated.disabled != user.disabled {
        let disabled_at = updated.disabled.then_some(now);
        conn.execute(
            "UPDATE users SET disabled_at = $3 WHERE tenant_id = $1 AND id = $2",
            args![tenant, id, disabled_at],
        )?;
    }
    end_sessions(conn, id, None, now)?;
    Ok(UserChanged::Done {
        before: Box::new(user),
        after: Box::new(updated),
    })
}

/// Sets the password hash of user `id` of `tenant` and ends their sessions but `keep`
/// (the session of a user changing their own). `by_owner` as for [`update_user`]. The
/// caller runs it in a transaction.
pub(crate) fn set_password(
    conn: &mut dyn Conn,
    tenant: &str,
    id: &str,
    password_hash: &str,
    keep: Option<&str>,
    by_owner: bool,
) -> Result<UserChanged, StoreError> {
    let Some(user) = user(conn, tenant, id)? else {
        return Ok(UserChanged::NotFound);
    };
    if !by_owner && user.account.role == Role::Owner {
        return Ok(UserChanged::OwnerOnly);
    }
    conn.execute(
        "UPDATE users SET password_hash = $3 WHERE tenant_id = $1 AND id = $2",
        args![tenant, id, password_hash],
    )?;
    end_sessions(conn, id, keep, now_millis())?;
    Ok(UserChanged::Done {
        before: Box::new(user.clone()),
        after: Box::new(user),
    })
}

/// Logs out every session of user `id` but `keep`, which also invalidates their access
/// tokens.
fn end_sessions(
    conn: &mut dyn Conn,
    id: &str,
    keep: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL
         AND id <> $3",
        args![id, now, keep.unwrap_or("")],
    )?;
    Ok(())
}

/// The enabled user `id` of `tenant` with their password hash.
pub(crate) fn user_login(
    conn: &mut dyn Conn,
    tenant: &str,
    id: &str,
) -> Result<Option<UserLogin>, StoreError> {
    conn.query_opt(
        "SELECT id, tenant_id, role, site_id, modules, email, password_hash FROM users
         WHERE tenant_id = $1 AND id = $2 AND disabled_at IS NULL",
        args![tenant, id],
    )?
    .map(|mut r| login_at(&mut r))
    .transpose()
    .map_err(StoreError::from)
}

pub(crate) fn count_users(conn: &mut dyn Conn) -> Result<i64, StoreError> {
    Ok(conn
        .query_one("SELECT COUNT(*) FROM users", args![])?
        .int(0)?)
}

pub(crate) fn list_users(conn: &mut dyn Conn, tenant: &str) -> Result<Vec<Listed>, StoreError> {
    let rows = conn.query(
        "SELECT id, email, role, site_id, modules, created_at, disabled_at IS NOT NULL FROM users
         WHERE tenant_id = $1 ORDER BY created_at, email",
        args![tenant],
    )?;
    Ok(listed_rows(rows)?)
}

pub(crate) fn create_api_key(
    conn: &mut dyn Conn,
    account: &Account,
    name: &str,
    key_hash: &str,
) -> Result<(), StoreError> {
    ensure_site(conn, &account.tenant, &account.site)?;
    let modules = modules_to_text(&account.modules);
    conn.execute(
        "INSERT INTO api_keys (id, tenant_id, name, key_hash, role, site_id, modules, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        args![
            &account.id,
            &account.tenant,
            name,
            key_hash,
            account.role.as_str(),
            &account.site,
            &modules,
            now_millis()
        ],
    )?;
    Ok(())
}

pub(crate) fn api_key(
    conn: &mut dyn Conn,
    key_hash: &str,
) -> Result<Option<KeyHolder>, StoreError> {
    match conn.query_opt(
        "SELECT id, tenant_id, role, site_id, modules, device_id FROM api_keys
         WHERE key_hash = $1 AND revoked_at IS NULL",
        args![key_hash],
    )? {
        Some(mut r) => Ok(Some(KeyHolder {
            account: account_at(&mut r, 0)?,
            device: r.opt_text(5)?,
        })),
        None => Ok(None),
    }
}

/// Binds an API key to the device it was issued to (a store node's credential).
pub(crate) fn bind_key_to_device(
    conn: &mut dyn Conn,
    key_id: &str,
    device: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE api_keys SET device_id = $2 WHERE id = $1",
        args![key_id, device],
    )?;
    Ok(())
}

/// Revokes every live key bound to `device` of `tenant` but the (up to two) kept ones;
/// returns how many.
pub(crate) fn revoke_device_keys_except(
    conn: &mut dyn Conn,
    tenant: &str,
    device: &str,
    keep: [&str; 2],
) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE api_keys SET revoked_at = $5 WHERE tenant_id = $1 AND device_id = $2
         AND id <> $3 AND id <> $4 AND revoked_at IS NULL",
        args![tenant, device, keep[0], keep[1], now_millis()],
    )? as usize)
}

/// A new key for the device `device` of `account`'s tenant and site (its credential
/// rotated): the same role, site and modules, bound to the device.
pub(crate) fn create_device_key(
    conn: &mut dyn Conn,
    account: &Account,
    device: &str,
    name: &str,
    key_hash: &str,
) -> Result<(), StoreError> {
    in_tx(conn, TxMode::Plain, |tx| -> Result<(), StoreError> {
        create_api_key(tx, account, name, key_hash)?;
        bind_key_to_device(tx, &account.id, device)
    })
}

/// The enabled users whose home is `tenant`'s `site`, with their password hashes (what a
/// store node needs so that they can sign in while it is offline).
pub(crate) fn site_users(
    conn: &mut dyn Conn,
    tenant: &str,
    site: &str,
) -> Result<Vec<UserLogin>, StoreError> {
    let rows = conn.query(
        "SELECT id, tenant_id, role, site_id, modules, email, password_hash FROM users
         WHERE tenant_id = $1 AND site_id = $2 AND disabled_at IS NULL ORDER BY id",
        args![tenant, site],
    )?;
    rows.into_iter()
        .map(|mut r| login_at(&mut r))
        .collect::<Result<_, DbError>>()
        .map_err(StoreError::from)
}

/// What mirroring the upstream's users changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mirrored {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
}

/// Makes the local users exactly `users` (cloud wins: a store node never edits users).
/// A user that is gone or changed (email, password, role, modules) loses its local
/// sessions, so a password reset or a demotion at the hub also holds at the store.
/// One transaction.
pub(crate) fn mirror_users(
    conn: &mut dyn Conn,
    users: &[UserLogin],
) -> Result<Mirrored, StoreError> {
    in_tx(conn, TxMode::Plain, |tx| -> Result<Mirrored, StoreError> {
        let now = now_millis();
        let mut local = std::collections::HashMap::new();
        for mut r in tx.query(
            "SELECT id, tenant_id, role, site_id, modules, email, password_hash FROM users",
            args![],
        )? {
            let account = account_at(&mut r, 0)?;
            local.insert(account.id.clone(), (account, r.text(5)?, r.text(6)?));
        }
        let mut done = Mirrored::default();
        let wanted: std::collections::HashSet<&str> =
            users.iter().map(|u| u.account.id.as_str()).collect();
        for id in local.keys().filter(|id| !wanted.contains(id.as_str())) {
            tx.execute("DELETE FROM sessions WHERE user_id = $1", args![id])?;
            tx.execute("DELETE FROM users WHERE id = $1", args![id])?;
            done.removed += 1;
        }
        for user in users {
            let a = &user.account;
            match local.get(&a.id) {
                Some((account, email, hash))
                    if account == a && *email == user.email && *hash == user.password_hash => {}
                Some(_) => {
                    tx.execute(
                        "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
                        args![&a.id, now],
                    )?;
                    tx.execute(
                        "UPDATE users SET email = $2, password_hash = $3, role = $4, site_id = $5,
                            modules = $6, disabled_at = NULL WHERE id = $1",
                        args![
                            &a.id,
                            &user.email,
                            &user.password_hash,
                            a.role.as_str(),
                            &a.site,
                            &modules_to_text(&a.modules)
                        ],
                    )?;
                    done.changed += 1;
                }
                None => {
                    create_user(tx, a, &user.email, &user.password_hash)?;
                    done.added += 1;
                }
            }
        }
        Ok(done)
    })
}

pub(crate) fn list_api_keys(conn: &mut dyn Conn, tenant: &str) -> Result<Vec<Listed>, StoreError> {
    let rows = conn.query(
        "SELECT id, name, role, site_id, modules, created_at, revoked_at IS NOT NULL FROM api_keys
         WHERE tenant_id = $1 ORDER BY created_at, id",
        args![tenant],
    )?;
    Ok(listed_rows(rows)?)
}

/// Whether key `id` of `tenant` exists and is not revoked.
pub(crate) fn api_key_active(
    conn: &mut dyn Conn,
    tenant: &str,
    id: &str,
) -> Result<bool, StoreError> {
    Ok(conn
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM api_keys WHERE tenant_id = $1 AND id = $2
             AND revoked_at IS NULL)",
            args![tenant, id],
        )?
        .bool(0)?)
}

/// Revokes a key of `tenant`; `false` when there is no such (unrevoked) key.
pub(crate) fn revoke_api_key(
    conn: &mut dyn Conn,
    tenant: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
        args![tenant, id, now_millis()],
    )?;
    Ok(n == 1)
}

pub(crate) fn create_session(
    conn: &mut dyn Conn,
    id: &str,
    account: &Account,
    device: Option<&str>,
    refresh_hash: &str,
    expires_at: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO sessions (id, tenant_id, user_id, device_id, refresh_hash, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        args![
            id,
            &account.tenant,
            &account.id,
            device,
            refresh_hash,
            now_millis(),
            expires_at
        ],
    )?;
    Ok(())
}

/// Finds a live session by its refresh token and replaces the token (rotation): a refresh
/// token works once, and presenting the one a session was rotated away from again (a
/// stolen copy, or the thief's successor racing the owner) revokes the session.
pub(crate) fn rotate_session(
    conn: &mut dyn Conn,
    refresh_hash: &str,
    new_hash: &str,
    now: i64,
) -> Result<Option<Session>, StoreError> {
    in_tx(
        conn,
        TxMode::Plain,
        |tx| -> Result<Option<Session>, StoreError> {
            let found = match tx.query_opt(
            "SELECT s.id, s.device_id, s.expires_at, u.id, u.tenant_id, u.role, u.site_id, u.modules
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.refresh_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 AND u.disabled_at IS NULL",
            args![refresh_hash, now],
        )? {
            Some(mut r) => Some(Session {
                id: r.text(0)?,
                device: r.opt_text(1)?,
                expires_at: r.int(2)?,
                account: account_at(&mut r, 3)?,
            }),
            None => None,
        };
            match &found {
                Some(session) => {
                    tx.execute(
                        "UPDATE sessions SET previous_refresh_hash = refresh_hash, refresh_hash = $2
                         WHERE id = $1",
                        args![&session.id, new_hash],
                    )?;
                    tx.execute(
                        "INSERT INTO spent_refresh_tokens (refresh_hash, session_id) VALUES ($1, $2)",
                        args![refresh_hash, &session.id],
                    )?;
                }
                // A token the session was rotated away from (any of them; sessions from
                // before the spent list know only their last), presented again: someone
                // else holds a copy of it or of a successor. The session ends for both.
                None => {
                    tx.execute(
                        "UPDATE sessions SET revoked_at = $2
                         WHERE revoked_at IS NULL AND (previous_refresh_hash = $1 OR id IN
                             (SELECT session_id FROM spent_refresh_tokens WHERE refresh_hash = $1))",
                        args![refresh_hash, now],
                    )?;
                }
            }
            Ok(found)
        },
    )
}

/// Whether a session exists and was not logged out.
pub(crate) fn session_active(conn: &mut dyn Conn, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1 AND revoked_at IS NULL)",
            args![id],
        )?
        .bool(0)?)
}

pub(crate) fn revoke_session(conn: &mut dyn Conn, id: &str) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        args![id, now_millis()],
    )?;
    Ok(n == 1)
}

/// Deletes the sessions that expired or were logged out before `before` (epoch ms);
/// returns how many. A purged session's refresh token is refused like any unknown one.
pub(crate) fn purge_sessions(conn: &mut dyn Conn, before: i64) -> Result<u64, StoreError> {
    in_tx(conn, TxMode::Plain, |tx| -> Result<u64, StoreError> {
        let purged = tx.execute(
            "DELETE FROM sessions WHERE expires_at < $1 OR revoked_at < $1",
            args![before],
        )?;
        // Their spent refresh tokens go with them (and those of sessions a store node's
        // users mirror removed).
        tx.execute(
            "DELETE FROM spent_refresh_tokens WHERE session_id NOT IN (SELECT id FROM sessions)",
            args![],
        )?;
        Ok(purged)
    })
}

/// Registers a device (register, edge, kiosk) at a site of the tenant.
pub(crate) fn create_device(
    conn: &mut dyn Conn,
    tenant: &str,
    id: &str,
    site: &str,
    name: &str,
) -> Result<(), StoreError> {
    ensure_site(conn, tenant, &Some(site.to_owned()))?;
    conn.execute(
        "INSERT INTO devices (tenant_id, id, site_id, name, created_at) VALUES ($1, $2, $3, $4, $5)",
        args![tenant, id, site, name, now_millis()],
    )
    .map_err(|e| map_unique(e, || format!("device {id:?} already exists")))?;
    Ok(())
}

/// A tenant's devices as (id, site, name).
pub(crate) fn list_devices(
    conn: &mut dyn Conn,
    tenant: &str,
) -> Result<Vec<(String, String, String)>, StoreError> {
    let rows = conn.query(
        "SELECT id, site_id, name FROM devices WHERE tenant_id = $1 ORDER BY site_id, id",
        args![tenant],
    )?;
    Ok(rows
        .into_iter()
        .map(|mut r| -> Result<(String, String, String), DbError> {
            Ok((r.text(0)?, r.text(1)?, r.text(2)?))
        })
        .collect::<Result<_, _>>()?)
}
