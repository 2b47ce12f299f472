//! The embedding model (`fr_feature`): a 512-d vector of the face aligned onto the
//! 112x112 template.

use image::RgbImage;
use ort::value::TensorRef;

use super::super::{FaceEmbedding, VisionError};
use super::{FaceAnalyzer, ModelSpec};

pub(super) const ALIGNED_SIDE: u32 = 112;

pub(super) const EMBEDDER: ModelSpec =
    ModelSpec { file: "fr_feature.onnx", sha256: "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581" };

impl FaceAnalyzer {
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
