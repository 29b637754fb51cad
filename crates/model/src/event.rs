//! Events streamed by `GET /v1/events`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// `container` or `image`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `create`, `start`, `die`, `stop`, `kill`, `restart`, `destroy`, `exec_start`,
    /// `load`, `tag`, `untag`, `delete`, `vulnerable` (an import of vulnerability
    /// data found new findings in an image scanned before), ...
    pub action: String,
    pub id: String,
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// RFC 3339 with nanoseconds.
    pub time: String,
}

/// `--filter key=value` for events, as Docker's: values of one key are
/// alternatives, different keys must all match. Keys: `type`, `event`,
/// `container` and `image` (an id prefix or a name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    by_key: std::collections::BTreeMap<String, Vec<String>>,
}

impl EventFilter {
    pub fn parse(filters: &[String]) -> Result<Self, String> {
        let mut f = Self::default();
        for spec in filters {
            let (k, v) = spec
                .split_once('=')
                .ok_or_else(|| format!("invalid filter {spec:?}: expected key=value"))?;
            if !matches!(k, "type" | "event" | "container" | "image") {
                return Err(format!(
                    "invalid filter key {k:?} (use type, event, container or image)"
                ));
            }
            f.by_key.entry(k.to_string()).or_default().push(v.to_string());
        }
        Ok(f)
    }

    pub fn matches(&self, e: &Event) -> bool {
        let names = |attr: &str| e.attributes.get(attr).map(String::as_str);
        self.by_key.iter().all(|(k, values)| {
            values.iter().any(|v| match k.as_str() {
                "type" => e.kind == *v,
                "event" => e.action == *v,
                "container" => e.kind == "container" && (e.id.starts_with(v.as_str()) || names("name") == Some(v)),
                "image" => {
                    (e.kind == "image" && (e.id.starts_with(v.as_str()) || names("name") == Some(v)))
                        || names("image") == Some(v)
                }
                _ => false,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, action: &str, id: &str, attrs: &[(&str, &str)]) -> Event {
        Event {
            kind: kind.into(),
            action: action.into(),
            id: id.into(),
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            time: String::new(),
        }
    }

    #[test]
    fn filters_or_within_a_key_and_across_keys() {
        let die = ev("container", "die", "abc123", &[("name", "web"), ("image", "busybox")]);
        let start = ev("container", "start", "abc123", &[("name", "web")]);
        let load = ev("image", "load", "sha256:ff", &[("name", "busybox:latest")]);
        let f = |s: &[&str]| EventFilter::parse(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>()).unwrap();
        assert!(f(&[]).matches(&load));
        assert!(f(&["event=die", "event=start"]).matches(&start));
        assert!(!f(&["type=container", "event=die"]).matches(&start));
        assert!(f(&["container=web"]).matches(&die));
        assert!(f(&["container=abc"]).matches(&die));
        assert!(!f(&["container=web"]).matches(&load));
        assert!(f(&["image=busybox"]).matches(&die));
        assert!(EventFilter::parse(&["color=red".into()])
            .unwrap_err()
            .contains("invalid filter key"));
        assert!(EventFilter::parse(&["novalue".into()])
            .unwrap_err()
            .contains("expected key=value"));
    }
}
