//! Per-presentation detail behind `faceauth eval --mode liveness`: the same
//! presentations (`faceauth_eval::liveness::presentations`: ../shared, the still
//! photos turned into videos of `scripts/eval/make_still_videos.py` and the simulated
//! recaptures of `scripts/eval/make_presentation_attacks.py`, when generated), the
//! same analysis and decisions, one line each: set, source, kind, the policy's median
//! live probability, its decision, the decision with its liveness rules off, and a
//! video's motion cues (blinks, yaw and pitch range, landmark and non-rigid motion). Then the report `faceauth eval --mode liveness` prints.
//!
//! Run (after scripts/setup.sh):
//! `cargo run --release --example measure_liveness -- [--shared ../shared]
//!   [--attacks target/presentation-attacks] [--policy target/wasm32-wasip2/release/liveness_policy.wasm]
//!   [--only SUBSTRING]`
#![allow(clippy::expect_used, clippy::unwrap_used)] // a measurement tool: fail loudly

use std::path::PathBuf;
use std::sync::Arc;

use faceauth_core::policy::{PolicyLimits, PolicyRuntime};
use faceauth_core::usecase::EngineConfig;
use faceauth_core::usecase::FaceEngine;
use faceauth_eval::liveness::{LivenessReport, presentations, run};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let shared = PathBuf::from(arg(&args, "--shared").unwrap_or_else(|| "../shared".into()));
    let attacks = PathBuf::from(arg(&args, "--attacks").unwrap_or_else(|| "target/presentation-attacks".into()));
    let only = arg(&args, "--only");
    let mut config = EngineConfig::defaults();
    config.policy = PathBuf::from(
        arg(&args, "--policy").unwrap_or_else(|| "target/wasm32-wasip2/release/liveness_policy.wasm".into()),
    );
    let policy = Arc::new(
        PolicyRuntime::new(PolicyLimits::default())
            .and_then(|r| r.compile_file(&config.policy()))
            .and_then(|c| c.variant(&[]))
            .expect("the policy (run scripts/setup.sh)"),
    );
    assert!(policy.info().requires_liveness, "{} does not require liveness", policy.source().display());
    let engine = Arc::new(FaceEngine::init(&config).expect("engine (run scripts/setup.sh)"));
    let mut list = presentations(&shared, &attacks);
    if let Some(only) = &only {
        list.retain(|p| p.path.display().to_string().contains(only.as_str()) || p.kind.contains(only.as_str()));
    }
    eprintln!("{} presentations", list.len());
    let results = run(engine, policy.clone(), list, 2, || {}).await;
    for r in &results {
        let motion = r.motion.as_ref().map_or(String::new(), |m| {
            format!(
                " pairs={} blinks={} yaw_range={:.1} pitch_range={:.1} motion={:.4} non_rigid={:.4}",
                m.pairs, m.blinks, m.yaw_range, m.pitch_range, m.landmark_motion, m.non_rigid_motion
            )
        });
        println!(
            "{} | {} | {} {} | live={} | {} | base={}{motion} | {}",
            r.set,
            r.source,
            if r.bona_fide { "bona_fide" } else { "attack" },
            r.kind,
            r.live.map_or("-".into(), |l| format!("{l:.3}")),
            r.reason,
            r.base_reason.as_deref().unwrap_or("-"),
            r.file
        );
    }
    print!("\n{}", LivenessReport::new(&policy, &results).text());
}
