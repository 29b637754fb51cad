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
}

#[derive(clap::Args)]
pub struct ShimExecArgs {
    #[arg(long)]
    id: String,
    #[arg(long)]
    root: PathBuf,
    #[arg(long)]
    process: PathBuf,
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
    })
}

pub fn run_exec(a: ShimExecArgs) -> ! {
    berth_runtime::shim::run_exec_shim(berth_runtime::shim::ExecShimArgs {
        id: a.id,
        root: a.root,
        process: a.process,
        tty: a.tty,
    })
}
