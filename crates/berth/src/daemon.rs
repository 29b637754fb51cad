//! `berth daemon`: assembles the engine and the API and serves them on the
//! unix socket (the admin), over TLS on `--listen` (the cluster CA's server
//! certificate, or `--tls-cert`/`--tls-key`) and, when asked, plain HTTP on
//! loopback.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use berth_api::{Principal, RegistryAuth};

#[derive(clap::Args)]
pub struct DaemonArgs {
    /// Where berth keeps its state
    #[arg(long = "data-root", default_value = "/var/lib/berth")]
    data_root: PathBuf,
    /// The API's unix socket (root only, mode 0600)
    #[arg(long, default_value = "/run/berth/berth.sock")]
    socket: PathBuf,
    /// TLS listener for the API, UI, registry and trust [default: 0.0.0.0:7443]
    #[arg(long)]
    listen: Option<String>,
    /// PEM certificate chain for the TLS listener, replacing the one the
    /// cluster CA issues (with --tls-key)
    #[arg(long = "tls-cert", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert
    #[arg(long = "tls-key", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The same routes over plain HTTP; loopback addresses only
    #[arg(long = "insecure-listen")]
    insecure_listen: Option<SocketAddr>,
    /// Registry callers on TCP without a token: `open` (pull and push) or
    /// `token` (401 challenge; tokens from /v2/token)
    #[arg(long = "registry-auth", value_enum, default_value = "open")]
    registry_auth: RegistryAuthArg,
    /// The address other nodes reach this one at: IP or IP:PORT [default:
    /// the --listen address, or the host's first non-loopback IPv4 address]
    #[arg(long = "advertise-addr")]
    advertise_addr: Option<String>,
    /// How long the node certificates this manager issues are valid
    /// (90d, 720h, at least 30s); nodes renew theirs once a third of it
    /// is left
    #[arg(long = "node-cert-expiry", default_value = "90d", value_parser = parse_cert_expiry)]
    node_cert_expiry: std::time::Duration,
    /// Join a cluster: TOKEN@ADDR:PORT, as `berth cluster join-token`
    /// prints it. Only on a fresh data root; ignored on one that already
    /// joined that cluster
    #[arg(long, value_name = "TOKEN@ADDR:PORT")]
    join: Option<String>,
    /// How often nodes send their heartbeat to a manager (a manager tells
    /// its workers): 1s, 500ms
    #[arg(long = "heartbeat-period", default_value = "1s", value_parser = crate::cli::scan::parse_duration)]
    heartbeat_period: std::time::Duration,
    /// A node whose last heartbeat is older than this is `unknown`
    /// (suspected, not yet down): a short network blip stays here
    #[arg(long = "node-suspect-after", default_value = "3s", value_parser = crate::cli::scan::parse_duration)]
    node_suspect_after: std::time::Duration,
    /// A node silent for longer than this is `down`
    #[arg(long = "node-down-after", default_value = "10s", value_parser = crate::cli::scan::parse_duration)]
    node_down_after: std::time::Duration,
    /// Also send every audit entry to syslog: udp://HOST:PORT or unix:///dev/log
    #[arg(long = "audit-syslog")]
    audit_syslog: Option<String>,
    /// How often LDAP/AD directories without their own interval sync their
    /// teams: 60m, 2h, 90s (a bare number is minutes; 0: only on demand)
    #[arg(
        long = "directory-sync-interval",
        default_value = "60m",
        value_parser = crate::cli::access::parse_sync_interval
    )]
    directory_sync_interval: std::time::Duration,
    /// POST a JSON notice here when a vulnerability database import makes a
    /// scanned image vulnerable (repeatable). Each payload is signed:
    /// `X-Berth-Signature-256: sha256=HMAC` with the webhook's secret, kept
    /// in DATA_ROOT/scan/webhooks/ID.secret (see `berth scan webhooks ls`)
    #[arg(long = "scan-webhook", value_parser = parse_webhook_url)]
    scan_webhooks: Vec<String>,
    /// A registry (HOST[:PORT]) to reach without verifying its certificate,
    /// or in plain HTTP when it has no TLS (repeatable); loopback registries
    /// always are
    #[arg(long = "insecure-registry", value_parser = parse_registry_host)]
    insecure_registries: Vec<String>,
    /// How long a webhook notification is retried (with backoff) before it
    /// is dropped: 1h, 10m, 30s
    #[arg(long = "scan-webhook-retry-for", default_value = "1h", value_parser = crate::cli::scan::parse_duration)]
    scan_webhook_retry_for: std::time::Duration,
    /// Scan images pushed to this node's registry, in the background
    #[arg(long = "scan-on-push", default_value_t = true, action = clap::ArgAction::Set)]
    scan_on_push: bool,
    /// Time limit of one scanner plugin call: 10s, 500ms, 1m
    #[arg(long = "plugin-timeout", default_value = "10s", value_parser = crate::cli::scan::parse_duration)]
    plugin_timeout: std::time::Duration,
    /// Update the vulnerability database from --vulndb-source this often
    /// (24h, 6h, 90m); 0, the default, never: the daemon then makes no
    /// network call for vulnerability data (`berth vulndb update` on demand)
    #[arg(
        long = "vulndb-update-interval",
        value_name = "DURATION",
        default_value = "0",
        value_parser = crate::cli::scan::parse_duration
    )]
    vulndb_update_interval: std::time::Duration,
    /// Base URL of OSV exports ({URL}/{ecosystem}/all.zip): osv.dev's, or a
    /// mirror's for sites without it
    #[arg(
        long = "vulndb-source",
        value_name = "URL",
        default_value = berth_engine::vulndb_update::DEFAULT_SOURCE,
        value_parser = parse_vulndb_source
    )]
    vulndb_source: String,
    /// An OSV ecosystem updates fetch (repeatable) [default: every ecosystem
    /// berth matches]
    #[arg(long = "vulndb-ecosystem", value_name = "ECOSYSTEM", value_parser = parse_ecosystem)]
    vulndb_ecosystems: Vec<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RegistryAuthArg {
    Open,
    Token,
}

pub async fn run(a: DaemonArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(addr) = a.insecure_listen {
        if !addr.ip().is_loopback() {
            bail!("--insecure-listen {addr}: refusing plain HTTP on a non-loopback address");
        }
    }
    let timing = berth_cluster::membership::Timing {
        heartbeat: a.heartbeat_period,
        suspect_after: a.node_suspect_after,
        down_after: a.node_down_after,
    };
    timing.check().map_err(anyhow::Error::msg)?;
    let join = match &a.join {
        Some(arg) => Some(berth_cluster::join::parse_join(arg).map_err(|e| anyhow::anyhow!("--join: {e}"))?),
        None => None,
    };
    let advertise = berth_cluster::names::advertise_addr(
        a.advertise_addr.as_deref(),
        a.listen.as_deref().unwrap_or(DEFAULT_LISTEN),
    )
    .map_err(anyhow::Error::msg)?;
    let exe = std::env::current_exe().context("finding the berth binary")?;
    let data_root = if a.data_root.is_absolute() {
        a.data_root.clone()
    } else {
        std::env::current_dir()?.join(&a.data_root)
    };
    let fresh = !data_root.exists();
    prepare_data_root(&data_root)?;
    if let Some((token, manager)) = &join {
        if let Err(e) = join_cluster(&data_root, token, manager, &advertise).await {
            // A refused join leaves no data root behind that it made.
            if fresh {
                let _ = std::fs::remove_dir_all(&data_root);
            }
            return Err(e);
        }
    }
    let engine = open_engine(data_root.clone(), exe.clone()).await?;
    engine.images().set_insecure_registries(a.insecure_registries.clone());
    // A manager's Raft starts before anything changes cluster state, and
    // the TLS listener before the services open: a manager that joined
    // takes the leader's calls and catches up first.
    let replication = berth_node::start_replication(&engine, &advertise)
        .await
        .map_err(anyhow::Error::msg)?;
    let serving = berth_api::tls::Serving::default();
    if let Some(r) = &replication {
        serving.set_grpc(Some(berth_node::raft_routes(r, engine.state())));
    }
    let tls = serve_tls(&a, &engine, serving.clone()).await?;
    if let Some(r) = &replication {
        r.ready(engine.state()).await.map_err(anyhow::Error::msg)?;
    }
    let options = berth_node::Options {
        audit_syslog: a.audit_syslog.clone(),
        directory_sync_interval: Some(a.directory_sync_interval),
        scan: berth_engine::ScanConfig {
            webhooks: a.scan_webhooks.clone(),
            webhook_retry_for: a.scan_webhook_retry_for,
            scan_on_push: a.scan_on_push,
            plugin_limits: berth_engine::scan::PluginLimits {
                timeout: a.plugin_timeout,
                ..Default::default()
            },
            builtin_plugins: crate::builtin_plugins::all(),
            builtin_installer: Some(exe),
            vulndb_source: a.vulndb_source.clone(),
            vulndb_ecosystems: a.vulndb_ecosystems.clone(),
            vulndb_update_interval: a.vulndb_update_interval,
        },
        advertise: Some(advertise.clone()),
        timing,
        replication,
        restart: Some(berth_node::Restart(std::sync::Arc::new(restart_daemon))),
        node_cert_lifetime: Some(a.node_cert_expiry),
        gossip_bind: a.listen.as_deref().unwrap_or(DEFAULT_LISTEN).parse().ok(),
    };
    match crate::builtin_plugins::names() {
        names if names.is_empty() => tracing::warn!(
            "this berth binary has no built-in checks (it was built before `cargo xtask plugins`): \
             scans run only the plugins installed with `berth plugin install`"
        ),
        names => tracing::info!(plugins = %names.join(","), "built-in checks"),
    }
    let services = berth_node::open(engine.clone(), options).map_err(anyhow::Error::msg)?;
    let grpc = berth_node::grpc_routes(&services, Some(a.node_cert_expiry));
    let router = berth_api::router(services);
    serving.set_grpc(grpc);
    serving.set_http(router.clone());
    release_freed_memory();

    let socket = a.socket.clone();
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if socket.exists() {
        if tokio::net::UnixStream::connect(&socket).await.is_ok() {
            bail!("another daemon is already serving {}", socket.display());
        }
        std::fs::remove_file(&socket).with_context(|| format!("removing stale socket {}", socket.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(socket = %socket.display(), data_root = %data_root.display(), "berth daemon serving");
    let admin = router.clone().layer(axum::Extension(Principal::Admin));
    let shutdown = shutdown_signal();
    let unix = tokio::spawn(async move { axum::serve(listener, admin).await });
    let mut tcp = None;
    if let Some(addr) = a.insecure_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        tracing::info!(%addr, "plain HTTP on loopback");
        let registry_auth = match a.registry_auth {
            RegistryAuthArg::Open => RegistryAuth::Open,
            RegistryAuthArg::Token => RegistryAuth::Token,
        };
        let anon = router
            .clone()
            .layer(axum::Extension(Principal::Anonymous))
            .layer(axum::Extension(registry_auth));
        // Peer addresses reach authentication (per-source lockout) and the audit log.
        let anon = anon.into_make_service_with_connect_info::<SocketAddr>();
        tcp = Some(tokio::spawn(async move { axum::serve(l, anon).await }));
    }
    shutdown.await;
    tracing::info!("shutting down; containers keep running");
    unix.abort();
    if let Some(t) = tcp {
        t.abort();
    }
    if let Some(t) = tls {
        t.abort();
    }
    let _ = std::fs::remove_file(&socket);
    engine.shutdown().await;
    Ok(())
}

const DEFAULT_LISTEN: &str = "0.0.0.0:7443";

/// `--join`: on a data root that belongs to no cluster, joins the one the
/// token names (nothing is kept when that fails); on one that already
/// joined it, nothing; on one of another cluster, an error.
async fn join_cluster(
    data_root: &std::path::Path,
    token: &berth_cluster::join::JoinToken,
    manager: &str,
    advertise: &str,
) -> Result<()> {
    let pki_dir = data_root.join("pki");
    if pki_dir.join("ca.pem").exists() {
        let pki = berth_cluster::Pki::open(&pki_dir).context("opening the cluster CA")?;
        // The token may name a root the cluster has since rotated away from.
        let known = pki
            .client_roots()
            .iter()
            .any(|root| berth_cluster::fingerprint(root) == token.ca_digest);
        if pki_dir.join("node.json").exists() && known {
            tracing::info!("this node already joined the cluster the token names: --join is ignored");
            return Ok(());
        }
        bail!(
            "--join: the data root {} already belongs to a cluster (CA sha256:{}); a node joins with a fresh data root",
            data_root.display(),
            pki.ca_fingerprint()
        );
    }
    let hostname = berth_cluster::names::hostname();
    let args = berth_cluster::agent::JoinArgs {
        token,
        manager,
        advertise,
        hostname: &hostname,
    };
    berth_cluster::agent::join(&pki_dir, args)
        .await
        .map_err(|e| anyhow::anyhow!("--join: {e}"))?;
    Ok(())
}

/// Binds `--listen` and serves the router over TLS (and, on a manager, the
/// cluster's gRPC services to nodes). The default address being taken
/// (another daemon on this host) is not fatal: a chosen one is.
async fn serve_tls(
    a: &DaemonArgs,
    engine: &berth_engine::Engine,
    serving: berth_api::tls::Serving,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let addr = a.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let pki = std::sync::Arc::new(
        berth_cluster::Pki::open(&engine.data_root().join("pki")).context("opening the cluster CA")?,
    );
    // The certificate nodes see: the CA's server certificate on a manager,
    // the node certificate on a worker; with the root, which joining nodes
    // check against their token. Both follow a CA rotation.
    let node_identity = std::sync::Arc::new(if pki.is_manager() {
        let names = berth_cluster::names::host_names(a.advertise_addr.as_deref());
        berth_cluster::rpc::Presenting::server(pki.clone(), names)
    } else {
        berth_cluster::rpc::Presenting::node(pki.clone())
    });
    node_identity.current().context(if pki.is_manager() {
        "issuing the server certificate"
    } else {
        "reading this worker's node certificate"
    })?;
    let http_identity = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(berth_cluster::pki::load_identity(cert, key).context("--tls-cert/--tls-key")?),
        _ => None,
    };
    let me = berth_cluster::membership::NodeSelf::load(pki.dir()).context("reading this node's identity")?;
    let config = berth_api::tls::server_config(pki, http_identity, node_identity, engine.state().clone(), me)
        .context("configuring TLS")?;
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) if a.listen.is_none() && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(%addr, "not serving TLS: the default address is taken (choose one with --listen)");
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("binding --listen {addr}")),
    };
    let bound = listener.local_addr()?;
    tracing::info!(listen = %bound, "serving TLS");
    let advertised = a.advertise_addr.as_deref().and_then(advertised_with_port);
    Ok(Some(tokio::spawn(berth_api::tls::serve(
        listener, config, serving, advertised,
    ))))
}

/// A `--node-cert-expiry` value: a duration of at least 30 s and at most
/// ten years.
fn parse_cert_expiry(text: &str) -> Result<std::time::Duration, String> {
    let d = crate::cli::scan::parse_duration(text)?;
    if d < std::time::Duration::from_secs(30) || d > std::time::Duration::from_secs(3650 * 86400) {
        return Err(format!(
            "{text}: a node certificate lives at least 30s and at most 3650d"
        ));
    }
    Ok(d)
}

/// An `--insecure-registry` value: `host[:port]`, no scheme or path.
fn parse_registry_host(value: &str) -> Result<String, String> {
    let host = value.trim();
    let bad = host.is_empty()
        || host.contains("://")
        || host.contains('/')
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    match bad {
        true => Err(format!("{value:?} is not HOST[:PORT] (e.g. registry.lan:5000)")),
        false => Ok(host.to_string()),
    }
}

/// A `--vulndb-source` value: an http:// or https:// base URL.
fn parse_vulndb_source(url: &str) -> Result<String, String> {
    berth_engine::vulndb_update::normalize_source(url)
}

/// A `--vulndb-ecosystem` value: an OSV ecosystem name.
fn parse_ecosystem(name: &str) -> Result<String, String> {
    berth_engine::vulndb_update::validate_ecosystem(name).map(|()| name.to_string())
}

/// A `--scan-webhook` value: an http:// or https:// URL with a host.
fn parse_webhook_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("not an http:// or https:// URL")?;
    match rest.split(['/', '?', '#']).next() {
        Some(authority) if !authority.is_empty() => Ok(url.to_string()),
        _ => Err("the URL names no host".into()),
    }
}

/// `--advertise-addr` when it names a port (`HOST:PORT`, `IP:PORT`,
/// `[IPv6]:PORT`): the address clients reach the TLS listener by, which
/// registry challenges then name. Without a port, challenges name the host
/// the client asked for.
fn advertised_with_port(a: &str) -> Option<String> {
    let (host, port) = a.trim().rsplit_once(':')?;
    let host_ok = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-[]:".contains(&b))
        && (!host.contains(':') || host.starts_with('['));
    (host_ok && port.parse::<u16>().is_ok()).then(|| format!("{host}:{port}"))
}

/// Makes the data root searchable by others (0711, as Docker does for
/// user namespaces), so that a container's root user, an unprivileged uid
/// on the host, can reach its root filesystem below it; `mktemp -d` makes
/// 0700 directories.
fn prepare_data_root(data_root: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(data_root).with_context(|| format!("creating data root {}", data_root.display()))?;
    let mode = std::fs::metadata(data_root)
        .with_context(|| format!("reading data root {}", data_root.display()))?
        .permissions()
        .mode();
    if mode & 0o011 != 0o011 {
        let searchable = (mode & 0o7777) | 0o011;
        std::fs::set_permissions(data_root, std::fs::Permissions::from_mode(searchable)).with_context(|| {
            format!(
                "making data root {} searchable (mode {searchable:o})",
                data_root.display()
            )
        })?;
        tracing::info!(
            data_root = %data_root.display(),
            from = %format!("{:o}", mode & 0o7777),
            to = %format!("{searchable:o}"),
            "made the data root searchable, so that containers' remapped root users reach their files"
        );
    }
    Ok(())
}

async fn open_engine(data_root: PathBuf, exe: PathBuf) -> Result<std::sync::Arc<berth_engine::Engine>> {
    berth_engine::Engine::open(berth_engine::Config {
        data_root: data_root.clone(),
        exe,
    })
    .await
    .with_context(|| format!("opening data root {}", data_root.display()))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Starts the daemon again in this process (exec of the same binary with
/// the same arguments): a node promoted or demoted comes back in its new
/// role, with the same pid. Containers keep running, as on any restart;
/// the listeners' sockets close on exec, and the new daemon binds them.
fn restart_daemon() {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            tracing::error!(error = %e, "cannot find the berth binary to restart");
            return;
        }
    };
    let error = std::process::Command::new(exe).args(std::env::args_os().skip(1)).exec();
    tracing::error!(error = %error, "restarting the daemon failed");
}

/// Gives the heap memory freed so far back to the kernel. Opening a fresh
/// data root compiles the built-in plugins (cranelift) and hashes the admin
/// password (argon2, 19 MiB); glibc keeps what they freed unless asked, and
/// an idle daemon would carry it for good (about 6 MiB measured).
fn release_freed_memory() {
    // SAFETY: malloc_trim takes no pointer and only returns free pages of
    // the allocator's heaps to the kernel; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::{advertised_with_port, parse_webhook_url};

    #[test]
    fn a_webhook_is_an_http_url_with_a_host() {
        assert!(parse_webhook_url("https://hooks.example/x?t=1").is_ok());
        assert!(parse_webhook_url("http://127.0.0.1:9/hook").is_ok());
        assert_eq!(
            parse_webhook_url("ftp://x/y"),
            Err("not an http:// or https:// URL".into())
        );
        assert_eq!(parse_webhook_url("https:///path"), Err("the URL names no host".into()));
    }

    #[test]
    fn only_an_advertised_address_with_a_port_is_named_in_challenges() {
        assert_eq!(
            advertised_with_port("reg.example:443").as_deref(),
            Some("reg.example:443")
        );
        assert_eq!(
            advertised_with_port("198.18.0.1:7443").as_deref(),
            Some("198.18.0.1:7443")
        );
        assert_eq!(
            advertised_with_port("[2001:db8::1]:7443").as_deref(),
            Some("[2001:db8::1]:7443")
        );
        assert_eq!(advertised_with_port("reg.example"), None);
        assert_eq!(advertised_with_port("2001:db8::1"), None);
        assert_eq!(advertised_with_port("a\"b:1"), None);
        assert_eq!(advertised_with_port("host:notaport"), None);
    }
}
