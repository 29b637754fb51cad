//! The cluster CA's key in the roles other services give it: the signer of
//! the audit chain and of scan records.

use std::sync::Arc;

use berth_auth::ChainSigner;

/// The cluster CA's key as the audit chain's signer.
pub struct ClusterKey(pub Arc<berth_cluster::Pki>);

impl ChainSigner for ClusterKey {
    fn key_id(&self) -> String {
        format!("sha256:{}", self.0.ca_fingerprint())
    }
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self.0.sign(message) {
            Ok(sig) => sig,
            Err(e) => {
                // An empty signature fails verification: the problem shows there.
                tracing::error!(error = %e, "cannot sign the audit chain with the cluster key");
                Vec::new()
            }
        }
    }
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.0.verify(message, signature)
    }
}

/// The cluster key as the records' signer.
pub struct ClusterSigner(pub Arc<berth_cluster::Pki>);

impl berth_engine::scan::RecordSigner for ClusterSigner {
    fn key_id(&self) -> String {
        format!("sha256:{}", self.0.ca_fingerprint())
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.0.sign(message).map_err(|e| e.to_string())
    }
}
