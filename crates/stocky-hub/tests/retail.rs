//! Sales, the catalog, thresholds and the audit log, end to end on a real hub (SQLite, or
//! PostgreSQL with STOCKY_TEST_DATABASE_URL): what each route writes, who hears about it,
//! bad input changing nothing, and tenant isolation.

use std::time::Duration;

use stocky_test_support as support;

use anyhow::Result;
use serde_json::{json, Value};
use support::TestHub;

const PW: &str = "correct horse battery";
const SALE: &str = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";

/// Creates a user and signs them in.
async fn user(hub: &TestHub, email: &str, role: &str, site: Option<&str>) -> Result<String> {
    let (status, body) = hub
        .post(
            "/api/admin/users",
            json!({"email": email, "password": PW, "role": role, "siteId": site}),
        )
        .await?;
    anyhow::ensure!(status == 201, "{body}");
    Ok(hub.login(email, PW).await?.0)
}

fn sale_body() -> Value {
    json!({
        "id": SALE,
        "deviceId": "register-1",
        "lines": [
            {"productId": 1, "quantity": 2, "unitPrice": 10.5},
            {"productId": 2, "quantity": 1, "unitPrice": 4, "discount": 1}
        ],
        "payments": [{"id": "card-1", "method": "card", "amount": 24, "status": "pending"}],
        "total": 24,
        "clientTimestamp": "2026-12-01T10:00:00.000Z"
    })
}

/// Skips frames until one with `event`, or fails after a while.
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

/// The events a connection gets within a short while.
async fn drain(client: &mut support::Client) -> Vec<String> {
    let mut names = Vec::new();
    while let Ok(Ok(e)) =
        tokio::time::timeout(Duration::from_millis(300), client.next_event()).await
    {
        names.push(e["event"].as_str().unwrap_or_default().to_owned());
    }
    names
}

#[tokio::test]
async fn a_sale_moves_stock_once_and_only_admins_hear_of_it() -> Result<()> {
    let hub = TestHub::start().await?;
    let admin = user(&hub, "admin@a.test", "admin", None).await?;
    let cashier = user(&hub, "cashier@a.test", "cashier", Some("default")).await?;
    let manager = user(&hub, "manager@a.test", "manager", Some("default")).await?;
    hub.post(
        "/api/stock/add",
        json!({"additions": [{"productId": 1, "quantity": 10}, {"productId": 2, "quantity": 5}]}),
    )
    .await?;
    hub.post(
        "/api/products",
        json!({"id": 1, "name": "Café", "price": 10.5}),
    )
    .await?;
    hub.post("/api/products", json!({"id": 2, "name": "Pan", "price": 4}))
        .await?;
    let mut admin_ws = support::Client::connect(&hub.ws_with(&admin, "")).await?;
    let mut cashier_ws = support::Client::connect(&hub.ws_with(&cashier, "")).await?;

    // The cashier sells: 201, the sale and its movements in one go.
    let (status, body) = hub
        .as_(Some(&cashier), "POST", "/api/sales", Some(sale_body()))
        .await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "created");
    assert_eq!(body["sale"]["total"], 24);
    assert_eq!(body["sale"]["status"], "pending");
    assert_eq!(body["sale"]["needsReview"], false);
    assert_eq!(hub.stock(1).await?, 8);
    assert_eq!(hub.stock(2).await?, 4);

    // The admin hears SALE_CREATED; the cashier hears the stock change, never the sale.
    let created = event_named(&mut admin_ws, "SALE_CREATED").await?;
    assert_eq!(created["data"]["id"], SALE, "{created}");
    assert_eq!(created["data"]["deviceId"], "register-1");
    let levels = event_named(&mut cashier_ws, "stock:sync").await?;
    assert!(
        levels["data"].as_array().is_some_and(|l| l.len() == 2),
        "{levels}"
    );

    // A replay is a duplicate: no second sale, no second movement.
    let (status, body) = hub
        .as_(Some(&cashier), "POST", "/api/sales", Some(sale_body()))
        .await?;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("duplicate")),
        "{body}"
    );
    assert_eq!(hub.stock(1).await?, 8);
    let (_, history) = hub.get("/api/stock/1/movements").await?;
    let sales: Vec<&Value> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "sale")
        .collect();
    assert_eq!(sales.len(), 1, "{history}");
    // Another sale under the same id is a conflict, and changes nothing.
    let mut other = sale_body();
    other["lines"][0]["quantity"] = json!(3);
    other["total"] = json!(34.5);
    other["payments"][0]["amount"] = json!(34.5);
    let (status, body) = hub.post("/api/sales", other).await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("sale_id_conflict"))
    );
    assert_eq!(hub.stock(1).await?, 8);

    // Seed 001: a confirmed payment announces the sale again, now completed.
    let (status, body) = hub
        .as_(
            Some(&cashier),
            "POST",
            &format!("/api/sales/{SALE}/payments/card-1/confirm"),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sale"]["status"], "completed");
    let confirmed = event_named(&mut admin_ws, "SALE_CREATED").await?;
    assert_eq!(confirmed["data"]["status"], "completed");
    let (_, again) = hub
        .post(
            &format!("/api/sales/{SALE}/payments/card-1/confirm"),
            json!({}),
        )
        .await?;
    assert_eq!(again["status"], "unchanged");

    // A refund is new movements (stock comes back), the sale keeps its lines.
    let (status, body) = hub
        .as_(
            Some(&cashier),
            "POST",
            &format!("/api/sales/{SALE}/refunds"),
            Some(json!({"lines": [{"productId": 1, "quantity": 1}], "reason": "broken"})),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sale"]["status"], "partially_refunded");
    assert_eq!(hub.stock(1).await?, 9);
    event_named(&mut admin_ws, "SALE_UPDATED").await?;
    let (status, body) = hub
        .post(
            &format!("/api/sales/{SALE}/refunds"),
            json!({"lines": [{"productId": 1, "quantity": 5}]}),
        )
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("refund_exceeds_sale"))
    );

    // A cashier may not void; a manager may: what was not refunded comes back.
    let void = format!("/api/sales/{SALE}/void");
    let (status, _) = hub
        .as_(Some(&cashier), "POST", &void, Some(json!({"reason": "x"})))
        .await?;
    assert_eq!(status, 403);
    let (status, body) = hub
        .as_(
            Some(&manager),
            "POST",
            &void,
            Some(json!({"reason": "customer left"})),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sale"]["status"], "cancelled");
    assert_eq!((hub.stock(1).await?, hub.stock(2).await?), (10, 5));
    event_named(&mut admin_ws, "SALE_CANCELLED").await?;

    // The cashier never got a sale event.
    let heard = drain(&mut cashier_ws).await;
    assert!(
        heard.iter().all(|e| !e.starts_with("SALE_")),
        "a cashier heard {heard:?}"
    );

    // Reads and filters.
    let (status, one) = hub.get(&format!("/api/sales/{SALE}")).await?;
    assert_eq!(status, 200);
    assert_eq!(one["sale"]["clientTimestamp"], "2026-12-01T10:00:00.000Z");
    assert_eq!(one["sale"]["refunds"].as_array().unwrap().len(), 1);
    let today = &one["sale"]["serverTimestamp"].as_str().unwrap()[..10];
    for query in [
        format!("?day={today}"),
        "?deviceId=register-1".to_owned(),
        "?status=cancelled".to_owned(),
        "?siteId=default".to_owned(),
    ] {
        let (status, listing) = hub.get(&format!("/api/sales{query}")).await?;
        assert_eq!(
            (status, listing["count"].as_u64()),
            (200, Some(1)),
            "{query}: {listing}"
        );
    }
    for query in ["?day=2001-01-01", "?deviceId=nope", "?status=pending"] {
        let (_, listing) = hub.get(&format!("/api/sales{query}")).await?;
        assert_eq!(listing["count"], 0, "{query}");
    }
    let (status, body) = hub.get("/api/sales?day=2026-02-31").await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_day"))
    );
    let (_, history) = hub.get("/api/stock/1/movements").await?;
    let kinds: Vec<&str> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["refund", "refund", "sale", "add"], "{history}");
    Ok(())
}

#[tokio::test]
async fn bad_sales_are_named_and_write_nothing_and_unknown_products_are_flagged() -> Result<()> {
    let hub = TestHub::start().await?;
    let line = |l: Value| json!({"lines": [l]});
    let cases = [
        (
            line(json!({"productId": 1, "quantity": -1, "unitPrice": 1})),
            "invalid_quantity",
        ),
        (
            line(json!({"productId": 1, "quantity": 1, "unitPrice": -2})),
            "invalid_price",
        ),
        (
            json!({"id": "not-a-uuid", "lines": [{"productId": 1, "quantity": 1, "unitPrice": 1}]}),
            "invalid_sale_id",
        ),
        (
            json!({"lines": [{"productId": 1, "quantity": 1, "unitPrice": 1}], "total": 3}),
            "total_mismatch",
        ),
        (json!({"lines": []}), "invalid_lines"),
        (json!([1]), "invalid_body"),
    ];
    for (body, code) in cases {
        let (status, answer) = hub.post("/api/sales", body.clone()).await?;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    let (_, listing) = hub.get("/api/sales").await?;
    assert_eq!(listing["count"], 0);
    let (_, ledger) = hub.get("/api/stock/1/movements").await?;
    assert_eq!(ledger["data"].as_array().map(Vec::len), Some(0));

    // A product the catalog does not know: the sale happened, so it stands, flagged.
    let (status, body) = hub
        .post(
            "/api/sales",
            json!({"lines": [{"productId": 77, "quantity": 1, "unitPrice": 3}]}),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["sale"]["needsReview"], true);
    assert_eq!(body["sale"]["unknownProducts"], json!([77]));
    assert_eq!(
        hub.stock(77).await?,
        -1,
        "sales are facts: stock may go negative"
    );
    let (_, review) = hub.get("/api/sales/review").await?;
    assert_eq!(review["count"], 1, "{review}");
    Ok(())
}

#[tokio::test]
async fn the_catalog_is_versioned_searchable_and_live() -> Result<()> {
    let hub = TestHub::start().await?;
    let cashier = user(&hub, "c@a.test", "cashier", Some("default")).await?;
    let mut cashier_ws = support::Client::connect(&hub.ws_with(&cashier, "")).await?;

    let (status, body) = hub
        .post(
            "/api/products",
            json!({"sku": "CAF-250", "name": "Café molido 250 g", "category": "café",
                   "price": 12.5, "cost": 7, "barcode": "7701234567890",
                   "metadata": {"origin": "Huila"}}),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    let product = &body["product"];
    let id = product["id"].as_i64().unwrap();
    assert_eq!(
        (product["version"].as_i64(), product["price"].clone()),
        (Some(1), json!(12.5))
    );
    let created = event_named(&mut cashier_ws, "product:created").await?;
    assert_eq!(
        created["data"]["sku"], "CAF-250",
        "every site hears catalog changes"
    );
    hub.post(
        "/api/products",
        json!({"sku": "PAN-1", "name": "Pan", "price": 1}),
    )
    .await?;

    // Search by SKU, barcode and part of the name; paging by id.
    for (query, expected) in [
        ("?sku=CAF-250", 1),
        ("?barcode=7701234567890", 1),
        ("?q=molido", 1),
        ("?q=MOLIDO", 1),
        ("?q=%25", 0),
        ("", 2),
    ] {
        let (_, listing) = hub.get(&format!("/api/products{query}")).await?;
        assert_eq!(listing["count"], expected, "{query}: {listing}");
    }
    let (_, page) = hub.get("/api/products?limit=1").await?;
    let next = page["next"].as_i64().unwrap();
    let (_, rest) = hub
        .get(&format!("/api/products?limit=1&after={next}"))
        .await?;
    assert_eq!(rest["data"][0]["sku"], "PAN-1");

    // Optimistic concurrency: a stale version loses with 409 and changes nothing.
    let path = format!("/api/products/{id}");
    let edit = json!({"name": "Café molido", "price": 13});
    let (status, body) = hub
        .call("PUT", &path, Some(edit.clone()), &[("If-Match", "1")])
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["product"]["version"], 2);
    let (status, body) = hub
        .call(
            "PUT",
            &path,
            Some(json!({"name": "stale", "price": 1})),
            &[("If-Match", "1")],
        )
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("version_conflict"))
    );
    let (status, body) = hub
        .call(
            "PATCH",
            &path,
            Some(json!({"price": 14, "version": 2})),
            &[],
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["product"]["name"], "Café molido");
    assert_eq!(body["product"]["version"], 3);
    let (_, one) = hub.get(&path).await?;
    assert_eq!(one["product"]["price"], 14);
    assert_eq!(
        one["product"]["stock"], 0,
        "a product's stock reads with it"
    );

    // Bad input and roles.
    let (status, body) = hub
        .post("/api/products", json!({"name": "x", "price": -1}))
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_price"))
    );
    let (status, _) = hub
        .as_(Some(&cashier), "PATCH", &path, Some(json!({"price": 1})))
        .await?;
    assert_eq!(status, 403, "a cashier does not edit the catalog");
    let (status, _) = hub
        .post(
            "/api/products",
            json!({"id": id, "name": "dup", "price": 1}),
        )
        .await?;
    assert_eq!(status, 409);

    // Delete leaves a tombstone: gone from reads, the version goes on.
    let (status, _) = hub.call("DELETE", &path, None, &[]).await?;
    assert_eq!(status, 200);
    let (status, _) = hub.get(&path).await?;
    assert_eq!(status, 404);
    let (_, listing) = hub.get("/api/products?includeDeleted=true&limit=1").await?;
    assert_eq!(listing["data"][0]["id"], id, "{listing}");
    assert_eq!(listing["data"][0]["deleted"], true);
    assert_eq!(listing["data"][0]["version"], 4);
    event_named(&mut cashier_ws, "product:deleted").await?;
    Ok(())
}

#[tokio::test]
async fn crossing_below_min_stock_tells_managers_and_admins_once() -> Result<()> {
    let hub = TestHub::start().await?;
    let manager = user(&hub, "m@a.test", "manager", Some("default")).await?;
    let cashier = user(&hub, "c@a.test", "cashier", Some("default")).await?;
    hub.post(
        "/api/stock/add",
        json!({"additions": [{"productId": 3, "quantity": 10}]}),
    )
    .await?;
    let (status, body) = hub
        .call(
            "PUT",
            "/api/inventory/3",
            Some(json!({"minStock": 5, "maxStock": 50})),
            &[],
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["inventory"]["quantity"], 10);
    let (status, body) = hub
        .as_(
            Some(&cashier),
            "PUT",
            "/api/inventory/3",
            Some(json!({"minStock": 1})),
        )
        .await?;
    assert_eq!(status, 403, "{body}");
    let (status, body) = hub
        .call(
            "PUT",
            "/api/inventory/3",
            Some(json!({"minStock": 9, "maxStock": 2})),
            &[],
        )
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_data"))
    );

    let mut manager_ws = support::Client::connect(&hub.ws_with(&manager, "")).await?;
    let mut cashier_ws = support::Client::connect(&hub.ws_with(&cashier, "")).await?;
    let subtract = json!({"subtractions": [{"productId": 3, "quantity": 3}]});
    hub.post("/api/stock/subtract", subtract.clone()).await?; // 7: not low
    hub.post("/api/stock/subtract", subtract.clone()).await?; // 4: crosses
    hub.post(
        "/api/stock/subtract",
        json!({"subtractions": [{"productId": 3, "quantity": 1}]}),
    )
    .await?; // 3: already low
    let low = event_named(&mut manager_ws, "stock:low").await?;
    assert_eq!(low["data"]["products"][0]["stock"], 4, "{low}");
    assert_eq!(low["data"]["products"][0]["minStock"], 5);
    let later = drain(&mut manager_ws).await;
    assert!(
        !later.contains(&"stock:low".to_owned()),
        "raised once: {later:?}"
    );
    let heard = drain(&mut cashier_ws).await;
    assert!(
        !heard.contains(&"stock:low".to_owned()),
        "cashiers are not told: {heard:?}"
    );
    let (_, low_list) = hub.get("/api/inventory?low=true").await?;
    assert_eq!(low_list["data"][0]["productId"], 3, "{low_list}");
    Ok(())
}

#[tokio::test]
async fn every_mutation_leaves_an_audit_entry_for_admins_only() -> Result<()> {
    let hub = TestHub::start().await?;
    let cashier = user(&hub, "c@a.test", "cashier", Some("default")).await?;
    let (_, product) = hub
        .post("/api/products", json!({"name": "Té", "price": 2}))
        .await?;
    let product_id = product["product"]["id"].as_i64().unwrap();
    hub.post(
        "/api/stock/add",
        json!({"additions": [{"productId": product_id, "quantity": 4}]}),
    )
    .await?;
    hub.call(
        "PUT",
        &format!("/api/inventory/{product_id}"),
        Some(json!({"minStock": 1})),
        &[],
    )
    .await?;
    let (status, _) = hub
        .as_(
            Some(&cashier),
            "POST",
            "/api/sales",
            Some(json!({"id": SALE, "lines": [{"productId": product_id, "quantity": 1, "unitPrice": 2}]})),
        )
        .await?;
    assert_eq!(status, 201);
    let (status, body) = hub
        .post(
            "/api/sync/shop/notes",
            json!({"data": [{"id": "n1", "text": "hola"}]}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");

    let (status, key) = hub
        .post(
            "/api/admin/api-keys",
            json!({"name": "pos", "role": "cashier", "siteId": "default"}),
        )
        .await?;
    assert_eq!(status, 201, "{key}");
    let secret = key["key"].as_str().unwrap().to_owned();
    let revoke = format!("/api/admin/api-keys/{}", key["id"].as_str().unwrap());
    hub.call("DELETE", &revoke, None, &[]).await?;
    hub.post("/api/admin/sites", json!({"id": "north"})).await?;

    let (status, audit) = hub.get("/api/audit").await?;
    assert_eq!(status, 200, "{audit}");
    assert!(
        !audit.to_string().contains(&secret),
        "no API key in the audit log"
    );
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "user:create",
        "api_key:create",
        "api_key:revoke",
        "site:create",
        "product:created",
        "stock:add",
        "inventory:thresholds",
        "SALE_CREATED",
        "sync:upsert",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    let (_, sale) = hub
        .get(&format!("/api/audit?entityType=sale&entityId={SALE}"))
        .await?;
    let entry = &sale["data"][0];
    assert_eq!(entry["action"], "SALE_CREATED", "{sale}");
    assert!(
        entry["userId"].as_str().is_some_and(|u| !u.is_empty()),
        "{entry}"
    );
    assert_eq!(entry["after"]["id"], SALE);
    let (_, since) = hub.get("/api/audit?since=2999-01-01T00:00:00Z").await?;
    assert_eq!(since["count"], 0);
    let (status, _) = hub.as_(Some(&cashier), "GET", "/api/audit", None).await?;
    assert_eq!(status, 403);
    let text = audit.to_string();
    assert!(
        !text.contains(PW) && !text.contains("argon2"),
        "no secrets in the audit log"
    );
    Ok(())
}

#[tokio::test]
async fn retail_routes_never_cross_tenants() -> Result<()> {
    let hub = TestHub::start().await?;
    let (status, body) = hub
        .post(
            "/api/admin/tenants",
            json!({"id": "b", "owner": {"email": "o@b.test", "password": PW}}),
        )
        .await?;
    anyhow::ensure!(status == 201, "{body}");
    let b = hub.login("o@b.test", PW).await?.0;
    let mut b_ws = support::Client::connect(&hub.ws_with(&b, "")).await?;
    hub.post("/api/products", json!({"id": 5, "name": "A's", "price": 1}))
        .await?;
    hub.post("/api/sales", sale_body()).await?;
    hub.call("PUT", "/api/inventory/1", Some(json!({"minStock": 1})), &[])
        .await?;

    for path in [format!("/api/sales/{SALE}"), "/api/products/5".to_owned()] {
        let (status, _) = hub.as_(Some(&b), "GET", &path, None).await?;
        assert_eq!(status, 404, "{path}");
    }
    for path in ["/api/sales", "/api/products", "/api/inventory"] {
        let (status, body) = hub.as_(Some(&b), "GET", path, None).await?;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body["count"], 0, "{path}: {body}");
    }
    // B's audit log has its own creation only.
    let (_, audit) = hub.as_(Some(&b), "GET", "/api/audit", None).await?;
    let actions: Vec<&Value> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["action"])
        .collect();
    assert_eq!(actions, [&json!("tenant:create")], "{audit}");
    let (_, level) = hub.as_(Some(&b), "GET", "/api/inventory/1", None).await?;
    assert_eq!(level["inventory"]["minStock"], Value::Null);
    for (method, path) in [
        ("POST", format!("/api/sales/{SALE}/payments/card-1/confirm")),
        ("POST", format!("/api/sales/{SALE}/refunds")),
        ("POST", format!("/api/sales/{SALE}/void")),
        ("PATCH", "/api/products/5".to_owned()),
        ("DELETE", "/api/products/5".to_owned()),
    ] {
        let (status, _) = hub
            .as_(Some(&b), method, &path, Some(json!({"price": 2})))
            .await?;
        assert_eq!(status, 404, "{method} {path}");
    }
    // B's own sale under the same UUID is B's: a separate sale, not a duplicate of A's.
    let (status, body) = hub
        .as_(Some(&b), "POST", "/api/sales", Some(sale_body()))
        .await?;
    assert_eq!(
        (status, body["status"].as_str()),
        (201, Some("created")),
        "{body}"
    );
    // B heard only its own events.
    let heard = drain(&mut b_ws).await;
    assert!(
        heard
            .iter()
            .all(|e| e == "SALE_CREATED" || e == "stock:sync"),
        "tenant b heard {heard:?}"
    );
    assert_eq!(heard.iter().filter(|e| *e == "SALE_CREATED").count(), 1);
    Ok(())
}
