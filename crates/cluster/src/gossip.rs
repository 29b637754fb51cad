//! Failure detection among all nodes with SWIM (foca): every node probes
//! others over UDP on its listener's address, asks others to probe for it
//! when a probe goes unanswered, and spreads what it learns; a node that
//! stops answering is suspected, then declared down by the cluster within
//! seconds, whether or not it still reaches the leader.
//!
//! Packets are authenticated: each carries an HMAC-SHA256 tag (16 bytes)
//! under the cluster's gossip key (derived from the CA key on managers,
//! handed to workers when they join); a packet without the right tag is
//! dropped unread. The leader folds what gossip says into node status
//! ([`crate::membership::Members::gossip`]).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use foca::{Config, Foca, OwnedNotification, PostcardCodec, Timer};
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::membership::Members;

/// How long the tag on each packet is.
const TAG: usize = 16;

/// How long a suspected node has to refute the suspicion.
const SUSPECT_TO_DOWN: Duration = Duration::from_secs(3);

/// A node as gossip knows it: its node id, the address it gossips at, and
/// a number that grows each time it starts (a restarted node wins over its
/// old self).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub node: String,
    pub addr: SocketAddr,
    pub bump: u64,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{}#{}",
            self.node.get(..12).unwrap_or(&self.node),
            self.addr,
            self.bump
        )
    }
}

impl foca::Identity for Member {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Member {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.bump > adversary.bump
    }
}

/// The gossip key's file on a worker (`pki/gossip.key`).
pub const KEY_FILE: &str = "gossip.key";

/// What a node needs to gossip.
pub struct Gossip {
    /// This node.
    pub me: Member,
    /// Where to bind the UDP socket (the TLS listener's address).
    pub bind: SocketAddr,
    /// Who to announce itself to at start (the managers).
    pub seeds: Vec<SocketAddr>,
    /// The cluster's gossip key.
    pub key: [u8; 32],
    /// Where status is kept (the leader reads it).
    pub members: Arc<Members>,
}

enum Input {
    Data(Bytes),
    Timer(Timer<Member>),
    Announce(SocketAddr),
}

fn tag(key: &ring::hmac::Key, payload: &[u8]) -> [u8; TAG] {
    let full = ring::hmac::sign(key, payload);
    let mut out = [0u8; TAG];
    out.copy_from_slice(&full.as_ref()[..TAG]);
    out
}

/// Starts gossip on a runtime; runs until the runtime stops. A socket
/// that cannot be bound is logged, and the node goes without gossip
/// (heartbeats to the leader still tell it apart).
pub fn spawn(g: Gossip) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let socket = match UdpSocket::bind(g.bind).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::warn!(bind = %g.bind, error = %e, "cannot bind the gossip socket: failures are seen by heartbeats only");
                return;
            }
        };
        tracing::info!(bind = %g.bind, me = ?g.me, "gossip (SWIM) started");
        run(g, socket).await;
    })
}

async fn run(g: Gossip, socket: Arc<UdpSocket>) {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &g.key);
    // memberlist's LAN settings (a probe each second, 500 ms to answer,
    // three indirect probes), with a suspect declared down after 3 s:
    // a dead node is down in about 5 s, half the heartbeats' default.
    let mut config = Config::new_lan(NonZeroU32::new(16).unwrap_or(NonZeroU32::MIN));
    config.suspect_to_down_after = SUSPECT_TO_DOWN;
    let max_packet = config.max_packet_size.get();
    let rng: rand_foca::rngs::StdRng = rand_foca::make_rng();
    let mut foca = Foca::new(g.me.clone(), config, rng, PostcardCodec);
    let (tx, mut rx) = mpsc::channel::<Input>(1024);

    // Inbound: tag checked before anything is read.
    let (reader, inbound) = (socket.clone(), tx.clone());
    let read_key = key.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let Ok((len, from)) = reader.recv_from(&mut buf).await else {
                continue;
            };
            if len <= TAG {
                continue;
            }
            let (sent_tag, payload) = buf[..len].split_at(TAG);
            if !crate::join::constant_time_eq(sent_tag, &tag(&read_key, payload)) {
                tracing::debug!(%from, "dropped a gossip packet without the cluster's tag");
                continue;
            }
            if inbound
                .send(Input::Data(Bytes::copy_from_slice(payload)))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    for seed in &g.seeds {
        if *seed != g.me.addr {
            let _ = tx.send(Input::Announce(*seed)).await;
        }
    }
    // Re-announce to the seeds now and then: a node alone (every other
    // down, or a partition healed) finds the cluster again.
    let (again, seeds) = (tx.clone(), g.seeds.clone());
    let me_addr = g.me.addr;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            for seed in &seeds {
                if *seed != me_addr && again.send(Input::Announce(*seed)).await.is_err() {
                    return;
                }
            }
        }
    });

    let mut runtime = foca::AccumulatingRuntime::new();
    let mut out = Vec::with_capacity(max_packet + TAG);
    while let Some(input) = rx.recv().await {
        let result = match input {
            Input::Data(data) => foca.handle_data(&data, &mut runtime),
            Input::Timer(timer) => foca.handle_timer(timer, &mut runtime),
            Input::Announce(addr) => {
                let placeholder = Member {
                    node: String::new(),
                    addr,
                    bump: 0,
                };
                foca.announce(placeholder, &mut runtime)
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = ?e, "gossip input ignored");
        }
        while let Some((to, data)) = runtime.to_send() {
            out.clear();
            out.extend_from_slice(&tag(&key, &data));
            out.extend_from_slice(&data);
            let _ = socket.send_to(&out, to.addr).await;
        }
        while let Some((delay, timer)) = runtime.to_schedule() {
            let tx = tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = tx.send(Input::Timer(timer)).await;
            });
        }
        while let Some(notification) = runtime.to_notify() {
            match notification {
                OwnedNotification::MemberUp(m) => {
                    tracing::debug!(member = ?m, "gossip: up");
                    g.members.gossip(&m.node, true);
                }
                OwnedNotification::MemberDown(m) => {
                    tracing::info!(member = ?m, "gossip: a node is down");
                    g.members.gossip(&m.node, false);
                }
                OwnedNotification::Rename(old, new) => {
                    tracing::debug!(old = ?old, new = ?new, "gossip: a node restarted");
                }
                _ => {}
            }
        }
    }
}

/// The gossip key a node holds: the one it was given when it joined; a
/// manager without one derives it from the CA root's key and keeps it, so
/// that a CA rotation does not change it (`None`: a worker that joined
/// before gossip, and goes without).
pub fn key(pki: &crate::Pki) -> Option<[u8; 32]> {
    let path = pki.dir().join(KEY_FILE);
    if let Some(key) = std::fs::read(&path).ok().and_then(|b| b.try_into().ok()) {
        return Some(key);
    }
    if !pki.is_manager() {
        return None;
    }
    let key = pki.join_secret("gossip", "key").ok()?;
    if let Err(e) = crate::pki::write_private(&path, &key) {
        tracing::warn!(error = %e, "keeping the gossip key");
    }
    Some(key)
}
