//! End-to-end tests of document collections and backups (seed 000 data API).

use stocky_test_support as support;

use std::time::Duration;

use anyhow::Result;
use futures_util::future::join_all;
use serde_json::json;
use stocky_core::time::{iso8601, parse_iso8601};
use support::{Client, TestHub};

const P: &str = "/api/sync/DefautlDB/products";

#[tokio::test]
async fn records_get_ids_timestamps_versions_and_flow_live() -> Result<()> {
    let hub = TestHub::start().await?;
    let mut watcher = hub.connect().await?;
    let (status, body) = hub
        .post(P, json!({"data":[{"id":"1","name":"Producto A","price":100},{"name":"Producto B","price":200}]}))
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["synced"].as_u64(),
            body["created"].as_u64(),
            body["updated"].as_u64()
        ),
        (Some(2), Some(2), Some(0))
    );
    let event = watcher.recv().await?;
    assert_eq!(
        (event["event"].as_str(), event["data"]["db"].as_str()),
        (Some("sync:upsert"), Some("DefautlDB"))
    );
    assert_eq!(event["data"]["records"].as_array().unwrap().len(), 2);

    let (_, list) = hub.get(P).await?;
    assert_eq!(list["count"], 2);
    // Both were created in the same millisecond: the listing orders them by id then.
    let records = list["data"].as_array().unwrap();
    let first = records
        .iter()
        .find(|r| r["id"] == "1")
        .expect("the record with the given id");
    assert_eq!(first["version"], 1);
    assert!(parse_iso8601(first["created_at"].as_str().unwrap()).is_some());
    let other = records.iter().find(|r| r["id"] != "1").unwrap();
    let generated = other["id"].as_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");

    let (_, put) = hub
        .call(
            "PUT",
            &format!("{P}/1"),
            Some(json!({"name":"Producto Actualizado","price":150})),
            &[],
        )
        .await?;
    assert_eq!(
        (
            put["data"]["version"].as_i64(),
            put["data"]["price"].as_i64()
        ),
        (Some(2), Some(150))
    );
    assert_eq!(put["data"]["created_at"], first["created_at"]);
    let (_, patched) = hub
        .call("PATCH", &format!("{P}/1"), Some(json!({"price":175})), &[])
        .await?;
    assert_eq!(
        patched["data"],
        json!({"id":"1","name":"Producto Actualizado","price":175,
        "created_at": first["created_at"], "updated_at": patched["data"]["updated_at"], "version": 3})
    );
    assert_eq!(watcher.recv().await?["data"]["records"][0]["version"], 2);
    assert_eq!(watcher.recv().await?["data"]["records"][0]["price"], 175);

    let (status, _) = hub.call("DELETE", &format!("{P}/1"), None, &[]).await?;
    assert_eq!(status, 200);
    let deleted = watcher.recv().await?;
    assert_eq!(deleted["event"], "sync:delete");
    assert_eq!(
        deleted["data"]["records"][0],
        json!({"id":"1","version":4,"_deleted":true,"updated_at":deleted["data"]["records"][0]["updated_at"]})
    );
    let (status, err) = hub.call("DELETE", &format!("{P}/1"), None, &[]).await?;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _) = hub.get(&format!("{P}/1")).await?;
    assert_eq!(status, 404);

    // Document events resume like stock events.
    let mut back = Client::connect(&format!("{}&lastEventId=2", hub.ws)).await?;
    assert_eq!(back.recv().await?["data"]["records"][0]["version"], 3);
    assert_eq!(back.recv().await?["event"], "sync:delete");
    assert_eq!(back.recv().await?["type"], "sync_complete");
    Ok(())
}

#[tokio::test]
async fn since_returns_exactly_the_later_changes_and_stats_count_them() -> Result<()> {
    let hub = TestHub::start().await?;
    hub.post(
        P,
        json!({"data":[{"id":"a","v":1},{"id":"b","v":1},{"id":"c","v":1}]}),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (_, list) = hub.get(P).await?;
    let mark = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| parse_iso8601(r["updated_at"].as_str().unwrap()).unwrap())
        .max()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    hub.call("PATCH", &format!("{P}/b"), Some(json!({"v":2})), &[])
        .await?;
    hub.call("DELETE", &format!("{P}/c"), None, &[]).await?;
    let (status, since) = hub.get(&format!("{P}/since/{}", iso8601(mark))).await?;
    assert_eq!(status, 200, "{since}");
    let changes: Vec<(String, bool)> = since["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r["_deleted"] == true))
        .collect();
    assert_eq!(
        changes,
        vec![("b".to_string(), false), ("c".to_string(), true)]
    );
    let (_, everything) = hub
        .get(&format!("{P}/since/2000-01-01T00:00:00.000Z"))
        .await?;
    assert_eq!(everything["count"], 3);
    let (status, err) = hub.get(&format!("{P}/since/yesterday")).await?;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_timestamp"))
    );

    let (_, stats) = hub.get(&format!("{P}/stats")).await?;
    assert_eq!(
        (
            stats["total"].as_i64(),
            stats["updatedLast24h"].as_i64(),
            stats["updatedLast7d"].as_i64()
        ),
        (Some(2), Some(2), Some(2))
    );
    assert!(
        stats["oldestRecord"].is_string()
            && stats["newestRecord"].is_string()
            && stats["timestamp"].is_string()
    );
    Ok(())
}

#[tokio::test]
async fn stale_versions_conflict_and_concurrent_patches_lose_nothing() -> Result<()> {
    let hub = TestHub::start().await?;
    hub.call("PUT", &format!("{P}/r"), Some(json!({"n":0})), &[])
        .await?;
    let (status, err) = hub
        .call(
            "PUT",
            &format!("{P}/r"),
            Some(json!({"n":1})),
            &[("if-match", "\"7\"")],
        )
        .await?;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("version_conflict"))
    );
    let (status, err) = hub
        .call(
            "PATCH",
            &format!("{P}/r"),
            Some(json!({"n":1,"version":3})),
            &[],
        )
        .await?;
    assert_eq!(status, 409, "{err}");
    let (status, ok) = hub
        .call(
            "PATCH",
            &format!("{P}/r"),
            Some(json!({"n":1,"version":1})),
            &[],
        )
        .await?;
    assert_eq!((status, ok["data"]["version"].as_i64()), (200, Some(2)));

    let path = format!("{P}/r");
    let patches = (0..40).map(|i| hub.call("PATCH", &path, Some(json!({format!("f{i}"): i})), &[]));
    for result in join_all(patches).await {
        assert_eq!(result?.0, 200);
    }
    let (_, record) = hub.get(&format!("{P}/r")).await?;
    for i in 0..40 {
        assert_eq!(record["data"][format!("f{i}")], i, "field f{i} lost");
    }
    assert_eq!(record["data"]["version"], 42);
    Ok(())
}

async fn seed_data(hub: &TestHub) -> Result<()> {
    hub.post(
        P,
        json!({"data":[{"id":"1","name":"A"},{"id":"2","name":"B"}]}),
    )
    .await?;
    hub.post(
        "/api/sync/DefautlDB/customers",
        json!({"data":[{"id":"c1","name":"Ana"}]}),
    )
    .await?;
    hub.post(
        "/api/stock/update",
        json!({"updates":[{"productId":1,"stock":40},{"productId":2,"stock":9}]}),
    )
    .await?;
    hub.post(
        "/api/stock/subtract",
        json!({"subtractions":[{"productId":1,"quantity":15}]}),
    )
    .await?;
    hub.post(
        "/api/stock/add",
        json!({"additions":[{"productId":3,"quantity":5}]}),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn backup_wipe_restore_gives_identical_documents_and_stock() -> Result<()> {
    let hub = TestHub::start().await?;
    seed_data(&hub).await?;
    let (_, listing) = hub.get("/api/backup").await?;
    let names: Vec<&str> = listing["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["DefautlDB", "_stock"]);
    assert_eq!(listing["databases"][0]["totalRecords"], 3);

    let (status, backup) = hub.get("/api/backup/DefautlDB").await?;
    assert_eq!(status, 200);
    assert_eq!(
        (backup["database"].as_str(), backup["totalRecords"].as_u64()),
        (Some("DefautlDB"), Some(3))
    );
    assert_eq!(backup["stores"], json!(["customers", "products"]));
    assert_eq!(backup["metadata"]["version"], "1.0");
    let (_, ledger) = hub.get("/api/backup/_stock").await?;
    assert_eq!(ledger["backup"]["movements"].as_array().unwrap().len(), 4);
    let (_, products_before) = hub.get(P).await?;

    let (status, dropped) = hub
        .call("DELETE", "/api/backup/DefautlDB", None, &[])
        .await?;
    assert_eq!((status, dropped["deleted"].as_i64()), (200, Some(3)));
    let (_, empty) = hub.get(P).await?;
    assert_eq!(empty["count"], 0);
    let (status, restored) = hub
        .post("/api/backup/DefautlDB/restore", backup.clone())
        .await?;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(
        (
            restored["restored"].as_i64(),
            restored["updated"].as_i64(),
            restored["skipped"].as_i64()
        ),
        (Some(3), Some(0), Some(0))
    );
    let (_, products_after) = hub.get(P).await?;
    assert_eq!(products_after["data"], products_before["data"]);

    // The ledger restored into an empty hub reproduces every product's stock exactly.
    let other = TestHub::start().await?;
    let mut watcher = other.connect().await?;
    let (status, restored) = other
        .post("/api/backup/_stock/restore", ledger.clone())
        .await?;
    assert_eq!(
        (status, restored["restored"].as_i64()),
        (200, Some(4)),
        "{restored}"
    );
    for (product, stock) in [(1, 25), (2, 9), (3, 5)] {
        assert_eq!(other.stock(product).await?, stock);
        assert_eq!(other.stock(product).await?, hub.stock(product).await?);
    }
    let event = watcher.recv().await?;
    assert_eq!(event["event"], "stock:sync");
    // Restoring the same ledger again changes nothing.
    let (_, again) = other.post("/api/backup/_stock/restore", ledger).await?;
    assert_eq!(
        (again["restored"].as_i64(), again["skipped"].as_i64()),
        (Some(0), Some(4))
    );
    assert_eq!(other.stock(1).await?, 25);
    Ok(())
}

#[tokio::test]
async fn merge_strategies_and_compare() -> Result<()> {
    let hub = TestHub::start().await?;
    hub.post(
        P,
        json!({"data":[{"id":"1","name":"old"},{"id":"2","name":"same"},{"id":"3","name":"mine"}]}),
    )
    .await?;
    let backup = |name1: &str, updated: &str| {
        json!({"backup":{"products":[
        {"id":"1","name":name1,"updated_at":updated},
        {"id":"2","name":"same","updated_at":"2000-01-01T00:00:00.000Z"},
        {"id":"4","name":"new"}]}})
    };
    let (_, cmp) = hub
        .post(
            "/api/backup/DefautlDB/compare",
            backup("changed", "2000-01-01T00:00:00.000Z"),
        )
        .await?;
    assert_eq!(
        cmp["comparison"]["products"],
        json!({"onlyInBackup":1,"onlyInCurrent":1,"different":1,"same":1})
    );

    // newer: the backup's records are older than ours, so only the missing one is restored.
    let mut body = backup("changed", "2000-01-01T00:00:00.000Z");
    body["mergeStrategy"] = json!("newer");
    let (_, r) = hub.post("/api/backup/DefautlDB/restore", body).await?;
    assert_eq!(
        (
            r["restored"].as_i64(),
            r["updated"].as_i64(),
            r["skipped"].as_i64()
        ),
        (Some(1), Some(0), Some(2))
    );
    // newer with a later timestamp wins.
    let mut body = backup("newer", "2999-01-01T00:00:00.000Z");
    body["mergeStrategy"] = json!("newer");
    let (_, r) = hub.post("/api/backup/DefautlDB/restore", body).await?;
    assert_eq!(
        (
            r["restored"].as_i64(),
            r["updated"].as_i64(),
            r["skipped"].as_i64()
        ),
        (Some(0), Some(1), Some(2))
    );
    // skip never overwrites.
    let mut body = backup("skipped", "2999-06-01T00:00:00.000Z");
    body["mergeStrategy"] = json!("skip");
    let (_, r) = hub.post("/api/backup/DefautlDB/restore", body).await?;
    assert_eq!(
        (
            r["restored"].as_i64(),
            r["updated"].as_i64(),
            r["skipped"].as_i64()
        ),
        (Some(0), Some(0), Some(3))
    );
    // force always does; versions never go backwards.
    let mut body = backup("forced", "2000-01-01T00:00:00.000Z");
    body["mergeStrategy"] = json!("force");
    let (_, r) = hub.post("/api/backup/DefautlDB/restore", body).await?;
    assert_eq!(
        (
            r["restored"].as_i64(),
            r["updated"].as_i64(),
            r["skipped"].as_i64()
        ),
        (Some(0), Some(3), Some(0))
    );
    let (_, one) = hub.get(&format!("{P}/1")).await?;
    assert_eq!(
        (
            one["data"]["name"].as_str(),
            one["data"]["version"].as_i64()
        ),
        (Some("forced"), Some(3))
    );
    // overwrite: only the backup's records remain.
    let mut body = backup("x", "2000-01-01T00:00:00.000Z");
    body["overwrite"] = json!(true);
    hub.post("/api/backup/DefautlDB/restore", body).await?;
    let (_, all) = hub.get(P).await?;
    assert_eq!(all["count"], 3);
    Ok(())
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_changes_nothing() -> Result<()> {
    let hub = TestHub::start_with(|c| c.server.max_restore_bytes = 4096).await?;
    hub.post(P, json!({"data":[{"id":"1","name":"A"}]})).await?;
    let before = hub.get(P).await?.1["data"].clone();

    // A malformed backup: the second record is bad, so the first must not apply either.
    let bad = json!({"backup":{"products":[{"id":"9","name":"Z"},{"id":"10","updated_at":"not a date"}]},"mergeStrategy":"force"});
    let (status, err) = hub.post("/api/backup/DefautlDB/restore", bad).await?;
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("backup.products[1].updated_at"),
        "{err}"
    );
    let big = json!({"backup":{"products":(0..200).map(|i| json!({"id": i.to_string(), "pad": "x".repeat(40)})).collect::<Vec<_>>()}});
    let (status, err) = hub.post("/api/backup/DefautlDB/restore", big).await?;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (413, Some("body_too_large"))
    );
    assert_eq!(hub.get(P).await?.1["data"], before);

    for path in [
        "/api/sync/..%2Fetc/products",
        "/api/sync/DefautlDB/drop%20table",
        "/api/sync/_stock/x",
        "/api/backup/a;b",
    ] {
        let (status, err) = hub.get(path).await?;
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (400, Some("invalid_name")),
            "{path}: {err}"
        );
    }
    let response = hub
        .client
        .post(format!("{}{P}", hub.http))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let (status, err) = hub.post(P, json!({"data":[{"id":{"x":1}}]})).await?;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_data"))
    );
    let (status, _) = hub
        .call("PUT", &format!("{P}/1"), Some(json!([1, 2])), &[])
        .await?;
    assert_eq!(status, 400);
    let (status, _) = hub.call("DELETE", &format!("{P}/nope"), None, &[]).await?;
    assert_eq!(status, 404);
    let (status, _) = hub
        .call("DELETE", "/api/backup/nothing-here", None, &[])
        .await?;
    assert_eq!(status, 404);
    let (status, _) = hub.call("DELETE", "/api/backup/_stock", None, &[]).await?;
    assert_eq!(status, 400);
    assert_eq!(hub.get(P).await?.1["data"], before);
    let (_, status_body) = hub.get("/api/stock/status").await?;
    assert_eq!(
        status_body["lastEventId"], 1,
        "refused writes produced no events"
    );
    Ok(())
}
