//! Seed 004's `RemoteSyncService`, literally, against a real hub (the hub is the "remote
//! backend"): every call with `X-API-Key` and JSON, in the seed's order — push the menu,
//! pull pending orders, number them locally, confirm, sync customers — plus the config and
//! the status the seed's monitoring reads.

use stocky_test_support as support;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use support::TestHub;

/// The seed's `axios` with its headers: `X-API-Key` and `Content-Type: application/json`.
struct Remote {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Remote {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-API-Key", &self.key)
            .header("Content-Type", "application/json");
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await?;
        anyhow::ensure!(status == 200, "GET {path}: {status} {body}");
        Ok(body)
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let (status, answer) = self.call(reqwest::Method::POST, path, Some(body)).await?;
        anyhow::ensure!(
            status == 200 || status == 201,
            "POST {path}: {status} {answer}"
        );
        Ok(answer)
    }
}

/// The restaurant's site, activated: its device credential is the seed's `REMOTE_API_KEY`.
async fn restaurant(hub: &TestHub) -> Result<Remote> {
    hub.post("/api/admin/sites", json!({"id": "pizzeria"}))
        .await?;
    let (_, code) = hub
        .post("/api/admin/sites/pizzeria/activation-codes", json!({}))
        .await?;
    let (status, activated) = hub
        .as_(
            None,
            "POST",
            "/activate",
            Some(json!({"code": code["code"]})),
        )
        .await?;
    anyhow::ensure!(status == 200, "{activated}");
    Ok(Remote {
        http: reqwest::Client::new(),
        base: hub.http.clone(),
        key: activated["apiKey"].as_str().context("key")?.to_owned(),
    })
}

#[tokio::test]
async fn seed_004_remote_sync_service_flow() -> Result<()> {
    let hub = TestHub::start().await?;
    let remote = restaurant(&hub).await?;
    // The WhatsApp channel: an API key of the tenant for the restaurant.
    let (_, channel) = hub
        .post(
            "/api/admin/api-keys",
            json!({"name": "whatsapp-bot", "role": "cashier", "siteId": "pizzeria"}),
        )
        .await?;
    let channel = hub.sdk_with(channel["key"].as_str().context("key")?);

    // pushMenu(): categories → subcategories → products → variants, modifiers, pizza …
    let categories = json!([{
        "id": "c1", "name": "Pizzas",
        "subcategories": [{"id": "s1", "name": "Clásicas", "products": [{
            "id": "p1", "name": "Margarita", "price": 25000,
            "variants": [{"id": "v1", "name": "Grande"}],
            "modifierGroups": [{"id": "m1", "productModifiers": [{"id": "pm1", "name": "Extra queso"}]}],
            "pizzaCustomizations": [], "pizzaConfiguration": {"halves": true}
        }]}]
    }]);
    remote
        .post("/api/sync/menu", json!({ "categories": categories }))
        .await?;
    let served = remote.get("/api/sync/menu").await?;
    assert_eq!(
        served["categories"], categories,
        "the online channel reads the store's menu"
    );
    remote
        .post(
            "/api/sync/config",
            json!({"restaurantConfig": {"name": "Pizzería", "timezone": "-05:00", "businessDayStart": "04:00"},
                   "businessHours": [{"day": 1, "open": "11:00", "close": "23:00"}]}),
        )
        .await?;

    // Orders arrive from the channel (one twice: the channel retried).
    let mut ids = Vec::new();
    for n in 0..3 {
        let order = json!({"channel": "whatsapp", "externalId": format!("wa-{n}"),
            "customer": {"id": "cust-1", "firstName": "Ana", "phone": "300"},
            "address": {"street": "Calle 1 # 2-3"},
            "lines": [{"productId": "p1", "name": "Margarita", "quantity": 1}],
            "notes": "sin cebolla"});
        let answer: Value = channel.post("/api/orders", &order).await?;
        ids.push(answer["order"]["id"].as_str().context("id")?.to_owned());
        if n == 0 {
            let again: Value = channel.post("/api/orders", &order).await?;
            assert_eq!(again["duplicate"], true, "{again}");
            assert_eq!(again["order"]["id"], answer["order"]["id"]);
        }
    }
    let status = remote.get("/api/sync/status").await?;
    assert_eq!(status["pendingOrders"], 3, "{status}");

    // pullPendingOrders(): response.data.data, then a dailyNumber each, then confirm.
    let response = remote.get("/api/sync/orders/pending").await?;
    let orders = response["data"].as_array().context("data")?;
    assert_eq!(orders.len(), 3);
    let mut order_updates = Vec::new();
    for (n, remote_order) in orders.iter().enumerate() {
        assert!(ids.contains(&remote_order["id"].as_str().unwrap().to_owned()));
        order_updates.push(json!({"orderId": remote_order["id"], "dailyNumber": n + 1}));
    }
    let confirmed = remote
        .post(
            "/api/sync/orders/confirm",
            json!({ "orderUpdates": order_updates }),
        )
        .await?;
    assert_eq!(confirmed["confirmed"], 3, "{confirmed}");
    assert_eq!(
        remote.get("/api/sync/orders/pending").await?["data"],
        json!([])
    );
    // A confirmation repeated is harmless; another number for a numbered order is refused.
    let again = remote
        .post(
            "/api/sync/orders/confirm",
            json!({ "orderUpdates": order_updates }),
        )
        .await?;
    assert_eq!(again["results"][0]["status"], "unchanged");
    let clash = remote
        .post(
            "/api/sync/orders/confirm",
            json!({"orderUpdates": [{"orderId": ids[0], "dailyNumber": 99}]}),
        )
        .await?;
    assert_eq!(clash["results"][0]["status"], "rejected", "{clash}");
    let (_, order) = hub.get(&format!("/api/orders/{}", ids[0])).await?;
    assert!(order["order"]["dailyNumber"].as_i64().is_some(), "{order}");

    // syncCustomers(): the remote's changes since lastSync (customers with addresses) …
    let (status, _) = hub
        .call(
            "PATCH",
            "/api/customers/cust-1",
            Some(json!({"firstName": "Ana María", "email": "ana@example.com",
                        "addresses": [{"id": "home", "street": "Calle 1 # 2-3"}]})),
            &[],
        )
        .await?;
    assert_eq!(status, 200);
    let changes = remote.get("/api/sync/customers/changes?since=").await?;
    let customers = changes["data"].as_array().context("data")?;
    assert_eq!(customers.len(), 1, "{changes}");
    assert_eq!(customers[0]["firstName"], "Ana María");
    assert_eq!(customers[0]["addresses"][0]["street"], "Calle 1 # 2-3");
    let last_sync = changes["timestamp"]
        .as_str()
        .context("timestamp")?
        .to_owned();
    // … and the store's edits go up in bulk (modifiedBy LOCAL): the ban and the precise
    // location stand; the name the customer typed stays the channel's.
    remote
        .post(
            "/api/sync/customers/bulk",
            json!({"customers": [{"id": "cust-1", "modifiedBy": "LOCAL", "isBanned": true,
                "banReason": "no-show", "firstName": "ANA (local typo)",
                "addresses": [{"id": "home", "latitude": 4.65, "longitude": -74.05,
                               "street": "Calle 1"}]}]}),
        )
        .await?;
    let (_, merged) = hub.get("/api/customers/cust-1").await?;
    let c = &merged["customer"];
    assert_eq!(
        (c["isBanned"].clone(), c["firstName"].clone()),
        (json!(true), json!("Ana María")),
        "{c}"
    );
    assert_eq!(c["addresses"][0]["latitude"], 4.65);
    assert_eq!(
        c["addresses"][0]["street"], "Calle 1 # 2-3",
        "the typed address is the channel's"
    );
    let since = remote
        .get(&format!("/api/sync/customers/changes?since={last_sync}"))
        .await?;
    // The merged customer comes back once (merging it again at the store changes nothing).
    assert_eq!(since["count"], 1, "{since}");
    assert_eq!(since["data"][0]["isBanned"], true);
    let cursor = since["timestamp"].as_str().context("timestamp")?;
    let after = remote
        .get(&format!("/api/sync/customers/changes?since={cursor}"))
        .await?;
    assert_eq!(after["count"], 0, "{after}");

    // Monitoring: the seed's status fields.
    let status = remote.get("/api/sync/status").await?;
    assert_eq!(status["pendingOrders"], 0);
    assert!(
        status.get("lastSync").is_some() && status.get("isConnected").is_some(),
        "{status}"
    );
    Ok(())
}

#[tokio::test]
async fn seed_004_routes_stay_inside_their_tenant_and_site() -> Result<()> {
    let hub = TestHub::start().await?;
    let remote = restaurant(&hub).await?;
    hub.post("/api/admin/sites", json!({"id": "other"})).await?;
    let (_, order) = hub
        .post(
            "/api/orders?siteId=other",
            json!({"siteId": "other", "lines": [{"name": "x", "quantity": 1}]}),
        )
        .await?;
    let other_order = order["order"]["id"].as_str().context("id")?.to_owned();
    // The restaurant's key sees neither another site's orders nor its pending list.
    assert_eq!(
        remote.get("/api/sync/orders/pending").await?["data"],
        json!([])
    );
    let (status, _) = remote
        .call(
            reqwest::Method::GET,
            &format!("/api/orders/{other_order}"),
            None,
        )
        .await?;
    assert_eq!(status, 404);
    let clash = remote
        .post(
            "/api/sync/orders/confirm",
            json!({"orderUpdates": [{"orderId": other_order, "dailyNumber": 1}]}),
        )
        .await?;
    assert_eq!(clash["results"][0]["status"], "rejected");
    let (status, _) = remote
        .call(reqwest::Method::GET, "/api/sync/menu?siteId=other", None)
        .await?;
    assert_eq!(status, 403);
    // Bad input is named.
    let (status, body) = remote
        .call(
            reqwest::Method::POST,
            "/api/sync/menu",
            Some(json!({"categories": 3})),
        )
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_menu"))
    );
    let (status, body) = remote
        .call(
            reqwest::Method::POST,
            "/api/sync/config",
            Some(json!({"timezone": "-5 hours"})),
        )
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_config")),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn seed_004_routes_never_cross_tenants() -> Result<()> {
    let hub = TestHub::start().await?;
    let remote = restaurant(&hub).await?;
    remote
        .post("/api/sync/menu", json!({"categories": [{"id": "c1"}]}))
        .await?;
    remote
        .post("/api/sync/config", json!({"timezone": "-05:00"}))
        .await?;
    let (_, order) = hub
        .post(
            "/api/orders?siteId=pizzeria",
            json!({"lines": [{"name": "x", "quantity": 1}], "channel": "wa", "externalId": "1"}),
        )
        .await?;
    let order_id = order["order"]["id"].as_str().context("id")?.to_owned();
    hub.call(
        "PATCH",
        "/api/customers/cust-1",
        Some(json!({"firstName": "Ana"})),
        &[],
    )
    .await?;
    let (status, body) = hub
        .post(
            "/api/admin/tenants",
            json!({"id": "b", "owner": {"email": "o@b.test", "password": "correct horse battery"}}),
        )
        .await?;
    anyhow::ensure!(status == 201, "{body}");
    let b = hub.login("o@b.test", "correct horse battery").await?.0;
    for path in [
        format!("/api/orders/{order_id}"),
        "/api/customers/cust-1".to_owned(),
        "/api/sync/menu?siteId=pizzeria".to_owned(),
        "/api/sync/config?siteId=pizzeria".to_owned(),
    ] {
        let (status, _) = hub.as_(Some(&b), "GET", &path, None).await?;
        assert_eq!(status, 404, "{path}");
    }
    for path in [
        "/api/orders",
        "/api/sync/customers/changes",
        "/api/sync/orders/pending",
    ] {
        let (status, body) = hub.as_(Some(&b), "GET", path, None).await?;
        assert_eq!(
            (status, body["count"].as_u64()),
            (200, Some(0)),
            "{path}: {body}"
        );
    }
    // Tenant b's own order with the same channel id is its own.
    let (status, body) = hub
        .as_(
            Some(&b),
            "POST",
            "/api/orders",
            Some(json!({"lines": [{"name": "x", "quantity": 1}], "channel": "wa", "externalId": "1"})),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    let (_, mine) = hub.get(&format!("/api/orders/{order_id}")).await?;
    assert_eq!(mine["order"]["siteId"], "pizzeria");
    Ok(())
}
