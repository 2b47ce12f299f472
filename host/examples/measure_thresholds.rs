//! Measures what the default policy's thresholds rest on, on the real photos of
//! `../shared` (deepface + phone selfies):
//! - genuine and impostor cosine similarities (FAR/FRR at candidate thresholds);
//! - how similarity to the sharp original falls with blur, against the sharpness measure;
//! - how it falls with face size (the same photos downscaled);
//! - detector score and head-pose spread of real frontal photos.
//!
//! Run: `cargo run --release --example measure_thresholds [-- ../shared [--pairs-only]]`
//! (after scripts/setup.sh). Figures are in plugins/default-policy/README.md.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a measurement tool: fail loudly

use std::collections::BTreeMap;
use std::path::PathBuf;

use faceauth_core::media::decode_image;
use faceauth_core::usecase::EngineConfig;
use faceauth_core::vision::{AnalyzedFace, FaceAnalyzer, ModelFiles, onnx_environment};
use image::RgbImage;

fn percentile(sorted: &[f32], p: f32) -> f32 {
    if sorted.is_empty() {
        return f32::NAN;
    }
    let i = ((sorted.len() - 1) as f32 * p).round() as usize;
    sorted[i]
}

fn summary(name: &str, values: &mut [f32]) {
    values.sort_by(f32::total_cmp);
    println!(
        "{name}: n={} min={:.3} p1={:.3} p5={:.3} median={:.3} p95={:.3} p99={:.3} max={:.3}",
        values.len(),
        percentile(values, 0.0),
        percentile(values, 0.01),
        percentile(values, 0.05),
        percentile(values, 0.5),
        percentile(values, 0.95),
        percentile(values, 0.99),
        percentile(values, 1.0)
    );
}

fn largest(faces: Vec<AnalyzedFace>) -> Option<AnalyzedFace> {
    faces.into_iter().max_by(|a, b| a.bbox.area().total_cmp(&b.bbox.area()))
}

fn main() {
    let shared = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "../shared".into()));
    if !shared.join("faces").exists() {
        eprintln!("{} has no faces/ folder: pass the shared data folder", shared.display());
        std::process::exit(2);
    }
    let config = EngineConfig::defaults();
    let env = onnx_environment(&config.onnxruntime_lib().expect("run scripts/setup.sh")).expect("onnx runtime");
    let files = ModelFiles::verify(&config.models_dir()).expect("models");
    let mut analyzer = FaceAnalyzer::load(&env, &files, false).expect("models load");

    // Identity of every photo: deepface groups from master.csv's "Yes" pairs, selfies by folder.
    let mut photos: Vec<(PathBuf, String)> = Vec::new();
    let deepface = shared.join("faces/deepface");
    let csv = std::fs::read_to_string(deepface.join("master.csv")).expect("master.csv");
    let mut parent: BTreeMap<String, String> = BTreeMap::new();
    fn root(parent: &mut BTreeMap<String, String>, x: &str) -> String {
        let mut x = x.to_string();
        while let Some(p) = parent.get(&x).cloned() {
            if p == x {
                break;
            }
            x = p;
        }
        x
    }
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        for name in &f[..2] {
            parent.entry(name.to_string()).or_insert_with(|| name.to_string());
        }
        if f[2].trim() == "Yes" {
            let (a, b) = (root(&mut parent, f[0]), root(&mut parent, f[1]));
            parent.insert(a, b);
        }
    }
    let names: Vec<String> = parent.keys().cloned().collect();
    for name in names {
        let id = format!("deepface:{}", root(&mut parent, &name));
        photos.push((deepface.join(&name), id));
    }
    let mut selfie_dirs: Vec<PathBuf> =
        std::fs::read_dir(shared.join("faces/selfies")).expect("selfies").map(|e| e.expect("entry").path()).collect();
    selfie_dirs.sort();
    for dir in selfie_dirs {
        let id = format!("selfie:{}", dir.file_name().unwrap().to_string_lossy());
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        photos.extend(files.into_iter().map(|f| (f, id.clone())));
    }

    let mut analysed: Vec<(PathBuf, String, RgbImage, AnalyzedFace)> = Vec::new();
    let (mut scores, mut yaws, mut pitches, mut sharpness, mut heights) = (vec![], vec![], vec![], vec![], vec![]);
    for (path, id) in photos {
        let pixels = decode_image(&std::fs::read(&path).unwrap(), Default::default()).expect("decodes").pixels;
        let Some(face) = largest(analyzer.analyze(&pixels, 40.0, false).expect("analysis")) else {
            println!("no face: {}", path.display());
            continue;
        };
        scores.push(face.detector_score);
        yaws.push(face.pose.yaw);
        pitches.push(face.pose.pitch);
        sharpness.push(face.sharpness);
        heights.push(face.bbox.height());
        analysed.push((path, id, pixels, face));
    }
    println!("== {} photos with a face", analysed.len());
    summary("detector score", &mut scores);
    summary("yaw (deg)", &mut yaws);
    summary("pitch (deg)", &mut pitches);
    summary("sharpness (var. of Laplacian, aligned 112px)", &mut sharpness);
    summary("face box height (px)", &mut heights);

    // Labelled pairs only: deepface's master.csv (its unlisted pairs may be the same
    // person), every pair of selfies (folder = person), and deepface x selfies
    // (two unrelated sets).
    let labelled: std::collections::HashSet<(String, String)> = csv
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some((f.first()?.to_string(), f.get(1)?.to_string()))
        })
        .collect();
    let file = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().to_string();
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    for i in 0..analysed.len() {
        for j in i + 1..analysed.len() {
            let (a, b) = (&analysed[i], &analysed[j]);
            let both_deepface = a.1.starts_with("deepface") && b.1.starts_with("deepface");
            if both_deepface
                && !labelled.contains(&(file(&a.0), file(&b.0)))
                && !labelled.contains(&(file(&b.0), file(&a.0)))
            {
                continue;
            }
            let s = a.3.embedding.cosine(&b.3.embedding);
            if a.1 == b.1 {
                genuine.push(s)
            } else {
                impostor.push(s);
                if s > 0.3 {
                    println!("high impostor {s:.3}: {} vs {}", a.0.display(), b.0.display());
                }
            }
        }
    }
    println!("== labelled pairs");
    summary("genuine", &mut genuine);
    summary("impostor", &mut impostor);
    for t in [0.25f32, 0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60] {
        let far = impostor.iter().filter(|&&s| s >= t).count() as f32 / impostor.len() as f32;
        let frr = genuine.iter().filter(|&&s| s < t).count() as f32 / genuine.len() as f32;
        println!(
            "threshold {t:.2}: FAR {:.4}% ({} of {}), FRR {:.2}% ({} of {})",
            far * 100.0,
            impostor.iter().filter(|&&s| s >= t).count(),
            impostor.len(),
            frr * 100.0,
            genuine.iter().filter(|&&s| s < t).count(),
            genuine.len()
        );
    }

    if std::env::args().any(|a| a == "--pairs-only") {
        return;
    }
    // Blur: similarity to the sharp original against the sharpness of the blurred face.
    println!("== blur (Gaussian sigma relative to face height)");
    let mut by_sigma: BTreeMap<String, (Vec<f32>, Vec<f32>)> = BTreeMap::new();
    for (_, _, pixels, face) in &analysed {
        for rel in [0.01f32, 0.02, 0.03, 0.05, 0.08] {
            let sigma = rel * face.bbox.height();
            let blurred = image::imageops::blur(pixels, sigma);
            if let Some(b) = largest(analyzer.analyze(&blurred, 40.0, false).expect("analysis")) {
                let e = by_sigma.entry(format!("{rel:.2}")).or_default();
                e.0.push(b.sharpness);
                e.1.push(b.embedding.cosine(&face.embedding));
            }
        }
    }
    for (rel, (mut sharp, mut cos)) in by_sigma {
        summary(&format!("sigma {rel} x face: sharpness"), &mut sharp);
        summary(&format!("sigma {rel} x face: cosine to sharp"), &mut cos);
    }

    // Size: the same photos downscaled so the face is N pixels tall.
    println!("== face size (photo downscaled)");
    for target in [24.0f32, 32.0, 40.0, 56.0, 80.0, 112.0] {
        let (mut cos, mut sharp, mut found) = (Vec::new(), Vec::new(), 0);
        for (_, _, pixels, face) in &analysed {
            let scale = target / face.bbox.height();
            if scale >= 1.0 {
                continue;
            }
            let (w, h) = ((pixels.width() as f32 * scale) as u32, (pixels.height() as f32 * scale) as u32);
            let small = image::imageops::resize(pixels, w.max(1), h.max(1), image::imageops::FilterType::Triangle);
            if let Some(s) = largest(analyzer.analyze(&small, 20.0, false).expect("analysis")) {
                found += 1;
                cos.push(s.embedding.cosine(&face.embedding));
                sharp.push(s.sharpness);
            }
        }
        print!("face {target}px: detected {found}; ");
        summary("cosine to full size", &mut cos);
        summary(&format!("face {target}px: sharpness"), &mut sharp);
    }
}
