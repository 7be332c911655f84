//! REST request and response bodies shared by the gateway (which renders them) and the SDK
//! (which reads them), so that every field name exists once. See `docs/protocol.md` §3,
//! `docs/security.md` and `docs/data-api.md` for the routes.
//!
//! Document records and backup files are the user's own JSON and stay
//! [`serde_json::Value`]; everything whose shape Stocky defines is a struct here.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::protocol::server::StockChange;

/// `{"success":false,"error":{"code","message"}}`: every error the gateway produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorEnvelope {
    pub success: bool,
    pub error: ErrorBody,
}

/// The stable machine `code` and a human `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// `POST /api/auth/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

/// `POST /api/auth/refresh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionUser {
    pub user_id: String,
    pub tenant_id: String,
    pub site_id: Option<String>,
    pub role: crate::auth::Role,
    pub modules: Option<Vec<String>>,
}

/// The answer to login and refresh: a new access token and the (rotated) refresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenGrant {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    /// Seconds the access token is valid from now.
    pub expires_in: u64,
    /// ISO 8601.
    pub expires_at: String,
    pub user: SessionUser,
}

/// The answer to a stock command (`POST /api/stock/{update,add,subtract,sync}`). The
/// count of lines travels under the request's field name (`"additions": 1`); the SDK
/// does not need it, so it is rendered by [`StockCommandResult::render`] only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockCommandResult {
    pub success: bool,
    /// The event id (the original event's for a duplicate).
    pub id: u64,
    pub epoch: String,
    pub sent_to: usize,
    /// The event's `data`; absent for a duplicate.
    #[serde(default)]
    pub data: Option<Vec<StockChange>>,
    #[serde(default)]
    pub duplicate: bool,
}

impl StockCommandResult {
    /// Renders the answer; `data` is the event's `data` JSON exactly as committed (not
    /// re-parsed), `field`/`lines` the request's field name and line count.
    pub fn render(
        field: &str,
        lines: usize,
        id: u64,
        epoch: &str,
        sent_to: usize,
        data: Option<&str>,
    ) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body<'a> {
            success: bool,
            id: u64,
            epoch: &'a str,
            sent_to: usize,
            #[serde(skip_serializing_if = "Option::is_none")]
            data: Option<&'a RawValue>,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            duplicate: bool,
        }
        let data = data.and_then(|d| serde_json::from_str::<&RawValue>(d).ok());
        let body = serde_json::to_string(&Body {
            success: true,
            id,
            epoch,
            sent_to,
            data,
            duplicate: data.is_none(),
        })
        .expect("serialising plain structs cannot fail");
        // `{"<field>":lines,` + the rest: the count leads, as seed 000's answers do.
        format!(
            "{{{}:{lines},{}",
            serde_json::to_string(field).expect("a string serialises"),
            &body[1..]
        )
    }
}

/// One product's stock at a site (`GET /api/stock`, `GET /api/stock/:productId`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockRow {
    pub product_id: i64,
    pub stock: i64,
    /// ISO 8601.
    pub updated_at: String,
    /// The event that last changed this product.
    pub last_event_id: u64,
}

/// `GET /api/stock`: the site's stock and the stream head it reflects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockListing {
    pub data: Vec<StockRow>,
    pub count: usize,
    pub last_event_id: u64,
    pub epoch: String,
    pub timestamp: String,
}

/// `GET /api/stock/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockStatus {
    pub connected_clients: usize,
    pub timestamp: String,
    pub last_event_id: u64,
    pub epoch: String,
}

/// `POST /api/admin/sites`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewSite {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `POST /api/admin/devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewDevice {
    pub id: String,
    pub site_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `POST /api/admin/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewUser {
    pub email: String,
    pub password: String,
    pub role: crate::auth::Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules: Option<Vec<String>>,
}

/// `POST /api/admin/api-keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewApiKey {
    pub name: String,
    pub role: crate::auth::Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules: Option<Vec<String>>,
}

/// `PATCH /api/admin/users/{id}`: what changes. An absent field stays as it is; `siteId`
/// or `modules` `null` mean every site or every module.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<crate::auth::Role>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub site_id: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub modules: Option<Option<Vec<String>>>,
    /// `true` refuses the user's sign-ins (and ends their sessions); `false` lets them in
    /// again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// A field that was in the body, `null` included (`Some(None)`); an absent one is `None`
/// through `#[serde(default)]`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A user as the admin routes show it (never with a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub user_id: String,
    pub email: String,
    pub role: crate::auth::Role,
    pub site_id: Option<String>,
    pub modules: Option<Vec<String>>,
    pub disabled: bool,
}

/// `POST /api/admin/users/{id}/password`: a new password set by an owner or admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordReset {
    pub password: String,
}

/// `POST /api/auth/password`: the signed-in user changes their own password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_update_tells_an_absent_field_from_null() {
        let u: UserUpdate = serde_json::from_str(r#"{"siteId":null,"role":"cashier"}"#).unwrap();
        assert_eq!(u.site_id, Some(None));
        assert_eq!(u.modules, None);
        assert_eq!(u.role, Some(crate::auth::Role::Cashier));
        let back = serde_json::to_value(&u).unwrap();
        assert_eq!(back, serde_json::json!({"siteId": null, "role": "cashier"}));
        assert!(serde_json::from_str::<UserUpdate>(r#"{"password":"x"}"#).is_err());
    }

    #[test]
    fn stock_command_answer_renders_the_seed_shape_and_reads_back() {
        let text = StockCommandResult::render(
            "additions",
            1,
            7,
            "e",
            3,
            Some(r#"[{"productId":1,"quantity":2,"stock":5}]"#),
        );
        assert_eq!(
            text,
            r#"{"additions":1,"success":true,"id":7,"epoch":"e","sentTo":3,"data":[{"productId":1,"quantity":2,"stock":5}]}"#
        );
        let back: StockCommandResult = serde_json::from_str(&text).unwrap();
        assert_eq!(back.data.unwrap()[0].stock, 5);
        let dup = StockCommandResult::render("updates", 2, 7, "e", 0, None);
        let back: StockCommandResult = serde_json::from_str(&dup).unwrap();
        assert!(back.duplicate && back.data.is_none());
    }
}

/// `GET /api/sync/users` (device credentials only): the users whose home is the store
/// node's site, with the password hashes it needs to sign them in while offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SiteUsers {
    pub site_id: String,
    pub users: Vec<SiteUser>,
}

/// One user of [`SiteUsers`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SiteUser {
    pub id: String,
    pub email: String,
    /// Argon2 PHC string: never a password.
    pub password_hash: String,
    pub role: crate::auth::Role,
    /// Enabled modules; `None` for all.
    pub modules: Option<Vec<String>>,
}

impl std::fmt::Debug for SiteUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteUser")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// What a store node has not handed to the hub yet, as it reports with each pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboxReport {
    /// Operations waiting in its outbox (stock movements not pushed yet).
    pub pending: u64,
    /// Sales recorded there and not taken by the hub yet.
    pub pending_sales: u64,
    /// When the oldest of those sales was made (milliseconds since the epoch).
    pub oldest_unsynced_sale_at: Option<i64>,
    /// When the node reported it (set by the hub, milliseconds since the epoch).
    #[serde(default)]
    pub reported_at: i64,
}
