//! `berth cluster recover --force-new-cluster`: a manager whose cluster
//! lost the majority of its managers for good becomes the only manager of
//! a new Raft log on its copy of cluster state (as swarm's
//! `--force-new-cluster`). Run on the host with the daemon stopped; the
//! next start takes the other managers off the record (they join again
//! with fresh data roots), and workers carry on.

use std::path::Path;

use berth_state::State;

use crate::membership::NodeSelf;
use crate::{Error, Result};

/// Forgets the Raft log, vote and membership in `data_root`, keeping
/// cluster state as applied, and makes this manager the only one it
/// knows. Refused unless the data root is a manager's that caught up with
/// its cluster (it holds the state to start from); refused while a daemon
/// has the store open.
pub fn force_new_cluster(data_root: &Path) -> Result<NodeSelf> {
    let pki = crate::Pki::open(&data_root.join("pki"))?;
    if !pki.is_manager() {
        return Err(Error::NotManager(
            "this data root is a worker's (it holds no CA key): recover on a manager".into(),
        ));
    }
    let me = NodeSelf::load(pki.dir())?
        .ok_or_else(|| Error::Invalid("this data root never was part of a cluster: nothing to recover".into()))?;
    let store = berth_store::Store::open(&data_root.join("berth.redb")).map_err(|e| {
        Error::Conflict(format!(
            "cannot open {}: {e} (stop the daemon first)",
            data_root.join("berth.redb").display()
        ))
    })?;
    let state = State::open(store).map_err(|e| Error::Invalid(format!("opening cluster state: {e}")))?;
    if !crate::membership::is_on_record(&state, &me.id)? {
        return Err(Error::Invalid(
            "this manager never caught up with its cluster, so it holds no state to start from".into(),
        ));
    }
    crate::raft::store::forget(state.store()).map_err(|e| Error::Invalid(format!("forgetting the Raft log: {e}")))?;
    let alone = NodeSelf {
        managers: vec![me.addr.clone()],
        manager_ids: Vec::new(),
        ..me
    };
    alone.save(pki.dir())?;
    Ok(alone)
}
