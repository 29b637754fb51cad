//! Certification records: making a scan's record and signing it with the
//! cluster key, listing and getting records, and checking a record's
//! signature offline ([`check_record`]).

use berth_model::Image;
pub use berth_scanner::records::ScanRecordSummary;
use berth_scanner::report::ScanReport;

use super::{RecordSigner, ScanError, ScanRecord, ScanService, SignedScanRecord, SCAN_RECORDS, SIGNATURE_ALGORITHM};

/// The [`ScanRecord`] a signed record carries.
pub trait SignedPayload {
    fn record(&self) -> Result<ScanRecord, String>;
}

/// The record in the payload of signed record `id`.
fn read_payload(id: &str, payload: &str) -> Result<ScanRecord, String> {
    serde_json::from_str(payload).map_err(|e| format!("scan record {id}: unreadable payload: {e}"))
}

/// As stored.
impl SignedPayload for SignedScanRecord {
    fn record(&self) -> Result<ScanRecord, String> {
        read_payload(&self.id, &self.payload)
    }
}

/// As served.
impl SignedPayload for berth_model::SignedScanRecord {
    fn record(&self) -> Result<ScanRecord, String> {
        read_payload(&self.id, &self.payload)
    }
}

impl ScanService {
    /// Signs and stores a record of `report`.
    pub(super) fn record(
        &self,
        reference: &str,
        image: &Image,
        report: ScanReport,
        trigger: &str,
        previous: Option<String>,
    ) -> Result<SignedScanRecord, ScanError> {
        let id = berth_model::new_id();
        let record = ScanRecord {
            id: id.clone(),
            image: reference.to_string(),
            image_digest: image.manifest_digest.to_string(),
            image_id: image.id.to_string(),
            scanner_version: report.scanner_version.clone(),
            db_version: report.database_version.clone(),
            created: report.created.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            trigger: trigger.to_string(),
            previous,
            summary: report.summary(),
            report,
        };
        let payload =
            serde_json::to_string(&record).map_err(|e| ScanError::Failed(format!("encoding scan record {id}: {e}")))?;
        let signed = sign_record(self.signer.as_deref(), &id, payload)?;
        self.engine
            .state()
            .propose(berth_state::ClusterCommand::RecordScan { record: signed.clone() })
            .map_err(|e| ScanError::Failed(format!("storing scan record {id}: {e}")))?;
        Ok(signed)
    }

    /// The records, newest first; only those of `image` (a reference as
    /// scanned, a manifest digest or an image id) when given.
    pub fn list_records(&self, image: Option<&str>) -> Result<Vec<ScanRecordSummary>, ScanError> {
        let wanted = image.map(|i| self.image_keys(i));
        let mut out = Vec::new();
        for (_, signed) in self.store.list::<SignedScanRecord>(SCAN_RECORDS)? {
            let record = match signed.record() {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an unreadable scan record");
                    continue;
                }
            };
            if let Some(keys) = &wanted {
                if !keys
                    .iter()
                    .any(|k| *k == record.image || *k == record.image_digest || *k == record.image_id)
                {
                    continue;
                }
            }
            out.push(ScanRecordSummary {
                id: record.id,
                image: record.image,
                image_digest: record.image_digest,
                created: record.created,
                trigger: record.trigger,
                db_version: record.db_version,
                summary: record.summary,
                signed: !signed.signature.is_empty(),
            });
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// What a user may call an image by: the name itself, and when it names
    /// a local image, its manifest digest and id.
    fn image_keys(&self, image: &str) -> Vec<String> {
        let mut keys = vec![image.to_string()];
        if let Ok(found) = self.engine.images().resolve(image) {
            keys.push(found.manifest_digest.into_string());
            keys.push(found.id.into_string());
        }
        keys
    }

    /// One record by id (or a unique prefix of at least 4 characters).
    pub fn get_record(&self, id: &str) -> Result<SignedScanRecord, ScanError> {
        if let Some(found) = self.store.get::<SignedScanRecord>(SCAN_RECORDS, id)? {
            return Ok(found);
        }
        let not_found = || ScanError::NotFound(format!("no such scan record: {id}"));
        if id.len() < 4 {
            return Err(not_found());
        }
        let matches: Vec<SignedScanRecord> = self
            .store
            .list::<SignedScanRecord>(SCAN_RECORDS)?
            .into_iter()
            .filter(|(key, _)| key.starts_with(id))
            .map(|(_, r)| r)
            .collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().ok_or_else(not_found)?),
            0 => Err(not_found()),
            _ => Err(ScanError::Invalid(format!("scan record id prefix {id:?} is ambiguous"))),
        }
    }
}

/// A record signed by `signer`. A record is stored signed or not at all:
/// without a signer, or when signing fails, the scan fails with the reason.
fn sign_record(signer: Option<&dyn RecordSigner>, id: &str, payload: String) -> Result<SignedScanRecord, ScanError> {
    let signer = signer.ok_or_else(|| {
        ScanError::Unavailable(
            "the scan cannot be recorded: this node has no cluster key to sign it \
             (the cluster CA could not be opened; see the daemon's log)"
                .into(),
        )
    })?;
    let signature = signer
        .sign(payload.as_bytes())
        .map_err(|e| ScanError::Failed(format!("the scan cannot be recorded: signing record {id}: {e}")))?;
    Ok(SignedScanRecord {
        id: id.to_string(),
        payload,
        signature: hex::encode(signature),
        key_id: signer.key_id(),
        algorithm: SIGNATURE_ALGORITHM.to_string(),
    })
}

/// Whether `signature` (hex of DER) is the cluster key's over `payload`,
/// checked with `verify` (the CA's public key).
pub fn check_record(
    record: &berth_model::SignedScanRecord,
    verify: impl FnOnce(&[u8], &[u8]) -> bool,
) -> Result<ScanRecord, String> {
    if record.signature.is_empty() {
        return Err(format!("scan record {} is not signed", record.id));
    }
    if record.algorithm != SIGNATURE_ALGORITHM {
        return Err(format!(
            "scan record {}: unknown signature algorithm {:?}",
            record.id, record.algorithm
        ));
    }
    let signature =
        hex::decode(&record.signature).map_err(|_| format!("scan record {}: the signature is not hex", record.id))?;
    if !verify(record.payload.as_bytes(), &signature) {
        return Err(format!(
            "scan record {}: the signature does not match the cluster CA's key",
            record.id
        ));
    }
    let inner = record.record()?;
    if inner.id != record.id {
        return Err(format!(
            "scan record {}: the signed payload names record {}",
            record.id, inner.id
        ));
    }
    Ok(inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_scanner::report::{ImageRef, Summary};

    #[test]
    fn a_record_verifies_only_with_its_own_payload() {
        let record = ScanRecord {
            id: "abc".into(),
            image: "x:1".into(),
            image_digest: "sha256:00".into(),
            image_id: "sha256:11".into(),
            scanner_version: "0".into(),
            db_version: None,
            created: "2024-01-01T00:00:00Z".into(),
            trigger: "scan".into(),
            previous: None,
            summary: Summary::default(),
            report: ScanReport::new(
                ImageRef {
                    reference: "x:1".into(),
                    digest: "sha256:00".into(),
                },
                chrono::DateTime::UNIX_EPOCH,
            ),
        };
        let payload = serde_json::to_string(&record).unwrap();
        // A stand-in "signature": the payload's length, so only the exact bytes verify.
        let verify = |message: &[u8], sig: &[u8]| sig == message.len().to_be_bytes();
        let mut signed = berth_model::SignedScanRecord {
            id: "abc".into(),
            signature: hex::encode(payload.len().to_be_bytes()),
            payload,
            key_id: "k".into(),
            algorithm: SIGNATURE_ALGORITHM.into(),
        };
        assert_eq!(check_record(&signed, verify).unwrap().image, "x:1");
        signed.payload = signed.payload.replace("x:1", "y:22");
        assert!(check_record(&signed, verify).unwrap_err().contains("does not match"));
        signed.signature.clear();
        assert!(check_record(&signed, verify).unwrap_err().contains("not signed"));
    }

    struct Signer(Result<Vec<u8>, String>);

    impl RecordSigner for Signer {
        fn key_id(&self) -> String {
            "sha256:k".into()
        }
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, String> {
            self.0.clone()
        }
    }

    #[test]
    fn a_record_is_signed_or_not_made() {
        let signed = sign_record(Some(&Signer(Ok(vec![1, 2]))), "r1", "{}".into()).unwrap();
        assert_eq!(
            (signed.signature.as_str(), signed.key_id.as_str()),
            ("0102", "sha256:k")
        );
        let err = sign_record(Some(&Signer(Err("token removed".into()))), "r2", "{}".into()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the scan cannot be recorded: signing record r2: token removed"
        );
        let err = sign_record(None, "r3", "{}".into()).unwrap_err();
        assert!(err.to_string().contains("no cluster key to sign it"), "{err}");
    }
}
