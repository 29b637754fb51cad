//! The worlds of `berth:plugin` this host implements, one bindings module per
//! world version. A new version (`0.2.0`) gets a new module next to the old
//! ones and a new entry in [`SUPPORTED`]; plugins built against an older
//! version keep loading through their own module.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::PluginError;

pub(crate) mod v0_1_0;

/// A kind of plugin, named as in WIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// A check the scanner runs against an image.
    ScannerCheck,
}

impl World {
    pub fn name(self) -> &'static str {
        match self {
            World::ScannerCheck => "scanner-check",
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A world at one version of the WIT package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorldVersion {
    pub world: World,
    pub version: &'static str,
}

/// Every world version this host links, oldest first.
pub const SUPPORTED: &[WorldVersion] = &[WorldVersion {
    world: World::ScannerCheck,
    version: v0_1_0::VERSION,
}];

impl WorldVersion {
    /// The supported world version that `world` and `version` name.
    pub fn find(world: &str, version: &str) -> Result<WorldVersion, PluginError> {
        SUPPORTED
            .iter()
            .copied()
            .find(|supported| supported.world.name() == world && supported.version == version)
            .ok_or_else(|| PluginError::UnsupportedWorld {
                world: world.to_string(),
                version: version.to_string(),
                supported: SUPPORTED.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            })
    }
}

impl fmt::Display for WorldVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.world, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_supported_worlds_and_names_them_when_refusing() {
        let found = WorldVersion::find("scanner-check", "0.1.0").unwrap();
        assert_eq!(found.to_string(), "scanner-check@0.1.0");
        let err = WorldVersion::find("scanner-check", "9.0.0").unwrap_err().to_string();
        assert_eq!(
            err,
            "world scanner-check@9.0.0 is not supported by this berth (supported: scanner-check@0.1.0)"
        );
        assert!(WorldVersion::find("volume-driver", "0.1.0").is_err());
    }
}
