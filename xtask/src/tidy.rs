//! Tidy tests: the shape the codebase keeps, checked on every `cargo xtask
//! test` (they are unit tests of this crate, so `cargo test --workspace`
//! runs them), as rust-analyzer's tidy tests do.
//!
//! - Crate boundaries from DESIGN.md's "must not" column: nothing depends
//!   on the `berth` binary crate; only `api` (and the binary that assembles
//!   it) serves HTTP, so only they depend on `axum`; `model` does no IO;
//!   `scheduler`, once it exists, does no IO either.
//! - Every Rust source file of berth starts with a `//!` header saying what
//!   it is for.
//! - A file longer than 1,000 lines is named in ARCHITECTURE.md's "Long
//!   files" section with the reason it stays long.
//! - Cluster state has one writer: only `crates/state` defines `cluster/*`
//!   tables and calls `Store::write_cluster` (tests that tamper with a
//!   store on purpose aside); every other crate proposes commands.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    const LONG_FILE: usize = 1000;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace holds xtask")
            .to_path_buf()
    }

    /// Every `.rs` file under `dir`, recursively.
    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n == "target" || n == "fixtures") {
                    continue;
                }
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// berth's own sources: the crates, xtask and the shipped plugins (not
    /// the patched third-party crates).
    fn berth_sources() -> Vec<PathBuf> {
        let root = root();
        let mut files = Vec::new();
        for dir in ["crates", "xtask", "plugins"] {
            rust_files(&root.join(dir), &mut files);
        }
        files.sort();
        files
    }

    fn relative(path: &Path) -> String {
        path.strip_prefix(root()).unwrap_or(path).display().to_string()
    }

    /// The `[dependencies]` names of a crate's manifest (not dev or build).
    fn dependencies(manifest: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(manifest).unwrap_or_default();
        let mut in_deps = false;
        let mut names = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                in_deps = line == "[dependencies]";
                continue;
            }
            if in_deps {
                if let Some((name, _)) = line.split_once('=') {
                    let name = name.trim().trim_end_matches(".workspace").trim();
                    if !name.is_empty() && !name.starts_with('#') {
                        names.push(name.to_string());
                    }
                }
            }
        }
        names
    }

    fn crates() -> Vec<(String, PathBuf)> {
        let mut crates: Vec<(String, PathBuf)> = std::fs::read_dir(root().join("crates"))
            .expect("crates/")
            .flatten()
            .filter(|e| e.path().join("Cargo.toml").is_file())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        crates.sort();
        crates
    }

    #[test]
    fn crates_keep_their_boundaries() {
        let mut wrong = Vec::new();
        for (name, dir) in crates() {
            let deps = dependencies(&dir.join("Cargo.toml"));
            if deps.iter().any(|d| d == "berth") {
                wrong.push(format!("{name} depends on the berth binary crate"));
            }
            if deps.iter().any(|d| d == "axum") && !["api", "berth"].contains(&name.as_str()) {
                wrong.push(format!("{name} depends on axum: only api serves HTTP"));
            }
            if name == "state" {
                // `apply` is deterministic: no clock, randomness, files or
                // environment (the proposer computes those).
                for nondeterministic in ["chrono", "rand", "getrandom", "uuid", "tokio"] {
                    if deps.iter().any(|d| d == nondeterministic) {
                        wrong.push(format!(
                            "state depends on {nondeterministic}: its commands must be deterministic"
                        ));
                    }
                }
                let mut files = Vec::new();
                rust_files(&dir.join("src"), &mut files);
                for file in files {
                    let text = std::fs::read_to_string(&file).unwrap_or_default();
                    for source in [
                        "std::fs",
                        "std::env",
                        "SystemTime",
                        "Instant",
                        "std::net",
                        "std::process",
                    ] {
                        if text.contains(source) {
                            wrong.push(format!(
                                "{} uses {source}: cluster commands must be deterministic",
                                relative(&file)
                            ));
                        }
                    }
                }
            }
            if name == "client" {
                // The typed client says the wire contract in types, and the
                // contract is `berth-model`'s: it depends on no other crate
                // of berth (no service, no store, no records).
                for dep in deps.iter().filter(|d| d.starts_with("berth-") && *d != "berth-model") {
                    wrong.push(format!(
                        "client depends on {dep}: its types are berth-model's, it holds no logic of a service"
                    ));
                }
            }
            if ["model", "scheduler"].contains(&name.as_str()) {
                for io in ["tokio", "redb", "hyper", "ureq", "axum", "rustix", "nix", "libc"] {
                    if deps.iter().any(|d| d == io) {
                        wrong.push(format!("{name} depends on {io}: it does no IO"));
                    }
                }
                let mut files = Vec::new();
                rust_files(&dir.join("src"), &mut files);
                for file in files {
                    let text = std::fs::read_to_string(&file).unwrap_or_default();
                    for io in ["std::fs", "std::net", "std::process", "File::open"] {
                        if text.contains(io) {
                            wrong.push(format!("{} uses {io}: {name} does no IO", relative(&file)));
                        }
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "crate boundaries (DESIGN.md):\n{}", wrong.join("\n"));
    }

    /// Whether `code` indexes a value by a field name: `v["name"]`,
    /// `v[0]["name"]` (not an array literal such as `vec!["A", "B"]`).
    fn indexes_by_field(code: &str) -> bool {
        code.match_indices("[\"").any(|(i, _)| {
            let before = code[..i].chars().next_back();
            let indexed = before.is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | ')' | ']'));
            let rest = &code[i + 2..];
            let field = rest.split('"').next().unwrap_or_default();
            indexed
                && !field.is_empty()
                && field.chars().all(|c| c.is_alphanumeric() || c == '_')
                && rest[field.len()..].starts_with("\"]")
        })
    }

    #[test]
    fn field_indexing_is_told_from_array_literals() {
        assert!(indexes_by_field(r#"let n = v["name"].as_str();"#));
        assert!(indexes_by_field(r#"let m = e[0]["message"];"#));
        assert!(indexes_by_field(r#"f(x)["id"]"#));
        assert!(!indexes_by_field(r#"vec!["NAME".into(), "TEAMS".into()]"#));
        assert!(!indexes_by_field(r#"run(&["run"])"#));
        assert!(!indexes_by_field(r#"let h = ["CONTAINER ID", "NAMES"];"#));
    }

    /// The CLI speaks to its daemon through `berth-client` only: no API
    /// path is spelled in it, and no JSON is read by field name.
    #[test]
    fn the_cli_uses_the_typed_client() {
        let mut files = Vec::new();
        rust_files(&root().join("crates/berth/src/cli"), &mut files);
        let mut wrong = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                if code.contains("\"/v1/") || indexes_by_field(code) {
                    wrong.push(format!("{}:{}: {}", relative(&file), n + 1, line.trim()));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "the CLI builds API paths or reads JSON by field; use berth_client's typed calls:\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn every_source_file_says_what_it_is_for() {
        let missing: Vec<String> = berth_sources()
            .into_iter()
            .filter(|f| {
                let text = std::fs::read_to_string(f).unwrap_or_default();
                !text.trim_start().starts_with("//!")
            })
            .map(|f| relative(&f))
            .collect();
        assert!(
            missing.is_empty(),
            "files without a `//!` header saying what they are for:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn only_the_state_crate_writes_cluster_state() {
        let mut wrong = Vec::new();
        for file in berth_sources() {
            let name = relative(&file);
            let is_test = name.split('/').any(|part| part == "tests");
            if name.starts_with("crates/state/") || name.starts_with("crates/store/") || name.starts_with("xtask/") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if text.contains("Table(\"cluster/") {
                wrong.push(format!(
                    "{name} defines a cluster table: cluster tables live in crates/state/src/tables.rs"
                ));
            }
            if !is_test && text.contains("write_cluster(") {
                wrong.push(format!(
                    "{name} writes cluster state directly: propose a ClusterCommand instead"
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "cluster state has one writer (ARCHITECTURE.md):\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn long_files_are_explained_in_architecture_md() {
        let architecture = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
        let section = architecture
            .split_once("## Long files")
            .map(|(_, rest)| rest.split("\n## ").next().unwrap_or(rest))
            .unwrap_or_default();
        let mut unexplained = Vec::new();
        for file in berth_sources() {
            let lines = std::fs::read_to_string(&file).unwrap_or_default().lines().count();
            let name = relative(&file);
            if lines > LONG_FILE && !section.contains(&format!("`{name}`")) {
                unexplained.push(format!("{name} ({lines} lines)"));
            }
        }
        assert!(
            unexplained.is_empty(),
            "files over {LONG_FILE} lines not named with a reason in ARCHITECTURE.md's \"Long files\":\n{}",
            unexplained.join("\n")
        );
    }
}
