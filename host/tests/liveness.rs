//! The host runs the liveness models only for a policy that requires liveness.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

mod common;

use common::ffmpeg;
use faceauth_core::usecase::FaceEngine;

#[tokio::test(flavor = "multi_thread")]
async fn liveness_is_measured_only_for_policies_that_require_it() {
    for (policy, measured) in [("default-policy", false), ("liveness-policy", true)] {
        let engine = FaceEngine::init(&common::engine_config(policy)).expect("engine");
        let route = engine.route("anyone").expect("a variant answers");
        assert_eq!(route.requires_liveness(), measured);
        let media = engine
            .analyze_media(common::fixture("selfie_person_a.jpg"), route.requires_liveness())
            .await
            .expect("analysis");
        let faces = &media.frames[0].1;
        let face = faces.first().expect("a face");
        let liveness = face.liveness;
        assert_eq!(liveness.is_some(), measured, "{policy}: {liveness:?}");
        assert_eq!(face.eyes_open.is_some(), measured, "{policy}: {:?}", face.eyes_open);
        if let Some(l) = liveness {
            assert!((0.0..=1.0).contains(&l), "{l}");
        }
    }
}

/// Video cues on real footage: a blink sequence built from a real webcam clip's
/// open-eyed and closed-eyed frames of one person (`../shared`, not committed) shows
/// its blinks; the open-eyed frame alone, held still, shows none.
#[tokio::test(flavor = "multi_thread")]
async fn a_blink_sequence_shows_blinks_and_a_still_picture_does_not() {
    let shared = common::shared_dir_or_skip!();
    let source =
        shared.join("videos/tdp-02d4bd7187fb9867c280213a94303c76/0001d815c0--61dc1b75442e6e7ab9a44e25__8.webm");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
    let src = source.to_str().expect("utf-8");
    // The same person in a live webcam clip: eyes open at 8.13 s, shut at 2.4 s
    // (checked by eye).
    ffmpeg(&["-ss", "8.133", "-i", src, "-frames:v", "1", &path("open.png")]);
    ffmpeg(&["-ss", "2.4", "-i", src, "-frames:v", "1", &path("closed.png")]);
    // open 0.6 s, closed 0.2 s, open 0.6 s, closed 0.2 s, open 0.6 s, at 10 fps.
    let segments =
        [("open.png", "0.6"), ("closed.png", "0.2"), ("open.png", "0.6"), ("closed.png", "0.2"), ("open.png", "0.6")];
    let mut args: Vec<String> = Vec::new();
    for (image, seconds) in segments {
        args.extend(["-loop", "1", "-t", seconds, "-i"].map(String::from));
        args.push(path(image));
    }
    let inputs: String = (0..segments.len()).map(|i| format!("[{i}]fps=10,format=yuv420p[v{i}];")).collect();
    let chain: String = (0..segments.len()).map(|i| format!("[v{i}]")).collect();
    args.extend([
        "-filter_complex".to_string(),
        format!("{inputs}{chain}concat=n={}:v=1", segments.len()),
        "-c:v".into(),
        "libx264".into(),
        path("blink.mp4"),
    ]);
    ffmpeg(&args);
    ffmpeg(&[
        "-loop",
        "1",
        "-t",
        "2.2",
        "-i",
        &path("open.png"),
        "-vf",
        "fps=10,format=yuv420p",
        "-c:v",
        "libx264",
        &path("still.mp4"),
    ]);

    let engine = FaceEngine::init(&common::engine_config("liveness-policy")).expect("engine");
    let motion = |name: &str| {
        let bytes = std::fs::read(path(name)).expect("clip");
        let engine = &engine;
        async move {
            let media = engine.analyze_media(bytes, true).await.expect("analysis");
            let evidence = media.evidence(None);
            let eyes: Vec<f32> = evidence.frames.iter().filter_map(|f| f.faces.first()?.eyes_open).collect();
            (evidence.summary.motion, eyes)
        }
    };
    let (blink, blink_eyes) = motion("blink.mp4").await;
    let (still, still_eyes) = motion("still.mp4").await;
    assert!(blink.blinks >= 1, "{blink:?} eyes {blink_eyes:?}");
    assert_eq!(still.blinks, 0, "{still:?} eyes {still_eyes:?}");
}

/// A still photo turned into a video (`ffmpeg -loop 1`: every frame the same) is
/// refused by the liveness policy however live its texture looks, while the live
/// selfie video it was taken from is approved: a live face moves between frames. Real
/// footage of `../shared` (not committed); skips, saying so, without it.
#[tokio::test(flavor = "multi_thread")]
async fn a_still_photo_turned_into_a_video_is_refused_and_the_live_clip_is_not() {
    let shared = common::shared_dir_or_skip!();
    let live = shared.join("videos/tdp-67cae596e594481cf81f5cc5e248f3d0/0001d815c0--61dc1bc5404d193dcf1d1c92__4.mp4");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
    ffmpeg(&["-ss", "1", "-i", live.to_str().expect("utf-8"), "-frames:v", "1", &path("frame.png")]);
    ffmpeg(&[
        "-loop",
        "1",
        "-t",
        "3",
        "-i",
        &path("frame.png"),
        "-vf",
        "fps=30,format=yuv420p",
        "-c:v",
        "libx264",
        &path("still.mp4"),
    ]);

    let engine = FaceEngine::init(&common::engine_config("liveness-policy")).expect("engine");
    let route = engine.route("anyone").expect("a variant answers");
    let policy = route.answer.policy.clone();
    let decide = |bytes: Vec<u8>| {
        let (engine, policy) = (&engine, policy.clone());
        async move {
            let media = engine.analyze_media(bytes, true).await.expect("analysis");
            // Similarities to the clip's own face: liveness alone is judged.
            let evidence = media.evidence(None);
            let motion = evidence.summary.motion;
            (policy.decide_authenticate(evidence).await.expect("decision"), motion)
        }
    };
    let (still, still_motion) = decide(std::fs::read(path("still.mp4")).expect("clip")).await;
    assert_eq!(still.reason, "LIVENESS_CHECK_FAILED", "{still_motion:?}");
    assert!(still_motion.pairs >= 2 && still_motion.landmark_motion < 0.001, "{still_motion:?}");
    let (clip, clip_motion) = decide(std::fs::read(&live).expect("clip")).await;
    assert!(clip.approved, "{clip:?} {clip_motion:?}");
    assert!(clip_motion.landmark_motion > 0.002, "{clip_motion:?}");
}
