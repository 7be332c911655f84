//! Regression tests for the findings of the hardening review (issue 15), one per finding,
//! against a real hub: each failed on the code before its fix.

use stocky_test_support as support;

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use support::TestHub;

const PW: &str = "correct horse battery";

/// A new user of the default tenant, signed in: its access token and the login answer.
async fn signed_in(
    hub: &TestHub,
    email: &str,
    role: &str,
    site: Option<&str>,
) -> Result<(String, Value)> {
    let (status, body) = hub
        .post(
            "/api/admin/users",
            json!({"email": email, "password": PW, "role": role, "siteId": site}),
        )
        .await?;
    anyhow::ensure!(status == 201, "{body}");
    hub.login(email, PW).await
}

fn movement(id: &str, product: i64, delta: i64) -> Value {
    json!({"id": id, "productId": product, "delta": delta, "kind": "restore",
           "serverTime": "2026-01-01T00:00:00.000Z", "siteId": "default"})
}

async fn restore_ledger(
    hub: &TestHub,
    token: Option<&str>,
    movements: Vec<Value>,
) -> Result<(u16, Value)> {
    hub.as_(
        Some(token.unwrap_or(support::ADMIN)),
        "POST",
        "/api/backup/_stock/restore",
        Some(json!({"backup": {"movements": movements}})),
    )
    .await
}

/// Finding 1: `abs()` wrapped on `i64::MIN`, so a restore could leave stock at `i64::MIN`
/// and the ledger stopped summing to the stock.
#[tokio::test]
async fn finding_1_quantities_never_wrap() -> Result<()> {
    let hub = TestHub::start().await?;
    hub.sdk().update_stock(&[(1, 5)]).await?;
    let (status, body) = restore_ledger(&hub, None, vec![movement("m-min", 1, i64::MIN)]).await?;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("delta"), "{body}");
    let push = json!({"operations": [{"id": "p-min", "productId": 1, "delta": i64::MIN}]});
    let (status, body) = hub.post("/api/sync/push", push).await?;
    assert_eq!(
        (status, body["results"][0]["status"].clone()),
        (200, json!("rejected")),
        "{body}"
    );
    // Each movement in range, their sum out of it: refused whole.
    let big = 1_000_000_000_000;
    let many: Vec<Value> = (0..3)
        .map(|i| movement(&format!("big-{i}"), 1, big))
        .collect();
    let (status, body) = restore_ledger(&hub, None, many).await?;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (422, json!("stock_overflow")),
        "{body}"
    );
    assert_eq!(hub.stock(1).await?, 5, "nothing changed");
    // The ledger still sums to the stock, and the hub takes its own backup back.
    let backup: Value = hub.sdk().backup("_stock").await?;
    let sum: i64 = backup["backup"]["movements"]
        .as_array()
        .context("movements")?
        .iter()
        .filter_map(|m| m["delta"].as_i64())
        .sum();
    assert_eq!(sum, 5);
    let (status, body) = hub.post("/api/backup/_stock/restore", backup).await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

/// Finding 2: a cashier's large restore body was read and parsed before the 403. The
/// answer must come before the body is sent.
#[tokio::test]
async fn finding_2_roles_are_checked_before_large_bodies_are_read() -> Result<()> {
    let hub = TestHub::start().await?;
    let token = signed_in(&hub, "c@a.test", "cashier", Some("default"))
        .await?
        .0;
    let addr = hub.http.trim_start_matches("http://").to_owned();
    for path in ["/api/backup/pos/restore", "/api/backup/pos/compare"] {
        let token = token.clone();
        let addr = addr.clone();
        let answer = tokio::task::spawn_blocking(move || -> Result<String> {
            let mut socket = std::net::TcpStream::connect(&addr)?;
            socket.set_read_timeout(Some(Duration::from_secs(5)))?;
            // Announce 60 MB, send 1 KiB of it, then wait for the answer.
            write!(
                socket,
                "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 60000000\r\n\r\n"
            )?;
            socket.write_all(&[b' '; 1024])?;
            let mut answer = vec![0u8; 4096];
            let n = socket.read(&mut answer)?;
            Ok(String::from_utf8_lossy(&answer[..n]).into_owned())
        })
        .await??;
        assert!(answer.starts_with("HTTP/1.1 403"), "{path}: {answer}");
    }
    Ok(())
}

/// Finding 5: movement ids were global, so tenant B restoring A's backup got
/// `restored: 0, skipped: 4` — silent loss and an existence oracle across tenants.
#[tokio::test]
async fn finding_5_movement_ids_are_per_tenant() -> Result<()> {
    let hub = TestHub::start().await?;
    hub.sdk().update_stock(&[(1, 5), (2, 7)]).await?;
    let backup: Value = hub.sdk().backup("_stock").await?;
    let (status, body) = hub
        .post(
            "/api/admin/tenants",
            json!({"id": "b", "name": "B", "owner": {"email": "o@b.test", "password": PW}}),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    let (b, _) = hub.login("o@b.test", PW).await?;
    let (status, body) = hub
        .as_(Some(&b), "POST", "/api/backup/_stock/restore", Some(backup))
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["restored"].clone(), body["skipped"].clone()),
        (json!(2), json!(0)),
        "{body}"
    );
    let (_, stock) = hub.as_(Some(&b), "GET", "/api/stock/2", None).await?;
    assert_eq!(stock["stock"], 7);
    assert_eq!(hub.stock(2).await?, 7, "tenant A is untouched");
    Ok(())
}

/// Finding 6: an idempotency key was recognised tenant-wide, so a caller reusing any key
/// got another caller's event (an admin-only sale, another site's order) and its own
/// command was silently not applied.
#[tokio::test]
async fn finding_6_idempotency_keys_belong_to_their_caller() -> Result<()> {
    let hub = TestHub::start().await?;
    hub.post("/api/admin/sites", json!({"id": "s2"})).await?;
    let cashier = signed_in(&hub, "m2@a.test", "manager", Some("s2")).await?.0;
    let key = [("Idempotency-Key", "k-1")];
    let (status, sale) = hub
        .call(
            "POST",
            "/api/events",
            Some(json!({"type": "SALE_CREATED", "data": {"total": 990, "secret": "admins only"}})),
            &key,
        )
        .await?;
    assert_eq!(status, 201, "{sale}");
    // The manager's command with the same key is its own: applied, nothing of the sale.
    let (status, answer) = hub
        .sdk_with(&cashier)
        .call(
            "POST",
            "/api/stock/add",
            Some(&json!({"additions": [{"productId": 3, "quantity": 2}]})),
            &key,
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    assert!(!answer.to_string().contains("admins only"), "{answer}");
    assert!(
        answer["id"].is_u64() && answer["id"] != sale["id"],
        "{answer}"
    );
    assert!(answer.get("duplicate").is_none(), "{answer}");
    let (_, stock) = hub.as_(Some(&cashier), "GET", "/api/stock/3", None).await?;
    assert_eq!(stock["stock"], 2, "{stock}");
    // A retry by the same caller is a duplicate; the same key for another command is a
    // conflict that changes nothing.
    let (status, again) = hub
        .sdk_with(&cashier)
        .call(
            "POST",
            "/api/stock/add",
            Some(&json!({"additions": [{"productId": 3, "quantity": 2}]})),
            &key,
        )
        .await?;
    assert_eq!(
        (status, again["id"].clone()),
        (200, answer["id"].clone()),
        "{again}"
    );
    assert_eq!(again["duplicate"], true, "{again}");
    let (status, reused) = hub
        .sdk_with(&cashier)
        .call(
            "POST",
            "/api/stock/add",
            Some(&json!({"additions": [{"productId": 3, "quantity": 50}]})),
            &key,
        )
        .await?;
    assert_eq!(
        (status, reused["error"]["code"].clone()),
        (409, json!("idempotency_key_reused")),
        "{reused}"
    );
    let (_, stock) = hub.as_(Some(&cashier), "GET", "/api/stock/3", None).await?;
    assert_eq!(stock["stock"], 2);
    Ok(())
}

/// Finding 7, the smaller ones: refusals echo `opId`; an empty bulk write uses no event
/// id; `2025-02-31` is not a date; `POST /api/events` without a type is `invalid_event`;
/// invalid UTF-8 closes with 1007.
#[tokio::test]
async fn finding_7_the_smaller_ones() -> Result<()> {
    let hub = TestHub::start().await?;
    let mut ws = hub.connect().await?;
    ws.send(json!({"event": "stock:add", "data": "not lines", "opId": "op-7"}))
        .await?;
    let refusal = ws.recv().await?;
    assert_eq!(refusal["data"]["code"], "invalid_data", "{refusal}");
    assert_eq!(refusal["data"]["opId"], "op-7", "{refusal}");

    hub.sdk().update_stock(&[(1, 1)]).await?;
    assert_eq!(ws.recv().await?["event"], "stock:update");
    let head = hub.sdk().stock().await?.last_event_id;
    let (status, answer) = hub.post("/api/sync/pos/items", json!({"data": []})).await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["eventId"].clone(), answer["created"].clone()),
        (json!(head), json!(0)),
        "{answer}"
    );
    assert_eq!(
        hub.sdk().stock().await?.last_event_id,
        head,
        "no event was used"
    );
    ws.expect_silence(Duration::from_millis(200)).await?;

    let (status, answer) = hub.get("/api/sync/pos/items/since/2025-02-31").await?;
    assert_eq!(status, 400, "{answer}");

    let (status, answer) = hub.post("/api/events", json!({"data": 1})).await?;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (400, json!("invalid_event")),
        "{answer}"
    );
    // Nobody forges the hub's own events, store presence included.
    for name in ["site:status", "stock:negative"] {
        let (status, answer) = hub
            .post(
                "/api/events",
                json!({"type": name, "data": {"siteId": "default"}}),
            )
            .await?;
        assert_eq!(status, 400, "{name}: {answer}");
    }

    let addr = hub.http.trim_start_matches("http://").to_owned();
    let code = tokio::task::spawn_blocking(move || -> Result<u16> {
        let mut socket = std::net::TcpStream::connect(&addr)?;
        socket.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            socket,
            "GET /ws?token={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            support::ADMIN
        )?;
        let mut buffer = vec![0u8; 1 << 16];
        let mut seen = Vec::new();
        // The 101 and the welcome frame.
        while !String::from_utf8_lossy(&seen).contains("welcome") {
            let n = socket.read(&mut buffer)?;
            anyhow::ensure!(n > 0, "closed early");
            seen.extend_from_slice(&buffer[..n]);
        }
        // A masked text frame whose payload is not UTF-8.
        let payload = [0xffu8, 0xfe, 0xfd];
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![0x81, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        socket.write_all(&frame)?;
        // Find the close frame (opcode 8) and its code.
        let mut all = Vec::new();
        loop {
            let n = socket.read(&mut buffer)?;
            anyhow::ensure!(n > 0, "no close frame");
            all.extend_from_slice(&buffer[..n]);
            if let Some(at) = all.windows(1).position(|w| w[0] == 0x88) {
                if all.len() >= at + 4 {
                    return Ok(u16::from_be_bytes([all[at + 2], all[at + 3]]));
                }
            }
        }
    })
    .await??;
    assert_eq!(code, 1007);
    Ok(())
}

/// Finding 3: the throttle was checked before the password check and counted after it,
/// so 100 simultaneous wrong logins from one IP ran 77 checks (limit 20).
#[tokio::test]
async fn finding_3_a_login_burst_runs_no_more_checks_than_the_limit() -> Result<()> {
    let hub = TestHub::start().await?;
    let attempts = (0..100).map(|i| {
        let body = json!({"email": format!("nobody{i}@a.test"), "password": "wrong password"});
        hub.as_(None, "POST", "/api/auth/login", Some(body))
    });
    let mut statuses = Vec::new();
    for answer in futures_util::future::join_all(attempts).await {
        statuses.push(answer?.0);
    }
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((checked, throttled), (20, 80), "{statuses:?}");
    Ok(())
}

/// Reads until the server answers or closes; `None` when it did neither within `within`.
fn outcome(socket: &mut std::net::TcpStream, within: Duration) -> Option<String> {
    socket.set_read_timeout(Some(within)).ok()?;
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match socket.read(&mut buffer) {
            Ok(0) => return Some(format!("closed {}", String::from_utf8_lossy(&seen))),
            Ok(n) => {
                seen.extend_from_slice(&buffer[..n]);
                if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    return Some(String::from_utf8_lossy(&seen).into_owned());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some("reset".into())
            }
            Err(_) => return None,
        }
    }
}

/// Finding 4: half-sent headers, idle sockets and partial bodies stayed open forever
/// (slowloris); with a low descriptor limit, 300 of them made `/health` time out.
#[tokio::test]
async fn finding_4_slow_and_idle_connections_are_cut_and_capped() -> Result<()> {
    let hub = TestHub::start_with(|c| {
        c.server.header_timeout = Duration::from_secs(1);
        c.server.body_timeout = Duration::from_secs(1);
        c.server.max_connections = 4;
    })
    .await?;
    let addr = hub.http.trim_start_matches("http://").to_owned();
    let token = support::ADMIN.to_owned();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let connect = || std::net::TcpStream::connect(&addr);
        // Half-sent headers: cut after the header timeout.
        let mut half = connect()?;
        half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")?;
        assert!(outcome(&mut half, Duration::from_secs(5)).is_some(), "half-sent headers stay open");
        // An idle keep-alive connection after an answered request: cut too.
        let mut idle = connect()?;
        idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let answered = outcome(&mut idle, Duration::from_secs(5)).context("an answer")?;
        assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
        let mut rest = [0u8; 4096];
        let _ = idle.read(&mut rest); // the body
        assert!(outcome(&mut idle, Duration::from_secs(5)).is_some(), "idle connection stays open");
        // A partial body: refused after the body timeout.
        let mut partial = connect()?;
        write!(
            partial,
            "POST /api/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"type\""
        )?;
        let answer = outcome(&mut partial, Duration::from_secs(5)).context("the partial body is never cut")?;
        assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");
        // The cap: four silent connections fill it, the fifth is closed at once, and the
        // server serves again once the silent ones are cut.
        let silent: Vec<_> = (0..4).map(|_| connect()).collect::<Result<_, _>>()?;
        std::thread::sleep(Duration::from_millis(200));
        let mut over = connect()?;
        over.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let refused = outcome(&mut over, Duration::from_secs(1)).context("no answer at all")?;
        assert!(!refused.contains("200 OK"), "{refused}");
        drop(silent);
        std::thread::sleep(Duration::from_millis(1500));
        let mut after = connect()?;
        after.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let answer = outcome(&mut after, Duration::from_secs(5)).context("health after")?;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        Ok(())
    })
    .await??;
    Ok(())
}

/// Known gaps closed: logout and key revocation end open WebSockets (at the next ping);
/// 401s are throttled per IP; a WebSocket upgrade from another origin's page is refused.
#[tokio::test]
async fn revocation_reaches_open_sockets_and_bad_credentials_are_throttled() -> Result<()> {
    let hub = TestHub::start_with(|c| {
        c.server.ping_interval = Duration::from_millis(300);
        c.server.login_failures = 1; // 20 bad credentials per IP per window
    })
    .await?;
    let token = signed_in(&hub, "m@a.test", "manager", None).await?.0;
    let mut ws = support::Client::connect(&hub.ws_with(&token, "")).await?;
    let (status, _) = hub
        .as_(Some(&token), "POST", "/api/auth/logout", None)
        .await?;
    assert_eq!(status, 200);
    let (ended, _) = ws.until_end().await?;
    assert!(
        matches!(&ended, support::Ended::Closed(Some((code, _))) if u16::from(*code) == 1008),
        "{ended:?}"
    );
    let (_, key) = hub
        .post(
            "/api/admin/api-keys",
            json!({"name": "till", "role": "cashier"}),
        )
        .await?;
    let (secret, id) = (
        key["key"].as_str().context("key")?,
        key["id"].as_str().context("id")?,
    );
    let mut ws = support::Client::connect(&hub.ws_with(secret, "")).await?;
    let (status, _) = hub
        .call("DELETE", &format!("/api/admin/api-keys/{id}"), None, &[])
        .await?;
    assert_eq!(status, 200);
    let (ended, _) = ws.until_end().await?;
    assert!(
        matches!(&ended, support::Ended::Closed(Some((code, _))) if u16::from(*code) == 1008),
        "{ended:?}"
    );

    // Origins: another site's page is refused; a listed one and no Origin are not.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let with_origin = |origin: &str| -> Result<_> {
        let mut request = hub.ws_with(support::ADMIN, "").into_client_request()?;
        request.headers_mut().insert("Origin", origin.parse()?);
        Ok(request)
    };
    let refused = tokio_tungstenite::connect_async(with_origin("http://evil.test")?).await;
    assert!(refused.unwrap_err().to_string().contains("403"));
    tokio_tungstenite::connect_async(with_origin("http://localhost:5173")?).await?;
    let own = format!("http://{}", hub.http.trim_start_matches("http://"));
    tokio_tungstenite::connect_async(with_origin(&own)?).await?;

    // Bad credentials: 20 are answered 401, then the IP is throttled, good credential or not.
    let mut statuses = Vec::new();
    for i in 0..25 {
        let (status, _) = hub
            .as_(Some(&format!("bad-{i}")), "GET", "/api/stock", None)
            .await?;
        statuses.push(status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        20,
        "{statuses:?}"
    );
    assert_eq!(statuses[20..], [429; 5]);
    let (status, _) = hub.get("/api/stock").await?;
    assert_eq!(status, 429, "the IP is throttled until the window ends");
    Ok(())
}

/// Refresh-token reuse (a stolen copy) ends the session for everyone holding it.
#[tokio::test]
async fn reusing_a_refresh_token_ends_the_session() -> Result<()> {
    let hub = TestHub::start().await?;
    let (_, login) = signed_in(&hub, "m@a.test", "manager", None).await?;
    let first = login["refreshToken"].clone();
    let (status, second) = hub
        .post("/api/auth/refresh", json!({"refreshToken": first}))
        .await?;
    assert_eq!(status, 200);
    let (status, renewed) = hub
        .post(
            "/api/auth/refresh",
            json!({"refreshToken": second["refreshToken"]}),
        )
        .await?;
    assert_eq!(status, 200);
    // The first token, two rotations old, comes back: a copy of it was stolen.
    let (status, _) = hub
        .post("/api/auth/refresh", json!({"refreshToken": first}))
        .await?;
    assert_eq!(status, 401);
    let (status, _) = hub
        .post(
            "/api/auth/refresh",
            json!({"refreshToken": renewed["refreshToken"]}),
        )
        .await?;
    assert_eq!(
        status, 401,
        "the legitimate holder's newer token is dead too"
    );
    let (status, _) = hub
        .as_(renewed["accessToken"].as_str(), "GET", "/api/stock", None)
        .await?;
    assert_eq!(status, 401);
    Ok(())
}

/// `POST /api/auth/refresh` carries no credential header, so it is throttled on its own
/// terms: unknown refresh tokens count as bad credentials of the client IP (20 with one
/// allowed login failure), after which that IP gets `429`, on refresh as on every route
/// that needs a credential, even with a valid refresh token.
#[tokio::test]
async fn unknown_refresh_tokens_throttle_the_ip_like_bad_credentials() -> Result<()> {
    let hub = TestHub::start_with(|c| c.server.login_failures = 1).await?;
    let (_, login) = signed_in(&hub, "r@a.test", "manager", None).await?;
    let mut statuses = Vec::new();
    for i in 0..25 {
        let (status, _) = hub
            .post(
                "/api/auth/refresh",
                json!({"refreshToken": format!("rt_guess_{i}")}),
            )
            .await?;
        statuses.push(status);
    }
    assert_eq!(statuses[..20], [401; 20], "{statuses:?}");
    assert_eq!(statuses[20..], [429; 5], "{statuses:?}");
    let (status, answer) = hub
        .post(
            "/api/auth/refresh",
            json!({"refreshToken": login["refreshToken"]}),
        )
        .await?;
    assert_eq!(
        status, 429,
        "a valid token from the throttled IP waits too: {answer}"
    );
    let (status, _) = hub.get("/api/stock").await?;
    assert_eq!(
        status, 429,
        "and so does every route that needs a credential"
    );
    Ok(())
}

/// Behind a trusted reverse proxy (`--trusted-proxies`), per-IP throttles key on the
/// address the proxy forwards: one client's bad credentials throttle that client, not
/// every client behind the proxy. Without it the header is ignored and the socket peer
/// stays the client (a client cannot pick its own address).
#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_client() -> Result<()> {
    for trusted in [true, false] {
        let hub = TestHub::start_with(|c| {
            c.server.login_failures = 1; // 20 bad credentials per IP per window
            if trusted {
                c.server.trusted_proxies =
                    stocky_server::client_addr::TrustedProxies::parse(&["127.0.0.0/8"]).unwrap();
            }
        })
        .await?;
        let bad_from = |ip: &'static str| {
            let sdk = hub.sdk_with("not-a-token");
            async move {
                let headers = [("X-Forwarded-For", ip)];
                anyhow::Ok(sdk.call("GET", "/api/stock", None, &headers).await?.0)
            }
        };
        for _ in 0..20 {
            assert_eq!(bad_from("203.0.113.1").await?, 401);
        }
        assert_eq!(
            bad_from("203.0.113.1").await?,
            429,
            "the first client is throttled"
        );
        let other = bad_from("203.0.113.2").await?;
        if trusted {
            assert_eq!(other, 401, "another client behind the proxy is not");
            let (status, _) = hub.get("/api/stock").await?;
            assert_eq!(status, 200, "nor is the proxy's own address");
        } else {
            assert_eq!(other, 429, "untrusted, the header is ignored: one client");
        }
    }
    Ok(())
}
