//! A policy written in Python (issue 21, "policies a non-Rust author can ship"):
//! `plugins/python-policy/app.py`, built into a component by
//! `plugins/python-policy/build.sh` (componentize-py; `scripts/test.sh` runs it),
//! answers as a variant of the real server beside the Rust default policy, which
//! shadows it: both decide every request and must agree.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

mod common;

use std::time::{Duration, Instant};

use common::server::start_server_with;
use serde_json::Value;

const CATALOG: &str = r#"
experiment = "python-policy"

[[variant]]
name = "python"
component = "python_policy.wasm"
weight = 1

[[variant]]
name = "rust-shadow"
component = "default_policy.wasm"
shadow = true
"#;

fn python_policy() -> std::path::PathBuf {
    let wasm = common::repo_root().join("target/python-policy/python_policy.wasm");
    assert!(wasm.exists(), "{} is missing: run plugins/python-policy/build.sh (scripts/test.sh does)", wasm.display());
    wasm
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_policy_answers_as_a_variant_and_agrees_with_the_rust_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(python_policy(), dir.path().join("python_policy.wasm")).expect("copy");
    std::fs::copy(common::policy_wasm("default-policy"), dir.path().join("default_policy.wasm")).expect("copy");
    std::fs::write(dir.path().join("policies.toml"), CATALOG).expect("catalog");
    let server = start_server_with(&[("FACEAUTH_POLICY_DIR", dir.path().to_str().expect("utf-8"))]).await;

    let (_, policies) = server.get("/api/admin/policies").await;
    let names: Vec<&str> =
        policies["set"]["variants"].as_array().expect("variants").iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(names, ["python", "rust-shadow"], "{policies}");

    assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await.0, 200);
    let same = server.authenticate("alice", "selfie_person_a.jpg").await;
    assert_eq!(same.1["Decision"], "APPROVED", "{same:?}");
    let other = server.authenticate("alice", "selfie_person_b.jpg").await;
    assert_eq!(other.1["DecisionReason"], "FACE_MISMATCH", "{other:?}");
    let two = server.authenticate("alice", "two_people.jpg").await;
    assert_eq!(two.1["DecisionReason"], "MULTIPLE_FACES_DETECTED", "{two:?}");

    // Four requests, each answered by the Python variant and shadowed by the Rust
    // one (shadows are recorded after the answer: wait a bounded time).
    let deadline = Instant::now() + Duration::from_secs(30);
    let decisions = loop {
        let (status, body) = server.get("/api/admin/decisions?limit=100").await;
        assert_eq!(status, 200, "{body}");
        let decisions: Vec<Value> = body["decisions"].as_array().expect("decisions").clone();
        if decisions.len() >= 8 || Instant::now() > deadline {
            break decisions;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let of = |variant: &str| -> Vec<(String, String)> {
        let mut list: Vec<(String, String)> = decisions
            .iter()
            .filter(|d| d["variant"] == variant)
            .map(|d| (d["request_id"].to_string(), d["reason"].to_string()))
            .collect();
        list.sort();
        list
    };
    let (python, rust) = (of("python"), of("rust-shadow"));
    assert_eq!(python.len(), 4, "{decisions:?}");
    assert_eq!(python, rust, "the Python policy and the Rust default decided differently");
}
