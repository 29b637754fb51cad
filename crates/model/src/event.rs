//! Events streamed by `GET /v1/events`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// `container` or `image`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `create`, `start`, `die`, `stop`, `kill`, `restart`, `destroy`, `exec_start`,
    /// `load`, `tag`, `untag`, `delete`, ...
    pub action: String,
    pub id: String,
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// RFC 3339 with nanoseconds.
    pub time: String,
}
