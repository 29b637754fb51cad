//! Ids, digests and modes as types, not strings: a `ContainerId` is not a
//! name, a `Digest` is `sha256:` and 64 hex digits, a `NetworkMode` is one of
//! the modes a container can have. On the wire each is the string it always
//! was (`#[serde(transparent)]` or a string form), so the API is unchanged.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl utoipa::ToSchema for $name {}

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                String::schema()
            }
        }
    };
}

string_newtype!(
    /// A container's id: 64 lower-case hex digits ([`crate::new_id`]).
    ContainerId
);

string_newtype!(
    /// A content digest: `sha256:` and 64 lower-case hex digits.
    Digest
);

impl ContainerId {
    /// A new random id.
    pub fn new() -> Self {
        Self(crate::new_id())
    }

    /// The 12-digit form shown in tables.
    pub fn short(&self) -> &str {
        crate::short_id(&self.0)
    }
}

impl From<String> for ContainerId {
    /// An id as stored or sent; ids are made by [`ContainerId::new`] only.
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl Digest {
    /// `s` when it is a well-formed `sha256:` digest.
    pub fn parse(s: &str) -> Result<Self, String> {
        crate::validate_digest(s).map_err(|e| e.to_string())?;
        Ok(Self(s.to_string()))
    }

    /// The digest of `bytes`, computed by the caller (`sha256:` and hex).
    pub fn from_hex(hex: &str) -> Self {
        Self(format!("sha256:{hex}"))
    }

    /// The hex part, without `sha256:`.
    pub fn hex(&self) -> &str {
        self.0.strip_prefix("sha256:").unwrap_or(&self.0)
    }
}

impl From<String> for Digest {
    /// A digest as stored (it was checked when it was written).
    fn from(digest: String) -> Self {
        Self(digest)
    }
}

/// How a container is networked: `none` (no interface but loopback) is the
/// only mode this node runs today; `bridge`, `host` and a named network
/// parse so that a request naming them is refused with a clear error
/// rather than a parse failure.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum NetworkMode {
    None,
    Bridge,
    Host,
    /// A user-defined network, by name.
    Named(String),
}

impl NetworkMode {
    pub fn as_str(&self) -> &str {
        match self {
            NetworkMode::None => "none",
            NetworkMode::Bridge => "bridge",
            NetworkMode::Host => "host",
            NetworkMode::Named(name) => name,
        }
    }
}

impl From<String> for NetworkMode {
    fn from(s: String) -> Self {
        match s.as_str() {
            "none" => NetworkMode::None,
            "bridge" => NetworkMode::Bridge,
            "host" => NetworkMode::Host,
            _ => NetworkMode::Named(s),
        }
    }
}

impl From<NetworkMode> for String {
    fn from(mode: NetworkMode) -> String {
        mode.as_str().to_string()
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_the_wire_they_are_the_strings_they_were() {
        let id = ContainerId::new();
        assert_eq!(serde_json::to_value(&id).unwrap(), serde_json::json!(id.as_str()));
        assert_eq!(id.short().len(), 12);
        let back: ContainerId = serde_json::from_value(serde_json::json!(id.as_str())).unwrap();
        assert_eq!(back, id);
        let digest = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
        assert_eq!(digest.hex(), "ab".repeat(32));
        assert_eq!(serde_json::to_string(&digest).unwrap(), format!("\"{digest}\""));
        assert!(Digest::parse("sha256:xyz").is_err());
        assert!(Digest::parse("md5:00").is_err());
        for (text, mode) in [
            ("none", NetworkMode::None),
            ("bridge", NetworkMode::Bridge),
            ("host", NetworkMode::Host),
            ("backend", NetworkMode::Named("backend".into())),
        ] {
            assert_eq!(
                serde_json::from_value::<NetworkMode>(serde_json::json!(text)).unwrap(),
                mode
            );
            assert_eq!(serde_json::to_value(&mode).unwrap(), serde_json::json!(text));
        }
    }
}
