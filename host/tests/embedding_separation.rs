//! The Rust pipeline against the reference figures on real photos (`../shared`):
//! per-stage agreement with the Python reference, and perfect separation of the
//! 300 labelled deepface pairs. Skips, saying so, when `../shared` is absent.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

mod common;

use std::collections::HashMap;

use faceauth_core::usecase::FaceEngine;
use faceauth_core::vision::geometry::{self, BoundingBox, Point};
use faceauth_core::vision::{AnalyzedFace, FaceAnalyzer, ModelFiles};

fn engine() -> FaceEngine {
    FaceEngine::init(&common::engine_config("default-policy")).expect("engine starts")
}

/// The face analyzer alone (no pool, no policy), for stage-by-stage checks.
fn analyzer() -> FaceAnalyzer {
    let config = common::engine_config("default-policy");
    let env = faceauth_core::vision::onnx_environment(&config.onnxruntime_lib().expect("ort")).expect("ort");
    let files = ModelFiles::verify(&config.models_dir).expect("models");
    FaceAnalyzer::load(&env, &files, false).expect("analyzer")
}

async fn primary_face(engine: &FaceEngine, path: &std::path::Path) -> AnalyzedFace {
    let bytes = std::fs::read(path).expect("read image");
    let (_, faces) = engine.analyze_upload(bytes).await.expect("analysis");
    faces.into_iter().next().unwrap_or_else(|| panic!("no face found in {}", path.display()))
}

/// Each stage against `../shared/reference/pipeline_reference.json` (a Python/OpenCV
/// reference that squashes the image into the detector and resizes crops without
/// anti-aliasing). Measured here: that reference's own embedding moves by up to 0.07
/// cosine when its landmark crop is resampled with anti-aliasing or its box moves
/// by 3 %, so stages are compared one at a time, each on the reference's input:
/// the detector (letterboxed, so boxes move), the landmarks on the reference box,
/// and alignment + embedding from the reference five points, which must be exact.
/// End to end (our boxes and anti-aliased crops) agreement measured 0.919-0.994.
#[tokio::test(flavor = "multi_thread")]
async fn stages_agree_with_the_python_reference() {
    let shared = common::shared_dir_or_skip!();
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(shared.join("reference/pipeline_reference.json")).expect("reference file"),
    )
    .expect("reference json");
    let mut analyzer = analyzer();
    let mut problems = Vec::new();
    for image in reference["images"].as_array().expect("images") {
        let file = image["file"].as_str().expect("file");
        let bytes = std::fs::read(shared.join(file)).expect("image");
        let pixels = faceauth_core::media::decode_image(&bytes, Default::default()).expect("decodes").pixels;
        let found = analyzer.analyze(&pixels, 40.0, false).expect("analysis");
        let expected = image["faces"].as_array().expect("faces");
        if found.len() != expected.len() {
            problems.push(format!("{file}: {} faces, reference {}", found.len(), expected.len()));
        }
        for want in expected {
            let b: Vec<f32> = serde_json::from_value(want["box_xyxy"].clone()).expect("box");
            let side = b[3] - b[1];
            // Detector: the nearest box, within 12 % of the face size on every edge.
            let centre = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
            let dist = |f: &AnalyzedFace| {
                ((f.bbox.x1 + f.bbox.x2) / 2.0 - centre.0).hypot((f.bbox.y1 + f.bbox.y2) / 2.0 - centre.1)
            };
            let got = found.iter().min_by(|x, y| dist(x).total_cmp(&dist(y))).expect("a face");
            let box_err = [got.bbox.x1, got.bbox.y1, got.bbox.x2, got.bbox.y2]
                .iter()
                .zip(&b)
                .map(|(g, w)| (g - w).abs())
                .fold(0.0f32, f32::max);
            // Landmarks on the reference box: within 1.5 % of the face size on average.
            let bbox = BoundingBox { x1: b[0], y1: b[1], x2: b[2], y2: b[3] };
            let marks: Vec<[f32; 2]> = serde_json::from_value(want["landmarks68"].clone()).expect("landmarks");
            let ours = analyzer.landmarks(&pixels, &bbox).expect("landmarks");
            let mark_err = ours.iter().zip(&marks).map(|(g, w)| (g.x - w[0]).hypot(g.y - w[1])).sum::<f32>() / 68.0;
            // Warp and embedding from the reference's own transform: the same numbers.
            // (Its transform came from OpenCV's robust estimateAffinePartial2D; ours is
            // plain least squares, checked against the least-squares reference in
            // `lfw_pairs_agree_with_the_least_squares_reference`.)
            let want_t: Vec<Vec<f32>> =
                serde_json::from_value(want["similarity_transform_2x3"].clone()).expect("transform");
            let transform = geometry::Affine([
                [want_t[0][0], want_t[0][1], want_t[0][2]],
                [want_t[1][0], want_t[1][1], want_t[1][2]],
            ]);
            let aligned = geometry::warp_affine(&pixels, &transform, 112).expect("warp");
            let embedding = analyzer.embed(&aligned).expect("embed").expect("embedding");
            let reference_embedding: Vec<f32> = serde_json::from_value(want["embedding"].clone()).expect("embedding");
            let cos_stage: f32 = embedding.values().iter().zip(&reference_embedding).map(|(a, b)| a * b).sum();
            let cos_end: f32 = got.embedding.values().iter().zip(&reference_embedding).map(|(a, b)| a * b).sum();
            eprintln!(
                "{file}: box edge error {:.1}% | landmarks {:.2}% | embedding from the reference \
                 transform {cos_stage:.4} | end to end {cos_end:.4}",
                100.0 * box_err / side,
                100.0 * mark_err / side
            );
            if box_err > 0.12 * side {
                problems.push(format!("{file}: box {:?} vs {b:?}", got.bbox));
            }
            if mark_err > 0.015 * side {
                problems.push(format!("{file}: landmark error {mark_err:.1}px on a {side:.0}px face"));
            }
            if cos_stage < 0.995 {
                problems.push(format!("{file}: warp/embedding stage: cosine {cos_stage}"));
            }
            if cos_end < 0.90 {
                problems.push(format!("{file}: end-to-end embedding cosine {cos_end}"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deepface_pairs_are_separated_perfectly() {
    let shared = common::shared_dir_or_skip!();
    let dir = shared.join("faces/deepface");
    let csv = std::fs::read_to_string(dir.join("master.csv")).expect("master.csv");
    let pairs: Vec<(String, String, bool)> = csv
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split(',');
            Some((it.next()?.to_string(), it.next()?.to_string(), it.next()?.trim() == "Yes"))
        })
        .collect();
    assert_eq!(pairs.len(), 300);
    let engine = engine();
    let mut embeddings = HashMap::new();
    for (a, b, _) in &pairs {
        for f in [a, b] {
            if !embeddings.contains_key(f) {
                embeddings.insert(f.clone(), primary_face(&engine, &dir.join(f)).await.embedding);
            }
        }
    }
    let mut genuine = Vec::new();
    let mut impostor = Vec::new();
    for (a, b, same) in &pairs {
        let s = embeddings[a].cosine(&embeddings[b]);
        if *same { genuine.push(s) } else { impostor.push(s) }
    }
    let auc = roc_auc(&genuine, &impostor);
    let min_genuine = genuine.iter().copied().fold(f32::INFINITY, f32::min);
    let max_impostor = impostor.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    eprintln!(
        "deepface master.csv: {} genuine, {} impostor pairs over {} images; ROC AUC {auc:.4}; \
         genuine min {min_genuine:.3}, impostor max {max_impostor:.3}",
        genuine.len(),
        impostor.len(),
        embeddings.len()
    );
    assert_eq!(auc, 1.0, "the reference pipeline separates these pairs perfectly");
    assert!(min_genuine > max_impostor);
}

/// Probability that a random genuine score beats a random impostor score (ties count half).
fn roc_auc(genuine: &[f32], impostor: &[f32]) -> f64 {
    let mut wins = 0.0;
    for g in genuine {
        for i in impostor {
            wins += if g > i {
                1.0
            } else if g == i {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (genuine.len() * impostor.len()) as f64
}

/// The face on `bbox` through our landmarks, least-squares alignment and embedding.
fn embed_on_box(
    analyzer: &mut FaceAnalyzer,
    pixels: &image::RgbImage,
    b: &[f32],
) -> faceauth_core::vision::FaceEmbedding {
    let bbox = BoundingBox { x1: b[0], y1: b[1], x2: b[2], y2: b[3] };
    let landmarks = analyzer.landmarks(pixels, &bbox).expect("landmarks");
    let transform =
        geometry::similarity_transform(&geometry::five_points(&landmarks), &geometry::TEMPLATE_112).expect("transform");
    let aligned = geometry::warp_affine(pixels, &transform, 112).expect("warp");
    analyzer.embed(&aligned).expect("embed").expect("embedding")
}

/// 50 LFW View-1 training pairs (hard genuine, genuine, impostor) against the
/// least-squares Python reference (`tests/reference/lfw_pairs_reference.json`, made
/// by `scripts/eval/reference_pipeline.py`): our least-squares transform from its
/// five points is its transform; on its face boxes our cosine is its cosine; end to
/// end (our letterboxed detector, whose boxes differ from the squashed reference's
/// by about 4 % of the face), the same within a few hundredths where both pick the
/// same face. Measured: on-box mean |difference| 0.0060, end to end 0.0148 (47 pairs).
#[tokio::test(flavor = "multi_thread")]
async fn lfw_pairs_agree_with_the_least_squares_reference() {
    let shared = common::shared_dir_or_skip!();
    let lfw = shared.join("faces/lfw-train");
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(common::repo_root().join("tests/reference/lfw_pairs_reference.json")).expect("reference"),
    )
    .expect("json");
    let mut analyzer = analyzer();
    let load = |name: &str| {
        let bytes = std::fs::read(lfw.join(name)).expect("image");
        faceauth_core::media::decode_image(&bytes, Default::default()).expect("decodes").pixels
    };
    let (mut on_box, mut end_to_end, mut worst_transform) = (Vec::new(), Vec::new(), 0.0f32);
    let pairs = reference["pairs"].as_array().expect("pairs");
    for pair in pairs {
        let (a, b) = (pair["file_a"].as_str().expect("a"), pair["file_b"].as_str().expect("b"));
        let want = pair["cosine"].as_f64().expect("cosine") as f32;
        let five: Vec<[f32; 2]> = serde_json::from_value(pair["a"]["five_points"].clone()).expect("five");
        let five: Vec<Point> = five.iter().map(|p| Point { x: p[0], y: p[1] }).collect();
        let want_t: Vec<Vec<f32>> = serde_json::from_value(pair["a"]["similarity_transform_2x3"].clone()).expect("t");
        let ours = geometry::similarity_transform(&five, &geometry::TEMPLATE_112).expect("transform");
        for (r, row) in want_t.iter().enumerate() {
            for (c, w) in row.iter().enumerate() {
                worst_transform = worst_transform.max((ours.0[r][c] - w).abs());
            }
        }
        let (pa, pb) = (load(a), load(b));
        let box_of = |side: &str| -> Vec<f32> { serde_json::from_value(pair[side]["box_xyxy"].clone()).expect("box") };
        let (ea, eb) = (embed_on_box(&mut analyzer, &pa, &box_of("a")), embed_on_box(&mut analyzer, &pb, &box_of("b")));
        on_box.push((ea.cosine(&eb) - want).abs());
        // End to end, where our primary face is the reference's.
        let (fa, fb) = (analyzer.analyze(&pa, 40.0, false).expect("a"), analyzer.analyze(&pb, 40.0, false).expect("b"));
        let same_face = |found: &[AnalyzedFace], side: &str| {
            let r = box_of(side);
            found.first().is_some_and(|f| f.bbox.iou(&BoundingBox { x1: r[0], y1: r[1], x2: r[2], y2: r[3] }) > 0.5)
        };
        if same_face(&fa, "a") && same_face(&fb, "b") {
            end_to_end.push((fa[0].embedding.cosine(&fb[0].embedding) - want).abs());
        }
    }
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
    eprintln!(
        "{} pairs: transform max |difference| {worst_transform:.5}; cosine on the reference boxes mean |difference| \
         {:.4} (max {:.4}); end to end on {} pairs with the same primary face {:.4} (max {:.4})",
        pairs.len(),
        mean(&on_box),
        on_box.iter().copied().fold(0.0, f32::max),
        end_to_end.len(),
        mean(&end_to_end),
        end_to_end.iter().copied().fold(0.0, f32::max),
    );
    assert_eq!(pairs.len(), 50);
    assert!(worst_transform < 2e-3, "least-squares transform differs by {worst_transform}");
    assert!(mean(&on_box) < 0.01, "cosine on the reference boxes: mean |difference| {}", mean(&on_box));
    assert!(end_to_end.len() >= 40, "only {} pairs pick the reference's face", end_to_end.len());
    assert!(mean(&end_to_end) < 0.025, "end to end: mean |difference| {}", mean(&end_to_end));
}

/// `faceauth eval` as a library: the default policy over a labelled list.
async fn evaluate(mode: faceauth_eval::Mode, attempts: Vec<faceauth_eval::Attempt>) -> faceauth_eval::Report {
    use faceauth_core::policy::{PolicyLimits, PolicyRuntime};
    let config = common::engine_config("default-policy");
    let policy = std::sync::Arc::new(
        PolicyRuntime::new(PolicyLimits::default())
            .expect("runtime")
            .compile_file(&config.policy)
            .expect("policy")
            .variant(&[])
            .expect("variant"),
    );
    let engine = std::sync::Arc::new(engine());
    let options = faceauth_eval::RunOptions { concurrency: 2, ..Default::default() };
    let started = std::time::Instant::now();
    let run = faceauth_eval::run(engine, policy.clone(), mode, attempts, &options, || {}).await;
    let report = faceauth_eval::Report::new(mode, &policy, &run.attempts, started.elapsed().as_secs_f64());
    eprintln!("{}", report.text());
    report
}

/// `../shared/faces/lfw-train/pairs.csv`, or `None` (having said why) without it.
fn lfw_pairs() -> Option<std::path::PathBuf> {
    let shared = common::shared_dir_or_say_skipped()?;
    let list = shared.join("faces/lfw-train/pairs.csv");
    if !list.exists() {
        eprintln!("SKIPPED: {} not found", list.display());
        return None;
    }
    Some(list)
}

/// The accuracy floor on LFW View-1 training pairs (2200), every stage and gate of
/// the default policy included. Measured: best accuracy 99.26 % on the 1750 attempts
/// with one person in each photo (99.18 % for the recognizer alone over all 2200);
/// 450 attempts are refused for a bystander's face beside the subject, by design.
#[tokio::test(flavor = "multi_thread")]
async fn lfw_pairs_meet_the_accuracy_floor() {
    let Some(list) = lfw_pairs() else { return };
    let attempts = faceauth_eval::read_pairs(&list).expect("pairs");
    assert_eq!(attempts.len(), 2200);
    let report = evaluate(faceauth_eval::Mode::Pairs, attempts).await;
    assert!(report.recognizer.roc_auc >= 0.995, "recognizer ROC AUC {}", report.recognizer.roc_auc);
    assert!(report.one_person.best_accuracy >= 0.99, "best accuracy {}", report.one_person.best_accuracy);
    assert!(report.gate_losses.len() <= 3, "genuine pairs lost to quality gates: {:?}", report.gate_losses);
    let (_, _, impostors_approved, impostors) = report.one_person_decisions;
    assert!(impostors_approved * 500 <= impostors, "{impostors_approved} of {impostors} impostors approved");
}

/// ID cards made from LFW photos enroll (failure to enroll <= 1 %) and match the
/// person's other photos. Measured on all 2200 pairs: 10 of 1881 cards refused
/// (0.53 %), 936 of 960 one-person genuine attempts approved, 1 of 963 impostors.
#[tokio::test(flavor = "multi_thread")]
async fn lfw_cards_enroll_and_match() {
    let Some(list) = lfw_pairs() else { return };
    // Genuine and impostor pairs alternate in blocks: take both.
    let all = faceauth_eval::read_pairs(&list).expect("pairs");
    let attempts: Vec<_> = all.iter().take(300).chain(all.iter().skip(1100).take(300)).cloned().collect();
    let report = evaluate(faceauth_eval::Mode::Card, attempts).await;
    assert!(report.failure_to_enroll <= 0.01, "failure to enroll {}", report.failure_to_enroll);
    let (ga, gn, ia, _) = report.one_person_decisions;
    assert!(ga as f64 >= 0.96 * gn as f64, "{ga} of {gn} genuine approved");
    assert_eq!(ia, 0, "impostors approved: {:?}", report.impostors_approved);
}

/// Selfie videos with head turns (../shared/videos): each person's own video is
/// approved after enrolling from a card of their still, none for another person.
/// Two worker ids of the set are one person (the same face and clothes in both).
#[tokio::test(flavor = "multi_thread")]
async fn head_turn_videos_are_approved_for_their_own_person_only() {
    let shared = common::shared_dir_or_skip!();
    let same =
        [("tdp-02d4bd7187fb9867c280213a94303c76".to_string(), "tdp-fc942c0c9e0fb57ea4b97630c6226c08".to_string())];
    let attempts = faceauth_eval::read_video_index(&shared.join("videos/index.csv"), &same).expect("index");
    let report = evaluate(faceauth_eval::Mode::Video, attempts.clone()).await;
    assert!(report.impostors_approved.is_empty(), "{:?}", report.impostors_approved);
    // Every genuine attempt whose card enrolled is approved.
    assert_eq!(
        report.genuine.refused.iter().filter(|(r, _)| !r.starts_with("enroll")).count(),
        0,
        "{:?}",
        report.genuine
    );
    assert!(report.failure_to_enroll <= 0.05, "{} of {} cards refused", report.enrollments_refused, report.enrollments);
    let videos: std::collections::BTreeSet<_> = attempts.iter().map(|a| a.authenticate.clone()).collect();
    assert!(videos.len() >= 9, "{} videos", videos.len());
}

/// Issue 18: webcam clips of people turning their heads 50-90 degrees (frames that
/// match their own ID card at 0.04-0.31) are approved, each person enrolled from a
/// card of a frame of their clip; the same clips spliced after another person's
/// clip are refused, enrolled as either person (`scripts/eval/make_spliced_videos.py`
/// measures every pair: README, "Selfie videos").
#[tokio::test(flavor = "multi_thread")]
async fn head_turning_clips_are_approved_and_two_people_spliced_are_not() {
    let shared = common::shared_dir_or_skip!();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |p: &std::path::Path| p.to_str().expect("utf-8").to_string();
    let mut attempts = Vec::new();
    let turning = ["liveness/live/zubair__real.mov", "liveness/live/apfol__real2.webm"];
    for clip in turning {
        let (clip, still) = (shared.join(clip), dir.path().join(format!("{}.jpg", attempts.len())));
        common::ffmpeg(&["-i", &path(&clip), "-vf", "select=eq(n\\,5)", "-frames:v", "1", &path(&still)]);
        attempts.push(faceauth_eval::Attempt { enroll: still, authenticate: clip, genuine: true });
    }
    // A phone selfie clip of one person, then the second half of another's.
    let a = shared.join("videos/tdp-e237e533a6ca7f8449e48d07136b19ea");
    let b = shared.join("videos/tdp-9958b1e9cb13d1381b21ebaa74af4546");
    let spliced = dir.path().join("a_then_b.mp4");
    let fit = "scale=720:720:force_original_aspect_ratio=decrease,pad=720:720:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=25";
    common::ffmpeg(&[
        "-t",
        "2.5",
        "-i",
        &path(&a.join("0001d815c0--61dc1abdd087f5618bf66eb9__8.mp4")),
        "-ss",
        "4",
        "-i",
        &path(&b.join("0001d815c0--61dc1afaeae6cc347caa18b2__8.mp4")),
        "-filter_complex",
        &format!("[0:v]{fit}[a];[1:v]{fit}[b];[a][b]concat=n=2:v=1,format=yuv420p[v]"),
        "-map",
        "[v]",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        &path(&spliced),
    ]);
    for still in
        [a.join("0001d815c0--61dc1abdd087f5618bf66eb9__1.jpg"), b.join("0001d815c0--61dc1afaeae6cc347caa18b2__5.jpg")]
    {
        attempts.push(faceauth_eval::Attempt { enroll: still, authenticate: spliced.clone(), genuine: false });
    }
    let report = evaluate(faceauth_eval::Mode::Video, attempts).await;
    assert_eq!((report.genuine.approved, report.genuine.attempts), (2, 2), "{:?}", report.genuine);
    assert!(report.impostors_approved.is_empty(), "a splice approved: {:?}", report.impostors_approved);
    assert_eq!(report.impostor.refused.get("FACE_MISMATCH"), Some(&2), "{:?}", report.impostor);
}

/// Low-resolution clips (176x144, as old phones record 3GP) still show a findable,
/// matching face: two real selfie clips scaled down by FFmpeg, each against a card
/// of its person's still. Measured: similarities 0.63 and 0.58.
#[tokio::test(flavor = "multi_thread")]
async fn faces_are_found_in_176x144_clips() {
    let shared = common::shared_dir_or_skip!();
    let person = shared.join("videos/tdp-e237e533a6ca7f8449e48d07136b19ea");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut attempts = Vec::new();
    for (clip, size) in [
        ("0001d815c0--61dc1abdd087f5618bf66eb9__4.3gp", "144:176"),
        ("0001d815c0--61dc1abdd087f5618bf66eb9__8.mp4", "176:144"),
    ] {
        let out = dir.path().join(format!("{clip}.small.mp4"));
        let (input, scale) = (person.join(clip), format!("scale={size}"));
        let (input, output) = (input.to_str().expect("utf-8"), out.to_str().expect("utf-8"));
        common::ffmpeg(&["-i", input, "-an", "-vf", &scale, "-c:v", "mpeg4", "-q:v", "5", output]);
        attempts.push(faceauth_eval::Attempt {
            enroll: person.join("0001d815c0--61dc1abdd087f5618bf66eb9__1.jpg"),
            authenticate: out,
            genuine: true,
        });
    }
    let report = evaluate(faceauth_eval::Mode::Card, attempts).await;
    assert_eq!(report.genuine.approved, 2, "{:?}", report.genuine);
}
