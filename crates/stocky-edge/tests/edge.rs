//! A real hub and a real edge on port 0 with temp dirs: activation, selling with the hub
//! down, draining when it is back, and the per-operation answers of a push.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use stocky_client::api::NewApiKey;
use stocky_client::{Client, Start, SubscribeOptions, Subscription, Update};
use stocky_core::auth::Role;
use stocky_core::stock::{StockCommand, StockLine, StockOp};
use stocky_edge::{Edge, EdgeOptions};
use stocky_test_support::{TestHub, ADMIN, WAIT};

const EDGE_ADMIN: &str = "edge-operator-token";

/// A site at the hub, a code for it, and a manager key of that site (the hub's own view).
async fn site_with_code(hub: &TestHub, site: &str) -> Result<(String, Client)> {
    let sdk = hub.sdk();
    let (status, _) = sdk
        .call("POST", "/api/admin/sites", Some(&json!({"id": site})), &[])
        .await?;
    anyhow::ensure!(status == 201, "site: {status}");
    let code = new_code(hub, site, None).await?;
    let key = sdk
        .create_api_key(&NewApiKey {
            name: format!("{site}-manager"),
            role: Role::Manager,
            site_id: Some(site.into()),
            modules: None,
        })
        .await?;
    let key = key["key"].as_str().context("a key")?.to_owned();
    Ok((code, hub.sdk_with(&key)))
}

async fn new_code(hub: &TestHub, site: &str, ttl_secs: Option<u64>) -> Result<String> {
    let body = ttl_secs.map(|t| json!({"ttlSecs": t}));
    let (status, answer) = hub
        .sdk()
        .call(
            "POST",
            &format!("/api/admin/sites/{site}/activation-codes"),
            body.as_ref(),
            &[],
        )
        .await?;
    anyhow::ensure!(status == 201, "code: {status} {answer}");
    let code = answer["code"].as_str().context("a code")?.to_owned();
    anyhow::ensure!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );
    Ok(code)
}

async fn start_edge(dir: &std::path::Path) -> Result<(Edge, Client)> {
    let mut options = EdgeOptions::for_data_dir(dir);
    options.listen = "127.0.0.1:0".parse()?;
    options.admin_token = Some(stocky_server::config::Secret(EDGE_ADMIN.into()));
    let edge = Edge::start(options).await?;
    let client = Client::new(&format!("http://{}", edge.local_addr()))?.with_token(EDGE_ADMIN);
    Ok((edge, client))
}

async fn eventually<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn activation_works_once_and_refuses_used_expired_revoked_and_wrong_codes() -> Result<()> {
    let hub = TestHub::start().await?;
    let (code, _) = site_with_code(&hub, "north").await?;
    let dir = tempfile::tempdir()?;
    let config = stocky_edge::activate(
        &hub.http,
        &code,
        Some("till room"),
        dir.path(),
        |_, _, _| {},
    )
    .await?;
    assert_eq!(
        (config.tenant_id.as_str(), config.site_id.as_str()),
        ("default", "north")
    );
    assert!(config.api_key.starts_with("sk_"));
    assert!(
        !format!("{config:?}").contains(&config.api_key),
        "the key never reaches Debug"
    );
    // the device is registered at the hub
    let devices = hub.sdk().devices().await?;
    assert!(devices.to_string().contains(&config.device_id), "{devices}");
    // activating the same dir again is refused locally
    let again = stocky_edge::activate(&hub.http, &code, None, dir.path(), |_, _, _| {}).await;
    assert!(again
        .unwrap_err()
        .to_string()
        .contains("already holds an activated edge"));

    let refused = |code: String| {
        let http = hub.http.clone();
        async move {
            let dir = tempfile::tempdir()?;
            let e = stocky_edge::activate(&http, &code, None, dir.path(), |_, _, _| {})
                .await
                .expect_err("refused");
            assert!(
                !stocky_edge::EdgeConfig::path(dir.path()).exists(),
                "nothing activated"
            );
            anyhow::Ok(e.to_string())
        }
    };
    assert!(refused(code.clone())
        .await?
        .contains("activation_code_used"));
    let wrong = if code == "000000" { "000001" } else { "000000" };
    assert!(refused(wrong.into())
        .await?
        .contains("activation_code_unknown"));
    assert!(refused("12ab".into()).await?.contains("invalid_code"));
    let revoked = new_code(&hub, "north", None).await?;
    let (status, _) = hub
        .sdk()
        .call(
            "DELETE",
            &format!("/api/admin/sites/north/activation-codes/{revoked}"),
            None,
            &[],
        )
        .await?;
    assert_eq!(status, 200);
    assert!(refused(revoked).await?.contains("activation_code_revoked"));
    let short = new_code(&hub, "north", Some(1)).await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(refused(short).await?.contains("activation_code_expired"));
    // another tenant's admin cannot draw codes for this tenant's site
    let (status, _) = hub
        .as_(
            None,
            "POST",
            "/api/admin/sites/north/activation-codes",
            None,
        )
        .await?;
    assert_eq!(status, 401);
    Ok(())
}

async fn connected(sub: &mut Subscription) -> Result<()> {
    loop {
        match tokio::time::timeout(WAIT, sub.next())
            .await?
            .context("ended")??
        {
            Update::Connected(_) => return Ok(()),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn an_edge_sells_with_the_hub_down_and_drains_when_it_is_back() -> Result<()> {
    let mut hub = TestHub::start().await?;
    let (code, north) = site_with_code(&hub, "north").await?;
    north.update_stock(&[(1, 2000)]).await?;
    let dir = tempfile::tempdir()?;
    stocky_edge::activate(&hub.http, &code, None, dir.path(), |_, _, _| {}).await?;
    let (edge, local) = start_edge(dir.path()).await?;
    assert_eq!(local.stock_of(1).await?.context("snapshot")?.stock, 2000);

    hub.stop().await?;
    let mut r1 = local.subscribe(SubscribeOptions::new(Start::Now).device("r1"));
    let mut r2 = local.subscribe(SubscribeOptions::new(Start::Now).device("r2"));
    connected(&mut r1).await?;
    connected(&mut r2).await?;
    let sale = StockCommand {
        op: StockOp::Subtract,
        lines: vec![StockLine {
            product_id: 1,
            amount: 1,
        }],
    };
    for _ in 0..500 {
        r1.send(&sale, None).await?;
        r2.send(&sale, None).await?;
    }
    // Both registers see all 1,000 sales live: their own as Applied, the other's as Event.
    for register in [&mut r1, &mut r2] {
        let (mut own, mut others) = (0, 0);
        while own + others < 1000 {
            match tokio::time::timeout(WAIT, register.next())
                .await?
                .context("ended")??
            {
                Update::Applied(_) => own += 1,
                Update::Event(_) => others += 1,
                Update::Rejected(e) => bail!("refused: {e:?}"),
                _ => {}
            }
        }
        assert_eq!((own, others), (500, 500));
    }
    assert_eq!(local.stock_of(1).await?.context("stock")?.stock, 1000);
    eventually("the edge to notice the hub is away", || async {
        let status: Value = local.get("/api/sync/status").await?;
        anyhow::ensure!(status["pending"] == 1000, "{status}");
        Ok(status["isConnected"] == false && status["lastError"].is_string())
    })
    .await?;

    hub.restart_with(|_| {}).await?;
    eventually("the outbox to drain", || async {
        let status: Value = local.get("/api/sync/status").await?;
        Ok(status["pending"] == 0 && status["isConnected"] == true)
    })
    .await?;
    assert_eq!(north.stock_of(1).await?.context("hub stock")?.stock, 1000);
    // Nothing applied twice: the hub's ledger has the set and exactly 1,000 sales.
    let ledger: Value = hub.sdk().backup("_stock").await?;
    let movements = ledger["backup"]["movements"]
        .as_array()
        .context("movements")?;
    let north_moves: Vec<&Value> = movements
        .iter()
        .filter(|m| m["siteId"] == "north")
        .collect();
    assert_eq!(north_moves.len(), 1001);
    let sum: i64 = north_moves
        .iter()
        .map(|m| m["delta"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(sum, 1000, "hub stock = ledger sum");
    edge.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_poison_operation_is_quarantined_and_the_49_behind_it_apply() -> Result<()> {
    let hub = TestHub::start().await?;
    let (code, north) = site_with_code(&hub, "north").await?;
    // At the hub: one request, 50 operations, one of them invalid.
    let mut operations: Vec<Value> = (0..50)
        .map(|i| json!({"id": format!("op-{i}"), "productId": 7, "delta": -1, "kind": "sale"}))
        .collect();
    operations[3]["delta"] = json!(0);
    let body = json!({"sedeId": "north", "operations": operations});
    let (status, answer) = north
        .call("POST", "/api/sync/push", Some(&body), &[])
        .await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["applied"].clone(), answer["rejected"].clone()),
        (json!(49), json!(1))
    );
    assert_eq!(answer["results"][3]["status"], "rejected");
    assert!(answer["results"][3]["reason"]
        .as_str()
        .unwrap_or("")
        .contains("delta"));
    // a replay is all duplicates, and stock may go below zero: sales are facts
    let (_, again) = north
        .call("POST", "/api/sync/push", Some(&body), &[])
        .await?;
    assert_eq!(again["duplicates"], 49);
    assert_eq!(north.stock_of(7).await?.context("stock")?.stock, -49);
    // another site's operations are not this key's to push
    let (status, _) = north
        .call(
            "POST",
            "/api/sync/push",
            Some(&json!({"siteId": "default", "operations": []})),
            &[],
        )
        .await?;
    assert_eq!(status, 403);

    // At an edge: a movement the hub refuses goes to the quarantine, the rest go through.
    let dir = tempfile::tempdir()?;
    stocky_edge::activate(&hub.http, &code, None, dir.path(), |_, _, _| {}).await?;
    let (edge, local) = start_edge(dir.path()).await?;
    let poison = json!({"backup": {"movements": [
        {"id": "poison-1", "siteId": "default", "productId": 9, "delta": 2,
         "kind": "a-kind-name-far-longer-than-the-hub-accepts",
         "serverTime": "2026-01-01T00:00:00.000Z"}
    ]}});
    let (status, answer) = local
        .call("POST", "/api/backup/_stock/restore", Some(&poison), &[])
        .await?;
    assert_eq!(status, 200, "{answer}");
    local.add_stock(&[(9, 5)]).await?;
    eventually("the push", || async {
        let status: Value = local.get("/api/sync/status").await?;
        Ok(status["pending"] == 0 && status["quarantined"] == 1)
    })
    .await?;
    assert_eq!(north.stock_of(9).await?.context("pushed")?.stock, 5);
    // The quarantine is visible, a retry the hub still refuses stays, a discard takes the
    // movement's delta back out locally so both sides agree again.
    let listed: Value = local.get("/api/sync/quarantine").await?;
    assert_eq!(listed["count"], 1, "{listed}");
    assert_eq!(listed["data"][0]["opId"], "poison-1");
    assert!(
        listed["data"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("kind"),
        "{listed}"
    );
    let (status, retried) = local
        .call("POST", "/api/sync/quarantine/poison-1/retry", None, &[])
        .await?;
    assert_eq!(
        (status, retried["success"].clone()),
        (200, json!(false)),
        "{retried}"
    );
    assert_eq!(local.stock_of(9).await?.context("local")?.stock, 7);
    let (status, _) = local
        .call("DELETE", "/api/sync/quarantine/poison-1", None, &[])
        .await?;
    assert_eq!(status, 200);
    assert_eq!(local.stock_of(9).await?.context("local")?.stock, 5);
    let listed: Value = local.get("/api/sync/quarantine").await?;
    assert_eq!(listed["count"], 0);
    let (status, _) = local
        .call("DELETE", "/api/sync/quarantine/poison-1", None, &[])
        .await?;
    assert_eq!(status, 404);
    edge.stop().await?;
    let _ = ADMIN;
    Ok(())
}

#[tokio::test]
async fn hub_changes_reach_the_edge_and_partitioned_deltas_both_count() -> Result<()> {
    let mut hub = TestHub::start().await?;
    let (code, north) = site_with_code(&hub, "north").await?;
    north.update_stock(&[(1, 100)]).await?;
    let dir = tempfile::tempdir()?;
    stocky_edge::activate(&hub.http, &code, None, dir.path(), |_, _, _| {}).await?;
    let (edge, local) = start_edge(dir.path()).await?;
    // live: a change at the hub reaches the edge and its registers
    let mut register = local.subscribe(SubscribeOptions::new(Start::Now).device("r1"));
    connected(&mut register).await?;
    north.add_stock(&[(1, 10)]).await?;
    eventually("the hub's +10 at the edge", || async {
        Ok(local.stock_of(1).await?.map(|r| r.stock) == Some(110))
    })
    .await?;
    let seen = loop {
        match tokio::time::timeout(WAIT, register.next())
            .await?
            .context("ended")??
        {
            Update::Event(e) => break e,
            _ => continue,
        }
    };
    assert_eq!(seen.stock_changes().context("stock")?[0].stock, 110);
    drop(register);

    // partitioned: the hub changes while the edge is away, the edge while the hub is away
    edge.stop().await?;
    north.add_stock(&[(1, 5)]).await?;
    hub.stop().await?;
    let (edge, local) = start_edge(dir.path()).await?;
    local.subtract_stock(&[(1, 3)]).await?;
    assert_eq!(local.stock_of(1).await?.context("stock")?.stock, 107);
    hub.restart_with(|_| {}).await?;
    eventually("both sides to agree", || async {
        let at_edge = local.stock_of(1).await?.map(|r| r.stock);
        let at_hub = north.stock_of(1).await?.map(|r| r.stock);
        Ok(at_edge == Some(112) && at_hub == Some(112))
    })
    .await?;
    edge.stop().await?;
    Ok(())
}

#[tokio::test]
async fn sync_and_activation_routes_stay_inside_their_tenant() -> Result<()> {
    let hub = TestHub::start().await?;
    let (_code, north) = site_with_code(&hub, "north").await?;
    north.add_stock(&[(1, 3)]).await?;
    let (status, _) = hub
        .call(
            "POST",
            "/api/admin/tenants",
            Some(json!({"id": "acme", "owner": {"email": "o@acme.test", "password": "a long password"}})),
            &[],
        )
        .await?;
    assert_eq!(status, 201);
    let (token, _) = hub.login("o@acme.test", "a long password").await?;
    let acme = hub.sdk_with(&token);
    // acme has no site "north": it cannot draw codes for it, push to it, or read it
    let (status, _) = acme
        .call("POST", "/api/admin/sites/north/activation-codes", None, &[])
        .await?;
    assert_eq!(status, 404);
    let push =
        json!({"siteId": "north", "operations": [{"id": "x-1", "productId": 1, "delta": 5}]});
    let (status, _) = acme
        .call("POST", "/api/sync/push", Some(&push), &[])
        .await?;
    assert_eq!(status, 404);
    let (status, pulled) = acme
        .call(
            "POST",
            "/api/sync/pull",
            Some(&json!({"siteId": "north"})),
            &[],
        )
        .await?;
    assert_eq!(status, 404, "no site north in this tenant: {pulled}");
    let (status, pulled) = acme
        .call("POST", "/api/sync/pull", Some(&json!({})), &[])
        .await?;
    assert_eq!(status, 200);
    assert_eq!(
        pulled["movements"],
        json!([]),
        "nothing of the other tenant"
    );
    // nor its documents, nor may it push into them
    hub.sdk()
        .put_document("pos", "products", "secret", &json!({"cost": 1}), None)
        .await?;
    let (_, pulled) = acme
        .call(
            "POST",
            "/api/sync/pull",
            Some(&json!({"documentsCursor": {}})),
            &[],
        )
        .await?;
    assert_eq!(pulled["documents"], json!([]), "{pulled}");
    let record =
        json!({"id": "secret", "version": 9, "updated_at": "2030-01-01T00:00:00Z", "cost": 0});
    let push = json!({"operations": [{"id": "d-1", "type": "document", "db": "pos", "store": "products", "record": record}]});
    let (_, answer) = acme
        .call("POST", "/api/sync/push", Some(&push), &[])
        .await?;
    assert_eq!(answer["results"][0]["status"], "applied", "{answer}");
    let mine = hub.sdk().document("pos", "products", "secret").await?;
    assert_eq!(
        mine.context("record")?["data"]["cost"],
        1,
        "the default tenant's copy is untouched"
    );
    // while the tenant's own key sees its movement
    let (_, own) = north
        .call("POST", "/api/sync/pull", Some(&json!({})), &[])
        .await?;
    assert_eq!(own["movements"].as_array().map(Vec::len), Some(1), "{own}");
    assert_eq!(north.stock_of(1).await?.context("stock")?.stock, 3);
    // movement ids are per tenant: an id of the other tenant's ledger is a new movement of
    // this one (neither a duplicate, which would reveal it exists, nor a refusal)
    let taken = own["movements"][0]["id"].as_str().context("an id")?;
    let push = json!({"operations": [{"id": taken, "productId": 1, "delta": 5}]});
    let (status, answer) = acme
        .call("POST", "/api/sync/push", Some(&push), &[])
        .await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["status"], "applied", "{answer}");
    assert_eq!(acme.stock_of(1).await?.context("acme stock")?.stock, 5);
    assert_eq!(north.stock_of(1).await?.context("stock")?.stock, 3);
    Ok(())
}

/// Random interleavings (seeded, so a failure names its seed) of local sales and receipts,
/// hub commands, hub restarts and edge restarts: at the end every node equals the hub's
/// ledger.
#[tokio::test]
async fn random_interleavings_converge_on_the_hub_ledger() -> Result<()> {
    for seed in [7u64, 1234, 99_991] {
        converge(seed)
            .await
            .with_context(|| format!("seed {seed}"))?;
    }
    Ok(())
}

async fn converge(seed: u64) -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut hub = TestHub::start().await?;
    let (code, north) = site_with_code(&hub, "north").await?;
    north.update_stock(&[(1, 50), (2, 50), (3, 50)]).await?;
    let dir = tempfile::tempdir()?;
    stocky_edge::activate(&hub.http, &code, None, dir.path(), |_, _, _| {}).await?;
    let (first, mut local) = start_edge(dir.path()).await?;
    let mut edge = Some(first);
    let mut hub_up = true;
    for _ in 0..40 {
        let product = rng.i64(1..=3);
        let amount = rng.i64(1..=5);
        match rng.u8(0..10) {
            0..=2 if edge.is_some() => {
                // a refused sale (not enough stock here) changes nothing anywhere
                let _ = local.subtract_stock(&[(product, amount)]).await;
            }
            3 if edge.is_some() => {
                local.add_stock(&[(product, amount)]).await?;
            }
            4..=5 if hub_up => {
                if rng.bool() {
                    north.add_stock(&[(product, amount)]).await?;
                } else {
                    let _ = north.subtract_stock(&[(product, amount)]).await;
                }
            }
            6 if hub_up => {
                hub.stop().await?;
                hub_up = false;
            }
            6 => {
                hub.restart_with(|_| {}).await?;
                hub_up = true;
            }
            7 => match edge.take() {
                Some(running) if rng.bool() => running.stop().await?,
                Some(running) => edge = Some(running),
                None => {
                    let (started, client) = start_edge(dir.path()).await?;
                    (edge, local) = (Some(started), client);
                }
            },
            _ => tokio::time::sleep(Duration::from_millis(rng.u64(0..30))).await,
        }
    }
    if !hub_up {
        hub.restart_with(|_| {}).await?;
    }
    if edge.is_none() {
        let (started, client) = start_edge(dir.path()).await?;
        (edge, local) = (Some(started), client);
    }
    // Wake a pull for whatever the hub did last, then wait for both sides to agree.
    local.add_stock(&[(1, 1)]).await?;
    eventually("the nodes to converge", || async {
        let status: Value = local.get("/api/sync/status").await?;
        if status["pending"] != 0 {
            return Ok(false);
        }
        for product in 1..=3 {
            let at_hub = north.stock_of(product).await?.map(|r| r.stock);
            if local.stock_of(product).await?.map(|r| r.stock) != at_hub {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;
    let ledger: Value = hub.sdk().backup("_stock").await?;
    for product in 1..=3 {
        let sum: i64 = ledger["backup"]["movements"]
            .as_array()
            .context("movements")?
            .iter()
            .filter(|m| m["siteId"] == "north" && m["productId"] == product)
            .filter_map(|m| m["delta"].as_i64())
            .sum();
        assert_eq!(
            north.stock_of(product).await?.map(|r| r.stock),
            Some(sum),
            "product {product}"
        );
    }
    if let Some(edge) = edge {
        edge.stop().await?;
    }
    Ok(())
}

fn user(email: &str, role: Role, site: Option<&str>) -> stocky_client::api::NewUser {
    stocky_client::api::NewUser {
        email: email.into(),
        password: "a long password".into(),
        role,
        site_id: site.map(Into::into),
        modules: None,
    }
}

#[tokio::test]
async fn the_sites_users_sign_in_at_the_edge_offline_and_follow_the_hub() -> Result<()> {
    let mut hub = TestHub::start().await?;
    let (code, north_key) = site_with_code(&hub, "north").await?;
    north_key.update_stock(&[(1, 10)]).await?;
    let sdk = hub.sdk();
    sdk.create_user(&user("cashier@north.test", Role::Cashier, Some("north")))
        .await?;
    sdk.create_user(&user("boss@shop.test", Role::Admin, None))
        .await?;
    sdk.create_site(&stocky_client::api::NewSite {
        id: "south".into(),
        name: None,
    })
    .await?;
    sdk.create_user(&user("cashier@south.test", Role::Cashier, Some("south")))
        .await?;
    // Password hashes go to device credentials only, whatever the caller's role.
    let (status, _) = north_key.call("GET", "/api/sync/users", None, &[]).await?;
    assert_eq!(status, 403, "an ordinary key of the site");
    let (status, _) = sdk.call("GET", "/api/sync/users", None, &[]).await?;
    assert_eq!(status, 403, "the hub's operator");

    let dir = tempfile::tempdir()?;
    let mut steps = Vec::new();
    let config = stocky_edge::activate(&hub.http, &code, None, dir.path(), |done, total, _| {
        steps.push((done, total))
    })
    .await?;
    assert_eq!(steps.last(), Some(&(5, 5)));
    let device = hub.sdk_with(&config.api_key);
    let listed = device.site_users().await?;
    assert_eq!(listed.site_id, "north");
    assert_eq!(
        listed
            .users
            .iter()
            .map(|u| u.email.as_str())
            .collect::<Vec<_>>(),
        vec!["cashier@north.test"],
        "only the site's own users"
    );
    assert!(
        !format!("{listed:?}").contains("argon2"),
        "hashes stay out of Debug"
    );

    let (edge, _) = start_edge(dir.path()).await?;
    let at_edge = format!("http://{}", edge.local_addr());
    hub.stop().await?;
    // Users are the hub's: the edge refuses to create its own (the mirror would drop them).
    let (status, refused) = Client::new(&at_edge)?
        .with_token(EDGE_ADMIN)
        .call(
            "POST",
            "/api/admin/users",
            Some(&json!({"email": "local@north.test", "password": "a long password", "role": "cashier"})),
            &[],
        )
        .await?;
    assert_eq!(
        (status, refused["error"]["code"].clone()),
        (409, json!("managed_upstream"))
    );
    // The hub is away: the cashier signs in at the edge with the hub password and sells.
    let cashier = Client::new(&at_edge)?;
    let grant = cashier
        .login("cashier@north.test", "a long password")
        .await?;
    assert_eq!(grant.user.role, Role::Cashier);
    // Nor are they changed here: not by an admin, not their own password.
    let (status, refused) = Client::new(&at_edge)?
        .with_token(EDGE_ADMIN)
        .call(
            "PATCH",
            &format!("/api/admin/users/{}", grant.user.user_id),
            Some(&json!({"disabled": true})),
            &[],
        )
        .await?;
    assert_eq!(
        (status, refused["error"]["code"].clone()),
        (409, json!("managed_upstream"))
    );
    let refused = cashier
        .change_password("a long password", "another long password")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("managed_upstream"));
    cashier.subtract_stock(&[(1, 3)]).await?;
    assert_eq!(cashier.stock_of(1).await?.context("stock")?.stock, 7);
    let refused = cashier.update_stock(&[(1, 100)]).await.unwrap_err();
    assert_eq!(refused.status(), Some(403), "roles hold at the edge");
    for (email, password) in [
        ("cashier@north.test", "wrong password!"),
        ("boss@shop.test", "a long password"),
        ("cashier@south.test", "a long password"),
    ] {
        let e = Client::new(&at_edge)?
            .login(email, password)
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(401), "{email}");
    }

    // Back online: a user added at the hub reaches the edge (cloud wins), and the sale is
    // logged as a push in the sync log.
    hub.restart_with(|_| {}).await?;
    hub.sdk()
        .create_user(&user("late@north.test", Role::Manager, Some("north")))
        .await?;
    edge.stop().await?; // a restart refreshes the users at once
    let (edge, local) = start_edge(dir.path()).await?;
    let at_edge = format!("http://{}", edge.local_addr());
    eventually("the new user at the edge", || {
        let at_edge = at_edge.clone();
        async move {
            Ok(Client::new(&at_edge)?
                .login("late@north.test", "a long password")
                .await
                .is_ok())
        }
    })
    .await?;
    // A user disabled at the hub is refused at the edge within moments (the hub announces
    // `user:changed`; the edge's own refresh runs only every minute at the most).
    let late = hub.sdk().users().await?;
    let late_id = late["data"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["name"] == "late@north.test")
        .and_then(|u| u["id"].as_str())
        .context("late@north.test")?
        .to_owned();
    let disable = stocky_core::api::UserUpdate {
        disabled: Some(true),
        ..Default::default()
    };
    hub.sdk().update_user(&late_id, &disable).await?;
    eventually("the disabled user refused at the edge", || {
        let at_edge = at_edge.clone();
        async move {
            Ok(Client::new(&at_edge)?
                .login("late@north.test", "a long password")
                .await
                .is_err_and(|e| e.status() == Some(401)))
        }
    })
    .await?;
    eventually("the sale at the hub", || async {
        Ok(north_key.stock_of(1).await?.map(|r| r.stock) == Some(7))
    })
    .await?;
    // The round is logged when all of it is answered, a moment after the hub applied the sale.
    eventually("the push in the sync log", || async {
        let log: Value = local.get("/api/sync/log").await?;
        let rows = log["data"].as_array().context("rows")?;
        Ok(rows
            .iter()
            .any(|r| r["type"] == "push" && r["status"] == "success" && r["recordsAffected"] == 1))
    })
    .await?;
    let log: Value = local.get("/api/sync/log").await?;
    let rows = log["data"].as_array().context("rows")?;
    assert!(rows.iter().any(|r| r["type"] == "users"), "{log}");
    edge.stop().await?;
    Ok(())
}

async fn next_event(sub: &mut Subscription, name: &str) -> Result<Value> {
    loop {
        match tokio::time::timeout(WAIT, sub.next())
            .await?
            .context("ended")??
        {
            Update::Event(e) if e.event == name => return Ok(e.data),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn admins_see_each_site_online_synced_and_below_zero() -> Result<()> {
    let hub = TestHub::start().await?;
    let (code, north_key) = site_with_code(&hub, "north").await?;
    let mut admin = hub.sdk().subscribe(SubscribeOptions::new(Start::Now));
    connected(&mut admin).await?;
    let mut manager = north_key.subscribe(SubscribeOptions::new(Start::Now).device("m"));
    connected(&mut manager).await?;
    let site = |sites: &Value| -> Value {
        sites["data"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["id"] == "north").cloned())
            .unwrap_or_default()
    };
    let before = site(&hub.sdk().sites().await?);
    assert_eq!(
        (before["isOnline"].clone(), before["lastSyncAt"].clone()),
        (json!(false), Value::Null)
    );

    let dir = tempfile::tempdir()?;
    let config = stocky_edge::activate(&hub.http, &code, None, dir.path(), |_, _, _| {}).await?;
    let (edge, local) = start_edge(dir.path()).await?;
    let online = next_event(&mut admin, "site:status").await?;
    assert_eq!(online["siteId"], "north");
    assert_eq!(online["deviceId"], config.device_id.as_str());
    assert_eq!(online["isOnline"], true);
    local.add_stock(&[(5, 2)]).await?;
    eventually("the push and pull marks", || async {
        let north = site(&hub.sdk().sites().await?);
        Ok(north["isOnline"] == true
            && north["lastPingAt"].is_string()
            && north["lastSyncAt"].is_string()
            && north["syncVersion"].as_u64() > Some(0))
    })
    .await?;

    // A sale pushed from the store takes stock below zero: applied, and admins are told.
    let push =
        json!({"operations": [{"id": "neg-1", "productId": 9, "delta": -4, "kind": "sale"}]});
    let answer: Value = hub
        .sdk_with(&config.api_key)
        .post("/api/sync/push", &push)
        .await?;
    assert_eq!(answer["results"][0]["status"], "applied", "{answer}");
    let alert = next_event(&mut admin, "stock:negative").await?;
    assert_eq!(alert["siteId"], "north");
    assert_eq!(alert["products"], json!([{"productId": 9, "stock": -4}]));

    // The hub's sync log of the site (seed 003 sync_logs): pushes and pulls, failures too.
    let (status, _) = hub
        .sdk_with(&config.api_key)
        .call(
            "POST",
            "/api/sync/push",
            Some(&json!({"operations": "not a list"})),
            &[],
        )
        .await?;
    assert_eq!(status, 400);
    let log: Value = hub.sdk().get("/api/admin/sites/north/sync-log").await?;
    let rows = log["data"].as_array().context("rows")?;
    assert!(
        rows.iter()
            .any(|r| r["operation"] == "push" && r["status"] == "success" && r["items"] == 1),
        "{log}"
    );
    assert_eq!(
        rows[0]["status"], "failed",
        "the newest is the refused push: {log}"
    );
    // A change at the hub comes down to the edge: a pull that handed it out is logged.
    north_key.add_stock(&[(3, 1)]).await?;
    eventually("a pull in the hub's log", || async {
        let log: Value = hub.sdk().get("/api/admin/sites/north/sync-log").await?;
        Ok(log["data"].as_array().is_some_and(|rows| {
            rows.iter()
                .any(|r| r["operation"] == "pull" && r["items"] == 1)
        }))
    })
    .await?;
    let (status, _) = north_key
        .call("GET", "/api/admin/sites/north/sync-log", None, &[])
        .await?;
    assert_eq!(status, 403, "admins only");

    edge.stop().await?;
    let offline = next_event(&mut admin, "site:status").await?;
    assert_eq!(offline["isOnline"], false);
    assert_eq!(site(&hub.sdk().sites().await?)["isOnline"], false);
    // Presence and alerts are for admins: the site's manager saw the stock changes only.
    north_key.add_stock(&[(1, 1)]).await?;
    loop {
        match tokio::time::timeout(WAIT, manager.next())
            .await?
            .context("ended")??
        {
            Update::Event(e) => {
                assert!(
                    e.event.starts_with("stock:") && e.event != "stock:negative",
                    "{}",
                    e.event
                );
                if e.data.to_string().contains("\"productId\":1") {
                    break;
                }
            }
            _ => continue,
        }
    }
    Ok(())
}

/// Menu up, orders down, customers both with seed 004's field priorities, the rest both
/// by last write.
fn store_rules(config: &mut stocky_test_support::HubConfig) {
    use stocky_core::sync_rules::{CollectionRule, Direction, SyncRules};
    let mut customers = CollectionRule::new("pos", "customers", Direction::Both);
    customers.local_fields = vec!["isBanned".into()];
    customers.remote_fields = vec!["firstName".into()];
    config.server.sync_rules = SyncRules {
        collections: vec![
            CollectionRule::new("pos", "menu", Direction::Up),
            CollectionRule::new("pos", "orders", Direction::Down),
            customers,
            CollectionRule::new("*", "*", Direction::Both),
        ],
    };
}

/// A record's client fields and version, without timestamps (`record` as
/// `GET /api/sync/:db/:store/:id` answers it).
fn content(answer: &Value) -> (Value, Value) {
    let record = &answer["data"];
    let mut fields = record.clone();
    for key in ["created_at", "updated_at", "version"] {
        fields.as_object_mut().map(|o| o.remove(key));
    }
    (fields, record["version"].clone())
}

#[tokio::test]
async fn documents_sync_both_ways_by_their_collection_rules() -> Result<()> {
    let mut hub = TestHub::start_with(store_rules).await?;
    let (code, _) = site_with_code(&hub, "north").await?;
    let sdk = hub.sdk();
    sdk.put_document(
        "pos",
        "products",
        "p1",
        &json!({"name": "tea", "price": 2}),
        None,
    )
    .await?;
    sdk.put_document("pos", "orders", "o1", &json!({"total": 9}), None)
        .await?;
    sdk.put_document("pos", "menu", "m0", &json!({"name": "hub menu"}), None)
        .await?;
    sdk.put_document(
        "pos",
        "customers",
        "c1",
        &json!({"firstName": "Ana", "isBanned": false, "notes": "hub"}),
        None,
    )
    .await?;
    let dir = tempfile::tempdir()?;
    stocky_edge::activate(&hub.http, &code, None, dir.path(), |_, _, _| {}).await?;
    let (edge, local) = start_edge(dir.path()).await?;
    // The catalog and the orders came down with activation; the menu, which only goes
    // up, did not.
    let p1 = local
        .document("pos", "products", "p1")
        .await?
        .context("p1")?;
    assert_eq!(
        (p1["data"]["name"].clone(), p1["data"]["version"].clone()),
        (json!("tea"), json!(1))
    );
    assert!(local.document("pos", "orders", "o1").await?.is_some());
    assert!(local.document("pos", "menu", "m0").await?.is_none());

    // Up: the store's menu reaches the hub; an order written at the store does not.
    local
        .put_document("pos", "orders", "o2", &json!({"total": 1}), None)
        .await?;
    local
        .put_document("pos", "menu", "m1", &json!({"name": "store menu"}), None)
        .await?;
    eventually("the menu at the hub", || async {
        Ok(sdk.document("pos", "menu", "m1").await?.is_some())
    })
    .await?;
    assert!(sdk.document("pos", "orders", "o2").await?.is_none());
    // Down: a catalog edit at the hub reaches the store.
    sdk.patch_document("pos", "products", "p1", &json!({"price": 3}), None)
        .await?;
    eventually("the price at the edge", || async {
        let p1 = local.document("pos", "products", "p1").await?;
        Ok(p1.is_some_and(|p| p["data"]["price"] == 3))
    })
    .await?;

    // Partitioned edits of one customer: the store bans, the hub fixes the name later.
    hub.stop().await?;
    local
        .patch_document(
            "pos",
            "customers",
            "c1",
            &json!({"isBanned": true, "firstName": "Ana (typo)"}),
            None,
        )
        .await?;
    edge.stop().await?;
    hub.restart_with(store_rules).await?;
    let sdk = hub.sdk();
    sdk.patch_document(
        "pos",
        "customers",
        "c1",
        &json!({"firstName": "Ana María", "isBanned": false, "notes": "hub 2"}),
        None,
    )
    .await?;
    let (edge, local) = start_edge(dir.path()).await?;
    let expected =
        json!({"id": "c1", "firstName": "Ana María", "isBanned": true, "notes": "hub 2"});
    eventually("both tiers to agree on the customer", || async {
        let at_hub = sdk
            .document("pos", "customers", "c1")
            .await?
            .context("hub")?;
        let at_edge = local
            .document("pos", "customers", "c1")
            .await?
            .context("edge")?;
        eprintln!("hub {} edge {}", at_hub["data"], at_edge["data"]);
        Ok(content(&at_hub) == content(&at_edge) && content(&at_hub).0 == expected)
    })
    .await?;
    // The push cursor moves once the whole round is answered, a moment after the hub has
    // the change.
    eventually("no document waiting to be pushed", || async {
        let status: Value = local.get("/api/sync/status").await?;
        Ok(status["pendingDocuments"] == 0)
    })
    .await?;
    edge.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_hub_restored_from_an_older_snapshot_gets_everything_again() -> Result<()> {
    // SQLite on purpose (a file snapshot), whichever engine the suite runs on.
    let mut hub = TestHub::start_with(|c| c.server.database_url = None).await?;
    let (code, north) = site_with_code(&hub, "north").await?;
    north.update_stock(&[(1, 100)]).await?;
    let dir = tempfile::tempdir()?;
    stocky_edge::activate(&hub.http, &code, None, dir.path(), |_, _, _| {}).await?;
    let (edge, local) = start_edge(dir.path()).await?;
    let drained = || async {
        let status: Value = local.get("/api/sync/status").await?;
        anyhow::Ok(status["pending"] == 0 && status["pendingDocuments"] == 0)
    };
    local.subtract_stock(&[(1, 2)]).await?;
    eventually("the first sales at the hub", || async {
        Ok(north.stock_of(1).await?.map(|r| r.stock) == Some(98))
    })
    .await?;
    let database = hub.dir.path().join("stocky.db");
    let older = hub.dir.path().join("older.db");
    stocky_store::snapshot(&database, &older, |_, _| {})?;
    local.subtract_stock(&[(1, 3)]).await?;
    local
        .put_document(
            "pos",
            "notes",
            "n1",
            &json!({"text": "after the snapshot"}),
            None,
        )
        .await?;
    eventually("the later sales at the hub", || async {
        Ok(north.stock_of(1).await?.map(|r| r.stock) == Some(95) && drained().await?)
    })
    .await?;

    // The hub comes back from the older snapshot: a new epoch, without the later sales.
    hub.stop().await?;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
    }
    std::fs::rename(&older, &database)?;
    hub.restart_with(|c| c.server.database_url = None).await?;
    assert_eq!(north.stock_of(1).await?.context("stock")?.stock, 98);
    eventually("the edge to push everything again", || async {
        Ok(north.stock_of(1).await?.map(|r| r.stock) == Some(95)
            && hub.sdk().document("pos", "notes", "n1").await?.is_some())
    })
    .await?;
    // Nothing counted twice on either side.
    let ledger: Value = hub.sdk().backup("_stock").await?;
    let sales = ledger["backup"]["movements"]
        .as_array()
        .context("movements")?
        .iter()
        .filter(|m| m["siteId"] == "north" && m["delta"].as_i64() < Some(0))
        .count();
    assert_eq!(sales, 2, "two sale commands, one movement each");
    assert_eq!(local.stock_of(1).await?.context("edge stock")?.stock, 95);
    edge.stop().await?;
    Ok(())
}

#[tokio::test]
async fn the_device_credential_rotates_without_losing_sync() -> Result<()> {
    let hub = TestHub::start().await?;
    let (code, north) = site_with_code(&hub, "north").await?;
    let dir = tempfile::tempdir()?;
    let config = stocky_edge::activate(&hub.http, &code, None, dir.path(), |_, _, _| {}).await?;
    let old = config.api_key.clone();
    let (edge, local) = start_edge(dir.path()).await?;
    // Only a device credential may rotate itself at the hub.
    let (status, _) = north
        .call("POST", "/api/sync/credential/rotate", None, &[])
        .await?;
    assert_eq!(status, 403);
    let rotated: Value = local
        .post("/api/sync/credential/rotate", &json!({}))
        .await?;
    assert_eq!(rotated["success"], true, "{rotated}");
    let saved = stocky_edge::EdgeConfig::load(dir.path())?;
    assert_ne!(saved.api_key, old, "edge.json holds the new key");
    let (status, _) = hub
        .sdk_with(&old)
        .call("GET", "/api/stock", None, &[])
        .await?;
    assert_eq!(status, 401, "the old key is retired");
    let (status, _) = hub
        .sdk_with(&saved.api_key)
        .call("GET", "/api/stock", None, &[])
        .await?;
    assert_eq!(status, 200);
    // The running edge goes on syncing with the new key.
    local.add_stock(&[(4, 6)]).await?;
    eventually("the sale at the hub after the rotation", || async {
        Ok(north.stock_of(4).await?.map(|r| r.stock) == Some(6))
    })
    .await?;
    edge.stop().await?;
    Ok(())
}

const OFFLINE_SALE: &str = "0c2b6a1e-8f3d-4b5a-9c7e-1d2f3a4b5c6d";

#[tokio::test]
async fn a_sale_made_at_an_offline_edge_reaches_the_hub_with_its_uuid_and_times() -> Result<()> {
    let mut hub = TestHub::start().await?;
    let (code, north) = site_with_code(&hub, "north").await?;
    north.update_stock(&[(1, 10), (2, 10)]).await?;
    let (status, _) = hub
        .sdk()
        .call(
            "POST",
            "/api/products",
            Some(&json!({"id": 1, "name": "Café", "price": 2.5})),
            &[],
        )
        .await?;
    assert_eq!(status, 201);
    let dir = tempfile::tempdir()?;
    stocky_edge::activate(&hub.http, &code, None, dir.path(), |_, _, _| {}).await?;
    let (edge, local) = start_edge(dir.path()).await?;
    eventually("the catalog to come down", || async {
        let (status, _) = local.call("GET", "/api/products/1", None, &[]).await?;
        Ok(status == 200)
    })
    .await?;

    hub.stop().await?;
    let sale = json!({
        "id": OFFLINE_SALE,
        "deviceId": "till-1",
        "lines": [{"productId": 1, "quantity": 3, "unitPrice": 2.5},
                  {"productId": 2, "quantity": 1, "unitPrice": 1}],
        "payments": [{"id": "p1", "method": "card", "amount": 8.5, "status": "pending"}],
        "clientTimestamp": "2026-12-05T09:30:00.000Z"
    });
    let (status, made) = local.call("POST", "/api/sales", Some(&sale), &[]).await?;
    assert_eq!(status, 201, "the edge sells with the hub down: {made}");
    assert_eq!(
        made["sale"]["needsReview"], true,
        "product 2 is not in the catalog"
    );
    let (status, _) = local
        .call(
            "POST",
            &format!("/api/sales/{OFFLINE_SALE}/payments/p1/confirm"),
            None,
            &[],
        )
        .await?;
    assert_eq!(status, 200);
    let (status, _) = local
        .call(
            "POST",
            &format!("/api/sales/{OFFLINE_SALE}/refunds"),
            Some(&json!({"lines": [{"productId": 1, "quantity": 1}]})),
            &[],
        )
        .await?;
    assert_eq!(status, 200);
    let (_, at_edge) = local
        .call("GET", &format!("/api/sales/{OFFLINE_SALE}"), None, &[])
        .await?;
    let status: Value = local.get("/api/sync/status").await?;
    assert_eq!(status["pendingSales"], 1, "{status}");
    assert_eq!(status["pendingOrders"], 0, "{status}");
    assert_eq!(
        status["oldestUnsyncedSaleAt"], at_edge["sale"]["serverTimestamp"],
        "{status}"
    );
    assert_eq!(local.stock_of(1).await?.context("stock")?.stock, 8);
    // With the hub down the node is still ready (it sells), and says the hub is away.
    let ready: Value = reqwest::get(format!("http://{}/readyz", edge.local_addr()))
        .await?
        .json()
        .await?;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["checks"]["hub"]["ready"], false, "{ready}");
    assert_eq!(ready["checks"]["hub"]["required"], false, "{ready}");
    // The node's /metrics shows what waits for the hub, under its site.
    let metrics_url = format!("http://{}/metrics", edge.local_addr());
    eventually("the outbox gauges", || async {
        let text = reqwest::get(&metrics_url).await?.text().await?;
        Ok(text.contains("stocky_edge_pending_sales{site=\"north\"} 1")
            && text.contains("stocky_edge_outbox_pending{site=\"north\"}")
            && !text.contains("stocky_edge_oldest_unsynced_sale_age_seconds{site=\"north\"} 0.0"))
    })
    .await?;

    hub.restart_with(|_| {}).await?;
    let path = format!("/api/sales/{OFFLINE_SALE}");
    eventually("the sale to reach the hub with its refund", || async {
        let (status, body) = hub.sdk().call("GET", &path, None, &[]).await?;
        Ok(status == 200 && body["sale"]["status"] == "partially_refunded")
    })
    .await?;
    let (_, at_hub) = hub.sdk().call("GET", &path, None, &[]).await?;
    let (edge_sale, hub_sale) = (&at_edge["sale"], &at_hub["sale"]);
    assert_eq!(hub_sale["siteId"], "north", "{hub_sale}");
    for field in [
        "id",
        "clientTimestamp",
        "serverTimestamp",
        "total",
        "deviceId",
        "lines",
        "refunds",
    ] {
        assert_eq!(hub_sale[field], edge_sale[field], "{field}");
    }
    assert_eq!(hub_sale["payments"][0]["status"], "confirmed");
    eventually("the stock to agree", || async {
        Ok(north.stock_of(1).await?.map(|s| s.stock) == Some(8))
    })
    .await?;
    // The node reports its outbox with its pulls: admins see it drained at the hub.
    eventually("the store's outbox report at the hub", || async {
        let sites: Value = hub.sdk().get("/api/admin/sites").await?;
        let north = sites["data"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["id"] == "north").cloned())
            .context("north")?;
        Ok(north["outboxDepth"] == 0
            && north["pendingSales"] == 0
            && north["oldestUnsyncedSaleAt"].is_null()
            && north["outboxReportedAt"].is_string())
    })
    .await?;
    // Each movement of the sale is in the hub's ledger once, pushed as movements and as
    // the sale.
    let ledger: Value = hub.sdk().backup("_stock").await?;
    let of_sale: Vec<&Value> = ledger["backup"]["movements"]
        .as_array()
        .context("movements")?
        .iter()
        .filter(|m| m["siteId"] == "north" && m["kind"] != "update" && m["kind"] != "snapshot")
        .collect();
    assert_eq!(of_sale.len(), 3, "two sale lines and a refund: {of_sale:?}");
    assert_eq!(north.stock_of(2).await?.context("stock")?.stock, 9);
    eventually("the edge to see the sale pushed", || async {
        let status: Value = local.get("/api/sync/status").await?;
        Ok(status["pendingSales"] == 0)
    })
    .await?;
    edge.stop().await?;
    Ok(())
}

/// The edge's copy of product `id`: `(version, name)`.
async fn edge_product(local: &Client, id: i64) -> Result<(i64, String)> {
    let (status, body) = local
        .call("GET", &format!("/api/products/{id}"), None, &[])
        .await?;
    anyhow::ensure!(status == 200, "{status} {body}");
    Ok((
        body["product"]["version"].as_i64().unwrap_or(0),
        body["product"]["name"].as_str().unwrap_or("").to_owned(),
    ))
}

#[tokio::test]
async fn the_catalog_converges_by_version_then_server_time() -> Result<()> {
    let mut hub = TestHub::start().await?;
    let (code, _) = site_with_code(&hub, "north").await?;
    let dir = tempfile::tempdir()?;
    stocky_edge::activate(&hub.http, &code, None, dir.path(), |_, _, _| {}).await?;
    let sdk = hub.sdk();
    let put = |name: &'static str| json!({"name": name, "price": 1});
    sdk.call(
        "POST",
        "/api/products",
        Some(&json!({"id": 10, "name": "v1", "price": 1})),
        &[],
    )
    .await?;
    let (mut edge, mut local) = start_edge(dir.path()).await?;
    eventually("v1 at the edge", || async {
        Ok(edge_product(&local, 10).await.ok() == Some((1, "v1".into())))
    })
    .await?;

    // A stale version loses: the hub went to v3 while the offline edge made its v2.
    edge.stop().await?;
    for name in ["hub-v2", "hub-v3"] {
        let (status, body) = hub
            .sdk()
            .call("PUT", "/api/products/10", Some(&put(name)), &[])
            .await?;
        assert_eq!(status, 200, "{body}");
    }
    hub.stop().await?;
    (edge, local) = start_edge(dir.path()).await?;
    let (status, body) = local
        .call(
            "PUT",
            "/api/products/10",
            Some(&put("edge-v2")),
            &[("If-Match", "1")],
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    hub.restart_with(|_| {}).await?;
    eventually("the hub's v3 everywhere", || async {
        Ok(edge_product(&local, 10).await.ok() == Some((3, "hub-v3".into())))
    })
    .await?;
    let (_, at_hub) = hub.sdk().call("GET", "/api/products/10", None, &[]).await?;
    assert_eq!(at_hub["product"]["name"], "hub-v3");

    // Equal versions: the later server time wins, on both tiers.
    edge.stop().await?;
    hub.sdk()
        .call("PUT", "/api/products/10", Some(&put("hub-v4")), &[])
        .await?;
    hub.stop().await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    (edge, local) = start_edge(dir.path()).await?;
    local
        .call("PUT", "/api/products/10", Some(&put("edge-v4")), &[])
        .await?;
    assert_eq!(edge_product(&local, 10).await?, (4, "edge-v4".into()));
    hub.restart_with(|_| {}).await?;
    eventually("the later v4 at the hub", || async {
        let (_, body) = hub.sdk().call("GET", "/api/products/10", None, &[]).await?;
        Ok(body["product"]["name"] == "edge-v4")
    })
    .await?;
    assert_eq!(edge_product(&local, 10).await?, (4, "edge-v4".into()));
    // A catalog change made at the hub comes down live enough.
    hub.sdk()
        .call("PUT", "/api/products/10", Some(&put("hub-v5")), &[])
        .await?;
    eventually("v5 at the edge", || async {
        Ok(edge_product(&local, 10).await.ok() == Some((5, "hub-v5".into())))
    })
    .await?;
    edge.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_transfer_to_a_store_reaches_its_edge_through_the_pull() -> Result<()> {
    let hub = TestHub::start().await?;
    let (code, _) = site_with_code(&hub, "north").await?;
    hub.sdk().update_stock(&[(6, 20)]).await?;
    let dir = tempfile::tempdir()?;
    stocky_edge::activate(&hub.http, &code, None, dir.path(), |_, _, _| {}).await?;
    let (edge, local) = start_edge(dir.path()).await?;
    let ask = json!({"fromSiteId": "default", "toSiteId": "north", "productId": 6, "quantity": 5});
    // The edge counts as online once its live connection to the hub is up.
    eventually("the edge to be online", || async {
        let sites = hub.sdk().sites().await?;
        Ok(sites.to_string().contains("\"isOnline\":true"))
    })
    .await?;
    let (status, body) = hub
        .sdk()
        .call("POST", "/api/transfers/request", Some(&ask), &[])
        .await?;
    assert_eq!(status, 201, "{body}");
    let id = body["transfer"]["id"]
        .as_str()
        .context("a transfer id")?
        .to_owned();
    let answer: Value = hub
        .sdk()
        .post(&format!("/api/transfers/{id}/approve"), &json!({}))
        .await?;
    anyhow::ensure!(answer["success"] == true, "{answer}");
    eventually("the stock at the edge", || async {
        Ok(local.stock_of(6).await?.map(|s| s.stock) == Some(5))
    })
    .await?;
    let listing: Value = hub.sdk().get("/api/stock/6").await?;
    assert_eq!(listing["stock"], 15);
    edge.stop().await?;
    Ok(())
}

/// Seed 004 through a real edge: menu and config up, 200 orders made while the store was
/// offline numbered 1..200 once it is back, status both ways, customers both ways.
#[tokio::test]
async fn orders_made_while_the_store_is_offline_are_numbered_1_to_200_when_it_is_back() -> Result<()>
{
    let hub = TestHub::start().await?;
    let (code, _) = site_with_code(&hub, "north").await?;
    let dir = tempfile::tempdir()?;
    stocky_edge::activate(&hub.http, &code, None, dir.path(), |_, _, _| {}).await?;
    let (edge, local) = start_edge(dir.path()).await?;
    let categories = json!([{"id": "c1", "name": "Pizzas", "subcategories": []}]);
    let (status, _) = local
        .call(
            "POST",
            "/api/sync/menu",
            Some(&json!({ "categories": categories })),
            &[],
        )
        .await?;
    assert_eq!(status, 200);
    let (status, _) = local
        .call(
            "POST",
            "/api/sync/config",
            Some(&json!({"restaurantConfig": {"timezone": "+00:00", "businessDayStart": "00:00"}})),
            &[],
        )
        .await?;
    assert_eq!(status, 200);
    eventually("the menu at the hub", || async {
        let (status, menu) = hub
            .sdk()
            .call("GET", "/api/sync/menu?siteId=north", None, &[])
            .await?;
        Ok(status == 200 && menu["categories"] == categories)
    })
    .await?;
    edge.stop().await?;

    let order = |n: usize| {
        json!({"siteId": "north", "channel": "whatsapp", "externalId": format!("wa-{n}"),
               "customer": {"id": "cust-9", "firstName": "Ana"},
               "lines": [{"name": "Margarita", "quantity": 1}]})
    };
    for n in 0..200 {
        let (status, body) = hub
            .sdk()
            .call("POST", "/api/orders", Some(&order(n)), &[])
            .await?;
        anyhow::ensure!(status == 201, "{body}");
    }
    let (edge, local) = start_edge(dir.path()).await?;
    eventually("every order numbered and confirmed", || async {
        let pending: Value = hub
            .sdk()
            .get("/api/sync/orders/pending?siteId=north")
            .await?;
        Ok(pending["count"] == 0)
    })
    .await?;
    let at_edge: Value = local.get("/api/orders?limit=1000").await?;
    let mut numbers: Vec<i64> = at_edge["data"]
        .as_array()
        .context("orders")?
        .iter()
        .map(|o| o["dailyNumber"].as_i64().unwrap_or(0))
        .collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (1..=200).collect::<Vec<i64>>(),
        "no gap, no duplicate"
    );
    let at_hub: Value = hub.sdk().get("/api/orders?siteId=north&limit=1000").await?;
    for o in at_hub["data"].as_array().context("orders")? {
        let mine = at_edge["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == o["id"])
            .context("the same order at the edge")?;
        assert_eq!(o["dailyNumber"], mine["dailyNumber"]);
    }

    // Status both ways, last writer by version.
    let first = at_edge["data"][0]["id"].as_str().context("id")?.to_owned();
    let second = at_edge["data"][1]["id"].as_str().context("id")?.to_owned();
    let (status, _) = local
        .call(
            "PATCH",
            &format!("/api/orders/{first}"),
            Some(&json!({"status": "preparing"})),
            &[],
        )
        .await?;
    assert_eq!(status, 200);
    hub.sdk()
        .call(
            "PATCH",
            &format!("/api/orders/{second}"),
            Some(&json!({"status": "ready"})),
            &[],
        )
        .await?;
    eventually("the statuses on both tiers", || async {
        let up: Value = hub.sdk().get(&format!("/api/orders/{first}")).await?;
        let down: Value = local.get(&format!("/api/orders/{second}")).await?;
        Ok(up["order"]["status"] == "preparing" && down["order"]["status"] == "ready")
    })
    .await?;

    // Customers both ways, field by field.
    hub.sdk()
        .call(
            "PATCH",
            "/api/customers/cust-9",
            Some(&json!({"firstName": "Ana María"})),
            &[],
        )
        .await?;
    local
        .call(
            "PATCH",
            "/api/customers/cust-9",
            Some(&json!({"isBanned": true, "firstName": "x"})),
            &[],
        )
        .await?;
    eventually("the customer merged on both tiers", || async {
        let up: Value = hub.sdk().get("/api/customers/cust-9").await?;
        let down: Value = local.get("/api/customers/cust-9").await?;
        let good = |c: &Value| c["isBanned"] == true && c["firstName"] == "Ana María";
        Ok(good(&up["customer"]) && good(&down["customer"]))
    })
    .await?;
    // A round is logged once it is over, a moment after its changes show.
    eventually("every kind of round in the sync log", || async {
        let log: Value = local.get("/api/sync/log").await?;
        let kinds = log.to_string();
        Ok(["MENU_PUSH", "ORDERS_PULL", "CUSTOMERS_PULL"]
            .iter()
            .all(|kind| kinds.contains(kind)))
    })
    .await?;
    // Seed 004's SyncMetadata: the order changed here is LOCAL, and synced once the push
    // round that sent it is answered (a moment after the hub shows it).
    let first_order = || async {
        let metadata: Value = local.get("/api/sync/metadata?entityType=Order").await?;
        let entry = metadata["data"]
            .as_array()
            .context("metadata")?
            .iter()
            .find(|m| m["entityId"] == first.as_str())
            .context("the first order")?
            .clone();
        anyhow::Ok((entry, metadata["count"].clone()))
    };
    eventually("the first order synced", || async {
        Ok(first_order().await?.0["syncPending"] == false)
    })
    .await?;
    let (entry, count) = first_order().await?;
    assert_eq!(entry["modifiedBy"], "LOCAL", "{entry}");
    assert_eq!(count, 200);
    // With the store online, a new order is numbered at once: order:new on the edge's live
    // stream wakes it (the slow poll is five minutes away).
    let (status, _) = hub
        .sdk()
        .call("POST", "/api/orders", Some(&order(200)), &[])
        .await?;
    assert_eq!(status, 201);
    eventually("order 201 numbered at once", || async {
        let pending: Value = hub
            .sdk()
            .get("/api/sync/orders/pending?siteId=north")
            .await?;
        let listing: Value = local.get("/api/orders?limit=1000").await?;
        Ok(pending["count"] == 0 && listing["count"] == 201)
    })
    .await?;
    edge.stop().await?;
    Ok(())
}
