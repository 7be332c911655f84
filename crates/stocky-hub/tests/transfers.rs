//! Transfers between stores (seed 003 §5.3) on a real hub, SQLite or PostgreSQL: request,
//! approve, reject, the job waiting for an offline store, stock and the consolidated view.

use std::time::Duration;

use stocky_test_support as support;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use support::TestHub;

const PW: &str = "correct horse battery";

async fn manager(hub: &TestHub, email: &str, site: &str) -> Result<String> {
    let (status, body) = hub
        .post(
            "/api/admin/users",
            json!({"email": email, "password": PW, "role": "manager", "siteId": site}),
        )
        .await?;
    anyhow::ensure!(status == 201, "{body}");
    Ok(hub.login(email, PW).await?.0)
}

async fn event_named(client: &mut support::Client, name: &str) -> Result<Value> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let e = client.next_event().await?;
            if e["event"] == name {
                return Ok(e);
            }
        }
    })
    .await?
}

async fn transfer_status(hub: &TestHub, id: &str) -> Result<Value> {
    let (status, body) = hub.get(&format!("/api/transfers/{id}")).await?;
    anyhow::ensure!(status == 200, "{body}");
    Ok(body["transfer"].clone())
}

async fn until_status(hub: &TestHub, id: &str, want: &str) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let t = transfer_status(hub, id).await?;
        if t["status"] == want {
            return Ok(t);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "stays {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stock_at(hub: &TestHub, site: &str, product: i64) -> Result<i64> {
    let (_, body) = hub
        .get(&format!("/api/inventory/{product}?siteId={site}"))
        .await?;
    body["inventory"]["quantity"].as_i64().context("a quantity")
}

#[tokio::test]
async fn a_transfer_is_requested_approved_and_moves_stock_once() -> Result<()> {
    let hub = TestHub::start().await?;
    hub.post("/api/admin/sites", json!({"id": "s2"})).await?;
    let origin_manager = manager(&hub, "o@a.test", "default").await?;
    let destination_manager = manager(&hub, "d@a.test", "s2").await?;
    hub.post(
        "/api/stock/add",
        json!({"additions": [{"productId": 1, "quantity": 10}]}),
    )
    .await?;
    let mut at_origin = support::Client::connect(&hub.ws_with(&origin_manager, "")).await?;
    let mut at_destination =
        support::Client::connect(&hub.ws_with(&destination_manager, "")).await?;

    // The destination asks; the origin hears of it.
    let ask = json!({"fromSiteId": "default", "toSiteId": "s2", "productId": 1, "quantity": 4,
                     "reason": "weekend"});
    let (status, body) = hub
        .as_(
            Some(&destination_manager),
            "POST",
            "/api/transfers/request",
            Some(ask.clone()),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["transfer"]["status"], "PENDING");
    let id = body["transfer"]["id"].as_str().unwrap().to_owned();
    let heard = event_named(&mut at_origin, "transfer:requested").await?;
    assert_eq!(heard["data"]["id"], id.as_str());

    // Only the origin decides.
    let approve = format!("/api/transfers/{id}/approve");
    let (status, _) = hub
        .as_(Some(&destination_manager), "POST", &approve, None)
        .await?;
    assert_eq!(status, 403);
    let (status, body) = hub
        .as_(Some(&origin_manager), "POST", &approve, None)
        .await?;
    assert_eq!(status, 200, "{body}");
    let done = until_status(&hub, &id, "COMPLETED").await?;
    assert!(done["completedAt"].is_string(), "{done}");
    let out = event_named(&mut at_origin, "TRANSFER_OUT").await?;
    assert_eq!(out["data"]["stock"], 6, "{out}");
    let arrived = event_named(&mut at_destination, "TRANSFER_IN").await?;
    assert_eq!(arrived["data"]["stock"], 4, "{arrived}");
    assert_eq!(
        (
            stock_at(&hub, "default", 1).await?,
            stock_at(&hub, "s2", 1).await?
        ),
        (6, 4)
    );

    // Approving again changes nothing; the ledger has one movement each way.
    let (status, again) = hub
        .as_(Some(&origin_manager), "POST", &approve, None)
        .await?;
    assert_eq!(
        (status, again["transfer"]["status"].as_str()),
        (200, Some("COMPLETED"))
    );
    let (_, ledger) = hub.get("/api/backup/_stock").await?;
    let kinds: Vec<&str> = ledger["backup"]["movements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["originOp"] == id.as_str())
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(kinds.contains(&"transfer_out") && kinds.contains(&"transfer_in"));
    let (_, view) = hub.get("/api/inventory/consolidated").await?;
    assert_eq!(view["data"][0]["total"], 10, "{view}");
    assert_eq!(view["data"][0]["sites"], json!({"default": 6, "s2": 4}));

    // A rejection, with its reason; it cannot be approved afterwards.
    let (_, body) = hub
        .as_(
            Some(&destination_manager),
            "POST",
            "/api/transfers/request",
            Some(ask.clone()),
        )
        .await?;
    let second = body["transfer"]["id"].as_str().unwrap().to_owned();
    let (status, body) = hub
        .as_(
            Some(&origin_manager),
            "POST",
            &format!("/api/transfers/{second}/reject"),
            Some(json!({"reason": "we need them"})),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["transfer"]["status"], "REJECTED");
    assert_eq!(body["transfer"]["rejectionReason"], "we need them");
    let (status, body) = hub
        .as_(
            Some(&origin_manager),
            "POST",
            &format!("/api/transfers/{second}/approve"),
            None,
        )
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("transfer_rejected"))
    );

    // More than the origin has: the approval is refused and nothing moves.
    let mut too_many = ask.clone();
    too_many["quantity"] = json!(7);
    let (_, body) = hub.post("/api/transfers/request", too_many).await?;
    let third = body["transfer"]["id"].as_str().unwrap().to_owned();
    let (status, body) = hub
        .post(&format!("/api/transfers/{third}/approve"), json!({}))
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("insufficient_stock"))
    );
    assert_eq!(transfer_status(&hub, &third).await?["status"], "PENDING");

    // Lists by status; bad requests.
    let (_, listing) = hub.get("/api/transfers?status=completed").await?;
    assert_eq!(listing["count"], 1, "{listing}");
    let (_, listing) = hub
        .as_(Some(&destination_manager), "GET", "/api/transfers", None)
        .await?;
    assert_eq!(listing["count"], 3);
    for (body, code) in [
        (
            json!({"fromSiteId": "default", "toSiteId": "default", "productId": 1, "quantity": 1}),
            "invalid_site",
        ),
        (
            json!({"fromSiteId": "default", "toSiteId": "s2", "productId": 1, "quantity": -1}),
            "invalid_quantity",
        ),
    ] {
        let (status, answer) = hub.post("/api/transfers/request", body).await?;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some(code))
        );
    }
    let (status, _) = hub
        .post(
            "/api/transfers/request",
            json!({"fromSiteId": "default", "toSiteId": "nowhere", "productId": 1, "quantity": 1}),
        )
        .await?;
    assert_eq!(status, 404);
    Ok(())
}

/// A site with a store node: its activation gives a device credential; the site is online
/// while a WebSocket of that credential is open.
async fn store_node(hub: &TestHub, site: &str) -> Result<String> {
    hub.post("/api/admin/sites", json!({"id": site})).await?;
    let (status, code) = hub
        .post(
            &format!("/api/admin/sites/{site}/activation-codes"),
            json!({}),
        )
        .await?;
    anyhow::ensure!(status == 201, "{code}");
    let (status, activated) = hub
        .as_(
            None,
            "POST",
            "/activate",
            Some(json!({"code": code["code"]})),
        )
        .await?;
    anyhow::ensure!(status == 200, "{activated}");
    Ok(activated["apiKey"].as_str().context("a key")?.to_owned())
}

#[tokio::test]
async fn an_approved_transfer_waits_for_an_offline_store_and_completes_when_it_is_back(
) -> Result<()> {
    let hub = TestHub::start().await?;
    let key = store_node(&hub, "north").await?;
    hub.post(
        "/api/stock/add",
        json!({"additions": [{"productId": 3, "quantity": 5}]}),
    )
    .await?;
    let ask = json!({"fromSiteId": "default", "toSiteId": "north", "productId": 3, "quantity": 2});

    // The store node is not connected: no transfer can be requested.
    let (status, body) = hub.post("/api/transfers/request", ask.clone()).await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("site_offline")),
        "{body}"
    );

    let node = support::Client::connect(&hub.ws_with(&key, "&deviceId=edge-north")).await?;
    let (status, body) = hub.post("/api/transfers/request", ask.clone()).await?;
    assert_eq!(status, 201, "{body}");
    let id = body["transfer"]["id"].as_str().unwrap().to_owned();
    // The store goes away after the request: the approval is kept, the job waits.
    drop(node);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = hub
        .post(&format!("/api/transfers/{id}/approve"), json!({}))
        .await?;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(stocky_hub::transfers::POLL + Duration::from_millis(500)).await;
    let waiting = transfer_status(&hub, &id).await?;
    assert_eq!(waiting["status"], "PROCESSING", "{waiting}");
    assert!(waiting["attempts"].as_i64() > Some(0), "{waiting}");
    assert!(waiting["lastError"]
        .as_str()
        .unwrap_or("")
        .contains("offline"));
    assert_eq!(stock_at(&hub, "default", 3).await?, 5, "nothing moved half");

    let _node = support::Client::connect(&hub.ws_with(&key, "&deviceId=edge-north")).await?;
    until_status(&hub, &id, "COMPLETED").await?;
    assert_eq!(
        (
            stock_at(&hub, "default", 3).await?,
            stock_at(&hub, "north", 3).await?
        ),
        (3, 2)
    );
    Ok(())
}

#[tokio::test]
async fn transfers_never_cross_tenants() -> Result<()> {
    let hub = TestHub::start().await?;
    hub.post("/api/admin/sites", json!({"id": "s2"})).await?;
    let (status, body) = hub
        .post(
            "/api/admin/tenants",
            json!({"id": "b", "owner": {"email": "o@b.test", "password": PW}}),
        )
        .await?;
    anyhow::ensure!(status == 201, "{body}");
    let b = hub.login("o@b.test", PW).await?.0;
    let (_, body) = hub
        .post(
            "/api/transfers/request",
            json!({"fromSiteId": "default", "toSiteId": "s2", "productId": 1, "quantity": 1}),
        )
        .await?;
    let id = body["transfer"]["id"].as_str().unwrap().to_owned();
    for (method, path) in [
        ("GET", format!("/api/transfers/{id}")),
        ("POST", format!("/api/transfers/{id}/approve")),
        ("POST", format!("/api/transfers/{id}/reject")),
    ] {
        let (status, _) = hub.as_(Some(&b), method, &path, None).await?;
        assert_eq!(status, 404, "{method} {path}");
    }
    let (_, listing) = hub.as_(Some(&b), "GET", "/api/transfers", None).await?;
    assert_eq!(listing["count"], 0);
    // Tenant b has no site s2: its request names an unknown site.
    let (status, _) = hub
        .as_(
            Some(&b),
            "POST",
            "/api/transfers/request",
            Some(json!({"fromSiteId": "default", "toSiteId": "s2", "productId": 1, "quantity": 1})),
        )
        .await?;
    assert_eq!(status, 404);
    Ok(())
}
