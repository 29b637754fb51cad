//! The registry client: `pull` and `push` of images from and to any registry
//! that speaks the OCI Distribution protocol (or Docker's registry API v2),
//! and `login`, which checks credentials before they are stored.
//!
//! Blobs stream into the content store's temp dir, hashed on the way; a blob
//! is committed only after its digest (and, for layers, its diff id) matched,
//! and images are recorded exactly as [`ImageStore::load`] records them: by
//! config digest, with the manifest blob stored unchanged and the tag set, in
//! one transaction. Layers already in the content store are not transferred.
//!
//! Credentials live in the cluster table [`REGISTRY_CREDENTIALS`] (changed
//! only by cluster commands) and leave it only in `Authorization` headers.

mod artifact;
mod client;
mod connection;
mod pull;
mod push;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

pub use artifact::Artifacts;
pub use client::{is_loopback, registry_key, Credentials};
pub use connection::{Answer, ConnectOptions, Connection};

use crate::error::{Error, Result};
use crate::ImageStore;

/// Stored registry credentials by [`registry_key`].
pub use berth_state::tables::REGISTRY_CREDENTIALS;

/// Blobs moved at the same time by one pull or push.
const CONCURRENT_TRANSFERS: usize = 3;

/// What `pull` selects from an image index.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `os/arch[/variant]`; linux/amd64 when not given.
    pub platform: Option<String>,
    /// Every image of an index (attestations aside), not just one platform.
    pub all_platforms: bool,
}

/// `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Self {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Self {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(Error::InvalidReference(format!(
                "invalid platform {s:?}: expected os/arch or os/arch/variant, e.g. linux/arm64"
            ))),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl ImageStore {
    /// Pulls an image (or, from an index, the images `options` select) and
    /// records it like a load does. Returns the images recorded, the tagged
    /// one first.
    pub fn pull(
        &self,
        reference: &str,
        options: &PullOptions,
        progress: &(dyn Fn(berth_model::Progress) + Sync),
    ) -> Result<Vec<berth_model::Image>> {
        pull::pull(self, reference, options, progress)
    }

    /// Pushes the image `reference` names (it must be tagged so) to the
    /// registry the reference names: blobs the registry lacks, then the
    /// stored manifest bytes unchanged. Returns the manifest digest.
    pub fn push(&self, reference: &str, progress: &(dyn Fn(berth_model::Progress) + Sync)) -> Result<String> {
        push::push(self, reference, progress)
    }

    /// Checks credentials against `registry` (the challenge flow on `/v2/`)
    /// and stores them. Returns the key they are stored under.
    pub fn login(&self, registry: &str, credentials: Credentials) -> Result<String> {
        let key = registry_key(registry);
        if key.is_empty() || key.contains('/') {
            return Err(Error::InvalidReference(format!(
                "invalid registry {registry:?}: expected host[:port]"
            )));
        }
        let client = client::Client::with_security(&key, Some(credentials.clone()), Vec::new(), self.is_insecure(&key));
        let url = client.url("/v2/");
        let mut response = client.send("GET", &url, &[], &client::Body::Empty)?;
        if !response.status().is_success() {
            let described = client::describe_error(&mut response);
            return Err(client.error(format!("GET /v2/ answered {described}")));
        }
        self.state()
            .propose(berth_state::ClusterCommand::PutRegistryCredentials {
                registry: key.clone(),
                credentials: credentials.clone(),
            })?;
        tracing::info!(registry = %key, username = %credentials.username, "stored registry credentials");
        Ok(key)
    }

    /// Forgets the credentials of `registry`; whether there were any.
    pub fn logout(&self, registry: &str) -> Result<bool> {
        let key = registry_key(registry);
        let removed = self
            .state()
            .propose(berth_state::ClusterCommand::RemoveRegistryCredentials { registry: key })?;
        Ok(removed == berth_state::Outcome::Removed(true))
    }

    /// Registries (`host[:port]`) to speak to without verifying their
    /// certificate, or in plain HTTP when they have no TLS (`berth daemon
    /// --insecure-registry`); loopback registries always are.
    pub fn set_insecure_registries(&self, registries: Vec<String>) {
        let keys = registries.iter().map(|r| registry_key(r)).collect();
        *self
            .inner
            .insecure_registries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
    }

    /// A client for `registry` with its credentials, if any.
    pub(crate) fn registry_client(&self, registry: &str, scopes: Vec<String>) -> Result<client::Client> {
        let insecure = self.is_insecure(registry);
        Ok(client::Client::with_security(
            registry,
            self.credentials(registry)?,
            scopes,
            insecure,
        ))
    }

    fn is_insecure(&self, registry: &str) -> bool {
        let key = registry_key(registry);
        client::is_loopback(&key)
            || self
                .inner
                .insecure_registries
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(&key)
    }

    fn credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        Ok(self.store().get(REGISTRY_CREDENTIALS, &registry_key(registry))?)
    }
}

/// Runs `work` on every job with up to [`CONCURRENT_TRANSFERS`] threads;
/// the first error stops jobs not yet started and is returned.
pub(crate) fn run_concurrently<J: Send, T: Send>(
    jobs: Vec<J>,
    work: &(dyn Fn(J) -> Result<T> + Sync),
) -> Result<Vec<T>> {
    let threads = jobs.len().min(CONCURRENT_TRANSFERS);
    let queue = Mutex::new(jobs.into_iter().collect::<std::collections::VecDeque<J>>());
    let results = Mutex::new(Vec::new());
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let job = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .pop_front();
                let Some(job) = job else { return };
                match work(job) {
                    Ok(t) => results
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(t),
                    Err(e) => {
                        stop.store(true, Ordering::SeqCst);
                        failure
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
        return Err(e);
    }
    Ok(results.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(
            (p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()),
            ("linux", "arm64", Some("v8"))
        );
        assert_eq!(Platform::parse("linux/amd64").unwrap().to_string(), "linux/amd64");
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//x").is_err());
    }

    #[test]
    fn concurrency_stops_at_the_first_error() {
        let done = run_concurrently((0..10).collect(), &|i: i32| Ok(i * 2)).unwrap();
        assert_eq!(done.len(), 10);
        let err = run_concurrently((0..10).collect(), &|i: i32| {
            if i == 3 {
                Err(Error::NotFound(format!("job {i}")))
            } else {
                Ok(i)
            }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "no such image: job 3");
    }
}
