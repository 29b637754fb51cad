//! Version, node info and the event stream.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;

use crate::json::Json;
use berth_auth::{Index, Where};
use berth_model::{Event, IdRange, SystemInfo, VersionInfo};

use crate::authz::{Action, Principal, Resource};
use crate::AppState;

pub async fn version() -> Json<VersionInfo> {
    Json(VersionInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        api: "v1".into(),
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
    })
}

pub async fn info(State(state): State<AppState>) -> Json<SystemInfo> {
    let e = &state.engine;
    let containers = e.list(true).unwrap_or_default();
    let running = containers
        .iter()
        .filter(|c| c.status.state == berth_model::ContainerState::Running)
        .count();
    let map = e.runtime().idmap();
    Json(SystemInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        data_root: e.data_root().display().to_string(),
        containers: containers.len(),
        running,
        images: e.images().list().map(|l| l.len()).unwrap_or(0),
        userns: IdRange {
            uid_base: map.uid_base,
            gid_base: map.gid_base,
            size: map.size,
        },
        cgroup_parent: e.runtime().cgroup_parent().into(),
        idmapped_mounts: e.runtime().idmapped_mounts(),
        cgroup_version: if berth_runtime::cgroup::is_v2() {
            "2"
        } else {
            "1 (or hybrid)"
        }
        .into(),
    })
}

/// NDJSON: one event per line, as they happen; `?filter=key=value` (repeatable).
/// A caller sees the events of what they may read: container events in
/// collections where they may read containers, image events where they
/// may read images. A subscriber that falls behind is told how many events
/// it missed (`{"type":"events","action":"lagged","attributes":{"missed":"N"}}`).
pub async fn events(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> crate::error::ApiResult<Response> {
    let filters: Vec<String> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "filter")
        .map(|(_, v)| v.into_owned())
        .collect();
    let filter = berth_model::EventFilter::parse(&filters).map_err(berth_model::ApiError::invalid)?;
    let rx = state.engine.subscribe();
    let (tx, body_rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    // Grants are read at each event: a revoked grant stops the flow.
    let keep = move |ev: &Event| filter.matches(ev) && may_see(&crate::authz::index(&state), &principal, ev);
    tokio::spawn(forward(rx, keep, tx));
    Ok(ndjson(body_rx))
}

/// Sends the events `keep` accepts as NDJSON lines, and in place of the
/// ones the subscriber fell too far behind to get, a `lagged` notice.
async fn forward(
    mut rx: tokio::sync::broadcast::Receiver<Event>,
    keep: impl Fn(&Event) -> bool,
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
) {
    loop {
        let event = match rx.recv().await {
            Ok(ev) if !keep(&ev) => continue,
            Ok(ev) => ev,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => lagged(missed),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        if tx.send(Ok(line)).await.is_err() {
            return;
        }
    }
}

/// The notice a subscriber gets in place of the events it missed.
fn lagged(missed: u64) -> Event {
    Event {
        kind: "events".into(),
        action: "lagged".into(),
        id: String::new(),
        attributes: [("missed".to_string(), missed.to_string())].into(),
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    }
}

/// Whether `principal` may see `event`.
fn may_see(index: &Index, principal: &Principal, event: &Event) -> bool {
    let caller = principal.caller();
    let decide = |resource, at| index.decide(&caller, resource, Action::Read, at).allowed();
    match event.kind.as_str() {
        "container" => decide(
            Resource::Container,
            Where::In(event.attributes.get("collection").map_or("/", String::as_str)),
        ),
        "image" => decide(Resource::Image, Where::Anywhere),
        _ => decide(Resource::System, Where::Anywhere),
    }
}

pub fn ndjson(rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize) -> Event {
        Event {
            kind: "image".into(),
            action: "tag".into(),
            id: n.to_string(),
            attributes: Default::default(),
            time: String::new(),
        }
    }

    /// A subscriber that fell behind gets a notice of how many events it
    /// missed, then the events still buffered, in order.
    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_how_many_it_missed() {
        let (events, rx) = tokio::sync::broadcast::channel(4);
        for n in 0..10 {
            events.send(event(n)).expect("a subscriber");
        }
        drop(events);
        let (tx, mut lines) = tokio::sync::mpsc::channel(64);
        forward(rx, |e: &Event| e.id != "8", tx).await;
        let mut got = Vec::new();
        while let Some(Ok(line)) = lines.recv().await {
            let v: serde_json::Value = serde_json::from_slice(&line).expect("json");
            got.push(format!(
                "{} {}",
                v["action"].as_str().unwrap_or_default(),
                v["id"].as_str().unwrap_or_default()
            ));
            if v["action"] == "lagged" {
                assert_eq!(v["attributes"]["missed"], "6");
                assert_eq!(v["type"], "events");
            }
        }
        assert_eq!(got, ["lagged ", "tag 6", "tag 7", "tag 9"]);
    }
}
