//! `berth shim` and `berth shim-exec`: argument parsing only; the work is in
//! `berth_runtime::shim`.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ShimArgs {
    #[arg(long)]
    id: String,
    #[arg(long)]
    root: PathBuf,
    #[arg(long)]
    bundle: PathBuf,
    #[arg(long)]
    state: PathBuf,
    #[arg(long)]
    socket: PathBuf,
    #[arg(long)]
    tty: bool,
    #[arg(long)]
    stdin: bool,
    /// COLSxROWS
    #[arg(long = "console-size", value_parser = parse_size)]
    console_size: Option<(u16, u16)>,
}

fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let (c, r) = s.split_once('x').ok_or("expected COLSxROWS")?;
    Ok((
        c.parse().map_err(|_| "bad columns")?,
        r.parse().map_err(|_| "bad rows")?,
    ))
}

#[derive(clap::Args)]
pub struct ShimExecArgs {
    #[arg(long)]
    spec: PathBuf,
    #[arg(long)]
    tty: bool,
}

pub fn run(a: ShimArgs) -> ! {
    berth_runtime::shim::run_container_shim(berth_runtime::shim::ShimArgs {
        id: a.id,
        root: a.root,
        bundle: a.bundle,
        state: a.state,
        socket: a.socket,
        tty: a.tty,
        stdin: a.stdin,
        console_size: a.console_size,
    })
}

pub fn run_exec(a: ShimExecArgs) -> ! {
    berth_runtime::shim::run_exec_shim(berth_runtime::shim::ExecShimArgs {
        spec: a.spec,
        tty: a.tty,
    })
}
