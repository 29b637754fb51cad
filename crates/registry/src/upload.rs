//! Resumable blob uploads. Each upload is a directory holding the bytes
//! received so far (`data`) and its state (`state.json`: repository, offset,
//! last activity). The running sha256 is kept in memory; after a restart it
//! is recomputed from `data`, cut to the recorded offset, so a `kill -9`
//! leaves an upload that resumes where the state says.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use berth_image::BLOB_HOLDS;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{io_err, Code, Error, Result};
use crate::{hold_key, link_key, secs, validate_digest, validate_name, BlobLink, Registry, BLOB_LINKS};

/// Where an upload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    pub uuid: String,
    /// Bytes received so far.
    pub offset: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    repository: String,
    offset: u64,
    /// Seconds since the epoch of the last change.
    updated: u64,
}

/// An upload this process has loaded: its hash so far.
pub(crate) struct Live {
    hasher: Sha256,
    offset: u64,
}

/// Bytes between progress records during one chunk.
const CHECKPOINT: u64 = 8 << 20;

type Session = Arc<Mutex<Option<Live>>>;

fn valid_uuid(uuid: &str) -> bool {
    uuid.len() == 32 && uuid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn unknown(uuid: &str) -> Error {
    Error::new(Code::BlobUploadUnknown, format!("blob upload unknown: {uuid}"))
}

impl Registry {
    fn upload_dir(&self, uuid: &str) -> PathBuf {
        self.inner.uploads.join(uuid)
    }

    fn write_state(&self, uuid: &str, state: &State) -> Result<()> {
        let dir = self.upload_dir(uuid);
        let tmp = dir.join("state.json.tmp");
        let bytes = serde_json::to_vec(state).map_err(|e| Error::Io {
            action: "encoding upload state",
            path: tmp.clone(),
            source: io::Error::other(e),
        })?;
        fs::write(&tmp, bytes).map_err(io_err("writing", &tmp))?;
        let path = dir.join("state.json");
        fs::rename(&tmp, &path).map_err(io_err("renaming into", &path))
    }

    fn read_state(&self, uuid: &str) -> Option<State> {
        let path = self.upload_dir(uuid).join("state.json");
        let bytes = fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Starts an upload session in `repo`.
    pub fn start_upload(&self, repo: &str) -> Result<UploadStatus> {
        validate_name(repo)?;
        let uuid = hex::encode(rand::random::<[u8; 16]>());
        let dir = self.upload_dir(&uuid);
        fs::create_dir(&dir).map_err(io_err("creating", &dir))?;
        let data = dir.join("data");
        File::create(&data).map_err(io_err("creating", &data))?;
        self.write_state(
            &uuid,
            &State {
                repository: repo.to_string(),
                offset: 0,
                updated: secs(self.now()),
            },
        )?;
        let live = Live {
            hasher: Sha256::new(),
            offset: 0,
        };
        self.sessions().insert(uuid.clone(), Arc::new(Mutex::new(Some(live))));
        tracing::debug!(repository = repo, uuid, "upload started");
        Ok(UploadStatus { uuid, offset: 0 })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Session>> {
        self.inner.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The session of `uuid` if it belongs to `repo`.
    fn session(&self, repo: &str, uuid: &str) -> Result<Session> {
        validate_name(repo)?;
        if !valid_uuid(uuid) {
            return Err(unknown(uuid));
        }
        match self.read_state(uuid) {
            Some(state) if state.repository == repo => {}
            _ => return Err(unknown(uuid)),
        }
        Ok(self.sessions().entry(uuid.to_string()).or_default().clone())
    }

    /// Loads an upload left by an earlier process: cuts `data` to the
    /// recorded offset and hashes it.
    fn load(&self, uuid: &str) -> Result<Live> {
        let state = self.read_state(uuid).ok_or_else(|| unknown(uuid))?;
        let path = self.upload_dir(uuid).join("data");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|_| unknown(uuid))?;
        let len = file.metadata().map_err(io_err("reading metadata of", &path))?.len();
        let offset = state.offset.min(len);
        file.set_len(offset).map_err(io_err("truncating", &path))?;
        let mut hasher = Sha256::new();
        io::copy(&mut (&file).take(offset), &mut hasher).map_err(io_err("hashing", &path))?;
        tracing::info!(uuid, offset, "upload resumed from disk");
        Ok(Live { hasher, offset })
    }

    /// Where upload `uuid` of `repo` stands.
    pub fn upload_status(&self, repo: &str, uuid: &str) -> Result<UploadStatus> {
        let session = self.session(repo, uuid)?;
        let mut live = session.lock().unwrap_or_else(PoisonError::into_inner);
        let offset = match &*live {
            Some(l) => l.offset,
            None => {
                let l = self.load(uuid)?;
                let offset = l.offset;
                *live = Some(l);
                offset
            }
        };
        Ok(UploadStatus {
            uuid: uuid.to_string(),
            offset,
        })
    }

    /// Appends a chunk. `range` is the inclusive `(start, end)` of a
    /// `Content-Range`: `start` must be the current offset (else
    /// [`Code::RangeNotSatisfiable`]) and the body must be exactly that long.
    /// A body cut short (a dropped connection) keeps what arrived, so the
    /// client can resume from the offset the status reports.
    pub fn upload_chunk(
        &self,
        repo: &str,
        uuid: &str,
        range: Option<(u64, u64)>,
        body: &mut dyn Read,
    ) -> Result<UploadStatus> {
        let session = self.session(repo, uuid)?;
        let mut guard = session.lock().unwrap_or_else(PoisonError::into_inner);
        let live = match guard.take() {
            Some(l) => l,
            None => self.load(uuid)?,
        };
        let live = guard.insert(live);
        self.append(repo, uuid, live, range, body)?;
        Ok(UploadStatus {
            uuid: uuid.to_string(),
            offset: live.offset,
        })
    }

    fn append(
        &self,
        repo: &str,
        uuid: &str,
        live: &mut Live,
        range: Option<(u64, u64)>,
        body: &mut dyn Read,
    ) -> Result<()> {
        if let Some((start, end)) = range {
            if start != live.offset || end < start {
                return Err(Error::new(
                    Code::RangeNotSatisfiable,
                    format!(
                        "chunk range {start}-{end} does not start at the upload's offset {}",
                        live.offset
                    ),
                ));
            }
        }
        let path = self.upload_dir(uuid).join("data");
        let mut file = OpenOptions::new().append(true).open(&path).map_err(|_| unknown(uuid))?;
        let (start_offset, start_hasher) = (live.offset, live.hasher.clone());
        let max = self.inner.config.max_blob_size;
        let mut buf = vec![0u8; 256 * 1024];
        let mut outcome = Ok(());
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Keep what arrived: the client resumes from here.
                    outcome = Err(Error::new(Code::BlobUploadInvalid, format!("reading the chunk: {e}")));
                    break;
                }
            };
            if live.offset + n as u64 > max {
                outcome = Err(Error::new(
                    Code::SizeInvalid,
                    format!("blob larger than the limit of {max} bytes"),
                ));
                live.offset = start_offset;
                live.hasher = start_hasher.clone();
                break;
            }
            file.write_all(&buf[..n]).map_err(io_err("writing", &path))?;
            live.hasher.update(&buf[..n]);
            let before = live.offset;
            live.offset += n as u64;
            // Record progress now and then, so a crash during a long chunk
            // keeps most of it resumable.
            if range.is_none() && before / CHECKPOINT != live.offset / CHECKPOINT {
                self.write_state(
                    uuid,
                    &State {
                        repository: repo.to_string(),
                        offset: live.offset,
                        updated: secs(self.now()),
                    },
                )?;
            }
        }
        if outcome.is_ok() {
            if let Some((start, end)) = range {
                let got = live.offset - start_offset;
                if got != end - start + 1 {
                    outcome = Err(Error::new(
                        Code::BlobUploadInvalid,
                        format!(
                            "chunk range {start}-{end} announces {} bytes but the body has {got}",
                            end - start + 1
                        ),
                    ));
                    live.offset = start_offset;
                    live.hasher = start_hasher;
                }
            }
        }
        let len = file.metadata().map_err(io_err("reading metadata of", &path))?.len();
        if len != live.offset {
            file.set_len(live.offset).map_err(io_err("truncating", &path))?;
        }
        self.write_state(
            uuid,
            &State {
                repository: repo.to_string(),
                offset: live.offset,
                updated: secs(self.now()),
            },
        )?;
        outcome
    }

    /// Appends a last chunk (may be empty), checks the whole against `digest`
    /// and makes the blob visible in `repo`. On a mismatch the upload stays as
    /// it was before this call.
    pub fn finish_upload(
        &self,
        repo: &str,
        uuid: &str,
        digest: &str,
        range: Option<(u64, u64)>,
        body: &mut dyn Read,
    ) -> Result<String> {
        validate_digest(digest)?;
        let session = self.session(repo, uuid)?;
        let mut guard = session.lock().unwrap_or_else(PoisonError::into_inner);
        let live = match guard.take() {
            Some(l) => l,
            None => self.load(uuid)?,
        };
        let live = guard.insert(live);
        let (before, before_hasher) = (live.offset, live.hasher.clone());
        self.append(repo, uuid, live, range, body)?;
        let actual = format!("sha256:{}", hex::encode(live.hasher.clone().finalize()));
        let path = self.upload_dir(uuid).join("data");
        if actual != digest {
            live.offset = before;
            live.hasher = before_hasher;
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err("opening", &path))?;
            file.set_len(before).map_err(io_err("truncating", &path))?;
            self.write_state(
                uuid,
                &State {
                    repository: repo.to_string(),
                    offset: before,
                    updated: secs(self.now()),
                },
            )?;
            return Err(Error::new(
                Code::DigestInvalid,
                format!("uploaded content has digest {actual}, not {digest}"),
            ));
        }
        File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(io_err("syncing", &path))?;
        let link = BlobLink {
            size: live.offset,
            created: secs(self.now()),
        };
        {
            let _commit = self.commit_guard();
            self.inner.images.commit_blob(&path, digest, |t| {
                t.put(BLOB_LINKS, &link_key(repo, digest), &link)?;
                t.put(BLOB_HOLDS, &hold_key(digest), &())
            })?;
        }
        *guard = None;
        drop(guard);
        self.forget_upload(uuid);
        tracing::info!(repository = repo, digest, size = link.size, "blob uploaded");
        Ok(digest.to_string())
    }

    /// Stores a whole blob in one request.
    pub fn put_blob(&self, repo: &str, digest: &str, body: &mut dyn Read) -> Result<String> {
        validate_name(repo)?;
        validate_digest(digest)?;
        let status = self.start_upload(repo)?;
        let result = self.finish_upload(repo, &status.uuid, digest, None, body);
        if result.is_err() {
            self.forget_upload(&status.uuid);
        }
        result
    }

    /// Abandons an upload.
    pub fn cancel_upload(&self, repo: &str, uuid: &str) -> Result<()> {
        let session = self.session(repo, uuid)?;
        let _guard = session.lock().unwrap_or_else(PoisonError::into_inner);
        self.forget_upload(uuid);
        Ok(())
    }

    fn forget_upload(&self, uuid: &str) {
        let dir = self.upload_dir(uuid);
        if let Err(e) = fs::remove_dir_all(&dir) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %dir.display(), error = %e, "cannot remove upload");
            }
        }
        self.sessions().remove(uuid);
    }

    /// Removes uploads idle for longer than the configured expiry, and upload
    /// dirs a crash left without a readable state or data. Returns how many.
    pub fn expire_uploads(&self) -> Result<usize> {
        let now = secs(self.now());
        let expiry = self.inner.config.upload_expiry.as_secs();
        let dir = &self.inner.uploads;
        let mut removed = 0;
        for entry in fs::read_dir(dir).map_err(io_err("listing", dir))? {
            let entry = entry.map_err(io_err("listing", dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = valid_uuid(&name)
                && entry.path().join("data").is_file()
                && self
                    .read_state(&name)
                    .is_some_and(|s| s.updated.saturating_add(expiry) > now);
            if !keep {
                // A session in use is skipped: its lock is held by a request.
                let session = self.sessions().get(&name).cloned();
                let _guard = match &session {
                    Some(s) => match s.try_lock() {
                        Ok(g) => Some(g),
                        Err(_) => continue,
                    },
                    None => None,
                };
                self.forget_upload(&name);
                tracing::info!(uuid = %name, "expired upload removed");
                removed += 1;
            }
        }
        Ok(removed)
    }
}
