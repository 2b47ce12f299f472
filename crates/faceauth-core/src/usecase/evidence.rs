//! Turns measured faces into the policy's evidence vocabulary.

use crate::policy::{Face, FaceBox, Frame, FrameSummary, HeadPose, ImageSize, MotionSummary};
use crate::vision::geometry::affine_residual;
use crate::vision::{AnalyzedFace, FaceEmbedding};
use faceauth_evidence_summary::{FrameFaces, frame_summary, median, no_motion};

/// Policy view of analysed faces (already largest first); `similarity` is to
/// `reference`, or to the primary face when there is none (enrollment).
pub fn faces(analyzed: &[AnalyzedFace], image: ImageSize, reference: Option<&FaceEmbedding>) -> Vec<Face> {
    let image_area = (image.width as f32 * image.height as f32).max(1.0);
    let Some(primary) = analyzed.first() else { return Vec::new() };
    let reference = reference.unwrap_or(&primary.embedding);
    let primary_height = primary.bbox.height().max(1.0);
    analyzed
        .iter()
        .map(|f| Face {
            detector_score: f.detector_score,
            face_box: FaceBox { x: f.bbox.x1, y: f.bbox.y1, width: f.bbox.width(), height: f.bbox.height() },
            relative_area: f.bbox.area() / image_area,
            relative_size: f.bbox.height() / primary_height,
            sharpness: f.sharpness,
            pose: HeadPose { yaw: f.pose.yaw, pitch: f.pose.pitch, roll: f.pose.roll },
            similarity: f.embedding.cosine(reference),
            liveness: f.liveness,
            eyes_open: f.eyes_open,
            brightness: Some(f.brightness),
        })
        .collect()
}

/// The clip's face track: for each frame, the cosine of its primary face to the
/// primary face of each earlier frame (`None` where either has no face). See
/// `earlier-similarities` in wit/policy.wit.
pub fn earlier_similarities(primaries: &[Option<&AnalyzedFace>]) -> Vec<Vec<Option<f32>>> {
    primaries
        .iter()
        .enumerate()
        .map(|(j, face)| {
            primaries[..j]
                .iter()
                .map(|earlier| Some(earlier.as_ref()?.embedding.cosine(&face.as_ref()?.embedding)))
                .collect()
        })
        .collect()
}

/// Eyes count as closed under this open probability and as open over the other;
/// in between is undecided, so noise around 0.5 does not make blinks.
const EYES_CLOSED_BELOW: f32 = 0.3;
const EYES_OPEN_ABOVE: f32 = 0.7;

/// No movement measured: a still image, or fewer than two frames with a face.
pub const NO_MOTION: MotionSummary = no_motion!(MotionSummary);

/// Movement of the primary face over the frames (in time order; `None` for a frame
/// without a face). See `motion-summary` in wit/policy.wit.
pub fn motion(primaries: &[Option<&AnalyzedFace>]) -> MotionSummary {
    let faces: Vec<&AnalyzedFace> = primaries.iter().flatten().copied().collect();
    if faces.len() < 2 {
        return NO_MOTION;
    }
    let range = |value: fn(&AnalyzedFace) -> f32| {
        let (lo, hi) = faces.iter().map(|f| value(f)).fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        hi - lo
    };
    let mut displacement = Vec::new();
    let mut residual = Vec::new();
    for pair in faces.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let height = ((a.bbox.height() + b.bbox.height()) / 2.0).max(1.0);
        let moved = a.landmarks.iter().zip(&b.landmarks).map(|(p, q)| (p.x - q.x).hypot(p.y - q.y)).sum::<f32>()
            / a.landmarks.len() as f32;
        displacement.push(moved / height);
        if let Some(r) = affine_residual(&a.landmarks, &b.landmarks) {
            residual.push(r / height);
        }
    }
    MotionSummary {
        pairs: displacement.len() as u32,
        blinks: count_blinks(faces.iter().filter_map(|f| f.eyes_open)),
        yaw_range: range(|f| f.pose.yaw),
        pitch_range: range(|f| f.pose.pitch),
        landmark_motion: median(&mut displacement).unwrap_or(0.0),
        non_rigid_motion: median(&mut residual).unwrap_or(0.0),
    }
}

/// Closures of open eyes: a value under `EYES_CLOSED_BELOW` after one over `EYES_OPEN_ABOVE`.
fn count_blinks(eyes_open: impl Iterator<Item = f32>) -> u32 {
    let mut seen_open = false;
    let mut blinks = 0;
    for p in eyes_open {
        if p > EYES_OPEN_ABOVE {
            seen_open = true;
        } else if p < EYES_CLOSED_BELOW && seen_open {
            blinks += 1;
            seen_open = false;
        }
    }
    blinks
}

/// Host-computed aggregates over frames (see `frame-summary` in wit/policy.wit);
/// the similarity figures are the shared rule of `faceauth-evidence-summary`.
pub fn summarize(frames: &[Frame], motion: MotionSummary) -> FrameSummary {
    let summary = faceauth_evidence_summary::summarize(frames.iter().map(|f| FrameFaces {
        primary_similarity: f.faces.first().map(|p| p.similarity),
        other_relative_sizes: f.faces.iter().skip(1).map(|o| o.relative_size),
    }));
    frame_summary!(FrameSummary, summary, motion)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(height: f32, relative_size: f32, similarity: f32) -> Face {
        Face {
            detector_score: 1.0,
            face_box: FaceBox { x: 0.0, y: 0.0, width: height, height },
            relative_area: 0.1,
            relative_size,
            sharpness: 100.0,
            pose: HeadPose { yaw: 0.0, pitch: 0.0, roll: 0.0 },
            similarity,
            liveness: None,
            eyes_open: None,
            brightness: Some(0.5),
        }
    }

    #[test]
    fn summary_counts_frames_and_orders_similarities() {
        let frames = vec![
            Frame { timestamp_ms: 0, faces: vec![face(100.0, 1.0, 0.7)], earlier_similarities: vec![] },
            Frame { timestamp_ms: 100, faces: vec![], earlier_similarities: vec![] },
            Frame {
                timestamp_ms: 200,
                faces: vec![face(100.0, 1.0, 0.2), face(80.0, 0.8, 0.9)],
                earlier_similarities: vec![],
            },
            Frame {
                timestamp_ms: 300,
                faces: vec![face(100.0, 1.0, 0.5), face(20.0, 0.2, 0.1)],
                earlier_similarities: vec![],
            },
        ];
        let s = summarize(&frames, NO_MOTION);
        assert_eq!((s.frames, s.frames_with_face, s.frames_with_single_face), (4, 3, 2));
        assert_eq!((s.best_similarity, s.median_similarity, s.worst_similarity), (Some(0.7), Some(0.5), Some(0.2)));
        let empty = summarize(&[Frame { timestamp_ms: 0, faces: vec![], earlier_similarities: vec![] }], NO_MOTION);
        assert_eq!((empty.frames_with_face, empty.median_similarity), (0, None));
    }

    #[test]
    fn blinks_need_open_eyes_before_the_closure() {
        let count = |v: &[f32]| count_blinks(v.iter().copied());
        assert_eq!(count(&[0.9, 0.1, 0.9, 0.95, 0.2, 0.8]), 2);
        // Closed from the start, or hovering around 0.5: no blink.
        assert_eq!(count(&[0.1, 0.1, 0.9]), 0);
        assert_eq!(count(&[0.6, 0.4, 0.6, 0.35, 0.65]), 0);
        // One long closure is one blink.
        assert_eq!(count(&[0.9, 0.1, 0.05, 0.2, 0.9]), 1);
    }
}
