//! The guest side of berth's `scanner-check` world (`berth:plugin@0.1.0`):
//! generated bindings, re-exported under short names, plus helpers every check
//! needs — walking the image tree and reading files in bounded chunks.
//!
//! A check implements [`Guest`] and exports it with
//! `berth_plugin_sdk::export_check!(MyCheck);`.

wit_bindgen::generate!({
    path: "../../proto/wit/plugin/0.1.0",
    world: "scanner-check",
    pub_export_macro: true,
    export_macro_name: "export_check",
    default_bindings_module: "berth_plugin_sdk",
});

pub use berth::plugin::image_fs;
pub use berth::plugin::types::{DirEntry, FileKind, FileStat, FsError, Severity};
pub use exports::berth::plugin::check::{CheckInfo, Finding, Guest, ImageInfo, RuleInfo};

/// The most a single `read-file` call asks for; the host may cap it lower.
const READ_CHUNK: u32 = 256 * 1024;

/// Visits every entry below `root` (depth first, entries in name order),
/// calling `visit` with the entry's absolute path and metadata. Symbolic links
/// are reported, not followed, so the walk always terminates. A directory
/// that cannot be listed is skipped after `on_error` hears of it.
pub fn walk(root: &str, visit: &mut dyn FnMut(&str, &DirEntry), on_error: &mut dyn FnMut(&str, &FsError)) {
    let mut pending = vec![root.to_string()];
    while let Some(dir) = pending.pop() {
        let entries = match image_fs::list_dir(&dir) {
            Ok(entries) => entries,
            Err(err) => {
                on_error(&dir, &err);
                continue;
            }
        };
        let mut subdirs = Vec::new();
        for entry in &entries {
            let path = join(&dir, &entry.name);
            visit(&path, entry);
            if entry.kind == FileKind::Dir {
                subdirs.push(path);
            }
        }
        // Reverse so that popping yields name order.
        pending.extend(subdirs.into_iter().rev());
    }
}

/// `dir` + `/` + `name`, without doubling the slash at the root.
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Up to `max` bytes from the start of the file at `path`.
pub fn read_prefix(path: &str, max: u64) -> Result<Vec<u8>, FsError> {
    read_more(path, Vec::new(), max)
}

/// `data` (the file's first bytes, as read before) followed by what comes
/// after it in the file at `path`, up to `max` bytes in all. A short read
/// is the end of the file: no call is made to find nothing more.
pub fn read_more(path: &str, mut data: Vec<u8>, max: u64) -> Result<Vec<u8>, FsError> {
    while (data.len() as u64) < max {
        let want = (max - data.len() as u64).min(u64::from(READ_CHUNK)) as u32;
        let chunk = image_fs::read_file(path, data.len() as u64, want)?;
        let short = chunk.len() < want as usize;
        data.extend_from_slice(&chunk);
        if short {
            break;
        }
    }
    Ok(data)
}

/// A plain-words description of a filesystem error (the generated `Display`
/// prints the variant's debug form).
pub fn describe_fs_error(err: &FsError) -> String {
    match err {
        FsError::NotFound => "not found".to_string(),
        FsError::NotADirectory => "not a directory".to_string(),
        FsError::NotAFile => "not a regular file".to_string(),
        FsError::NotASymlink => "not a symbolic link".to_string(),
        FsError::TooManyLinks => "too many symbolic links".to_string(),
        FsError::InvalidPath(why) => format!("invalid path: {why}"),
        FsError::Io(why) => format!("i/o error: {why}"),
    }
}

impl RuleInfo {
    pub fn new(id: &str, severity: Severity, description: &str) -> Self {
        RuleInfo {
            id: id.to_string(),
            severity,
            description: description.to_string(),
        }
    }
}

impl Finding {
    pub fn new(rule: &str, severity: Severity, message: String, path: Option<&str>) -> Self {
        Finding {
            rule: rule.to_string(),
            severity,
            message,
            path: path.map(str::to_string),
        }
    }
}
