//! Turns measured faces into the policy's evidence vocabulary.

use crate::policy::{Face, FaceBox, HeadPose, ImageSize};
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
        })
        .collect()
}
