//! Administration inside the caller's tenant: sites, users and API keys
//! (`/api/admin/…`, role owner or admin). An admin cannot create, change or grant an
//! owner, and nobody changes their own role, site, modules, access or (here) password;
//! API keys are shown once, at creation, and stored hashed. Every handler checks the
//! caller before it reads the body. At a store node users are the hub's (mirrored):
//! changing them is refused there.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use stocky_core::accounts::{check_password, parse_email};
use stocky_core::api::{PasswordReset, UserUpdate, UserView};
use stocky_core::auth::{Action, Role, USER_CHANGED_EVENT};
use stocky_core::documents::check_name;
use stocky_core::time::iso8601;
use stocky_store::audit::AccountAudit;
use stocky_store::{Account, Accounts, Command, Origin, StoreError, User, UserChange, UserChanged};

use super::json_body;
use crate::auth::{digest, hash_password_off_thread, random_token, Principal, API_KEY_PREFIX};
use crate::error::ApiError;
use crate::openapi::{doc, ApiRoutes};
use crate::AppState;

/// The audit entry of an account change made by `p` (never with a secret in `after`).
pub(super) fn audit_entry(
    p: &Principal,
    action: &str,
    entity_type: &'static str,
    entity_id: &str,
    after: Value,
) -> AccountAudit {
    AccountAudit {
        tenant: p.tenant.to_string(),
        user: Some(p.actor().to_string()),
        device: p.device.as_deref().map(str::to_owned),
        action: action.to_owned(),
        entity_type,
        entity_id: Some(entity_id.to_owned()),
        after: Some(after.to_string()),
    }
}

pub fn routes() -> ApiRoutes {
    ApiRoutes::new()
        .get("/api/admin/sites", list_sites, doc("Sites with their store node's state and outbox report"))
        .post(
            "/api/admin/sites",
            create_site,
            doc("Create a site (owners and admins)")
                .body::<SiteBody>()
                .created_object()
                .errors(&[409]),
        )
        .get(
            "/api/admin/sites/{site_id}/sync-log",
            site_sync_log,
            doc("The hub's record of a site's push and pull rounds, newest first (seed 003 `sync_logs`)")
                .query::<LogQuery>(),
        )
        .get("/api/admin/users", list_users, doc("The tenant's users"))
        .post(
            "/api/admin/users",
            create_user,
            doc("Create a user with a role and home site")
                .body::<GrantBody>()
                .created_object()
                .errors(&[409]),
        )
        .patch(
            "/api/admin/users/{id}",
            update_user,
            doc("Change a user's role, home site, modules or access")
                .about("Absent fields stay; `siteId`/`modules` `null` mean every site/module; `disabled: true` refuses their sign-ins. Any change ends the user's sessions (their tokens carry the old grant). Only an owner changes an owner or grants the role; nobody changes their own account here; `409 managed_upstream` at a store node.")
                .body::<UserUpdate>()
                .ok::<UserView>()
                .errors(&[400, 403, 404, 409]),
        )
        .post(
            "/api/admin/users/{id}/password",
            reset_user_password,
            doc("Set another user's password; their sessions end")
                .about("Only an owner sets an owner's password. Your own is changed at `POST /api/auth/password`, with the current one.")
                .body::<PasswordReset>()
                .ok::<UserView>()
                .errors(&[400, 403, 404, 409]),
        )
        .get("/api/admin/api-keys", list_keys, doc("The tenant's API keys (never their secrets)"))
        .post(
            "/api/admin/api-keys",
            create_key,
            doc("Create an API key; its secret is shown once")
                .body::<GrantBody>()
                .created_object()
                .errors(&[409]),
        )
        .delete(
            "/api/admin/api-keys/{id}",
            revoke_key,
            doc("Revoke an API key"),
        )
        .get("/api/admin/devices", list_devices, doc("Registered devices (registers, store nodes)"))
        .post(
            "/api/admin/devices",
            create_device,
            doc("Register a device at a site")
                .body::<DeviceBody>()
                .created_object()
                .errors(&[409]),
        )
        .post(
            "/api/admin/tenants",
            create_tenant,
            doc("Provision a tenant and its first owner (the hub operator's token only)")
                .body::<TenantBody>()
                .created_object()
                .errors(&[409]),
        )
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct TenantBody {
    id: String,
    name: Option<String>,
    /// The new tenant's first owner.
    owner: OwnerBody,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct OwnerBody {
    email: String,
    password: String,
}

/// `POST /api/admin/tenants`: the hub operator (`STOCKY_ADMIN_TOKEN`) provisions a tenant
/// and its first owner. No tenant's own credential can do this.
async fn create_tenant(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if p.kind != crate::auth::Kind::AdminToken {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the hub operator (STOCKY_ADMIN_TOKEN) may create tenants",
        ));
    }
    let body: TenantBody = json_body(request, &state).await?;
    check_name("tenant", &body.id).map_err(|e| ApiError::bad_request("invalid_name", e.0))?;
    let invalid_owner = |e: stocky_core::documents::Invalid| {
        ApiError::bad_request("invalid_owner", format!("owner: {}", e.0))
    };
    let email = parse_email(&body.owner.email).map_err(invalid_owner)?;
    check_password(&body.owner.password).map_err(invalid_owner)?;
    let password = body.owner.password.clone();
    let hash = hash_password_off_thread(password).await?;
    let owner = Account {
        id: crate::random_id(),
        tenant: body.id.clone(),
        role: Role::Owner,
        site: None,
        modules: None,
    };
    let (id, name, login, created) = (
        body.id.clone(),
        body.name.unwrap_or_else(|| body.id.clone()),
        email.clone(),
        owner.clone(),
    );
    // The tenant is created in its own transaction (stream, site, owner): its entry
    // follows it.
    let entry = audit_entry(
        &p,
        "tenant:create",
        "tenant",
        &body.id,
        json!({"id": body.id}),
    );
    let entry = AccountAudit {
        tenant: body.id.clone(),
        ..entry
    };
    state
        .store
        .accounts(move |a| {
            a.create_tenant(&id, &name, Some((&created, &login, &hash)))?;
            a.audit(&entry)
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": body.id, "owner": {"userId": owner.id, "email": email}})),
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct SiteBody {
    id: String,
    name: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantBody {
    /// Email (users) or a label (keys).
    #[serde(alias = "email")]
    name: String,
    password: Option<String>,
    role: String,
    site_id: Option<String>,
    modules: Option<Vec<String>>,
}

/// Checks and builds the account a grant describes, inside the caller's tenant.
fn account_for(caller: &Principal, body: &GrantBody) -> Result<Account, ApiError> {
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_role",
            "role must be owner, admin, manager or cashier",
        )
    })?;
    if role == Role::Owner && caller.role != Role::Owner {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only an owner may grant the owner role",
        ));
    }
    if let Some(site) = &body.site_id {
        check_name("site", site).map_err(|e| ApiError::bad_request("invalid_name", e.0))?;
    }
    Ok(Account {
        id: crate::random_id(),
        tenant: caller.tenant.to_string(),
        role,
        site: body.site_id.clone(),
        modules: body.modules.clone(),
    })
}

async fn list_sites(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    let (tenant, fresh) = (p.tenant.to_string(), crate::presence::fresh_after(&state));
    let sites = state
        .store
        .sync(move |s| s.site_states(&tenant, fresh))
        .await?;
    let sites: Vec<Value> = sites
        .into_iter()
        .filter(|site| p.sees_site(&site.id))
        .map(|site| {
            json!({
                "id": site.id,
                "name": site.name,
                "isOnline": site.is_online,
                "lastPingAt": site.last_ping_at.map(iso8601),
                "lastSyncAt": site.last_sync_at.map(iso8601),
                "syncVersion": site.sync_version,
                "outboxDepth": site.outbox.map(|o| o.pending),
                "pendingSales": site.outbox.map(|o| o.pending_sales),
                "oldestUnsyncedSaleAt": site.outbox.and_then(|o| o.oldest_unsynced_sale_at).map(iso8601),
                "outboxReportedAt": site.outbox.map(|o| iso8601(o.reported_at)),
            })
        })
        .collect();
    Ok(Json(json!({"data": sites})))
}

#[derive(Deserialize, schemars::JsonSchema)]
struct LogQuery {
    limit: Option<usize>,
}

/// `GET /api/admin/sites/{siteId}/sync-log?limit=` (owners, admins): the hub's record of
/// the site's push and pull rounds (seed 003 `sync_logs`), newest first (default 100, at
/// most 1000).
async fn site_sync_log(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(site): Path<String>,
    axum::extract::Query(query): axum::extract::Query<LogQuery>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::ManageAccess)?;
    let site = super::site::target_site(&state, &p, Some(&site)).await?;
    let (tenant, at, limit) = (
        p.tenant.to_string(),
        site.to_string(),
        query.limit.unwrap_or(100).clamp(1, 1000),
    );
    let rows = state
        .store
        .sync(move |s| s.sync_log(Some((&tenant, &at)), limit))
        .await?;
    let data: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "siteId": &*site,
                "operation": r.kind,
                "items": r.records_affected,
                "status": r.status,
                "error": r.error,
                "durationMs": (r.completed_at - r.started_at).max(0),
                "startedAt": iso8601(r.started_at),
                "timestamp": iso8601(r.completed_at),
            })
        })
        .collect();
    Ok(Json(json!({"siteId": &*site, "data": data})))
}

async fn create_site(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    p.require(Action::ManageAccess)?;
    let body: SiteBody = json_body(request, &state).await?;
    check_name("site", &body.id).map_err(|e| ApiError::bad_request("invalid_name", e.0))?;
    let name = body.name.unwrap_or_else(|| body.id.clone());
    let (tenant, id, label) = (p.tenant.to_string(), body.id.clone(), name.clone());
    let entry = audit_entry(
        &p,
        "site:create",
        "site",
        &id,
        json!({"id": id, "name": name}),
    );
    state
        .store
        .accounts(move |a| a.audited(&entry, |a| a.create_site(&tenant, &id, &label)))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": body.id, "name": name})),
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceBody {
    id: String,
    site_id: String,
    name: Option<String>,
}

/// Devices (registers, edges) belong to a site; their id is the `deviceId` a connection
/// names for the one-connection-per-user-and-device rule.
async fn create_device(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    p.require(Action::ManageAccess)?;
    let body: DeviceBody = json_body(request, &state).await?;
    check_name("device", &body.id).map_err(|e| ApiError::bad_request("invalid_name", e.0))?;
    check_name("site", &body.site_id).map_err(|e| ApiError::bad_request("invalid_name", e.0))?;
    let name = body.name.unwrap_or_else(|| body.id.clone());
    let (tenant, id, site, label) = (
        p.tenant.to_string(),
        body.id.clone(),
        body.site_id.clone(),
        name.clone(),
    );
    let entry = audit_entry(
        &p,
        "device:create",
        "device",
        &id,
        json!({"id": id, "siteId": site, "name": name}),
    );
    state
        .store
        .accounts(move |a| a.audited(&entry, |a| a.create_device(&tenant, &id, &site, &label)))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": body.id, "siteId": body.site_id, "name": name})),
    ))
}

async fn list_devices(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::ManageAccess)?;
    let tenant = p.tenant.to_string();
    let devices = state
        .store
        .accounts(move |a| a.list_devices(&tenant))
        .await?;
    let devices: Vec<Value> = devices
        .into_iter()
        .map(|(id, site, name)| json!({"id": id, "siteId": site, "name": name}))
        .collect();
    Ok(Json(json!({"data": devices})))
}

async fn list_users(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::ManageAccess)?;
    let tenant = p.tenant.to_string();
    Ok(Json(
        json!({"data": state.store.accounts(move |a| a.list_users(&tenant)).await?}),
    ))
}

async fn create_user(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    p.require(Action::ManageAccess)?;
    users_are_local(&state)?;
    let body: GrantBody = json_body(request, &state).await?;
    let account = account_for(&p, &body)?;
    let email = parse_email(&body.name).map_err(|e| ApiError::bad_request("invalid_email", e.0))?;
    let password = body.password.clone().unwrap_or_default();
    check_password(&password).map_err(|e| ApiError::bad_request("weak_password", e.0))?;
    let hash = hash_password_off_thread(password).await?;
    let (created, login) = (account.clone(), email.clone());
    let entry = audit_entry(
        &p,
        "user:create",
        "user",
        &account.id,
        json!({"email": email, "role": account.role, "siteId": account.site, "modules": account.modules}),
    );
    state
        .store
        .accounts(move |a| a.audited(&entry, |a| a.create_user(&created, &login, &hash)))
        .await?;
    announce_user_change(&state, &p, &account.id, [account.site.as_deref(), None]).await;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"userId": account.id, "email": email, "role": account.role, "siteId": account.site, "modules": account.modules}),
        ),
    ))
}

/// Refuses to change users at a store node, which mirrors the hub's.
pub(super) fn users_are_local(state: &AppState) -> Result<(), ApiError> {
    if state.config.users_from_upstream {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "managed_upstream",
            "users are managed at the hub: change them there, and this store node mirrors them",
        ));
    }
    Ok(())
}

/// Whether `p` may change `what` of user `id` here: it manages access, users are this
/// tier's own, and `id` is someone else (one's own account is not changed through the
/// admin routes).
fn may_change_user(state: &AppState, p: &Principal, id: &str, what: &str) -> Result<(), ApiError> {
    p.require(Action::ManageAccess)?;
    users_are_local(state)?;
    if p.kind == crate::auth::Kind::User && *p.id == *id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("you cannot change your own {what} here"),
        ));
    }
    Ok(())
}

/// Tells the store nodes of the sites a user belongs or belonged to that their users
/// changed ([`USER_CHANGED_EVENT`]), so that they refresh their copy now. Best effort: a
/// node that misses it catches up at its next refresh. Users of every site are not
/// mirrored, so they need no announcement.
pub(super) async fn announce_user_change(
    state: &AppState,
    p: &Principal,
    user: &str,
    sites: [Option<&str>; 2],
) {
    let [first, second] = sites;
    let second = second.filter(|s| Some(*s) != first);
    for site in [first, second].into_iter().flatten() {
        let mut origin = Origin::system(p.tenant.clone(), site.into(), "accounts");
        origin.user = Some(p.actor());
        origin.device = p.device.clone();
        let command = Command::Publish {
            event: USER_CHANGED_EVENT.into(),
            data: json!({"userId": user}),
        };
        if let Err(e) = state.store.submit(command, origin).await {
            tracing::warn!(error = %e, site, "could not announce a change of the site's users");
        }
    }
}

/// The user a change is for, as the caller names it.
struct Target<'a> {
    tenant: &'a str,
    id: &'a str,
    /// The caller is an owner (who alone changes owners).
    by_owner: bool,
}

/// Runs `change` on user `id` of the caller's tenant with its audit entry (`action`,
/// `after`), written only when the change was made; answers with the user as it is now.
async fn change_user(
    state: &AppState,
    p: &Principal,
    id: &str,
    action: &str,
    after: Value,
    change: impl FnOnce(&mut Accounts<'_>, &Target<'_>) -> Result<UserChanged, StoreError>
        + Send
        + 'static,
) -> Result<Json<UserView>, ApiError> {
    let entry = audit_entry(p, action, "user", id, after);
    let (tenant, user, by_owner) = (p.tenant.to_string(), id.to_owned(), p.role == Role::Owner);
    let outcome = state
        .store
        .accounts(move |a| {
            let target = Target {
                tenant: &tenant,
                id: &user,
                by_owner,
            };
            a.audited_when(
                &entry,
                |a| change(a, &target),
                |done| matches!(done, UserChanged::Done { .. }),
            )
        })
        .await?;
    match outcome {
        UserChanged::Done { before, after } => {
            let sites = [
                before.account.site.as_deref(),
                after.account.site.as_deref(),
            ];
            announce_user_change(state, p, id, sites).await;
            Ok(Json(view(*after)))
        }
        UserChanged::NotFound => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("user {id:?} not found"),
        )),
        UserChanged::OwnerOnly => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only an owner may change an owner or grant the owner role",
        )),
    }
}

fn view(user: User) -> UserView {
    UserView {
        user_id: user.account.id,
        email: user.email,
        role: user.account.role,
        site_id: user.account.site,
        modules: user.account.modules,
        disabled: user.disabled,
    }
}

/// `PATCH /api/admin/users/{id}`.
async fn update_user(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Json<UserView>, ApiError> {
    may_change_user(&state, &p, &id, "role, site, modules or access")?;
    let body: UserUpdate = json_body(request, &state).await?;
    if let Some(Some(site)) = &body.site_id {
        check_name("site", site).map_err(|e| ApiError::bad_request("invalid_name", e.0))?;
    }
    let after = serde_json::to_value(&body).unwrap_or_default();
    let change = UserChange {
        role: body.role,
        site: body.site_id,
        modules: body.modules,
        disabled: body.disabled,
    };
    change_user(&state, &p, &id, "user:update", after, move |a, user| {
        a.update_user(user.tenant, user.id, &change, user.by_owner)
    })
    .await
}

/// `POST /api/admin/users/{id}/password`.
async fn reset_user_password(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Json<UserView>, ApiError> {
    may_change_user(
        &state,
        &p,
        &id,
        "password (use POST /api/auth/password, with the current one)",
    )?;
    let body: PasswordReset = json_body(request, &state).await?;
    check_password(&body.password).map_err(|e| ApiError::bad_request("weak_password", e.0))?;
    let hash = hash_password_off_thread(body.password).await?;
    let after = json!({"userId": id});
    change_user(&state, &p, &id, "user:password", after, move |a, user| {
        a.set_password(user.tenant, user.id, &hash, None, user.by_owner)
    })
    .await
}

async fn list_keys(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::ManageAccess)?;
    let tenant = p.tenant.to_string();
    Ok(Json(
        json!({"data": state.store.accounts(move |a| a.list_api_keys(&tenant)).await?}),
    ))
}

async fn create_key(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    p.require(Action::ManageAccess)?;
    let body: GrantBody = json_body(request, &state).await?;
    let account = account_for(&p, &body)?;
    let key = random_token(API_KEY_PREFIX);
    let (created, name, hash) = (account.clone(), body.name.clone(), digest(&key));
    let entry = audit_entry(
        &p,
        "api_key:create",
        "api_key",
        &account.id,
        json!({"name": body.name, "role": account.role, "siteId": account.site, "modules": account.modules}),
    );
    state
        .store
        .accounts(move |a| a.audited(&entry, |a| a.create_api_key(&created, &name, &hash)))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": account.id,
            "name": body.name,
            "key": key,
            "role": account.role,
            "siteId": account.site,
            "modules": account.modules,
            "note": "store this key now: it is not shown again",
        })),
    ))
}

async fn revoke_key(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::ManageAccess)?;
    let tenant = p.tenant.to_string();
    let key = id.clone();
    let entry = audit_entry(&p, "api_key:revoke", "api_key", &id, json!({"id": id}));
    if !state
        .store
        .accounts(move |a| {
            a.audited_when(
                &entry,
                |a| a.revoke_api_key(&tenant, &key),
                |revoked| *revoked,
            )
        })
        .await?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("API key {id:?} not found"),
        ));
    }
    Ok(Json(json!({"success": true, "id": id})))
}
