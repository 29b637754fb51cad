//! Reading trust data: the verified [`View`] of a repository from its trust
//! server, or from the trust documents attached to an image (checked
//! against pinned root keys, else the root this client pinned for the
//! GUN); and a tag resolved to its signed digest for `pull` and `run` with
//! content trust on.

use chrono::{DateTime, Utc};

use super::remote::{attached, TRUST_ARTIFACT};
use super::{bail, Result, Signing, Target};
use crate::workflow::{verify_attached, View, WorkflowError};

impl Signing {
    /// The verified trust data of `target`: from its trust server, else
    /// (when the server has none) from what is attached to `reference`.
    pub fn view(&self, target: &Target, reference: &str, pins: &[String], now: DateTime<Utc>) -> Result<View> {
        match self.load_trusted(target, now)? {
            Some(repo) => Ok(View::from_trusted(&repo)),
            None => self
                .view_from_referrers(target, reference, pins, now)
                .map_err(|e| WorkflowError(format!("no trust data for {} on its trust server, and {e}", target.gun))),
        }
    }

    /// Verifies the trust metadata attached to the manifest `reference`
    /// names (a tag or a digest) against pinned root keys: `pins`, else the
    /// root this client pinned for the original GUN.
    pub fn view_from_referrers(
        &self,
        target: &Target,
        reference: &str,
        pins: &[String],
        now: DateTime<Utc>,
    ) -> Result<View> {
        let remote = target.remote.as_ref();
        let manifest = remote.manifest(&target.repository, reference)?.ok_or_else(|| {
            WorkflowError(format!(
                "registry {} has no {}:{reference}",
                remote.host(),
                target.repository
            ))
        })?;
        let docs = attached(remote, &target.repository, &manifest.digest, TRUST_ARTIFACT)?;
        if docs.is_empty() {
            bail!("no trust data is attached to {} in {}", manifest.digest, remote.host());
        }
        let mut errors: Vec<String> = Vec::new();
        let mut views: Vec<View> = Vec::new();
        for doc in docs {
            let verified = verify_attached(
                &doc.document,
                &manifest.digest,
                manifest.bytes.len(),
                pins,
                |gun| std::fs::read(self.cache_dir(gun).join("root.json")).ok(),
                now,
            );
            match verified {
                Ok(view) => views.push(view),
                Err(e) => {
                    if !errors.contains(&e.0) {
                        errors.push(e.0);
                    }
                }
            }
        }
        let Some(mut view) = views.pop() else {
            bail!("the attached trust data does not verify: {}", errors.join("; "));
        };
        for other in views {
            view.merge(other);
        }
        Ok(view)
    }

    /// The signed digest of `tag` (`sha256:<hex>`): from the trust server,
    /// else from the referrers pinned by `pins`.
    pub fn resolve_tag(&self, target: &Target, tag: &str, pins: &[String], now: DateTime<Utc>) -> Result<String> {
        let view = match self.load_trusted(target, now)? {
            Some(repo) => View::from_trusted(&repo),
            None => match self.view_from_referrers(target, tag, pins, now) {
                Ok(view) => view,
                Err(e) => bail!("content trust: no trust data for {} ({e})", target.gun),
            },
        };
        let (meta, _) = view.resolve(tag).ok_or_else(|| {
            WorkflowError(format!(
                "content trust: no signed tag {tag:?} in {}{}",
                target.gun,
                view.invalid_note()
            ))
        })?;
        let hex = meta
            .sha256_hex()
            .ok_or_else(|| WorkflowError(format!("content trust: tag {tag:?} has no sha256 hash")))?;
        Ok(format!("sha256:{hex}"))
    }
}
