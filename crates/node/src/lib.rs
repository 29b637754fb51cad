//! The composition root of a berth node: every service is opened here,
//! once, in order, and handed to the API as [`berth_api::Services`]. The
//! API opens nothing; services reach each other through handles given
//! here (the cluster key to the audit log and the scan records; the
//! engine's trust service, which it opens with cluster state, to the API)
//! and through the engine's event bus (an image
//! pushed to the registry is scanned because the scan service subscribes
//! to the push event).

use std::sync::Arc;
use std::time::Duration;

use berth_api::Services;
use berth_auth::syslog::SyslogDrops;
use berth_auth::Access;
use berth_engine::Engine;
use berth_registry::Registry;

mod signers;
mod tasks;

pub use signers::{ClusterKey, ClusterSigner};

/// A node's settings beyond the engine's.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Forward every audit entry to syslog: `udp://HOST:PORT` or `unix:///dev/log`.
    pub audit_syslog: Option<String>,
    /// How often directories without their own interval sync their teams;
    /// `None`: every 60 minutes; zero: only on demand.
    pub directory_sync_interval: Option<Duration>,
    /// The scan service's settings (webhooks, scans on push, plugin limits,
    /// built-in plugins, vulnerability database updates).
    pub scan: berth_engine::ScanConfig,
    /// `IP:PORT` other nodes reach this node's TLS listener at; `None`:
    /// loopback (a node alone).
    pub advertise: Option<String>,
    /// Heartbeat period and the times after which a silent node is
    /// suspected and down.
    pub timing: berth_cluster::membership::Timing,
    /// A manager's Raft ([`start_replication`]); `None`: a worker, or a
    /// node alone whose cluster state is not replicated (tests).
    pub replication: Option<Replication>,
    /// Starts the daemon again, in the role its data root holds: called
    /// when the node is promoted or demoted. `None`: it cannot (tests).
    pub restart: Option<Restart>,
    /// How long the node certificates this manager issues are valid;
    /// `None`: [`berth_cluster::pki::NODE_DAYS`].
    pub node_cert_lifetime: Option<Duration>,
    /// Where gossip (SWIM, UDP) listens: the TLS listener's address.
    /// `None`: no gossip (tests of a node alone).
    pub gossip_bind: Option<std::net::SocketAddr>,
}

/// How the daemon starts itself again (see [`Options::restart`]).
#[derive(Clone)]
pub struct Restart(pub berth_cluster::agent::Restart);

impl std::fmt::Debug for Restart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Restart")
    }
}

/// A manager's Raft, started before the node's services open.
#[derive(Clone)]
pub struct Replication {
    pub replica: berth_cluster::raft::Replica,
    pub me: berth_cluster::membership::NodeSelf,
    pub pki: Arc<berth_cluster::Pki>,
    /// This start began a new cluster's log.
    pub started_new: bool,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field("raft_id", &self.replica.id)
            .field("node", &self.me.id)
            .field("started_new", &self.started_new)
            .finish()
    }
}

/// On a manager (a node holding the CA key), starts Raft before anything
/// changes cluster state, and from then on every change goes through its
/// log: the first manager of a cluster starts a new log with itself as
/// the only voter; a manager that joined waits to be added by the leader.
/// `None` on a worker. Call [`Replication::ready`] once the TLS listener
/// serves [`raft_routes`].
pub async fn start_replication(engine: &Engine, advertise: &str) -> Result<Option<Replication>, String> {
    let Some(pki) = open_pki(engine).filter(|p| p.is_manager()) else {
        return Ok(None);
    };
    let me = berth_cluster::membership::bootstrap(&pki, advertise).map_err(|e| format!("this node's identity: {e}"))?;
    pki.node_identity()
        .ok_or("this manager has no node certificate")?
        .map_err(|e| format!("reading the node certificate: {e}"))?;
    // Raft's connections present the node certificate on disk, renewed or not.
    let client = berth_cluster::rpc::renewing_client_config(pki.clone())
        .map_err(|e| format!("configuring TLS for Raft: {e}"))?;
    let replica = berth_cluster::raft::manager::open(engine.state(), client, &me.id).await?;
    if !me.manager_ids.is_empty() && !replica.raft.is_initialized().await.map_err(|e| e.to_string())? {
        // A manager that joined or was promoted and has not caught up: what
        // the leader sends must land on empty tables, not on what this
        // node kept as a worker.
        engine
            .state()
            .install(Vec::new(), |_| Ok(()))
            .map_err(|e| format!("clearing cluster state before catching up: {e}"))?;
    }
    let started_new = match me.manager_ids.is_empty() {
        true => berth_cluster::raft::manager::initialize_alone(&replica, &me.addr).await?,
        false => false,
    };
    let proposer = berth_cluster::raft::manager::proposer(replica.clone(), tokio::runtime::Handle::current());
    engine.state().replicate_with(proposer);
    engine
        .state()
        .check_writable_with(berth_cluster::raft::manager::writable_check(replica.clone()));
    Ok(Some(Replication {
        replica,
        me,
        pki,
        started_new,
    }))
}

impl Replication {
    /// Waits until this manager can open its services on cluster state:
    /// a manager that joined, until the leader's state reached it (its
    /// own record with it), so that nothing is made twice (the admin
    /// user, the audit log's head); the first manager, until it is on
    /// record. A manager that restarts without a majority of managers
    /// goes on after a short wait: it serves reads, and changes are
    /// refused until a leader is elected.
    pub async fn ready(&self, state: &berth_state::State) -> Result<(), String> {
        use berth_cluster::raft::manager;
        let raft = &self.replica.raft;
        let on_record =
            |state: &berth_state::State| berth_cluster::membership::is_on_record(state, &self.me.id).unwrap_or(false);
        if !self.me.manager_ids.is_empty() && !on_record(state) {
            tracing::info!("waiting for the leader to add this manager and send it the cluster's state");
            let started = std::time::Instant::now();
            let mut told = started;
            while !on_record(state) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if told.elapsed() > Duration::from_secs(15) {
                    told = std::time::Instant::now();
                    tracing::warn!(
                        waited_s = started.elapsed().as_secs(),
                        managers = %self.me.managers.join(", "),
                        "still waiting for the leader to send this manager the cluster's state: can it reach this node's advertised address?"
                    );
                }
            }
            tracing::info!(ms = started.elapsed().as_millis() as u64, "caught up with the cluster");
            return Ok(());
        }
        if let Err(e) = manager::wait_for_leader(raft, Duration::from_secs(5)).await {
            if on_record(state) {
                tracing::warn!(error = %e, "starting without a leader: changes to cluster state are refused until one is elected");
                return Ok(());
            }
            return Err(e);
        }
        let (pki, st, me) = (self.pki.clone(), state.clone(), self.me.clone());
        tokio::task::spawn_blocking(move || {
            berth_cluster::membership::record_self(&pki, &st, &me, &berth_cluster::names::hostname())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("recording this manager: {e}"))?;
        if self.started_new {
            // A new log on an old state (`cluster recover
            // --force-new-cluster`, a restore, or a data root from before
            // Raft): the other managers on record are not in it.
            let (st, me) = (state.clone(), self.me.id.clone());
            let removed = tokio::task::spawn_blocking(move || -> Result<Vec<String>, String> {
                let others = berth_cluster::membership::other_manager_ids(&st, &me).map_err(|e| e.to_string())?;
                for id in &others {
                    st.propose(berth_state::ClusterCommand::RemoveNode { id: id.clone() })
                        .map_err(|e| e.to_string())?;
                }
                Ok(others)
            })
            .await
            .map_err(|e| e.to_string())??;
            if !removed.is_empty() {
                tracing::warn!(managers = ?removed, "took the managers of the old Raft log off the record: they join again with fresh data roots");
            }
            // Managers that join start from a snapshot holding all state.
            let raft = raft.clone();
            tokio::spawn(async move {
                if let Err(e) = manager::compact_now(&raft).await {
                    tracing::warn!(error = %e, "taking the first snapshot of cluster state");
                }
            });
        }
        Ok(())
    }
}

/// The `Raft` gRPC service of a manager: only managers on record (or,
/// while this manager catches up, those it joined) may call it.
pub fn raft_routes(replication: &Replication, state: &berth_state::State) -> tonic::service::Routes {
    tonic::service::Routes::new(raft_service(&replication.replica, &replication.me, state))
}

fn raft_service(
    replica: &berth_cluster::raft::Replica,
    me: &berth_cluster::membership::NodeSelf,
    state: &berth_state::State,
) -> berth_cluster::rpc::proto::raft_server::RaftServer<berth_cluster::raft::network::RaftService> {
    let (state, me) = (state.clone(), me.clone());
    let allowed: berth_cluster::raft::network::Allowed = Arc::new(move |peer: &berth_cluster::rpc::Peer| {
        peer.node
            .as_deref()
            .is_some_and(|n| berth_cluster::membership::is_manager_peer(&state, &me, n).unwrap_or(false))
    });
    berth_cluster::raft::network::RaftService::new(replica.raft.clone(), allowed).server()
}

/// How often directories sync when neither they nor the daemon say.
pub const DEFAULT_DIRECTORY_SYNC_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// The shortest and longest pause between looks at the sync schedule.
const SYNC_TICK_MIN: Duration = Duration::from_secs(1);
const SYNC_TICK_MAX: Duration = Duration::from_secs(60);

/// Opens every service of the node on `engine`, and starts their
/// schedules (directory sync, upload expiry) when called on a runtime. An
/// invalid option is an error naming it, and so is access control that
/// cannot open: the daemon never serves without its audit log. Other
/// services that cannot open are logged and left out (their routes answer
/// that they are unavailable).
pub fn open(engine: Arc<Engine>, options: Options) -> Result<Services, String> {
    // A worker holds no CA key: it signs nothing (its audit log and scan
    // records stay unsigned until cluster state is replicated).
    let pki = open_pki(&engine);
    let signing = pki.clone().filter(|p| p.is_manager());
    let access = open_access(&engine)?;
    if let Err(e) = access.load_audit_levels() {
        tracing::error!(error = %e, "cannot load the audit levels; every resource is at metadata");
    }
    if let Some(p) = &signing {
        access.set_chain_signer(Arc::new(ClusterKey(p.clone())));
    }
    access
        .prepare_audit_log()
        .map_err(|e| format!("cannot prepare the audit log, so the daemon will not serve: {e}"))?;
    let syslog_drops = Arc::new(SyslogDrops::default());
    if let Some(target) = &options.audit_syslog {
        access.set_audit_sink(berth_auth::syslog::syslog_sink(target, syslog_drops.clone())?);
    }
    // The node's place in the cluster first: its agent and gossip start
    // while a fresh data root compiles the built-in checks (half a second),
    // so a joining node is ready that much sooner.
    let cluster = pki.as_ref().and_then(|p| open_cluster(&engine, p.clone(), &options));
    let scans = open_scans(&engine, signing, options.scan.clone());
    if let (Some(scans), Ok(rt)) = (&scans, tokio::runtime::Handle::try_current()) {
        rt.spawn(scan_on_push(engine.subscribe(), scans.clone()));
    }
    let trust = engine.trust_service();
    if tokio::runtime::Handle::try_current().is_ok() {
        let interval = options
            .directory_sync_interval
            .unwrap_or(DEFAULT_DIRECTORY_SYNC_INTERVAL);
        // Replicated, only the leader syncs (every manager would make the
        // same changes otherwise).
        let leading: Option<Leading> = options.replication.as_ref().map(|r| {
            let replica = r.replica.clone();
            Arc::new(move || berth_cluster::raft::manager::is_leader(&replica)) as Leading
        });
        spawn_directory_sync(access.clone(), interval, leading);
        if options.replication.is_some() {
            spawn_pending_audit(access.clone());
        }
    }
    Ok(Services {
        registry: open_registry(&engine),
        engine,
        pki,
        access: Some(access),
        trust,
        scans,
        syslog_drops,
        cluster,
    })
}

/// This node's place in the cluster: a manager's identity comes with its
/// Raft ([`start_replication`]); a worker loads the one its join made and,
/// on a runtime, starts its agent.
fn open_cluster(
    engine: &Arc<Engine>,
    pki: Arc<berth_cluster::Pki>,
    options: &Options,
) -> Option<Arc<berth_cluster::membership::Cluster>> {
    use berth_cluster::membership::{Cluster, Members, NodeSelf};
    let me = match &options.replication {
        Some(r) => Ok(r.me.clone()),
        None if pki.is_manager() => {
            // A node alone (tests): an identity, recorded at once.
            let addr = options.advertise.clone().unwrap_or_else(|| "127.0.0.1:7443".into());
            berth_cluster::membership::bootstrap(&pki, &addr).and_then(|me| {
                berth_cluster::membership::record_self(&pki, engine.state(), &me, &berth_cluster::names::hostname())
                    .map(|()| me)
            })
        }
        None => NodeSelf::load(pki.dir()).and_then(|me| {
            me.ok_or_else(|| {
                berth_cluster::Error::Invalid(
                    "the data root holds a cluster CA without its key and no node identity".into(),
                )
            })
        }),
    };
    let me = match me {
        Ok(me) => me,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up this node's cluster identity: node and cluster routes are unavailable");
            return None;
        }
    };
    let members = Arc::new(Members::new(&me.id, options.timing));
    let on_runtime = tokio::runtime::Handle::try_current().is_ok();
    let replica = options.replication.as_ref().map(|r| r.replica.clone());
    let cluster = Arc::new(Cluster {
        me: me.clone(),
        pki: pki.clone(),
        state: engine.state().clone(),
        members,
        replica: replica.clone(),
    });
    if !on_runtime {
        return Some(cluster);
    }
    berth_cluster::agent::spawn_renewal(pki.clone(), me.clone());
    spawn_gossip(&pki, &me, cluster.members.clone(), options.gossip_bind);
    match &replica {
        // A manager: the leader keeps Raft's voters in line with the
        // managers on record and records who is up; the others tell it
        // they are.
        Some(replica) => {
            berth_cluster::raft::manager::spawn_reconciler(replica.clone(), engine.state().clone());
            berth_cluster::ca::spawn_follower(pki.clone(), engine.state().clone());
            berth_cluster::membership::spawn_status_recorder(cluster.clone());
            let restart = options.restart.clone().map(|r| r.0);
            berth_cluster::agent::spawn_agent(pki, me, options.timing.heartbeat, Some(node_tasks(engine)), restart);
        }
        None if !pki.is_manager() => {
            let restart = options.restart.clone().map(|r| r.0);
            berth_cluster::agent::spawn_agent(pki, me, options.timing.heartbeat, Some(node_tasks(engine)), restart);
        }
        None => {}
    }
    Some(cluster)
}

/// Runs the node's assignments on its engine.
fn node_tasks(engine: &Arc<Engine>) -> Arc<berth_cluster::dispatch::Tasks> {
    berth_cluster::dispatch::Tasks::spawn(Arc::new(tasks::EngineTasks { engine: engine.clone() }))
}

/// Starts gossip (SWIM) when the node has the cluster's gossip key and a
/// socket address to bind; says why not otherwise.
fn spawn_gossip(
    pki: &berth_cluster::Pki,
    me: &berth_cluster::membership::NodeSelf,
    members: Arc<berth_cluster::membership::Members>,
    bind: Option<std::net::SocketAddr>,
) {
    let Some(bind) = bind else { return };
    let Some(key) = berth_cluster::gossip::key(pki) else {
        tracing::info!("this node has no gossip key (it joined before gossip): failures are seen by heartbeats only");
        return;
    };
    let Ok(addr) = me.addr.parse::<std::net::SocketAddr>() else {
        tracing::warn!(addr = %me.addr, "the advertised address is not IP:PORT: no gossip");
        return;
    };
    let seeds = me.managers.iter().filter_map(|m| m.parse().ok()).collect();
    let bump = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    berth_cluster::gossip::spawn(berth_cluster::gossip::Gossip {
        me: berth_cluster::gossip::Member {
            node: me.id.clone(),
            addr,
            bump,
        },
        bind,
        seeds,
        key,
        members,
    });
}

/// A manager's gRPC services (join, agent sessions), to serve on the TLS
/// listener's node connections; `None` on a worker.
pub fn grpc_routes(services: &Services, node_cert_lifetime: Option<Duration>) -> Option<tonic::service::Routes> {
    let node_cert_lifetime =
        node_cert_lifetime.unwrap_or(Duration::from_secs(berth_cluster::pki::NODE_DAYS as u64 * 86400));
    let cluster = services.cluster.as_ref()?;
    if !cluster.pki.is_manager() {
        return None;
    }
    let access = services.access.clone()?;
    let audit: berth_cluster::membership::AuditHook = Arc::new(move |entry| {
        let append = || {
            if let Err(e) = access.audit_append(entry) {
                tracing::error!(error = %e, "writing the audit entry of a cluster call");
            }
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(append),
            _ => append(),
        }
    });
    let routes = berth_cluster::membership::grpc_routes(berth_cluster::membership::Manager {
        pki: cluster.pki.clone(),
        state: cluster.state.clone(),
        members: cluster.members.clone(),
        addr: cluster.me.addr.clone(),
        audit,
        replica: cluster.replica.clone(),
        cert_lifetime: node_cert_lifetime,
        changes: berth_cluster::dispatch::Changes::follow(&cluster.state),
    });
    Some(match &cluster.replica {
        Some(replica) => routes.add_service(raft_service(replica, &cluster.me, &cluster.state)),
        None => routes,
    })
}

/// The cluster CA under `<data-root>/pki`, created on first use.
fn open_pki(engine: &Engine) -> Option<Arc<berth_cluster::Pki>> {
    match berth_cluster::Pki::open(&engine.data_root().join("pki")) {
        Ok(p) => Some(Arc::new(p)),
        Err(e) => {
            tracing::error!(error = %e, "cannot open the cluster CA: TLS and bundles are unavailable");
            None
        }
    }
}

/// Opens the access service on cluster state; on a fresh cluster this
/// creates the `admin` user, whose password goes to a root-only file: the
/// log names the file, never the password.
fn open_access(engine: &Engine) -> Result<Arc<berth_auth::Access>, String> {
    match berth_auth::Access::open(engine.state().clone(), engine.data_root()) {
        Ok((access, written)) => {
            if let Some(path) = written {
                tracing::info!(file = %path.display(), "created user admin; its one-time password is in the file");
            }
            Ok(Arc::new(access))
        }
        Err(e) => Err(format!(
            "cannot open access control (users, grants and the audit log), so the daemon will not serve: {e}"
        )),
    }
}

/// Hands every `image push` event to the scan service, which scans the
/// image when the daemon scans on push (and says what it did with an
/// `image scan` event). Subscribed before the API serves, so no push is
/// missed; should the bus outrun it, the missed pushes are logged.
async fn scan_on_push(
    mut events: tokio::sync::broadcast::Receiver<berth_model::Event>,
    scans: Arc<berth_engine::ScanService>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match events.recv().await {
            Ok(e) if e.kind == "image" && e.action == "push" => {
                let attribute = |k: &str| e.attributes.get(k).map(String::as_str).unwrap_or_default();
                scans.pushed(attribute("repository"), attribute("reference"), &e.id);
            }
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "the scan service fell behind the event bus: some pushed images were not scanned on push"
                );
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Opens the scan service; records are signed with the cluster key when
/// the CA could be opened.
fn open_scans(
    engine: &Arc<Engine>,
    pki: Option<Arc<berth_cluster::Pki>>,
    config: berth_engine::ScanConfig,
) -> Option<Arc<berth_engine::ScanService>> {
    let signer = pki.map(|p| Arc::new(ClusterSigner(p)) as Arc<dyn berth_engine::scan::RecordSigner>);
    match berth_engine::ScanService::open(engine.clone(), signer, config) {
        Ok(service) => Some(service),
        Err(e) => {
            tracing::error!(error = %e, "cannot open the scan service: scans are not available");
            None
        }
    }
}

/// Opens the registry on the engine's image store, and expires abandoned
/// uploads every hour while the daemon runs.
fn open_registry(engine: &Engine) -> Option<Registry> {
    let registry = match Registry::open(engine.images().clone(), engine.data_root(), Default::default()) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the registry: /v2/ answers with errors");
            return None;
        }
    };
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let r = registry.clone();
        rt.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            tick.tick().await;
            loop {
                tick.tick().await;
                let r = r.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || r.expire_uploads()).await {
                    tracing::warn!(error = %e, "expiring uploads");
                }
            }
        });
    }
    Some(registry)
}

/// How often a manager appends the audit entries that wait in its store
/// because the log did not take them when their request ended.
const PENDING_AUDIT_EVERY: Duration = Duration::from_secs(10);

/// Appends, every [`PENDING_AUDIT_EVERY`], the audit entries that wait in
/// the node's store ([`Access::audit_append_pending`]): nothing recorded
/// locally is lost when the cluster could not take it at once.
fn spawn_pending_audit(access: Arc<Access>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(PENDING_AUDIT_EVERY).await;
            let a = access.clone();
            match tokio::task::spawn_blocking(move || a.audit_append_pending()).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(entries = n, "appended audit entries that had waited"),
                Ok(Err(e)) => tracing::debug!(error = %e, "audit entries still wait for the log"),
                Err(e) => tracing::warn!(error = %e, "the pending audit task failed"),
            }
        }
    })
}

/// Whether this manager leads (see [`spawn_directory_sync`]).
pub type Leading = Arc<dyn Fn() -> bool + Send + Sync>;

/// Scheduled team sync: every directory is synced once per its interval
/// (`default_interval` for those without one; zero turns those off); with
/// `leading`, only while this manager leads. Runs until the runtime stops.
pub fn spawn_directory_sync(
    access: Arc<Access>,
    default_interval: Duration,
    leading: Option<Leading>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if leading.as_ref().is_some_and(|l| !l()) {
                tokio::time::sleep(SYNC_TICK_MIN).await;
                continue;
            }
            let a = access.clone();
            let next = tokio::task::spawn_blocking(move || -> berth_auth::Result<Option<Duration>> {
                let (due, _) = a.sync_schedule(default_interval)?;
                for name in due {
                    if let Err(e) = a.sync_directories(Some(&name), "directory-sync", "scheduler") {
                        tracing::error!(directory = %name, error = %e, "scheduled directory sync failed");
                    }
                }
                Ok(a.sync_schedule(default_interval)?.1)
            })
            .await;
            let next = match next {
                Ok(Ok(next)) => next,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "reading the directory sync schedule");
                    None
                }
                Err(e) => {
                    tracing::error!(error = %e, "directory sync task failed");
                    None
                }
            };
            // Nothing scheduled yet: look again soon enough to notice a new
            // directory within one default interval.
            let idle = if default_interval.is_zero() {
                SYNC_TICK_MAX
            } else {
                default_interval
            };
            tokio::time::sleep(next.unwrap_or(idle).clamp(SYNC_TICK_MIN, SYNC_TICK_MAX)).await;
        }
    })
}
