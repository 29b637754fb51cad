//! Start-up reconciliation: after a clean stop or a `kill -9` at any point,
//! bring records and the node back in line. Live shims are re-attached;
//! containers that died meanwhile get their exit recorded and their restart
//! policy applied; half-created or half-removed containers are finished or
//! undone; directories, mounts, runtime state and cgroups that belong to no
//! record are removed.

use std::collections::HashSet;
use std::sync::Arc;

use berth_model::{Container, ContainerState};
use berth_store::{CONTAINERS, CONTAINER_NAMES};

use crate::{Engine, Error};

impl Engine {
    pub(crate) async fn reconcile(self: &Arc<Self>) -> Result<(), Error> {
        let records: Vec<(String, Container)> = self.store.list(CONTAINERS)?;
        let known: HashSet<String> = records.iter().map(|(id, _)| id.clone()).collect();

        // Names that point at nothing (a crash between the two writes cannot
        // happen, they share a transaction; this guards older data).
        let names: Vec<(String, String)> = self.store.list(CONTAINER_NAMES)?;
        self.store.write(|t| {
            for (name, id) in &names {
                if !known.contains(id) {
                    t.delete(CONTAINER_NAMES, name)?;
                }
            }
            Ok(())
        })?;

        for (id, c) in records {
            let alive = self.runtime.shim_alive(&id).await;
            match c.status.state {
                ContainerState::Running if alive => {
                    tracing::info!(container_id = %id, "re-attached to running container");
                    self.monitor(id);
                }
                ContainerState::Running => {
                    let code = self.runtime.exit_record(&id).map(|r| r.exit_code).unwrap_or(137);
                    tracing::info!(container_id = %id, code, "container exited while the daemon was down");
                    self.on_exit(&id, code).await;
                }
                ContainerState::Restarting => {
                    let mut c = c;
                    c.status.state = ContainerState::Running;
                    self.store.write(|t| t.put(CONTAINERS, &id, &c))?;
                    // The restart was decided before the crash; deciding again from
                    // the same exit code and count gives the same answer.
                    self.on_exit(&id, c.status.exit_code.unwrap_or(0)).await;
                }
                ContainerState::Removing => {
                    self.forget(&id, &c.name)?;
                }
                ContainerState::Created | ContainerState::Exited | ContainerState::Dead => {
                    // A start that did not finish: undo it.
                    self.runtime.delete_runtime_state(&id);
                    self.runtime.unmount_rootfs(&id);
                    if c.spec.auto_remove && c.status.state == ContainerState::Exited {
                        let _ = self.remove(&id, true).await;
                    }
                }
            }
        }

        // `--rm` containers removed above reclaim their disk in the
        // background; let them finish before looking for leftovers.
        self.reclaimed().await;
        let known: HashSet<String> = self
            .store
            .list::<Container>(CONTAINERS)?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        for id in self.runtime.ids_on_disk() {
            if !known.contains(&id) {
                tracing::info!(container_id = %id, "removing leftovers of an unrecorded container");
                if let Err(e) = self.runtime.remove(&id) {
                    tracing::warn!(container_id = %id, error = %e, "removing leftovers");
                }
            }
        }
        for id in self.runtime.runtime_ids_on_disk() {
            if !known.contains(&id) {
                self.runtime.delete_runtime_state(&id);
            }
        }
        for id in self.runtime.cgroup_children() {
            if !known.contains(&id) {
                self.runtime.delete_runtime_state(&id);
            }
        }
        Ok(())
    }
}
