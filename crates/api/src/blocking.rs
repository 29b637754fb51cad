//! Blocking work from a request handler (store reads and writes, mounts,
//! password hashing, registry IO): one way to run it, with one behaviour.
//!
//! - On a runtime with worker threads, `f` runs on this worker through
//!   `block_in_place`, which moves the worker's other tasks elsewhere first.
//!   `spawn_blocking` would wake an idle pool thread instead, which costs
//!   0.2–0.5 ms on a VM, twice per `berth run` (create, audit).
//! - On a one-thread runtime (unit tests), `f` runs on the blocking pool.
//! - Either way a panic in `f` is caught and comes back as [`Panicked`],
//!   which each error type of the API turns into an internal error (500):
//!   a bug answers one request, it never takes the connection down.
//!
//! Work that runs alongside a handler rather than in its place stays on its
//! own `spawn_blocking` task: work that streams while it runs (image pull and
//! push progress, registry uploads fed from the body, a functional test's
//! output) and timers in the background (upload expiry, directory sync).

use std::panic::{catch_unwind, AssertUnwindSafe};

use berth_model::ApiError;

/// Blocking work that panicked, with the panic's message.
#[derive(Debug)]
pub(crate) struct Panicked(pub String);

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "internal error: blocking work panicked: {}", self.0)
    }
}

/// Runs `f`, which may block, from async code (see the module's docs).
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Panicked> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let run = move || catch_unwind(AssertUnwindSafe(f)).map_err(|payload| Panicked(message(payload.as_ref())));
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(run)
    } else {
        match tokio::task::spawn_blocking(run).await {
            Ok(done) => done,
            Err(e) => Err(Panicked(e.to_string())),
        }
    }
}

fn message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

impl From<Panicked> for ApiError {
    fn from(p: Panicked) -> Self {
        tracing::error!(error = %p, "request failed");
        ApiError::internal(p.to_string())
    }
}

impl From<Panicked> for crate::error::ApiErrorResponse {
    fn from(p: Panicked) -> Self {
        crate::error::ApiErrorResponse(p.into())
    }
}

impl From<Panicked> for berth_registry::Error {
    fn from(p: Panicked) -> Self {
        tracing::error!(error = %p, "registry request failed");
        berth_registry::Error::new(berth_registry::Code::Internal, p.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_runs_in_place_and_a_panic_is_an_error() {
        let here = std::thread::current().id();
        let ran_on = blocking(move || std::thread::current().id()).await.unwrap();
        assert_eq!(ran_on, here, "on a multi-thread runtime the work runs on this worker");
        let failed = blocking(|| -> u32 { panic!("boom") }).await.unwrap_err();
        assert_eq!(failed.0, "boom");
        let api: ApiError = failed.into();
        assert_eq!(api.code, berth_model::ErrorCode::Internal);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_one_thread_the_work_goes_to_the_pool() {
        let here = std::thread::current().id();
        let ran_on = blocking(move || std::thread::current().id()).await.unwrap();
        assert_ne!(ran_on, here);
        let failed = blocking(|| -> u32 { panic!("{}", String::from("owned")) })
            .await
            .unwrap_err();
        assert_eq!(failed.0, "owned");
    }
}
