//! A python venv with pinned PyPI packages, for tests that check berth's
//! output with a reference tool (the OpenAPI validator, the SBOM and SARIF
//! validators, JSON Schema). Shared by the test crates that include it with
//! `#[path = ".../tests/support/python_venv.rs"] mod python_venv;`.
//!
//! One behaviour: a venv at `dir` is used when its marker names exactly
//! `requirements`; otherwise it is built in a staging directory beside it
//! and renamed into place, so an interrupted install is never used and two
//! test binaries racing end with one good venv. Without python3 the error
//! says what to install.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The OpenAPI validator's venv, shared by the test of the document and the
/// end-to-end test of the answers (one pin, so they never rebuild it in turns).
const OPENAPI_VENV: &str = "/var/cache/berth/openapi-validator-venv";
/// Pinned so that CI validates against the same rules every run; it brings
/// `jsonschema` too.
const OPENAPI_VALIDATOR: &str = "openapi-spec-validator==0.9.0";

/// The python of the venv with `openapi-spec-validator` (and `jsonschema`).
pub fn openapi_validator() -> Result<PathBuf, String> {
    python(OPENAPI_VENV, &[OPENAPI_VALIDATOR])
}

/// The venv's python, built first when missing or outdated.
pub fn python(dir: &str, requirements: &[&str]) -> Result<PathBuf, String> {
    let venv = Path::new(dir);
    let marker = venv.join("berth-requirements.txt");
    let wanted = requirements.join("\n");
    if fs::read_to_string(&marker).is_ok_and(|have| have == wanted) {
        return Ok(venv.join("bin/python"));
    }
    let python = Command::new("python3").arg("--version").output();
    if !python.as_ref().is_ok_and(|output| output.status.success()) {
        return Err("python3 is missing: install it (Debian: apt-get install python3 python3-venv)".into());
    }
    let parent = venv.parent().ok_or_else(|| format!("{dir} has no parent directory"))?;
    fs::create_dir_all(parent).map_err(|err| format!("creating {}: {err}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".venv-staging-")
        .tempdir_in(parent)
        .map_err(|err| format!("creating a staging dir in {}: {err}", parent.display()))?;
    let staged = staging.path().join("venv");
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&staged),
        "python3 -m venv (Debian: apt-get install python3-venv)",
    )?;
    run(
        Command::new(staged.join("bin/python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(requirements),
        &format!("pip install {wanted} (pip is part of python3-venv)"),
    )?;
    fs::write(staged.join("berth-requirements.txt"), &wanted).map_err(|err| format!("writing the marker: {err}"))?;
    // Scripts in a venv name its path: use `python -m` only, which works after the rename.
    if venv.exists() {
        fs::remove_dir_all(venv).map_err(|err| format!("removing the outdated {}: {err}", venv.display()))?;
    }
    if let Err(err) = fs::rename(&staged, venv) {
        // Another test binary may have finished the same venv first.
        if !fs::read_to_string(&marker).is_ok_and(|have| have == wanted) {
            return Err(format!("moving the venv to {}: {err}", venv.display()));
        }
    }
    Ok(venv.join("bin/python"))
}

/// Runs `command`; its output, or an error naming `what` with the output.
pub fn run(command: &mut Command, what: &str) -> Result<String, String> {
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
