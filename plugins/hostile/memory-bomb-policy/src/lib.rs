//! Hostile test policy: allocates without bound once a face is present (memory limit test).
//! It passes the host's load-time self-check (no face: reject) so that the harm
//! reaches the request path, where the host must contain it.

use faceauth_policy_sdk::{AuthenticateEvidence, Decision, EnrollEvidence, Guest, PolicyInfo, reasons};

struct Hostile;

fn misbehave() -> Decision {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
    }
}

impl Guest for Hostile {
    fn info() -> PolicyInfo {
        PolicyInfo { name: "memory-bomb".into(), version: "0.0.0".into(), requires_liveness: false }
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
