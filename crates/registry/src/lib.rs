//! The OCI Distribution server's storage logic: repositories of blobs and
//! manifests, tags, resumable uploads, cross-repository mounts, referrers
//! and garbage collection. It knows no HTTP: `berth-api` maps requests onto
//! these functions and [`Error`]s onto the spec's responses.
//!
//! Blobs live once, in the image store's content store; this crate records
//! which repository may see which blob, and holds every blob it records
//! through [`berth_image::BLOB_HOLDS`] so that the image store's collection
//! leaves them alone. On disk, besides the content store:
//!
//! ```text
//! <data_root>/registry/uploads/<uuid>/data        bytes received so far
//! <data_root>/registry/uploads/<uuid>/state.json  repository, offset, last activity
//! <data_root>/registry/token.key                   the bearer tokens' signing key (0600)
//! ```
//!
//! **Architecture invariants:**
//! - A blob or manifest becomes visible (a record in [`BLOB_LINKS`] or
//!   [`MANIFESTS`]) only after its content was verified against its digest and
//!   moved into the content store; a crash at any point leaves either a
//!   resumable upload or nothing visible.
//! - Every recorded blob and manifest has a hold; holds, links and manifest
//!   records change in one store transaction.
//! - Collection ([`Registry::gc`]) runs while nothing commits: commits take
//!   the collection lock shared, collection takes it exclusively.
#![forbid(unsafe_code)]

mod error;
mod manifest;
mod names;
pub mod token;
mod upload;

pub use berth_model::GcReport;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use berth_image::{ImageStore, BLOB_HOLDS};
use berth_store::{Store, Table, Txn};
use serde::{Deserialize, Serialize};

pub use error::{Code, Error, Result};
pub use manifest::{Manifest, PutManifest};
pub use names::{is_digest, validate_digest, validate_name, validate_tag};
pub use upload::UploadStatus;

/// Blobs a repository may serve. Key `"<repo>@<digest>"`.
pub const BLOB_LINKS: Table = Table("local/registry_blobs");
/// Manifests of a repository. Key `"<repo>@<digest>"`.
pub const MANIFESTS: Table = Table("local/registry_manifests");
/// Tags. Key `"<repo>:<tag>"`.
pub const TAGS: Table = Table("local/registry_tags");

const TABLES: [Table; 3] = [BLOB_LINKS, MANIFESTS, TAGS];
/// How this crate names itself in [`BLOB_HOLDS`] keys.
const HOLDER: &str = "registry";

/// A clock, so that expiry and grace periods are testable without sleeping.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

#[derive(Clone)]
pub struct Config {
    /// Uploads without activity for this long are removed.
    pub upload_expiry: Duration,
    /// Largest manifest accepted.
    pub max_manifest_size: u64,
    /// Largest blob accepted.
    pub max_blob_size: u64,
    pub clock: Clock,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            upload_expiry: Duration::from_secs(24 * 3600),
            max_manifest_size: 4 << 20,
            max_blob_size: 64 << 30,
            clock: Arc::new(SystemTime::now),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("upload_expiry", &self.upload_expiry)
            .field("max_manifest_size", &self.max_manifest_size)
            .field("max_blob_size", &self.max_blob_size)
            .finish_non_exhaustive()
    }
}

/// A blob a repository links to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobLink {
    pub size: u64,
    /// Seconds since the epoch; collection spares links younger than its grace period.
    pub created: u64,
}

/// A tag's target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TagRecord {
    pub digest: String,
}

/// A stored blob: where to read it and how large it is.
#[derive(Debug, Clone)]
pub struct BlobInfo {
    pub path: PathBuf,
    pub size: u64,
}

/// The registry of this node. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    images: ImageStore,
    store: Store,
    uploads: PathBuf,
    config: Config,
    token_key: token::TokenKey,
    sessions: Mutex<std::collections::HashMap<String, Arc<Mutex<Option<upload::Live>>>>>,
    gc_lock: RwLock<()>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("uploads", &self.inner.uploads)
            .finish_non_exhaustive()
    }
}

pub(crate) fn link_key(repo: &str, digest: &str) -> String {
    format!("{repo}@{digest}")
}

pub(crate) fn hold_key(digest: &str) -> String {
    format!("{digest} {HOLDER}")
}

/// Splits a `"<repo>@<digest>"` key.
fn split_at_digest(key: &str) -> Option<(&str, &str)> {
    key.split_once('@')
}

pub(crate) fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Registry {
    /// Opens the registry on the image store's content store, under
    /// `<data_root>/registry`, and removes expired and broken uploads.
    pub fn open(images: ImageStore, data_root: &Path, config: Config) -> Result<Self> {
        let store = images.store().clone();
        // The store pre-creates only its own tables.
        store.write(|t| {
            for table in TABLES {
                t.list::<serde::de::IgnoredAny>(table)?;
            }
            Ok(())
        })?;
        let uploads = data_root.join("registry").join("uploads");
        std::fs::create_dir_all(&uploads).map_err(error::io_err("creating", &uploads))?;
        let token_key = token::TokenKey::open_or_create(&data_root.join("registry").join("token.key"))?;
        let registry = Self {
            inner: Arc::new(Inner {
                images,
                store,
                uploads,
                config,
                token_key,
                sessions: Mutex::new(Default::default()),
                gc_lock: RwLock::new(()),
            }),
        };
        registry.expire_uploads()?;
        Ok(registry)
    }

    fn now(&self) -> SystemTime {
        (self.inner.config.clock)()
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The key that signs and checks this registry's bearer tokens.
    pub fn token_key(&self) -> &token::TokenKey {
        &self.inner.token_key
    }

    /// Seconds since the epoch by the registry's clock.
    pub fn now_secs(&self) -> u64 {
        secs(self.now())
    }

    fn commit_guard(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.inner
            .gc_lock
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a repository has anything: a tag, a manifest or a blob.
    pub fn repository_exists(&self, repo: &str) -> Result<bool> {
        validate_name(repo)?;
        let at = format!("{repo}@");
        let colon = format!("{repo}:");
        Ok(self
            .inner
            .store
            .list::<TagRecord>(TAGS)?
            .iter()
            .any(|(k, _)| k.starts_with(&colon))
            || self.keys(MANIFESTS)?.iter().any(|k| k.starts_with(&at))
            || self.keys(BLOB_LINKS)?.iter().any(|k| k.starts_with(&at)))
    }

    fn keys(&self, table: Table) -> Result<Vec<String>> {
        Ok(self
            .inner
            .store
            .list::<serde::de::IgnoredAny>(table)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// A blob `repo` may serve (an uploaded or mounted blob, or one of its manifests).
    pub fn blob(&self, repo: &str, digest: &str) -> Result<BlobInfo> {
        validate_name(repo)?;
        validate_digest(digest)?;
        let key = link_key(repo, digest);
        let linked = self.inner.store.get::<BlobLink>(BLOB_LINKS, &key)?.is_some()
            || self
                .inner
                .store
                .get::<manifest::ManifestRecord>(MANIFESTS, &key)?
                .is_some();
        let unknown = || {
            Error::new(
                Code::BlobUnknown,
                format!("blob unknown to repository {repo}: {digest}"),
            )
        };
        if !linked {
            return Err(unknown());
        }
        let path = self.inner.images.blob_path(digest).map_err(|_| unknown())?;
        let size = std::fs::metadata(&path)
            .map_err(error::io_err("reading metadata of", &path))?
            .len();
        Ok(BlobInfo { path, size })
    }

    /// Unlinks a blob from a repository. Its content goes at the next collection
    /// if nothing else holds it.
    pub fn delete_blob(&self, repo: &str, digest: &str) -> Result<()> {
        validate_name(repo)?;
        validate_digest(digest)?;
        let key = link_key(repo, digest);
        let removed = self.inner.store.write(|t| t.delete(BLOB_LINKS, &key))?;
        if !removed {
            return Err(Error::new(
                Code::BlobUnknown,
                format!("blob unknown to repository {repo}: {digest}"),
            ));
        }
        tracing::info!(repository = repo, digest, "blob unlinked");
        Ok(())
    }

    /// Links blob `digest` of repository `from` into `repo` too. Returns false
    /// (and changes nothing) when `from` has no such blob.
    pub fn mount_blob(&self, repo: &str, from: &str, digest: &str) -> Result<bool> {
        validate_name(repo)?;
        validate_name(from)?;
        validate_digest(digest)?;
        let info = match self.blob(from, digest) {
            Ok(info) => info,
            Err(e) if e.code() == Code::BlobUnknown => return Ok(false),
            Err(e) => return Err(e),
        };
        let _commit = self.commit_guard();
        let link = BlobLink {
            size: info.size,
            created: secs(self.now()),
        };
        self.inner.store.write(|t| {
            t.put(BLOB_LINKS, &link_key(repo, digest), &link)?;
            t.put(BLOB_HOLDS, &hold_key(digest), &())
        })?;
        tracing::info!(repository = repo, from, digest, "blob mounted");
        Ok(true)
    }

    /// Tags of `repo` in lexical order after `last`, at most `n`; and whether more follow.
    pub fn tags(&self, repo: &str, n: Option<usize>, last: Option<&str>) -> Result<(Vec<String>, bool)> {
        validate_name(repo)?;
        if !self.repository_exists(repo)? {
            return Err(Error::new(
                Code::NameUnknown,
                format!("repository name not known to registry: {repo}"),
            ));
        }
        let prefix = format!("{repo}:");
        let tags: Vec<String> = self
            .inner
            .store
            .list::<TagRecord>(TAGS)?
            .into_iter()
            .filter_map(|(k, _)| k.strip_prefix(&prefix).map(str::to_string))
            .collect();
        Ok(paginate(tags, n, last))
    }

    /// Repository names in lexical order after `last`, at most `n`; and whether more follow.
    pub fn catalog(&self, n: Option<usize>, last: Option<&str>) -> Result<(Vec<String>, bool)> {
        let mut repos = BTreeSet::new();
        for table in TABLES {
            for key in self.keys(table)? {
                let repo = if table == TAGS {
                    key.rsplit_once(':').map(|(r, _)| r)
                } else {
                    split_at_digest(&key).map(|(r, _)| r)
                };
                if let Some(r) = repo {
                    repos.insert(r.to_string());
                }
            }
        }
        Ok(paginate(repos.into_iter().collect(), n, last))
    }

    /// Collects garbage, safe while serving: removes links no manifest of
    /// their repository references and that are older than `grace`, drops
    /// holds nothing records anymore, expires uploads, and has the image
    /// store delete blobs neither an image nor a hold references.
    pub fn gc(&self, grace: Duration) -> Result<GcReport> {
        let mut report = GcReport {
            uploads_removed: self.expire_uploads()?,
            ..Default::default()
        };
        let cutoff = secs(self.now()).saturating_sub(grace.as_secs());
        {
            let _exclusive = self
                .inner
                .gc_lock
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            report.links_removed = self.inner.store.write(|t| sweep(t, cutoff))?;
        }
        report.blobs_removed = self.inner.images.collect_unreferenced()?;
        tracing::info!(
            links = report.links_removed.len(),
            blobs = report.blobs_removed.len(),
            uploads = report.uploads_removed,
            "registry garbage collected"
        );
        Ok(report)
    }
}

/// Mark (every blob a manifest of the same repository references) and sweep
/// links; then make holds match exactly what the records still use.
fn sweep(t: &mut Txn, cutoff: u64) -> berth_store::Result<Vec<String>> {
    let manifests: Vec<(String, manifest::ManifestRecord)> = t.list(MANIFESTS)?;
    let mut marked = HashSet::new();
    for (key, record) in &manifests {
        if let Some((repo, _)) = split_at_digest(key) {
            for blob in &record.blobs {
                marked.insert(link_key(repo, blob));
            }
        }
    }
    let mut removed = Vec::new();
    let mut held = HashSet::new();
    for (key, link) in t.list::<BlobLink>(BLOB_LINKS)? {
        if !marked.contains(&key) && link.created <= cutoff {
            t.delete(BLOB_LINKS, &key)?;
            removed.push(key);
        } else if let Some((_, digest)) = split_at_digest(&key) {
            held.insert(hold_key(digest));
        }
    }
    for (key, _) in &manifests {
        if let Some((_, digest)) = split_at_digest(key) {
            held.insert(hold_key(digest));
        }
    }
    let suffix = format!(" {HOLDER}");
    for (key, _) in t.list::<serde::de::IgnoredAny>(BLOB_HOLDS)? {
        if key.ends_with(&suffix) && !held.contains(&key) {
            t.delete(BLOB_HOLDS, &key)?;
        }
    }
    for key in held {
        t.put(BLOB_HOLDS, &key, &())?;
    }
    Ok(removed)
}

/// Sorted `items` after `last`, at most `n` (`n == 0`: none); and whether more follow.
fn paginate(mut items: Vec<String>, n: Option<usize>, last: Option<&str>) -> (Vec<String>, bool) {
    items.sort();
    items.dedup();
    if let Some(last) = last {
        items.retain(|i| i.as_str() > last);
    }
    match n {
        Some(n) if items.len() > n => {
            items.truncate(n);
            (items, true)
        }
        _ => (items, false),
    }
}
