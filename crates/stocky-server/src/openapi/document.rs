//! [`document`]: the OpenAPI 3.1 document of a list of [`Operation`]s.

use std::collections::BTreeSet;

use schemars::generate::SchemaSettings;
use schemars::{Schema, SchemaGenerator};
use serde_json::{json, Map, Value};
use stocky_core::api::ErrorEnvelope;

use super::{Access, Content, Operation};

/// The document's `info`.
pub struct Info {
    /// `Stocky hub` or `Stocky edge`.
    pub title: &'static str,
    pub version: String,
    pub description: &'static str,
}

/// What an error status means, for the document's `description`s.
fn reason(status: u16) -> &'static str {
    match status {
        400 => "The request is malformed: body, query or path parameter (see `error.code`).",
        401 => "No credentials, or they are invalid or expired.",
        403 => "The credentials' role or site does not allow this.",
        404 => "Not found (in the caller's tenant).",
        409 => "Conflicts with the current state (stock, version, an idempotency key reused for another request).",
        410 => "Gone: the history asked for has been pruned; start from a full snapshot.",
        413 => "The body is larger than the configured limit.",
        415 => "The body is not `application/json`.",
        422 => "Well-formed but refused by a business rule.",
        429 => "Rate limited; `Retry-After` says when to retry.",
        502 => "The upstream hub answered with an error.",
        503 => "Storage (or the upstream hub) is unavailable; nothing was changed, retry later.",
        _ => "Error.",
    }
}

/// The document for `operations`, with `info`.
pub fn document(operations: &[Operation], info: &Info) -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let error = generator.subschema_for::<ErrorEnvelope>().to_value();
    let mut paths = Map::new();
    let mut sorted: Vec<&Operation> = operations.iter().collect();
    sorted.sort_by(|a, b| (&a.path, a.method).cmp(&(&b.path, b.method)));
    for operation in sorted {
        let entry = paths
            .entry(operation.path.clone())
            .or_insert_with(|| json!({}));
        entry[operation.method.as_str()] = render(operation, &mut generator, &error);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": info.title,
            "version": info.version,
            "description": info.description,
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": paths,
        "components": {
            "schemas": generator.take_definitions(true),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An access token from `POST /api/auth/login`, or an API key.",
                },
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "An API key (seed 004's `X-API-Key`).",
                },
            },
        },
    })
}

/// `/api/sales/{id}/void` → `postApiSalesIdVoid`.
fn operation_id(operation: &Operation) -> String {
    let mut id = operation.method.as_str().to_owned();
    for word in operation
        .path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            id.push(first.to_ascii_uppercase());
            id.extend(chars);
        }
    }
    id
}

/// The first path segment after `/api` (`stock`, `sync`, `admin`), or the only one.
fn tag(path: &str) -> &str {
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    match segments.next() {
        Some("api") => segments.next().unwrap_or("api"),
        Some(first) => match first {
            "health" | "healthz" | "readyz" | "version" | "metrics" => "operations",
            other => other,
        },
        None => "api",
    }
}

fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

fn content(content: &Content, generator: &mut SchemaGenerator) -> Value {
    let (media, schema) = match content {
        Content::Json(schema) => ("application/json", schema(generator).to_value()),
        Content::JsonObject => ("application/json", json!({"type": "object"})),
        Content::Text(media) => (*media, json!({"type": "string"})),
    };
    json!({ media: {"schema": schema} })
}

fn render(operation: &Operation, generator: &mut SchemaGenerator, error: &Value) -> Value {
    let doc = &operation.doc;
    let mut parameters = Vec::new();
    for name in path_parameters(&operation.path) {
        parameters.push(json!({
            "name": name, "in": "path", "required": true, "schema": {"type": "string"},
        }));
    }
    if let Some(query) = &doc.query {
        parameters.extend(query_parameters(query(generator)));
    }
    if doc.idempotency_key {
        parameters.push(json!({
            "name": "Idempotency-Key", "in": "header", "required": false,
            "schema": {"type": "string", "minLength": 1, "maxLength": stocky_core::protocol::MAX_OP_ID_LEN},
            "description": "Makes a retried write a no-op that answers like the original.",
        }));
    }

    let mut errors: BTreeSet<u16> = doc.errors.iter().copied().collect();
    if operation.access == Access::Credentials {
        errors.extend([401, 403, 429]);
    }
    if doc.body.is_some() {
        // `422`: JSON of the wrong shape for the body's type.
        errors.extend([400, 413, 415, 422]);
    }
    if !parameters.is_empty() {
        errors.insert(400);
    }
    if doc.query.is_some() {
        // A query can name what is not there (`?siteId=`).
        errors.insert(404);
    }
    if doc.idempotency_key {
        errors.insert(409);
    }
    if path_parameters(&operation.path).next().is_some() {
        errors.insert(404);
    }
    if operation.path.starts_with("/api/") {
        errors.insert(503);
    }

    let mut responses = Map::new();
    for (status, answer) in &doc.answers {
        let ok = json!({"description": doc.summary, "content": content(answer, generator)});
        responses.insert(status.to_string(), ok);
    }
    for status in errors {
        responses.insert(
            status.to_string(),
            json!({
                "description": reason(status),
                "content": {"application/json": {"schema": error}},
            }),
        );
    }

    let mut rendered = json!({
        "operationId": operation_id(operation),
        "summary": doc.summary,
        "tags": [tag(&operation.path)],
        "responses": responses,
    });
    if let Some(description) = doc.description {
        rendered["description"] = json!(description);
    }
    if !parameters.is_empty() {
        rendered["parameters"] = json!(parameters);
    }
    if let Some(body) = &doc.body {
        let content = content(body, generator);
        rendered["requestBody"] = json!({"required": doc.body_required, "content": content});
    }
    if operation.access == Access::Public {
        rendered["security"] = json!([]);
    }
    rendered
}

/// A query struct's fields as `in: query` parameters.
fn query_parameters(schema: Schema) -> Vec<Value> {
    let required: BTreeSet<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, property)| {
            let mut property = property.clone();
            // An absent parameter is Rust's `None`; a query string has no `null`.
            if let Some(Value::Array(types)) = property.get_mut("type") {
                types.retain(|t| t != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    property["type"] = only;
                }
            }
            let description = property
                .as_object_mut()
                .and_then(|p| p.remove("description"));
            let mut parameter = json!({
                "name": name,
                "in": "query",
                "required": required.contains(name.as_str()),
                "schema": property,
            });
            if let Some(description) = description {
                parameter["description"] = description;
            }
            parameter
        })
        .collect()
}
