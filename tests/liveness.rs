//! The host runs the liveness models only for a policy that requires liveness.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

mod common;

use faceauth::usecase::FaceEngine;

#[tokio::test(flavor = "multi_thread")]
async fn liveness_is_measured_only_for_policies_that_require_it() {
    for (policy, measured) in [("default-policy", false), ("liveness-policy", true)] {
        let engine = FaceEngine::init(&common::engine_config(policy)).expect("engine");
        assert_eq!(engine.policy().info().requires_liveness, measured);
        let (_, faces) = engine.analyze_upload(common::fixture("selfie_person_a.jpg")).await.expect("analysis");
        let liveness = faces.first().expect("a face").liveness;
        assert_eq!(liveness.is_some(), measured, "{policy}: {liveness:?}");
        if let Some(l) = liveness {
            assert!((0.0..=1.0).contains(&l), "{l}");
        }
    }
}
