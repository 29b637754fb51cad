//! The OpenAPI document passes the reference validator, PyPI's
//! `openapi-spec-validator` (pinned; installed once into a venv under
//! `/var/cache/berth/openapi-validator-venv`; without python3 this test
//! fails and says so).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const VENV: &str = "/var/cache/berth/openapi-validator-venv";
const REQUIREMENT: &str = "openapi-spec-validator==0.9.0";

fn run(command: &mut Command, what: &str) -> Result<String, String> {
    let output = command.output().map_err(|err| format!("{what}: cannot start: {err}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(format!("{what} failed ({}):\n{text}", output.status))
    }
}

/// The validator's python, installing it when missing (into a staging dir
/// renamed into place, so an interrupted install is never used).
fn validator() -> Result<PathBuf, String> {
    let venv = Path::new(VENV);
    let marker = venv.join("berth-requirements.txt");
    if fs::read_to_string(&marker).is_ok_and(|have| have == REQUIREMENT) {
        return Ok(venv.join("bin/python"));
    }
    let parent = venv.parent().expect("venv has a parent");
    fs::create_dir_all(parent).map_err(|err| format!("creating {}: {err}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".openapi-validator-")
        .tempdir_in(parent)
        .map_err(|err| format!("creating a staging dir in {}: {err}", parent.display()))?;
    let staged = staging.path().join("venv");
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&staged),
        "python3 -m venv (Debian: apt-get install python3 python3-venv)",
    )?;
    run(
        Command::new(staged.join("bin/python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            REQUIREMENT,
        ]),
        "pip install openapi-spec-validator",
    )?;
    fs::write(staged.join("berth-requirements.txt"), REQUIREMENT)
        .map_err(|err| format!("writing the marker: {err}"))?;
    if venv.exists() {
        fs::remove_dir_all(venv).map_err(|err| format!("removing the outdated {}: {err}", venv.display()))?;
    }
    if let Err(err) = fs::rename(&staged, venv) {
        if !fs::read_to_string(&marker).is_ok_and(|have| have == REQUIREMENT) {
            return Err(format!("moving the venv to {}: {err}", venv.display()));
        }
    }
    Ok(venv.join("bin/python"))
}

#[test]
fn the_document_passes_openapi_spec_validator() {
    let python = validator().unwrap_or_else(|e| panic!("{e}"));
    let document = berth_api::openapi_document();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("openapi.json");
    fs::write(&path, serde_json::to_vec_pretty(&document).expect("json")).expect("write");
    let said = run(
        Command::new(python).args(["-m", "openapi_spec_validator"]).arg(&path),
        "openapi-spec-validator",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(said.contains("OK"), "{said}");
    // Every route of the table is in it, once per method.
    let operations: usize = document["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().map_or(0, |ops| ops.len()))
        .sum();
    assert!(operations >= 100, "{operations} operations");
}
