//! The WebAssembly plugin host: wasmtime components built against the WIT
//! package `berth:plugin` (`proto/wit/`), run with no ambient authority and
//! with a memory cap and a CPU deadline per call.
//!
//! Module map:
//! - [`host`]: the engine ([`PluginHost`]), per-call limits ([`Limits`]), the
//!   epoch ticker, and how a failed call becomes a [`PluginError`].
//! - [`worlds`]: one bindings module per world version (`v0_1_0`), the only
//!   code that sees generated types; everything else uses the
//!   version-independent types in [`check`] and [`fs`].
//! - [`fs`]: the [`ImageFs`] trait a `scanner-check` plugin reads the image
//!   through, and [`DirImageFs`], an implementation over a plain directory.
//! - `cache`: compiled components on disk, keyed by wasm digest, wasmtime
//!   version and engine configuration.
//! - [`manifest`]: `plugin.json`; [`registry`]: installed plugins on disk;
//!   [`oci`]: a plugin as an OCI artifact.
//!
//! **Architecture invariant:** a plugin gets nothing but its world's imports
//! and a WASI context configured empty (no preopened directories, no
//! environment, no arguments, no sockets, stdio discarded but for a short
//! stderr tail kept to explain crashes). The host knows no plugin's domain:
//! it moves records between the caller and the component.

#![deny(unsafe_code)]

mod cache;
pub mod check;
pub mod error;
pub mod fs;
pub mod host;
pub mod manifest;
pub mod oci;
pub mod registry;
mod stderr;
pub mod worlds;

pub use cache::WASMTIME_VERSION;
pub use check::{CheckInfo, Finding, ImageInfo, RuleInfo, Severity};
pub use error::PluginError;
pub use fs::{DirEntry, DirImageFs, EmptyImageFs, FileKind, FileStat, FsError, ImageFs};
pub use host::{HostConfig, Limits, PluginHost, ScannerCheck};
pub use manifest::PluginManifest;
pub use oci::{plugin_from_blobs, read_oci_manifest, to_oci_artifact, ArtifactBlobs, Blob, BlobRef, PluginArtifact};
pub use registry::{PluginInfo, PluginRegistry};
pub use worlds::{World, WorldVersion};
