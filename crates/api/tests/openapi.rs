//! The OpenAPI document passes the reference validator, PyPI's
//! `openapi-spec-validator` (pinned; installed once into a venv under
//! `/var/cache/berth/openapi-validator-venv`; without python3 this test
//! fails and says so).

use std::fs;
use std::process::Command;

#[path = "../../../tests/support/python_venv.rs"]
mod python_venv;
use python_venv::run;

#[test]
fn the_document_passes_openapi_spec_validator() {
    let python = python_venv::openapi_validator().unwrap_or_else(|e| panic!("{e}"));
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
