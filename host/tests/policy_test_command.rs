//! `faceauth policy test` (issue 21): the real binary runs a real policy component
//! over the evidence fixtures shipped beside it, and says which outcome differs.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

mod common;

use std::process::{Command, Output};

use common::server::server_binary;

fn policy_test(policy_crate: &str, args: &[&str]) -> Output {
    Command::new(server_binary())
        .args(["policy", "test", "--policy"])
        .arg(common::policy_wasm(policy_crate))
        .args(args)
        .output()
        .expect("runs")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn default_fixtures() -> String {
    common::repo_root().join("plugins/default-policy/fixtures").display().to_string()
}

#[test]
fn the_default_policy_passes_its_fixtures() {
    let output = policy_test("default-policy", &[&default_fixtures()]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("ok    the user's 24-frame selfie video is approved"), "{said}");
    assert!(said.contains("4 passed, 0 failed, of 4 fixtures"), "{said}");
}

/// A stricter threshold flips the genuine video: the author sees which fixture and why.
#[test]
fn a_parameter_that_changes_an_outcome_fails_with_what_came_instead() {
    let output = policy_test("default-policy", &["--param", "match-threshold=0.9", &default_fixtures()]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains("FAIL  the user's 24-frame selfie video is approved: expected decision APPROVED, reason AUTHENTIFICATION_SUCCESS, score >= 0.7, got REJECTED FACE_MISMATCH"),
        "{said}"
    );
    assert!(said.contains("3 passed, 1 failed, of 4 fixtures"), "{said}");
}

/// A policy that panics: the panic message reaches the author in the failure line.
#[test]
fn a_panicking_policy_shows_its_panic_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let video = std::fs::read_to_string(common::repo_root().join("plugins/default-policy/fixtures/video_genuine.json"))
        .expect("fixture")
        .replace("\"expect\"", "\"params\": {\"misbehave-on-authenticate\": 1}, \"expect\"");
    std::fs::write(dir.path().join("video.json"), video).expect("write");
    let output = policy_test("trap-policy", &[dir.path().to_str().expect("utf-8")]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("hostile policy: deliberate trap"), "{said}");
}

#[test]
fn bad_fixtures_are_refused_with_where_they_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("typo.json");
    std::fs::write(&file, r#"{"name": "x", "endpoint": "authenticate", "evidence": {}, "expect": {"reason": "X"}}"#)
        .expect("write");
    let output = policy_test("default-policy", &[file.to_str().expect("utf-8")]);
    let said = text(&output);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("typo.json, fixture 1"), "{said}");
    let empty = tempfile::tempdir().expect("tempdir");
    let output = policy_test("default-policy", &[empty.path().to_str().expect("utf-8")]);
    assert!(!output.status.success() && text(&output).contains("no fixture found"), "{}", text(&output));
}
