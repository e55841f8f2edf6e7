//! The OpenAPI 3.1 document of `/api/v1` (`GET /api/v1/openapi.json`), built from the route
//! table: each row's method, path, access, summary, and the JSON Schemas (2020-12, which
//! OpenAPI 3.1 uses as is) of the very types its handler parses and answers, derived with
//! `schemars`. A route cannot be served without being documented, and the document cannot
//! name a body type its handler does not use.

use super::Access;
use super::auth::{CSRF_HEADER, SESSION_COOKIE};
use super::router::Route;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

/// Makes the schema of one type with a generator.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// The schema of `T` (a reference to `#/components/schemas/…` for named types).
pub fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// What a route takes as its body.
#[derive(Clone, Copy, Debug)]
pub enum BodyDoc {
    /// Nothing.
    None,
    /// JSON of this schema.
    Json(SchemaFn),
    /// An egg file: JSON or YAML.
    EggFile,
    /// Any bytes, streamed (a file's new content).
    Bytes,
}

/// What a route answers on success.
#[derive(Clone, Copy, Debug)]
pub enum AnswerDoc {
    /// No body (`204`).
    Empty,
    /// JSON of this schema.
    Json(SchemaFn),
    /// A document in one of these media types.
    Text(&'static [&'static str]),
}

/// A documented query parameter.
#[derive(Clone, Copy, Debug)]
pub struct QueryParam {
    /// Its name.
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
    /// Its values' schema (JSON).
    pub schema: fn() -> Value,
}

/// What the document says of one route.
#[derive(Clone, Copy, Debug)]
pub struct RouteDoc {
    /// One line about it.
    pub summary: &'static str,
    /// Its operation id (the handler's name).
    pub operation: &'static str,
    /// Its body.
    pub body: BodyDoc,
    /// Its success status.
    pub status: u16,
    /// Its success answer.
    pub answer: AnswerDoc,
    /// Its query parameters.
    pub query: &'static [QueryParam],
}

impl RouteDoc {
    /// A route's documentation (`handler` as written in the table, `servers::create`).
    pub const fn new(
        summary: &'static str,
        handler: &'static str,
        body: BodyDoc,
        status: u16,
        answer: AnswerDoc,
    ) -> Self {
        Self { summary, operation: handler, body, status, answer, query: &[] }
    }
}

fn positive() -> Value {
    json!({ "type": "integer", "minimum": 1 })
}

fn uuid_schema() -> Value {
    json!({ "type": "string", "format": "uuid" })
}

/// `?page=&per_page=` of every list.
pub const PAGED: &[QueryParam] = &[
    QueryParam { name: "page", description: "Page number, from 1 (default 1).", schema: positive },
    QueryParam {
        name: "per_page",
        description: "Rows per page (default 50; more than 100 are answered as 100).",
        schema: positive,
    },
];

/// The user list's pages and its e-mail lookup.
pub const USER_QUERY: &[QueryParam] = &[
    PAGED[0],
    PAGED[1],
    QueryParam {
        name: "email",
        description: "Only the user with this e-mail address (any case).",
        schema: || json!({ "type": "string" }),
    },
];

/// The server list's filters and order, and its pages.
pub const SERVER_QUERY: &[QueryParam] = &[
    PAGED[0],
    PAGED[1],
    QueryParam { name: "owner", description: "Only servers owned by this user.", schema: uuid_schema },
    QueryParam { name: "node", description: "Only servers on this node.", schema: uuid_schema },
    QueryParam { name: "egg", description: "Only servers made from this egg.", schema: uuid_schema },
    QueryParam {
        name: "sort",
        description: "Order: `created_at` (default, oldest first), `name`; a leading `-` reverses.",
        schema: || json!({ "type": "string", "enum": ["created_at", "-created_at", "name", "-name"] }),
    },
];

/// Whether a node's removal takes its servers' rows along.
pub const NODE_DELETE_QUERY: &[QueryParam] = &[QueryParam {
    name: "forget_servers",
    description: "`true`: the node is gone for good (it must be offline); its servers' rows and \
        allocations are removed without contacting it. Default `false`: refused while servers are on it.",
    schema: || json!({ "type": "boolean", "default": false }),
}];

/// The egg list's pages and nest filter.
pub const EGG_QUERY: &[QueryParam] =
    &[PAGED[0], PAGED[1], QueryParam { name: "nest", description: "Only eggs in this nest.", schema: uuid_schema }];

/// A file manager's folder.
pub const DIRECTORY_QUERY: &[QueryParam] = &[QueryParam {
    name: "directory",
    description: "The folder, relative to the server's root (`/` when absent).",
    schema: || json!({ "type": "string" }),
}];

/// A file manager's file.
pub const FILE_QUERY: &[QueryParam] = &[QueryParam {
    name: "file",
    description: "The file, relative to the server's root.",
    schema: || json!({ "type": "string" }),
}];

/// An egg export's format.
pub const EXPORT_QUERY: &[QueryParam] = &[QueryParam {
    name: "format",
    description: "`ptdl_v2` (Pterodactyl, default), `plcn_v3` (Pelican JSON) or `plcn_v3_yaml`.",
    schema: || json!({ "type": "string", "enum": ["ptdl_v2", "plcn_v3", "plcn_v3_yaml"] }),
}];

/// The document for `routes`.
pub fn document(routes: &[Route]) -> Value {
    // Answers are described as serialized, bodies as deserialized (a defaulted field is
    // optional to send but always answered); bodies are inlined so the two contracts never
    // share a component name.
    let mut answers = SchemaSettings::draft2020_12()
        .for_serialize()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let mut bodies = SchemaSettings::draft2020_12()
        .for_deserialize()
        .with(|s| {
            s.inline_subschemas = true;
            s.definitions_path = "/components/schemas".into();
        })
        .into_generator();
    let error = answers.subschema_for::<nexus_wire::ErrorBody>();
    let mut paths = Map::new();
    for route in routes {
        let entry = paths.entry(route.path).or_insert_with(|| json!({}));
        entry[route.method.as_str().to_ascii_lowercase()] = operation(route, &mut answers, &mut bodies, &error);
    }
    let mut schemas = answers.take_definitions(true);
    // Recursive body types would still leave definitions; none exists, but keep any.
    for (name, schema) in bodies.take_definitions(true) {
        schemas.entry(name).or_insert(schema);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Nexus panel API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The reference panel's REST API. JSON in and out; every refusal is \
                `{\"error\":{\"code\",\"message\",\"field\"?}}`. Authenticate with the session \
                cookie from `POST /api/v1/auth/login` (changing requests then need the \
                `X-CSRF-Token` it answers) or `Authorization: Bearer <API key>`.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "session": { "type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                    "description": format!("Browser session; changing requests also send `{CSRF_HEADER}`.") },
                "apiKey": { "type": "http", "scheme": "bearer",
                    "description": "An API key (`ptla_…` application, `ptlc_…` client)." },
            },
        },
    })
}

fn operation(route: &Route, answers: &mut SchemaGenerator, bodies: &mut SchemaGenerator, error: &Schema) -> Value {
    let doc = &route.doc;
    let mut parameters: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": uuid_schema() }))
        .collect();
    parameters.extend(doc.query.iter().map(|q| {
        json!({ "name": q.name, "in": "query", "required": false, "description": q.description, "schema": (q.schema)() })
    }));
    let success = match doc.answer {
        AnswerDoc::Empty => json!({ "description": "Done." }),
        AnswerDoc::Json(schema) => json!({
            "description": "Done.",
            "content": { "application/json": { "schema": schema(answers) } },
        }),
        AnswerDoc::Text(media) => {
            let content: Map<String, Value> = media
                .iter()
                .map(|m| {
                    let kind = if *m == "application/json" { "object" } else { "string" };
                    ((*m).to_owned(), json!({ "schema": { "type": kind } }))
                })
                .collect();
            json!({ "description": "The document.", "content": content })
        }
    };
    let mut op = json!({
        "operationId": doc.operation.replace("::", "_"),
        "summary": doc.summary,
        "description": who_may(route.access),
        "tags": [tag(route.path)],
        "parameters": parameters,
        "responses": {
            doc.status.to_string(): success,
            "default": {
                "description": "A refusal: 4xx for the request, 5xx for the panel or a node.",
                "content": { "application/json": { "schema": error } },
            },
        },
        "security": match route.access {
            Access::Public => json!([]),
            Access::Session => json!([{ "session": [] }]),
            _ => json!([{ "session": [] }, { "apiKey": [] }]),
        },
    });
    if let Access::Server(Some(permission)) = route.access {
        op["x-permission"] = json!(permission);
    }
    match doc.body {
        BodyDoc::None => {}
        BodyDoc::Json(schema) => {
            op["requestBody"] = json!({
                "required": true,
                "content": { "application/json": { "schema": schema(bodies) } },
            });
        }
        BodyDoc::EggFile => {
            op["requestBody"] = json!({
                "required": true,
                "description": "The egg file as exported by Pterodactyl (PTDL_v1/v2) or Pelican (PLCN_v1–v3).",
                "content": {
                    "application/json": { "schema": { "type": "object" } },
                    "application/yaml": { "schema": { "type": "string" } },
                    "application/x-yaml": { "schema": { "type": "string" } },
                    "text/yaml": { "schema": { "type": "string" } },
                },
            });
        }
        BodyDoc::Bytes => {
            op["requestBody"] = json!({
                "required": true,
                "description": "The file's bytes, streamed to the node (a `content-length` lets its quota refuse before anything is sent).",
                "content": { "application/octet-stream": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } } },
            });
        }
    }
    op
}

fn who_may(access: Access) -> String {
    match access {
        Access::Public => "Anyone.".to_owned(),
        Access::Authenticated => "Any logged-in user or API key.".to_owned(),
        Access::Session => "A browser session only (not an API key).".to_owned(),
        Access::Admin => "Admins: an admin's session or an application key.".to_owned(),
        Access::Server(None) => "Whoever may see the server (owner, subusers, admins).".to_owned(),
        Access::Server(Some(permission)) => {
            format!("The server's owner, admins, and subusers holding `{permission}`.")
        }
    }
}

/// The tag of a path: its first segment after `/api/v1`.
fn tag(path: &str) -> &str {
    path.trim_start_matches("/api/v1/").split('/').next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    out.push(target);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_route_is_documented_once_and_every_reference_resolves() {
        let routes = super::super::routes();
        let doc = document(&routes);
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), path.clone())))
            .collect();
        let served: BTreeSet<(String, String)> =
            routes.iter().map(|r| (r.method.to_string(), r.path.to_owned())).collect();
        assert_eq!(documented, served);
        let mut ids = BTreeSet::new();
        for route in &routes {
            let op = &doc["paths"][route.path][route.method.as_str().to_ascii_lowercase()];
            assert!(ids.insert(op["operationId"].as_str().unwrap().to_owned()), "{route:?}: operationId twice");
            assert!(!op["summary"].as_str().unwrap().is_empty());
            let success = &op["responses"][route.doc.status.to_string()];
            match route.doc.answer {
                AnswerDoc::Empty => assert!(success.get("content").is_none()),
                _ => assert!(success["content"].is_object(), "{route:?}"),
            }
            assert!(op["responses"]["default"]["content"]["application/json"]["schema"].is_object());
        }
        let mut targets = Vec::new();
        refs(&doc, &mut targets);
        assert!(!targets.is_empty());
        for target in targets {
            let pointer = target.strip_prefix('#').unwrap();
            assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
        }
    }
}
