//! `faceauth inspect`: the evidence a policy would get from each file.

use anyhow::Context;
use faceauth_core::usecase::{FaceEngine, face_evidence};

use super::progress_bar;
use crate::config::InspectArgs;

/// Prints the enrollment evidence of each file and the default decision, as JSON lines.
pub async fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let engine = FaceEngine::init(&args.engine)?;
    // One file needs no bar; stdout stays the JSON lines either way.
    let bar =
        if args.files.len() > 1 { progress_bar(args.files.len(), "files") } else { indicatif::ProgressBar::hidden() };
    let mut failed = 0;
    for file in &args.files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let line = match engine.analyze_upload(bytes).await {
            Ok((image, analyzed)) => {
                let faces = face_evidence(&analyzed, image, None);
                serde_json::json!({
                    "file": file.display().to_string(),
                    "width": image.width,
                    "height": image.height,
                    "faces": faces.iter().map(|f| serde_json::json!({
                        "detector_score": f.detector_score,
                        "box": [f.face_box.x, f.face_box.y, f.face_box.width, f.face_box.height],
                        "relative_size": f.relative_size,
                        "sharpness": f.sharpness,
                        "yaw": f.pose.yaw, "pitch": f.pose.pitch, "roll": f.pose.roll,
                        "similarity_to_primary": f.similarity,
                    })).collect::<Vec<_>>(),
                })
            }
            Err(e) => {
                failed += 1;
                serde_json::json!({"file": file.display().to_string(), "error": e.to_string()})
            }
        };
        bar.suspend(|| println!("{line}"));
        bar.inc(1);
    }
    bar.finish_and_clear();
    // A script must see that nothing was analysed (issue 21: it exited 0).
    anyhow::ensure!(failed < args.files.len(), "none of the {} files could be analysed", args.files.len());
    Ok(())
}
