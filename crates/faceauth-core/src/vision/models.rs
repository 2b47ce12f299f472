//! The three ONNX models of the pipeline and their pre- and post-processing.
//! Shapes and normalisation follow the npm package `faceplugin-face-recognition-js`
//! (see `models/README.md`).

use std::path::{Path, PathBuf};

use image::{RgbImage, imageops::FilterType};
use ort::{
    environment::Environment,
    session::{Session, builder::GraphOptimizationLevel},
    value::TensorRef,
};
use sha2::{Digest, Sha256};

use super::geometry::{
    self, BoundingBox, Detection, Point, TEMPLATE_112, five_points, non_max_suppression, similarity_transform,
    warp_affine,
};
use super::{AnalyzedFace, FaceEmbedding, VisionError};
use crate::telemetry::{self, Stage};

const DETECTOR_W: u32 = 320;
const DETECTOR_H: u32 = 240;
const LANDMARK_SIDE: u32 = 64;
const ALIGNED_SIDE: u32 = 112;
const SCORE_THRESHOLD: f32 = 0.6;
const NMS_IOU: f32 = 0.4;
const NMS_CONTAINMENT: f32 = 0.7;
/// Tiles overlap by more than the largest face a fine pyramid level is responsible
/// for (larger ones are found on the coarser level), so every such face lies whole
/// in some tile.
const TILE_OVERLAP: u32 = 64;
/// Faces under this share of the largest face's height are not searched for on
/// finer pyramid levels: below every policy's second-face ratio (default 0.45,
/// strict 0.25, ghost portraits 0.6).
const SECONDARY_FACE_MIN_RELATIVE: f32 = 0.25;
/// Face side, in detector pixels, at which the detector is still reliable.
const DETECTOR_MIN_FACE: f32 = 24.0;
/// At most this many faces (the largest) are analysed in one picture.
const MAX_FACES: usize = 8;

/// One pinned model file.
struct ModelSpec {
    file: &'static str,
    sha256: &'static str,
}

const DETECTOR: ModelSpec =
    ModelSpec { file: "fr_detect.onnx", sha256: "6c0256ccd3164f844736a401faf936ec2930764a87ae39442180887d0c5c8854" };
const LANDMARKS: ModelSpec =
    ModelSpec { file: "fr_landmark.onnx", sha256: "f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258" };
const EMBEDDER: ModelSpec =
    ModelSpec { file: "fr_feature.onnx", sha256: "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581" };

const LIVENESS_V2: ModelSpec = ModelSpec {
    file: "minifasnet_v2_2.7.onnx",
    sha256: "6a33fd07588033e3ac79587a6f1f8788e1f097ecaf7b7a13b1feec2fc0307d80",
};
const LIVENESS_V1SE: ModelSpec = ModelSpec {
    file: "minifasnet_v1se_4.0.onnx",
    sha256: "abc29f2dc50a01a51a85a372466dfe382d5e1359e4263b6049f36695326f3fe5",
};
const EYE_STATE: ModelSpec =
    ModelSpec { file: "fr_eye.onnx", sha256: "1afcea006abc1ccac3c517022abde0aa092bed74ff3c9fe6878483ef9e6e38de" };
const EYE_SIDE: u32 = 24;
/// Eye crop side relative to the eye's corner-to-corner width (the package's `padding_rate`).
const EYE_CROP_SCALE: f32 = 1.6;

/// Crop scales around the face box that the two liveness models were trained with.
const LIVENESS_SCALES: [f32; 2] = [2.7, 4.0];
const LIVENESS_SIDE: u32 = 80;

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
/// models faster. `python3 bench/ort_levels.py` measures it again.
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

    /// Aspect-preserving pyramid: the whole picture letterboxed into the detector
    /// input, then finer levels (x2 each) cut into overlapping tiles, down to the
    /// scale where a `min_face_px` face spans `DETECTOR_MIN_FACE` detector pixels.
    pub fn detect(&mut self, image: &RgbImage, min_face_px: f32) -> Result<Vec<Detection>, VisionError> {
        let (w, h) = (image.width() as f32, image.height() as f32);
        if w < 1.0 || h < 1.0 {
            return Ok(Vec::new());
        }
        let coarse = (DETECTOR_W as f32 / w).min(DETECTOR_H as f32 / h);
        let finest = (DETECTOR_MIN_FACE / min_face_px.max(1.0)).min(1.0);
        let mut scales = vec![coarse];
        let mut scale = coarse;
        while scale < finest / 1.3 {
            scale = (scale * 2.0).min(finest);
            scales.push(scale);
        }
        let mut found: Vec<Detection> = Vec::new();
        for (level, &scale) in scales.iter().enumerate() {
            // A fine level only reports faces up to TILE_OVERLAP detector pixels; once
            // those are under SECONDARY_FACE_MIN_RELATIVE of the largest face found,
            // no finer level can find a face that matters (a 40 px face beside a 900 px
            // selfie does not), so a selfie's cost does not grow with its megapixels.
            let largest = found.iter().map(|d| d.bbox.height()).fold(0.0f32, f32::max);
            if level > 0 && TILE_OVERLAP as f32 / scale < SECONDARY_FACE_MIN_RELATIVE * largest {
                break;
            }
            let lw = ((w * scale).round() as u32).max(1);
            let lh = ((h * scale).round() as u32).max(1);
            let resized;
            let level_image = if lw == image.width() && lh == image.height() {
                image
            } else {
                resized = geometry::resize_triangle(image, lw, lh)
                    .unwrap_or_else(|| image::imageops::resize(image, lw, lh, FilterType::Triangle));
                &resized
            };
            let (sx, sy) = (w / lw as f32, h / lh as f32);
            for (ox, oy) in tile_origins(lw, lh) {
                for d in self.run_detector(level_image, ox, oy)? {
                    // A fine level only answers for faces too small for the coarser one
                    // (larger ones there are partial views); a face cut by an inner tile
                    // edge is whole in the neighbouring tile.
                    let b = d.bbox;
                    if level > 0 && b.width().max(b.height()) > TILE_OVERLAP as f32 {
                        continue;
                    }
                    let cut = level > 0
                        && ((ox > 0 && b.x1 <= ox as f32 + 1.0)
                            || (oy > 0 && b.y1 <= oy as f32 + 1.0)
                            || (ox + DETECTOR_W < lw && b.x2 >= (ox + DETECTOR_W) as f32 - 1.0)
                            || (oy + DETECTOR_H < lh && b.y2 >= (oy + DETECTOR_H) as f32 - 1.0));
                    if cut {
                        continue;
                    }
                    found.push(Detection {
                        bbox: BoundingBox {
                            x1: (b.x1 * sx).clamp(0.0, w),
                            y1: (b.y1 * sy).clamp(0.0, h),
                            x2: (b.x2 * sx).clamp(0.0, w),
                            y2: (b.y2 * sy).clamp(0.0, h),
                        },
                        score: d.score,
                    });
                }
            }
        }
        found.retain(|d| d.bbox.width() >= 2.0 && d.bbox.height() >= 2.0);
        Ok(non_max_suppression(found, NMS_IOU, NMS_CONTAINMENT))
    }

    /// Runs the detector on the 320x240 window at (ox, oy) of `image` (padded with
    /// mid-grey, which normalises to 0); boxes come back in `image` pixels.
    fn run_detector(&mut self, image: &RgbImage, ox: u32, oy: u32) -> Result<Vec<Detection>, VisionError> {
        let (dw, dh) = (DETECTOR_W as usize, DETECTOR_H as usize);
        let plane = dw * dh;
        let mut input = vec![0f32; 3 * plane];
        let x_end = (ox + DETECTOR_W).min(image.width());
        let y_end = (oy + DETECTOR_H).min(image.height());
        for y in oy..y_end {
            for x in ox..x_end {
                let p = image.get_pixel(x, y).0;
                let i = (y - oy) as usize * dw + (x - ox) as usize;
                for c in 0..3 {
                    input[c * plane + i] = (p[c] as f32 - 127.0) / 128.0;
                }
            }
        }
        let outputs = self
            .detector
            .run(ort::inputs!["input" => TensorRef::from_array_view(([1usize, 3, dh, dw], &input[..]))?])?;
        let (_, scores) = outputs["scores"].try_extract_tensor::<f32>()?;
        let (_, boxes) = outputs["boxes"].try_extract_tensor::<f32>()?;
        let mut detections = Vec::new();
        for (i, pair) in scores.chunks_exact(2).enumerate() {
            let score = pair[1];
            if score < SCORE_THRESHOLD {
                continue;
            }
            let Some(b) = boxes.get(i * 4..i * 4 + 4) else { break };
            detections.push(Detection {
                bbox: BoundingBox {
                    x1: b[0] * DETECTOR_W as f32 + ox as f32,
                    y1: b[1] * DETECTOR_H as f32 + oy as f32,
                    x2: b[2] * DETECTOR_W as f32 + ox as f32,
                    y2: b[3] * DETECTOR_H as f32 + oy as f32,
                },
                score,
            });
        }
        Ok(non_max_suppression(detections, NMS_IOU, 1.0))
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

    /// 68 landmarks from the grey 64x64 crop of the box, in image pixels.
    pub fn landmarks(&mut self, image: &RgbImage, bbox: &BoundingBox) -> Result<[Point; 68], VisionError> {
        let x0 = (bbox.x1.max(0.0) as u32).min(image.width().saturating_sub(1));
        let y0 = (bbox.y1.max(0.0) as u32).min(image.height().saturating_sub(1));
        let cw = ((bbox.x2 as u32).min(image.width()).saturating_sub(x0)).max(1);
        let ch = ((bbox.y2 as u32).min(image.height()).saturating_sub(y0)).max(1);
        let crop = image::imageops::crop_imm(image, x0, y0, cw, ch).to_image();
        // The same triangle filter with SIMD: a 900 px face's crop cost ~20 ms before.
        let crop = geometry::resize_triangle(&crop, LANDMARK_SIDE, LANDMARK_SIDE)
            .unwrap_or_else(|| image::imageops::resize(&crop, LANDMARK_SIDE, LANDMARK_SIDE, FilterType::Triangle));
        let input: Vec<f32> = crop.pixels().map(|p| geometry::luma(p) / 256.0).collect();
        let side = LANDMARK_SIDE as usize;
        let outputs = self
            .landmarks
            .run(ort::inputs!["input" => TensorRef::from_array_view(([1usize, 1, side, side], &input[..]))?])?;
        let (_, values) = outputs["output"].try_extract_tensor::<f32>()?;
        if values.len() < 136 {
            return Err(VisionError::Inference(format!("landmark model returned {} values", values.len())));
        }
        let mut points = [Point { x: 0.0, y: 0.0 }; 68];
        for (i, p) in points.iter_mut().enumerate() {
            p.x = values[2 * i] * cw as f32 + x0 as f32;
            p.y = values[2 * i + 1] * ch as f32 + y0 as f32;
        }
        Ok(points)
    }

    /// Fused MiniFASNet live probability of the face in `bbox`; `None` when the
    /// liveness models are not loaded. Each model sees the box scaled by its crop
    /// scale around the centre, kept inside the image, resized to 80x80, BGR 0-255.
    pub fn liveness(&mut self, image: &RgbImage, bbox: &BoundingBox) -> Result<Option<f32>, VisionError> {
        let Some(models) = self.liveness.as_mut() else { return Ok(None) };
        let sessions = &mut models.passive;
        let (w, h) = (image.width() as f32, image.height() as f32);
        let (bw, bh) = (bbox.width().max(1.0), bbox.height().max(1.0));
        let side = LIVENESS_SIDE as usize;
        let plane = side * side;
        // Geometric mean of the two models' live probabilities: at the same BPCER it
        // lets 3 fewer of 233 attacks through than the arithmetic mean.
        let mut live = 1.0f32;
        for (session, &wanted) in sessions.iter_mut().zip(&LIVENESS_SCALES) {
            let scale = wanted.min((h - 1.0) / bh).min((w - 1.0) / bw).max(0.0);
            let (nw, nh) = (bw * scale, bh * scale);
            let (cx, cy) = (bbox.x1 + bw / 2.0, bbox.y1 + bh / 2.0);
            let x0 = (cx - nw / 2.0).clamp(0.0, (w - nw).max(0.0));
            let y0 = (cy - nh / 2.0).clamp(0.0, (h - nh).max(0.0));
            let crop = image::imageops::crop_imm(
                image,
                x0 as u32,
                y0 as u32,
                (nw as u32).clamp(1, image.width()),
                (nh as u32).clamp(1, image.height()),
            )
            .to_image();
            // Bilinear without anti-aliasing, as the models were trained (OpenCV
            // INTER_LINEAR): an anti-aliased resize smooths away the print and
            // screen texture they look for (ROC AUC 0.966 -> 0.991 on ../shared,
            // scripts/eval/liveness_study).
            let crop = geometry::resize_bilinear(&crop, LIVENESS_SIDE, LIVENESS_SIDE);
            let mut input = vec![0f32; 3 * plane];
            for (i, p) in crop.pixels().enumerate() {
                // BGR planes, raw 0-255, as the models were trained.
                input[i] = p.0[2] as f32;
                input[plane + i] = p.0[1] as f32;
                input[2 * plane + i] = p.0[0] as f32;
            }
            let outputs = session
                .run(ort::inputs!["input" => TensorRef::from_array_view(([1usize, 3, side, side], &input[..]))?])?;
            let (_, probabilities) = outputs["output"].try_extract_tensor::<f32>()?;
            live *= probabilities.get(1).copied().unwrap_or(0.0).clamp(0.0, 1.0);
        }
        Ok(Some(live.powf(1.0 / LIVENESS_SCALES.len() as f32).clamp(0.0, 1.0)))
    }

    /// Probability that the eyes are open: the larger of the two eyes' (a blink shuts
    /// both; one eye in shadow or turned away must not read as shut); `None` when the
    /// liveness models are not loaded. Each eye: a square crop 1.6x its corner-to-corner
    /// width around the mean of its four lid landmarks, grey, 24x24, `px/255`; output
    /// class 1 is "open" (checked on open-eyed photos and on frames of real blinks).
    pub fn eyes_open(&mut self, image: &RgbImage, landmarks: &[Point; 68]) -> Result<Option<f32>, VisionError> {
        let Some(models) = self.liveness.as_mut() else { return Ok(None) };
        let side = EYE_SIDE as usize;
        let mut open: f32 = 0.0;
        // (lid points, corners) of each eye in the 68-point scheme.
        for (lids, corners) in [([37, 38, 40, 41], [36, 39]), ([43, 44, 46, 47], [42, 45])] {
            let cx = lids.iter().map(|&i| landmarks[i].x).sum::<f32>() / 4.0;
            let cy = lids.iter().map(|&i| landmarks[i].y).sum::<f32>() / 4.0;
            let width = (landmarks[corners[1]].x - landmarks[corners[0]].x).abs() * EYE_CROP_SCALE;
            let crop_side = width.max(2.0);
            let x0 = (cx - crop_side / 2.0).clamp(0.0, image.width().saturating_sub(1) as f32) as u32;
            let y0 = (cy - crop_side / 2.0).clamp(0.0, image.height().saturating_sub(1) as f32) as u32;
            let cw = (crop_side as u32).clamp(1, image.width() - x0);
            let ch = (crop_side as u32).clamp(1, image.height() - y0);
            let crop = image::imageops::crop_imm(image, x0, y0, cw, ch).to_image();
            let crop = image::imageops::resize(&crop, EYE_SIDE, EYE_SIDE, FilterType::Triangle);
            let input: Vec<f32> = crop.pixels().map(|p| geometry::luma(p) / 255.0).collect();
            let outputs = models
                .eye_state
                .run(ort::inputs!["input" => TensorRef::from_array_view(([1usize, 1, side, side], &input[..]))?])?;
            let (_, logits) = outputs["output"].try_extract_tensor::<f32>()?;
            let [closed, opened] = [logits.first().copied().unwrap_or(0.0), logits.get(1).copied().unwrap_or(0.0)];
            // Softmax of two logits.
            open = open.max(1.0 / (1.0 + (closed - opened).exp()));
        }
        Ok(Some(open.clamp(0.0, 1.0)))
    }

    /// Embedding of an aligned 112x112 RGB face.
    pub fn embed(&mut self, aligned: &RgbImage) -> Result<Option<FaceEmbedding>, VisionError> {
        let side = ALIGNED_SIDE as usize;
        let plane = side * side;
        let mut input = vec![0f32; 3 * plane];
        for (i, p) in aligned.pixels().enumerate() {
            for c in 0..3 {
                input[c * plane + i] = (p.0[c] as f32 - 127.0) / 128.0;
            }
        }
        let outputs = self
            .embedder
            .run(ort::inputs!["input" => TensorRef::from_array_view(([1usize, 3, side, side], &input[..]))?])?;
        let (_, raw) = outputs["output"].try_extract_tensor::<f32>()?;
        Ok(FaceEmbedding::from_raw(raw))
    }
}

/// Top-left corners of overlapping detector windows covering a `w`x`h` image; one
/// window when it fits.
fn tile_origins(w: u32, h: u32) -> Vec<(u32, u32)> {
    let axis = |len: u32, window: u32| -> Vec<u32> {
        if len <= window {
            return vec![0];
        }
        let step = window - TILE_OVERLAP;
        let mut starts: Vec<u32> = (0..).map(|i| i * step).take_while(|&s| s + window < len).collect();
        starts.push(len - window);
        starts
    };
    let xs = axis(w, DETECTOR_W);
    let ys = axis(h, DETECTOR_H);
    ys.iter().flat_map(|&y| xs.iter().map(move |&x| (x, y))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_image_with_overlap() {
        assert_eq!(tile_origins(300, 200), vec![(0, 0)]);
        let tiles = tile_origins(1000, 500);
        let xs: Vec<u32> = tiles.iter().filter(|t| t.1 == 0).map(|t| t.0).collect();
        assert_eq!(xs, vec![0, 256, 512, 680]);
        assert!(tiles.iter().all(|&(x, y)| x + DETECTOR_W <= 1000 && y + DETECTOR_H <= 500));
        assert!(tiles.contains(&(680, 260)));
    }
}
