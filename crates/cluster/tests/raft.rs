//! Raft among managers in one process, over the real transport: gRPC on
//! TLS with node certificates from one CA, on loopback. Elections,
//! forwarding from a follower, a refused command refused everywhere, the
//! leader's loss with every acknowledged write kept, a new manager caught
//! up from a snapshot, and openraft's own storage suite on the redb store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_cluster::membership::node_key;
use berth_cluster::raft::network::{Network, RaftService};
use berth_cluster::raft::store::{LogStore, Machine};
use berth_cluster::raft::{config, raft_id, Applied, Raft, Replica, TypeConfig};
use berth_cluster::{Pki, ServerIdentity};
use berth_state::records::User;
use berth_state::{tables, ClusterCommand, Envelope, Outcome, Rejected, State};
use berth_store::Store;
use openraft::BasicNode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

struct Manager {
    id: u64,
    addr: String,
    raft: Raft,
    replica: Replica,
    state: State,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Manager {
    async fn stop(self) {
        self.server.abort();
        let _ = self.raft.shutdown().await;
    }
}

async fn start(pki: &Pki) -> Manager {
    let dir = tempfile::tempdir().expect("a directory");
    let store = Store::open(&dir.path().join("berth.redb")).expect("a store");
    let state = State::open(store.clone()).expect("state");
    let node_id = berth_model::new_id();
    let (key, csr) = node_key().expect("a key");
    let issued = pki
        .issue_node(&node_id, &csr, &["127.0.0.1".parse().expect("an ip")])
        .expect("a node certificate");
    let identity = || ServerIdentity {
        chain: vec![
            CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("pem"),
            pki.ca_der().clone(),
        ],
        key: PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key"),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("an address").to_string();
    let client = berth_cluster::rpc::node_client_config(vec![pki.ca_der()], identity()).expect("client tls");
    let network = Network::new(client);
    let id = raft_id(&node_id);
    let raft = Raft::new(
        id,
        config().expect("config"),
        network.clone(),
        LogStore::new(store).expect("the log"),
        Machine::new(state.clone()).expect("the state machine"),
    )
    .await
    .expect("raft");
    let routes = tonic::service::Routes::new(
        RaftService::new(raft.clone(), Arc::new(|p: &berth_cluster::rpc::Peer| p.node.is_some())).server(),
    );
    let server_config = berth_cluster::rpc::node_server_config(&pki.ca_der(), identity()).expect("server tls");
    let server = tokio::spawn(berth_cluster::rpc::serve(listener, server_config, routes));
    Manager {
        id,
        addr,
        replica: Replica::new(raft.clone(), id, network),
        raft,
        state,
        server,
        _dir: dir,
    }
}

fn user(name: &str) -> Envelope {
    Envelope::new(ClusterCommand::CreateUser {
        user: User {
            name: name.into(),
            password_hash: "$argon2id$none".into(),
            created: "2026-12-06T00:00:00Z".into(),
        },
    })
}

fn has_user(m: &Manager, name: &str) -> bool {
    m.state
        .store()
        .get::<User>(tables::USERS, name)
        .expect("a read")
        .is_some()
}

async fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

async fn leader(ms: &[&Manager]) -> u64 {
    let m = ms[0];
    m.raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(|x| x.current_leader.is_some(), "a leader")
        .await
        .expect("a leader is elected")
        .current_leader
        .expect("a leader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_managers_replicate_and_survive_their_leader() {
    let ca = tempfile::tempdir().expect("a directory");
    let pki = Pki::open(ca.path()).expect("a CA");
    let mut ms = vec![start(&pki).await, start(&pki).await, start(&pki).await];
    let members: BTreeMap<u64, BasicNode> = ms.iter().map(|m| (m.id, BasicNode::new(&m.addr))).collect();
    ms[0].raft.initialize(members).await.expect("initialize");
    let lead = leader(&ms.iter().collect::<Vec<_>>()).await;

    // A follower's proposal goes to the leader, and every manager applies it.
    let follower = ms.iter().find(|m| m.id != lead).expect("a follower");
    let applied = follower
        .replica
        .propose(user("alice"), Duration::from_secs(5))
        .await
        .expect("alice is created");
    assert_eq!(applied, Applied(Ok(Outcome::Done)));
    assert!(has_user(follower, "alice"), "read-your-writes on the follower");
    for m in &ms {
        assert!(wait_for(Duration::from_secs(5), || has_user(m, "alice")).await);
    }
    // A refused command is an answer, the same everywhere.
    let again = follower
        .replica
        .propose(user("alice"), Duration::from_secs(5))
        .await
        .expect("an answer");
    assert!(matches!(again, Applied(Err(Rejected::Conflict(_)))), "{again:?}");

    // Writes in a loop while the leader dies: every acknowledged one stays.
    let i = ms.iter().position(|m| m.id == lead).expect("the leader");
    let old = ms.remove(i);
    let writer = ms[0].replica.clone();
    let writes = tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        for n in 0..40 {
            let name = format!("u{n}");
            if let Ok(Applied(Ok(_))) = writer.propose(user(&name), Duration::from_secs(5)).await {
                acknowledged.push(name);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        acknowledged
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = Instant::now();
    old.stop().await;
    // Failover: the first write after the kill that succeeds.
    let survivors: Vec<&Manager> = ms.iter().collect();
    let mut n = 0;
    loop {
        n += 1;
        let r = survivors[1]
            .replica
            .propose(user(&format!("after{n}")), Duration::from_secs(5))
            .await;
        if matches!(r, Ok(Applied(Ok(_)))) {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "no write after the leader died: {r:?}"
        );
    }
    let failover = killed.elapsed();
    eprintln!("failover (kill to first successful write): {failover:?}");
    assert!(failover < Duration::from_secs(3), "failover took {failover:?}");
    let acknowledged = writes.await.expect("the writer");
    assert!(
        acknowledged.len() >= 30,
        "only {} writes were acknowledged",
        acknowledged.len()
    );
    for m in &ms {
        for name in &acknowledged {
            assert!(
                wait_for(Duration::from_secs(5), || has_user(m, name)).await,
                "{name} was acknowledged and is missing"
            );
        }
    }

    // A new manager, after a snapshot and a purged log, catches up from it.
    let lead = leader(&survivors).await;
    let leader_m = ms.iter().find(|m| m.id == lead).expect("the leader");
    leader_m.raft.trigger().snapshot().await.expect("a snapshot");
    assert!(
        wait_for(Duration::from_secs(10), || {
            leader_m.raft.metrics().borrow().snapshot.is_some()
        })
        .await
    );
    let upto = leader_m.raft.metrics().borrow().snapshot.map_or(0, |s| s.index);
    leader_m.raft.trigger().purge_log(upto).await.expect("purge");
    let fresh = start(&pki).await;
    leader_m
        .raft
        .add_learner(fresh.id, BasicNode::new(&fresh.addr), true)
        .await
        .expect("a learner");
    let voters: BTreeSet<u64> = ms.iter().map(|m| m.id).chain([fresh.id]).collect();
    leader_m
        .raft
        .change_membership(voters, false)
        .await
        .expect("membership");
    for name in acknowledged.iter().chain(["alice".to_string()].iter()) {
        assert!(
            wait_for(Duration::from_secs(10), || has_user(&fresh, name)).await,
            "{name} did not reach the new manager"
        );
    }
    assert!(
        fresh.raft.metrics().borrow().snapshot.is_some(),
        "it caught up from a snapshot"
    );
    // Every manager holds the same cluster tables.
    let dump = |m: &Manager| m.state.dump().expect("a dump");
    assert!(wait_for(Duration::from_secs(5), || dump(&fresh) == dump(leader_m)).await);
    for m in ms {
        m.stop().await;
    }
    fresh.stop().await;
}

struct Builder;

impl openraft::testing::StoreBuilder<TypeConfig, LogStore, Machine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, Machine), openraft::StorageError<u64>> {
        let dir = tempfile::tempdir().expect("a directory");
        let store = Store::open(&dir.path().join("berth.redb")).expect("a store");
        let state = State::open(store.clone()).expect("state");
        Ok((
            dir,
            LogStore::new(store).expect("the log"),
            Machine::new(state).expect("the state machine"),
        ))
    }
}

#[test]
fn the_store_passes_openrafts_storage_suite() {
    openraft::testing::Suite::test_all(Builder).expect("the suite");
}

/// Cluster writes per second and their latency with 1 and 3 managers:
/// `WRITERS` proposers at once (openraft batches what they propose) each
/// creating grants, realistic commands, through a follower when there is
/// one. Run by `cargo xtask bench cluster` (release); prints `BENCH` lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: cargo xtask bench cluster"]
async fn bench_cluster_writes() {
    const WRITERS: usize = 64;
    const WRITES: usize = 10_000;
    let ca = tempfile::tempdir().expect("a directory");
    let pki = Pki::open(ca.path()).expect("a CA");
    for managers in [1usize, 3] {
        let mut ms = Vec::new();
        for _ in 0..managers {
            ms.push(start(&pki).await);
        }
        let members: BTreeMap<u64, BasicNode> = ms.iter().map(|m| (m.id, BasicNode::new(&m.addr))).collect();
        ms[0].raft.initialize(members).await.expect("initialize");
        let lead = leader(&ms.iter().collect::<Vec<_>>()).await;
        let proposer = ms.iter().find(|m| m.id == lead).expect("the leader").replica.clone();
        proposer
            .propose(user("bench"), Duration::from_secs(5))
            .await
            .expect("a user");
        let grant = |n: usize| {
            Envelope::new(ClusterCommand::CreateGrant {
                grant: berth_state::records::Grant {
                    id: format!("{n:016x}"),
                    subject: "user:bench".into(),
                    role: "view-only".into(),
                    collection: format!("/bench/{n}"),
                    created: "2026-12-06T00:00:00Z".into(),
                },
                builtin_role: true,
            })
        };
        // Warm-up (connections, TLS, caches), not counted.
        for n in 0..200 {
            let r = proposer
                .propose(grant(WRITES + 100_000 + n), Duration::from_secs(10))
                .await;
            assert!(matches!(r, Ok(Applied(Ok(_)))), "{r:?}");
        }
        // One writer alone: the latency a single request sees.
        let mut alone = Vec::new();
        for n in 0..200 {
            let t = Instant::now();
            let r = proposer
                .propose(grant(WRITES + 200_000 + n), Duration::from_secs(10))
                .await;
            assert!(matches!(r, Ok(Applied(Ok(_)))), "{r:?}");
            alone.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        alone.sort_by(f64::total_cmp);
        println!(
            "BENCH {{\"managers\": {managers}, \"one_writer_p50_ms\": {:.3}}}",
            alone[alone.len() / 2]
        );
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let p = proposer.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                for n in (w..WRITES).step_by(WRITERS) {
                    let t = Instant::now();
                    let r = p.propose(grant(n), Duration::from_secs(10)).await;
                    assert!(matches!(r, Ok(Applied(Ok(_)))), "{r:?}");
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.expect("a writer"));
        }
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort_by(f64::total_cmp);
        let p = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)];
        println!(
            "BENCH {{\"managers\": {managers}, \"writes_per_s\": {:.0}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}}}",
            WRITES as f64 / elapsed,
            p(0.5),
            p(0.99)
        );
        if managers == 3 {
            // Failover: the leader goes; time to the first write that succeeds.
            let i = ms.iter().position(|m| m.id == lead).expect("the leader");
            let old = ms.remove(i);
            let killed = Instant::now();
            old.stop().await;
            let mut n = WRITES;
            loop {
                n += 1;
                if let Ok(Applied(Ok(_))) = ms[0].replica.propose(grant(n), Duration::from_secs(5)).await {
                    break;
                }
                assert!(
                    killed.elapsed() < Duration::from_secs(20),
                    "no write after the leader died"
                );
            }
            println!(
                "BENCH {{\"managers\": 3, \"failover_ms\": {:.0}}}",
                killed.elapsed().as_secs_f64() * 1000.0
            );
        }
        for m in ms {
            m.stop().await;
        }
    }
}
