//! A variant that keeps failing on live traffic retires itself (issue 21): with
//! `retire_after_failures = 3`, the hostile trap policy answers its users
//! POLICY_ERROR three times, is then given weight 0 in `policies.toml` with the
//! reason (its panic message), and the control answers everyone. In-process through
//! the router, on the real engine, components and catalog.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::in_process::{LOOPBACK_PEER, answer, router, sqlite_url, upload};
use faceauth_core::policy::router::PolicyRouter;
use faceauth_core::store::UserStore;
use faceauth_core::usecase::{FaceAuth, FaceEngine};
use faceauth_http::AdminAccess;

async fn enroll(app: &Arc<FaceAuth>, username: &str) -> String {
    let request =
        upload(&format!("/api/enroll?username={username}"), "cin_file", &common::fixture("id_card_person_a.jpg"));
    let (_, body) = answer(router(app, AdminAccess::LoopbackOnly, LOOPBACK_PEER), request).await;
    body["DecisionReason"].as_str().unwrap_or_default().to_string()
}

/// The service on a policy directory holding the default and trap components and
/// `catalog`: the app, its router, the directory and the guard of it all.
async fn app_with(catalog: &str) -> (Arc<FaceAuth>, Arc<PolicyRouter>, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    for component in ["default-policy", "trap-policy"] {
        let file = format!("{}.wasm", component.replace('-', "_"));
        std::fs::copy(common::policy_wasm(component), policies.join(file)).expect("copy");
    }
    std::fs::write(policies.join("policies.toml"), catalog).expect("catalog");
    let mut config = common::engine_config("default-policy");
    config.policy_dir = Some(policies.clone());
    let engine = FaceEngine::init(&config).expect("engine");
    let policy_router = engine.router().clone();
    let store = UserStore::connect(&sqlite_url(dir.path())).await.expect("store");
    (Arc::new(FaceAuth::new(engine, store)), policy_router, policies, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_variant_that_keeps_failing_retires_itself_and_the_control_answers() {
    let (app, policy_router, policies, _dir) = app_with(
        "experiment = \"e1\"\n\n[[variant]]\nname = \"control\"\ncomponent = \"default_policy.wasm\"\nweight = 50\n\n\
         [[variant]]\nname = \"trap\"\ncomponent = \"trap_policy.wasm\"\nweight = 50\nretire_after_failures = 3\n",
    )
    .await;

    // Users the trap variant answers fail (it panics on a card with a face), until
    // the third failure in a row retires it.
    let set = policy_router.current();
    let trapped: Vec<String> = (0..200)
        .map(|i| format!("user{i}"))
        .filter(|u| set.route(u).expect("a route").answer.name == "trap")
        .take(4)
        .collect();
    assert_eq!(trapped.len(), 4, "half the users meet the trap variant");
    for user in &trapped[..3] {
        assert_eq!(enroll(&app, user).await, "POLICY_ERROR");
    }
    // The retirement runs off the request's path: the set swaps within moments.
    let mut retired = false;
    for _ in 0..100 {
        if policy_router.current().variant("trap").is_some_and(|v| v.weight == 0) {
            retired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(retired, "the trap variant was not retired");
    let catalog = std::fs::read_to_string(policies.join("policies.toml")).expect("catalog");
    assert!(catalog.contains("retired = ") && catalog.contains("3 failed calls in a row"), "{catalog}");
    assert!(catalog.contains("hostile policy: deliberate trap"), "the reason names the panic: {catalog}");
    assert!(!catalog.contains("weight = 50\nretire_after_failures"), "its weight is gone: {catalog}");
    // The admin API says so.
    let (status, listed) = answer(
        router(&app, AdminAccess::LoopbackOnly, LOOPBACK_PEER),
        common::in_process::empty("GET", "/api/admin/policies"),
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    let trap = listed["set"]["variants"].as_array().expect("variants").iter().find(|v| v["name"] == "trap").cloned();
    let trap = trap.expect("the trap variant is listed");
    assert!(trap["retired"].as_str().is_some_and(|r| r.contains("deliberate trap")) && trap["weight"] == 0, "{trap}");
    // The fourth user, the trap's too, is answered by the control.
    assert_eq!(enroll(&app, &trapped[3]).await, "ENROLLED_AS_USER");
    let set = policy_router.current();
    assert!(trapped.iter().all(|u| set.route(u).expect("a route").answer.name == "control"));
}

/// A success between failures starts the count again; the last answering variant is
/// never retired.
#[tokio::test(flavor = "multi_thread")]
async fn only_failures_in_a_row_count_and_the_last_answering_variant_stays() {
    let (app, policy_router, policies, _dir) = app_with(
        "[[variant]]\nname = \"trap\"\ncomponent = \"trap_policy.wasm\"\nweight = 1\nretire_after_failures = 2\n",
    )
    .await;
    let no_face = |user: &str| {
        upload(&format!("/api/enroll?username={user}"), "cin_file", &common::fixture("id_card_back_no_face.jpg"))
    };
    assert_eq!(enroll(&app, "a").await, "POLICY_ERROR");
    // Without a face the policy behaves: the count starts again.
    let (_, body) = answer(router(&app, AdminAccess::LoopbackOnly, LOOPBACK_PEER), no_face("b")).await;
    assert_eq!(body["DecisionReason"], "NO_FACE_DETECTED");
    assert_eq!(enroll(&app, "c").await, "POLICY_ERROR");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let trap = policy_router.current();
    assert_eq!(trap.variant("trap").expect("still there").weight, 1, "1 + 1 failures in a row is not 2");
    // Two in a row: it would retire, but it is the only answering variant.
    assert_eq!(enroll(&app, "d").await, "POLICY_ERROR");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(policy_router.current().variant("trap").expect("kept").weight, 1);
    let catalog = std::fs::read_to_string(policies.join("policies.toml")).expect("catalog");
    assert!(!catalog.contains("retired"), "{catalog}");
}
