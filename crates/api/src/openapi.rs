//! The OpenAPI document, built from the route table and the model's schemas.

use crate::json::Json;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::routes::{self, Answer};

/// Adds `T`'s schema and every schema it refers to, by name; returns its name.
pub(crate) fn add<T: ToSchema>(components: &mut serde_json::Map<String, Value>) -> String {
    let name = T::name().to_string();
    let mut all = vec![(name.clone(), T::schema())];
    T::schemas(&mut all);
    for (name, schema) in all {
        components.insert(name, serde_json::to_value(schema).unwrap_or(Value::Null));
    }
    name
}

/// The success response of a route, as its row declares it.
fn success(answer: Answer, components: &mut serde_json::Map<String, Value>) -> (String, Value) {
    let reference = |name: String| json!({"$ref": format!("#/components/schemas/{name}")});
    match answer {
        Answer::Empty => ("204".into(), json!({"description": "done; no body"})),
        Answer::Json(schema) => (
            "200".into(),
            json!({"description": "success", "content": {"application/json": {"schema": reference(schema(components))}}}),
        ),
        Answer::Created(schema) => (
            "201".into(),
            json!({"description": "created", "content": {"application/json": {"schema": reference(schema(components))}}}),
        ),
        Answer::List(schema) => (
            "200".into(),
            json!({"description": "success", "content": {"application/json": {"schema": {"type": "array", "items": reference(schema(components))}}}}),
        ),
        Answer::Other(media, what) => ("200".into(), json!({"description": what, "content": {media: {}}})),
    }
}

/// A route's path as OpenAPI writes it: axum's catch-all `{*rest}` is the
/// parameter `{rest}`.
pub(crate) fn openapi_path(path: &str) -> String {
    path.replace("{*", "{")
}

pub fn build() -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for r in routes::TABLE {
        let path = openapi_path(r.path);
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let (status, ok) = success(r.answer, &mut schemas);
        let mut op = json!({
            "summary": r.summary,
            "x-berth-permission": {"resource": format!("{:?}", r.resource).to_lowercase(), "action": format!("{:?}", r.action).to_lowercase()},
            "x-berth-public": r.public,
            "parameters": params,
            "responses": {
                status: ok,
                "default": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}},
            },
        });
        if let Some((body, required)) = r.request {
            let name = body(&mut schemas);
            op["requestBody"] = json!({
                "required": required == routes::Required::Yes,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}},
            });
        }
        let item = paths.entry(path).or_insert_with(|| json!({}));
        item[r.method.as_str().to_lowercase()] = op;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bodies_are_declared_required_or_not() {
        let doc = build();
        let body = |method: &str, path: &str| doc["paths"][path][method]["requestBody"].clone();
        let users = body("post", "/v1/users");
        assert_eq!(users["required"], json!(true));
        assert_eq!(
            users["content"]["application/json"]["schema"]["$ref"],
            json!("#/components/schemas/NewUser")
        );
        let login = body("post", "/v1/auth/token");
        assert_eq!(login["required"], json!(false));
        assert_eq!(
            login["content"]["application/json"]["schema"]["$ref"],
            json!("#/components/schemas/NewToken")
        );
        assert!(body("get", "/v1/users").is_null(), "a GET declares no body");
    }

    #[test]
    fn declared_answers_refer_to_schemas_the_document_defines() {
        let doc = build();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for (i, _) in text.match_indices("#/components/schemas/") {
            let name: String = text[i + 21..].chars().take_while(|c| *c != '"').collect();
            assert!(schemas.contains_key(&name), "{name} is referred to but not defined");
        }
        assert!(schemas.len() >= 50, "{} schemas", schemas.len());
    }
}
