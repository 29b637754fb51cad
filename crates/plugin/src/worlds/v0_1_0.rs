//! Bindings for `berth:plugin@0.1.0` (`proto/wit/plugin/0.1.0/`): the host
//! side of the `image-fs` import, and conversions between the generated
//! types and the crate's version-independent ones.

use wasmtime::component::{HasSelf, Linker};

use crate::check::{CheckInfo, Finding, ImageInfo, RuleInfo, Severity};
use crate::fs::{FileKind, FileStat, FsError};
use crate::host::HostState;

wasmtime::component::bindgen!({
    path: "../../proto/wit/plugin/0.1.0",
    world: "scanner-check",
});

use berth::plugin::types as wit;
use exports::berth::plugin::check as wit_check;

pub(crate) use ScannerCheckPre as Pre;

/// The WIT package version these bindings are for.
pub const VERSION: &str = "0.1.0";

/// Adds this version's `scanner-check` imports to `linker`.
pub(crate) fn add_scanner_check(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    ScannerCheck::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}

impl wit::Host for HostState {}

impl berth::plugin::image_fs::Host for HostState {
    fn list_dir(&mut self, path: String) -> Result<Vec<wit::DirEntry>, wit::FsError> {
        let entries = self.image().list_dir(&path).map_err(fs_error)?;
        Ok(entries
            .into_iter()
            .map(|entry| wit::DirEntry {
                name: entry.name,
                kind: file_kind(entry.stat.kind),
                size: entry.stat.size,
                mode: entry.stat.mode,
                uid: entry.stat.uid,
                gid: entry.stat.gid,
            })
            .collect())
    }

    fn read_file(&mut self, path: String, offset: u64, max_len: u32) -> Result<Vec<u8>, wit::FsError> {
        let max_len = max_len.min(self.max_read_len());
        self.image().read(&path, offset, max_len).map_err(fs_error)
    }

    fn stat(&mut self, path: String) -> Result<wit::FileStat, wit::FsError> {
        self.image().stat(&path).map(file_stat).map_err(fs_error)
    }

    fn read_link(&mut self, path: String) -> Result<String, wit::FsError> {
        self.image().read_link(&path).map_err(fs_error)
    }
}

fn file_kind(kind: FileKind) -> wit::FileKind {
    match kind {
        FileKind::File => wit::FileKind::File,
        FileKind::Dir => wit::FileKind::Dir,
        FileKind::Symlink => wit::FileKind::Symlink,
        FileKind::Other => wit::FileKind::Other,
    }
}

fn file_stat(stat: FileStat) -> wit::FileStat {
    wit::FileStat {
        kind: file_kind(stat.kind),
        size: stat.size,
        mode: stat.mode,
        uid: stat.uid,
        gid: stat.gid,
    }
}

fn fs_error(err: FsError) -> wit::FsError {
    match err {
        FsError::NotFound => wit::FsError::NotFound,
        FsError::NotADirectory => wit::FsError::NotADirectory,
        FsError::NotAFile => wit::FsError::NotAFile,
        FsError::NotASymlink => wit::FsError::NotASymlink,
        FsError::TooManyLinks => wit::FsError::TooManyLinks,
        FsError::InvalidPath(why) => wit::FsError::InvalidPath(why),
        FsError::Io(why) => wit::FsError::Io(why),
    }
}

fn severity(severity: wit::Severity) -> Severity {
    match severity {
        wit::Severity::Info => Severity::Info,
        wit::Severity::Low => Severity::Low,
        wit::Severity::Medium => Severity::Medium,
        wit::Severity::High => Severity::High,
        wit::Severity::Critical => Severity::Critical,
    }
}

pub(crate) fn check_info(info: wit_check::CheckInfo) -> CheckInfo {
    CheckInfo {
        name: info.name,
        version: info.version,
        description: info.description,
        rules: info
            .rules
            .into_iter()
            .map(|rule| RuleInfo {
                id: rule.id,
                severity: severity(rule.severity),
                description: rule.description,
            })
            .collect(),
    }
}

pub(crate) fn image_info(image: &ImageInfo) -> wit_check::ImageInfo {
    wit_check::ImageInfo {
        user: image.user.clone(),
        exposed_ports: image.exposed_ports.clone(),
        env: image.env.clone(),
        entrypoint: image.entrypoint.clone(),
        cmd: image.cmd.clone(),
        has_healthcheck: image.has_healthcheck,
        labels: image.labels.clone(),
        working_dir: image.working_dir.clone(),
    }
}

pub(crate) fn finding(finding: wit_check::Finding) -> Finding {
    Finding {
        rule: finding.rule,
        severity: severity(finding.severity),
        message: finding.message,
        path: finding.path,
    }
}
