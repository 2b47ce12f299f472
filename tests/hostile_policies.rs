//! Hostile policy components (an infinite loop, a trap, a memory bomb) are
//! contained: the request is answered REJECTED / POLICY_ERROR and the service
//! keeps answering. Driven in-process through the router.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use faceauth::policy::{Param, PolicyError, PolicyLimits, PolicyRuntime};
use faceauth::store::UserStore;
use faceauth::usecase::{FaceAuth, FaceEngine};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn multipart(field: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "faceauth-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"f.jpg\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn call(app: &Arc<FaceAuth>, uri: &str, field: &str, fixture: &str) -> (u16, Value) {
    let (content_type, body) = multipart(field, &common::fixture(fixture));
    let request = Request::post(uri).header("content-type", content_type).body(Body::from(body)).expect("request");
    let router = faceauth::http::router(app.clone(), 10 << 20, faceauth::http::AdminAccess::LoopbackOnly);
    // Not a speed check: only a guard so a broken sandbox fails instead of hanging.
    let response = tokio::time::timeout(Duration::from_secs(120), router.oneshot(request))
        .await
        .expect("the sandbox must stop a runaway policy")
        .expect("infallible");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON"))
}

async fn contained(policy_crate: &str) {
    let engine =
        FaceEngine::init(&common::engine_config(policy_crate)).expect("the hostile policy passes its self-check");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = UserStore::connect(&url).await.expect("store");
    let app = Arc::new(FaceAuth::new(engine, store));
    let enroll = json!({"trained": "failed", "EnrollStatus": "REJECTED", "DecisionReason": "POLICY_ERROR"});
    for _ in 0..2 {
        // Twice: the failure of one call leaves nothing broken behind.
        assert_eq!(
            call(&app, "/api/enroll?username=x", "cin_file", "id_card_person_a.jpg").await,
            (503, enroll.clone())
        );
    }
    assert_eq!(app.store.count().await.expect("count"), 0, "nothing enrolled on a policy failure");
    // Each failure is in the audit log under the variant, as the client saw it.
    let recorded = app.audit.decisions(&Default::default()).await.expect("audit log");
    let failures: Vec<_> = recorded.iter().filter(|r| r.reason.starts_with("POLICY_ERROR")).collect();
    assert_eq!(failures.len(), 2, "{recorded:?}");
    assert!(failures.iter().all(|r| !r.approved && r.variant == policy_crate.trim_end_matches("-policy")));
    // Without a face the policy behaves, so the service still answers normally.
    assert_eq!(
        call(&app, "/api/enroll?username=x", "cin_file", "id_card_back_no_face.jpg").await,
        (200, json!({"trained": "failed", "EnrollStatus": "REJECTED", "DecisionReason": "NO_FACE_DETECTED"}))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loop_is_stopped_by_the_fuel_budget() {
    contained("spin-policy").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn trap_fails_closed() {
    contained("trap-policy").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_bomb_is_stopped_by_the_memory_limit() {
    contained("memory-bomb-policy").await;
}

/// The same components, told to misbehave on selfies too, never take traffic: the
/// load-time self-check runs them on recorded real evidence and refuses them.
#[test]
fn policies_that_misbehave_on_real_evidence_are_refused_at_load() {
    let runtime = PolicyRuntime::new(PolicyLimits::default()).expect("runtime");
    for (policy_crate, symptom) in
        [("spin-policy", "fuel"), ("trap-policy", "unreachable"), ("memory-bomb-policy", "memory")]
    {
        let compiled = runtime.compile_file(&common::policy_wasm(policy_crate)).expect("compiles");
        // Well-behaved on selfies: it loads.
        compiled.variant(&[]).expect("passes its self-check");
        let err = compiled
            .variant(&[Param { name: "misbehave-on-authenticate".into(), value: 1.0 }])
            .expect_err("refused at load");
        let message = err.to_string();
        assert!(matches!(err, PolicyError::SelfCheck { .. }), "{policy_crate}: {message}");
        assert!(message.contains(symptom), "{policy_crate}: {message}");
    }
}
