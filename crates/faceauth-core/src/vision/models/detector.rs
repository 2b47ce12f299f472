//! The face detector (`fr_detect`, 320x240 input): an aspect-preserving pyramid of
//! the picture, cut into overlapping tiles on its finer levels.

use image::{RgbImage, imageops::FilterType};
use ort::value::TensorRef;

use super::super::VisionError;
use super::super::geometry::{self, BoundingBox, Detection, non_max_suppression};
use super::{FaceAnalyzer, ModelSpec};

const DETECTOR_W: u32 = 320;
const DETECTOR_H: u32 = 240;
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

pub(super) const DETECTOR: ModelSpec =
    ModelSpec { file: "fr_detect.onnx", sha256: "6c0256ccd3164f844736a401faf936ec2930764a87ae39442180887d0c5c8854" };

impl FaceAnalyzer {
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
