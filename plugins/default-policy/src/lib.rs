//! The default faceauth policy: the decisions of the original service, with
//! thresholds measured on real images (see this crate's README). Liveness is off,
//! as it was in the original service. The decisions themselves live in
//! `faceauth_policy_sdk::standard` so that other policies can reuse them.

use faceauth_policy_sdk::standard::Thresholds;

faceauth_policy_sdk::standard_policy!(DefaultPolicy, "default", Thresholds::DEFAULT);

#[cfg(test)]
mod tests {
    use super::*;
    use faceauth_policy_sdk::testing::{authenticate_image, authenticate_video, enroll, face};
    use faceauth_policy_sdk::{AuthenticateEvidence, Decision, EnrollEvidence, Guest, reasons};

    fn reason(d: &Decision) -> &str {
        &d.reason
    }

    fn enroll_decision(evidence: EnrollEvidence) -> Decision {
        DefaultPolicy::decide_enroll(DefaultPolicy::info().params, evidence)
    }

    fn auth_decision(evidence: AuthenticateEvidence) -> Decision {
        DefaultPolicy::decide_authenticate(DefaultPolicy::info().params, evidence)
    }

    #[test]
    fn a_variant_with_a_higher_threshold_rejects_what_the_default_accepts() {
        let mut strict = DefaultPolicy::info().params;
        strict.iter_mut().filter(|p| p.name == "match-threshold").for_each(|p| p.value = 0.75);
        assert!(DefaultPolicy::check_params(strict.clone()).is_ok());
        let evidence = || authenticate_image(vec![face(200.0, 0.7)]);
        assert!(auth_decision(evidence()).approved);
        assert_eq!(DefaultPolicy::decide_authenticate(strict, evidence()).reason, reasons::FACE_MISMATCH);
        let mut broken = DefaultPolicy::info().params;
        broken.retain(|p| p.name != "min-face-px");
        assert!(DefaultPolicy::check_params(broken).is_err());
    }

    #[test]
    fn enroll_accepts_one_good_face_and_a_small_ghost_portrait() {
        let d = enroll_decision(enroll(vec![face(120.0, 1.0), face(40.0, 0.1)]));
        assert!(d.approved, "{d:?}");
        // A ghost as large as the main portrait is fine when it is the same person.
        let d = enroll_decision(enroll(vec![face(120.0, 1.0), face(110.0, 0.8)]));
        assert!(d.approved, "{d:?}");
    }

    #[test]
    fn enroll_rejects_a_second_large_stranger_no_face_and_poor_faces() {
        let d = enroll_decision(enroll(vec![face(120.0, 1.0), face(100.0, 0.05)]));
        assert_eq!(reason(&d), reasons::MULTIPLE_FACES_DETECTED);
        assert_eq!(reason(&enroll_decision(enroll(vec![]))), reasons::NO_FACE_DETECTED);
        assert_eq!(reason(&enroll_decision(enroll(vec![face(30.0, 1.0)]))), reasons::FACE_TOO_SMALL);
        let mut blurry = face(120.0, 1.0);
        blurry.sharpness = 3.0;
        assert_eq!(reason(&enroll_decision(enroll(vec![blurry]))), reasons::FACE_TOO_BLURRY);
        let mut profile = face(120.0, 1.0);
        profile.pose.yaw = 85.0;
        assert_eq!(reason(&enroll_decision(enroll(vec![profile]))), reasons::FACE_NOT_FRONTAL);
    }

    #[test]
    fn authenticate_matches_on_the_primary_face_only() {
        let d = auth_decision(authenticate_image(vec![face(200.0, 0.7)]));
        assert!(d.approved);
        assert_eq!(d.score, Some(0.7));
        let d = auth_decision(authenticate_image(vec![face(200.0, 0.2)]));
        assert_eq!(reason(&d), reasons::FACE_MISMATCH);
        assert_eq!(d.score, None);
        // The matching face is the second one: never pick the best match of several.
        let d = auth_decision(authenticate_image(vec![face(200.0, 0.1), face(180.0, 0.9)]));
        assert_eq!(reason(&d), reasons::MULTIPLE_FACES_DETECTED);
        // A small background face does not matter.
        let d = auth_decision(authenticate_image(vec![face(200.0, 0.7), face(40.0, 0.0)]));
        assert!(d.approved);
        let d = auth_decision(authenticate_image(vec![]));
        assert_eq!(reason(&d), reasons::NO_FACE_DETECTED);
    }

    #[test]
    fn a_video_is_judged_on_its_usable_frames() {
        let good = || vec![face(200.0, 0.7)];
        let d = auth_decision(authenticate_video(vec![good(), good(), good()]));
        assert!(d.approved, "{d:?}");
        // A different person in any usable frame.
        let d = auth_decision(authenticate_video(vec![good(), vec![face(200.0, 0.1)], good()]));
        assert_eq!(reason(&d), reasons::FACE_MISMATCH);
        // The head turned away (out of view, or in profile) in some frames: a normal
        // capture movement, judged on the frames where the face is usable.
        let mut turned = face(200.0, 0.2);
        turned.pose.yaw = 85.0;
        let d = auth_decision(authenticate_video(vec![good(), vec![], vec![turned], good()]));
        assert!(d.approved, "{d:?}");
        assert_eq!(d.score, Some(0.7));
        // Too few usable frames: the reason most frames were refused for.
        let d = auth_decision(authenticate_video(vec![good(), vec![turned], vec![turned]]));
        assert_eq!(reason(&d), reasons::FACE_NOT_FRONTAL);
        let d = auth_decision(authenticate_video(vec![vec![], vec![], good()]));
        assert_eq!(reason(&d), reasons::NO_FACE_DETECTED);
        // A second large face in any frame, usable or not.
        let d = auth_decision(authenticate_video(vec![good(), good(), vec![face(200.0, 0.7), face(150.0, 0.0)]]));
        assert_eq!(reason(&d), reasons::MULTIPLE_FACES_DETECTED);
    }
}
