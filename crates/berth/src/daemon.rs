//! `berth daemon`: assembles the engine and the API and serves them on the
//! unix socket (the admin) and, when asked, plain HTTP on loopback.

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
    /// TLS listener for the API, UI, registry and trust (served once access control lands)
    #[arg(long, default_value = "0.0.0.0:7443")]
    listen: String,
    /// The same routes over plain HTTP; loopback addresses only
    #[arg(long = "insecure-listen")]
    insecure_listen: Option<SocketAddr>,
    /// Registry callers on TCP without a token: `open` (pull and push) or
    /// `token` (401 challenge; tokens from /v2/token)
    #[arg(long = "registry-auth", value_enum, default_value = "open")]
    registry_auth: RegistryAuthArg,
    /// Address other nodes reach this one at (clusters come later)
    #[arg(long = "advertise-addr")]
    advertise_addr: Option<String>,
    /// Join an existing cluster (clusters come later)
    #[arg(long)]
    join: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RegistryAuthArg {
    Open,
    Token,
}

pub async fn run(a: DaemonArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    if let Some(addr) = a.insecure_listen {
        if !addr.ip().is_loopback() {
            bail!("--insecure-listen {addr}: refusing plain HTTP on a non-loopback address");
        }
    }
    if a.join.is_some() {
        bail!("--join: clustering is not available in this version yet");
    }
    let exe = std::env::current_exe().context("finding the berth binary")?;
    let data_root = if a.data_root.is_absolute() {
        a.data_root.clone()
    } else {
        std::env::current_dir()?.join(&a.data_root)
    };
    let engine = open_engine(data_root.clone(), exe).await?;
    let router = berth_api::router(engine.clone());

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
            .layer(axum::Extension(Principal::Anonymous))
            .layer(axum::Extension(registry_auth));
        tcp = Some(tokio::spawn(async move { axum::serve(l, anon).await }));
    }
    tracing::info!(listen = %a.listen, "the TLS listener is not served yet: it comes with access control");
    let _ = a.advertise_addr;
    shutdown.await;
    tracing::info!("shutting down; containers keep running");
    unix.abort();
    if let Some(t) = tcp {
        t.abort();
    }
    let _ = std::fs::remove_file(&socket);
    engine.shutdown();
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
