//! `GET /api/openapi.json` and `/docs`: the document is OpenAPI 3.1, lists the seeds' routes,
//! every operation it lists is served (no fallback 404, no 405) and answers with a status it
//! documents, and errors axum itself produces carry the error envelope.
//! (The thorough check is schemathesis in `.ci/run`: `.ci/schemathesis.sh`.)

use stocky_test_support as support;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use support::TestHub;

async fn document(hub: &TestHub) -> Result<Value> {
    // Public: no credentials.
    let response = reqwest::get(format!("{}/api/openapi.json", hub.http)).await?;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str()?,
        "application/json"
    );
    Ok(response.json().await?)
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_lists_the_seed_routes() -> Result<()> {
    let hub = TestHub::start().await?;
    let spec = document(&hub).await?;
    assert_eq!(spec["openapi"], "3.1.0");
    assert_eq!(spec["info"]["title"], "Stocky hub");
    let paths = spec["paths"].as_object().context("paths")?;
    for (path, method) in [
        ("/api/stock", "get"),
        ("/api/stock/status", "get"),
        ("/api/stock/update", "post"),
        ("/api/stock/add", "post"),
        ("/api/stock/subtract", "post"),
        ("/api/stock/sync", "post"),
        ("/api/sync/{db}/{store}", "post"),
        ("/api/sync/{db}/{store}/{id}", "put"),
        ("/api/sync/{db}/{store}/since/{timestamp}", "get"),
        ("/api/backup/{db}", "get"),
        ("/api/backup/{db}/restore", "post"),
        ("/api/sync/push", "post"),
        ("/api/sync/pull", "post"),
        ("/api/sales", "post"),
        ("/api/orders", "post"),
        ("/api/sync/customers/changes", "get"),
        ("/api/transfers/request", "post"),
        ("/api/auth/login", "post"),
        ("/activate", "post"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is not in the document"
        );
    }
    // Login is public; stock commands need credentials and take an Idempotency-Key.
    assert_eq!(paths["/api/auth/login"]["post"]["security"], json!([]));
    let update = &paths["/api/stock/update"]["post"];
    assert!(update.get("security").is_none());
    assert!(update["parameters"]
        .as_array()
        .context("parameters")?
        .iter()
        .any(|p| p["name"] == "Idempotency-Key"));
    // The body schema comes from the parser's limits.
    let line = &update["requestBody"]["content"]["application/json"]["schema"]["properties"]
        ["updates"]["items"];
    assert_eq!(line["required"], json!(["productId", "stock"]), "{line}");
    // Every error is the envelope.
    assert_eq!(
        update["responses"]["409"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorEnvelope"
    );
    assert!(spec["components"]["schemas"]["StockListing"].is_object());
    Ok(())
}

/// Fills `{name}` segments with `value`.
fn concrete(path: &str, value: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                value
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_documented_operation_is_served_and_answers_as_documented() -> Result<()> {
    let hub = TestHub::start().await?;
    let spec = document(&hub).await?;
    let mut checked = 0;
    for (path, methods) in spec["paths"].as_object().context("paths")? {
        for (method, operation) in methods.as_object().context("methods")? {
            let url = format!("{}{}", hub.http, concrete(path, "x1"));
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes())?;
            let mut request = hub.client.request(method.clone(), &url);
            if operation.get("requestBody").is_some() {
                request = request.json(&json!({}));
            }
            let response = request.send().await?;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or("").to_owned())
                .unwrap_or_default();
            let body = response.text().await?;
            assert_ne!(status, 405, "{method} {path}: not served ({body})");
            assert!(
                !body.contains("no route for"),
                "{method} {path}: not served ({body})"
            );
            assert!(
                operation["responses"].get(status.to_string()).is_some(),
                "{method} {path}: {status} is not documented ({body})"
            );
            if status >= 400 {
                assert!(
                    content_type.starts_with("application/json"),
                    "{method} {path}"
                );
                let error: Value = serde_json::from_str(&body)?;
                assert_eq!(error["success"], false, "{method} {path}: {body}");
                assert!(
                    error["error"]["code"].is_string(),
                    "{method} {path}: {body}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 80, "only {checked} operations");
    Ok(())
}

#[tokio::test]
async fn axums_own_rejections_carry_the_error_envelope() -> Result<()> {
    let hub = TestHub::start().await?;
    // A query string of the wrong type (axum's `Query` rejection).
    let response = hub
        .client
        .get(format!("{}/api/sales?limit=many", hub.http))
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await?;
    assert_eq!(error["success"], false);
    assert_eq!(error["error"]["code"], "invalid_request");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("limit")),
        "{error}"
    );
    // A method the route does not have (axum's 405), with its Allow header kept.
    let response = hub
        .client
        .delete(format!("{}/api/stock/status", hub.http))
        .send()
        .await?;
    assert_eq!(response.status(), 405);
    assert!(response.headers().get("allow").is_some());
    let error: Value = response.json().await?;
    assert_eq!(error["error"]["code"], "method_not_allowed");
    Ok(())
}

#[tokio::test]
async fn the_docs_page_is_served_by_the_binary() -> Result<()> {
    let hub = TestHub::start().await?;
    let response = reqwest::get(format!("{}/docs", hub.http)).await?;
    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"]
        .to_str()?
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let page = response.text().await?;
    assert!(page.contains("/docs/docs.js"), "{page}");
    let script = reqwest::get(format!("{}/docs/docs.js", hub.http)).await?;
    assert_eq!(script.status(), 200);
    assert!(script.text().await?.contains("/api/openapi.json"));
    Ok(())
}
