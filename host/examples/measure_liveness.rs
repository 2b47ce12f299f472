//! Measures a liveness policy (ISO/IEC 30107-3 terms) on what can be gathered here:
//! - `../shared/liveness`: the Silent-Face live / print / screen photos and the live
//!   and phone-replay webcam videos (the `apfolcrop__*` tight crops are skipped: the
//!   liveness models need the context around the face);
//! - `../shared/videos`: phone selfie videos (bona fide);
//! - the simulated recaptures of `scripts/eval/make_presentation_attacks.py`
//!   (bona fide photos and their print and screen recaptures), if generated;
//! - the same attack photos turned into 3 s "held to the camera" clips (slow zoom and
//!   pan, rigid as a photo is), to measure the video cues.
//!
//! Every sample is analysed as an authentication upload and decided by the policy
//! with similarities taken to the sample's own face (identity is not measured here).
//! A presentation counts as refused for liveness when the reason is
//! LIVENESS_CHECK_FAILED; other rejections (no face, not frontal...) are listed apart.
//!
//! Run (after scripts/setup.sh):
//! `cargo run --release --example measure_liveness -- [--shared ../shared]
//!   [--attacks target/presentation-attacks] [--policy target/wasm32-wasip2/release/liveness_policy.wasm]
//!   [--clips N] [--verbose]`
#![allow(clippy::expect_used, clippy::unwrap_used)] // a measurement tool: fail loudly

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use faceauth::config::EngineConfig;
use faceauth::usecase::FaceEngine;

struct Sample {
    path: PathBuf,
    bona_fide: bool,
    kind: String,
}

#[derive(Default)]
struct Tally {
    n: usize,
    refused_liveness: usize,
    other: BTreeMap<String, usize>,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    text.lines().skip(1).map(|l| l.split(',').map(str::to_string).collect()).collect()
}

/// A 3 s clip of a still picture slowly zoomed and panned: how a photo held to a
/// phone moves (rigidly, and without blinking).
fn still_clip(image: &Path, out: &Path) -> bool {
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-loop", "1", "-i"])
        .arg(image)
        .args([
            "-vf",
            "scale=720:-2,zoompan=z='1+0.0015*on':x='iw/2-(iw/zoom/2)+on*0.4':y='ih/2-(ih/zoom/2)':d=90:s=720x960:fps=30",
            "-frames:v",
            "90",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(out)
        .status();
    status.is_ok_and(|s| s.success())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let shared = PathBuf::from(arg(&args, "--shared").unwrap_or_else(|| "../shared".into()));
    let attacks = PathBuf::from(arg(&args, "--attacks").unwrap_or_else(|| "target/presentation-attacks".into()));
    let clips: usize = arg(&args, "--clips").and_then(|v| v.parse().ok()).unwrap_or(20);
    let verbose = args.iter().any(|a| a == "--verbose");
    let mut config = EngineConfig::defaults();
    config.policy = PathBuf::from(
        arg(&args, "--policy").unwrap_or_else(|| "target/wasm32-wasip2/release/liveness_policy.wasm".into()),
    );
    let engine = FaceEngine::init(&config).expect("engine (run scripts/setup.sh)");
    let route = engine.route("measurement").expect("a policy variant");
    let policy = &route.answer.policy;
    assert!(policy.info().requires_liveness, "{} does not require liveness", policy.source().display());
    println!("policy {} {} params {:?}", policy.info().name, policy.info().version, policy.params());

    let mut samples = Vec::new();
    for row in csv_rows(&shared.join("liveness/labels.csv")) {
        if row.len() < 3 || row[0].contains("apfolcrop__") {
            continue;
        }
        samples.push(Sample { path: shared.join(&row[0]), bona_fide: row[1] == "live", kind: row[2].clone() });
    }
    for row in csv_rows(&shared.join("videos/index.csv")) {
        if let Some(video) = row.first() {
            samples.push(Sample { path: shared.join(video), bona_fide: true, kind: "phone_selfie_video".into() });
        }
    }
    let attack_rows = csv_rows(&attacks.join("labels.csv"));
    if attack_rows.is_empty() {
        eprintln!(
            "no simulated attacks under {}: run scripts/eval/make_presentation_attacks.py first",
            attacks.display()
        );
    }
    let clip_dir = attacks.join("clips");
    std::fs::create_dir_all(&clip_dir).ok();
    let mut clipped = BTreeMap::<String, usize>::new();
    for row in &attack_rows {
        if row.len() < 3 {
            continue;
        }
        let path = attacks.join(&row[0]);
        let bona_fide = row[1] == "bona_fide";
        // deepface photos (web portraits) and phone selfies are reported apart.
        let origin = if row.get(3).is_some_and(|s| s.contains("deepface")) { "deepface" } else { "selfie" };
        samples.push(Sample { path: path.clone(), bona_fide, kind: format!("simulated_{}_{origin}", row[2]) });
        // Held-to-camera clips of the first few attack pictures of each kind.
        let count = clipped.entry(row[2].clone()).or_default();
        if !bona_fide && *count < clips {
            let out = clip_dir.join(format!("{}.mp4", row[0].replace('/', "__")));
            if out.exists() || still_clip(&path, &out) {
                *count += 1;
                samples.push(Sample { path: out, bona_fide: false, kind: format!("simulated_{}_clip", row[2]) });
            }
        }
    }

    let mut tallies: BTreeMap<(bool, String), Tally> = BTreeMap::new();
    for sample in &samples {
        let bytes = std::fs::read(&sample.path).expect("sample");
        let result = engine.analyze_media(bytes, true).await;
        let (reason, detail) = match result {
            Err(e) => (format!("ERROR {e}"), String::new()),
            Ok(media) => {
                let evidence = media.evidence(None);
                let m = &evidence.summary.motion;
                let mut live: Vec<f32> =
                    evidence.frames.iter().filter_map(|f| f.faces.first().and_then(|p| p.liveness)).collect();
                live.sort_by(f32::total_cmp);
                let eyes: Vec<String> = evidence
                    .frames
                    .iter()
                    .filter_map(|f| f.faces.first().and_then(|p| p.eyes_open))
                    .map(|e| format!("{e:.2}"))
                    .collect();
                let detail = format!(
                    "frames={} live_median={:.2} blinks={} yaw_range={:.1} pitch_range={:.1} motion={:.3} non_rigid={:.4} eyes=[{}]",
                    evidence.frames.len(),
                    live.get(live.len() / 2).copied().unwrap_or(f32::NAN),
                    m.blinks,
                    m.yaw_range,
                    m.pitch_range,
                    m.landmark_motion,
                    m.non_rigid_motion,
                    eyes.join(" ")
                );
                let decision = policy.decide_authenticate_blocking(&evidence);
                (decision.map(|d| d.reason).unwrap_or_else(|e| format!("ERROR {e}")), detail)
            }
        };
        if verbose {
            println!(
                "{} {} {} {}",
                if sample.bona_fide { "bona_fide" } else { "attack" },
                sample.path.display(),
                reason,
                detail
            );
        }
        let tally = tallies.entry((sample.bona_fide, sample.kind.clone())).or_default();
        tally.n += 1;
        if reason == "LIVENESS_CHECK_FAILED" {
            tally.refused_liveness += 1;
        } else if reason != "AUTHENTIFICATION_SUCCESS" {
            *tally.other.entry(reason).or_default() += 1;
        }
    }

    println!("\n| presentations | n | refused for liveness | accepted as live | other rejections |");
    println!("|---|---|---|---|---|");
    let (mut attacks_n, mut attacks_accepted, mut bona_n, mut bona_refused) = (0, 0, 0, 0);
    for ((bona_fide, kind), t) in &tallies {
        let other: usize = t.other.values().sum();
        let accepted = t.n - t.refused_liveness - other;
        println!(
            "| {} {kind} | {} | {} | {} | {} {:?} |",
            if *bona_fide { "bona fide" } else { "attack" },
            t.n,
            t.refused_liveness,
            accepted,
            other,
            t.other
        );
        if *bona_fide {
            bona_n += t.n - other;
            bona_refused += t.refused_liveness;
        } else {
            attacks_n += t.n - other;
            attacks_accepted += accepted;
        }
    }
    println!(
        "\nAPCER {attacks_accepted}/{attacks_n} = {:.1} %  BPCER {bona_refused}/{bona_n} = {:.1} %  (presentations rejected for another reason excluded)",
        100.0 * attacks_accepted as f64 / attacks_n.max(1) as f64,
        100.0 * bona_refused as f64 / bona_n.max(1) as f64
    );
}
