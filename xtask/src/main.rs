//! Developer tasks for berth, run as `cargo xtask <task>`: `up` gets a working
//! berth on this machine, `test` runs everything CI runs, `e2e` the cluster
//! tests alone, `image` builds the busybox test image, `bench NAME` compares
//! berth with real peers. Each task lives in its own file; shared helpers
//! are in `util`.

mod bench;
mod e2e;
mod image;
mod plugins;
mod swarm;
mod test;
mod tidy;
mod up;
mod util;

use anyhow::{bail, Result};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  up [--no-build]           install packages, build, start `berth daemon`, load busybox
  test                      fmt, clippy, test image, cargo test --workspace (what CI runs)
  e2e [FILTER]              the cluster tests alone: hosts as network namespaces (tests/)
  image                     build target/images/{busybox-oci.tar,busybox-docker.tar,busybox-bundle}
  plugins [--check]         build plugins/ for wasm32-wasip2 into target/plugins (dist/ installable)
  bench NAME [--no-build]   run a benchmark against its peers (`cargo xtask bench` lists them)";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(err) = dispatch(&args) {
        eprintln!("\nerror: {err:#}");
        std::process::exit(1);
    }
}

fn dispatch(args: &[String]) -> Result<()> {
    let Some((task, rest)) = args.split_first() else {
        println!("{USAGE}");
        return Ok(());
    };
    match task.as_str() {
        "up" => up::main(rest),
        "test" => test::main(rest),
        "e2e" => e2e::main(rest),
        "image" => image::main(rest),
        "plugins" => plugins::main(rest),
        "bench" => bench::main(rest),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown task `{other}`\n\n{USAGE}"),
    }
}
