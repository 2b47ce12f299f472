//! Face analysis with ONNX Runtime: detection on an aspect-preserving pyramid,
//! 68-point landmarks, alignment onto the 112x112 template, quality measures and a
//! 512-d embedding. `VisionPool` runs it off the async runtime on a bounded set of
//! reused sessions.

pub mod geometry;
mod models;
mod pool;

pub use geometry::{BoundingBox, HeadPose, Point};
pub use models::{FaceAnalyzer, ModelFiles};
pub use pool::{Admission, VisionPool};

/// The process's ONNX Runtime environment, loaded from `library` on first use.
/// ONNX Runtime allows one environment per process, so every engine (several in
/// tests) shares it.
pub fn onnx_environment(library: &std::path::Path) -> Result<ort::environment::Environment, VisionError> {
    static ENVIRONMENT: std::sync::Mutex<Option<ort::environment::Environment>> = std::sync::Mutex::new(None);
    let mut slot = ENVIRONMENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(env) = slot.as_ref() {
        return Ok(env.clone());
    }
    let err = |message: String| VisionError::ModelLoad { path: library.display().to_string(), message };
    let env = ort::init_from(library)
        .map_err(|e| err(e.to_string()))?
        .with_name("faceauth")
        .with_telemetry(false)
        .build()
        .map_err(|e| err(e.to_string()))?;
    *slot = Some(env.clone());
    Ok(env)
}

/// An L2-normalised face embedding; similarity between two is their cosine.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceEmbedding(Vec<f32>);

impl FaceEmbedding {
    pub const DIMENSIONS: usize = 512;

    /// Normalises a raw model output; `None` for a wrong length or a zero/NaN vector.
    pub fn from_raw(raw: &[f32]) -> Option<Self> {
        if raw.len() != Self::DIMENSIONS {
            return None;
        }
        let norm = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
        if !norm.is_finite() || norm <= f32::EPSILON {
            return None;
        }
        Some(Self(raw.iter().map(|v| v / norm).collect()))
    }

    pub fn cosine(&self, other: &FaceEmbedding) -> f32 {
        self.0.iter().zip(&other.0).map(|(a, b)| a * b).sum::<f32>().clamp(-1.0, 1.0)
    }

    pub fn values(&self) -> &[f32] {
        &self.0
    }

    /// Little-endian f32s, the storage format.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::DIMENSIONS * 4 {
            return None;
        }
        let raw: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Self::from_raw(&raw)
    }
}

/// Everything measured about one face.
#[derive(Debug, Clone)]
pub struct AnalyzedFace {
    pub bbox: BoundingBox,
    pub detector_score: f32,
    pub landmarks: [Point; 68],
    pub sharpness: f32,
    /// Mean luma of the aligned face, in [0, 1].
    pub brightness: f32,
    pub pose: HeadPose,
    pub embedding: FaceEmbedding,
    /// Fused live probability, when liveness models are loaded.
    pub liveness: Option<f32>,
    /// Probability that both eyes are open, when liveness models are loaded.
    pub eyes_open: Option<f32>,
}

impl AnalyzedFace {
    /// The same face in the coordinates of a picture `k` times larger (the upload, for
    /// a JPEG decoded at reduced scale); measures that do not depend on size stay.
    pub fn scaled(mut self, k: f32) -> Self {
        if k != 1.0 {
            let b = self.bbox;
            self.bbox = BoundingBox { x1: b.x1 * k, y1: b.y1 * k, x2: b.x2 * k, y2: b.y2 * k };
            for p in &mut self.landmarks {
                *p = Point { x: p.x * k, y: p.y * k };
            }
        }
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error("cannot load face model {path}: {message}")]
    ModelLoad { path: String, message: String },
    #[error("face model {path} does not match its recorded sha256 (expected {expected}, found {found})")]
    ModelChecksum { path: String, expected: String, found: String },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("all face-analysis workers are busy")]
    Busy,
}

impl From<ort::Error> for VisionError {
    fn from(e: ort::Error) -> Self {
        VisionError::Inference(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_roundtrips_through_bytes_and_normalises() {
        let raw: Vec<f32> = (0..512).map(|i| (i as f32 * 0.37).sin()).collect();
        let e = FaceEmbedding::from_raw(&raw).expect("valid");
        let norm: f32 = e.values().iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        let back = FaceEmbedding::from_bytes(&e.to_bytes()).expect("valid bytes");
        assert!((e.cosine(&back) - 1.0).abs() < 1e-5);
        assert!(FaceEmbedding::from_raw(&[0.0; 512]).is_none());
        assert!(FaceEmbedding::from_raw(&[1.0; 10]).is_none());
        assert!(FaceEmbedding::from_bytes(&[0u8; 7]).is_none());
    }
}
