//! The default decisions plus passive liveness: the host runs the MiniFASNet
//! liveness models for this policy (it declares `requires-liveness`), and a selfie
//! whose face looks printed or replayed on a screen is refused.

use faceauth_policy_sdk::standard::{self, Thresholds};
use faceauth_policy_sdk::{AuthenticateEvidence, Decision, EnrollEvidence, Guest, PolicyInfo, reasons};

/// Median fused live probability (over frames) below which a selfie is refused:
/// the models' own decision boundary; see this crate's README for the figures.
pub const LIVENESS_THRESHOLD: f32 = 0.5;

struct LivenessPolicy;

impl Guest for LivenessPolicy {
    fn info() -> PolicyInfo {
        PolicyInfo { name: "liveness".into(), version: env!("CARGO_PKG_VERSION").into(), requires_liveness: true }
    }

    fn decide_enroll(evidence: EnrollEvidence) -> Decision {
        // An ID document is a print by nature: liveness applies to selfies only.
        standard::decide_enroll(&evidence, &Thresholds::DEFAULT)
    }

    fn decide_authenticate(evidence: AuthenticateEvidence) -> Decision {
        // Liveness first: a print or a replay is named as such, whatever else is wrong
        // with it. The median over frames tolerates one doubtful frame of a live video.
        let measured: Vec<Option<f32>> =
            evidence.frames.iter().filter_map(|f| f.faces.first()).map(|f| f.liveness).collect();
        if !measured.is_empty() {
            // A face the host did not measure: fail closed.
            let Some(mut live) = measured.into_iter().collect::<Option<Vec<f32>>>() else {
                return Decision::reject(reasons::LIVENESS_CHECK_FAILED);
            };
            live.sort_by(f32::total_cmp);
            if live[live.len() / 2] < LIVENESS_THRESHOLD {
                return Decision::reject(reasons::LIVENESS_CHECK_FAILED);
            }
        }
        standard::decide_authenticate(&evidence, &Thresholds::DEFAULT)
    }
}

faceauth_policy_sdk::export_policy!(LivenessPolicy);

#[cfg(test)]
mod tests {
    use super::*;
    use faceauth_policy_sdk::testing::{authenticate_image, authenticate_video, face};

    fn with_liveness(similarity: f32, liveness: Option<f32>) -> faceauth_policy_sdk::Face {
        let mut f = face(200.0, similarity);
        f.liveness = liveness;
        f
    }

    #[test]
    fn requires_liveness_and_refuses_prints_and_replays() {
        assert!(LivenessPolicy::info().requires_liveness);
        let ok = LivenessPolicy::decide_authenticate(authenticate_image(vec![with_liveness(0.7, Some(0.9))]));
        assert!(ok.approved, "{ok:?}");
        let spoof = LivenessPolicy::decide_authenticate(authenticate_image(vec![with_liveness(0.7, Some(0.1))]));
        assert_eq!(spoof.reason, reasons::LIVENESS_CHECK_FAILED);
        let unmeasured = LivenessPolicy::decide_authenticate(authenticate_image(vec![with_liveness(0.7, None)]));
        assert_eq!(unmeasured.reason, reasons::LIVENESS_CHECK_FAILED);
        // A mismatch stays a mismatch.
        let other = LivenessPolicy::decide_authenticate(authenticate_image(vec![with_liveness(0.1, Some(0.9))]));
        assert_eq!(other.reason, reasons::FACE_MISMATCH);
    }

    #[test]
    fn one_doubtful_video_frame_is_tolerated() {
        let frames = |l: [f32; 3]| l.iter().map(|&x| vec![with_liveness(0.7, Some(x))]).collect();
        assert!(LivenessPolicy::decide_authenticate(authenticate_video(frames([0.9, 0.4, 0.8]))).approved);
        let d = LivenessPolicy::decide_authenticate(authenticate_video(frames([0.2, 0.6, 0.1])));
        assert_eq!(d.reason, reasons::LIVENESS_CHECK_FAILED);
    }
}
