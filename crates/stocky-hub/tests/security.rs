//! Security end to end: tenant isolation on every route and on the WebSocket, site and
//! module routing, roles, credentials, sessions and abuse limits.

use stocky_test_support as support;

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use stocky_server::config::SessionPolicy;
use support::{Client, Ended, TestHub};

const PW: &str = "correct horse battery";

/// Tenant `default` (A) with sites `default` and `s2`, its users, and tenant `b`.
struct World {
    hub: TestHub,
    cashier1: String,
    cashier2: String,
    manager: String,
    admin: String,
    b_owner: String,
}

async fn user(
    hub: &TestHub,
    email: &str,
    role: &str,
    site: Option<&str>,
    modules: Option<Vec<&str>>,
) -> Result<String> {
    let (status, body) = hub
        .post("/api/admin/users", json!({"email": email, "password": PW, "role": role, "siteId": site, "modules": modules}))
        .await?;
    anyhow::ensure!(status == 201, "create {email}: {status} {body}");
    Ok(hub.login(email, PW).await?.0)
}

async fn world_with(tweak: impl FnOnce(&mut stocky_hub::HubConfig)) -> Result<World> {
    let hub = TestHub::start_with(tweak).await?;
    let (status, body) = hub
        .post(
            "/api/admin/sites",
            json!({"id": "s2", "name": "Second shop"}),
        )
        .await?;
    anyhow::ensure!(status == 201, "{body}");
    let cashier1 = user(
        &hub,
        "c1@a.test",
        "cashier",
        Some("default"),
        Some(vec!["inventory"]),
    )
    .await?;
    let cashier2 = user(&hub, "c2@a.test", "cashier", Some("s2"), None).await?;
    let manager = user(&hub, "m@a.test", "manager", None, None).await?;
    let admin = user(&hub, "admin@a.test", "admin", None, None).await?;
    let (status, body) = hub
        .post("/api/admin/tenants", json!({"id": "b", "name": "Tenant B", "owner": {"email": "owner@b.test", "password": PW}}))
        .await?;
    anyhow::ensure!(status == 201, "{body}");
    let b_owner = hub.login("owner@b.test", PW).await?.0;
    Ok(World {
        hub,
        cashier1,
        cashier2,
        manager,
        admin,
        b_owner,
    })
}

async fn world() -> Result<World> {
    world_with(|_| {}).await
}

#[tokio::test]
async fn tenant_b_can_neither_read_write_nor_receive_tenant_a() -> Result<()> {
    let w = world().await?;
    let hub = &w.hub;
    // Tenant A's data.
    hub.post(
        "/api/stock/update",
        json!({"updates":[{"productId":1,"stock":10}]}),
    )
    .await?;
    hub.post(
        "/api/sync/shop/products",
        json!({"data":[{"id":"p1","name":"A's secret"}]}),
    )
    .await?;
    let mut b_ws = Client::connect(&hub.ws_with(&w.b_owner, "")).await?;
    assert_eq!(b_ws.auth["tenantId"], "b");
    assert_eq!(b_ws.welcome["lastEventId"], 0, "B's stream is its own");

    let b = Some(w.b_owner.as_str());
    let reads: Vec<(&str, &str)> = vec![
        ("GET", "/api/stock/1"),
        ("GET", "/api/sync/shop/products/p1"),
        ("GET", "/api/backup/shop"),
        ("PATCH", "/api/sync/shop/products/p1"),
        ("DELETE", "/api/sync/shop/products/p1"),
    ];
    for (method, path) in reads {
        let body = (method == "PATCH").then(|| json!({"name": "B was here"}));
        let (status, answer) = hub.as_(b, method, path, body).await?;
        assert_eq!(status, 404, "{method} {path}: {answer}");
    }
    // Every other read of B's namespace comes back empty.
    let empty: Vec<(&str, &str, &str)> = vec![
        (
            "/api/sync/shop/products/since/2000-01-01T00:00:00Z",
            "count",
            "0",
        ),
        ("/api/sync/shop/products/stats", "total", "0"),
        (
            "/api/backup/shop/incremental/2000-01-01T00:00:00Z",
            "totalRecords",
            "0",
        ),
    ];
    for (path, field, want) in empty {
        let (status, answer) = hub.as_(b, "GET", path, None).await?;
        assert_eq!(
            (status, answer[field].to_string()),
            (200, want.to_string()),
            "{path}: {answer}"
        );
    }
    let (_, cmp) = hub
        .as_(
            b,
            "POST",
            "/api/backup/shop/compare",
            Some(json!({"backup":{"products":[{"id":"p1","name":"A's secret"}]}})),
        )
        .await?;
    assert_eq!(
        cmp["comparison"]["products"]["onlyInBackup"], 1,
        "B cannot see A's p1: {cmp}"
    );
    let (_, all) = hub.as_(b, "GET", "/api/stock", None).await?;
    assert_eq!(all["count"], 0);
    let (_, docs) = hub.as_(b, "GET", "/api/sync/shop/products", None).await?;
    assert_eq!(docs["count"], 0);
    let (_, backups) = hub.as_(b, "GET", "/api/backup", None).await?;
    assert_eq!(
        backups["databases"],
        json!([{"name":"_stock","stores":[{"name":"movements","records":0}],"totalRecords":0}])
    );
    let (_, ledger) = hub.as_(b, "GET", "/api/backup/_stock", None).await?;
    assert_eq!(ledger["totalRecords"], 0);
    let (_, status) = hub.as_(b, "GET", "/api/stock/status", None).await?;
    assert_eq!(
        (
            status["lastEventId"].as_u64(),
            status["connectedClients"].as_u64()
        ),
        (Some(0), Some(1))
    );
    let (_, users) = hub.as_(b, "GET", "/api/admin/users", None).await?;
    assert_eq!(users["data"].as_array().unwrap().len(), 1);
    let (_, keys) = hub.as_(b, "GET", "/api/admin/api-keys", None).await?;
    assert_eq!(keys["data"], json!([]));
    hub.post("/api/admin/devices", json!({"id":"pos-1","siteId":"s2"}))
        .await?;
    let (_, devices) = hub.as_(b, "GET", "/api/admin/devices", None).await?;
    assert_eq!(devices["data"], json!([]));
    let (status, _) = hub
        .as_(
            b,
            "POST",
            "/api/admin/devices",
            Some(json!({"id":"pos-9","siteId":"s2"})),
        )
        .await?;
    assert_eq!(status, 404, "B has no site s2");

    // B's writes land in B only; A's product 1 is untouched and A's clients hear nothing.
    let mut a_ws = hub.connect().await?;
    let (status, body) = hub
        .as_(
            b,
            "POST",
            "/api/stock/subtract",
            Some(json!({"subtractions":[{"productId":1,"quantity":1}]})),
        )
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("product_not_found"))
    );
    hub.as_(
        b,
        "POST",
        "/api/stock/update",
        Some(json!({"updates":[{"productId":1,"stock":99}]})),
    )
    .await?;
    hub.as_(b, "DELETE", "/api/backup/shop", None).await?;
    hub.as_(
        b,
        "POST",
        "/api/sync/shop/products",
        Some(json!({"data":[{"id":"p1","name":"B's own"}]})),
    )
    .await?;
    assert_eq!(hub.stock(1).await?, 10);
    let (_, a_doc) = hub.get("/api/sync/shop/products/p1").await?;
    assert_eq!(a_doc["data"]["name"], "A's secret");
    a_ws.expect_silence(Duration::from_millis(300)).await?;
    // B's socket got exactly B's two events, numbered in B's stream.
    assert_eq!(
        (
            b_ws.next_event().await?["id"].as_u64(),
            b_ws.next_event().await?["id"].as_u64()
        ),
        (Some(1), Some(2))
    );
    // Replays obey the same isolation.
    let mut b_replay = Client::connect(&hub.ws_with(&w.b_owner, "&lastEventId=0")).await?;
    let first = b_replay.next_event().await?;
    assert_eq!(first["scope"]["tenantId"], "b");
    Ok(())
}

#[tokio::test]
async fn events_are_routed_by_site_and_module() -> Result<()> {
    let w = world().await?;
    let hub = &w.hub;
    let mut c1 = Client::connect(&hub.ws_with(&w.cashier1, "")).await?;
    let mut c2 = Client::connect(&hub.ws_with(&w.cashier2, "")).await?;
    let mut admin = Client::connect(&hub.ws_with(&w.admin, "")).await?;
    let mut manager = Client::connect(&hub.ws_with(&w.manager, "")).await?;
    assert_eq!(c1.auth["siteId"], "default");
    assert_eq!(c1.auth["modules"], json!(["inventory"]));
    // The head before the test's events (creating the site users announced them).
    let b = c1.auth["lastEventId"].as_u64().context("the head")?;

    // Site s2 sells (cashier2's home site): cashier1 of site default must not hear it.
    hub.post(
        "/api/stock/update",
        json!({"updates":[{"productId":7,"stock":5}]}),
    )
    .await?; // id b + 1, site default
    let mut c2_cmd = c2
        .command("stock:update", json!([{"productId":7,"stock":3}]))
        .await?; // forbidden for cashiers
    assert_eq!(c2_cmd["data"]["code"], "forbidden");
    c2_cmd = c2
        .command("stock:subtract", json!([{"productId":7,"quantity":1}]))
        .await?;
    assert_eq!(
        c2_cmd["data"]["code"], "product_not_found",
        "site s2 has its own stock"
    );
    let (status, _) = hub
        .as_(
            Some(&w.manager),
            "POST",
            "/api/events",
            Some(json!({"type":"order_created","data":{"orderId":"A-1"},"siteId":"s2"})),
        )
        .await?; // id b + 2
    assert_eq!(status, 201);
    hub.post(
        "/api/events",
        json!({"type":"order_created","data":{"orderId":"A-2"}}),
    )
    .await?; // id b + 3, site default
    hub.post(
        "/api/events",
        json!({"type":"SALE_CREATED","data":{"total":10}}),
    )
    .await?; // id b + 4, admin-only
    hub.post(
        "/api/stock/add",
        json!({"additions":[{"productId":7,"quantity":1}]}),
    )
    .await?; // id b + 5

    // cashier1: site default, module inventory only → ids b + 1 and b + 5, with prev chained.
    let e = c1.next_event().await?;
    assert_eq!(
        (e["id"].as_u64(), e["prev"].as_u64()),
        (Some(b + 1), Some(b))
    );
    let e = c1.next_event().await?;
    assert_eq!(
        (e["id"].as_u64(), e["prev"].as_u64()),
        (Some(b + 5), Some(b + 1)),
        "{e}"
    );
    // cashier2: site s2, all modules → the s2 order only.
    let e = c2.next_event().await?;
    assert_eq!(
        (e["id"].as_u64(), e["prev"].as_u64(), e["event"].as_str()),
        (Some(b + 2), Some(b), Some("order_created"))
    );
    c2.expect_silence(Duration::from_millis(200)).await?;
    // admin: everything.
    let ids: Vec<u64> = [(); 5].iter().map(|_| 0).collect();
    let mut got = Vec::new();
    for _ in ids {
        got.push(admin.next_event().await?["id"].as_u64().unwrap());
    }
    assert_eq!(got, vec![b + 1, b + 2, b + 3, b + 4, b + 5]);
    // manager: every site, but not the admin-only SALE_CREATED.
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(manager.next_event().await?);
    }
    let ids: Vec<u64> = got.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![b + 1, b + 2, b + 3, b + 5]);
    assert_eq!(got[3]["prev"], b + 3);

    // Replays filter the same way and keep the prev chain.
    let resume = format!("&lastEventId={b}&deviceId=tablet");
    let mut again = Client::connect(&hub.ws_with(&w.cashier1, &resume)).await?;
    let e = again.next_event().await?;
    assert_eq!(e["id"], b + 1);
    let e = again.next_event().await?;
    assert_eq!(
        (e["id"].as_u64(), e["prev"].as_u64()),
        (Some(b + 5), Some(b + 1))
    );
    let done = again.recv().await?;
    assert_eq!(
        (
            done["type"].as_str(),
            done["replayed"].as_u64(),
            done["lastEventId"].as_u64()
        ),
        (Some("sync_complete"), Some(2), Some(b + 5))
    );
    Ok(())
}

#[tokio::test]
async fn roles_are_enforced_on_rest_and_websocket() -> Result<()> {
    let w = world().await?;
    let hub = &w.hub;
    hub.post(
        "/api/stock/update",
        json!({"updates":[{"productId":1,"stock":10}]}),
    )
    .await?;
    let cashier = Some(w.cashier1.as_str());
    let denied: Vec<(&str, &str, Option<Value>)> = vec![
        (
            "POST",
            "/api/stock/update",
            Some(json!({"updates":[{"productId":1,"stock":1}]})),
        ),
        (
            "POST",
            "/api/stock/sync",
            Some(json!({"stockData":[{"productId":1,"stock":1}]})),
        ),
        (
            "POST",
            "/api/stock/add",
            Some(json!({"additions":[{"productId":1,"quantity":1}]})),
        ),
        (
            "PUT",
            "/api/sync/shop/products/x",
            Some(json!({"name":"x"})),
        ),
        ("POST", "/api/sync/shop/products", Some(json!({"data":[]}))),
        ("GET", "/api/backup", None),
        (
            "POST",
            "/api/backup/shop/restore",
            Some(json!({"backup":{}})),
        ),
        ("DELETE", "/api/backup/shop", None),
        ("GET", "/api/admin/users", None),
        (
            "POST",
            "/api/admin/api-keys",
            Some(json!({"name":"k","role":"owner"})),
        ),
        ("POST", "/api/events", Some(json!({"type":"order_created"}))),
    ];
    for (method, path, body) in denied {
        let (status, answer) = hub.as_(cashier, method, path, body).await?;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{method} {path}: {answer}"
        );
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("role cashier may not"));
    }
    let (status, _) = hub
        .as_(
            cashier,
            "POST",
            "/api/stock/subtract",
            Some(json!({"subtractions":[{"productId":1,"quantity":1}]})),
        )
        .await?;
    assert_eq!(status, 200, "cashiers sell");
    let (status, _) = hub.as_(cashier, "GET", "/api/stock/1", None).await?;
    assert_eq!(status, 200, "and read stock");
    // A manager sets stock but cannot manage access; an admin cannot create owners.
    let (status, _) = hub
        .as_(
            Some(&w.manager),
            "POST",
            "/api/stock/update",
            Some(json!({"updates":[{"productId":1,"stock":3}]})),
        )
        .await?;
    assert_eq!(status, 200);
    let (status, _) = hub
        .as_(Some(&w.manager), "GET", "/api/admin/users", None)
        .await?;
    assert_eq!(status, 403);
    let (status, body) = hub
        .as_(
            Some(&w.admin),
            "POST",
            "/api/admin/users",
            Some(json!({"email":"o2@a.test","password":PW,"role":"owner"})),
        )
        .await?;
    assert_eq!(status, 403, "{body}");
    let (status, _) = hub
        .as_(
            Some(&w.admin),
            "POST",
            "/api/admin/tenants",
            Some(json!({"id":"c","owner":{"email":"x@c.test","password":PW}})),
        )
        .await?;
    assert_eq!(status, 403, "only the operator creates tenants");
    // WebSocket commands obey the same table.
    let mut ws = Client::connect(&hub.ws_with(&w.cashier1, "")).await?;
    let refused = ws
        .command("stock:add", json!([{"productId":1,"quantity":5}]))
        .await?;
    assert_eq!(
        (
            refused["data"]["error"].as_str(),
            refused["data"]["code"].as_str()
        ),
        (Some("Forbidden"), Some("forbidden"))
    );
    assert_eq!(
        ws.command("stock:subtract", json!([{"productId":1,"quantity":1}]))
            .await?["type"],
        "ack"
    );
    assert_eq!(hub.stock(1).await?, 2);
    Ok(())
}

/// The role is checked before the body is read: a caller without the permission gets the
/// same `403` on every write route, whatever it sends (malformed JSON, no JSON content
/// type, the wrong shape) — not a `400`, `415` or `422` that depends on the body.
#[tokio::test]
async fn a_forbidden_write_is_403_whatever_the_body() -> Result<()> {
    let w = world().await?;
    let hub = &w.hub;
    let writes = [
        ("POST", "/api/stock/update"),
        ("POST", "/api/stock/add"),
        ("POST", "/api/stock/sync"),
        ("POST", "/api/events"),
        ("POST", "/api/sync/shop/products"),
        ("PUT", "/api/sync/shop/products/p1"),
        ("PATCH", "/api/sync/shop/products/p1"),
        ("DELETE", "/api/sync/shop/products/p1"),
        ("POST", "/api/backup/shop/restore"),
        ("POST", "/api/backup/shop/compare"),
        ("DELETE", "/api/backup/shop"),
        ("POST", "/api/admin/sites"),
        ("POST", "/api/admin/devices"),
        ("POST", "/api/admin/users"),
        ("POST", "/api/admin/api-keys"),
        ("DELETE", "/api/admin/api-keys/k1"),
        ("POST", "/api/admin/tenants"),
        ("POST", "/api/products"),
        ("PUT", "/api/products/1"),
        ("PATCH", "/api/products/1"),
        ("DELETE", "/api/products/1"),
        ("PUT", "/api/inventory/1"),
        (
            "POST",
            "/api/sales/6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b/void",
        ),
        ("POST", "/api/transfers/request"),
        ("POST", "/api/sync/menu"),
        ("POST", "/api/sync/config"),
        ("PATCH", "/api/customers/c1"),
        ("POST", "/api/sync/customers/bulk"),
    ];
    let bodies = [
        (Some("application/json"), "{not json"),
        (None, "[1, 2"),
        (Some("text/plain"), "hello"),
        (Some("application/json"), r#"{"unexpected":true}"#),
    ];
    let client = reqwest::Client::new();
    for (method, path) in writes {
        for (content_type, body) in bodies {
            let mut request = client
                .request(method.parse()?, format!("{}{path}", hub.http))
                .bearer_auth(&w.cashier1)
                .body(body);
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let response = request.send().await?;
            let status = response.status().as_u16();
            let answer: Value = response.json().await?;
            assert_eq!(
                (status, answer["error"]["code"].as_str()),
                (403, Some("forbidden")),
                "{method} {path} with {content_type:?} {body:?}: {answer}"
            );
        }
    }
    // Where the role is allowed, the body is read and judged as before.
    let response = client
        .post(format!("{}/api/stock/subtract", hub.http))
        .bearer_auth(&w.cashier1)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    let status = response.status().as_u16();
    let answer: Value = response.json().await?;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_json")),
        "{answer}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_credentials_get_401_without_detail_and_sessions_end() -> Result<()> {
    let w = world_with(|c| c.server.access_ttl = Duration::from_secs(2)).await?;
    let hub = &w.hub;
    // Secure by default: nothing without credentials but health and login.
    for path in [
        "/api/stock",
        "/api/stock/status",
        "/api/sync/a/b",
        "/api/backup",
        "/api/admin/users",
    ] {
        let (status, body) = hub.as_(None, "GET", path, None).await?;
        assert_eq!(
            (status, body["error"]["message"].as_str()),
            (401, Some("missing or invalid credentials")),
            "{path}"
        );
    }
    assert_eq!(hub.as_(None, "GET", "/health", None).await?.0, 200);
    let unknown = hub
        .call(
            "POST",
            "/api/auth/login",
            Some(json!({"email":"nobody@a.test","password":PW})),
            &[],
        )
        .await?;
    let wrong = hub
        .call(
            "POST",
            "/api/auth/login",
            Some(json!({"email":"c1@a.test","password":"nope nope"})),
            &[],
        )
        .await?;
    assert_eq!(
        unknown, wrong,
        "the same answer whether the email exists or not"
    );
    assert_eq!(unknown.0, 401);
    for token in ["sk_unknown", "not.a.jwt", "eyJhbGciOiJIUzI1NiJ9.e30.x"] {
        assert_eq!(
            hub.as_(Some(token), "GET", "/api/stock", None).await?.0,
            401,
            "{token}"
        );
    }
    // API keys: X-API-Key works; a revoked key does not.
    let (_, key) = hub
        .post(
            "/api/admin/api-keys",
            json!({"name":"pos-1","role":"cashier","siteId":"default"}),
        )
        .await?;
    let secret = key["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk_"));
    let (_, listed) = hub.get("/api/admin/api-keys").await?;
    assert!(
        !listed.to_string().contains(&secret),
        "keys are never listed"
    );
    let x_api_key = reqwest::Client::new()
        .get(format!("{}/api/stock", hub.http))
        .header("x-api-key", &secret)
        .send()
        .await?;
    assert_eq!(x_api_key.status(), 200);
    hub.call(
        "DELETE",
        &format!("/api/admin/api-keys/{}", key["id"].as_str().unwrap()),
        None,
        &[],
    )
    .await?;
    assert_eq!(
        hub.as_(Some(&secret), "GET", "/api/stock", None).await?.0,
        401
    );

    // Logout revokes the session; refresh tokens rotate.
    let (token, login) = hub.login("m@a.test", PW).await?;
    let refresh = login["refreshToken"].as_str().unwrap().to_owned();
    let (status, renewed) = hub
        .call(
            "POST",
            "/api/auth/refresh",
            Some(json!({"refreshToken": refresh})),
            &[],
        )
        .await?;
    assert_eq!(status, 200);
    let (status, _) = hub
        .call(
            "POST",
            "/api/auth/refresh",
            Some(json!({"refreshToken": refresh})),
            &[],
        )
        .await?;
    assert_eq!(status, 401, "a refresh token works once");
    // Its reuse ended the session: the newer tokens are dead too.
    assert_eq!(
        hub.as_(Some(&token), "POST", "/api/auth/logout", None)
            .await?
            .0,
        401
    );
    let (_, renewed_login) = hub
        .call(
            "POST",
            "/api/auth/refresh",
            Some(json!({"refreshToken": renewed["refreshToken"]})),
            &[],
        )
        .await?;
    assert_eq!(renewed_login["error"]["code"], "unauthorized");
    // Logout ends a session.
    let (other, _) = hub.login("m@a.test", PW).await?;
    assert_eq!(
        hub.as_(Some(&other), "POST", "/api/auth/logout", None)
            .await?
            .0,
        200
    );
    assert_eq!(
        hub.as_(Some(&other), "GET", "/api/stock", None).await?.0,
        401
    );
    assert_eq!(
        hub.as_(Some(&token), "GET", "/api/stock", None).await?.0,
        401
    );
    assert_eq!(
        hub.as_(renewed["accessToken"].as_str(), "GET", "/api/stock", None)
            .await?
            .0,
        401,
        "the whole session ended"
    );

    // An expired token closes the socket with a reason to refresh.
    let (short, _) = hub.login("admin@a.test", PW).await?;
    let mut ws = Client::connect(&hub.ws_with(&short, "")).await?;
    let (ended, _) = ws.until_end().await?;
    match ended {
        Ended::Closed(Some((code, reason))) => {
            assert_eq!(u16::from(code), 4001);
            assert!(reason.contains("refresh"), "{reason}");
        }
        other => panic!("expected close 4001, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        hub.as_(Some(&short), "GET", "/api/stock", None).await?.0,
        401,
        "expired"
    );
    Ok(())
}

#[tokio::test]
async fn websocket_handshake_follows_seed_001() -> Result<()> {
    let hub = TestHub::start_with(|c| c.server.auth_timeout = Duration::from_millis(500)).await?;
    let bare = hub.ws_with("", "");
    let bare = bare.trim_end_matches("?token=");
    let mut c = Client::connect(bare).await?;
    assert_eq!(c.welcome["authRequired"], true);
    c.send(json!({"event":"stock:add","data":[{"productId":1,"quantity":1}]}))
        .await?;
    let refused = c.recv().await?;
    assert_eq!(refused["data"]["error"], "Unauthorized");
    c.send(json!({"type":"ping"})).await?;
    assert_eq!(c.recv().await?["type"], "pong");
    c.send(json!({"type":"auth","token":support::ADMIN}))
        .await?;
    let ok = c.recv().await?;
    assert_eq!(
        (
            ok["type"].as_str(),
            ok["role"].as_str(),
            ok["tenantId"].as_str()
        ),
        (Some("auth_success"), Some("owner"), Some("default"))
    );
    assert_eq!(
        c.command("stock:add", json!([{"productId":1,"quantity":1}]))
            .await?["type"],
        "ack"
    );

    let mut wrong = Client::connect(bare).await?;
    wrong.send(json!({"type":"auth","token":"wrong"})).await?;
    assert_eq!(wrong.recv().await?["type"], "auth_error");
    let (ended, _) = wrong.until_end().await?;
    assert!(
        matches!(ended, Ended::Closed(Some((code, _))) if u16::from(code) == 1008),
        "{ended:?}"
    );

    let mut silent = Client::connect(bare).await?;
    let (ended, _) = silent.until_end().await?;
    assert!(
        matches!(ended, Ended::Closed(Some((code, _))) if u16::from(code) == 1008),
        "{ended:?}"
    );

    // A bad ?token= (seed 000's browser style) is refused right away.
    let (mut ws, _) = tokio_tungstenite::connect_async(hub.ws_with("bad", "")).await?;
    use futures_util::StreamExt;
    let first = ws.next().await.unwrap()?;
    assert!(first.to_text()?.contains("auth_error"));
    Ok(())
}

#[tokio::test]
async fn one_connection_per_user_and_device_replace_or_reject() -> Result<()> {
    let w = world().await?;
    let hub = &w.hub;
    let mut first = Client::connect(&hub.ws_with(&w.cashier1, "&deviceId=pos-1")).await?;
    let mut other_device = Client::connect(&hub.ws_with(&w.cashier1, "&deviceId=pos-2")).await?;
    let _second = Client::connect(&hub.ws_with(&w.cashier1, "&deviceId=pos-1")).await?;
    let (ended, _) = first.until_end().await?;
    assert!(
        matches!(&ended, Ended::Closed(Some((code, reason))) if u16::from(*code) == 4002 && reason.contains("replaced")),
        "{ended:?}"
    );
    other_device.send(json!({"type":"ping"})).await?;
    assert_eq!(
        other_device.recv().await?["type"],
        "pong",
        "another device is not affected"
    );

    let w = world_with(|c| c.server.session_policy = SessionPolicy::Reject).await?;
    let hub = &w.hub;
    let mut kept = Client::connect(&hub.ws_with(&w.cashier1, "")).await?;
    let (mut refused, _) = tokio_tungstenite::connect_async(hub.ws_with(&w.cashier1, "")).await?;
    use futures_util::StreamExt;
    let answer = refused.next().await.unwrap()?;
    assert!(answer.to_text()?.contains("already connected"), "{answer}");
    kept.send(json!({"type":"ping"})).await?;
    assert_eq!(kept.recv().await?["type"], "pong");
    Ok(())
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() -> Result<()> {
    let w = world_with(|c| {
        c.server.rate_per_credential = 8;
        c.server.login_failures = 3;
    })
    .await?;
    let hub = &w.hub;
    let token = Some(w.b_owner.as_str());
    for _ in 0..8 {
        assert_eq!(hub.as_(token, "GET", "/api/stock", None).await?.0, 200);
    }
    let response = reqwest::Client::new()
        .get(format!("{}/api/stock", hub.http))
        .bearer_auth(&w.b_owner)
        .send()
        .await?;
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"].to_str()?.parse()?;
    assert!((1..=60).contains(&retry));
    // WebSocket commands draw on the same budget.
    let mut ws = Client::connect(&hub.ws_with(&w.b_owner, "")).await?;
    let refused = ws
        .command("stock:add", json!([{"productId":1,"quantity":1}]))
        .await?;
    assert_eq!(refused["data"]["code"], "rate_limited");
    // Another credential is not affected.
    assert_eq!(
        hub.as_(Some(&w.manager), "GET", "/api/stock", None)
            .await?
            .0,
        200
    );
    // Failed logins are throttled, even with the right password afterwards.
    for _ in 0..3 {
        let (status, _) = hub
            .call(
                "POST",
                "/api/auth/login",
                Some(json!({"email":"c2@a.test","password":"wrong pass"})),
                &[],
            )
            .await?;
        assert_eq!(status, 401);
    }
    let (status, _) = hub
        .call(
            "POST",
            "/api/auth/login",
            Some(json!({"email":"c2@a.test","password":PW})),
            &[],
        )
        .await?;
    assert_eq!(status, 429);
    Ok(())
}

#[tokio::test]
async fn request_sync_draws_on_the_budget_and_over_it_waits_without_holding_the_connection(
) -> Result<()> {
    let w = world_with(|c| {
        c.server.rate_per_credential = 8;
        // Long enough that the steps below always fall in one window, even on a loaded machine.
        c.server.rate_window = Duration::from_secs(8);
    })
    .await?;
    let hub = &w.hub;
    let add = |quantity: i64| {
        hub.as_(
            Some(&w.admin),
            "POST",
            "/api/stock/add",
            Some(json!({"additions":[{"productId":1,"quantity":quantity}]})),
        )
    };
    add(1).await?;
    add(2).await?;
    let mut ws = Client::connect(&hub.ws_with(&w.manager, "")).await?;
    ws.send(json!({"type":"request_sync","lastEventId":0}))
        .await?;
    let mut frame = ws.recv().await?;
    while frame["type"] != "sync_complete" {
        frame = ws.recv().await?;
    }
    let head = frame["lastEventId"].as_u64().unwrap_or_default();
    assert!(head >= 2);
    for _ in 1..8 {
        ws.send(json!({"type":"request_sync","lastEventId":head}))
            .await?;
        assert_eq!(ws.recv().await?["type"], "sync_complete");
    }
    // Eight replays spent the credential's budget, as eight REST calls would.
    let (status, _) = hub.as_(Some(&w.manager), "GET", "/api/stock", None).await?;
    assert_eq!(status, 429);

    // Over it: two requests wait as one replay from the lower position, and meanwhile
    // the connection answers pings and delivers live events.
    ws.send(json!({"type":"request_sync","lastEventId":head}))
        .await?;
    ws.send(json!({"type":"request_sync","lastEventId":head - 1}))
        .await?;
    ws.send(json!({"type":"ping"})).await?;
    assert_eq!(ws.recv().await?["type"], "pong", "the sync waits");
    add(3).await?;
    let live = ws.recv().await?;
    assert_eq!(
        (live["id"].as_u64(), live["data"][0]["quantity"].as_i64()),
        (Some(head + 1), Some(3)),
        "{live}"
    );
    // When the window turns: one replay from head - 1, and each request its sync_complete.
    let mut replayed = Vec::new();
    let done = loop {
        let frame = ws.recv().await?;
        if frame["type"] == "sync_complete" {
            break frame;
        }
        replayed.push(frame["id"].as_u64());
    };
    assert_eq!(replayed, vec![Some(head), Some(head + 1)]);
    assert_eq!(
        (done["lastEventId"].as_u64(), done["replayed"].as_u64()),
        (Some(head + 1), Some(2))
    );
    let second = ws.recv().await?;
    assert_eq!(
        (second["type"].as_str(), second["lastEventId"].as_u64()),
        (Some("sync_complete"), Some(head + 1))
    );
    Ok(())
}

/// The id of the user with `email` in the caller's tenant.
async fn user_id(hub: &TestHub, token: &str, email: &str) -> Result<String> {
    let (status, list) = hub
        .as_(Some(token), "GET", "/api/admin/users", None)
        .await?;
    anyhow::ensure!(status == 200, "{list}");
    list["data"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["name"] == email)
        .and_then(|u| u["id"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("{email} in {list}"))
}

#[tokio::test]
async fn owners_and_admins_change_users_and_the_change_ends_their_sessions() -> Result<()> {
    // Heartbeats often, so that an open socket of the changed user closes soon.
    let w = world_with(|c| c.server.ping_interval = Duration::from_millis(300)).await?;
    let hub = &w.hub;
    let owner = user(hub, "o@a.test", "owner", None, None).await?;
    let manager_id = user_id(hub, &w.admin, "m@a.test").await?;
    let admin_id = user_id(hub, &w.admin, "admin@a.test").await?;
    let owner_id = user_id(hub, &w.admin, "o@a.test").await?;
    let patch = |token: &str, id: &str, body: Value| {
        let (token, path) = (token.to_owned(), format!("/api/admin/users/{id}"));
        async move { hub.as_(Some(&token), "PATCH", &path, Some(body)).await }
    };

    let mut socket = Client::connect(&hub.ws_with(&w.manager, "")).await?;
    // An admin demotes the manager to a cashier of s2, through the SDK.
    let change = stocky_core::api::UserUpdate {
        role: Some(stocky_core::auth::Role::Cashier),
        site_id: Some(Some("s2".into())),
        ..Default::default()
    };
    let view = hub
        .sdk_with(&w.admin)
        .update_user(&manager_id, &change)
        .await?;
    assert_eq!(
        (
            view.role,
            view.site_id.as_deref(),
            view.disabled,
            view.email.as_str()
        ),
        (
            stocky_core::auth::Role::Cashier,
            Some("s2"),
            false,
            "m@a.test"
        )
    );
    // The old token carried the old grant: it is gone, and a new sign-in has the new one.
    let (status, _) = hub.as_(Some(&w.manager), "GET", "/api/stock", None).await?;
    assert_eq!(status, 401, "the demoted manager's token");
    match socket.until_end().await?.0 {
        Ended::Closed(Some((code, reason))) => {
            assert_eq!(u16::from(code), 1008, "{reason}");
        }
        other => panic!("expected close 1008, got {other:?}"),
    }
    let (_, grant) = hub.login("m@a.test", PW).await?;
    assert_eq!(
        (
            grant["user"]["role"].as_str(),
            grant["user"]["siteId"].as_str()
        ),
        (Some("cashier"), Some("s2"))
    );

    // What an admin may not do.
    for (id, body, status, code) in [
        (&admin_id, json!({"role": "manager"}), 403, "forbidden"), // itself
        (&owner_id, json!({"disabled": true}), 403, "forbidden"),  // an owner
        (&manager_id, json!({"role": "owner"}), 403, "forbidden"), // grant the role
        (&manager_id, json!({"siteId": "nowhere"}), 404, "not_found"),
        // A field this route does not take.
        (
            &manager_id,
            json!({"password": "a new password!"}),
            422,
            "invalid_json",
        ),
        (
            &"no-such-user".to_owned(),
            json!({"disabled": true}),
            404,
            "not_found",
        ),
    ] {
        let (got, answer) = patch(&w.admin, id, body.clone()).await?;
        let got_code = answer["error"]["code"].as_str().unwrap_or_default();
        assert_eq!((got, got_code), (status, code), "{body}: {answer}");
    }
    let (status, _) = patch(&w.cashier1, &manager_id, json!({"disabled": true})).await?;
    assert_eq!(status, 403, "a cashier manages nobody");
    let (status, _) = patch(&w.b_owner, &manager_id, json!({"disabled": true})).await?;
    assert_eq!(status, 404, "another tenant's owner does not see the user");
    let (_, grant) = hub.login("m@a.test", PW).await?;
    assert_eq!(
        grant["user"]["role"], "cashier",
        "nothing above changed the user"
    );

    // The owner disables the admin: its token and sign-ins are refused, until re-enabled.
    let (status, answer) = patch(&owner, &admin_id, json!({"disabled": true})).await?;
    assert_eq!(
        (status, answer["disabled"].as_bool()),
        (200, Some(true)),
        "{answer}"
    );
    let (status, _) = hub.as_(Some(&w.admin), "GET", "/api/stock", None).await?;
    assert_eq!(status, 401);
    let (status, _) = hub
        .call(
            "POST",
            "/api/auth/login",
            Some(json!({"email":"admin@a.test","password":PW})),
            &[],
        )
        .await?;
    assert_eq!(status, 401, "a disabled user cannot sign in");
    let (_, list) = hub
        .as_(Some(&owner), "GET", "/api/admin/users", None)
        .await?;
    assert!(
        list["data"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|u| u["name"] == "admin@a.test" && u["revoked"] == true),
        "{list}"
    );
    let (status, _) = patch(
        &owner,
        &admin_id,
        json!({"disabled": false, "modules": null}),
    )
    .await?;
    assert_eq!(status, 200);
    hub.login("admin@a.test", PW).await?;

    // Every change is audited, without secrets.
    let (_, audit) = hub
        .as_(Some(&owner), "GET", "/api/audit?entityType=user", None)
        .await?;
    let actions = audit.to_string();
    assert!(actions.contains("user:update"), "{audit}");
    Ok(())
}

#[tokio::test]
async fn user_changes_are_announced_to_the_sites_managers_and_nobody_else() -> Result<()> {
    let w = world().await?;
    let hub = &w.hub;
    let mut manager = Client::connect(&hub.ws_with(&w.manager, "")).await?;
    let mut cashier = Client::connect(&hub.ws_with(&w.cashier2, "")).await?; // site s2
    let mut other_tenant = Client::connect(&hub.ws_with(&w.b_owner, "")).await?;
    let (status, created) = hub
        .as_(
            Some(&w.admin),
            "POST",
            "/api/admin/users",
            Some(json!({"email": "new@a.test", "password": PW, "role": "cashier", "siteId": "s2"})),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let event = manager.next_event().await?;
    assert_eq!(
        (event["event"].as_str(), &event["data"]),
        (Some("user:changed"), &json!({"userId": created["userId"]})),
        "{event}"
    );
    // A cashier of the site and another tenant hear their next event, not this one.
    let add = json!({"additions": [{"productId": 7, "quantity": 1}]});
    hub.as_(
        Some(&w.admin),
        "POST",
        "/api/stock/add?siteId=s2",
        Some(add.clone()),
    )
    .await?;
    assert_eq!(cashier.next_event().await?["event"], "stock:add");
    hub.as_(Some(&w.b_owner), "POST", "/api/stock/add", Some(add))
        .await?;
    assert_eq!(other_tenant.next_event().await?["event"], "stock:add");
    // Nobody else may publish it.
    let (status, _) = hub
        .as_(
            Some(&w.admin),
            "POST",
            "/api/events",
            Some(json!({"type": "user:changed", "data": {}})),
        )
        .await?;
    assert_eq!(status, 400);
    Ok(())
}

#[tokio::test]
async fn passwords_change_with_the_current_one_or_by_an_admin_and_end_other_sessions() -> Result<()>
{
    let w = world_with(|c| c.server.login_failures = 3).await?;
    let hub = &w.hub;
    let (second, _) = hub.login("m@a.test", PW).await?;
    let own = |token: &str, current: &str, new: &str| {
        let (token, body) = (
            token.to_owned(),
            json!({"currentPassword": current, "newPassword": new}),
        );
        async move {
            hub.as_(Some(&token), "POST", "/api/auth/password", Some(body))
                .await
        }
    };
    let (status, answer) = own(&w.manager, "not the password", "a brand new password").await?;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (403, Some("wrong_password"))
    );
    let (status, answer) = own(&w.manager, PW, "short").await?;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("weak_password"))
    );
    // Through the SDK: this session stays, the other one ends.
    hub.sdk_with(&w.manager)
        .change_password(PW, "a brand new password")
        .await?;
    assert_eq!(
        hub.as_(Some(&w.manager), "GET", "/api/stock", None)
            .await?
            .0,
        200
    );
    assert_eq!(
        hub.as_(Some(&second), "GET", "/api/stock", None).await?.0,
        401
    );
    let (status, _) = hub
        .call(
            "POST",
            "/api/auth/login",
            Some(json!({"email":"m@a.test","password":PW})),
            &[],
        )
        .await?;
    assert_eq!(status, 401, "the old password");
    hub.login("m@a.test", "a brand new password").await?;

    // Not for credentials without a password.
    let (status, answer) = hub
        .post(
            "/api/auth/password",
            json!({"currentPassword": PW, "newPassword": "a brand new password"}),
        )
        .await?;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("not_a_session")),
        "the operator's token"
    );

    // An admin sets the cashier's password: the cashier's sessions end.
    let cashier = user_id(hub, &w.admin, "c1@a.test").await?;
    let view = hub
        .sdk_with(&w.admin)
        .reset_user_password(&cashier, "set by the admin")
        .await?;
    assert_eq!(view.email, "c1@a.test");
    assert_eq!(
        hub.as_(Some(&w.cashier1), "GET", "/api/stock", None)
            .await?
            .0,
        401
    );
    hub.login("c1@a.test", "set by the admin").await?;
    let path = format!("/api/admin/users/{cashier}/password");
    let (status, _) = hub
        .as_(
            Some(&w.b_owner),
            "POST",
            &path,
            Some(json!({"password": "another tenant's try"})),
        )
        .await?;
    assert_eq!(status, 404, "another tenant");
    let admin = user_id(hub, &w.admin, "admin@a.test").await?;
    let (status, _) = hub
        .as_(
            Some(&w.admin),
            "POST",
            &format!("/api/admin/users/{admin}/password"),
            Some(json!({"password": "without the current one"})),
        )
        .await?;
    assert_eq!(status, 403, "one's own password needs the current one");

    // Wrong current passwords count as failed logins: past the limit, 429.
    let (fresh, _) = hub.login("m@a.test", "a brand new password").await?;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            own(&fresh, "still not it", "a brand new password 2")
                .await?
                .0,
        );
    }
    assert_eq!(statuses, vec![403, 403, 403, 429]);
    Ok(())
}

#[tokio::test]
async fn dev_mode_opens_access_only_on_loopback() -> Result<()> {
    let dir = support::data_dir()?;
    let mut config = support::config(&dir);
    config.server.dev = true;
    config.server.listen = "0.0.0.0:0".parse()?;
    let refused = stocky_hub::Hub::start(config).await;
    assert!(matches!(
        refused,
        Err(stocky_hub::HubError::Gateway(
            stocky_server::GatewayError::Config(_)
        ))
    ));
    let hub = TestHub::start_with(|c| c.server.dev = true).await?;
    assert_eq!(hub.as_(None, "GET", "/api/stock", None).await?.0, 200);
    Ok(())
}
