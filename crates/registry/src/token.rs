//! Bearer tokens for the registry, as docker and skopeo use them: a client
//! that gets `401 WWW-Authenticate: Bearer realm=...,scope=...` asks the
//! realm for a token naming the scopes it needs and sends it back as
//! `Authorization: Bearer <token>`. Clients treat the token as opaque, so it
//! is ours: `hex(claims JSON) "." hex(HMAC-SHA256(key, claims JSON))`.
//!
//! The key is 32 random bytes made at the first start,
//! `<data_root>/registry/token.key`, mode 0600. This module signs and checks;
//! who may get which scope is decided by the API's authorization layer.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{io_err, Code, Error, Result};

/// `iss` and `aud` of every token; the `service` of the challenge.
pub const SERVICE: &str = "berth";
const KEY_LEN: usize = 32;

/// One granted scope: `repository:NAME:pull,push` is
/// `{type: "repository", name: NAME, actions: ["pull", "push"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Access {
    /// Parses a scope string (`repository:NAME:pull,push`, `registry:catalog:*`).
    /// The name may itself hold colons (`repository:host:5000/x:pull`).
    pub fn parse(scope: &str) -> Option<Access> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Access {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }

    /// Back to the scope string.
    pub fn scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// Who it was issued to (`anonymous`, `admin`, later a user).
    pub sub: String,
    pub aud: String,
    /// Seconds since the epoch.
    pub iat: u64,
    pub exp: u64,
    pub access: Vec<Access>,
}

impl Claims {
    /// Whether the token grants `action` on `kind:name`.
    pub fn grants(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|a| {
            a.kind == kind && a.name == name && a.actions.iter().any(|granted| granted == action || granted == "*")
        })
    }
}

/// The signing key.
#[derive(Clone)]
pub struct TokenKey {
    key: [u8; KEY_LEN],
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(Code::Unauthorized, message)
}

impl TokenKey {
    /// Reads the key at `path`, or makes one there (mode 0600) if there is none.
    pub fn open_or_create(path: &Path) -> Result<TokenKey> {
        match fs::read(path) {
            Ok(bytes) => {
                let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| Error::Io {
                    action: "reading the token key",
                    path: path.to_path_buf(),
                    source: io::Error::other(format!("{} bytes, not {KEY_LEN}", bytes.len())),
                })?;
                let mode = fs::metadata(path)
                    .map_err(io_err("reading metadata of", path))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                        .map_err(io_err("restricting the permissions of", path))?;
                }
                Ok(TokenKey { key })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key: [u8; KEY_LEN] = rand::random();
                let tmp = path.with_extension("tmp");
                let _ = fs::remove_file(&tmp);
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(io_err("creating", &tmp))?;
                file.write_all(&key).map_err(io_err("writing", &tmp))?;
                file.sync_all().map_err(io_err("syncing", &tmp))?;
                fs::rename(&tmp, path).map_err(io_err("renaming into", path))?;
                tracing::info!(path = %path.display(), "registry token key created");
                Ok(TokenKey { key })
            }
            Err(e) => Err(io_err("reading", path)(e)),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes keys of any length")
    }

    /// Signs `claims`.
    pub fn issue(&self, claims: &Claims) -> String {
        let body = serde_json::to_vec(claims).unwrap_or_default();
        let mut mac = self.mac();
        mac.update(&body);
        format!("{}.{}", hex::encode(&body), hex::encode(mac.finalize().into_bytes()))
    }

    /// Checks the signature, the audience and the expiry (against `now`,
    /// seconds since the epoch) of `token`; its claims if all hold.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims> {
        let (body, signature) = token.split_once('.').ok_or_else(|| invalid("malformed token"))?;
        let body = hex::decode(body).map_err(|_| invalid("malformed token"))?;
        let signature = hex::decode(signature).map_err(|_| invalid("malformed token"))?;
        let mut mac = self.mac();
        mac.update(&body);
        mac.verify_slice(&signature)
            .map_err(|_| invalid("token signature does not verify"))?;
        let claims: Claims = serde_json::from_slice(&body).map_err(|_| invalid("malformed token claims"))?;
        if claims.aud != SERVICE || claims.iss != SERVICE {
            return Err(invalid(format!("token for {:?}, not {SERVICE:?}", claims.aud)));
        }
        if claims.exp <= now {
            return Err(invalid("token expired"));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            iss: SERVICE.into(),
            sub: "anonymous".into(),
            aud: SERVICE.into(),
            iat: 100,
            exp,
            access: vec![Access::parse("repository:a/b:pull,push").expect("scope")],
        }
    }

    #[test]
    fn scopes_parse_and_print() {
        let a = Access::parse("repository:localhost:5000/x:pull").expect("scope");
        assert_eq!((a.kind.as_str(), a.name.as_str()), ("repository", "localhost:5000/x"));
        assert_eq!(a.actions, vec!["pull"]);
        assert_eq!(
            Access::parse("registry:catalog:*").expect("scope").scope(),
            "registry:catalog:*"
        );
        assert_eq!(Access::parse("repository:x"), None);
        assert_eq!(Access::parse(":x:pull"), None);
    }

    #[test]
    fn tokens_verify_only_when_signed_current_and_ours() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token.key");
        let key = TokenKey::open_or_create(&path).expect("key");
        assert_eq!(fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        let again = TokenKey::open_or_create(&path).expect("key");
        assert_eq!(key.key, again.key, "the key is kept across starts");

        let token = key.issue(&claims(200));
        let got = again.verify(&token, 150).expect("valid");
        assert!(got.grants("repository", "a/b", "push"));
        assert!(!got.grants("repository", "a/c", "pull"));
        assert!(!got.grants("repository", "a/b", "delete"));
        assert_eq!(key.verify(&token, 200).expect_err("expired").code(), Code::Unauthorized);

        // Changing the claims breaks the signature.
        let (_, sig) = token.split_once('.').expect("dot");
        let mut forged = claims(200);
        forged.access[0].actions.push("delete".into());
        let forged_body = hex::encode(serde_json::to_vec(&forged).expect("json"));
        assert!(key.verify(&format!("{forged_body}.{sig}"), 150).is_err());
        // Another key's token does not verify.
        let other = TokenKey::open_or_create(&dir.path().join("other.key")).expect("key");
        assert!(key.verify(&other.issue(&claims(200)), 150).is_err());
        // Someone else's audience.
        let mut foreign = claims(200);
        foreign.aud = "elsewhere".into();
        assert!(key.verify(&key.issue(&foreign), 150).is_err());
        assert!(key.verify("garbage", 150).is_err());
    }
}
