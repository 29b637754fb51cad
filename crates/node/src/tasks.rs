//! The agent's executor: runs a node's assignments on its engine. Each
//! assignment is one container labelled with the assignment's name
//! ([`ASSIGNMENT_LABEL`]), restarted by the engine when it exits (`always`)
//! and by the next reconcile when it was stopped by hand. The containers
//! are the executor's only state: after a daemon restart it finds them by
//! their label.

use std::sync::Arc;

use berth_cluster::dispatch::Executor;
use berth_cluster::rpc::proto;
use berth_engine::Engine;
use berth_model::assignment::ASSIGNMENT_LABEL;
use berth_model::{Container, ContainerCreate, ContainerState, RestartPolicy};
use futures_util::future::BoxFuture;

pub struct EngineTasks {
    pub engine: Arc<Engine>,
}

impl Executor for EngineTasks {
    fn reconcile(&self, wanted: Vec<proto::Assignment>) -> BoxFuture<'static, Vec<proto::TaskReport>> {
        let engine = self.engine.clone();
        Box::pin(async move { reconcile(&engine, &wanted).await })
    }
}

fn report(assignment: &str, state: &str, container: &str, message: String) -> proto::TaskReport {
    proto::TaskReport {
        assignment: assignment.to_string(),
        state: state.to_string(),
        container: container.to_string(),
        message,
    }
}

/// The assignment container `c` was made for, if any.
fn assignment_of(c: &Container) -> Option<&String> {
    c.spec.labels.get(ASSIGNMENT_LABEL)
}

/// Whether container `c` runs assignment `a` as it is now.
fn runs(c: &Container, a: &proto::Assignment) -> bool {
    assignment_of(c) == Some(&a.name) && c.spec.image == a.image && c.spec.cmd == a.cmd && c.spec.env == a.env
}

/// Makes the engine run exactly `wanted`, one container each; a report on
/// each assignment, and on each container it failed to remove.
async fn reconcile(engine: &Arc<Engine>, wanted: &[proto::Assignment]) -> Vec<proto::TaskReport> {
    let e = engine.clone();
    let listed = tokio::task::spawn_blocking(move || e.list(true)).await;
    let mine: Vec<Container> = match listed {
        Ok(Ok(all)) => all.into_iter().filter(|c| assignment_of(c).is_some()).collect(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "listing containers for the node's assignments");
            return Vec::new();
        }
        Err(_) => return Vec::new(),
    };
    let mut reports = Vec::new();
    // What is no longer wanted, or wanted otherwise, goes first.
    let mut kept: Vec<&Container> = Vec::new();
    for c in &mine {
        let name = assignment_of(c).cloned().unwrap_or_default();
        let current = wanted.iter().any(|a| runs(c, a)) && !kept.iter().any(|k| assignment_of(k) == Some(&name));
        if current {
            kept.push(c);
            continue;
        }
        match engine.remove(&c.id, true).await {
            Ok(()) => {
                tracing::info!(assignment = %name, container = %c.id, "removed a container the node no longer runs")
            }
            Err(e) => {
                tracing::warn!(assignment = %name, container = %c.id, error = %e, "removing a container the node no longer runs");
                if wanted.iter().any(|a| a.name == name) {
                    reports.push(report(
                        &name,
                        "removing",
                        &c.id,
                        format!("removing the old container: {e}"),
                    ));
                }
            }
        }
    }
    for a in wanted {
        if reports.iter().any(|r| r.assignment == a.name) {
            continue;
        }
        let r = match kept.iter().find(|c| assignment_of(c) == Some(&a.name)) {
            Some(c) => keep_running(engine, a, c).await,
            None => start_new(engine, a).await,
        };
        reports.push(r);
    }
    reports.sort_by(|x, y| x.assignment.cmp(&y.assignment));
    reports
}

/// Reports on a container that exists; starts it again when it stopped.
async fn keep_running(engine: &Arc<Engine>, a: &proto::Assignment, c: &Container) -> proto::TaskReport {
    match c.status.state {
        ContainerState::Running => report(&a.name, "running", &c.id, String::new()),
        ContainerState::Restarting => report(&a.name, "starting", &c.id, "the engine restarts it".into()),
        ContainerState::Created | ContainerState::Exited => {
            let code = c.status.exit_code;
            match engine.start(&c.id, None).await {
                Ok(_) => {
                    tracing::info!(assignment = %a.name, container = %c.id, "started an assignment's container again");
                    let message = code
                        .map(|c| format!("restarted after it exited with code {c}"))
                        .unwrap_or_default();
                    report(&a.name, "running", &c.id, message)
                }
                Err(e) => report(
                    &a.name,
                    "exited",
                    &c.id,
                    format!("it stopped and does not start again: {e}"),
                ),
            }
        }
        ContainerState::Removing | ContainerState::Dead => report(
            &a.name,
            "failed",
            &c.id,
            format!("its container is {}", c.status.state.as_str()),
        ),
    }
}

/// Creates and starts the container of `a`, pulling its image when the
/// node lacks it.
async fn start_new(engine: &Arc<Engine>, a: &proto::Assignment) -> proto::TaskReport {
    let e = engine.clone();
    let image = a.image.clone();
    let pulled = tokio::task::spawn_blocking(move || {
        if e.images().resolve(&image).is_ok() {
            return Ok(());
        }
        e.pull_image(&image, &berth_image::PullOptions::default(), &|_| {})
            .map(|_| ())
            .map_err(|err| format!("image {image} is not on this node, and pulling it failed: {err}"))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    if let Err(message) = pulled {
        return report(&a.name, "failed", "", message);
    }
    let create = ContainerCreate {
        image: a.image.clone(),
        name: Some(format!("{}.{}", a.name, &berth_model::new_id()[..8])),
        cmd: a.cmd.clone(),
        env: a.env.clone(),
        network: Some(berth_model::NetworkMode::None),
        restart: RestartPolicy::Always,
        labels: [(ASSIGNMENT_LABEL.to_string(), a.name.clone())].into(),
        ..ContainerCreate::default()
    };
    let e = engine.clone();
    let created = match tokio::task::spawn_blocking(move || e.create(create)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return report(&a.name, "failed", "", format!("creating its container: {e}")),
        Err(e) => return report(&a.name, "failed", "", e.to_string()),
    };
    match engine.start(&created.id, None).await {
        Ok(_) => {
            tracing::info!(assignment = %a.name, container = %created.id, "started an assignment's container");
            report(&a.name, "running", &created.id, String::new())
        }
        Err(e) => report(&a.name, "failed", &created.id, format!("starting its container: {e}")),
    }
}
