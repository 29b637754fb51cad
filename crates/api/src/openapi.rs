//! The OpenAPI document, built from the route table and the model's schemas.

use axum::Json;
use serde_json::{json, Value};
use utoipa::PartialSchema;

use crate::routes;

fn schema<T: PartialSchema>() -> Value {
    serde_json::to_value(T::schema()).unwrap_or(Value::Null)
}

pub fn build() -> Value {
    let mut paths = serde_json::Map::new();
    for r in routes::TABLE {
        let params: Vec<Value> = r
            .path
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
        let item = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        item[r.method.as_str().to_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "berth API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": {
            "ApiError": schema::<berth_model::ApiError>(),
            "ContainerCreate": schema::<berth_model::ContainerCreate>(),
            "Container": schema::<berth_model::Container>(),
            "ContainerStats": schema::<berth_model::ContainerStats>(),
            "ExecCreate": schema::<berth_model::ExecCreate>(),
            "Image": schema::<berth_model::Image>(),
            "Event": schema::<berth_model::Event>(),
            "Progress": schema::<berth_model::Progress>(),
        }},
    })
}

pub async fn document() -> Json<Value> {
    Json(build())
}
