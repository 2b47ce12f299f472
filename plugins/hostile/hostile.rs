// Shared by the hostile test policies: each defines `misbehave()` and includes
// this file. They pass the host's load-time self-check (no face: reject) so the
// harm reaches the request path, where the host must contain it.

use faceauth_policy_sdk::{AuthenticateEvidence, Decision, EnrollEvidence, Guest, PolicyInfo, reasons};

struct Hostile;

impl Guest for Hostile {
    fn info() -> PolicyInfo {
        PolicyInfo { name: NAME.into(), version: "0.0.0".into(), requires_liveness: false }
    }

    fn decide_enroll(evidence: EnrollEvidence) -> Decision {
        if evidence.faces.is_empty() { Decision::reject(reasons::NO_FACE_DETECTED) } else { misbehave() }
    }

    fn decide_authenticate(evidence: AuthenticateEvidence) -> Decision {
        if evidence.frames.iter().all(|f| f.faces.is_empty()) {
            Decision::reject(reasons::NO_FACE_DETECTED)
        } else {
            misbehave()
        }
    }
}

faceauth_policy_sdk::export_policy!(Hostile);
