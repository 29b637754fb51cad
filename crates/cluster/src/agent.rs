//! The node side: joining a cluster (`berth daemon --join`), and the
//! agent's session with the managers, which carries its heartbeats (and,
//! with services, its assignments).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_model::node::NodeRole;

use crate::join::JoinToken;
use crate::membership::{node_key, NodeSelf};
use crate::pki::Pki;
use crate::rpc::{self, proto, Presented};

/// How long a join may take, connection included.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);

/// What `berth daemon --join` needs besides the token.
pub struct JoinArgs<'a> {
    pub token: &'a JoinToken,
    /// The manager's `IP:PORT`.
    pub manager: &'a str,
    /// `IP:PORT` this node advertises.
    pub advertise: &'a str,
    pub hostname: &'a str,
}

/// Joins the cluster: checks the manager's CA against the token, then
/// sends the secret with a certificate request, and keeps what comes back
/// in `pki_dir` (which must hold no CA yet). Nothing is written unless the
/// join succeeded.
pub async fn join(pki_dir: &Path, a: JoinArgs<'_>) -> Result<NodeSelf, String> {
    if pki_dir.join("ca.pem").exists() {
        return Err(format!(
            "{} already holds a cluster CA: this data root belongs to a cluster",
            pki_dir.display()
        ));
    }
    let node_id = berth_model::new_id();
    let (key, csr) = node_key().map_err(|e| e.to_string())?;
    let presented = Arc::new(Mutex::new(Presented::default()));
    let config = rpc::join_client_config(&a.token.ca_digest, presented.clone()).map_err(|e| e.to_string())?;
    let channel = rpc::channel(a.manager, config)?;
    let mut client = proto::membership_client::MembershipClient::new(channel);
    let request = proto::JoinRequest {
        role: a.token.role.as_str().to_string(),
        secret: a.token.secret().to_string(),
        node_id: node_id.clone(),
        hostname: a.hostname.to_string(),
        advertise_addr: a.advertise.to_string(),
        csr,
    };
    let answer = tokio::time::timeout(JOIN_TIMEOUT, client.join(request))
        .await
        .map_err(|_| {
            format!(
                "the manager at {} did not answer within {}s",
                a.manager,
                JOIN_TIMEOUT.as_secs()
            )
        })?;
    let answer = match answer {
        Ok(r) => r.into_inner(),
        Err(status) => {
            let presented = presented.lock().ok().and_then(|p| p.ca_digest.clone());
            return Err(join_error(&status, a.manager, a.token, presented));
        }
    };
    // The CA the manager sends must be the one the token names.
    use rustls::pki_types::pem::PemObject;
    let ca_der = rustls::pki_types::CertificateDer::from_pem_slice(answer.ca.as_bytes())
        .map_err(|e| format!("the manager sent a CA certificate that does not parse: {e}"))?;
    a.token.check_ca(&ca_der, a.manager).map_err(|e| e.to_string())?;
    let cert_der = rustls::pki_types::CertificateDer::from_pem_slice(answer.certificate.as_bytes())
        .map_err(|e| format!("the manager sent a node certificate that does not parse: {e}"))?;
    if crate::pki::node_of(&cert_der).as_deref() != Some(node_id.as_str()) {
        return Err("the manager sent a node certificate for another node".into());
    }
    if a.token.role == NodeRole::Manager {
        check_manager_answer(&answer.manager_files, &answer.manager_ids)?;
    }
    let me = NodeSelf {
        id: node_id,
        role: a.token.role,
        addr: a.advertise.to_string(),
        managers: answer.managers,
        manager_ids: answer.manager_ids,
    };
    let mut files = answer.manager_files.clone();
    if answer.gossip_key.len() == 32 {
        files.insert(format!("pki/{}", crate::gossip::KEY_FILE), answer.gossip_key.clone());
    }
    install(
        pki_dir,
        &answer.ca,
        &answer.certificate,
        &key.serialize_pem(),
        &me,
        &files,
    )?;
    tracing::info!(node = %me.id, role = %me.role, manager = %a.manager, "joined the cluster");
    Ok(me)
}

/// Writes the CA certificate, the node certificate and key and the node
/// identity into a fresh directory beside `pki_dir`, then renames it into
/// place: a crash leaves either no membership or all of it.
///
/// A manager's secrets (`files`, by path under the data root) are written
/// first, the CA key into the new directory: a crash before the rename
/// leaves no membership, and the next join overwrites them.
fn install(
    pki_dir: &Path,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    me: &NodeSelf,
    files: &std::collections::HashMap<String, Vec<u8>>,
) -> Result<(), String> {
    let tmp = pki_dir.with_extension("joining");
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| fail(&format!("creating {}", tmp.display()), &e))?;
    let written = (|| -> crate::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700)).map_err(|e| crate::Error::Io {
            what: "setting permissions of",
            path: tmp.clone(),
            source: e,
        })?;
        crate::pki::write_public(&tmp.join("ca.pem"), ca_pem.as_bytes())?;
        let root = pki_dir.parent().unwrap_or(pki_dir);
        for (name, bytes) in files {
            match name.strip_prefix("pki/") {
                Some(rest) => write_secret(&tmp, rest, bytes),
                None => write_secret(root, name, bytes),
            }
            .map_err(crate::Error::Invalid)?;
        }
        let pki = Pki::open(&tmp)?;
        pki.store_node_identity(cert_pem, key_pem)?;
        me.save(&tmp)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.to_string());
    }
    // A pki directory without a CA holds nothing of value (a failed start).
    let _ = std::fs::remove_dir_all(pki_dir);
    std::fs::rename(&tmp, pki_dir).map_err(|e| fail(&format!("moving {} into place", tmp.display()), &e))
}

/// A refused or failed join, said plainly: never with the secret.
fn join_error(status: &tonic::Status, manager: &str, token: &JoinToken, presented: Option<String>) -> String {
    use tonic::Code;
    match status.code() {
        Code::PermissionDenied | Code::InvalidArgument | Code::AlreadyExists | Code::FailedPrecondition => {
            return format!("the manager at {manager} refused the join: {}", status.message());
        }
        _ => {}
    }
    if let Some(p) = presented.filter(|p| *p != token.ca_digest) {
        return crate::join::JoinError::WrongCa {
            addr: manager.to_string(),
            expected: token.ca_digest.clone(),
            presented: p,
        }
        .to_string();
    }
    let mut cause = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        let text = s.to_string();
        if !cause.contains(&text) {
            cause = format!("{cause}: {text}");
        }
        source = s.source();
    }
    if cause.contains("InvalidContentType") || cause.contains("corrupt message") {
        format!("{manager} is not a berth manager: it does not answer in TLS")
    } else if cause.contains("UnknownIssuer")
        || cause.contains("certificate")
        || cause.contains("handshake")
        || cause.contains("alert")
    {
        format!("{manager} is not a berth manager of the cluster the token names (TLS: {cause})")
    } else if cause.contains("h2 protocol error") || cause.contains("frame") || cause.contains("protocol") {
        format!("{manager} is not a berth manager: it does not speak the cluster protocol ({cause})")
    } else {
        format!("cannot reach a berth manager at {manager}: {cause}")
    }
}

/// Keeps this node's session with a manager open for as long as the
/// daemon runs: heartbeats every `period`; reconnects by itself, trying
/// each manager it knows in turn.
///
/// A manager runs one too (its heartbeats tell the leader it is up); the
/// leader's agent holds its session with the leader itself. With `tasks`,
/// the session also carries the node's assignments and its reports on them
/// ([`crate::dispatch`]).
///
/// When the leader says the node's role changed (`berth node
/// promote|demote`), the agent makes the data root hold the new role (a
/// manager's secrets fetched with `Membership.Promote`, or the CA key
/// dropped) and calls `restart`: the daemon starts again in it.
pub fn spawn_agent(
    pki: Arc<Pki>,
    me: NodeSelf,
    period: Duration,
    tasks: Option<Arc<crate::dispatch::Tasks>>,
    restart: Option<Restart>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut managers = me.managers.clone();
        let mut next = 0usize;
        let mut backoff = Duration::from_millis(200);
        let mut failing_since: Option<std::time::Instant> = None;
        // The leader a follower sent this agent to, tried first.
        let mut sent_to: Option<String> = None;
        let mut redirects = 0u32;
        loop {
            if managers.is_empty() {
                tracing::error!("this node knows no manager: the agent stops");
                return;
            }
            let addr = match sent_to.take() {
                Some(leader) => leader,
                None => {
                    next += 1;
                    managers[(next - 1) % managers.len()].clone()
                }
            };
            match session(&pki, &addr, period, me.role, tasks.clone()).await {
                Ok(SessionEnd { role: Some(role), .. }) => {
                    let Some(restart) = restart.as_ref() else {
                        tracing::error!(%role, "this node's role changed, but this daemon cannot restart itself");
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        continue;
                    };
                    match change_role(&pki, &me, role, &addr).await {
                        Ok(()) => {
                            tracing::info!(%role, "this node's role changed: the daemon restarts in it");
                            restart();
                            return;
                        }
                        Err(e) => {
                            tracing::error!(%role, error = %e, "this node's role changed, but taking it failed; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
                Ok(SessionEnd {
                    leader: Some(leader), ..
                }) if redirects < 3 => {
                    tracing::debug!(manager = %addr, %leader, "sent to the leader");
                    redirects += 1;
                    sent_to = Some(leader);
                }
                Ok(SessionEnd { leader: Some(_), .. }) => {
                    // Sent around in circles (an election): wait a little.
                    redirects = 0;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Ok(SessionEnd { managers: learned, .. }) => {
                    redirects = 0;
                    backoff = Duration::from_millis(200);
                    if failing_since.take().is_some() {
                        tracing::info!(manager = %addr, "session with the managers restored");
                    }
                    if let Some(list) = learned.filter(|l| !l.is_empty() && *l != managers) {
                        managers = list;
                        let mine = NodeSelf {
                            managers: managers.clone(),
                            ..me.clone()
                        };
                        if let Err(e) = mine.save(pki.dir()) {
                            tracing::warn!(error = %e, "saving the managers' addresses");
                        }
                    }
                }
                Err(e) => {
                    if failing_since.is_none() {
                        failing_since = Some(std::time::Instant::now());
                        tracing::warn!(manager = %addr, error = %e, "no session with the managers; retrying");
                    } else {
                        tracing::debug!(manager = %addr, error = %e, "session attempt failed");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    })
}

/// Restarts the daemon (in the role its data root now holds).
pub type Restart = Arc<dyn Fn() + Send + Sync>;

/// How a session ended.
#[derive(Default)]
struct SessionEnd {
    /// The managers it learned of when the session was opened.
    managers: Option<Vec<String>>,
    /// The leader's address, when the manager sent the agent there.
    leader: Option<String>,
    /// The node's role on record, when it is not the one it runs in.
    role: Option<NodeRole>,
}

/// A channel to the manager at `addr`, presenting this node's certificate
/// as it is on disk now (renewed or not).
fn node_channel(pki: &Pki, addr: &str) -> Result<tonic::transport::Channel, String> {
    let identity = pki
        .node_identity()
        .ok_or("this node has no node certificate")?
        .map_err(|e| e.to_string())?;
    let config = rpc::node_client_config(pki.trust_roots(), identity).map_err(|e| e.to_string())?;
    rpc::channel(addr, config)
}

/// Makes the data root hold `role`: a promoted node fetches a manager's
/// secrets from the leader at `addr`; a demoted one drops the CA keys. Its
/// `node.json` then says the new role.
async fn change_role(pki: &Pki, me: &NodeSelf, role: NodeRole, addr: &str) -> Result<(), String> {
    let root = pki.dir().parent().unwrap_or(pki.dir()).to_path_buf();
    let mut mine = me.clone();
    mine.role = role;
    match role {
        NodeRole::Manager => {
            let mut client = proto::membership_client::MembershipClient::new(node_channel(pki, addr)?);
            let answer = tokio::time::timeout(JOIN_TIMEOUT, client.promote(proto::PromoteRequest {}))
                .await
                .map_err(|_| format!("the leader at {addr} did not answer"))?
                .map_err(|s| format!("the leader at {addr}: {}", s.message()))?
                .into_inner();
            check_manager_answer(&answer.manager_files, &answer.manager_ids)?;
            for (name, bytes) in &answer.manager_files {
                write_secret(&root, name, bytes)?;
            }
            mine.manager_ids = answer.manager_ids;
        }
        NodeRole::Worker => {
            for name in ["ca.key", "ca-next.key", "cluster.key"] {
                let key = pki.dir().join(name);
                match std::fs::remove_file(&key) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(format!("removing {}: {e}", key.display())),
                }
            }
            mine.manager_ids = Vec::new();
        }
    }
    mine.save(pki.dir()).map_err(|e| e.to_string())
}

/// What a manager sends a node that becomes a manager, checked.
fn check_manager_answer(files: &std::collections::HashMap<String, Vec<u8>>, ids: &[String]) -> Result<(), String> {
    for name in files.keys() {
        if !crate::membership::MANAGER_FILES.contains(&name.as_str()) {
            return Err(format!("the manager sent a file this berth does not keep: {name:?}"));
        }
    }
    if !files.contains_key("pki/ca.key") {
        return Err("the manager sent no CA key: it cannot make this node a manager".into());
    }
    if ids.iter().any(|id| !crate::join::valid_node_id(id)) {
        return Err("the manager sent a malformed manager id".into());
    }
    Ok(())
}

/// Writes one of a manager's secrets under the data root, mode 0600 in a
/// 0700 directory.
fn write_secret(root: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    let path = root.join(name);
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    crate::pki::write_private(&path, bytes).map_err(|e| e.to_string())
}

/// One session: until it breaks, or the manager sends the agent to the
/// leader, or says the node's role is not `running_as`.
async fn session(
    pki: &Pki,
    addr: &str,
    period: Duration,
    running_as: NodeRole,
    tasks: Option<Arc<crate::dispatch::Tasks>>,
) -> Result<SessionEnd, String> {
    let mut client = proto::dispatcher_client::DispatcherClient::new(node_channel(pki, addr)?);
    // Heartbeats at the period the manager asks for (this node's own
    // until its answer arrives), and the node's reports.
    let (period_tx, period_rx) = tokio::sync::watch::channel(period);
    let (out_tx, out_rx) = tokio::sync::mpsc::channel(8);
    let _sender = AbortOnDrop(tokio::spawn(send_outbound(out_tx, period_rx, tasks.clone())));
    let outbound = tokio_stream::wrappers::ReceiverStream::new(out_rx);
    let mut inbound = client
        .session(outbound)
        .await
        .map_err(|s| format!("{}: {}", s.code(), s.message()))?
        .into_inner();
    let mut learned = None;
    loop {
        match inbound.message().await {
            Ok(Some(m)) => {
                if let Some(proto::manager_message::Kind::Assignments(set)) = &m.kind {
                    if let Some(t) = &tasks {
                        t.want(set.items.clone());
                    }
                }
                // A manager's CA files follow cluster state; a worker's,
                // what the leader says.
                if let Some(proto::manager_message::Kind::Ca(ca)) = &m.kind {
                    if !pki.is_manager() {
                        if let Err(e) = crate::ca::follow(pki, &crate::ca::CaView::from_proto(ca.clone()), None) {
                            tracing::error!(error = %e, "following the cluster CA");
                        }
                    }
                }
                if let Some(proto::manager_message::Kind::Session(info)) = m.kind {
                    if !info.leader.is_empty() {
                        return Ok(SessionEnd {
                            managers: Some(info.managers),
                            leader: Some(info.leader),
                            role: None,
                        });
                    }
                    if let Ok(role) = info.role.parse::<NodeRole>() {
                        if role != running_as {
                            return Ok(SessionEnd {
                                managers: Some(info.managers),
                                leader: None,
                                role: Some(role),
                            });
                        }
                    }
                    tracing::debug!(manager = %addr, managers = ?info.managers, "session opened");
                    if info.heartbeat_period_ms > 0 {
                        let _ = period_tx.send(Duration::from_millis(u64::from(info.heartbeat_period_ms)));
                    }
                    learned = Some(info.managers);
                }
            }
            Ok(None) => {
                return Ok(SessionEnd {
                    managers: learned,
                    ..Default::default()
                })
            }
            Err(s) if learned.is_some() => {
                tracing::debug!(manager = %addr, error = %s, "session ended");
                return Ok(SessionEnd {
                    managers: learned,
                    ..Default::default()
                });
            }
            Err(s) => return Err(format!("{}: {}", s.code(), s.message())),
        }
    }
}

/// Ends a task when dropped: a session's sender ends with the session.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Feeds a session: a heartbeat at once and then every period (a new
/// period cuts the wait short), and the node's reports on its
/// assignments: the whole of the last one first (a new session, maybe
/// after a partition), then each change.
async fn send_outbound(
    tx: tokio::sync::mpsc::Sender<proto::AgentMessage>,
    mut period: tokio::sync::watch::Receiver<Duration>,
    tasks: Option<Arc<crate::dispatch::Tasks>>,
) {
    let mut reports = tasks.as_ref().map(|t| t.reports());
    if let Some(r) = reports.as_mut() {
        r.mark_changed();
    }
    let mut beat_due = true;
    loop {
        if beat_due {
            let beat = proto::AgentMessage {
                kind: Some(proto::agent_message::Kind::Heartbeat(proto::Heartbeat {
                    sent_unix_ms: chrono::Utc::now().timestamp_millis(),
                })),
            };
            if tx.send(beat).await.is_err() {
                return;
            }
            beat_due = false;
        }
        let wait = *period.borrow_and_update();
        let report_changed = async {
            match reports.as_mut() {
                Some(r) => r.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => beat_due = true,
            changed = period.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(wait).await;
                }
                beat_due = true;
            }
            alive = report_changed => {
                let Some(r) = reports.as_mut().filter(|_| alive) else {
                    reports = None;
                    continue;
                };
                let message = proto::AgentMessage {
                    kind: Some(proto::agent_message::Kind::Tasks(proto::TaskReports {
                        reports: r.borrow_and_update().clone(),
                    })),
                };
                if tx.send(message).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// How often the renewal task looks for a CA rotation.
const CA_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Renews this node's certificate before it expires: once less than a
/// third of its lifetime is left ([`crate::pki::renew_at`]), or when the
/// CA that issues is not the one that issued it (a rotation), a new key and
/// a certificate for it from a manager (`Membership.Renew`, the current
/// certificate as the credential), written in place of the old. Runs for
/// as long as the daemon does; a failed attempt is tried again, sooner as
/// the expiry nears.
pub fn spawn_renewal(pki: Arc<Pki>, me: NodeSelf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_secs(1);
        loop {
            let der = match pki.node_identity() {
                Some(Ok(identity)) => identity.chain.into_iter().next(),
                _ => None,
            };
            let Some(at) = der.as_deref().and_then(crate::pki::renew_at) else {
                tracing::error!("this node's certificate cannot be read: it is not renewed");
                tokio::time::sleep(Duration::from_secs(60)).await;
                continue;
            };
            // A CA rotation: renewed under the new root at once.
            let rotated = der.as_deref().is_some_and(|d| !pki.issued_by_issuing(d));
            let wait = (at - chrono::Utc::now()).to_std().unwrap_or_default();
            if !wait.is_zero() && !rotated {
                // Until the renewal is due or the CA files change.
                let version = pki.version();
                let due = tokio::time::Instant::now() + wait.min(Duration::from_secs(3600));
                while tokio::time::Instant::now() < due && pki.version() == version {
                    tokio::time::sleep(CA_CHECK_EVERY.min(due - tokio::time::Instant::now())).await;
                }
                continue;
            }
            match renew(&pki, &me).await {
                Ok(expires) => {
                    backoff = Duration::from_secs(1);
                    tracing::info!(%expires, "renewed this node's certificate");
                    // A manager that had not heard of a rotation issues
                    // under the old root: asked again, not at once.
                    tokio::time::sleep(CA_CHECK_EVERY).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing this node's certificate failed; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    })
}

/// One renewal, from the first manager that answers; the new expiry.
async fn renew(pki: &Pki, me: &NodeSelf) -> Result<String, String> {
    let managers = NodeSelf::load(pki.dir())
        .ok()
        .flatten()
        .map_or_else(|| me.managers.clone(), |m| m.managers);
    let (key, csr) = node_key().map_err(|e| e.to_string())?;
    let mut failures = Vec::new();
    for addr in &managers {
        let mut client = proto::membership_client::MembershipClient::new(node_channel(pki, addr)?);
        let answer = tokio::time::timeout(JOIN_TIMEOUT, client.renew(proto::RenewRequest { csr: csr.clone() })).await;
        let answer = match answer {
            Ok(Ok(a)) => a.into_inner(),
            Ok(Err(s)) => {
                failures.push(format!("{addr}: {}", s.message()));
                continue;
            }
            Err(_) => {
                failures.push(format!("{addr}: no answer"));
                continue;
            }
        };
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(answer.certificate.as_bytes())
            .map_err(|e| format!("the manager sent a certificate that does not parse: {e}"))?;
        if crate::pki::node_of(&der).as_deref() != Some(me.id.as_str()) {
            return Err("the manager sent a certificate for another node".into());
        }
        pki.store_node_identity(&answer.certificate, &key.serialize_pem())
            .map_err(|e| e.to_string())?;
        return Ok(crate::pki::not_after_of(&der).unwrap_or_default());
    }
    Err(failures.join("; "))
}
