//! The image scanner: component inventory, licenses, vulnerabilities (OSV),
//! image optimization, SBOM/SARIF output. It reads an image as its layers'
//! snapshot directories (overlayfs lower dirs, bottom first) and never runs
//! anything itself; functional tests and WASM checks are driven by the caller.
//!
//! Module ownership: `types` (shared vocabulary), `layers` (merged view of
//! snapshot dirs), `inventory` (packages per ecosystem), `licenses` (SPDX
//! normalization and classification), `versions` (each ecosystem's order),
//! `vuln` (OSV import and matching), `optimize` (wasted space, efficiency),
//! `report` (SPDX 2.3, CycloneDX 1.5, SARIF 2.1.0).

#![forbid(unsafe_code)]

pub mod inventory;
pub mod layers;
pub mod licenses;
pub mod optimize;
pub mod records;
pub mod report;
pub mod scan;
pub mod types;
pub mod versions;
pub mod vuln;

pub use types::*;
