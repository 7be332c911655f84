//! End-to-end tests of the hub: a real server on port 0, real WebSocket and HTTP clients.

use stocky_test_support as support;

use std::time::Duration;

use anyhow::Result;
use futures_util::future::join_all;
use serde_json::{json, Value};
use stocky_core::time::parse_iso8601;
use support::{Client, Ended, TestHub};

fn items(v: &Value) -> &Vec<Value> {
    v.as_array().expect("an array")
}

#[tokio::test]
async fn broadcast_reaches_others_and_the_sender_gets_an_ack_not_an_echo() -> Result<()> {
    let hub = TestHub::start().await?;
    let mut a = hub.connect().await?;
    let mut b = hub.connect().await?;
    let mut c = hub.connect().await?;
    assert!(a.client_id.starts_with("client_") && a.client_id != b.client_id);
    assert!(a.welcome["epoch"].is_string());

    let ack = a
        .command(
            "stock:update",
            json!([{"productId":1,"stock":100},{"productId":2,"stock":50}]),
        )
        .await?;
    assert_eq!(ack["type"], "ack");
    assert_eq!(ack["id"], 1);
    assert_eq!(ack["ids"], json!([1]));
    for other in [&mut b, &mut c] {
        let event = other.recv().await?;
        assert_eq!(event["event"], "stock:update");
        assert_eq!(event["id"], 1);
        assert_eq!(event["prev"], 0);
        assert_eq!(event["epoch"], a.welcome["epoch"]);
        assert_eq!(event["clientId"], a.client_id.as_str());
        assert_eq!(
            event["data"],
            json!([{"productId":1,"stock":100},{"productId":2,"stock":50}])
        );
        assert!(parse_iso8601(event["timestamp"].as_str().unwrap()).is_some());
        assert_eq!(event["scope"]["tenantId"], "default");
    }
    // Seed 000's add/subtract payloads keep their fields and gain the resulting stock.
    let ack = b
        .command("stock:subtract", json!([{"productId":1,"quantity":5}]))
        .await?;
    assert_eq!(
        (ack["id"].as_u64(), ack["prev"].as_u64()),
        (Some(2), Some(1))
    );
    let event = a.recv().await?;
    assert_eq!(
        event["data"],
        json!([{"productId":1,"quantity":5,"stock":95}])
    );
    assert_eq!(c.recv().await?["id"], 2);
    a.expect_silence(Duration::from_millis(300)).await?;
    b.expect_silence(Duration::from_millis(100)).await?;
    Ok(())
}

#[tokio::test]
async fn bad_commands_get_seed_errors_change_nothing_and_keep_the_connection() -> Result<()> {
    let hub = TestHub::start().await?;
    let mut a = hub.connect().await?;
    let mut watcher = hub.connect().await?;
    a.command("stock:update", json!([{"productId":1,"stock":10}]))
        .await?;
    watcher.recv().await?;

    let cases: Vec<(&str, &str, &str)> = vec![
        ("{not json", "Invalid JSON", ""),
        (
            r#"{"event":"stock:steal","data":[{"productId":1,"quantity":1}]}"#,
            "Unknown event",
            "stock:steal",
        ),
        (
            r#"{"event":"stock:add","data":[]}"#,
            "Validation failed",
            "data must not be empty",
        ),
        (
            r#"{"event":"stock:add","data":"lots"}"#,
            "Validation failed",
            "data must be an array, got string",
        ),
        (
            r#"{"event":"stock:add","data":[{"productId":1,"quantity":-3}]}"#,
            "Validation failed",
            "positive integer, got -3",
        ),
        (
            r#"{"event":"stock:add","data":[{"productId":1,"quantity":2.5}]}"#,
            "Validation failed",
            "positive integer, got 2.5",
        ),
        (
            r#"{"event":"stock:update","data":[{"productId":"x","stock":1}]}"#,
            "Validation failed",
            "productId",
        ),
        (
            r#"{"event":"stock:subtract","data":[{"productId":1,"quantity":15}]}"#,
            "Validation failed",
            "Stock insuficiente. Actual: 10, Solicitado: 15",
        ),
        (
            r#"{"event":"stock:subtract","data":[{"productId":1,"quantity":1},{"productId":99,"quantity":1}]}"#,
            "Validation failed",
            "Producto 99 no encontrado",
        ),
        (r#"{"hello":1}"#, "Invalid message format", ""),
    ];
    for (raw, error, reason) in cases {
        a.send_raw(raw).await?;
        let message = a.recv().await?;
        assert_eq!(message["event"], "stock:error", "{raw}");
        assert_eq!(message["data"]["error"], error, "{raw}: {message}");
        assert!(
            message["data"]["reason"].as_str().unwrap().contains(reason),
            "{raw}: {message}"
        );
        assert_eq!(message["clientId"], a.client_id.as_str());
        assert!(message["timestamp"].is_string());
        if raw.contains("subtract") {
            assert_eq!(message["data"]["originalEvent"], "stock:subtract");
        }
    }
    watcher.expect_silence(Duration::from_millis(300)).await?;
    assert_eq!(hub.stock(1).await?, 10);
    let (_, missing) = hub.get("/api/stock/99").await?;
    assert_eq!(missing["error"]["code"], "product_not_found");
    // Still usable after every error.
    let ack = a
        .command("stock:add", json!([{"productId":1,"quantity":1}]))
        .await?;
    assert_eq!(ack["id"], 2);
    Ok(())
}

#[tokio::test]
async fn rest_commands_reach_websocket_clients_and_state_is_readable() -> Result<()> {
    let hub = TestHub::start().await?;
    let mut ws = hub.connect().await?;
    let (status, body) = hub
        .post(
            "/api/stock/update",
            json!({"updates":[{"productId":1,"stock":75}]}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["success"].as_bool(),
            body["sentTo"].as_u64(),
            body["updates"].as_u64()
        ),
        (Some(true), Some(1), Some(1))
    );
    let event = ws.recv().await?;
    assert_eq!(
        (event["event"].as_str(), event["clientId"].as_str()),
        (Some("stock:update"), Some("rest"))
    );

    let (_, body) = hub
        .post(
            "/api/stock/add",
            json!({"additions":[{"productId":1,"quantity":25}]}),
        )
        .await?;
    assert_eq!(body["additions"], 1);
    assert_eq!(
        ws.recv().await?["data"],
        json!([{"productId":1,"quantity":25,"stock":100}])
    );
    let (_, body) = hub
        .post(
            "/api/stock/subtract",
            json!({"subtractions":[{"productId":1,"quantity":5}]}),
        )
        .await?;
    assert_eq!(body["subtractions"], 1);
    ws.recv().await?;
    let (_, body) = hub
        .post(
            "/api/stock/sync",
            json!({"stockData":[{"productId":1,"stock":125},{"productId":2,"stock":50}]}),
        )
        .await?;
    assert_eq!(body["stockData"], 2);
    assert_eq!(ws.recv().await?["event"], "stock:sync");

    let (status, one) = hub.get("/api/stock/1").await?;
    assert_eq!(
        (status, one["productId"].as_i64(), one["stock"].as_i64()),
        (200, Some(1), Some(125))
    );
    let (_, all) = hub.get("/api/stock").await?;
    assert_eq!(all["count"], 2);
    assert_eq!(all["lastEventId"], 4);
    let (_, status_body) = hub.get("/api/stock/status").await?;
    assert_eq!(status_body["connectedClients"], 1);
    assert!(status_body["timestamp"].is_string());

    // Errors: 400 naming the problem, 409 for business rules, nothing changes.
    let (status, err) = hub
        .post(
            "/api/stock/add",
            json!({"additions":[{"productId":1,"quantity":0}]}),
        )
        .await?;
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("additions[0].quantity"),
        "{err}"
    );
    let (status, err) = hub.post("/api/stock/add", json!({"updates":[]})).await?;
    assert_eq!(
        (status, err["error"]["message"].as_str()),
        (400, Some("additions is required (an array of lines)"))
    );
    let (status, err) = hub
        .post(
            "/api/stock/subtract",
            json!({"subtractions":[{"productId":2,"quantity":51}]}),
        )
        .await?;
    assert_eq!(
        (status, err["error"]["message"].as_str()),
        (409, Some("Stock insuficiente. Actual: 50, Solicitado: 51"))
    );
    let response = hub
        .client
        .post(format!("{}/api/stock/add", hub.http))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let err: Value = response.json().await?;
    assert_eq!(err["error"]["code"], "invalid_json");
    let (status, _) = hub.get("/api/stock/abc").await?;
    assert_eq!(status, 400);
    let huge = json!({"additions": (0..60_000).map(|i| json!({"productId": i + 1, "quantity": 1})).collect::<Vec<_>>()});
    let (status, err) = hub.post("/api/stock/add", huge).await?;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (413, Some("body_too_large"))
    );
    assert_eq!(hub.stock(2).await?, 50);
    ws.expect_silence(Duration::from_millis(200)).await?;
    Ok(())
}

#[tokio::test]
async fn resume_replays_exactly_the_missed_events() -> Result<()> {
    let hub = TestHub::start().await?;
    let mut writer = hub.connect().await?;
    let mut reader = hub.connect().await?;
    for i in 1..=3 {
        writer
            .command("stock:add", json!([{"productId":1,"quantity":i}]))
            .await?;
        assert_eq!(reader.recv().await?["id"], i);
    }
    let epoch = reader.welcome["epoch"].as_str().unwrap().to_owned();
    drop(reader);
    for i in 4..=8 {
        writer
            .command("stock:add", json!([{"productId":1,"quantity":i}]))
            .await?;
    }
    let mut back = Client::connect(&format!("{}&lastEventId=3&epoch={epoch}", hub.ws)).await?;
    for id in 4..=8 {
        let event = back.recv().await?;
        assert_eq!(
            (event["id"].as_u64(), event["prev"].as_u64()),
            (Some(id), Some(id - 1)),
            "{event}"
        );
        assert_eq!(event["data"][0]["quantity"], id);
    }
    let done = back.recv().await?;
    assert_eq!(
        (
            done["type"].as_str(),
            done["lastEventId"].as_u64(),
            done["replayed"].as_u64()
        ),
        (Some("sync_complete"), Some(8), Some(5))
    );
    // Live events continue right after, without duplicates.
    writer
        .command("stock:add", json!([{"productId":1,"quantity":1}]))
        .await?;
    assert_eq!(back.recv().await?["id"], 9);

    // request_sync at any time replays again from the given id.
    back.send(json!({"type":"request_sync","lastEventId":7}))
        .await?;
    assert_eq!(back.recv().await?["id"], 8);
    assert_eq!(back.recv().await?["id"], 9);
    assert_eq!(back.recv().await?["type"], "sync_complete");
    // Nothing missed: request_sync at the head replays nothing.
    back.send(json!({"type":"request_sync","lastEventId":9}))
        .await?;
    let done = back.recv().await?;
    assert_eq!(
        (done["type"].as_str(), done["replayed"].as_u64()),
        (Some("sync_complete"), Some(0))
    );
    back.send(json!({"type":"ping"})).await?;
    assert_eq!(back.recv().await?["type"], "pong");
    Ok(())
}

#[tokio::test]
async fn a_gap_older_than_the_log_gets_a_full_refresh() -> Result<()> {
    let hub = TestHub::start_with(|c| c.server.store.event_retention = 3).await?;
    let mut writer = hub.connect().await?;
    for i in 1..=10 {
        writer
            .command("stock:update", json!([{"productId":i % 3 + 1,"stock":i}]))
            .await?;
    }
    // Pruning runs on the writer at most once a second; wait until the log has dropped id 2.
    let mut refreshed = None;
    for _ in 0..50 {
        let mut c = Client::connect(&format!("{}&lastEventId=1", hub.ws)).await?;
        let first = c.recv().await?;
        if first["type"] == "full_refresh" {
            refreshed = Some((first, c.recv().await?));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer
            .command("stock:add", json!([{"productId":1,"quantity":1}]))
            .await?;
    }
    let (refresh, done) = refreshed.expect("a full_refresh once the log is pruned");
    let head = refresh["lastEventId"].as_u64().unwrap();
    assert!(head >= 10);
    let (_, all) = hub.get("/api/stock").await?;
    let expected: Vec<Value> = items(&all["data"])
        .iter()
        .map(|r| json!({"productId": r["productId"], "stock": r["stock"]}))
        .collect();
    assert_eq!(refresh["stock"], Value::Array(expected));
    assert_eq!(refresh["epoch"], writer.welcome["epoch"]);
    assert_eq!(
        (done["type"].as_str(), done["lastEventId"].as_u64()),
        (Some("sync_complete"), Some(head))
    );

    // A different epoch (the log was replaced) also means a full refresh.
    let mut c = Client::connect(&format!(
        "{}&lastEventId={head}&epoch=somethingelse",
        hub.ws
    ))
    .await?;
    assert_eq!(c.recv().await?["type"], "full_refresh");
    // So does an id from the future.
    let mut c = Client::connect(&format!("{}&lastEventId=999999", hub.ws)).await?;
    assert_eq!(c.recv().await?["type"], "full_refresh");
    Ok(())
}

#[tokio::test]
async fn ids_epoch_and_stock_survive_a_restart() -> Result<()> {
    let mut hub = TestHub::start().await?;
    let mut a = hub.connect().await?;
    a.command(
        "stock:update",
        json!([{"productId":1,"stock":40},{"productId":2,"stock":7}]),
    )
    .await?;
    a.command("stock:subtract", json!([{"productId":1,"quantity":15}]))
        .await?;
    let epoch = a.welcome["epoch"].clone();
    drop(a);
    hub.stop().await?;

    let dir = std::mem::replace(&mut hub.dir, support::data_dir()?);
    let config = support::config(&dir);
    let hub = TestHub::start_in(dir, config).await?;
    assert_eq!(hub.stock(1).await?, 25);
    assert_eq!(hub.stock(2).await?, 7);
    let mut b = Client::connect(&format!("{}&lastEventId=1", hub.ws)).await?;
    assert_eq!(b.welcome["epoch"], epoch);
    assert_eq!(b.welcome["lastEventId"], 2);
    assert_eq!(b.recv().await?["id"], 2);
    assert_eq!(b.recv().await?["type"], "sync_complete");
    let ack = b
        .command("stock:add", json!([{"productId":2,"quantity":1}]))
        .await?;
    assert_eq!(ack["id"], 3);
    Ok(())
}

#[tokio::test]
async fn hundred_concurrent_subtracts_on_fifty_sell_exactly_fifty() -> Result<()> {
    let hub = TestHub::start().await?;
    let (status, _) = hub
        .post(
            "/api/stock/update",
            json!({"updates":[{"productId":1,"stock":50}]}),
        )
        .await?;
    assert_eq!(status, 200);
    let rest = (0..50).map(|_| async {
        let (status, _) = hub
            .post(
                "/api/stock/subtract",
                json!({"subtractions":[{"productId":1,"quantity":1}]}),
            )
            .await?;
        anyhow::Ok(usize::from(status == 200))
    });
    let ws = (0..10).map(|_| async {
        let mut client = hub.connect().await?;
        for _ in 0..5 {
            client
                .send(json!({"event":"stock:subtract","data":[{"productId":1,"quantity":1}]}))
                .await?;
        }
        let (mut ok, mut answered) = (0, 0);
        while answered < 5 {
            let message = client.recv().await?;
            if message["type"] == "ack" {
                ok += 1;
                answered += 1;
            } else if message["event"] == "stock:error" {
                assert!(
                    message["data"]["reason"]
                        .as_str()
                        .unwrap()
                        .starts_with("Stock insuficiente. Actual: 0"),
                    "{message}"
                );
                answered += 1;
            }
        }
        anyhow::Ok(ok)
    });
    let (rest, ws) = tokio::join!(join_all(rest), join_all(ws));
    let succeeded: usize = rest
        .into_iter()
        .chain(ws)
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .sum();
    assert_eq!(succeeded, 50);
    assert_eq!(hub.stock(1).await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_and_nobody_else_waits() -> Result<()> {
    let hub = TestHub::start_with(|c| {
        c.server.send_queue = 16;
        c.server.write_timeout = Duration::from_secs(2);
    })
    .await?;
    let mut slow = Client::connect_small_buffer(&hub.ws).await?; // never reads until the end
    let mut fast = hub.connect().await?;
    let lines: Vec<Value> = (1..=100)
        .map(|p| json!({"productId": p, "quantity": 1}))
        .collect();
    let total = 3000;
    let fast_reader = tokio::spawn(async move {
        let mut seen = 0u64;
        while seen < total {
            let event = fast.recv().await?;
            seen += 1;
            anyhow::ensure!(event["id"] == seen, "fast client got {event} as #{seen}");
        }
        anyhow::Ok(seen)
    });
    // Four REST producers: the slow client's queue overflows long before they finish.
    let producers = (0..4).map(|_| async {
        for _ in 0..total / 4 {
            let (status, body) = hub
                .post("/api/stock/add", json!({"additions": lines}))
                .await?;
            anyhow::ensure!(status == 200, "{body}");
        }
        anyhow::Ok(())
    });
    join_all(producers)
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    assert_eq!(fast_reader.await??, total);
    let (ended, received) = slow.until_end().await?;
    assert!(
        (received as u64) < total,
        "the slow client got everything ({received})"
    );
    if let Ended::Closed(Some((code, reason))) = &ended {
        assert_eq!(u16::from(*code), 4000);
        assert!(reason.contains("lastEventId="), "{reason}");
    }
    Ok(())
}

#[tokio::test]
async fn dead_connections_are_dropped_and_oversize_messages_refused() -> Result<()> {
    let hub = TestHub::start_with(|c| {
        c.server.ping_interval = Duration::from_millis(300);
        c.server.max_message_bytes = 1000;
    })
    .await?;
    let mut live = hub.connect().await?;
    let mut big = String::from(r#"{"event":"stock:add","data":["#);
    big.push_str(&"{\"productId\":1,\"quantity\":1},".repeat(50));
    big.push_str(r#"{"productId":1,"quantity":1}]}"#);
    live.send_raw(&big).await?;
    let err = live.recv().await?;
    assert_eq!(err["data"]["error"], "Message too large");

    // A client that never reads never answers pings: it is dropped.
    let _dead = hub.connect().await?;
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // `live` keeps answering pings because it reads.
        live.send(json!({"type":"ping"})).await?;
        assert_eq!(live.recv().await?["type"], "pong");
        let (_, status) = hub.get("/api/stock/status").await?;
        if status["connectedClients"] == 1 {
            gone = true;
            break;
        }
    }
    assert!(gone, "the silent connection was not dropped");
    Ok(())
}

#[tokio::test]
async fn retried_commands_with_an_op_id_apply_once() -> Result<()> {
    let hub = TestHub::start().await?;
    let mut a = hub.connect().await?;
    a.command("stock:update", json!([{"productId":1,"stock":10}]))
        .await?;
    let send =
        json!({"event":"stock:subtract","data":[{"productId":1,"quantity":4}],"opId":"sale-1"});
    a.send(send.clone()).await?;
    let first = a.recv().await?;
    a.send(send).await?;
    let again = a.recv().await?;
    assert_eq!(
        (first["id"].as_u64(), again["id"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["opId"], "sale-1");
    a.send(
        json!({"event":"stock:subtract","data":[{"productId":1,"quantity":99}],"opId":"sale-big"}),
    )
    .await?;
    let refused = a.recv().await?;
    assert_eq!(
        (refused["event"].as_str(), refused["data"]["opId"].as_str()),
        (Some("stock:error"), Some("sale-big"))
    );
    let response = hub
        .client
        .post(format!("{}/api/stock/subtract", hub.http))
        .header("idempotency-key", "sale-2")
        .json(&json!({"subtractions":[{"productId":1,"quantity":1}]}));
    let one: Value = response.try_clone().unwrap().send().await?.json().await?;
    let two: Value = response.send().await?.json().await?;
    assert_eq!(
        (
            one["id"].as_u64(),
            two["id"].as_u64(),
            two["duplicate"].as_bool()
        ),
        (Some(3), Some(3), Some(true))
    );
    assert_eq!(hub.stock(1).await?, 5);
    Ok(())
}

/// Seed 000's `setValidator`: custom rules run on the writer, against current stock.
struct NoBulkSales;

impl stocky_core::stock::BusinessValidator for NoBulkSales {
    fn validate(
        &self,
        command: &stocky_core::stock::StockCommand,
        stock: &mut dyn stocky_core::stock::StockView,
    ) -> Result<(), String> {
        for line in &command.lines {
            let on_hand = stock.on_hand(line.product_id).unwrap_or(0);
            if command.op == stocky_core::stock::StockOp::Subtract && line.amount * 2 > on_hand {
                return Err(format!(
                    "no sale may take half of product {} ({on_hand} on hand)",
                    line.product_id
                ));
            }
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_custom_validator_refuses_commands_before_they_apply() -> Result<()> {
    let dir = support::data_dir()?;
    let config = support::config(&dir);
    let hub = stocky_hub::Hub::start_with(config, Some(std::sync::Arc::new(NoBulkSales))).await?;
    let url = format!("ws://{}/ws?token={}", hub.local_addr(), support::ADMIN);
    let mut a = Client::connect(&url).await?;
    a.command("stock:update", json!([{"productId":1,"stock":10}]))
        .await?;
    let refused = a
        .command("stock:subtract", json!([{"productId":1,"quantity":6}]))
        .await?;
    assert_eq!(refused["data"]["error"], "Validation failed");
    assert_eq!(refused["data"]["code"], "rejected_by_validator");
    assert_eq!(
        refused["data"]["reason"],
        "no sale may take half of product 1 (10 on hand)"
    );
    let ack = a
        .command("stock:subtract", json!([{"productId":1,"quantity":4}]))
        .await?;
    assert_eq!(ack["id"], 2);
    assert_eq!(ack["data"], json!([{"productId":1,"quantity":4,"stock":6}]));
    hub.stop().await?;
    Ok(())
}

#[tokio::test]
async fn unknown_routes_get_the_error_envelope() -> Result<()> {
    let hub = TestHub::start().await?;
    let (status, body) = hub.get("/api/nothing").await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    Ok(())
}

#[tokio::test]
async fn shutdown_finishes_pending_commits_and_acks_them() -> Result<()> {
    let mut hub = TestHub::start().await?;
    let mut a = hub.connect().await?;
    for _ in 0..200 {
        a.send(json!({"event":"stock:add","data":[{"productId":1,"quantity":1}]}))
            .await?;
    }
    // Stop while commands are in flight: after the first ack, before the last.
    assert_eq!(a.recv().await?["type"], "ack");
    let stopping = hub.stop();
    let counting = async {
        let (mut acks, mut close) = (1, None);
        loop {
            match tokio::time::timeout(support::WAIT, futures_util::StreamExt::next(&mut a.ws))
                .await?
            {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                    if serde_json::from_str::<Value>(&t)?["type"] == "ack" {
                        acks += 1;
                    }
                }
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => {
                    close = frame;
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
        anyhow::Ok((acks, close))
    };
    let (stopped, counted) = tokio::join!(stopping, counting);
    stopped?;
    let (acks, close) = counted?;
    let close = close.expect("a close frame");
    assert_eq!(u16::from(close.code), 1012);
    assert!(
        close.reason.contains(&format!("lastEventId={acks}")),
        "{}",
        close.reason
    );

    let dir = std::mem::replace(&mut hub.dir, support::data_dir()?);
    let config = support::config(&dir);
    let again = TestHub::start_in(dir, config).await?;
    assert_eq!(
        again.stock(1).await?,
        acks as i64,
        "every acknowledged command, and nothing else, was committed"
    );
    Ok(())
}

#[tokio::test]
async fn a_database_outage_gives_503_and_the_hub_reconnects_by_itself() -> Result<()> {
    let hub = TestHub::start().await?;
    let Some(database) = hub.dir.postgres() else {
        return Ok(()); // an embedded SQLite file does not go away
    };
    let add = json!({"additions": [{"productId": 1, "quantity": 5}]});
    assert_eq!(hub.post("/api/stock/add", add.clone()).await?.0, 200);
    let mut client = hub.connect().await?;
    let (status, body) = hub
        .post(
            "/api/admin/users",
            json!({"email": "till@shop.test", "password": "correct horse battery", "role": "cashier"}),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    let (token, _) = hub.login("till@shop.test", "correct horse battery").await?;

    let (status, ready) = hub.as_(None, "GET", "/readyz", None).await?;
    assert_eq!(
        (status, ready["status"].as_str()),
        (200, Some("ready")),
        "{ready}"
    );
    database.set_unreachable(true);
    let (status, ready) = hub.as_(None, "GET", "/readyz", None).await?;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["checks"]["database"]["ready"], false, "{ready}");
    assert_eq!(ready["checks"]["writer"]["ready"], true);
    let (status, _) = hub.as_(None, "GET", "/healthz", None).await?;
    assert_eq!(status, 200, "the process still answers");
    // A good token that cannot be checked now is not called invalid: 1013, retry later.
    let (mut user, _) = tokio_tungstenite::connect_async(hub.ws_with(&token, "")).await?;
    use futures_util::StreamExt;
    let answer = user.next().await.unwrap()?;
    assert!(answer.to_text()?.contains("auth_error"), "{answer}");
    let closed = user.next().await.unwrap()?;
    assert!(
        matches!(&closed, tokio_tungstenite::tungstenite::Message::Close(Some(f)) if u16::from(f.code) == 1013),
        "{closed:?}"
    );
    let (status, body) = hub.post("/api/stock/add", add.clone()).await?;
    assert_eq!(status, 503, "{body}");
    let refused = client
        .command("stock:add", json!([{"productId": 1, "quantity": 5}]))
        .await?;
    assert_eq!(refused["event"], "stock:error", "{refused}");
    let (status, _) = hub.call("GET", "/api/stock", None, &[]).await?;
    assert_eq!(status, 503, "reads fail clearly too");

    database.set_unreachable(false);
    let mut recovered = false;
    for _ in 0..50 {
        if hub.post("/api/stock/add", add.clone()).await?.0 == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the hub did not reconnect");
    let (status, _) = hub.as_(None, "GET", "/readyz", None).await?;
    assert_eq!(status, 200, "ready again");
    // Exactly the two commands that were answered 200 changed anything.
    assert_eq!(hub.stock(1).await?, 10);
    let (_, ledger) = hub.get("/api/backup/_stock").await?;
    let movements = ledger["backup"]["movements"].as_array().map_or(0, Vec::len);
    assert_eq!(movements, 2, "{ledger}");
    Ok(())
}

#[tokio::test]
async fn health_readiness_and_version_answer_without_credentials() -> Result<()> {
    let hub = TestHub::start().await?;
    let (status, health) = hub.as_(None, "GET", "/healthz", None).await?;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, ready) = hub.as_(None, "GET", "/readyz", None).await?;
    assert_eq!(
        (status, ready["status"].as_str()),
        (200, Some("ready")),
        "{ready}"
    );
    assert_eq!(ready["checks"]["database"]["ready"], true);
    let (status, version) = hub.as_(None, "GET", "/version", None).await?;
    assert_eq!(status, 200);
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"), "{version}");
    Ok(())
}

#[tokio::test]
async fn a_start_that_cannot_bind_creates_no_owner() -> Result<()> {
    let busy = std::net::TcpListener::bind("127.0.0.1:0")?;
    let dir = support::data_dir()?;
    let mut config = support::config(&dir);
    config.server.listen = busy.local_addr()?;
    let refused = stocky_hub::Hub::start(config).await;
    assert!(
        matches!(
            refused,
            Err(stocky_hub::HubError::Gateway(
                stocky_server::GatewayError::Bind { .. }
            ))
        ),
        "{:?}",
        refused.err()
    );
    // The next start on the same data is still the first: it creates the owner and
    // returns the password to show.
    let hub = stocky_hub::Hub::start(support::config(&dir)).await?;
    let (email, password) = hub
        .initial_owner
        .clone()
        .expect("the owner is created by the start that serves");
    let login = reqwest::Client::new()
        .post(format!("http://{}/api/auth/login", hub.local_addr()))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await?;
    assert_eq!(login.status().as_u16(), 200);
    hub.stop().await?;
    Ok(())
}
