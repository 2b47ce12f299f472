//! The eye-state model (`fr_eye`, open or closed), a video liveness cue.

use image::{RgbImage, imageops::FilterType};
use ort::value::TensorRef;

use super::super::VisionError;
use super::super::geometry::{self, Point};
use super::{FaceAnalyzer, ModelSpec};

pub(super) const EYE_STATE: ModelSpec =
    ModelSpec { file: "fr_eye.onnx", sha256: "1afcea006abc1ccac3c517022abde0aa092bed74ff3c9fe6878483ef9e6e38de" };
const EYE_SIDE: u32 = 24;
/// Eye crop side relative to the eye's corner-to-corner width (the package's `padding_rate`).
const EYE_CROP_SCALE: f32 = 1.6;

impl FaceAnalyzer {
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
}
