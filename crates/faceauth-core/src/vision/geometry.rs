//! Pure geometry of the face pipeline: boxes, NMS, the similarity alignment onto the
//! 112x112 template, bilinear warping, sharpness and a landmark-based pose estimate.

use image::RgbImage;

// Pixel operations live with the pictures (`media`); the face pipeline uses them too.
use crate::media::pixels::sample_bilinear;
pub use crate::media::pixels::{laplacian_variance, luma, mean_luma, resize_bilinear, resize_triangle};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

/// Corner box in pixels of the analysed image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundingBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BoundingBox {
    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }
    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }
    pub fn intersection(&self, other: &BoundingBox) -> f32 {
        let w = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let h = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        w * h
    }
    pub fn iou(&self, other: &BoundingBox) -> f32 {
        let inter = self.intersection(other);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
    /// Share of the smaller box covered by the other: catches a partial face
    /// found inside a whole one, which IoU alone lets through.
    pub fn containment(&self, other: &BoundingBox) -> f32 {
        let smaller = self.area().min(other.area());
        if smaller <= 0.0 { 0.0 } else { self.intersection(other) / smaller }
    }
}

/// A scored box, before landmarks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub bbox: BoundingBox,
    pub score: f32,
}

/// Greedy non-maximum suppression by IoU and by containment.
pub fn non_max_suppression(
    mut detections: Vec<Detection>,
    iou_threshold: f32,
    containment_threshold: f32,
) -> Vec<Detection> {
    detections.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for candidate in detections {
        let suppressed = kept.iter().any(|k| {
            k.bbox.iou(&candidate.bbox) > iou_threshold || k.bbox.containment(&candidate.bbox) > containment_threshold
        });
        if !suppressed {
            kept.push(candidate);
        }
    }
    kept
}

/// The standard 112x112 five-point template (eye centres, nose tip, mouth corners).
pub const TEMPLATE_112: [Point; 5] = [
    Point { x: 38.2946, y: 51.6963 },
    Point { x: 73.5318, y: 51.5014 },
    Point { x: 56.0252, y: 71.7366 },
    Point { x: 41.5493, y: 92.3655 },
    Point { x: 70.7299, y: 92.2041 },
];

/// The five alignment points from 68 landmarks: eye centres (mean of 36-41 and
/// 42-47), nose tip (30), mouth corners (48, 54).
pub fn five_points(landmarks: &[Point; 68]) -> [Point; 5] {
    let mean = |range: std::ops::Range<usize>| {
        let n = range.len() as f32;
        let (sx, sy) = landmarks[range].iter().fold((0.0, 0.0), |(sx, sy), p| (sx + p.x, sy + p.y));
        Point { x: sx / n, y: sy / n }
    };
    [mean(36..42), mean(42..48), landmarks[30], landmarks[48], landmarks[54]]
}

/// A 2x3 affine matrix mapping source (image) points to destination points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine(pub [[f32; 3]; 2]);

impl Affine {
    pub fn apply(&self, p: Point) -> Point {
        let m = &self.0;
        Point { x: m[0][0] * p.x + m[0][1] * p.y + m[0][2], y: m[1][0] * p.x + m[1][1] * p.y + m[1][2] }
    }

    pub fn inverse(&self) -> Option<Affine> {
        let m = &self.0;
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        if det.abs() < 1e-12 || !det.is_finite() {
            return None;
        }
        let (a, b, c, d) = (m[0][0] / det, m[0][1] / det, m[1][0] / det, m[1][1] / det);
        let (tx, ty) = (m[0][2], m[1][2]);
        Some(Affine([[d, -b, -(d * tx - b * ty)], [-c, a, -(-c * tx + a * ty)]]))
    }

    /// Isotropic scale of a similarity transform.
    pub fn scale(&self) -> f32 {
        let m = &self.0;
        (m[0][0] * m[1][1] - m[0][1] * m[1][0]).abs().sqrt()
    }
}

/// Least-squares similarity transform (rotation, uniform scale, translation, no
/// reflection) from `src` onto `dst`: Umeyama's estimate, in its closed 2-D form.
pub fn similarity_transform(src: &[Point], dst: &[Point]) -> Option<Affine> {
    let n = src.len().min(dst.len());
    if n < 2 {
        return None;
    }
    let nf = n as f64;
    let (mut msx, mut msy, mut mdx, mut mdy) = (0f64, 0f64, 0f64, 0f64);
    for i in 0..n {
        msx += src[i].x as f64;
        msy += src[i].y as f64;
        mdx += dst[i].x as f64;
        mdy += dst[i].y as f64;
    }
    (msx, msy, mdx, mdy) = (msx / nf, msy / nf, mdx / nf, mdy / nf);
    let (mut num_a, mut num_b, mut den) = (0f64, 0f64, 0f64);
    for i in 0..n {
        let (sx, sy) = (src[i].x as f64 - msx, src[i].y as f64 - msy);
        let (dx, dy) = (dst[i].x as f64 - mdx, dst[i].y as f64 - mdy);
        num_a += sx * dx + sy * dy;
        num_b += sx * dy - sy * dx;
        den += sx * sx + sy * sy;
    }
    if den < 1e-9 {
        return None;
    }
    let (a, b) = (num_a / den, num_b / den);
    let tx = mdx - (a * msx - b * msy);
    let ty = mdy - (b * msx + a * msy);
    Some(Affine([[a as f32, -b as f32, tx as f32], [b as f32, a as f32, ty as f32]]))
}

/// Warps `image` by `transform` (image -> output coordinates) into a `size`x`size`
/// RGB crop with bilinear sampling; outside the image is black.
pub fn warp_affine(image: &RgbImage, transform: &Affine, size: u32) -> Option<RgbImage> {
    let inv = transform.inverse()?;
    let mut out = RgbImage::new(size, size);
    for (u, v, px) in out.enumerate_pixels_mut() {
        let src = inv.apply(Point { x: u as f32, y: v as f32 });
        *px = image::Rgb(sample_bilinear(image, src.x, src.y));
    }
    Some(out)
}

/// Head pose in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HeadPose {
    pub yaw: f32,
    pub pitch: f32,
    pub roll: f32,
}

/// Rough head pose from the 68 landmarks: roll from the eye line; yaw from where the
/// nose tip sits between the jaw edges; pitch from where it sits between the eye
/// line and the mouth (0.55 of the way: the median of the real frontal photos measured
/// by `examples/measure_thresholds.rs`).
pub fn estimate_pose(landmarks: &[Point; 68]) -> HeadPose {
    let five = five_points(landmarks);
    let (left_eye, right_eye) = (five[0], five[1]);
    let roll = (right_eye.y - left_eye.y).atan2(right_eye.x - left_eye.x);
    // Undo roll around the eye midpoint so yaw and pitch are measured upright.
    let centre = Point { x: (left_eye.x + right_eye.x) / 2.0, y: (left_eye.y + right_eye.y) / 2.0 };
    let (sin, cos) = (-roll).sin_cos();
    let upright = |p: Point| {
        let (dx, dy) = (p.x - centre.x, p.y - centre.y);
        Point { x: dx * cos - dy * sin, y: dx * sin + dy * cos }
    };
    let nose = upright(landmarks[30]);
    let jaw_left = upright(landmarks[0]);
    let jaw_right = upright(landmarks[16]);
    let mouth =
        upright(Point { x: (landmarks[48].x + landmarks[54].x) / 2.0, y: (landmarks[48].y + landmarks[54].y) / 2.0 });
    let half_width = ((jaw_right.x - jaw_left.x) / 2.0).abs().max(1e-3);
    let jaw_mid = (jaw_left.x + jaw_right.x) / 2.0;
    let yaw = ((nose.x - jaw_mid) / half_width).clamp(-1.0, 1.0).asin();
    let eye_to_mouth = mouth.y.abs().max(1e-3);
    let pitch = ((nose.y / eye_to_mouth - 0.55) * 2.0).clamp(-1.0, 1.0).asin();
    HeadPose { yaw: yaw.to_degrees(), pitch: pitch.to_degrees(), roll: roll.to_degrees() }
}

/// RMS distance between `dst` and the best affine (least squares) image of `src`,
/// in the units of the points; `None` with fewer than 4 pairs or degenerate points.
/// A flat picture moved in front of a camera maps (nearly) affinely from frame to
/// frame; a real head turning does not.
pub fn affine_residual(src: &[Point], dst: &[Point]) -> Option<f32> {
    let n = src.len().min(dst.len());
    if n < 4 {
        return None;
    }
    // Centre the source for conditioning, in f64.
    let (mx, my) = src[..n].iter().fold((0.0, 0.0), |(x, y), p| (x + p.x as f64, y + p.y as f64));
    let (mx, my) = (mx / n as f64, my / n as f64);
    // Normal equations of [x y 1] * [a b; c d; e f] = [x' y'].
    let mut ata = [[0.0f64; 3]; 3];
    let mut atb = [[0.0f64; 2]; 3];
    for (s, d) in src[..n].iter().zip(&dst[..n]) {
        let row = [s.x as f64 - mx, s.y as f64 - my, 1.0];
        for i in 0..3 {
            for j in 0..3 {
                ata[i][j] += row[i] * row[j];
            }
            atb[i][0] += row[i] * d.x as f64;
            atb[i][1] += row[i] * d.y as f64;
        }
    }
    let solution = solve3(ata, atb)?;
    let squared: f64 = src[..n]
        .iter()
        .zip(&dst[..n])
        .map(|(s, d)| {
            let (x, y) = (s.x as f64 - mx, s.y as f64 - my);
            let px = x * solution[0][0] + y * solution[1][0] + solution[2][0];
            let py = x * solution[0][1] + y * solution[1][1] + solution[2][1];
            (px - d.x as f64).powi(2) + (py - d.y as f64).powi(2)
        })
        .sum();
    Some((squared / n as f64).sqrt() as f32)
}

/// Solves `a * x = b` for a 3x3 `a` and two right-hand sides (Cramer's rule).
fn solve3(a: [[f64; 3]; 3], b: [[f64; 2]; 3]) -> Option<[[f64; 2]; 3]> {
    let det = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(a);
    if !d.is_finite() || d.abs() < 1e-9 {
        return None;
    }
    let mut x = [[0.0; 2]; 3];
    for col in 0..2 {
        for unknown in 0..3 {
            let mut m = a;
            for row in 0..3 {
                m[row][unknown] = b[row][col];
            }
            x[unknown][col] = det(m) / d;
        }
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_transform_recovers_a_known_transform() {
        let (a, b, tx, ty) = (0.8f32 * 0.5f32.cos(), 0.8f32 * 0.5f32.sin(), 12.0, -7.0);
        let truth = Affine([[a, -b, tx], [b, a, ty]]);
        let src: Vec<Point> = TEMPLATE_112.iter().map(|p| Point { x: p.x * 3.0, y: p.y * 2.0 + 5.0 }).collect();
        let dst: Vec<Point> = src.iter().map(|&p| truth.apply(p)).collect();
        let est = similarity_transform(&src, &dst).expect("well-posed");
        for r in 0..2 {
            for c in 0..3 {
                assert!((est.0[r][c] - truth.0[r][c]).abs() < 1e-3, "{est:?} vs {truth:?}");
            }
        }
        let inv = est.inverse().expect("invertible");
        let p = inv.apply(est.apply(Point { x: 3.0, y: 4.0 }));
        assert!((p.x - 3.0).abs() < 1e-3 && (p.y - 4.0).abs() < 1e-3);
    }

    #[test]
    fn degenerate_points_have_no_transform() {
        let p = Point { x: 1.0, y: 1.0 };
        assert!(similarity_transform(&[p; 5], &TEMPLATE_112).is_none());
    }

    #[test]
    fn nms_keeps_best_and_drops_overlaps_and_nested_boxes() {
        let d = |x1, y1, x2, y2, score| Detection { bbox: BoundingBox { x1, y1, x2, y2 }, score };
        let kept = non_max_suppression(
            vec![
                d(0.0, 0.0, 100.0, 100.0, 0.9),
                d(5.0, 5.0, 105.0, 105.0, 0.8),  // overlap
                d(20.0, 20.0, 50.0, 50.0, 0.95), // nested in the first, but scored higher
                d(200.0, 0.0, 260.0, 60.0, 0.7), // separate face
            ],
            0.4,
            0.7,
        );
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert_eq!(kept[1].bbox.x1, 200.0);
    }

    #[test]
    fn laplacian_variance_is_higher_for_sharp_edges() {
        let sharp =
            RgbImage::from_fn(32, 32, |x, _| if x % 2 == 0 { image::Rgb([255; 3]) } else { image::Rgb([0; 3]) });
        let flat = RgbImage::from_pixel(32, 32, image::Rgb([128; 3]));
        assert!(laplacian_variance(&sharp) > 1000.0);
        assert_eq!(laplacian_variance(&flat), 0.0);
    }

    #[test]
    fn mean_luma_spans_black_to_white() {
        assert_eq!(mean_luma(&RgbImage::from_pixel(8, 8, image::Rgb([0; 3]))), 0.0);
        assert!((mean_luma(&RgbImage::from_pixel(8, 8, image::Rgb([255; 3]))) - 1.0).abs() < 1e-5);
        let half = RgbImage::from_fn(8, 8, |x, _| if x < 4 { image::Rgb([255; 3]) } else { image::Rgb([0; 3]) });
        assert!((mean_luma(&half) - 0.5).abs() < 1e-5);
    }

    #[test]
    fn affine_residual_is_zero_for_an_affine_map_and_not_for_a_bend() {
        let src: Vec<Point> = (0..20).map(|i| Point { x: (i % 5) as f32 * 10.0, y: (i / 5) as f32 * 7.0 }).collect();
        let sheared: Vec<Point> =
            src.iter().map(|p| Point { x: 1.2 * p.x + 0.3 * p.y + 5.0, y: -0.1 * p.x + 0.9 * p.y - 2.0 }).collect();
        assert!(affine_residual(&src, &sheared).expect("fit") < 1e-3);
        let bent: Vec<Point> = src.iter().map(|p| Point { x: p.x + 0.02 * p.y * p.y, y: p.y }).collect();
        assert!(affine_residual(&src, &bent).expect("fit") > 0.1);
        assert!(affine_residual(&src[..3], &sheared[..3]).is_none());
        let collapsed = vec![Point { x: 1.0, y: 1.0 }; 10];
        assert!(affine_residual(&collapsed, &collapsed).is_none());
    }
}
