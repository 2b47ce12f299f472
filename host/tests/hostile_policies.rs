//! Hostile policy components (an infinite loop, a trap, a memory bomb) are
//! contained: the request is answered REJECTED / POLICY_ERROR and the service
//! keeps answering. Driven in-process through the router (host/tests/common/in_process.rs).
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::answers::{auth_rejected, enroll_rejected};
use common::in_process::{LOOPBACK_PEER, answer, empty, router, upload};
use faceauth_core::policy::{Param, PolicyError, PolicyLimits, PolicyRuntime};
use faceauth_core::usecase::FaceAuth;
use faceauth_http::AdminAccess;
use serde_json::Value;

async fn call(app: &Arc<FaceAuth>, uri: &str, field: &str, fixture: &str) -> (u16, Value) {
    let request = upload(uri, field, &common::fixture(fixture));
    let router = router(app, AdminAccess::LoopbackOnly, LOOPBACK_PEER);
    // Not a speed check: only a guard so a broken sandbox fails instead of hanging.
    tokio::time::timeout(Duration::from_secs(120), answer(router, request))
        .await
        .expect("the sandbox must stop a runaway policy")
}

/// `said`: what the policy writes before it fails, which must reach its author in
/// the recorded error (a Rust policy's panic message).
async fn contained(policy_crate: &str, said: Option<&str>) {
    let (app, _db) = common::in_process::app(policy_crate).await;
    for _ in 0..2 {
        // Twice: the failure of one call leaves nothing broken behind.
        assert_eq!(
            call(&app, "/api/enroll?username=x", "cin_file", "id_card_person_a.jpg").await,
            (503, enroll_rejected("POLICY_ERROR"))
        );
    }
    // Nothing enrolled on a policy failure (`x` is the only name tried).
    assert_eq!(
        call(&app, "/api/authentificate?username=x", "auth_video", "selfie_person_a.jpg").await,
        (404, auth_rejected("UNKNOWN_USER"))
    );
    // Each failure is in the audit log under the variant, as the client saw it (read
    // through the admin API, as a loopback client).
    let decisions = empty("GET", "/api/admin/decisions?limit=100");
    let (status, log) = answer(router(&app, AdminAccess::LoopbackOnly, LOOPBACK_PEER), decisions).await;
    assert_eq!(status, 200, "{log}");
    let recorded = log["decisions"].as_array().expect("decisions");
    let failures: Vec<_> =
        recorded.iter().filter(|r| r["reason"].as_str().is_some_and(|r| r.starts_with("POLICY_ERROR"))).collect();
    assert_eq!(failures.len(), 2, "{recorded:?}");
    let variant = policy_crate.trim_end_matches("-policy");
    assert!(failures.iter().all(|r| r["approved"] == false && r["variant"] == variant), "{failures:?}");
    for failure in &failures {
        let error = failure["error"].as_str().unwrap_or_default();
        match said {
            // The panic message and where it was raised, as the author's code says it.
            Some(said) => assert!(error.contains(said) && error.contains("src/lib.rs"), "{failure}"),
            None => assert!(!error.contains("the policy wrote"), "{failure}"),
        }
    }
    // Without a face the policy behaves, so the service still answers normally.
    assert_eq!(
        call(&app, "/api/enroll?username=x", "cin_file", "id_card_back_no_face.jpg").await,
        (200, enroll_rejected("NO_FACE_DETECTED"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loop_is_stopped_by_the_fuel_budget() {
    contained("spin-policy", None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn trap_fails_closed() {
    contained("trap-policy", Some("hostile policy: deliberate trap")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_bomb_is_stopped_by_the_memory_limit() {
    contained("memory-bomb-policy", None).await;
}

/// The same components, told to misbehave on selfies too, never take traffic: the
/// load-time self-check runs them on recorded real evidence and refuses them, and
/// the error keeps what stopped each (the trap kind, or the memory limiter's error).
#[test]
fn policies_that_misbehave_on_real_evidence_are_refused_at_load() {
    let runtime = PolicyRuntime::new(PolicyLimits::default()).expect("runtime");
    for (policy_crate, trap) in [
        ("spin-policy", Some(wasmtime::Trap::OutOfFuel)),
        ("trap-policy", Some(wasmtime::Trap::UnreachableCodeReached)),
        ("memory-bomb-policy", None),
    ] {
        let compiled = runtime.compile_file(&common::policy_wasm(policy_crate)).expect("compiles");
        // Well-behaved on selfies: it loads.
        compiled.variant(&[]).expect("passes its self-check");
        let err = compiled
            .variant(&[Param { name: "misbehave-on-authenticate".into(), value: 1.0 }])
            .expect_err("refused at load");
        let chain = faceauth_core::error_chain(&err);
        let PolicyError::SelfCheck { source: Some(call), .. } = &err else {
            panic!("{policy_crate}: a self-check failure with its call expected: {chain}")
        };
        match policy_crate {
            // Issue 21: the panic message reaches the author at load too.
            "trap-policy" => assert!(
                matches!(&**call, PolicyError::Failed { output, .. } if output.contains("hostile policy: deliberate trap")),
                "{policy_crate}: {chain}"
            ),
            _ => assert!(matches!(**call, PolicyError::Call(_)), "{policy_crate}: {chain}"),
        }
        assert_eq!(err.trap(), trap, "{policy_crate}: {chain}");
        if trap.is_none() {
            // Not a trap code: the store's memory limiter refused the growth.
            assert!(chain.contains("memory"), "{policy_crate}: {chain}");
        }
    }
}
