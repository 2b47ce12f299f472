//! The standard decisions (those of the shipped default policy), parameterised so
//! other policies can reuse them with other thresholds or add checks after them.

use crate::{AuthenticateEvidence, Decision, EnrollEvidence, Face, QualityGate, reasons, split_primary};

/// Every threshold of the standard decisions.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Cosine similarity at or above which two faces are the same person.
    pub match_threshold: f32,
    /// Quality required of the face being enrolled or authenticated.
    pub quality: QualityGate,
    /// On an ID document a second face is accepted only if it is smaller than this
    /// (relative to the main portrait's height) or the same person: a "ghost" portrait.
    pub ghost_max_relative_size: f32,
    /// In a selfie, any other face at least this large relative to the primary one is
    /// refused whoever it is: a second person (or a held-up photo) is an attack
    /// pattern, and the best-matching face of several is never chosen.
    pub selfie_max_other_relative_size: f32,
}

impl Thresholds {
    /// The default policy's thresholds, measured on real images
    /// (plugins/default-policy/README.md has the figures).
    pub const DEFAULT: Thresholds = Thresholds {
        // Above every clean impostor pair measured (max 0.402 of 1612), at the cost
        // of 1 genuine pair in 83.
        match_threshold: 0.45,
        quality: QualityGate {
            // At 40 px a face keeps a median cosine of 0.82 to itself at full size (p5 0.61).
            min_face_px: 40.0,
            // Real photos: min 150. Gaussian blur of sigma 1 % of the face height gives a
            // median of 43 and still matches (cosine 0.93 to the sharp face); 2 %: 7.8
            // and 0.67; 3 %: 3.2 and 0.36.
            min_sharpness: 15.0,
            // Real frontal photos: |yaw| <= 17.3, |pitch| <= 28.3 (landmark estimates).
            max_abs_yaw: 45.0,
            max_abs_pitch: 40.0,
        },
        ghost_max_relative_size: 0.6,
        selfie_max_other_relative_size: 0.45,
    };
}

/// Enrollment: one main portrait of good quality; other faces only as ghost portraits.
pub fn decide_enroll(evidence: &EnrollEvidence, t: &Thresholds) -> Decision {
    let Some((primary, others)) = split_primary(&evidence.faces) else {
        return Decision::reject(reasons::NO_FACE_DETECTED);
    };
    let foreign = |f: &Face| f.relative_size >= t.ghost_max_relative_size && f.similarity < t.match_threshold;
    if others.iter().any(foreign) {
        return Decision::reject(reasons::MULTIPLE_FACES_DETECTED);
    }
    if let Some(reason) = t.quality.check(primary) {
        return Decision::reject(reason);
    }
    Decision::approve(reasons::ENROLLED_AS_USER, None)
}

/// Authentication: every analysed frame (one for a still image) must show one
/// dominant face, of usable quality, that matches; a different person in any frame
/// is a mismatch. The score is the worst frame's similarity.
pub fn decide_authenticate(evidence: &AuthenticateEvidence, t: &Thresholds) -> Decision {
    if evidence.frames.is_empty() || evidence.summary.frames_with_face < evidence.summary.frames {
        return Decision::reject(reasons::NO_FACE_DETECTED);
    }
    for frame in &evidence.frames {
        let Some((primary, others)) = split_primary(&frame.faces) else {
            return Decision::reject(reasons::NO_FACE_DETECTED);
        };
        if others.iter().any(|f| f.relative_size >= t.selfie_max_other_relative_size) {
            return Decision::reject(reasons::MULTIPLE_FACES_DETECTED);
        }
        if let Some(reason) = t.quality.check(primary) {
            return Decision::reject(reason);
        }
    }
    match evidence.summary.worst_similarity {
        Some(score) if score >= t.match_threshold => Decision::approve(reasons::AUTHENTIFICATION_SUCCESS, Some(score)),
        Some(_) => Decision::reject(reasons::FACE_MISMATCH),
        None => Decision::reject(reasons::NO_FACE_DETECTED),
    }
}
