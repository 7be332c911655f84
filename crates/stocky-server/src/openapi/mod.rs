//! The REST API describes itself: every route is added through [`ApiRoutes`], which puts the
//! handler in the axum router *and* records an [`Operation`] (method, path, summary, the Rust
//! types of its query, body and answer, the errors it can give). [`document`] turns the
//! records into the OpenAPI 3.1 document served at `GET /api/openapi.json`, and `/docs`
//! renders that document for people.
//!
//! Invariants:
//! - There is no other way to add a REST route to the gateway: the router and the document
//!   come from the same calls, so a route cannot be served and undocumented, or documented
//!   and missing. (Pages, the WebSocket and `/api/openapi.json` itself are not REST routes.)
//! - Schemas come from the types the handlers read and write (`schemars::JsonSchema`
//!   derives, JSON Schema 2020-12 as OpenAPI 3.1 wants), never from text written here.
//! - Every error answer is [`ErrorEnvelope`]. Which statuses an operation lists follows from
//!   what it is: credentials (`401`, `403`, `429`), a body (`400`, `413`, `415`, `422`),
//!   parameters (`400`), a path parameter or a query (`404`: `?siteId=` may name no site),
//!   an `Idempotency-Key` (`409`: reused for another request), the store (`503`); plus the
//!   operation's own ([`Doc::errors`]). Errors axum itself produces are enveloped too
//!   ([`crate::error::envelope_rejections`]).

mod document;

use std::sync::Arc;

use axum::handler::Handler;
use axum::routing::{get, MethodRouter};
use axum::Router;
use schemars::{JsonSchema, Schema, SchemaGenerator};

pub use document::{document, Info};

use crate::AppState;

/// The API's own routes, plus `GET /api/openapi.json` (the document, computed once) and
/// nothing else: `/docs` is a page ([`crate::ui`]).
pub fn serve(routes: ApiRoutes, title: &'static str) -> Router<AppState> {
    let (router, operations) = routes.into_parts();
    let info = Info {
        title: if title.is_empty() { "Stocky" } else { title },
        version: env!("CARGO_PKG_VERSION").to_owned(),
        description: DESCRIPTION,
    };
    let body = bytes::Bytes::from(
        serde_json::to_vec(&document(&operations, &info)).expect("a JSON value serialises"),
    );
    router.route(
        "/api/openapi.json",
        get(move || {
            let body = body.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        }),
    )
}

const DESCRIPTION: &str = "Stocky's REST API, generated from the routes the binary serves. \
Credentials: `Authorization: Bearer <token>` (from `POST /api/auth/login`, or an API key) or \
`X-API-Key: <key>`. Every error is `{\"success\": false, \"error\": {\"code\", \"message\"}}` \
with a stable `code`. Writes take an `Idempotency-Key` header; a retry answers like the \
original. Live changes come over the WebSocket at `/ws` (docs/protocol.md), which this \
document does not describe.";

/// Builds a schema with the document's generator (named types become `$ref`s to
/// `#/components/schemas`).
pub type SchemaFn = Arc<dyn Fn(&mut SchemaGenerator) -> Schema + Send + Sync>;

/// The schema of `T`.
pub fn schema_of<T: JsonSchema>() -> SchemaFn {
    Arc::new(|generator: &mut SchemaGenerator| generator.subschema_for::<T>())
}

/// What a request or an answer carries.
#[derive(Clone)]
pub enum Content {
    /// JSON described by a schema.
    Json(SchemaFn),
    /// A JSON object whose fields the operation's description and `docs/` explain
    /// (user-defined documents, backup files, reports assembled per request).
    JsonObject,
    /// Text of this media type (`/metrics`).
    Text(&'static str),
}

/// HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Put => "put",
            Method::Patch => "patch",
            Method::Delete => "delete",
        }
    }
}

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials (login, health, activation: they check what they need themselves).
    Public,
    /// A bearer token or API key, with the gateway's rate limits.
    Credentials,
}

/// What an operation is, as its registration states it. Built with [`doc`].
#[derive(Clone)]
pub struct Doc {
    pub summary: &'static str,
    pub description: Option<&'static str>,
    pub query: Option<SchemaFn>,
    pub body: Option<Content>,
    pub body_required: bool,
    /// The success answers: the first is the usual one.
    pub answers: Vec<(u16, Content)>,
    pub errors: Vec<u16>,
    pub idempotency_key: bool,
}

/// An operation summarised in one line; by default it answers `200` with a JSON object.
pub fn doc(summary: &'static str) -> Doc {
    Doc {
        summary,
        description: None,
        query: None,
        body: None,
        body_required: true,
        answers: vec![(200, Content::JsonObject)],
        errors: Vec::new(),
        idempotency_key: false,
    }
}

impl Doc {
    /// More than the summary: rules, limits, where the seed defines it.
    pub fn about(mut self, description: &'static str) -> Doc {
        self.description = Some(description);
        self
    }

    /// The query string is `T`'s fields.
    pub fn query<T: JsonSchema>(mut self) -> Doc {
        // Inline, not a `$ref`: the document lists the fields one by one.
        self.query = Some(Arc::new(|generator: &mut SchemaGenerator| {
            T::json_schema(generator)
        }));
        self
    }

    /// The body is JSON of type `T`.
    pub fn body<T: JsonSchema>(self) -> Doc {
        self.body_schema(schema_of::<T>())
    }

    /// The body is JSON of type `T`, and may be left out.
    pub fn optional_body<T: JsonSchema>(mut self) -> Doc {
        self.body = Some(Content::Json(schema_of::<T>()));
        self.body_required = false;
        self
    }

    /// The body is JSON with this schema.
    pub fn body_schema(mut self, schema: SchemaFn) -> Doc {
        self.body = Some(Content::Json(schema));
        self
    }

    /// The body is a JSON object the description explains.
    pub fn object_body(mut self) -> Doc {
        self.body = Some(Content::JsonObject);
        self
    }

    /// The body is a JSON object the description explains, and may be left out.
    pub fn optional_object_body(mut self) -> Doc {
        self.body = Some(Content::JsonObject);
        self.body_required = false;
        self
    }

    /// Answers `200` with `T`.
    pub fn ok<T: JsonSchema>(self) -> Doc {
        self.answers(200, Content::Json(schema_of::<T>()))
    }

    /// Answers `201` with `T`.
    pub fn created<T: JsonSchema>(self) -> Doc {
        self.answers(201, Content::Json(schema_of::<T>()))
    }

    /// Answers `status` with `content`.
    pub fn answers(mut self, status: u16, content: Content) -> Doc {
        self.answers = vec![(status, content)];
        self
    }

    /// Answers `201` with a JSON object the description explains.
    pub fn created_object(self) -> Doc {
        self.answers(201, Content::JsonObject)
    }

    /// May also answer `status`, with the same content as the usual answer (`200` for a
    /// retried create that `201` answered the first time).
    pub fn or_status(mut self, status: u16) -> Doc {
        let content = self.answers[0].1.clone();
        self.answers.push((status, content));
        self
    }

    /// Errors beyond those that follow from the operation's shape (see the module docs).
    pub fn errors(mut self, statuses: &[u16]) -> Doc {
        self.errors.extend_from_slice(statuses);
        self
    }

    /// The write honours an `Idempotency-Key` header (a retry answers like the original).
    pub fn idempotent(mut self) -> Doc {
        self.idempotency_key = true;
        self
    }
}

/// One documented route and method.
#[derive(Clone)]
pub struct Operation {
    pub method: Method,
    /// The axum template (`/api/sales/{id}`), which is also OpenAPI's.
    pub path: String,
    pub access: Access,
    pub doc: Doc,
}

/// `ApiRoutes::get`, `post`, …: the handler on `path` for that method, documented by `doc`.
macro_rules! methods {
    ($($name:ident => $method:ident),*) => {$(
        #[doc = concat!("Adds `", stringify!($name), "` on `path`, documented by `doc`.")]
        pub fn $name<H, T>(self, path: &str, handler: H, doc: Doc) -> ApiRoutes
        where
            H: Handler<T, AppState>,
            T: 'static,
        {
            self.add(Method::$method, path, axum::routing::$name(handler), doc)
        }
    )*};
}

/// An axum router whose every route is documented (see the module docs).
#[derive(Default)]
pub struct ApiRoutes {
    router: Router<AppState>,
    operations: Vec<Operation>,
}

impl ApiRoutes {
    pub fn new() -> ApiRoutes {
        ApiRoutes::default()
    }

    methods!(get => Get, post => Post, put => Put, patch => Patch, delete => Delete);

    /// A route whose method router has its own layers (a larger body limit, say).
    pub fn add(
        mut self,
        method: Method,
        path: &str,
        route: MethodRouter<AppState>,
        doc: Doc,
    ) -> ApiRoutes {
        // axum merges the methods of one path registered twice.
        self.router = self.router.route(path, route);
        self.operations.push(Operation {
            method,
            path: path.to_owned(),
            access: Access::Public,
            doc,
        });
        self
    }

    pub fn merge(mut self, other: ApiRoutes) -> ApiRoutes {
        self.router = self.router.merge(other.router);
        self.operations.extend(other.operations);
        self
    }

    /// Wraps the routes so far in `layers`.
    pub fn map_router(
        mut self,
        layers: impl FnOnce(Router<AppState>) -> Router<AppState>,
    ) -> ApiRoutes {
        self.router = layers(self.router);
        self
    }

    /// Marks every operation so far as needing credentials and wraps the routes in the
    /// layers (authentication, rate limits) that enforce it.
    pub fn with_credentials(
        mut self,
        layers: impl FnOnce(Router<AppState>) -> Router<AppState>,
    ) -> ApiRoutes {
        self = self.map_router(layers);
        for operation in &mut self.operations {
            operation.access = Access::Credentials;
        }
        self
    }

    /// The router and what it serves.
    pub fn into_parts(self) -> (Router<AppState>, Vec<Operation>) {
        (self.router, self.operations)
    }
}
