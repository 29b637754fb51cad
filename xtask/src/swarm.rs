//! Docker swarm mode, the cluster bench's peer: one dockerd per host of
//! the harness (network namespaces on a bridge, as berth's hosts), each
//! with its own data root, exec root and socket under the harness's
//! directory. The same steps as berth's side of `cargo xtask bench
//! cluster`: workers join one manager, `node ls` on it, then three
//! managers (two workers promoted), a label written through the leader
//! and through a follower, and the leader killed.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use crate::util::{self, step, Daemon};

/// What the swarm measured: each figure, or why it was not.
pub struct Figures {
    pub join_to_ready: Result<f64, String>,
    /// With the dockerd's start on the joining host (berth's figure
    /// always includes its daemon's start).
    pub start_and_join_to_ready: Result<f64, String>,
    pub node_ls_p50: Result<f64, String>,
    pub write_leader_p50: Result<f64, String>,
    pub write_follower_p50: Result<f64, String>,
    pub failover: Result<f64, String>,
}

impl Figures {
    fn failed(reason: &str) -> Figures {
        let e = || Err(reason.to_string());
        Figures {
            join_to_ready: e(),
            start_and_join_to_ready: e(),
            node_ls_p50: e(),
            write_leader_p50: e(),
            write_follower_p50: e(),
            failover: e(),
        }
    }
}

/// Runs the swarm side: `joins` workers, `ls_rounds` of `node ls`,
/// `writes` label writes each way, `failovers` leader kills. A failure
/// leaves the figures not yet measured as skipped, with its reason.
pub fn measure(joins: usize, ls_rounds: usize, writes: usize, failovers: usize) -> Figures {
    let mut figures = Figures::failed("not reached: an earlier step of the swarm failed");
    if let Err(e) = run(&mut figures, joins, ls_rounds, writes, failovers) {
        let reason = format!("{e:#}");
        eprintln!("docker swarm: {reason}");
        for f in [
            &mut figures.join_to_ready,
            &mut figures.start_and_join_to_ready,
            &mut figures.node_ls_p50,
            &mut figures.write_leader_p50,
            &mut figures.write_follower_p50,
            &mut figures.failover,
        ] {
            if f.as_ref().is_err_and(|r| r.starts_with("not reached")) {
                *f = Err(reason.clone());
            }
        }
    }
    figures
}

fn run(figures: &mut Figures, joins: usize, ls_rounds: usize, writes: usize, failovers: usize) -> Result<()> {
    util::ensure_debian_packages(&["docker.io"]).context("installing docker.io")?;
    let (mut s, starts) = Swarm::start(1 + joins)?;
    step("docker swarm: h1 inits the swarm");
    s.docker_ok(
        0,
        &[
            "swarm",
            "init",
            "--advertise-addr",
            &s.addr(0),
            "--listen-addr",
            &format!("{}:2377", s.addr(0)),
        ],
    )?;
    let token = s.docker_ok(0, &["swarm", "join-token", "-q", "worker"])?;
    step(&format!("docker swarm: {joins} hosts join one after the other"));
    let mut times = Vec::new();
    for i in 1..=joins {
        let start = Instant::now();
        let manager = format!("{}:2377", s.addr(0));
        s.docker_ok(
            i,
            &[
                "swarm",
                "join",
                "--token",
                token.trim(),
                "--advertise-addr",
                &s.addr(i),
                &manager,
            ],
        )?;
        let id = s.node_id(i)?;
        s.wait(&format!("h{} ready", i + 1), Duration::from_secs(60), |s| {
            Ok(s.node_state(0, &id)?.is_some_and(|(status, _)| status == "Ready"))
        })?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        eprintln!("  h{}: ready after {ms:.0} ms", i + 1);
        times.push(ms);
    }
    figures.join_to_ready = Ok(crate::bench::median(&times).unwrap_or_default());
    let with_start: Vec<f64> = times
        .iter()
        .zip(&starts[1..])
        .map(|(join, start)| join + start)
        .collect();
    figures.start_and_join_to_ready = Ok(crate::bench::median(&with_start).unwrap_or_default());
    step(&format!("docker swarm: {ls_rounds} rounds of node ls on h1"));
    let mut ls = Vec::new();
    for _ in 0..ls_rounds {
        ls.push(crate::bench::time_ms(&mut s.docker(0, &["node", "ls"]))?);
    }
    figures.node_ls_p50 = Ok(crate::bench::median(&ls).unwrap_or_default());

    step("docker swarm: h2 and h3 promoted: three managers");
    let (id2, id3) = (s.node_id(1)?, s.node_id(2)?);
    s.docker_ok(0, &["node", "promote", &id2, &id3])?;
    for id in [&id2, &id3] {
        s.wait("a promoted manager reachable", Duration::from_secs(60), |s| {
            Ok(s.node_state(0, id)?.is_some_and(|(_, m)| m == "Reachable"))
        })?;
    }
    let leader = s.leader(0)?.context("no leader")?;
    let follower = (0..3).find(|i| *i != leader).context("no follower")?;
    for (figure, via) in [(0, leader), (1, follower)] {
        step(&format!("docker swarm: {writes} writes through h{}", via + 1));
        let id = s.node_id(via)?;
        let mut times = Vec::new();
        for n in 0..writes {
            let label = format!("bench={n}");
            times.push(crate::bench::time_ms(
                &mut s.docker(via, &["node", "update", "--label-add", &label, &id]),
            )?);
        }
        let p50 = Ok(crate::bench::median(&times).unwrap_or_default());
        match figure {
            0 => figures.write_leader_p50 = p50,
            _ => figures.write_follower_p50 = p50,
        }
    }
    let mut times = Vec::new();
    for round in 0..failovers {
        let leader = s.leader(0).ok().flatten().or(s.leader(1).ok().flatten());
        let leader = leader.context("no leader")?;
        let via = (0..3).find(|i| *i != leader).context("no follower")?;
        let id = s.node_id(via)?;
        step(&format!(
            "docker swarm: failover {}: h{}'s dockerd killed",
            round + 1,
            leader + 1
        ));
        let start = Instant::now();
        s.kill(leader);
        loop {
            let out = s
                .docker(via, &["node", "update", "--label-add", "failover=1", &id])
                .stdin(Stdio::null())
                .output()?;
            if out.status.success() {
                break;
            }
            ensure!(
                start.elapsed() < Duration::from_secs(120),
                "no write succeeded 120 s after the leader was killed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        eprintln!("  first write after {ms:.0} ms");
        times.push(ms);
        s.start_dockerd(leader)?;
        let back = s.node_id(leader)?;
        s.wait("the killed manager reachable again", Duration::from_secs(120), |s| {
            Ok(s.node_state(via, &back)?.is_some_and(|(_, m)| m == "Reachable"))
        })?;
    }
    figures.failover = Ok(crate::bench::median(&times).unwrap_or_default());
    Ok(())
}

/// The hosts, with a dockerd on each.
struct Swarm {
    hosts: berth_tests::Cluster,
    daemons: Vec<Option<Daemon>>,
    cli: PathBuf,
}

impl Swarm {
    /// The hosts, and how long each dockerd took to answer.
    fn start(n: usize) -> Result<(Swarm, Vec<f64>)> {
        step(&format!("docker swarm: {n} hosts, one dockerd each"));
        let mut s = Swarm {
            hosts: berth_tests::Cluster::bare(n),
            daemons: (0..n).map(|_| None).collect(),
            cli: crate::bench::docker_cli(),
        };
        let mut starts = Vec::new();
        for i in 0..n {
            let start = Instant::now();
            s.start_dockerd(i)?;
            starts.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        Ok((s, starts))
    }

    fn addr(&self, i: usize) -> String {
        self.hosts.host(i).addr.to_string()
    }

    fn dir(&self, i: usize) -> PathBuf {
        self.hosts.dir().join(format!("d{}", i + 1))
    }

    fn socket(&self, i: usize) -> String {
        format!("unix://{}", self.dir(i).join("d.sock").display())
    }

    fn start_dockerd(&mut self, i: usize) -> Result<()> {
        let daemon = crate::bench::spawn_dockerd(
            &self.dir(i),
            &self.socket(i),
            Some(&self.hosts.host(i).netns),
            &self.cli,
        )
        .with_context(|| format!("dockerd on h{}", i + 1))?;
        self.daemons[i] = Some(daemon);
        Ok(())
    }

    /// SIGKILL to host `i`'s dockerd (its containerd lives on).
    fn kill(&mut self, i: usize) {
        if let Some(mut d) = self.daemons[i].take() {
            if let Some(pid) = d.pid() {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
            d.stop();
        }
    }

    fn docker(&self, i: usize, args: &[&str]) -> Command {
        let mut c = Command::new(&self.cli);
        c.args(["-H", &self.socket(i)]).args(args);
        c
    }

    fn docker_ok(&self, i: usize, args: &[&str]) -> Result<String> {
        util::output(&mut self.docker(i, args))
    }

    fn node_id(&self, i: usize) -> Result<String> {
        let id = self.docker_ok(i, &["info", "--format", "{{.Swarm.NodeID}}"])?;
        let id = id.trim().to_string();
        ensure!(!id.is_empty(), "h{} is in no swarm", i + 1);
        Ok(id)
    }

    /// Node `id`'s status and manager status, as host `i` lists them.
    fn node_state(&self, i: usize, id: &str) -> Result<Option<(String, String)>> {
        let out = self
            .docker(i, &["node", "ls", "--format", "{{.ID}} {{.Status}} {{.ManagerStatus}}"])
            .stdin(Stdio::null())
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).lines().find_map(|line| {
            let mut f = line.split_whitespace();
            (f.next() == Some(id)).then(|| {
                (
                    f.next().unwrap_or_default().to_string(),
                    f.next().unwrap_or_default().to_string(),
                )
            })
        }))
    }

    /// The host that leads, as host `i` sees it.
    fn leader(&self, i: usize) -> Result<Option<usize>> {
        for h in 0..self.daemons.len() {
            if self.daemons[h].is_none() {
                continue;
            }
            let Ok(id) = self.node_id(h) else { continue };
            if self.node_state(i, &id)?.is_some_and(|(_, m)| m == "Leader") {
                return Ok(Some(h));
            }
        }
        Ok(None)
    }

    fn wait(&self, what: &str, limit: Duration, mut done: impl FnMut(&Swarm) -> Result<bool>) -> Result<()> {
        let start = Instant::now();
        while !done(self)? {
            ensure!(start.elapsed() < limit, "docker swarm: {what}: not within {limit:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        // Stopped cleanly, each dockerd unmounts what it mounted; the
        // harness then ends what is left in the namespaces.
        for d in self.daemons.iter_mut().flatten() {
            d.stop();
        }
    }
}
