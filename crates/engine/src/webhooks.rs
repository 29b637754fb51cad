//! Scan webhooks (`berth daemon --scan-webhook URL`): each notification is
//! a JSON POST signed with the webhook's own secret and retried with
//! backoff for a bounded time; the delivery state of every webhook is kept
//! for `berth scan webhooks ls`.
//!
//! The secret of a webhook is made on first use and kept in
//! `DATA_ROOT/scan/webhooks/ID.secret` (mode 0600, 64 hex digits); the
//! receiver checks `X-Berth-Signature-256: sha256=HMAC-SHA256(secret, body)`
//! as GitHub's receivers check `X-Hub-Signature-256`. Every delivery is
//! written to the store (`local/scan_webhook_deliveries`) before it is
//! queued and removed when it is done, so a daemon restart resumes the
//! ones still waiting (within their retry time).

pub use berth_scanner::records::WebhookState;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use berth_store::{Store, Table};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Deliveries not yet done, by `HOOK-ID/SEQUENCE` ([`Pending`]).
pub const DELIVERIES: Table = Table("local/scan_webhook_deliveries");

/// A delivery as stored until it is done.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    body: String,
    /// Unix seconds when it was queued (its retry time counts from then).
    queued: i64,
}

/// The header carrying the payload's signature.
pub const SIGNATURE_HEADER: &str = "x-berth-signature-256";
/// Deliveries waiting per webhook; more are dropped (counted).
const QUEUE_LIMIT: usize = 1024;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_WAIT: Duration = Duration::from_secs(60);

struct Delivery {
    /// Its key in [`DELIVERIES`].
    key: String,
    body: String,
    since: Instant,
}

struct Hook {
    url: String,
    secret: Vec<u8>,
    store: Store,
    state: Mutex<(WebhookState, VecDeque<Delivery>)>,
    wake: Condvar,
}

/// Every configured webhook, each with its own sender thread.
pub struct Webhooks {
    hooks: Vec<Arc<Hook>>,
}

impl Webhooks {
    /// Reads (or makes) each webhook's secret under `dir` and starts its
    /// sender, with the deliveries a previous run left in `store` queued
    /// first. `retry_for` bounds how long one delivery is retried.
    pub fn start(urls: &[String], dir: &Path, retry_for: Duration, store: &Store) -> Result<Webhooks, String> {
        let left: Vec<(String, Pending)> = store
            .write(|t| t.list(DELIVERIES))
            .map_err(|e| format!("reading the webhook deliveries: {e}"))?;
        let ids: Vec<String> = urls.iter().map(|u| hook_id(u)).collect();
        let orphans: Vec<&String> = left
            .iter()
            .map(|(key, _)| key)
            .filter(|key| !ids.iter().any(|id| key.split('/').next() == Some(id.as_str())))
            .collect();
        if !orphans.is_empty() {
            tracing::warn!(
                deliveries = orphans.len(),
                "dropping scan webhook deliveries to webhooks no longer configured"
            );
            store
                .write(|t| orphans.iter().try_for_each(|key| t.delete(DELIVERIES, key).map(drop)))
                .map_err(|e| format!("removing old webhook deliveries: {e}"))?;
        }
        let mut hooks = Vec::new();
        for url in urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "--scan-webhook {}: not an http:// or https:// URL",
                    url_host(url)
                ));
            }
            let id = hook_id(url);
            let secret_file = dir.join(format!("{id}.secret"));
            let secret = read_or_make_secret(dir, &secret_file)?;
            let now = chrono::Utc::now().timestamp();
            let resumed: VecDeque<Delivery> = left
                .iter()
                .filter(|(key, _)| key.split('/').next() == Some(id.as_str()))
                .map(|(key, p)| Delivery {
                    key: key.clone(),
                    body: p.body.clone(),
                    since: Instant::now()
                        .checked_sub(Duration::from_secs(now.saturating_sub(p.queued).max(0) as u64))
                        .unwrap_or_else(Instant::now),
                })
                .collect();
            if !resumed.is_empty() {
                tracing::info!(webhook = %url_host(url), deliveries = resumed.len(), "resuming scan webhook deliveries");
            }
            let hook = Arc::new(Hook {
                url: url.clone(),
                secret,
                store: store.clone(),
                state: Mutex::new((
                    WebhookState {
                        id,
                        target: url_host(url),
                        secret_file: secret_file.display().to_string(),
                        state: "idle".into(),
                        pending: resumed.len(),
                        ..Default::default()
                    },
                    resumed,
                )),
                wake: Condvar::new(),
            });
            let sender = hook.clone();
            std::thread::Builder::new()
                .name("scan-webhook".into())
                .spawn(move || sender.run(retry_for))
                .map_err(|e| format!("starting the webhook sender: {e}"))?;
            hooks.push(hook);
        }
        Ok(Webhooks { hooks })
    }

    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// Stores and queues `body` for every webhook; returns without waiting
    /// for any delivery.
    pub fn send(&self, body: &str) {
        for hook in &self.hooks {
            let mut guard = hook.state.lock().unwrap_or_else(|e| e.into_inner());
            let (state, queue) = &mut *guard;
            if queue.len() >= QUEUE_LIMIT {
                state.failed += 1;
                tracing::warn!(webhook = %state.target, "scan webhook queue full: a notification was dropped");
                continue;
            }
            let key = format!("{}/{:040}", state.id, next_sequence());
            let pending = Pending {
                body: body.to_string(),
                queued: chrono::Utc::now().timestamp(),
            };
            if let Err(e) = hook.store.write(|t| t.put(DELIVERIES, &key, &pending)) {
                // Sent all the same; only a restart before it is done loses it.
                tracing::warn!(webhook = %state.target, error = %e, "cannot store a scan webhook delivery");
            }
            queue.push_back(Delivery {
                key,
                body: body.to_string(),
                since: Instant::now(),
            });
            state.pending = queue.len();
            hook.wake.notify_one();
        }
    }

    pub fn list(&self) -> Vec<WebhookState> {
        self.hooks
            .iter()
            .map(|h| h.state.lock().unwrap_or_else(|e| e.into_inner()).0.clone())
            .collect()
    }
}

impl Hook {
    /// Sends the queue's deliveries in order, each until it is accepted,
    /// refused for good, or `retry_for` has passed since it was queued.
    fn run(&self, retry_for: Duration) {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        loop {
            let (key, body, since) = {
                let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
                while guard.1.is_empty() {
                    guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                let front = guard.1.front().expect("not empty");
                (front.key.clone(), front.body.clone(), front.since)
            };
            let mut wait = FIRST_RETRY;
            let mut attempts = 0;
            let outcome = loop {
                attempts += 1;
                let result = self.post(&agent, &body);
                let retry = matches!(&result, Err((true, _)));
                let text = match &result {
                    Ok(status) => status.to_string(),
                    Err((_, e)) => e.clone(),
                };
                self.update(|s| {
                    s.attempts = attempts;
                    s.last_attempt = Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                    s.last_result = Some(text.clone());
                    if retry {
                        s.state = "retrying".into();
                    }
                });
                if !retry || since.elapsed() + wait > retry_for {
                    break result;
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(LONGEST_WAIT);
            };
            if let Err(e) = self.store.write(|t| t.delete(DELIVERIES, &key)) {
                tracing::warn!(error = %e, "cannot remove a finished scan webhook delivery");
            }
            let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let (state, queue) = &mut *guard;
            queue.pop_front();
            state.pending = queue.len();
            match outcome {
                Ok(_) => {
                    state.delivered += 1;
                    state.state = "delivered".into();
                }
                Err((_, e)) => {
                    state.failed += 1;
                    state.state = "failed".into();
                    // Only the host: webhook paths and queries often carry a secret.
                    tracing::warn!(webhook = %state.target, attempts, error = %e, "scan webhook failed; the notification was dropped");
                }
            }
        }
    }

    fn update(&self, f: impl FnOnce(&mut WebhookState)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()).0);
    }

    /// One attempt: the status on success; on failure whether to retry
    /// (connection errors, 408, 429 and 5xx) and why.
    fn post(&self, agent: &ureq::Agent, body: &str) -> Result<u16, (bool, String)> {
        let response = agent
            .post(&self.url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, &signature(&self.secret, body.as_bytes()))
            .send(body.as_bytes())
            .map_err(|e| (true, e.to_string()))?;
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(status),
            408 | 429 | 500..=599 => Err((true, format!("answered {status}"))),
            _ => Err((false, format!("answered {status}"))),
        }
    }
}

/// The first 12 hex digits of the URL's SHA-256.
fn hook_id(url: &str) -> String {
    hex::encode(&Sha256::digest(url.as_bytes())[..6])
}

/// Increasing across restarts: the clock in nanoseconds, never repeated.
fn next_sequence() -> u128 {
    static LAST: Mutex<u128> = Mutex::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    *last = now.max(*last + 1);
    *last
}

/// `sha256=HEX` of the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The secret in `file` (hex), made (32 random bytes) when missing.
fn read_or_make_secret(dir: &Path, file: &PathBuf) -> Result<Vec<u8>, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read_to_string(file) {
        Ok(text) => {
            return hex::decode(text.trim())
                .ok()
                .filter(|s| s.len() >= 16)
                .ok_or_else(|| format!("{}: not a webhook secret (hex, at least 16 bytes)", file.display()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("reading {}: {e}", file.display())),
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let secret: [u8; 32] = rand::random();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| format!("creating {}: {e}", file.display()))?;
    writeln!(f, "{}", hex::encode(secret))
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("writing {}: {e}", file.display()))?;
    Ok(secret.to_vec())
}

/// `scheme://host[:port]` of a URL: what logs and listings may show.
pub fn url_host(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A delivery a previous run left in the store is sent at start, signed,
    /// and removed once the receiver took it.
    #[test]
    fn deliveries_left_by_a_previous_run_are_sent_at_start() {
        use std::io::{BufRead, BufReader, Read, Write};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).expect("store");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let key = format!("{}/{:040}", hook_id(&url), 1);
        let pending = Pending {
            body: r#"{"event":"image.vulnerable"}"#.into(),
            queued: chrono::Utc::now().timestamp(),
        };
        store.write(|t| t.put(DELIVERIES, &key, &pending)).expect("put");
        // And one to a webhook that is gone: dropped.
        store
            .write(|t| t.put(DELIVERIES, "000000000000/1", &pending))
            .expect("put");

        let hooks = Webhooks::start(
            std::slice::from_ref(&url),
            &dir.path().join("secrets"),
            Duration::from_secs(60),
            &store,
        )
        .expect("start");
        let (mut stream, _) = listener.accept().expect("a delivery");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let (mut length, mut signature) = (0, String::new());
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header");
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().expect("length");
            }
            if let Some(v) = lower.strip_prefix("x-berth-signature-256:") {
                signature = v.trim().to_string();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("body");
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .expect("answer");
        assert_eq!(body, pending.body.as_bytes());
        let file = &hooks.list()[0].secret_file;
        let secret = hex::decode(std::fs::read_to_string(file).expect("secret").trim()).expect("hex");
        assert_eq!(signature, super::signature(&secret, &body));
        let deadline = Instant::now() + Duration::from_secs(10);
        while hooks.list()[0].delivered == 0 {
            assert!(Instant::now() < deadline, "the delivery was not counted");
            std::thread::sleep(Duration::from_millis(10));
        }
        let left: Vec<(String, Pending)> = store.write(|t| t.list(DELIVERIES)).expect("list");
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn webhook_logs_name_the_host_only() {
        assert_eq!(
            url_host("https://user:pw@hooks.example.com:8443/services/T0/B1/secret?x=1"),
            "https://hooks.example.com:8443"
        );
        assert_eq!(url_host("http://127.0.0.1:9/hook"), "http://127.0.0.1:9");
    }

    #[test]
    fn signature_is_the_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
