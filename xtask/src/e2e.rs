//! `cargo xtask e2e [FILTER]`: the cluster end-to-end tests (the top-level
//! `tests/` crate, `berth-tests`) alone: several hosts as network
//! namespaces on one machine, one `berth daemon` each. `cargo xtask test`
//! runs them too, with everything else.

use anyhow::{ensure, Context, Result};

use crate::util::{self, step};

pub fn main(args: &[String]) -> Result<()> {
    let result = run(args);
    util::print_step_times();
    result
}

fn run(args: &[String]) -> Result<()> {
    ensure!(
        util::is_root(),
        "the cluster tests make network namespaces: run as root"
    );
    util::ensure_debian_packages(util::BASE_PACKAGES)?;
    let target = util::target_dir()?;
    step("test image");
    let images = crate::image::build().context("building the test image")?;
    step("building berth (debug)");
    util::run(util::cargo().args(["build", "-p", "berth"]))?;
    let berth_bin = target.join("debug/berth");
    ensure!(berth_bin.exists(), "{} was not built", berth_bin.display());
    step("cluster tests (cargo test -p berth-tests)");
    util::run(
        util::cargo()
            .args(["test", "-p", "berth-tests", "--"])
            .args(args)
            .env("BERTH_BIN", &berth_bin)
            .env("BERTH_TEST_IMAGES", &images.dir),
    )
    .context("the cluster tests failed")
}
