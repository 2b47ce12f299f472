//! The standard decisions (those of the shipped default policy), parameterised so
//! other policies can reuse them with other thresholds or add checks after them.

use crate::{
    AuthenticateEvidence, Decision, EnrollEvidence, Face, Param, QualityGate, param_in, reasons, split_primary,
};

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
    /// A video needs at least this many usable frames (a face passing the quality
    /// gates) to be judged; fewer gives the reason most frames were refused for. A
    /// clip with fewer frames than this needs them all.
    pub min_usable_frames: f32,
}

impl Thresholds {
    /// The default policy's thresholds, measured on real images
    /// (plugins/default-policy/README.md has the figures).
    pub const DEFAULT: Thresholds = Thresholds {
        // FAR <= 0.1 % over every cross-identity pair of LFW View-1 training faces
        // (0.071 %, 1279 of 1797874; 0.30 gives 0.28 %) and no selfie impostor pair
        // over it but two of 474 (0.352, 0.373, two similar-looking young women); TAR
        // 97.5 % of the 1100 LFW genuine pairs, 61/61 selfie pairs (`faceauth eval`,
        // plugins/default-policy/README.md).
        match_threshold: 0.35,
        quality: QualityGate {
            // At 40 px a face keeps a median cosine of 0.82 to itself at full size (p5 0.61).
            min_face_px: 40.0,
            // Under every LFW photo (min 8.5 of 3443; the 3 under 15 in genuine pairs
            // all matched, 0.51-0.60), over the 3 %-blurred selfie fixture (7.9,
            // similarity 0.28 to its card, where the sharp selfie has 0.81).
            min_sharpness: 8.0,
            // The landmark pose estimate is rough: LFW genuine pairs still match at
            // estimated yaw 50-70 deg; at 45/40 the gate refused 164 of 2200 pairs,
            // 77 of them genuine pairs that matched; at 75/75, 6 pairs (2 genuine).
            max_abs_yaw: 75.0,
            max_abs_pitch: 75.0,
        },
        ghost_max_relative_size: 0.6,
        selfie_max_other_relative_size: 0.45,
        min_usable_frames: 2.0,
    };
}

impl Thresholds {
    /// The thresholds as a parameter set (names as in `from_params`).
    pub fn params(&self) -> Vec<Param> {
        let q = &self.quality;
        [
            ("match-threshold", self.match_threshold),
            ("min-face-px", q.min_face_px),
            ("min-sharpness", q.min_sharpness),
            ("max-abs-yaw", q.max_abs_yaw),
            ("max-abs-pitch", q.max_abs_pitch),
            ("ghost-max-relative-size", self.ghost_max_relative_size),
            ("selfie-max-other-relative-size", self.selfie_max_other_relative_size),
            ("min-usable-frames", self.min_usable_frames),
        ]
        .into_iter()
        // Rounded so 0.45f32 reads 0.45, not 0.449999988.
        .map(|(name, value)| Param::new(name, (f64::from(value) * 1e6).round() / 1e6))
        .collect()
    }

    /// Reads the thresholds from a complete parameter set (other names are ignored),
    /// refusing values outside their meaningful range.
    pub fn from_params(params: &[Param]) -> Result<Thresholds, String> {
        Ok(Thresholds {
            match_threshold: param_in(params, "match-threshold", -1.0..=1.0)?,
            quality: QualityGate {
                min_face_px: param_in(params, "min-face-px", 0.0..=4096.0)?,
                min_sharpness: param_in(params, "min-sharpness", 0.0..=1e6)?,
                max_abs_yaw: param_in(params, "max-abs-yaw", 0.0..=180.0)?,
                max_abs_pitch: param_in(params, "max-abs-pitch", 0.0..=180.0)?,
            },
            ghost_max_relative_size: param_in(params, "ghost-max-relative-size", 0.0..=1.0)?,
            selfie_max_other_relative_size: param_in(params, "selfie-max-other-relative-size", 0.0..=1.0)?,
            min_usable_frames: param_in(params, "min-usable-frames", 1.0..=64.0)?,
        })
    }
}

/// `decide_enroll` with the thresholds read from `params`.
pub fn enroll_with_params(params: &[Param], evidence: &EnrollEvidence) -> Decision {
    match Thresholds::from_params(params) {
        Ok(t) => decide_enroll(evidence, &t),
        Err(_) => Decision::reject(reasons::INVALID_POLICY_PARAMS),
    }
}

/// `decide_authenticate` with the thresholds read from `params`.
pub fn authenticate_with_params(params: &[Param], evidence: &AuthenticateEvidence) -> Decision {
    match Thresholds::from_params(params) {
        Ok(t) => decide_authenticate(evidence, &t),
        Err(_) => Decision::reject(reasons::INVALID_POLICY_PARAMS),
    }
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

/// Authentication. A still image is one frame; a video is judged on its usable
/// frames. In every frame, a second face at least `selfie_max_other_relative_size`
/// of the primary's height is refused (another person, or a held-up photo, is an
/// attack pattern; the best-matching face of several is never chosen). Identity is
/// judged on the frames whose primary face passes the quality gates: a selfie video
/// in a capture flow turns and nods, and those frames are neither evidence for nor
/// against. Every usable frame must match (one that does not is a different person);
/// too few usable frames give the reason most frames were refused for. The score is
/// the worst usable frame's similarity.
pub fn decide_authenticate(evidence: &AuthenticateEvidence, t: &Thresholds) -> Decision {
    if evidence.frames.is_empty() {
        return Decision::reject(reasons::NO_FACE_DETECTED);
    }
    let mut refusals: Vec<&'static str> = Vec::new();
    let mut usable: Vec<&Face> = Vec::new();
    for frame in &evidence.frames {
        let Some((primary, others)) = split_primary(&frame.faces) else {
            refusals.push(reasons::NO_FACE_DETECTED);
            continue;
        };
        if others.iter().any(|f| f.relative_size >= t.selfie_max_other_relative_size) {
            return Decision::reject(reasons::MULTIPLE_FACES_DETECTED);
        }
        match t.quality.check(primary) {
            Some(reason) => refusals.push(reason),
            None => usable.push(primary),
        }
    }
    let needed = (t.min_usable_frames.max(1.0) as usize).min(evidence.frames.len());
    if usable.len() < needed {
        return Decision::reject(most_common(&refusals).unwrap_or(reasons::NO_FACE_DETECTED));
    }
    let worst = usable.iter().map(|f| f.similarity).fold(f32::INFINITY, f32::min);
    if worst >= t.match_threshold {
        Decision::approve(reasons::AUTHENTIFICATION_SUCCESS, Some(worst))
    } else {
        Decision::reject(reasons::FACE_MISMATCH)
    }
}

/// The most frequent reason (the first seen among equals).
fn most_common(reasons: &[&'static str]) -> Option<&'static str> {
    let mut best: Option<(&'static str, usize)> = None;
    for &r in reasons {
        let n = reasons.iter().filter(|&&o| o == r).count();
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((r, n));
        }
    }
    best.map(|(r, _)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_roundtrip_through_params_and_ranges_are_checked() {
        let params = Thresholds::DEFAULT.params();
        let back = Thresholds::from_params(&params).expect("defaults are valid");
        assert_eq!(back.match_threshold, Thresholds::DEFAULT.match_threshold);
        assert_eq!(back.quality.min_face_px, Thresholds::DEFAULT.quality.min_face_px);
        let mut bad = params.clone();
        bad[0].value = 2.0;
        assert!(Thresholds::from_params(&bad).unwrap_err().contains("match-threshold"));
        assert!(Thresholds::from_params(&params[1..]).unwrap_err().contains("missing"));
        let mut nan = params;
        nan[2].value = f64::NAN;
        assert!(Thresholds::from_params(&nan).is_err());
    }
}
