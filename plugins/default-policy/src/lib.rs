//! The default faceauth policy: the decisions of the original service, with
//! thresholds measured on real images (see this crate's README). Liveness is off,
//! as it was in the original service.

use faceauth_policy_sdk::{
    AuthenticateEvidence, Decision, EnrollEvidence, Face, Guest, PolicyInfo, QualityGate, reasons, split_primary,
};

/// Cosine similarity at or above which two faces are the same person. Above every
/// clean impostor pair measured (max 0.402 of 1612) at the cost of 1 genuine pair in 83.
pub const MATCH_THRESHOLD: f32 = 0.45;

/// Quality required of the face being enrolled or authenticated.
pub const QUALITY: QualityGate = QualityGate {
    // At 40 px a face keeps a median cosine of 0.82 to itself at full size (p5 0.61).
    min_face_px: 40.0,
    // Real photos: min 150. Gaussian blur of sigma 1 % of the face height gives a
    // median of 43 and still matches (cosine 0.93 to the sharp face); 2 %: 7.8 and
    // 0.67; 3 %: 3.2 and 0.36.
    min_sharpness: 15.0,
    // Real frontal photos: |yaw| <= 17.3, |pitch| <= 28.3 (landmark estimates).
    max_abs_yaw: 45.0,
    max_abs_pitch: 40.0,
};

/// On an ID document a second face is accepted only if it is a "ghost" portrait:
/// much smaller than the main one, or the same person.
pub const GHOST_MAX_RELATIVE_SIZE: f32 = 0.6;

/// In a selfie, any other face at least this large relative to the primary one is
/// refused whoever it is: a second person (or a held-up photo) in the frame is an
/// attack pattern, and we never decide on the best-matching face of several.
pub const SELFIE_MAX_OTHER_RELATIVE_SIZE: f32 = 0.45;

struct DefaultPolicy;

impl Guest for DefaultPolicy {
    fn info() -> PolicyInfo {
        PolicyInfo { name: "default".into(), version: env!("CARGO_PKG_VERSION").into(), requires_liveness: false }
    }

    fn decide_enroll(evidence: EnrollEvidence) -> Decision {
        let Some((primary, others)) = split_primary(&evidence.faces) else {
            return Decision::reject(reasons::NO_FACE_DETECTED);
        };
        let foreign = |f: &Face| f.relative_size >= GHOST_MAX_RELATIVE_SIZE && f.similarity < MATCH_THRESHOLD;
        if others.iter().any(foreign) {
            return Decision::reject(reasons::MULTIPLE_FACES_DETECTED);
        }
        if let Some(reason) = QUALITY.check(primary) {
            return Decision::reject(reason);
        }
        Decision::approve(reasons::ENROLLED_AS_USER, None)
    }

    fn decide_authenticate(evidence: AuthenticateEvidence) -> Decision {
        // Every analysed frame (one for a still image) must show one dominant face, of
        // usable quality, that matches: a different person in any frame is a mismatch.
        if evidence.frames.is_empty() || evidence.summary.frames_with_face < evidence.summary.frames {
            return Decision::reject(reasons::NO_FACE_DETECTED);
        }
        for frame in &evidence.frames {
            let Some((primary, others)) = split_primary(&frame.faces) else {
                return Decision::reject(reasons::NO_FACE_DETECTED);
            };
            if others.iter().any(|f| f.relative_size >= SELFIE_MAX_OTHER_RELATIVE_SIZE) {
                return Decision::reject(reasons::MULTIPLE_FACES_DETECTED);
            }
            if let Some(reason) = QUALITY.check(primary) {
                return Decision::reject(reason);
            }
        }
        match evidence.summary.worst_similarity {
            Some(score) if score >= MATCH_THRESHOLD => {
                Decision::approve(reasons::AUTHENTIFICATION_SUCCESS, Some(score))
            }
            Some(_) => Decision::reject(reasons::FACE_MISMATCH),
            None => Decision::reject(reasons::NO_FACE_DETECTED),
        }
    }
}

faceauth_policy_sdk::export_policy!(DefaultPolicy);

#[cfg(test)]
mod tests {
    use super::*;
    use faceauth_policy_sdk::testing::{authenticate_image, authenticate_video, enroll, face};

    fn reason(d: &Decision) -> &str {
        &d.reason
    }

    #[test]
    fn enroll_accepts_one_good_face_and_a_small_ghost_portrait() {
        let d = DefaultPolicy::decide_enroll(enroll(vec![face(120.0, 1.0), face(40.0, 0.1)]));
        assert!(d.approved, "{d:?}");
        // A ghost as large as the main portrait is fine when it is the same person.
        let d = DefaultPolicy::decide_enroll(enroll(vec![face(120.0, 1.0), face(110.0, 0.8)]));
        assert!(d.approved, "{d:?}");
    }

    #[test]
    fn enroll_rejects_a_second_large_stranger_no_face_and_poor_faces() {
        let d = DefaultPolicy::decide_enroll(enroll(vec![face(120.0, 1.0), face(100.0, 0.05)]));
        assert_eq!(reason(&d), reasons::MULTIPLE_FACES_DETECTED);
        assert_eq!(reason(&DefaultPolicy::decide_enroll(enroll(vec![]))), reasons::NO_FACE_DETECTED);
        assert_eq!(reason(&DefaultPolicy::decide_enroll(enroll(vec![face(30.0, 1.0)]))), reasons::FACE_TOO_SMALL);
        let mut blurry = face(120.0, 1.0);
        blurry.sharpness = 5.0;
        assert_eq!(reason(&DefaultPolicy::decide_enroll(enroll(vec![blurry]))), reasons::FACE_TOO_BLURRY);
        let mut profile = face(120.0, 1.0);
        profile.pose.yaw = 70.0;
        assert_eq!(reason(&DefaultPolicy::decide_enroll(enroll(vec![profile]))), reasons::FACE_NOT_FRONTAL);
    }

    #[test]
    fn authenticate_matches_on_the_primary_face_only() {
        let d = DefaultPolicy::decide_authenticate(authenticate_image(vec![face(200.0, 0.7)]));
        assert!(d.approved);
        assert_eq!(d.score, Some(0.7));
        let d = DefaultPolicy::decide_authenticate(authenticate_image(vec![face(200.0, 0.2)]));
        assert_eq!(reason(&d), reasons::FACE_MISMATCH);
        assert_eq!(d.score, None);
        // The matching face is the second one: never pick the best match of several.
        let d = DefaultPolicy::decide_authenticate(authenticate_image(vec![face(200.0, 0.1), face(180.0, 0.9)]));
        assert_eq!(reason(&d), reasons::MULTIPLE_FACES_DETECTED);
        // A small background face does not matter.
        let d = DefaultPolicy::decide_authenticate(authenticate_image(vec![face(200.0, 0.7), face(40.0, 0.0)]));
        assert!(d.approved);
        let d = DefaultPolicy::decide_authenticate(authenticate_image(vec![]));
        assert_eq!(reason(&d), reasons::NO_FACE_DETECTED);
    }

    #[test]
    fn a_video_must_show_the_same_person_in_every_frame() {
        let good = || vec![face(200.0, 0.7)];
        let d = DefaultPolicy::decide_authenticate(authenticate_video(vec![good(), good(), good()]));
        assert!(d.approved, "{d:?}");
        let d = DefaultPolicy::decide_authenticate(authenticate_video(vec![good(), vec![face(200.0, 0.1)], good()]));
        assert_eq!(reason(&d), reasons::FACE_MISMATCH);
        let d = DefaultPolicy::decide_authenticate(authenticate_video(vec![good(), vec![], good()]));
        assert_eq!(reason(&d), reasons::NO_FACE_DETECTED);
    }
}
