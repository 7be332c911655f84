//! `POST /api/events`: publish an application event (seed 001's `SALE_CREATED`, seed 002's
//! `order_created`, `chat_message`, …) on the tenant's log. It is committed, numbered and
//! resumable like every other event, and routed by site and by the module map — the
//! event bus of seed 001 with the log's guarantees.
//!
//! Body: `{"type": "order_created", "data": {…}, "siteId": "s1"}` (`siteId` defaults to the
//! caller's home site and must be one it sees). Role: manager or above.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde_json::{json, Value};
use stocky_core::auth::Action;
use stocky_core::documents::{check_event_name, check_name};
use stocky_store::{Applied, Command};

use super::{json_body, rest_origin};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::openapi::{doc, ApiRoutes};
use crate::AppState;

/// Largest `data` accepted, serialised.
const MAX_DATA_BYTES: usize = 64 * 1024;

pub fn routes() -> ApiRoutes {
    ApiRoutes::new().post(
        "/api/events",
        publish,
        doc("Publish an application event on the tenant's log (managers and up)")
            .about("Seed 001's `SALE_CREATED`, seed 002's `order_created`, `chat_message`, ...: committed, numbered, resumable and routed by site and module like every other event. `data` is at most 64 KiB.")
            .body::<PublishBody>()
            .created_object()
            .idempotent(),
    )
}

/// A checked `{"type", "data", "siteId"}` body (`event` is an alias of `type`).
#[derive(schemars::JsonSchema)]
#[schemars(rename_all = "camelCase")]
struct PublishBody {
    /// The event name (`SALE_CREATED`, `order_created`, ...).
    r#type: String,
    data: Value,
    site_id: Option<String>,
}

impl PublishBody {
    /// Every shape problem is a `400 invalid_event` naming the field.
    fn parse(body: Value) -> Result<Self, ApiError> {
        let invalid = |message: &str| ApiError::bad_request("invalid_event", message);
        let Value::Object(mut body) = body else {
            return Err(invalid(
                "body must be a JSON object with \"type\" and \"data\"",
            ));
        };
        let r#type = match body.remove("type").or_else(|| body.remove("event")) {
            Some(Value::String(name)) => name,
            Some(_) => return Err(invalid("type must be a string: the event's name")),
            None => return Err(invalid("type is required: the event's name")),
        };
        let site_id = match body.remove("siteId") {
            None | Some(Value::Null) => None,
            Some(Value::String(site)) => Some(site),
            Some(_) => return Err(invalid("siteId must be a string")),
        };
        Ok(PublishBody {
            r#type,
            data: body.remove("data").unwrap_or(Value::Null),
            site_id,
        })
    }
}

async fn publish(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    p.require(Action::WriteDocuments)?;
    let body = PublishBody::parse(json_body(request, &state).await?)?;
    check_event_name(&body.r#type).map_err(|e| ApiError::bad_request("invalid_event", e.0))?;
    if body.data.to_string().len() > MAX_DATA_BYTES {
        return Err(ApiError::bad_request(
            "invalid_event",
            format!("data is larger than {MAX_DATA_BYTES} bytes"),
        ));
    }
    let mut origin = rest_origin(&p, &headers)?;
    if let Some(site) = body.site_id {
        check_name("site", &site).map_err(|e| ApiError::bad_request("invalid_name", e.0))?;
        origin.site = super::site::target_site(&state, &p, Some(&site)).await?;
    }
    let applied = state
        .store
        .submit(
            Command::Publish {
                event: body.r#type,
                data: body.data,
            },
            origin,
        )
        .await?;
    let (id, sent_to, duplicate) = match applied {
        Applied::New { id, sent_to, .. } => (id, sent_to, false),
        Applied::Duplicate { id, .. } => (id, 0, true),
        Applied::Unchanged { id, .. } => (id, 0, false),
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({"success": true, "id": id, "sentTo": sent_to, "duplicate": duplicate})),
    ))
}
