//! Client bundles on record: which certificates the cluster issued to whom,
//! and which were revoked. A client certificate is accepted only while its
//! fingerprint is on record here and not revoked.

use berth_state::{ClusterCommand, Outcome, State};

use crate::{Error, Result};

pub use berth_state::records::Bundle;
/// Bundles by id.
pub use berth_state::tables::BUNDLES;

pub fn record(state: &State, bundle: &Bundle) -> Result<()> {
    state.propose(ClusterCommand::RecordBundle { bundle: bundle.clone() })?;
    Ok(())
}

pub fn list(state: &State) -> Result<Vec<Bundle>> {
    Ok(state
        .store()
        .list::<Bundle>(BUNDLES)?
        .into_iter()
        .map(|(_, b)| b)
        .collect())
}

/// Marks a bundle revoked (idempotent); its certificate stops working.
pub fn revoke(state: &State, id: &str) -> Result<Bundle> {
    let at = chrono::Utc::now().to_rfc3339();
    match state.propose(ClusterCommand::RevokeBundle { id: id.to_string(), at }) {
        Ok(Outcome::Bundle(b)) => Ok(b),
        Ok(other) => Err(Error::Invalid(format!("internal error: unexpected outcome {other:?}"))),
        Err(berth_state::Error::Rejected(berth_state::Rejected::NotFound(_))) => {
            Err(Error::NotFound(format!("no such bundle: {id}")))
        }
        Err(e) => Err(e.into()),
    }
}

/// The user a certificate with this fingerprint stands for, if its bundle
/// is on record and not revoked.
pub fn active_user(state: &State, fingerprint: &str) -> Result<Option<String>> {
    Ok(list(state)?
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
        let store = berth_store::Store::open(&dir.path().join("db")).unwrap();
        let store = State::open(store).unwrap();
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
