use std::fs;
use std::path::Path;

use nix::unistd::Pid;

use crate::common::{self, CGROUP_PROCS, ControllerOpt, WrapIoResult, WrappedIoError};

/// berth's change to libcgroups 0.7.0 (see `third_party/README.md`): moves
/// `pid` into the v1 cgroup at `cgroup_path`.
///
/// Writing a pid to `cgroup.procs` takes the kernel's global threadgroup
/// lock for writing, and the first writer after a quiet moment waits for an
/// RCU grace period: 5 to 15 ms on an idle host, paid by every container
/// start. When `pid` is the calling process and it has a single thread, its
/// thread is moved instead by writing "0" to `tasks`: the kernel moves the
/// calling thread without that lock (a thread moving itself cannot exit or
/// exec meanwhile), and for a one-thread process that is the whole process.
pub(super) fn attach(pid: Pid, cgroup_path: &Path) -> Result<(), WrappedIoError> {
    if pid == nix::unistd::getpid() && SINGLE_THREADED.with(|known| known.get()).unwrap_or_else(single_threaded) {
        return common::write_cgroup_file(cgroup_path.join(CGROUP_TASKS), 0);
    }
    common::write_cgroup_file(cgroup_path.join(CGROUP_PROCS), pid)
}

const CGROUP_TASKS: &str = "tasks";

thread_local! {
    /// Set by `Manager::add_task` for the duration of one move, so that the
    /// thread count is read once, not once per controller.
    pub(super) static SINGLE_THREADED: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

pub(super) fn single_threaded() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse::<u32>().ok())
        })
        == Some(1)
}

pub(super) trait Controller {
    type Error: From<WrappedIoError>;
    type Resource;

    /// Adds a new task specified by its pid to the cgroup
    fn add_task(pid: Pid, cgroup_path: &Path) -> Result<(), Self::Error> {
        fs::create_dir_all(cgroup_path).wrap_create_dir(cgroup_path)?;
        attach(pid, cgroup_path)?;
        Ok(())
    }

    /// Applies resource restrictions to the cgroup
    fn apply(controller_opt: &ControllerOpt, cgroup_root: &Path) -> Result<(), Self::Error>;

    /// Checks if the controller needs to handle this request
    fn needs_to_handle<'a>(controller_opt: &'a ControllerOpt) -> Option<&'a Self::Resource>;
}
