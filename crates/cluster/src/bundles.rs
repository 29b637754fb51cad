//! Client bundles on record: which certificates the cluster issued to whom,
//! and which were revoked. A client certificate is accepted only while its
//! fingerprint is on record here and not revoked.

use berth_store::{Store, Table};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Bundles by id.
pub const BUNDLES: Table = Table("cluster/bundles");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bundle {
    pub id: String,
    pub user: String,
    /// Hex of the certificate's serial number.
    pub serial: String,
    /// SHA-256 of the certificate's DER, hex.
    pub fingerprint: String,
    /// RFC 3339.
    pub created: String,
    pub not_after: String,
    /// RFC 3339; set once revoked.
    #[serde(default)]
    pub revoked: Option<String>,
}

/// Makes sure the table exists so that reads never fail on a fresh store.
pub fn init(store: &Store) -> Result<()> {
    store.apply(|t| t.list::<Bundle>(BUNDLES).map(|_| ()))?;
    Ok(())
}

pub fn record(store: &Store, bundle: &Bundle) -> Result<()> {
    store.apply(|t| t.put(BUNDLES, &bundle.id, bundle))?;
    Ok(())
}

pub fn list(store: &Store) -> Result<Vec<Bundle>> {
    Ok(store.list::<Bundle>(BUNDLES)?.into_iter().map(|(_, b)| b).collect())
}

/// Marks a bundle revoked (idempotent); its certificate stops working.
pub fn revoke(store: &Store, id: &str) -> Result<Bundle> {
    let now = chrono::Utc::now().to_rfc3339();
    let found = store.apply(|t| {
        let Some(mut b) = t.get::<Bundle>(BUNDLES, id)? else {
            return Ok(None);
        };
        if b.revoked.is_none() {
            b.revoked = Some(now);
            t.put(BUNDLES, id, &b)?;
        }
        Ok(Some(b))
    })?;
    found.ok_or_else(|| Error::NotFound(id.to_string()))
}

/// The user a certificate with this fingerprint stands for, if its bundle
/// is on record and not revoked.
pub fn active_user(store: &Store, fingerprint: &str) -> Result<Option<String>> {
    Ok(list(store)?
        .into_iter()
        .find(|b| b.fingerprint == fingerprint && b.revoked.is_none())
        .map(|b| b.user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_bundles_stop_counting() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        init(&store).unwrap();
        assert!(list(&store).unwrap().is_empty());
        let b = Bundle {
            id: "b1".into(),
            user: "alice".into(),
            serial: "01".into(),
            fingerprint: "ff".into(),
            created: "now".into(),
            not_after: "later".into(),
            revoked: None,
        };
        record(&store, &b).unwrap();
        assert_eq!(active_user(&store, "ff").unwrap().as_deref(), Some("alice"));
        assert!(revoke(&store, "b1").unwrap().revoked.is_some());
        assert_eq!(active_user(&store, "ff").unwrap(), None);
        assert!(matches!(revoke(&store, "nope"), Err(Error::NotFound(_))));
    }
}
