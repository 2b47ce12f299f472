//! Property tests of the face pipeline's pure geometry (`faceauth_core::vision::geometry`):
//! the Umeyama similarity fit, affine inverse and warping, IoU / containment, NMS,
//! the affine residual, the same-size resize and the landmark head pose.
//!
//! Only public items are used. `tile_origins` (the detector's tiling, in
//! `vision/models.rs`) is private and is covered by that module's unit test.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

use std::f32::consts::PI;

use faceauth_core::vision::geometry::{
    Affine, BoundingBox, Detection, Point, TEMPLATE_112, affine_residual, estimate_pose, non_max_suppression,
    resize_bilinear, similarity_transform, warp_affine,
};
use image::{Rgb, RgbImage};
use proptest::prelude::*;

// ----------------------------------------------------------------------------
// Strategies
// ----------------------------------------------------------------------------

/// A similarity (rotation angle, scale, translation) and its matrix.
#[derive(Debug, Clone, Copy)]
struct Similarity {
    angle: f32,
    scale: f32,
    tx: f32,
    ty: f32,
}

impl Similarity {
    fn affine(self) -> Affine {
        let (a, b) = (self.scale * self.angle.cos(), self.scale * self.angle.sin());
        Affine([[a, -b, self.tx], [b, a, self.ty]])
    }
}

fn similarity(scale: std::ops::Range<f32>, translation: f32) -> impl Strategy<Value = Similarity> {
    (-PI..PI, scale, -translation..translation, -translation..translation)
        .prop_map(|(angle, scale, tx, ty)| Similarity { angle, scale, tx, ty })
}

/// The five-point template, each point moved by up to `jitter` pixels: well spread,
/// never degenerate for `jitter` well below the template's size.
fn jittered_template(jitter: f32) -> impl Strategy<Value = Vec<Point>> {
    prop::collection::vec((-jitter..=jitter, -jitter..=jitter), 5).prop_map(|offsets| {
        TEMPLATE_112.iter().zip(offsets).map(|(p, (dx, dy))| Point { x: p.x + dx, y: p.y + dy }).collect()
    })
}

fn bbox(range: f32, max_side: f32) -> impl Strategy<Value = BoundingBox> {
    (-range..range, -range..range, 0.0..max_side, 0.0..max_side).prop_map(|(x1, y1, w, h)| BoundingBox {
        x1,
        y1,
        x2: x1 + w,
        y2: y1 + h,
    })
}

/// A box with integer coordinates: every area, intersection and union is exact in f32.
fn integer_bbox() -> impl Strategy<Value = BoundingBox> {
    (-1000i32..1000, -1000i32..1000, 0i32..500, 0i32..500).prop_map(|(x1, y1, w, h)| BoundingBox {
        x1: x1 as f32,
        y1: y1 as f32,
        x2: (x1 + w) as f32,
        y2: (y1 + h) as f32,
    })
}

/// Up to 24 scored boxes crowded into a 300x300 area, so that many overlap.
fn detections() -> impl Strategy<Value = Vec<Detection>> {
    prop::collection::vec((bbox(300.0, 150.0), 0.0f32..1.0), 0..24)
        .prop_map(|v| v.into_iter().map(|(bbox, score)| Detection { bbox, score }).collect())
}

fn image(max_side: u32) -> impl Strategy<Value = RgbImage> {
    (1..=max_side, 1..=max_side).prop_flat_map(|(w, h)| {
        prop::collection::vec(any::<u8>(), (w * h * 3) as usize)
            .prop_map(move |bytes| RgbImage::from_raw(w, h, bytes).expect("w*h*3 bytes"))
    })
}

/// 68 landmarks of a plausible upright face (jaw 0..100 px wide, eyes, nose tip,
/// mouth corners), each point jittered: the pose estimate is far from its clamps.
fn face_landmarks() -> impl Strategy<Value = [Point; 68]> {
    (prop::collection::vec((-3.0f32..3.0, -3.0f32..3.0), 68), -20.0f32..20.0, -10.0f32..10.0).prop_map(
        |(jitter, nose_dx, nose_dy)| {
            let mut base = [Point { x: 50.0, y: 50.0 }; 68];
            base[0] = Point { x: 0.0, y: 50.0 };
            base[16] = Point { x: 100.0, y: 50.0 };
            for p in &mut base[36..42] {
                *p = Point { x: 30.0, y: 40.0 };
            }
            for p in &mut base[42..48] {
                *p = Point { x: 70.0, y: 40.0 };
            }
            base[30] = Point { x: 50.0 + nose_dx, y: 60.0 + nose_dy };
            base[48] = Point { x: 35.0, y: 80.0 };
            base[54] = Point { x: 65.0, y: 80.0 };
            for (p, (dx, dy)) in base.iter_mut().zip(jitter) {
                *p = Point { x: p.x + dx, y: p.y + dy };
            }
            base
        },
    )
}

// ----------------------------------------------------------------------------
// Helpers
// ----------------------------------------------------------------------------

fn sum_squared_error(t: &Affine, src: &[Point], dst: &[Point]) -> f64 {
    src.iter()
        .zip(dst)
        .map(|(&s, d)| {
            let m = &t.0;
            let (x, y) = (s.x as f64, s.y as f64);
            let px = m[0][0] as f64 * x + m[0][1] as f64 * y + m[0][2] as f64;
            let py = m[1][0] as f64 * x + m[1][1] as f64 * y + m[1][2] as f64;
            (px - d.x as f64).powi(2) + (py - d.y as f64).powi(2)
        })
        .sum()
}

/// `a - b` as an angle in (-180, 180] degrees.
fn angle_difference_deg(a: f32, b: f32) -> f32 {
    let d = (a - b).rem_euclid(360.0);
    if d > 180.0 { d - 360.0 } else { d }
}

/// 256 cases per property (well under a second in release), or `PROPTEST_CASES`.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

fn close(a: f32, b: f32, tolerance: f32) -> bool {
    (a - b).abs() <= tolerance
}

// ----------------------------------------------------------------------------
// Properties
// ----------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Points that are an exact similarity of the (jittered) template give that
    /// similarity back: matrix entries, scale and rotation angle within 1e-3.
    #[test]
    fn similarity_transform_recovers_an_exact_similarity(
        truth in similarity(0.05..20.0, 500.0),
        src in jittered_template(10.0),
    ) {
        let t = truth.affine();
        let dst: Vec<Point> = src.iter().map(|&p| t.apply(p)).collect();
        let est = similarity_transform(&src, &dst).expect("well-posed");
        for r in 0..2 {
            for c in 0..3 {
                prop_assert!(close(est.0[r][c], t.0[r][c], 1e-3), "{est:?} vs {t:?}");
            }
        }
        prop_assert!(close(est.scale(), truth.scale, 1e-3 * truth.scale.max(1.0)), "{est:?} vs {truth:?}");
        let angle = est.0[1][0].atan2(est.0[0][0]);
        let turned = angle_difference_deg(angle.to_degrees(), truth.angle.to_degrees());
        prop_assert!(close(turned, 0.0, 1e-3f32.to_degrees()), "{est:?} vs {truth:?}");
    }

    /// The fit maps each source point onto its exact target.
    #[test]
    fn similarity_transform_maps_sources_onto_exact_targets(
        truth in similarity(0.05..20.0, 500.0),
        src in jittered_template(10.0),
    ) {
        let t = truth.affine();
        let dst: Vec<Point> = src.iter().map(|&p| t.apply(p)).collect();
        let est = similarity_transform(&src, &dst).expect("well-posed");
        for (&s, d) in src.iter().zip(&dst) {
            let p = est.apply(s);
            prop_assert!(close(p.x, d.x, 1e-2) && close(p.y, d.y, 1e-2), "{p:?} vs {d:?}");
        }
    }

    /// Least squares: an order of the point pairs is no input. Shuffling the pairs
    /// (the same permutation on both sides) gives the same fit, for noisy targets too.
    #[test]
    fn similarity_transform_ignores_the_order_of_the_pairs(
        truth in similarity(0.1..10.0, 300.0),
        src in jittered_template(10.0),
        noise in prop::collection::vec((-5.0f32..5.0, -5.0f32..5.0), 5),
        order in Just((0..5usize).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        let t = truth.affine();
        let dst: Vec<Point> = src
            .iter()
            .zip(&noise)
            .map(|(&p, (nx, ny))| {
                let q = t.apply(p);
                Point { x: q.x + nx, y: q.y + ny }
            })
            .collect();
        let est = similarity_transform(&src, &dst).expect("well-posed");
        let shuffled_src: Vec<Point> = order.iter().map(|&i| src[i]).collect();
        let shuffled_dst: Vec<Point> = order.iter().map(|&i| dst[i]).collect();
        let again = similarity_transform(&shuffled_src, &shuffled_dst).expect("well-posed");
        for r in 0..2 {
            for c in 0..3 {
                let tolerance = 1e-4 * (1.0 + est.0[r][c].abs());
                prop_assert!(close(est.0[r][c], again.0[r][c], tolerance), "{est:?} vs {again:?}");
            }
        }
    }

    /// The result is always a proper similarity (no shear, no reflection, even for
    /// mirrored targets), and it is the least-squares optimum: no other similarity
    /// near it has a smaller squared error.
    #[test]
    fn similarity_transform_is_the_least_squares_similarity(
        truth in similarity(0.1..10.0, 300.0),
        src in jittered_template(10.0),
        noise in prop::collection::vec((-8.0f32..8.0, -8.0f32..8.0), 5),
        mirror in any::<bool>(),
        delta in (-0.1f32..0.1, -0.1f32..0.1, -5.0f32..5.0, -5.0f32..5.0),
    ) {
        let t = truth.affine();
        let dst: Vec<Point> = src
            .iter()
            .zip(&noise)
            .map(|(&p, (nx, ny))| {
                let q = t.apply(if mirror { Point { x: -p.x, y: p.y } } else { p });
                Point { x: q.x + nx, y: q.y + ny }
            })
            .collect();
        let est = similarity_transform(&src, &dst).expect("well-posed");
        let m = est.0;
        prop_assert_eq!(m[0][0], m[1][1]);
        prop_assert_eq!(m[0][1], -m[1][0]);
        let (da, db, dtx, dty) = delta;
        let (a, b) = (m[0][0] + da, m[1][0] + db);
        let other = Affine([[a, -b, m[0][2] + dtx], [b, a, m[1][2] + dty]]);
        let best = sum_squared_error(&est, &src, &dst);
        let worse = sum_squared_error(&other, &src, &dst);
        prop_assert!(best <= worse * (1.0 + 1e-6) + 1e-6, "fit {best} > perturbed {worse}");
    }

    /// Fitting the other way round gives the inverse transform.
    #[test]
    fn similarity_transform_backwards_is_the_inverse(
        truth in similarity(0.2..5.0, 300.0),
        src in jittered_template(10.0),
    ) {
        let t = truth.affine();
        let dst: Vec<Point> = src.iter().map(|&p| t.apply(p)).collect();
        let forward = similarity_transform(&src, &dst).expect("well-posed");
        let backward = similarity_transform(&dst, &src).expect("well-posed");
        let inverse = forward.inverse().expect("invertible");
        for r in 0..2 {
            for c in 0..3 {
                let tolerance = 1e-3 * (1.0 + inverse.0[r][c].abs());
                prop_assert!(close(backward.0[r][c], inverse.0[r][c], tolerance), "{backward:?} vs {inverse:?}");
            }
        }
    }

    /// Fewer than two pairs, or all source points at one place, have no transform.
    #[test]
    fn similarity_transform_refuses_degenerate_input(
        p in (-500.0f32..500.0, -500.0f32..500.0),
        n in 0usize..8,
    ) {
        let same = vec![Point { x: p.0, y: p.1 }; n];
        prop_assert!(similarity_transform(&same, &TEMPLATE_112[..n.min(5)]).is_none());
        prop_assert!(similarity_transform(&TEMPLATE_112[..1], &TEMPLATE_112[..1]).is_none());
    }

    /// `inverse` undoes `apply`, up to f32 rounding; a singular matrix has no inverse.
    #[test]
    fn affine_inverse_undoes_apply(
        truth in similarity(0.1..10.0, 500.0),
        p in (-200.0f32..200.0, -200.0f32..200.0),
        row in (-5.0f32..5.0, -5.0f32..5.0),
    ) {
        let t = truth.affine();
        let inv = t.inverse().expect("a similarity is invertible");
        let p = Point { x: p.0, y: p.1 };
        let back = inv.apply(t.apply(p));
        let tolerance = 1e-5 * (1.0 + p.x.abs().max(p.y.abs()) + truth.tx.abs().max(truth.ty.abs()) / truth.scale);
        prop_assert!(close(back.x, p.x, tolerance) && close(back.y, p.y, tolerance), "{back:?} vs {p:?}");
        // Two equal rows: the determinant is exactly zero.
        let singular = Affine([[row.0, row.1, 1.0], [row.0, row.1, 2.0]]);
        prop_assert!(singular.inverse().is_none());
    }

    /// Warping by the identity is a crop (black beyond the image); by an integer
    /// translation, a shift. Both are exact: bilinear sampling at pixel centres.
    #[test]
    fn warp_by_identity_or_integer_shift_moves_pixels_exactly(
        img in image(12),
        size in 1u32..16,
        shift in (-6i32..6, -6i32..6),
    ) {
        let (dx, dy) = shift;
        let t = Affine([[1.0, 0.0, dx as f32], [0.0, 1.0, dy as f32]]);
        let out = warp_affine(&img, &t, size).expect("invertible");
        prop_assert_eq!(out.dimensions(), (size, size));
        for (u, v, px) in out.enumerate_pixels() {
            let (x, y) = (u as i64 - dx as i64, v as i64 - dy as i64);
            let expected = if x >= 0 && y >= 0 && x < img.width() as i64 && y < img.height() as i64 {
                *img.get_pixel(x as u32, y as u32)
            } else {
                Rgb([0, 0, 0])
            };
            prop_assert_eq!(*px, expected, "at ({}, {})", u, v);
        }
    }

    /// Bilinear sampling mixes pixels and black: no output channel is brighter than
    /// the brightest input value; a singular transform gives no crop.
    #[test]
    fn warp_never_brightens_and_refuses_singular_transforms(
        img in image(12),
        truth in similarity(0.2..5.0, 20.0),
        size in 1u32..24,
    ) {
        let brightest = img.as_raw().iter().copied().max().unwrap_or(0);
        let out = warp_affine(&img, &truth.affine(), size).expect("invertible");
        prop_assert_eq!(out.dimensions(), (size, size));
        prop_assert!(out.as_raw().iter().all(|&c| c <= brightest));
        let singular = Affine([[1.0, 2.0, 0.0], [1.0, 2.0, 0.0]]);
        prop_assert!(warp_affine(&img, &singular, size).is_none());
    }

    /// Resizing to the same size samples every pixel centre exactly: the identity.
    #[test]
    fn resize_bilinear_to_the_same_size_is_the_identity(img in image(16)) {
        let out = resize_bilinear(&img, img.width(), img.height());
        prop_assert_eq!(out, img);
    }

    /// IoU and containment are symmetric and in [0, 1]; containment is at least IoU.
    #[test]
    fn iou_and_containment_are_symmetric_and_bounded(a in bbox(1000.0, 500.0), b in bbox(1000.0, 500.0)) {
        let (ab, ba) = (a.iou(&b), b.iou(&a));
        prop_assert_eq!(ab, ba);
        prop_assert!((0.0..=1.0).contains(&ab), "{}", ab);
        let (cab, cba) = (a.containment(&b), b.containment(&a));
        prop_assert_eq!(cab, cba);
        prop_assert!((0.0..=1.0).contains(&cab), "{}", cab);
        prop_assert!(cab >= ab, "containment {} < iou {}", cab, ab);
        prop_assert!(a.intersection(&b) <= a.area().min(b.area()));
    }

    /// A box with an area overlaps itself fully; boxes apart share nothing.
    #[test]
    fn iou_is_one_for_identical_and_zero_for_separate_boxes(a in bbox(1000.0, 500.0), gap in 0.0f32..100.0) {
        if a.area() > 0.0 {
            prop_assert_eq!(a.iou(&a), 1.0);
            prop_assert_eq!(a.containment(&a), 1.0);
        } else {
            prop_assert_eq!(a.iou(&a), 0.0);
        }
        let right = BoundingBox { x1: a.x2 + gap, y1: a.y1, x2: a.x2 + gap + a.width(), y2: a.y2 };
        let below = BoundingBox { x1: a.x1, y1: a.y2 + gap, x2: a.x2, y2: a.y2 + gap + a.height() };
        prop_assert_eq!(a.iou(&right), 0.0);
        prop_assert_eq!(a.iou(&below), 0.0);
    }

    /// IoU depends on the boxes' relative placement only (exact on integer boxes).
    #[test]
    fn iou_is_translation_invariant(a in integer_bbox(), b in integer_bbox(), t in (-1000i32..1000, -1000i32..1000)) {
        let (tx, ty) = (t.0 as f32, t.1 as f32);
        let moved = |r: BoundingBox| BoundingBox { x1: r.x1 + tx, y1: r.y1 + ty, x2: r.x2 + tx, y2: r.y2 + ty };
        prop_assert_eq!(moved(a).iou(&moved(b)), a.iou(&b));
        prop_assert_eq!(moved(a).containment(&moved(b)), a.containment(&b));
    }

    /// NMS keeps a subset of its input, best score first, with no two kept boxes
    /// above either threshold; every dropped box is suppressed by a kept box scored
    /// at least as high; the best box is always kept; a second pass changes nothing.
    #[test]
    fn nms_keeps_a_non_overlapping_subset_that_explains_every_drop(
        input in detections(),
        iou_threshold in 0.05f32..0.95,
        containment_threshold in 0.05f32..1.0,
    ) {
        let kept = non_max_suppression(input.clone(), iou_threshold, containment_threshold);
        let suppresses = |k: &Detection, d: &Detection| {
            k.bbox.iou(&d.bbox) > iou_threshold || k.bbox.containment(&d.bbox) > containment_threshold
        };
        // A subset, multiplicities included.
        let mut pool = input.clone();
        for k in &kept {
            let i = pool.iter().position(|d| d == k);
            prop_assert!(i.is_some(), "{k:?} is not in the input");
            pool.swap_remove(i.unwrap());
        }
        // Sorted by score, descending.
        prop_assert!(kept.windows(2).all(|w| w[0].score >= w[1].score));
        // No kept pair suppresses one another.
        for (i, a) in kept.iter().enumerate() {
            for b in &kept[i + 1..] {
                prop_assert!(!suppresses(a, b), "{a:?} and {b:?} both kept");
                prop_assert!(a.bbox.iou(&b.bbox) <= iou_threshold);
            }
        }
        // Every dropped box has a reason among the kept ones.
        for d in &pool {
            prop_assert!(kept.iter().any(|k| k.score >= d.score && suppresses(k, d)), "{d:?} dropped without reason");
        }
        if let Some(best) = input.iter().map(|d| d.score).reduce(f32::max) {
            prop_assert_eq!(kept.first().map(|k| k.score), Some(best));
        }
        prop_assert_eq!(non_max_suppression(kept.clone(), iou_threshold, containment_threshold), kept);
    }

    /// Thresholds of 1 suppress nothing (IoU and containment never exceed 1): NMS is
    /// then a sort by score.
    #[test]
    fn nms_with_thresholds_of_one_only_sorts(input in detections()) {
        let kept = non_max_suppression(input.clone(), 1.0, 1.0);
        let mut sorted = input;
        sorted.sort_by(|a, b| b.score.total_cmp(&a.score));
        prop_assert_eq!(kept, sorted);
    }

    /// Points that are an exact affine image of a spread set leave (almost) no
    /// residual; fewer than four pairs have none.
    #[test]
    fn affine_residual_vanishes_for_affine_maps(
        jitter in prop::collection::vec((-5.0f32..5.0, -5.0f32..5.0), 9),
        m in (0.2f32..3.0, -1.0f32..1.0, -1.0f32..1.0, 0.2f32..3.0, -300.0f32..300.0, -300.0f32..300.0),
    ) {
        let src: Vec<Point> = jitter
            .iter()
            .enumerate()
            .map(|(i, (dx, dy))| Point { x: (i % 3) as f32 * 20.0 + dx, y: (i / 3) as f32 * 20.0 + dy })
            .collect();
        let (a, b, c, d, tx, ty) = m;
        let dst: Vec<Point> =
            src.iter().map(|p| Point { x: a * p.x + b * p.y + tx, y: c * p.x + d * p.y + ty }).collect();
        // The source grid is well spread: there is always a fit.
        let residual = affine_residual(&src, &dst);
        prop_assert!(residual.is_some_and(|r| r < 1e-2), "residual {:?}", residual);
        prop_assert!(affine_residual(&src[..3], &dst[..3]).is_none());
    }

    /// The head pose is a property of the face, not of the picture: moving, scaling
    /// and rotating the landmarks leaves yaw and pitch and adds the rotation to roll.
    #[test]
    fn pose_is_invariant_to_similarity_except_roll(
        landmarks in face_landmarks(),
        truth in similarity(0.2..5.0, 500.0),
    ) {
        let t = truth.affine();
        let moved: [Point; 68] = landmarks.map(|p| t.apply(p));
        let (before, after) = (estimate_pose(&landmarks), estimate_pose(&moved));
        prop_assert!(close(before.yaw, after.yaw, 0.05), "{before:?} vs {after:?}");
        prop_assert!(close(before.pitch, after.pitch, 0.05), "{before:?} vs {after:?}");
        let turned = angle_difference_deg(after.roll, before.roll);
        let off = angle_difference_deg(turned, truth.angle.to_degrees());
        prop_assert!(close(off, 0.0, 0.05), "{before:?} vs {after:?} for {truth:?}");
    }
}
