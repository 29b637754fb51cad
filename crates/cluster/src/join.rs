//! Join tokens: what `berth cluster join-token worker|manager` prints and
//! `berth daemon --join TOKEN@ADDR:PORT` takes.
//!
//! A token is `berth1-<role>-<ca>-<secret>`: the role it admits (`worker` or
//! `manager`), the SHA-256 of the cluster CA certificate's DER (64 hex
//! digits) and a secret of 130 random bits (26 base32 digits). The joining
//! node checks the CA a manager presents against the digest *before* it
//! sends the secret (as swarm and k3s do), so a node that reached the wrong
//! address, or a machine in the middle, learns nothing it could join with.
//! The cluster keeps no secret: per role it keeps a random nonce, and the
//! secret is an HMAC of the role and the nonce under a key derived from the
//! CA's private key ([`crate::Pki::join_secret`]), so only a manager can
//! compute it, and a copy of cluster state (a backup, a follower's log)
//! reveals nothing one could join with. Rotating a role's token replaces
//! its nonce, and the old token stops working.

use std::fmt;

use crate::pki::fingerprint as sha256_hex;

/// The version tag every token starts with.
const TAG: &str = "berth1";
/// Base32 (RFC 4648) without padding, lower case: the secret's digits.
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// The secret's length: 26 base32 digits, 130 random bits.
const SECRET_DIGITS: usize = 26;

/// The role a token admits a node to.
pub use berth_model::node::NodeRole as Role;

fn parse_role(s: &str) -> Result<Role, JoinError> {
    s.parse()
        .map_err(|_| JoinError::Malformed(format!("unknown role {s:?}: a token admits a worker or a manager")))
}

/// Why a token or a join was refused. None of these messages contains the
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("not a berth join token: {0}")]
    Malformed(String),
    #[error(
        "the cluster CA at {addr} does not match the join token (the token names sha256:{expected}, \
         the manager presented sha256:{presented}): check the address, or get a new token"
    )]
    WrongCa {
        addr: String,
        expected: String,
        presented: String,
    },
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub role: Role,
    /// Lower-case hex SHA-256 of the CA certificate's DER.
    pub ca_digest: String,
    secret: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("role", &self.role)
            .field("ca_digest", &self.ca_digest)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl fmt::Display for JoinToken {
    /// The token as a user copies it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TAG}-{}-{}-{}", self.role.as_str(), self.ca_digest, self.secret)
    }
}

/// Whether `a` and `b` are equal, in time that depends on their length only.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl JoinToken {
    /// The token whose secret is derived from `mac` (see
    /// [`crate::Pki::join_secret`]): its first 26 bytes, 5 bits each.
    pub fn derived(role: Role, ca_der: &[u8], mac: &[u8; 32]) -> JoinToken {
        let secret = mac[..SECRET_DIGITS]
            .iter()
            .map(|b| BASE32[usize::from(b & 31)] as char)
            .collect();
        JoinToken {
            role,
            ca_digest: sha256_hex(ca_der),
            secret,
        }
    }

    /// The secret, to send to a manager whose CA was checked.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Whether `secret` is this token's (compared in constant time).
    pub fn secret_is(&self, secret: &str) -> bool {
        constant_time_eq(self.secret.as_bytes(), secret.as_bytes())
    }

    /// Parses a token as a user typed it (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<JoinToken, JoinError> {
        let text = text.trim();
        let mut parts = text.split('-');
        let (Some(tag), Some(role), Some(ca), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JoinError::Malformed(
                "expected berth1-<role>-<ca digest>-<secret>".into(),
            ));
        };
        if tag != TAG {
            return Err(JoinError::Malformed(format!("it starts with {tag:?}, not {TAG:?}")));
        }
        let role = parse_role(role)?;
        if ca.len() != 64 || !ca.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(JoinError::Malformed(
                "the CA digest is not 64 lower-case hex digits".into(),
            ));
        }
        if secret.len() != SECRET_DIGITS || !secret.bytes().all(|b| BASE32.contains(&b)) {
            return Err(JoinError::Malformed(format!(
                "the secret is not {SECRET_DIGITS} base32 digits"
            )));
        }
        Ok(JoinToken {
            role,
            ca_digest: ca.to_string(),
            secret: secret.to_string(),
        })
    }

    /// Checks the CA certificate a manager at `addr` presented against the
    /// token's digest: the step before the secret is sent.
    pub fn check_ca(&self, ca_der: &[u8], addr: &str) -> Result<(), JoinError> {
        let presented = sha256_hex(ca_der);
        if constant_time_eq(presented.as_bytes(), self.ca_digest.as_bytes()) {
            return Ok(());
        }
        Err(JoinError::WrongCa {
            addr: addr.to_string(),
            expected: self.ca_digest.clone(),
            presented,
        })
    }
}

/// Whether `id` is a node id as nodes make them ([`berth_model::new_id`]:
/// 64 lower-case hex digits).
pub fn valid_node_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Splits `berth daemon --join TOKEN@ADDR:PORT`.
pub fn parse_join(arg: &str) -> Result<(JoinToken, String), JoinError> {
    let Some((token, addr)) = arg.trim().rsplit_once('@') else {
        return Err(JoinError::Malformed(
            "--join takes TOKEN@ADDR:PORT (the command `berth cluster join-token` prints)".into(),
        ));
    };
    let token = JoinToken::parse(token)?;
    let port_ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
    if !port_ok {
        return Err(JoinError::Malformed(format!(
            "{addr:?} is not ADDR:PORT (a manager's address and port, e.g. 198.18.0.11:7443)"
        )));
    }
    Ok((token, addr.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &[u8] = b"the DER of a CA certificate";

    fn fresh(role: Role) -> JoinToken {
        JoinToken::derived(role, CA, &rand::random())
    }

    #[test]
    fn a_token_round_trips_and_hides_its_secret() {
        let token = fresh(Role::Manager);
        let text = token.to_string();
        assert!(text.starts_with("berth1-manager-"), "{text}");
        assert_eq!(JoinToken::parse(&format!("  {text}\n")), Ok(token.clone()));
        assert!(!format!("{token:?}").contains(&token.secret), "Debug shows no secret");
        // Two tokens never share a secret.
        assert_ne!(fresh(Role::Manager).secret, token.secret);
    }

    #[test]
    fn the_ca_is_checked_before_anything_else() {
        let token = fresh(Role::Worker);
        assert_eq!(token.check_ca(CA, "198.18.0.11:7443"), Ok(()));
        let err = token.check_ca(b"another CA", "198.18.0.11:7443").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("does not match the join token") && text.contains("198.18.0.11:7443"),
            "{text}"
        );
        assert!(!text.contains(&token.secret), "the error shows no secret");
    }

    #[test]
    fn only_the_current_secret_of_a_role_is_admitted() {
        let mac: [u8; 32] = rand::random();
        let current = JoinToken::derived(Role::Worker, CA, &mac);
        assert_eq!(
            JoinToken::derived(Role::Worker, CA, &mac),
            current,
            "derived again: the same token"
        );
        assert!(current.secret_is(current.secret()));
        let rotated = fresh(Role::Worker);
        assert!(!current.secret_is(rotated.secret()));
        assert!(!current.secret_is(""));
    }

    #[test]
    fn bad_tokens_and_addresses_are_named() {
        let good = fresh(Role::Worker).to_string();
        let cases = [
            ("", "expected berth1-"),
            ("SWMTKN-1-abc-def", "starts with \"SWMTKN\""),
            ("berth1-worker-abc", "expected berth1-"),
            (&good.replacen("berth1", "berth2", 1), "not \"berth1\""),
            (&good.replacen("worker", "leader", 1), "unknown role \"leader\""),
            (&good.replacen(&good[15..19], "ZZZZ", 1), "64 lower-case hex"),
            (&format!("{}x", good), "26 base32 digits"),
        ];
        for (text, says) in cases {
            let err = JoinToken::parse(text).unwrap_err().to_string();
            assert!(err.contains(says), "{text:?}: {err}");
        }
        assert!(parse_join(&format!("{good}@198.18.0.11:7443")).is_ok());
        for (arg, says) in [
            (good.clone(), "TOKEN@ADDR:PORT"),
            (format!("{good}@198.18.0.11"), "is not ADDR:PORT"),
            (format!("{good}@:7443"), "is not ADDR:PORT"),
            (format!("{good}@198.18.0.11:0"), "is not ADDR:PORT"),
        ] {
            let err = parse_join(&arg).unwrap_err().to_string();
            assert!(err.contains(says), "{arg:?}: {err}");
        }
    }
}
