//! Plugins as the API shows them: what a client may know of an installed
//! plugin (never its path on the daemon's host).

use serde::{Deserialize, Serialize};

/// An installed plugin (`GET /v1/plugins` and the plugin routes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginView {
    pub name: String,
    pub version: String,
    /// The WIT world it implements, for example `check`.
    pub world: String,
    pub world_version: String,
    /// The digest of its WebAssembly component.
    pub digest: String,
    pub description: String,
    pub enabled: bool,
    /// One of the plugins built into this berth binary.
    pub builtin: bool,
    /// A check plugin's declared check (id, title, severity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<serde_json::Value>,
}

/// `POST /v1/plugins/{name}/push`: the pushed artifact's manifest digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginPushed {
    pub digest: String,
}

/// `POST /v1/plugins`: `{"manifest": <plugin.json as an object>, "wasm": "<base64>"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginInstall {
    #[schema(value_type = Object)]
    pub manifest: serde_json::Value,
    /// The component, base64.
    pub wasm: String,
}
