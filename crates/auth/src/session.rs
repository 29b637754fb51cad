//! Browser sessions for the web UI: a session token in an HttpOnly, Secure,
//! SameSite=Strict cookie, plus a CSRF token the page sends back in the
//! `X-CSRF-Token` header on every request that changes something (the
//! synchronizer-token pattern, so a cross-site form cannot act with the
//! cookie alone).
//!
//! **Invariant:** only hashes of the session and CSRF tokens are stored; the
//! tokens themselves exist in the response that created them and in the
//! browser. A session ends at its expiry, at logout, or when its user is
//! removed.

use sha2::{Digest, Sha256};

use crate::access::{constant_time_eq, random_secret, sha256_hex};
use crate::{Access, AuthFailure, Identity, Result};

/// Sessions by id.
pub use berth_state::tables::SESSIONS;
/// The cookie that carries the session token.
pub const SESSION_COOKIE: &str = "berth_session";
/// The header that must carry the CSRF token on changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Every session token starts with this.
pub const SESSION_PREFIX: &str = "berth_ses_";
/// How long a session lasts, in seconds.
pub const SESSION_LIFETIME: i64 = 12 * 3600;

use berth_state::records::SessionRecord;

/// A session just created: the only place its tokens exist server-side.
pub struct NewSession {
    pub token: String,
    pub csrf: String,
    pub expires: i64,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

fn session_id(token: &str) -> Option<&str> {
    token
        .strip_prefix(SESSION_PREFIX)
        .and_then(|rest| rest.split_once('_'))
        .map(|(id, _)| id)
}

impl Access {
    /// Opens a session for `user` (already authenticated by password).
    pub fn create_session(&self, user: &str, source: Option<&str>) -> Result<NewSession> {
        let id = random_secret(9);
        let token = format!("{SESSION_PREFIX}{id}_{}", random_secret(24));
        let csrf = random_secret(24);
        let now = self.now().timestamp();
        let record = SessionRecord {
            id: id.clone(),
            user: user.to_string(),
            hash: sha256_hex(token.as_bytes()),
            csrf_hash: sha256_hex(csrf.as_bytes()),
            created: now,
            expires: now + SESSION_LIFETIME,
            source: source.unwrap_or("local").to_string(),
        };
        // Expired sessions (anyone's) are dropped while here.
        self.state.propose(berth_state::ClusterCommand::CreateSession {
            session: record.clone(),
            now,
        })?;
        Ok(NewSession {
            token,
            csrf,
            expires: record.expires,
        })
    }

    /// The identity behind a session cookie. A changing request must come
    /// with the session's CSRF token; a missing or wrong one is refused.
    pub fn authenticate_session(
        &self,
        token: &str,
        csrf: Option<&str>,
        changing: bool,
    ) -> std::result::Result<Identity, AuthFailure> {
        let fail = |user: Option<String>, reason| Err(AuthFailure { user, reason });
        let Some(id) = session_id(token) else {
            return fail(None, "malformed session token");
        };
        let record = match self.store.get::<SessionRecord>(SESSIONS, id) {
            Ok(Some(r)) => r,
            Ok(None) => return fail(None, "unknown or ended session"),
            Err(_) => return fail(None, "session store unavailable"),
        };
        if !constant_time_eq(
            &Sha256::digest(token.as_bytes()),
            &hex::decode(&record.hash).unwrap_or_default(),
        ) {
            return fail(Some(record.user), "session token does not match");
        }
        if record.expires <= self.now().timestamp() {
            return fail(Some(record.user), "session expired");
        }
        if !self.user_exists(&record.user).unwrap_or(false) {
            return fail(Some(record.user), "the session's user no longer exists");
        }
        if changing {
            let ok = csrf.is_some_and(|c| {
                constant_time_eq(
                    &Sha256::digest(c.as_bytes()),
                    &hex::decode(&record.csrf_hash).unwrap_or_default(),
                )
            });
            if !ok {
                return fail(Some(record.user), "CSRF token missing or wrong");
            }
        }
        Ok(Identity {
            name: record.user,
            scopes: None,
            token_id: None,
        })
    }

    /// Ends the session `token` names. Whether there was one.
    pub fn end_session(&self, token: &str) -> Result<bool> {
        let Some(id) = session_id(token) else { return Ok(false) };
        let id = id.to_string();
        let ended = self.state.propose(berth_state::ClusterCommand::EndSession { id })?;
        Ok(ended == berth_state::Outcome::Removed(true))
    }
}
