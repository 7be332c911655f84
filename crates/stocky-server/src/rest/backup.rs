//! Seed 000's backup routes; the logic lives in [`crate::backup`], shared with the CLI.

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Extension, Json};
use serde_json::Value;
use stocky_core::time::parse_iso8601;

use super::{json_body, rest_origin};
use crate::auth::Principal;
use crate::backup;
use crate::error::ApiError;
use crate::memory::ReleaseOnDrop;
use crate::openapi::Method;
use crate::openapi::{doc, ApiRoutes};
use crate::AppState;
use stocky_core::auth::Action;

pub fn routes(max_restore_bytes: usize) -> ApiRoutes {
    let large = || DefaultBodyLimit::max(max_restore_bytes);
    ApiRoutes::new()
        .get("/api/backup", list, doc("The tenant's document databases"))
        .get(
            "/api/backup/{db}",
            full,
            doc("A full backup of one database: every record and the stock ledger"),
        )
        .delete(
            "/api/backup/{db}",
            drop_database,
            doc("Delete a whole database (owners)").idempotent(),
        )
        .get(
            "/api/backup/{db}/incremental/{since}",
            incremental,
            doc("Records changed after `since` (ISO 8601 or milliseconds since the epoch)"),
        )
        .add(
            Method::Post,
            "/api/backup/{db}/restore",
            post(restore).layer(large()),
            doc("Restore a backup file into a database (owners)")
                .about("The body is a file from `GET /api/backup/{db}`, up to `--max-restore-bytes`. Restores and compares are parsed one at a time per process (`503 busy` after waiting).")
                .object_body()
                .errors(&[409, 422])
                .idempotent(),
        )
        .add(
            Method::Post,
            "/api/backup/{db}/compare",
            post(compare).layer(large()),
            doc("Compare a backup file with a database, changing nothing")
                .object_body()
                .errors(&[422]),
        )
}

async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::ReadBackups)?;
    Ok(Json(backup::list(&state.store, &p.tenant).await?))
}

async fn full(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(db): Path<String>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::ReadBackups)?;
    Ok(Json(
        backup::backup_of(&state.store, &p.tenant, &db, None).await?,
    ))
}

async fn incremental(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((db, since)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::ReadBackups)?;
    let since_ms = parse_iso8601(&since).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_timestamp",
            format!("{since:?} is not an ISO-8601 timestamp"),
        )
    })?;
    Ok(Json(
        backup::backup_of(&state.store, &p.tenant, &db, Some(since_ms)).await?,
    ))
}

/// Restore and compare bodies being read and parsed at once, per process. Each may be up
/// to `max_restore_bytes` (64 MiB by default) and is parsed whole into a JSON tree, which
/// takes several times its size; with this gate a flood of them — from any number of
/// owners — costs at most this many at a time, not one per connection (docs/security.md
/// §9.1 states the bound).
const LARGE_BODIES_AT_ONCE: usize = 1;

/// How long a large body waits for its turn before the caller gets `503`.
const LARGE_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads a restore or compare body once a [`LARGE_BODIES_AT_ONCE`] permit is free
/// (after the caller's role was checked). The turn is held until the handler is done;
/// then the allocator is asked to hand the freed pages back ([`crate::memory`]).
async fn large_body(
    request: Request,
    state: &AppState,
) -> Result<(Value, LargeBodyTurn), ApiError> {
    static GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(LARGE_BODIES_AT_ONCE);
    let permit = match tokio::time::timeout(LARGE_BODY_WAIT, GATE.acquire()).await {
        Ok(Ok(permit)) => permit,
        _ => {
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many large restores or compares at once; retry later",
            ))
        }
    };
    let turn = LargeBodyTurn {
        _release: ReleaseOnDrop,
        _permit: permit,
    };
    Ok((json_body(request, state).await?, turn))
}

/// A turn to parse a large body. Fields drop in order: the permit is returned first,
/// then the freed memory (the body is dropped before the turn) is released.
struct LargeBodyTurn {
    _permit: tokio::sync::SemaphorePermit<'static>,
    _release: ReleaseOnDrop,
}

async fn restore(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(db): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let origin = restoring(&p, &headers)?;
    let (body, turn) = large_body(request, &state).await?;
    let restored = backup::restore(&state.store, origin, &db, &body).await;
    drop(body);
    drop(turn);
    Ok(Json(restored?))
}

async fn compare(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(db): Path<String>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::RestoreBackups)?;
    let (body, turn) = large_body(request, &state).await?;
    let compared = backup::compare(&state.store, &p.tenant, &db, &body).await;
    drop(body);
    drop(turn);
    Ok(Json(compared?))
}

async fn drop_database(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(db): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        backup::drop_database(&state.store, restoring(&p, &headers)?, &db).await?,
    ))
}

/// The origin of a restore or drop, after checking the caller may do it.
fn restoring(
    p: &Principal,
    headers: &axum::http::HeaderMap,
) -> Result<stocky_store::Origin, ApiError> {
    p.require(Action::RestoreBackups)?;
    rest_origin(p, headers)
}
