//! Transfers between stores at the hub (seed 003 §5.3): the routes and the job runner.
//!
//! - `POST /api/transfers/request` `{fromSiteId, toSiteId, productId, quantity, reason?}`:
//!   both sites must be online (a site with a store node while its node is connected, any
//!   other site always) → `PENDING`; the origin hears `transfer:requested`.
//! - `POST /api/transfers/{id}/approve` (the origin's managers, owners, admins): a stock
//!   check at the origin, then `PROCESSING`; `POST /api/transfers/{id}/reject` `{reason}`.
//! - `GET /api/transfers?status=`, `GET /api/transfers/{id}`: transfers from or to a site the
//!   caller sees.
//!
//! The runner executes `PROCESSING` transfers (the durable job queue is the table itself,
//! so a restart loses none): when both sites are online it submits the execution, which
//! moves the stock in one transaction and completes the transfer; otherwise it records the
//! attempt and tries again later. It wakes on every approval and every [`POLL`].

use std::sync::Arc;
use std::time::Duration;
use stocky_server::openapi::{doc, ApiRoutes};

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use stocky_core::auth::Action;
use stocky_core::time::now_millis;
use stocky_core::transfers::{Transfer, TransferCommand, TransferRequest, TransferStatus};
use stocky_server::auth::Principal;
use stocky_server::error::ApiError;
use stocky_server::rest::{json_body, optional_json_body};
use stocky_server::AppState;
use stocky_store::transfers::{TransferFilter, TRANSFER_ORIGIN};
use stocky_store::{Applied, Command, Origin, Outcome, Store, SubmitError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often the runner looks at transfers waiting for a site to come back.
pub const POLL: Duration = Duration::from_secs(2);
/// Transfers one runner pass executes at most.
const PASS: usize = 500;

/// Wakes the runner (an approval was committed).
#[derive(Clone, Default)]
pub struct Runner(Arc<Notify>);

pub fn routes(runner: Runner) -> ApiRoutes {
    ApiRoutes::new()
        .get(
            "/api/transfers",
            list,
            doc("Stock transfers between sites, newest first").query::<ListQuery>(),
        )
        .post(
            "/api/transfers/request",
            request,
            doc("Request a transfer of stock from one site to another")
                .object_body()
                .created_object()
                .or_status(200)
                .errors(&[409, 422])
                .idempotent(),
        )
        .get("/api/transfers/{id}", one, doc("One transfer"))
        .post(
            "/api/transfers/{id}/approve",
            approve,
            doc("The origin site approves: the stock moves").errors(&[409, 422]),
        )
        .post(
            "/api/transfers/{id}/reject",
            reject,
            doc("The origin site rejects, with an optional reason")
                .optional_body::<RejectBody>()
                .errors(&[409, 422]),
        )
        .map_router(|router| router.layer(Extension(runner)))
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("transfer {id} not found"),
    )
}

/// Whether `site` of `tenant` can take part in a transfer now.
async fn online(state: &AppState, tenant: &str, site: &str) -> Result<bool, ApiError> {
    let (tenant, at, fresh) = (
        tenant.to_owned(),
        site.to_owned(),
        stocky_server::presence::fresh_after(state),
    );
    Ok(state
        .store
        .sync(move |s| {
            if !s.site_has_store_node(&tenant, &at)? {
                return Ok(true);
            }
            Ok(s.site_states(&tenant, fresh)?
                .into_iter()
                .any(|st| st.id == at && st.is_online))
        })
        .await?)
}

fn origin(p: &Principal, site: &str) -> Origin {
    let mut origin = Origin::system(p.tenant.clone(), site.into(), TRANSFER_ORIGIN);
    origin.user = Some(p.actor());
    origin.device = p.device.clone();
    origin
}

/// The transfer after a command, as the answer's body.
async fn answer(
    state: &AppState,
    p: &Principal,
    id: &str,
    applied: Applied,
) -> Result<Value, ApiError> {
    let transfer = match applied {
        Applied::New {
            outcome: Outcome::Transfer(done),
            ..
        } => done.after,
        _ => fetch(state, p, id).await?,
    };
    Ok(json!({"success": true, "transfer": transfer.to_json()}))
}

async fn fetch(state: &AppState, p: &Principal, id: &str) -> Result<Transfer, ApiError> {
    let (tenant, key) = (p.tenant.to_string(), id.to_owned());
    let found = state.store.read(move |r| r.transfer(&tenant, &key)).await?;
    found
        .filter(|t| p.sees_site(&t.from_site) || p.sees_site(&t.to_site))
        .ok_or_else(|| not_found(id))
}

async fn request(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    p.require(Action::SetStock)?;
    let body: Value = json_body(request, &state).await?;
    let Value::Object(o) = &body else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "body must be a JSON object: {fromSiteId, toSiteId, productId, quantity}",
        ));
    };
    let asked = TransferRequest::parse(o).map_err(|e| ApiError::bad_request(e.code, e.message))?;
    // Both sites must be the tenant's; the caller must see one of them.
    for site in [&asked.from_site, &asked.to_site] {
        let (tenant, at) = (p.tenant.to_string(), site.clone());
        if !state
            .store
            .accounts(move |a| a.site_exists(&tenant, &at))
            .await?
        {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("site {site:?} not found"),
            ));
        }
    }
    if !p.sees_site(&asked.from_site) && !p.sees_site(&asked.to_site) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a transfer is requested by a site it involves",
        ));
    }
    for site in [&asked.from_site, &asked.to_site] {
        if !online(&state, &p.tenant, site).await? {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "site_offline",
                format!("site {site:?} is offline: a transfer needs both stores online"),
            ));
        }
    }
    let transfer = Transfer {
        id: uuid::Uuid::new_v4().to_string(),
        from_site: asked.from_site.clone(),
        to_site: asked.to_site,
        product_id: asked.product_id,
        quantity: asked.quantity,
        status: TransferStatus::Pending,
        reason: asked.reason,
        requested_by: p.actor().to_string(),
        approved_by: None,
        rejected_by: None,
        rejection_reason: None,
        created_at: now_millis(),
        approved_at: None,
        completed_at: None,
        attempts: 0,
        last_error: None,
    };
    let id = transfer.id.clone();
    let applied = state
        .store
        .submit(
            Command::Transfer(TransferCommand::Request(Box::new(transfer))),
            origin(&p, &asked.from_site),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(answer(&state, &p, &id, applied).await?),
    ))
}

/// The origin's side: managers of the origin, owners and admins.
async fn origin_decides(state: &AppState, p: &Principal, id: &str) -> Result<Transfer, ApiError> {
    p.require(Action::SetStock)?;
    let transfer = fetch(state, p, id).await?;
    if !p.sees_site(&transfer.from_site) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "transfer {id} is decided by site {:?}, the origin",
                transfer.from_site
            ),
        ));
    }
    Ok(transfer)
}

async fn approve(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(runner): Extension<Runner>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let transfer = origin_decides(&state, &p, &id).await?;
    let command = TransferCommand::Approve {
        id: transfer.id.clone(),
        by: p.actor().to_string(),
    };
    let applied = state
        .store
        .submit(Command::Transfer(command), origin(&p, &transfer.from_site))
        .await?;
    runner.0.notify_one();
    Ok(Json(answer(&state, &p, &id, applied).await?))
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
struct RejectBody {
    reason: Option<String>,
}

async fn reject(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let transfer = origin_decides(&state, &p, &id).await?;
    let body: RejectBody = optional_json_body(request, &state).await?;
    if body.reason.as_ref().is_some_and(|r| r.len() > 500) {
        return Err(ApiError::bad_request(
            "invalid_field",
            "reason is a string of at most 500 bytes",
        ));
    }
    let command = TransferCommand::Reject {
        id: transfer.id.clone(),
        by: p.actor().to_string(),
        reason: body.reason,
    };
    let applied = state
        .store
        .submit(Command::Transfer(command), origin(&p, &transfer.from_site))
        .await?;
    Ok(Json(answer(&state, &p, &id, applied).await?))
}

async fn one(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    let transfer = fetch(&state, &p, &id).await?;
    Ok(Json(
        json!({"success": true, "transfer": transfer.to_json()}),
    ))
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(TransferStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_status",
                format!("status must be PENDING, PROCESSING, COMPLETED or REJECTED; got {s:?}"),
            )
        })?),
    };
    let sites = match (&p.site, p.role.is_admin()) {
        (Some(home), false) => Some(vec![home.to_string()]),
        _ => None,
    };
    let filter = TransferFilter {
        status,
        sites,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let tenant = p.tenant.to_string();
    let transfers = state
        .store
        .read(move |r| r.transfers(&tenant, &filter))
        .await?;
    let data: Vec<Value> = transfers.iter().map(Transfer::to_json).collect();
    Ok(Json(
        json!({"success": true, "count": data.len(), "data": data}),
    ))
}

/// Executes approved transfers until `shutdown`: on every wake-up and every [`POLL`].
pub async fn run(state: AppState, runner: Runner, shutdown: CancellationToken) {
    loop {
        if let Err(e) = pass(&state).await {
            tracing::warn!(error = %e, "transfers: a pass failed; retrying");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = runner.0.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// One pass over the queue.
async fn pass(state: &AppState) -> Result<(), stocky_store::StoreError> {
    let queue = state.store.sync(|s| s.transfers_to_execute(PASS)).await?;
    for (tenant, transfer) in queue {
        let mut waiting = None;
        for site in [&transfer.from_site, &transfer.to_site] {
            match online(state, &tenant, site).await {
                Ok(true) => {}
                Ok(false) => waiting = Some(format!("site {site:?} is offline")),
                Err(e) => waiting = Some(e.message),
            }
        }
        let failed = match waiting {
            Some(why) => Some(why),
            None => execute(&state.store, &tenant, &transfer).await.err(),
        };
        if let Some(why) = failed {
            let (id, at) = (transfer.id.clone(), tenant.clone());
            state
                .store
                .sync(move |s| s.transfer_attempt(&at, &id, &why, now_millis()))
                .await?;
        }
    }
    Ok(())
}

async fn execute(store: &Store, tenant: &str, transfer: &Transfer) -> Result<(), String> {
    let origin = Origin::system(
        tenant.into(),
        transfer.from_site.as_str().into(),
        TRANSFER_ORIGIN,
    );
    let command = Command::Transfer(TransferCommand::Execute {
        id: transfer.id.clone(),
    });
    match store.submit(command, origin).await {
        Ok(_) => {
            tracing::info!(tenant, transfer = %transfer.id, "transfer completed");
            Ok(())
        }
        Err(SubmitError::Rejected(why)) => Err(why.to_string()),
        Err(e) => Err(e.to_string()),
    }
}
