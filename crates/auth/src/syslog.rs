//! Forwarding the audit log to syslog (`berth daemon --audit-syslog`): RFC
//! 5424 lines over UDP or a unix datagram socket, sent by one thread from a
//! bounded queue, so a stalled syslog never delays an append; what it drops
//! is counted.

use std::net::UdpSocket;
use std::sync::Arc;

use crate::{AuditEntry, AuditSink};

/// How many audit messages may wait for syslog. Past that, messages are
/// dropped and counted: a stalled syslog never delays a request.
pub const SYSLOG_QUEUE: usize = 4096;

/// Audit messages that could not be sent to syslog: dropped from a full
/// queue, or refused by the socket (`/metrics`:
/// `berth_audit_syslog_dropped_total`).
#[derive(Debug, Default)]
pub struct SyslogDrops(pub std::sync::atomic::AtomicU64);

/// Where `--audit-syslog` sends entries: `udp://HOST:PORT` or
/// `unix:///dev/log` (a datagram socket). The append path only queues a
/// formatted message (bounded, [`SYSLOG_QUEUE`]); one thread sends them.
pub fn syslog_sink(target: &str, drops: Arc<SyslogDrops>) -> Result<AuditSink, String> {
    enum Out {
        Udp(UdpSocket),
        Unix(std::os::unix::net::UnixDatagram, String),
    }
    let out = if let Some(addr) = target.strip_prefix("udp://") {
        let socket = UdpSocket::bind(if addr.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" })
            .map_err(|e| format!("--audit-syslog {target}: {e}"))?;
        socket
            .connect(addr)
            .map_err(|e| format!("--audit-syslog {target}: {e}"))?;
        Out::Udp(socket)
    } else if let Some(path) = target.strip_prefix("unix://") {
        let socket =
            std::os::unix::net::UnixDatagram::unbound().map_err(|e| format!("--audit-syslog {target}: {e}"))?;
        Out::Unix(socket, path.to_string())
    } else {
        return Err(format!(
            "--audit-syslog {target:?}: use udp://HOST:PORT or unix:///dev/log"
        ));
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && h.is_ascii() && !h.contains(' '))
        .unwrap_or_else(|| "-".into());
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, String)>(SYSLOG_QUEUE);
    let sender_drops = drops.clone();
    std::thread::Builder::new()
        .name("audit-syslog".into())
        .spawn(move || {
            for (seq, message) in rx {
                let sent = match &out {
                    Out::Udp(s) => s.send(message.as_bytes()).map(|_| ()),
                    Out::Unix(s, path) => s.send_to(message.as_bytes(), path).map(|_| ()),
                };
                if let Err(err) = sent {
                    sender_drops.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(error = %err, seq, "cannot send an audit entry to syslog");
                }
            }
        })
        .map_err(|e| format!("--audit-syslog {target}: starting its sender: {e}"))?;
    Ok(Arc::new(move |e: &AuditEntry| {
        if let Err(std::sync::mpsc::TrySendError::Full(_) | std::sync::mpsc::TrySendError::Disconnected(_)) =
            tx.try_send((e.seq, syslog_line(&host, e)))
        {
            let dropped = drops.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            // Noted in the log at the first drop and every thousandth after.
            if dropped % 1000 == 1 {
                tracing::warn!(
                    seq = e.seq,
                    dropped,
                    "the syslog queue is full: audit entries are not reaching syslog (they stay in the audit log)"
                );
            }
        }
    }))
}

/// One RFC 5424 message: facility authpriv, severity notice for denials
/// and failures, info otherwise; the entry as JSON in the message.
pub fn syslog_line(host: &str, e: &AuditEntry) -> String {
    const AUTHPRIV: u8 = 10;
    let severity = match e.entry.result.as_str() {
        "allowed" | "started" => 6,
        _ => 5,
    };
    let json = serde_json::to_string(e).unwrap_or_default();
    format!(
        "<{}>1 {} {host} berth - audit [berth@32473 seq=\"{}\"] {json}",
        AUTHPRIV * 8 + severity,
        e.time,
        e.seq
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_lines_are_rfc5424() {
        let e = AuditEntry {
            seq: 7,
            time: "2026-11-29T01:00:00.000Z".into(),
            entry: crate::NewAuditEntry {
                user: "alice".into(),
                result: "denied".into(),
                ..Default::default()
            },
            prev: "0".repeat(64),
            hash: "1".repeat(64),
        };
        let line = syslog_line("node1", &e);
        assert!(
            line.starts_with("<85>1 2026-11-29T01:00:00.000Z node1 berth - audit [berth@32473 seq=\"7\"] {"),
            "{line}"
        );
        assert!(line.contains("\"user\":\"alice\""));
        assert!(syslog_sink("tcp://x", Default::default()).is_err());
    }

    #[test]
    fn udp_syslog_delivers_entries() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let sink = syslog_sink(&format!("udp://{}", server.local_addr().unwrap()), Default::default()).unwrap();
        let e = AuditEntry {
            seq: 1,
            time: "2026-11-29T01:00:00.000Z".into(),
            entry: Default::default(),
            prev: String::new(),
            hash: String::new(),
        };
        sink(&e);
        let mut buf = [0u8; 4096];
        let n = server.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n]).unwrap().contains("berth - audit"));
    }

    /// A `/dev/log` that never reads: its socket buffer fills and sends
    /// block. Appends must not wait for it; what cannot be queued is counted.
    #[test]
    fn a_stalled_syslog_never_delays_an_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let _stalled = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let drops = Arc::new(SyslogDrops::default());
        let sink = syslog_sink(&format!("unix://{}", path.display()), drops.clone()).unwrap();
        let e = AuditEntry {
            seq: 1,
            time: "2026-11-29T01:00:00.000Z".into(),
            entry: crate::NewAuditEntry {
                detail: "x".repeat(1000),
                ..Default::default()
            },
            prev: String::new(),
            hash: String::new(),
        };
        let started = std::time::Instant::now();
        let appends = SYSLOG_QUEUE * 3;
        for _ in 0..appends {
            sink(&e);
        }
        // Thousands of appends take milliseconds; one blocked send would take forever.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let dropped = drops.0.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            dropped >= (appends - SYSLOG_QUEUE) as u64 - 1000,
            "{dropped} dropped of {appends}"
        );
    }
}
