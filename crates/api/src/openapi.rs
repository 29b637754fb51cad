//! The OpenAPI document, built from the route table and the model's schemas.

use axum::Json;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::routes;

/// Adds `T`'s schema and every schema it refers to, by name.
fn add<T: ToSchema>(components: &mut serde_json::Map<String, Value>) {
    let mut all = vec![(T::name().to_string(), T::schema())];
    T::schemas(&mut all);
    for (name, schema) in all {
        components.insert(name, serde_json::to_value(schema).unwrap_or(Value::Null));
    }
}

/// A route's path as OpenAPI writes it: axum's catch-all `{*rest}` is the
/// parameter `{rest}`.
pub(crate) fn openapi_path(path: &str) -> String {
    path.replace("{*", "{")
}

pub fn build() -> Value {
    let mut paths = serde_json::Map::new();
    for r in routes::TABLE {
        let path = openapi_path(r.path);
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let op = json!({
            "summary": r.summary,
            "x-berth-permission": {"resource": format!("{:?}", r.resource).to_lowercase(), "action": format!("{:?}", r.action).to_lowercase()},
            "x-berth-public": r.public,
            "parameters": params,
            "responses": {
                "200": {"description": "success"},
                "default": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}},
            },
        });
        let item = paths.entry(path).or_insert_with(|| json!({}));
        item[r.method.as_str().to_lowercase()] = op;
    }
    let mut schemas = serde_json::Map::new();
    add::<berth_model::ApiError>(&mut schemas);
    add::<berth_model::ContainerCreate>(&mut schemas);
    add::<berth_model::Container>(&mut schemas);
    add::<berth_model::ContainerStats>(&mut schemas);
    add::<berth_model::ExecCreate>(&mut schemas);
    add::<berth_model::Image>(&mut schemas);
    add::<berth_model::Event>(&mut schemas);
    add::<berth_model::Progress>(&mut schemas);
    add::<berth_model::PluginView>(&mut schemas);
    json!({
        "openapi": "3.1.0",
        "info": {"title": "berth API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

pub async fn document() -> Json<Value> {
    Json(build())
}
