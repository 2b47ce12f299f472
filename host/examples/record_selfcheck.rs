//! Records the evidence of the policy self-check (crates/faceauth-core/src/policy/selfcheck/*.json)
//! from the committed fixtures, through the real engine: every policy must refuse
//! an ID card without a face, a stranger's selfie and a selfie with two people, and
//! must answer a 24-frame liveness video within its budget, before it takes traffic.
//!
//! Run after a change of the evidence interface (wit/policy.wit):
//! `cargo run --release --example record_selfcheck` (after scripts/setup.sh).
#![allow(clippy::expect_used, clippy::unwrap_used)] // a tool: fail loudly

use std::path::PathBuf;

use faceauth_core::policy::EnrollEvidence;
use faceauth_core::usecase::EngineConfig;
use faceauth_core::usecase::{FaceEngine, face_evidence};

#[tokio::main]
async fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let fixture = |name: &str| std::fs::read(root.join("tests/fixtures").join(name)).expect("fixture");
    let out = root.join("crates/faceauth-core/src/policy/selfcheck");
    std::fs::create_dir_all(&out).expect("output dir");
    let engine = FaceEngine::init(&EngineConfig::defaults()).expect("engine (run scripts/setup.sh)");
    let write = |name: &str, json: String| {
        std::fs::write(out.join(name), json + "\n").expect("write");
        println!("wrote {name}");
    };

    let (image, faces) = engine.analyze_upload(fixture("id_card_back_no_face.jpg")).await.expect("analysis");
    let evidence = EnrollEvidence { image, faces: face_evidence(&faces, image, None), duplicates: None };
    write("enroll_no_face.json", serde_json::to_string_pretty(&evidence).unwrap());

    let (_, enrolled) = engine.analyze_upload(fixture("id_card_person_a.jpg")).await.expect("analysis");
    let template = &enrolled.first().expect("a face on the card").embedding;
    for (input, name, liveness) in [
        ("selfie_person_b.jpg", "authenticate_stranger.json", true),
        ("two_people.jpg", "authenticate_two_people.json", true),
        ("video_person_a.mp4", "authenticate_video.json", true),
    ] {
        let media = engine.analyze_media(fixture(input), liveness).await.expect("analysis");
        write(name, serde_json::to_string_pretty(&media.evidence(Some(template))).unwrap());
    }
}
