// Shared by the hostile test policies: each defines `misbehave()` and includes
// this file. By default they misbehave only on enrollments with a face, which the
// host's load-time self-check does not exercise, so the harm reaches the request
// path, where the host must contain it. With `misbehave-on-authenticate = 1` they
// also misbehave on selfies, and the self-check must refuse them at load.

use faceauth_policy_sdk::{AuthenticateEvidence, Decision, EnrollEvidence, Guest, Param, PolicyInfo, param, reasons};

struct Hostile;

impl Guest for Hostile {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: NAME.into(),
            version: "0.0.0".into(),
            requires_liveness: false,
            params: vec![Param::new("misbehave-on-authenticate", 0.0)],
        }
    }

    fn check_params(_: Vec<Param>) -> Result<(), String> {
        Ok(())
    }

    fn decide_enroll(_: Vec<Param>, evidence: EnrollEvidence) -> Decision {
        if evidence.faces.is_empty() { Decision::reject(reasons::NO_FACE_DETECTED) } else { misbehave() }
    }

    fn decide_authenticate(params: Vec<Param>, evidence: AuthenticateEvidence) -> Decision {
        if evidence.frames.iter().all(|f| f.faces.is_empty()) {
            Decision::reject(reasons::NO_FACE_DETECTED)
        } else if param(&params, "misbehave-on-authenticate") == Some(1.0) {
            misbehave()
        } else {
            Decision::reject(reasons::FACE_MISMATCH)
        }
    }
}

faceauth_policy_sdk::export_policy!(Hostile);
