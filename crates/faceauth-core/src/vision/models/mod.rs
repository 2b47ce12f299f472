//! The ONNX models of the pipeline and their pre- and post-processing.
//! Shapes and normalisation follow the npm package `faceplugin-face-recognition-js`
//! (see `models/README.md`).
//!
//! One file per model, with its pinned file, its input size and its pre- and
//! post-processing: `detector`, `landmarks`, `embedding`, `liveness` (MiniFASNet) and
//! `eyes` (eye state). Here what they share: the pinned files checked, the sessions
//! loaded, and a face measured by them in turn.

mod detector;
mod embedding;
mod eyes;
mod landmarks;
mod liveness;

use std::path::{Path, PathBuf};

use image::RgbImage;
use ort::{
    environment::Environment,
    session::{Session, builder::GraphOptimizationLevel},
};
use sha2::{Digest, Sha256};

use super::geometry::{self, Detection, TEMPLATE_112, five_points, similarity_transform, warp_affine};
use super::{AnalyzedFace, VisionError};
use crate::telemetry::{self, Stage};
use detector::DETECTOR;
use embedding::{ALIGNED_SIDE, EMBEDDER};
use eyes::EYE_STATE;
use landmarks::LANDMARKS;
use liveness::{LIVENESS_V1SE, LIVENESS_V2};

/// At most this many faces (the largest) are analysed in one picture.
const MAX_FACES: usize = 8;

/// One pinned model file.
struct ModelSpec {
    file: &'static str,
    sha256: &'static str,
}

/// The model files, checked against their pinned sha256 once at start-up.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub detector: PathBuf,
    pub landmarks: PathBuf,
    pub embedder: PathBuf,
    /// MiniFASNet V2 (crop 2.7x) and V1SE (crop 4.0x).
    pub liveness: [PathBuf; 2],
    /// Eye state (open / closed), a video liveness cue.
    pub eye_state: PathBuf,
    /// Identifies the embedding space; templates from another model are not comparable.
    pub embedding_model_version: String,
}

impl ModelFiles {
    pub fn verify(dir: &Path) -> Result<Self, VisionError> {
        let check = |spec: &ModelSpec| -> Result<PathBuf, VisionError> {
            let path = dir.join(spec.file);
            let bytes = std::fs::read(&path)
                .map_err(|e| VisionError::ModelLoad { path: path.display().to_string(), message: e.to_string() })?;
            let found = format!("{:x}", Sha256::digest(&bytes));
            if found != spec.sha256 {
                return Err(VisionError::ModelChecksum {
                    path: path.display().to_string(),
                    expected: spec.sha256.to_string(),
                    found,
                });
            }
            Ok(path)
        };
        Ok(Self {
            detector: check(&DETECTOR)?,
            landmarks: check(&LANDMARKS)?,
            embedder: check(&EMBEDDER)?,
            liveness: [check(&LIVENESS_V2)?, check(&LIVENESS_V1SE)?],
            eye_state: check(&EYE_STATE)?,
            embedding_model_version: format!("fr_feature@{}", &EMBEDDER.sha256[..12]),
        })
    }
}

/// One set of sessions; not shareable between threads at once (`Session::run`
/// takes `&mut self`), hence the pool.
pub struct FaceAnalyzer {
    detector: Session,
    landmarks: Session,
    embedder: Session,
    /// Loaded only when the policy requires liveness.
    liveness: Option<LivenessModels>,
}

struct LivenessModels {
    /// MiniFASNet V2 and V1SE, in the order of `LIVENESS_SCALES`.
    passive: [Session; 2],
    eye_state: Session,
}

/// ONNX Runtime's graph optimisation per model, measured (one thread, 2-core Xeon
/// with AVX-512, ORT 1.31): its top level re-lays convolutions out in blocked NCHWc,
/// which makes `fr_feature` 3x slower (57 ms instead of 18.8 ms per face; its many
/// small depthwise/pointwise convolutions on 7x7-28x28 maps) but the detector (2.0
/// vs 5.6 ms), the landmarks (0.31 vs 0.98 ms), the liveness (1.9 vs 2.1 ms) and eye
/// models faster. `python3 scripts/bench/ort_levels.py` measures it again.
const EMBEDDER_OPTIMIZATION: GraphOptimizationLevel = GraphOptimizationLevel::Level2;
const OTHER_OPTIMIZATION: GraphOptimizationLevel = GraphOptimizationLevel::Level3;

fn load_session(env: &Environment, path: &Path, level: GraphOptimizationLevel) -> Result<Session, VisionError> {
    let load = || -> ort::Result<Session> {
        Session::builder(env)?
            .with_optimization_level(level)?
            .with_intra_threads(1)?
            .with_inter_threads(1)?
            .commit_from_file(path)
    };
    load().map_err(|e| VisionError::ModelLoad { path: path.display().to_string(), message: e.to_string() })
}

impl FaceAnalyzer {
    pub fn load(env: &Environment, files: &ModelFiles, with_liveness: bool) -> Result<Self, VisionError> {
        let liveness = if with_liveness {
            Some(LivenessModels {
                passive: [
                    load_session(env, &files.liveness[0], OTHER_OPTIMIZATION)?,
                    load_session(env, &files.liveness[1], OTHER_OPTIMIZATION)?,
                ],
                eye_state: load_session(env, &files.eye_state, OTHER_OPTIMIZATION)?,
            })
        } else {
            None
        };
        Ok(Self {
            detector: load_session(env, &files.detector, OTHER_OPTIMIZATION)?,
            landmarks: load_session(env, &files.landmarks, OTHER_OPTIMIZATION)?,
            embedder: load_session(env, &files.embedder, EMBEDDER_OPTIMIZATION)?,
            liveness,
        })
    }

    /// Every face in the picture (largest first, at most `MAX_FACES`), fully measured;
    /// liveness and eye state only when asked for (and loaded).
    pub fn analyze(
        &mut self,
        image: &RgbImage,
        min_face_px: f32,
        with_liveness: bool,
    ) -> Result<Vec<AnalyzedFace>, VisionError> {
        let mut detections = telemetry::timed(Stage::Detect, || self.detect(image, min_face_px))?;
        detections.sort_by(|a, b| b.bbox.area().total_cmp(&a.bbox.area()));
        detections.truncate(MAX_FACES);
        let mut faces = Vec::with_capacity(detections.len());
        for detection in detections {
            if let Some(face) = self.measure(image, detection, with_liveness)? {
                faces.push(face);
            }
        }
        Ok(faces)
    }

    /// Landmarks, alignment, quality and embedding of one detected face; `None` when
    /// the landmarks are degenerate (no alignment possible).
    fn measure(
        &mut self,
        image: &RgbImage,
        detection: Detection,
        with_liveness: bool,
    ) -> Result<Option<AnalyzedFace>, VisionError> {
        let aligned = telemetry::timed(Stage::Landmarks, || {
            let landmarks = self.landmarks(image, &detection.bbox)?;
            // Plain least squares over all five points, as the embedder was trained: a
            // robust fit on 2-3 inliers (tried before) rotated and scaled faces with an
            // open mouth or some yaw wrongly and cost 3 points of accuracy on LFW pairs.
            let aligned = similarity_transform(&five_points(&landmarks), &TEMPLATE_112)
                .and_then(|transform| warp_affine(image, &transform, ALIGNED_SIDE));
            Ok::<_, VisionError>(aligned.map(|aligned| (landmarks, aligned)))
        })?;
        let Some((landmarks, aligned)) = aligned else {
            return Ok(None);
        };
        let Some(embedding) = telemetry::timed(Stage::Embed, || self.embed(&aligned))? else {
            return Ok(None);
        };
        let (liveness, eyes_open) = if with_liveness {
            telemetry::timed(Stage::Liveness, || {
                Ok::<_, VisionError>((self.liveness(image, &detection.bbox)?, self.eyes_open(image, &landmarks)?))
            })?
        } else {
            (None, None)
        };
        Ok(Some(AnalyzedFace {
            liveness,
            eyes_open,
            bbox: detection.bbox,
            detector_score: detection.score,
            sharpness: geometry::laplacian_variance(&aligned),
            brightness: geometry::mean_luma(&aligned),
            pose: geometry::estimate_pose(&landmarks),
            landmarks,
            embedding,
        }))
    }
}
