//! Turns measured faces into the policy's evidence vocabulary.

use crate::policy::{Face, FaceBox, Frame, FrameSummary, HeadPose, ImageSize};
use crate::vision::{AnalyzedFace, FaceEmbedding};

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
        })
        .collect()
}

/// A face at least this large relative to the primary counts as a second face in
/// `frames-with-single-face`.
const SECOND_FACE_RELATIVE_SIZE: f32 = 0.5;

/// Host-computed aggregates over frames (see `frame-summary` in wit/policy.wit).
pub fn summarize(frames: &[Frame]) -> FrameSummary {
    let mut similarities: Vec<f32> = frames.iter().filter_map(|f| f.faces.first().map(|p| p.similarity)).collect();
    similarities.sort_by(f32::total_cmp);
    let single = frames
        .iter()
        .filter(|f| !f.faces.is_empty() && f.faces.iter().skip(1).all(|o| o.relative_size < SECOND_FACE_RELATIVE_SIZE))
        .count();
    let median = match similarities.len() {
        0 => None,
        n if n % 2 == 1 => Some(similarities[n / 2]),
        n => Some((similarities[n / 2 - 1] + similarities[n / 2]) / 2.0),
    };
    FrameSummary {
        frames: frames.len() as u32,
        frames_with_face: similarities.len() as u32,
        frames_with_single_face: single as u32,
        best_similarity: similarities.last().copied(),
        median_similarity: median,
        worst_similarity: similarities.first().copied(),
    }
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
        }
    }

    #[test]
    fn summary_counts_frames_and_orders_similarities() {
        let frames = vec![
            Frame { timestamp_ms: 0, faces: vec![face(100.0, 1.0, 0.7)] },
            Frame { timestamp_ms: 100, faces: vec![] },
            Frame { timestamp_ms: 200, faces: vec![face(100.0, 1.0, 0.2), face(80.0, 0.8, 0.9)] },
            Frame { timestamp_ms: 300, faces: vec![face(100.0, 1.0, 0.5), face(20.0, 0.2, 0.1)] },
        ];
        let s = summarize(&frames);
        assert_eq!((s.frames, s.frames_with_face, s.frames_with_single_face), (4, 3, 2));
        assert_eq!((s.best_similarity, s.median_similarity, s.worst_similarity), (Some(0.7), Some(0.5), Some(0.2)));
        let empty = summarize(&[Frame { timestamp_ms: 0, faces: vec![] }]);
        assert_eq!((empty.frames_with_face, empty.median_similarity), (0, None));
    }
}
