//! Owners and admins read and command any site of their tenant with `?siteId=`; everyone
//! else only their home site; other tenants' sites do not exist for them.

use stocky_test_support as support;

use anyhow::Result;
use serde_json::json;
use support::TestHub;

const PW: &str = "correct horse battery";

/// The owner of a second tenant `b`, signed in.
async fn other_tenant_owner(hub: &TestHub) -> Result<String> {
    let (status, body) = hub
        .post(
            "/api/admin/tenants",
            json!({"id": "b", "owner": {"email": "o@b.test", "password": PW}}),
        )
        .await?;
    anyhow::ensure!(status == 201, "{body}");
    Ok(hub.login("o@b.test", PW).await?.0)
}

#[tokio::test]
async fn owners_act_on_any_site_with_site_id_and_others_only_on_their_own() -> Result<()> {
    let hub = TestHub::start().await?;
    hub.post("/api/admin/sites", json!({"id": "s2"})).await?;
    for (email, role, site) in [
        ("m1@a.test", "manager", "default"),
        ("m2@a.test", "manager", "s2"),
    ] {
        let (status, body) = hub
            .post(
                "/api/admin/users",
                json!({"email": email, "password": PW, "role": role, "siteId": site}),
            )
            .await?;
        anyhow::ensure!(status == 201, "{body}");
    }
    let (m1, _) = hub.login("m1@a.test", PW).await?;
    let (m2, _) = hub.login("m2@a.test", PW).await?;
    let mut at_s2 = support::Client::connect(&hub.ws_with(&m2, "")).await?;
    let mut at_default = support::Client::connect(&hub.ws_with(&m1, "")).await?;

    // The owner (operator token) adds at s2: s2 has it, default does not.
    let add = json!({"additions": [{"productId": 7, "quantity": 4}]});
    let (status, body) = hub.post("/api/stock/add?siteId=s2", add.clone()).await?;
    assert_eq!(status, 200, "{body}");
    let (_, s2) = hub.get("/api/stock/7?siteId=s2").await?;
    assert_eq!(s2["stock"], 4);
    let (_, listing) = hub.get("/api/stock?sedeId=s2").await?;
    assert_eq!(
        listing["count"], 1,
        "seed 003's sedeId works too: {listing}"
    );
    let (status, _) = hub.get("/api/stock/7").await?;
    assert_eq!(status, 404, "the default site has no product 7");
    let event = at_s2.next_event().await?;
    assert_eq!(event["scope"]["siteId"], "s2", "{event}");
    at_default
        .expect_silence(std::time::Duration::from_millis(300))
        .await?;

    // A manager of default may not name s2; the manager of s2 may name its own site.
    let (status, _) = hub
        .as_(Some(&m1), "GET", "/api/stock?siteId=s2", None)
        .await?;
    assert_eq!(status, 403);
    let (status, _) = hub
        .as_(
            Some(&m1),
            "POST",
            "/api/stock/add?siteId=s2",
            Some(add.clone()),
        )
        .await?;
    assert_eq!(status, 403);
    let (status, own) = hub
        .as_(Some(&m2), "GET", "/api/stock/7?siteId=s2", None)
        .await?;
    assert_eq!((status, own["stock"].clone()), (200, json!(4)));

    // Unknown sites, and sites of another tenant, are 404.
    let (status, _) = hub.get("/api/stock?siteId=nowhere").await?;
    assert_eq!(status, 404);
    let b = other_tenant_owner(&hub).await?;
    let (status, _) = hub
        .as_(Some(&b), "GET", "/api/stock?siteId=s2", None)
        .await?;
    assert_eq!(status, 404);
    let (status, _) = hub
        .as_(Some(&b), "POST", "/api/stock/add?siteId=s2", Some(add))
        .await?;
    assert_eq!(status, 404);
    assert_eq!(s2["stock"], 4);
    Ok(())
}

#[tokio::test]
async fn a_products_history_pages_newest_first_and_sums_to_its_stock() -> Result<()> {
    let hub = TestHub::start().await?;
    hub.post("/api/admin/sites", json!({"id": "s2"})).await?;
    let at = |op: &str| format!("/api/stock/{op}?siteId=s2");
    hub.post(
        &at("add"),
        json!({"additions": [{"productId": 7, "quantity": 4}]}),
    )
    .await?;
    hub.post(
        &at("update"),
        json!({"updates": [{"productId": 7, "stock": 10}]}),
    )
    .await?;
    hub.post(
        &at("subtract"),
        json!({"subtractions": [{"productId": 7, "quantity": 3}]}),
    )
    .await?;
    hub.post(
        "/api/stock/add",
        json!({"additions": [{"productId": 7, "quantity": 100}]}),
    )
    .await?;
    let (status, first) = hub.get("/api/stock/7/movements?siteId=s2&limit=2").await?;
    assert_eq!(status, 200, "{first}");
    let deltas = |page: &serde_json::Value| -> Vec<i64> {
        page["data"]
            .as_array()
            .map(|rows| rows.iter().filter_map(|r| r["delta"].as_i64()).collect())
            .unwrap_or_default()
    };
    assert_eq!(deltas(&first), vec![-3, 6], "newest first: {first}");
    assert_eq!(first["data"][0]["kind"], "subtract");
    let next = first["next"].as_str().expect("a next page").to_owned();
    let (_, second) = hub
        .get(&format!(
            "/api/stock/7/movements?siteId=s2&limit=2&before={next}"
        ))
        .await?;
    assert_eq!(
        (deltas(&second), second["next"].clone()),
        (vec![4], json!(null))
    );
    let (_, stock) = hub.get("/api/stock/7?siteId=s2").await?;
    assert_eq!(stock["stock"], 7, "4 + 6 − 3");
    let (_, default) = hub.get("/api/stock/7/movements").await?;
    assert_eq!(deltas(&default), vec![100], "each site its own ledger");
    let (status, _) = hub.get("/api/stock/7/movements?before=garbage").await?;
    assert_eq!(status, 400);
    let b = other_tenant_owner(&hub).await?;
    let (status, _) = hub
        .as_(Some(&b), "GET", "/api/stock/7/movements?siteId=s2", None)
        .await?;
    assert_eq!(status, 404);
    let (_, theirs) = hub
        .as_(Some(&b), "GET", "/api/stock/7/movements", None)
        .await?;
    assert_eq!(deltas(&theirs), Vec::<i64>::new(), "nothing of tenant A");
    Ok(())
}

#[tokio::test]
async fn the_consolidated_inventory_sums_every_site_and_follows_every_movement() -> Result<()> {
    let hub = TestHub::start().await?;
    hub.post("/api/admin/sites", json!({"id": "s2"})).await?;
    hub.post(
        "/api/stock/add",
        json!({"additions": [{"productId": 1, "quantity": 5}, {"productId": 2, "quantity": 1}]}),
    )
    .await?;
    hub.post(
        "/api/stock/add?siteId=s2",
        json!({"additions": [{"productId": 1, "quantity": 3}]}),
    )
    .await?;
    let (status, first) = hub.get("/api/inventory/consolidated").await?;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first["data"],
        json!([
            {"productId": 1, "total": 8, "sites": {"default": 5, "s2": 3}},
            {"productId": 2, "total": 1, "sites": {"default": 1}},
        ])
    );
    assert_eq!(first["cached"], false);
    let (_, again) = hub.get("/api/inventory/consolidated").await?;
    assert_eq!(
        (again["cached"].clone(), again["data"].clone()),
        (json!(true), first["data"].clone())
    );
    // Any movement invalidates it, a pushed one included.
    let push = json!({"siteId": "s2", "operations": [{"id": "m-1", "productId": 1, "delta": -1}]});
    hub.post("/api/sync/push", push).await?;
    let (_, after) = hub.get("/api/inventory/consolidated").await?;
    assert_eq!(after["cached"], false);
    assert_eq!(
        after["data"][0],
        json!({"productId": 1, "total": 7, "sites": {"default": 5, "s2": 2}})
    );

    hub.post(
        "/api/admin/users",
        json!({"email": "m@a.test", "password": PW, "role": "manager", "siteId": "default"}),
    )
    .await?;
    let (manager, _) = hub.login("m@a.test", PW).await?;
    let (status, _) = hub
        .as_(Some(&manager), "GET", "/api/inventory/consolidated", None)
        .await?;
    assert_eq!(status, 403);
    let b = other_tenant_owner(&hub).await?;
    let (_, theirs) = hub
        .as_(Some(&b), "GET", "/api/inventory/consolidated", None)
        .await?;
    assert_eq!(theirs["data"], json!([]), "nothing of tenant A: {theirs}");
    Ok(())
}
