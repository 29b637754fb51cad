//! Several berth hosts on one machine, for the cluster's end-to-end tests.
//!
//! A [`Cluster`] is N hosts, each a network namespace with one `eth0`
//! (a veth pair to a bridge in a "switch" namespace of its own) addressed
//! from 198.18.0.0/24 (the range set aside for benchmarking networks), and
//! one `berth daemon` per host started in it with `nsenter`: its own data
//! root, unix socket and listener (`ADDR:7443`, advertised as such); the
//! daemon derives its cgroup parent from its data root. Tests drive each
//! daemon through its socket ([`Cluster::berth`]) and check reachability
//! from inside a host ([`Cluster::reachable`]).
//!
//! Faults: [`Cluster::kill`] (SIGKILL) and [`Cluster::restart`] a daemon on
//! its data root; [`Cluster::partition`] (the host's link down),
//! [`Cluster::lose`] (a share of the host's packets dropped; this kernel has
//! no `sch_netem`, so iptables' `statistic` match does it) and
//! [`Cluster::heal`].
//!
//! Clean-up: dropping a cluster removes its containers, kills its daemons
//! (and what their containers left: processes by cgroup, mounts) and
//! deletes its namespaces (their links go with them) and directories, also
//! when the test panicked. A run killed before that leaves namespaces named after
//! its pid; [`sweep`], which [`Cluster::start`] calls, ends the processes
//! in those of dead pids and deletes them.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The port each daemon listens on, inside its host.
pub const PORT: u16 = 7443;

/// Namespaces this harness makes start with this, then the pid of the
/// process that made them.
const PREFIX: &str = "bt";

static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

/// The test images (`cargo xtask image`): `BERTH_TEST_IMAGES`, else
/// `target/images` beside this crate.
pub fn images_dir() -> PathBuf {
    std::env::var_os("BERTH_TEST_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/images"))
}

/// The berth binary: `BERTH_BIN`, else the debug build beside this crate.
pub fn berth_bin() -> PathBuf {
    std::env::var_os("BERTH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/berth"))
}

/// Runs `program args`; panics with its output when it fails.
fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `ip ARGS`.
fn ip(args: &[&str]) -> Output {
    run("ip", args)
}

/// Waits up to `limit` for `ready`; whether it came.
pub fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One host: a namespace, an address, a data root and (while it runs) a daemon.
pub struct Host {
    /// `h1`, `h2`, ...
    pub name: String,
    /// The network namespace.
    pub netns: String,
    pub addr: Ipv4Addr,
    pub data_root: PathBuf,
    pub socket: PathBuf,
    log: PathBuf,
    daemon: Option<Child>,
    /// More `berth daemon` arguments (`--join ...`), kept for restarts.
    extra: Vec<String>,
}

impl Host {
    /// `ADDR:PORT`, where the daemon listens.
    pub fn endpoint(&self) -> String {
        format!("{}:{PORT}", self.addr)
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }
}

/// N hosts on one bridge; see the module docs.
pub struct Cluster {
    /// `bt<pid>x<n>`: the namespaces' prefix.
    id: String,
    switch: String,
    dir: tempfile::TempDir,
    hosts: Vec<Host>,
}

impl Cluster {
    /// `n` hosts (at most 200), each with its daemon answering: each a
    /// cluster of its own.
    pub fn start(n: usize) -> Cluster {
        Self::make(n, 0, &[])
    }

    /// `n` hosts with no daemon: the namespaces, their bridge and their
    /// clean-up, for other software (a peer's daemons, in the benches).
    pub fn bare(n: usize) -> Cluster {
        assert!((1..=200).contains(&n), "a cluster has 1 to 200 hosts");
        sweep();
        let id = format!(
            "{PREFIX}{}x{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::SeqCst)
        );
        let dir = tempfile::Builder::new()
            .prefix("berth-cluster-")
            .tempdir()
            .expect("a directory for the cluster");
        // Containers whose root is remapped must traverse the data roots.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod the cluster directory");
        let switch = format!("{id}-sw");
        let mut cluster = Cluster {
            id,
            switch,
            dir,
            hosts: Vec::new(),
        };
        // From here on, a panic drops `cluster`, which removes what exists.
        ip(&["netns", "add", &cluster.switch]);
        ip(&["-n", &cluster.switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &cluster.switch, "link", "set", "br0", "up"]);
        for i in 1..=n {
            cluster.add_host(i);
        }
        cluster
    }

    /// One cluster of `n` hosts: `h1` starts it, and every other host
    /// joins it as a worker with the one command `berth cluster
    /// join-token worker` prints.
    pub fn start_joined(n: usize) -> Cluster {
        Self::make(n, 1, &[])
    }

    /// [`Cluster::start_joined`], with more `berth daemon` arguments for
    /// `h1`, the manager.
    pub fn start_joined_with(n: usize, manager_args: &[&str]) -> Cluster {
        Self::make(n, 1, manager_args)
    }

    /// One cluster of `managers + workers` hosts: `h1` starts it, the next
    /// `managers - 1` join it as managers (one at a time, each a voter
    /// before the next joins), and the rest join as workers.
    pub fn start_managers(managers: usize, workers: usize) -> Cluster {
        assert!(managers >= 1, "a cluster has a manager");
        Self::make(managers + workers, managers, &[])
    }

    fn make(n: usize, managers: usize, manager_args: &[&str]) -> Cluster {
        let mut cluster = Self::bare(n);
        if managers > 0 {
            cluster.hosts[0].extra = manager_args.iter().map(|a| a.to_string()).collect();
            cluster.spawn(0);
            cluster.wait_ready(0);
            if managers > 1 {
                let join = cluster.join_arg(0, "manager");
                for i in 1..managers {
                    cluster.hosts[i].extra = vec!["--join".into(), join.clone()];
                    cluster.spawn(i);
                    cluster.wait_ready(i);
                    cluster.wait_voters(0, i + 1);
                }
            }
            let join = cluster.join_arg(0, "worker");
            for i in managers..n {
                cluster.hosts[i].extra = vec!["--join".into(), join.clone()];
            }
            for i in managers..n {
                cluster.spawn(i);
            }
            for i in managers..n {
                cluster.wait_ready(i);
            }
            return cluster;
        }
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.wait_ready(i);
        }
        cluster
    }

    /// One more host, its daemon started with `extra` arguments (`--join
    /// ...`) and not waited for (see [`Cluster::wait_ready`]); its index.
    pub fn grow(&mut self, extra: &[String]) -> usize {
        let i = self.hosts.len();
        self.add_host(i + 1);
        self.hosts[i].extra = extra.to_vec();
        self.spawn(i);
        i
    }

    /// `TOKEN@ADDR:PORT` for `--join` to host `manager`'s cluster as `role`.
    pub fn join_arg(&self, manager: usize, role: &str) -> String {
        let token = self.ok(manager, &["cluster", "join-token", "-q", role]);
        format!("{}@{}", token.trim(), self.hosts[manager].endpoint())
    }

    /// Runs `berth daemon` once in host `i`'s namespace on a fresh data
    /// root of its own, with `args`, for at most `limit`: a daemon that
    /// should refuse to start. Its output, and the data root (which a
    /// refused start leaves as it found it).
    pub fn daemon_once(&self, i: usize, args: &[&str], limit: Duration) -> (Output, PathBuf) {
        let host = &self.hosts[i];
        let root = self.dir.path().join(format!(
            "{}-once-{}",
            host.name,
            CLUSTERS.fetch_add(1, Ordering::SeqCst)
        ));
        let out = Command::new("timeout")
            .arg("-s")
            .arg("KILL")
            .arg(limit.as_secs().to_string())
            .arg("nsenter")
            .arg(format!("--net=/run/netns/{}", host.netns))
            .arg(berth_bin())
            .arg("daemon")
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--socket")
            .arg(root.join("berth.sock"))
            .args(["--listen", &format!("{}:{}", host.addr, PORT + 1)])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running berth daemon");
        (out, root.join("data"))
    }

    fn add_host(&mut self, i: usize) {
        let name = format!("h{i}");
        let netns = format!("{}-{name}", self.id);
        let addr = Ipv4Addr::new(198, 18, 0, u8::try_from(10 + i).expect("at most 200 hosts"));
        ip(&["netns", "add", &netns]);
        let root = self.dir.path().join(&name);
        self.hosts.push(Host {
            name: name.clone(),
            netns: netns.clone(),
            addr,
            data_root: root.join("data"),
            socket: root.join("berth.sock"),
            log: root.join("daemon.log"),
            daemon: None,
            extra: Vec::new(),
        });
        std::fs::create_dir_all(&root).expect("the host's directory");
        // The veth pair is made in the two namespaces directly: nothing of
        // it ever exists in the machine's own.
        ip(&[
            "link",
            "add",
            &name,
            "netns",
            &self.switch,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &netns,
        ]);
        ip(&["-n", &self.switch, "link", "set", &name, "master", "br0", "up"]);
        ip(&["-n", &netns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
        ip(&["-n", &netns, "link", "set", "eth0", "up"]);
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
    }

    /// The hosts, in order (`h1` first).
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Host `i` (0-based).
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    fn spawn(&mut self, i: usize) {
        let host = &mut self.hosts[i];
        assert!(host.daemon.is_none(), "{}: the daemon runs already", host.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&host.log)
            .expect("the daemon's log");
        let endpoint = host.endpoint();
        // nsenter, not `ip netns exec`: that one also gives the daemon a
        // mount namespace with a fresh /sys, without the cgroup mounts.
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", host.netns))
            .arg(berth_bin())
            .arg("daemon")
            .arg("--data-root")
            .arg(&host.data_root)
            .arg("--socket")
            .arg(&host.socket)
            .args(["--listen", &endpoint, "--advertise-addr", &endpoint])
            .args(&host.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting a daemon");
        host.daemon = Some(child);
    }

    /// Waits until host `i`'s daemon answers on its socket (a minute at
    /// most); panics with its log when it exits or does not answer.
    pub fn wait_ready(&mut self, i: usize) {
        let answered = wait_until(Duration::from_secs(60), || {
            if let Some(child) = self.hosts[i].daemon.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "{}: the daemon exited ({status}): {}",
                        self.hosts[i].name,
                        self.hosts[i].log()
                    );
                }
            }
            self.berth(i, &["version"]).status.success()
        });
        assert!(
            answered,
            "{}: the daemon did not answer: {}",
            self.hosts[i].name,
            self.hosts[i].log()
        );
    }

    /// What host `i` (a manager) says of Raft: `berth cluster info`'s
    /// `raft` object.
    pub fn raft(&self, i: usize) -> serde_json::Value {
        let out = self.berth(i, &["cluster", "info", "--format", "json"]);
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        info["raft"].clone()
    }

    /// Waits until host `i`'s Raft has `n` voters (a minute at most).
    pub fn wait_voters(&self, i: usize, n: usize) {
        let done = wait_until(Duration::from_secs(60), || {
            let r = self.raft(i);
            r["voters"].as_u64() == Some(n as u64) && r["learners"].as_u64() == Some(0)
        });
        assert!(
            done,
            "{}: Raft did not reach {n} voters: {}",
            self.hosts[i].name,
            self.raft(i)
        );
    }

    /// The index of the host that leads Raft, as host `i` sees it.
    pub fn leader(&self, i: usize) -> Option<usize> {
        let addr = self.raft(i)["leader_addr"].as_str()?.to_string();
        self.hosts.iter().position(|h| h.endpoint() == addr)
    }

    /// The berth CLI against host `i`'s socket.
    pub fn cmd(&self, i: usize, args: &[&str]) -> Command {
        let mut c = Command::new(berth_bin());
        c.arg("-H")
            .arg(format!("unix://{}", self.hosts[i].socket.display()))
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs the berth CLI against host `i`'s socket.
    pub fn berth(&self, i: usize, args: &[&str]) -> Output {
        self.cmd(i, args).output().expect("running berth")
    }

    /// Runs the berth CLI against host `i`; its stdout, or a panic naming
    /// what it said.
    pub fn ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.berth(i, args);
        assert!(
            out.status.success(),
            "{}: berth {}: {}",
            self.hosts[i].name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether a TCP connection from inside host `from` reaches host `to`'s
    /// daemon within a second.
    pub fn reachable(&self, from: usize, to: usize) -> bool {
        let target = &self.hosts[to];
        let probe = format!(
            "import socket\nsocket.create_connection(('{}', {PORT}), timeout=1).close()",
            target.addr
        );
        Command::new("ip")
            .args(["netns", "exec", &self.hosts[from].netns, "python3", "-c", &probe])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// SIGKILL to host `i`'s daemon: a crash.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.hosts[i].daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM to host `i`'s daemon, and waits for it: a clean stop.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.hosts[i].daemon.take() {
            // SAFETY: kill(2) on the pid of a child this harness started and
            // has not waited for, so the pid is still that child's.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let _ = child.wait();
        }
    }

    /// Starts host `i`'s daemon again on its data root and waits for it.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_ready(i);
    }

    /// Cuts host `i` off: its link goes down.
    pub fn partition(&self, i: usize) {
        ip(&["-n", &self.hosts[i].netns, "link", "set", "eth0", "down"]);
    }

    /// Drops `percent` of the packets host `i` sends and receives.
    pub fn lose(&self, i: usize, percent: u8) {
        assert!(percent <= 100, "a share of packets is 0 to 100 percent");
        let probability = format!("{:.2}", f64::from(percent) / 100.0);
        let netns = &self.hosts[i].netns;
        for (chain, direction) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    netns,
                    "iptables",
                    "-A",
                    chain,
                    direction,
                    "eth0",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &probability,
                    "-j",
                    "DROP",
                ],
            );
        }
    }

    /// Undoes [`partition`](Self::partition) and [`lose`](Self::lose) on host `i`.
    pub fn heal(&self, i: usize) {
        let netns = &self.hosts[i].netns;
        run("ip", &["netns", "exec", netns, "iptables", "-F", "INPUT"]);
        run("ip", &["netns", "exec", netns, "iptables", "-F", "OUTPUT"]);
        ip(&["-n", netns, "link", "set", "eth0", "up"]);
    }

    /// The namespaces this cluster made.
    pub fn namespaces(&self) -> Vec<String> {
        let mut names = vec![self.switch.clone()];
        names.extend(self.hosts.iter().map(|h| h.netns.clone()));
        names
    }

    /// The directory holding every host's data root, socket and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Containers first, through the daemons that run them.
        for i in 0..self.hosts.len() {
            if self.hosts[i].daemon.is_none() {
                continue;
            }
            let ids = self.berth(i, &["ps", "-aq"]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = self.berth(i, &["rm", "-f", id]);
            }
        }
        for i in 0..self.hosts.len() {
            self.kill(i);
        }
        // What a killed daemon's containers left: their processes (by
        // their cgroups) and their mounts.
        for host in &self.hosts {
            for dir in container_cgroups(&host.data_root) {
                kill_cgroup_tree(&dir);
            }
        }
        unmount_under(self.dir.path());
        for netns in self.namespaces() {
            remove_namespace(&netns);
        }
    }
}

/// The cgroups under which the daemon on `data_root` puts its containers
/// (as `berth_runtime` derives it: FNV-1a of the path, under /berth), in
/// every hierarchy (cgroup v1 has one per controller).
fn container_cgroups(data_root: &Path) -> Vec<PathBuf> {
    let hash = data_root
        .display()
        .to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    let relative = format!("berth/{:08x}", hash as u32);
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join(&relative)];
    if let Ok(hierarchies) = std::fs::read_dir(root) {
        dirs.extend(hierarchies.flatten().map(|h| h.path().join(&relative)));
    }
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

/// Kills every process in the cgroup tree at `dir` and removes the tree.
fn kill_cgroup_tree(dir: &Path) {
    let children: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    for child in &children {
        kill_cgroup_tree(child);
    }
    let procs = || std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs().split_whitespace().filter_map(|p| p.parse::<libc::pid_t>().ok()) {
        // SAFETY: kill(2) on a pid listed in the cgroup of this cluster's
        // own daemon: a process of one of its containers.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    // A cgroup is removable once its processes are gone.
    wait_until(Duration::from_secs(5), || procs().trim().is_empty());
    let _ = std::fs::remove_dir(dir);
}

/// Detaches every mount under `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<String> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .map(str::to_string)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let Ok(c) = std::ffi::CString::new(point) else { continue };
        // SAFETY: umount2(2) with a NUL-terminated path under this
        // cluster's own directory; MNT_DETACH never blocks.
        unsafe {
            libc::umount2(c.as_ptr(), libc::MNT_DETACH);
        }
    }
}

/// The namespaces that exist now.
pub fn namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Ends every process left in `netns` (daemons this harness started) and
/// deletes it; its links go with it.
fn remove_namespace(netns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", netns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).lines() {
            if let Ok(pid) = pid.trim().parse::<libc::pid_t>() {
                // SAFETY: kill(2) on a pid that `ip netns pids` just listed
                // in a namespace this harness made: one of its daemons.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "delete", netns])
        .stderr(Stdio::null())
        .status();
}

/// Removes what runs killed before their clean-up left: namespaces of this
/// harness whose process is gone.
pub fn sweep() {
    for netns in namespaces() {
        let Some(rest) = netns.strip_prefix(PREFIX) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('x') else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            remove_namespace(&netns);
        }
    }
}
