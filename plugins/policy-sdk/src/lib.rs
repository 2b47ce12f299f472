//! SDK for faceauth policy authors: the bindings of `wit/policy.wit`, small helpers
//! over the evidence, and the `export_policy!` macro. A policy is a type
//! implementing [`Guest`]; its logic is plain Rust, unit-testable natively with
//! `cargo test`, and becomes a component with `cargo build --target wasm32-wasip2`.

#![deny(missing_docs)]

/// Generated from `wit/policy.wit`, whose comments are its documentation.
#[allow(clippy::too_many_arguments)] // the canonical ABI flattens records into arguments
#[allow(missing_docs)] // the WIT leaves self-explaining fields and modules undocumented
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "policy",
        pub_export_macro: true,
        export_macro_name: "export_policy",
        default_bindings_module: "faceauth_policy_sdk::bindings",
    });
}

pub use bindings::faceauth::policy::types::{
    AuthenticateEvidence, Decision, DuplicateSearch, EnrollEvidence, Face, FaceBox, Frame, FrameSummary, GalleryMatch,
    HeadPose, ImageSize, MediaKind, MotionSummary, Param, PolicyInfo,
};
pub use bindings::{Guest, export_policy};

pub mod standard;

/// A whole threshold-only policy: implements [`Guest`] for a new unit type with the
/// standard decisions (`standard`), `thresholds` as the declared parameter
/// defaults, liveness off, the calling crate's version, and exports it.
///
/// ```ignore
/// faceauth_policy_sdk::standard_policy!(StrictPolicy, "strict", STRICT);
/// ```
#[macro_export]
macro_rules! standard_policy {
    ($policy:ident, $name:expr, $thresholds:expr) => {
        /// The policy this component exports.
        pub struct $policy;

        impl $crate::Guest for $policy {
            fn info() -> $crate::PolicyInfo {
                $crate::PolicyInfo {
                    name: $name.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    requires_liveness: false,
                    params: $thresholds.params(),
                }
            }

            fn check_params(params: Vec<$crate::Param>) -> Result<(), String> {
                $crate::standard::Thresholds::from_params(&params).map(|_| ())
            }

            fn decide_enroll(params: Vec<$crate::Param>, evidence: $crate::EnrollEvidence) -> $crate::Decision {
                $crate::standard::enroll_with_params(&params, &evidence)
            }

            fn decide_authenticate(
                params: Vec<$crate::Param>,
                evidence: $crate::AuthenticateEvidence,
            ) -> $crate::Decision {
                $crate::standard::authenticate_with_params(&params, &evidence)
            }
        }

        $crate::export_policy!($policy);
    };
}

/// Rejection reasons used by the shipped policies. Policies may define others
/// (upper-case, digits and `_`, at most 64 characters).
pub mod reasons {
    /// No face was found (in the document, the image, or any frame).
    pub const NO_FACE_DETECTED: &str = "NO_FACE_DETECTED";
    /// Another face is too large to be ignored.
    pub const MULTIPLE_FACES_DETECTED: &str = "MULTIPLE_FACES_DETECTED";
    /// The face box is under the minimum size.
    pub const FACE_TOO_SMALL: &str = "FACE_TOO_SMALL";
    /// The face is under the minimum sharpness.
    pub const FACE_TOO_BLURRY: &str = "FACE_TOO_BLURRY";
    /// The head is turned or tilted too far.
    pub const FACE_NOT_FRONTAL: &str = "FACE_NOT_FRONTAL";
    /// The face is underexposed or backlit: more light on the face, or the light
    /// source in front of the person rather than behind.
    pub const FACE_TOO_DARK: &str = "FACE_TOO_DARK";
    /// At enrollment: the face is already enrolled under another name (one person,
    /// one account; the duplicate search).
    pub const FACE_ALREADY_ENROLLED: &str = "FACE_ALREADY_ENROLLED";
    /// The face is not the enrolled person's.
    pub const FACE_MISMATCH: &str = "FACE_MISMATCH";
    /// The face looks printed or replayed, or shows no required movement.
    pub const LIVENESS_CHECK_FAILED: &str = "LIVENESS_CHECK_FAILED";
    /// A parameter set the policy's own `check-params` would refuse; the host never
    /// sends one, so this marks a host bug rather than a user error.
    pub const INVALID_POLICY_PARAMS: &str = "INVALID_POLICY_PARAMS";
    /// Enrollment approved.
    pub const ENROLLED_AS_USER: &str = "ENROLLED_AS_USER";
    /// Authentication approved (the spelling is the original service's).
    pub const AUTHENTIFICATION_SUCCESS: &str = "AUTHENTIFICATION_SUCCESS";
}

impl Decision {
    /// An approval with `reason` and the score reported to the client.
    pub fn approve(reason: &str, score: Option<f32>) -> Self {
        Decision { approved: true, reason: reason.to_string(), score }
    }

    /// A refusal with `reason` and no score.
    pub fn reject(reason: &str) -> Self {
        Decision { approved: false, reason: reason.to_string(), score: None }
    }
}

impl Param {
    /// The parameter `name` set to `value`.
    pub fn new(name: &str, value: f64) -> Self {
        Param { name: name.to_string(), value }
    }
}

/// The value of parameter `name` in a parameter set.
pub fn param(params: &[Param], name: &str) -> Option<f64> {
    params.iter().find(|p| p.name == name).map(|p| p.value)
}

/// Reads parameter `name` as an `f32` within `range`, or says why not.
pub fn param_in(params: &[Param], name: &str, range: std::ops::RangeInclusive<f64>) -> Result<f32, String> {
    let value = param(params, name).ok_or_else(|| format!("parameter {name} is missing"))?;
    if !value.is_finite() || !range.contains(&value) {
        return Err(format!("parameter {name} = {value} is outside {}..={}", range.start(), range.end()));
    }
    Ok(value as f32)
}

/// The primary face (the host sorts faces largest first) and the others.
pub fn split_primary(faces: &[Face]) -> Option<(&Face, &[Face])> {
    faces.split_first()
}

/// Share of the frames whose primary face reaches `threshold` (0 without frames).
pub fn share_matching(frames: &[Frame], threshold: f32) -> f32 {
    if frames.is_empty() {
        return 0.0;
    }
    let matching = frames.iter().filter(|f| f.faces.first().is_some_and(|p| p.similarity >= threshold)).count();
    matching as f32 / frames.len() as f32
}

/// Quality gates shared by enrollment and authentication: the reason to reject the
/// primary face, if any.
#[derive(Debug, Clone, Copy)]
pub struct QualityGate {
    /// Smallest accepted face box height, in pixels.
    pub min_face_px: f32,
    /// Smallest accepted sharpness (variance of Laplacian of the aligned face).
    pub min_sharpness: f32,
    /// Smallest accepted brightness (mean luma of the aligned face, in [0, 1]); a
    /// face whose brightness was not measured (older evidence) is not refused for it.
    pub min_brightness: f32,
    /// Largest accepted |yaw|, in degrees.
    pub max_abs_yaw: f32,
    /// Largest accepted |pitch|, in degrees.
    pub max_abs_pitch: f32,
}

impl QualityGate {
    /// The reason `face` fails the gate (size, then brightness, then sharpness, then
    /// pose), or `None`. Brightness before sharpness: a dark face has little contrast,
    /// so it also measures blurry, and light is what the person can fix.
    pub fn check(&self, face: &Face) -> Option<&'static str> {
        if face.face_box.height < self.min_face_px || face.face_box.width < self.min_face_px * 0.5 {
            Some(reasons::FACE_TOO_SMALL)
        } else if face.brightness.is_some_and(|b| b < self.min_brightness) {
            Some(reasons::FACE_TOO_DARK)
        } else if face.sharpness < self.min_sharpness {
            Some(reasons::FACE_TOO_BLURRY)
        } else if face.pose.yaw.abs() > self.max_abs_yaw || face.pose.pitch.abs() > self.max_abs_pitch {
            Some(reasons::FACE_NOT_FRONTAL)
        } else {
            None
        }
    }
}

/// Builders for evidence in native unit tests of policies.
pub mod testing {
    use super::*;
    use faceauth_evidence_summary::{FrameFaces, frame_summary, no_motion};

    /// A frontal, sharp face of `height` pixels with the given similarity.
    pub fn face(height: f32, similarity: f32) -> Face {
        Face {
            detector_score: 0.99,
            face_box: FaceBox { x: 10.0, y: 10.0, width: height * 0.8, height },
            relative_area: 0.1,
            relative_size: 1.0,
            sharpness: 500.0,
            pose: HeadPose { yaw: 0.0, pitch: 0.0, roll: 0.0 },
            similarity,
            liveness: None,
            eyes_open: None,
            brightness: Some(0.45),
        }
    }

    /// Faces as the host sends them: sorted largest first, with `relative_size` set.
    pub fn faces(mut faces: Vec<Face>) -> Vec<Face> {
        faces.sort_by(|a, b| b.face_box.height.total_cmp(&a.face_box.height));
        let primary = faces.first().map(|f| f.face_box.height).unwrap_or(1.0);
        for f in &mut faces {
            f.relative_size = f.face_box.height / primary;
        }
        faces
    }

    /// Enrollment evidence: an ID document image with these faces.
    pub fn enroll(faces: Vec<Face>) -> EnrollEvidence {
        EnrollEvidence { image: ImageSize { width: 1000, height: 700 }, faces: self::faces(faces), duplicates: None }
    }

    /// Enrollment evidence with a duplicate search over `gallery_size` templates
    /// whose best matches scored `similarities`.
    pub fn enroll_searched(faces: Vec<Face>, gallery_size: u64, similarities: &[f32]) -> EnrollEvidence {
        let matches = similarities.iter().map(|&similarity| crate::GalleryMatch { similarity }).collect();
        EnrollEvidence { duplicates: Some(crate::DuplicateSearch { gallery_size, matches }), ..enroll(faces) }
    }

    /// Authentication evidence of a still image (one frame) with these faces.
    pub fn authenticate_image(faces: Vec<Face>) -> AuthenticateEvidence {
        authenticate(MediaKind::Image, vec![faces])
    }

    /// A video: one list of faces per sampled frame, 250 ms apart.
    pub fn authenticate_video(frames: Vec<Vec<Face>>) -> AuthenticateEvidence {
        authenticate(MediaKind::Video, frames)
    }

    /// A video whose face track says `similarity(i, j)` between the primary faces of
    /// frames `i < j` (none where a frame has no face).
    pub fn authenticate_video_tracked(
        frames: Vec<Vec<Face>>,
        similarity: impl Fn(usize, usize) -> f32,
    ) -> AuthenticateEvidence {
        let mut evidence = authenticate(MediaKind::Video, frames);
        let has_face: Vec<bool> = evidence.frames.iter().map(|f| !f.faces.is_empty()).collect();
        for (j, frame) in evidence.frames.iter_mut().enumerate() {
            frame.earlier_similarities =
                (0..j).map(|i| (has_face[i] && has_face[j]).then(|| similarity(i, j))).collect();
        }
        evidence
    }

    fn authenticate(media: MediaKind, frames: Vec<Vec<Face>>) -> AuthenticateEvidence {
        let frames: Vec<Frame> = frames
            .into_iter()
            .enumerate()
            .map(|(i, f)| Frame {
                timestamp_ms: i as u32 * 250,
                faces: self::faces(f),
                earlier_similarities: Vec::new(),
            })
            .collect();
        // As the host computes it (crates/faceauth-core/src/usecase/evidence.rs), without movement.
        let summary = faceauth_evidence_summary::summarize(frames.iter().map(|f| FrameFaces {
            primary_similarity: f.faces.first().map(|p| p.similarity),
            other_relative_sizes: f.faces.iter().skip(1).map(|o| o.relative_size),
        }));
        let summary = frame_summary!(FrameSummary, summary, no_motion!(MotionSummary));
        AuthenticateEvidence { media, image: ImageSize { width: 1000, height: 700 }, frames, summary }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{authenticate_video, face};

    #[test]
    fn testing_summary_is_the_hosts() {
        // An even count: the mean of the two middle similarities, as the host gives it.
        let e = authenticate_video([0.6, 0.2, 0.8, 0.4].iter().map(|&s| vec![face(200.0, s)]).collect());
        let s = &e.summary;
        assert_eq!((s.frames, s.frames_with_face, s.frames_with_single_face), (4, 4, 4));
        assert_eq!((s.best_similarity, s.median_similarity, s.worst_similarity), (Some(0.8), Some(0.5), Some(0.2)));
        // A face at least half the primary's height is a second face.
        let e =
            authenticate_video(vec![vec![face(200.0, 0.7), face(100.0, 0.1)], vec![face(200.0, 0.7), face(90.0, 0.1)]]);
        assert_eq!(e.summary.frames_with_single_face, 1);
    }
}
