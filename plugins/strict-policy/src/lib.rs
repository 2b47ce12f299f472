//! A stricter policy for high-risk flows: the standard decisions with tighter
//! thresholds (a higher match threshold, larger, sharper and more frontal faces,
//! no sizeable second face in a selfie). Liveness stays a separate concern
//! (`liveness-policy`). Figures behind the values: this crate's README.

use faceauth_policy_sdk::QualityGate;
use faceauth_policy_sdk::standard::{self, Thresholds};

/// The strict thresholds; every one can still be overridden per variant.
pub const STRICT: Thresholds = Thresholds {
    match_threshold: 0.50,
    quality: QualityGate {
        min_face_px: 80.0,
        min_sharpness: 40.0,
        max_abs_yaw: 25.0,
        max_abs_pitch: 30.0,
        min_brightness: standard::MIN_BRIGHTNESS,
    },
    ghost_max_relative_size: 0.6,
    selfie_max_other_relative_size: 0.25,
    min_usable_frames: 3.0,
    video_identity_pose: standard::VIDEO_IDENTITY_POSE,
    min_track_similarity: standard::MIN_TRACK_SIMILARITY,
    track_max_pose_difference: standard::TRACK_MAX_POSE_DIFFERENCE,
    duplicate_threshold: Thresholds::DEFAULT.duplicate_threshold,
    duplicate_max_fpir: Thresholds::DEFAULT.duplicate_max_fpir,
};

faceauth_policy_sdk::standard_policy!(StrictPolicy, "strict", STRICT);

#[cfg(test)]
mod tests {
    use super::*;
    use faceauth_policy_sdk::testing::{authenticate_image, enroll, face};
    use faceauth_policy_sdk::{Decision, Guest, reasons};

    fn auth(faces: Vec<faceauth_policy_sdk::Face>) -> Decision {
        StrictPolicy::decide_authenticate(StrictPolicy::info().params, authenticate_image(faces))
    }

    #[test]
    fn refuses_what_the_default_policy_lets_through() {
        // A match the default (0.35) accepts.
        assert_eq!(auth(vec![face(200.0, 0.48)]).reason, reasons::FACE_MISMATCH);
        assert!(auth(vec![face(200.0, 0.6)]).approved);
        // A small face, and a second face a third of the size.
        assert_eq!(auth(vec![face(60.0, 0.9)]).reason, reasons::FACE_TOO_SMALL);
        assert_eq!(auth(vec![face(200.0, 0.9), face(70.0, 0.1)]).reason, reasons::MULTIPLE_FACES_DETECTED);
        let mut turned = face(200.0, 0.9);
        turned.pose.yaw = 30.0;
        assert_eq!(auth(vec![turned]).reason, reasons::FACE_NOT_FRONTAL);
        let d = StrictPolicy::decide_enroll(StrictPolicy::info().params, enroll(vec![face(60.0, 1.0)]));
        assert_eq!(d.reason, reasons::FACE_TOO_SMALL);
    }

    #[test]
    fn its_own_parameters_pass_its_check() {
        assert!(StrictPolicy::check_params(StrictPolicy::info().params).is_ok());
    }
}
