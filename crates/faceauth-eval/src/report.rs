//! The report of a verification run: decisions by class, the recognizer's and the
//! whole pipeline's figures, gate losses, the ROC curves and the impostor sweep.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use faceauth_core::policy::LoadedPolicy;
use faceauth_core::vision::FaceEmbedding;

use crate::{AttemptResult, Mode, metrics};

/// FAR over every pair of faces of different identities at each threshold.
#[derive(Debug, Clone, Serialize)]
pub struct ImpostorSweep {
    pub faces: usize,
    pub identities: usize,
    pub pairs: u64,
    /// (threshold, impostor pairs at or over it)
    pub accepted: Vec<(f64, u64)>,
}

/// Every cross-identity pair's cosine against the thresholds `from..=to` by `step`.
pub fn impostor_sweep(faces: &[(String, FaceEmbedding)], from: f64, to: f64, step: f64) -> ImpostorSweep {
    let thresholds: Vec<f64> = (0..).map(|i| from + step * f64::from(i)).take_while(|t| *t <= to + 1e-9).collect();
    impostor_sweep_at(faces, &thresholds)
}

/// Every cross-identity pair's cosine against each of `thresholds`.
pub fn impostor_sweep_at(faces: &[(String, FaceEmbedding)], thresholds: &[f64]) -> ImpostorSweep {
    let mut accepted = vec![0u64; thresholds.len()];
    let mut pairs = 0u64;
    for (i, (who_a, a)) in faces.iter().enumerate() {
        for (who_b, b) in &faces[i + 1..] {
            if who_a == who_b {
                continue;
            }
            pairs += 1;
            let s = f64::from(a.cosine(b));
            for (slot, t) in accepted.iter_mut().zip(thresholds) {
                if s >= *t {
                    *slot += 1;
                }
            }
        }
    }
    let mut identities: Vec<&str> = faces.iter().map(|(w, _)| w.as_str()).collect();
    identities.sort_unstable();
    identities.dedup();
    ImpostorSweep {
        faces: faces.len(),
        identities: identities.len(),
        pairs,
        accepted: thresholds.iter().copied().zip(accepted).collect(),
    }
}

/// Counts by reason code (the part before any `:`).
fn tally<'a>(reasons: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in reasons {
        *counts.entry(r.split(':').next().unwrap_or(r).to_string()).or_insert(0) += 1;
    }
    counts
}

/// Decisions of one class of attempts.
#[derive(Debug, Clone, Serialize)]
pub struct ClassDecisions {
    pub attempts: usize,
    pub approved: usize,
    /// approved / attempts (TAR for genuine attempts, FAR for impostors).
    pub approved_rate: f64,
    /// Why the others were refused: enrollment reasons (prefixed `enroll:`) and
    /// authentication reasons.
    pub refused: BTreeMap<String, usize>,
}

/// A genuine attempt refused by something else than the match although the
/// recognizer's similarity was over the match threshold.
#[derive(Debug, Clone, Serialize)]
pub struct GateLoss {
    pub enroll: String,
    pub authenticate: String,
    pub reason: String,
    pub similarity: f32,
}

const SECOND_FACE: &str = "MULTIPLE_FACES_DETECTED";

/// The report of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: Mode,
    pub policy: String,
    pub match_threshold: Option<f64>,
    pub attempts: usize,
    /// Distinct enrollment uploads, those refused, their share, by reason.
    pub enrollments: usize,
    pub enrollments_refused: usize,
    pub failure_to_enroll: f64,
    pub enrollment_refusals: BTreeMap<String, usize>,
    pub genuine: ClassDecisions,
    pub impostor: ClassDecisions,
    /// The recognizer's similarity alone (no gates; attempts without a face on either
    /// side unscored).
    pub recognizer: metrics::Verification,
    /// End to end: a gate refusal counts as refused at every threshold.
    pub end_to_end: metrics::Verification,
    /// End to end on photos of one person: the attempts refused for a second large
    /// face (the selfie rule against a second person; LFW's press photos often show
    /// one beside the subject) are left out of both classes.
    pub one_person: metrics::Verification,
    /// Attempts refused for a second large face (at enrollment or authentication):
    /// genuine, impostor.
    pub second_face_refusals: (usize, usize),
    /// The policy's own decisions on photos of one person: genuine approved, genuine,
    /// impostor approved, impostor.
    pub one_person_decisions: (usize, usize, usize, usize),
    /// Genuine attempts lost to a quality gate (size, sharpness, pose) or to no face
    /// found, that the recognizer would have matched.
    pub gate_losses: Vec<GateLoss>,
    /// Impostor attempts the policy approved.
    pub impostors_approved: Vec<(String, String, f32)>,
    /// FAR over every cross-identity pair of the still images authenticated with.
    pub impostor_sweep: Option<ImpostorSweep>,
    pub seconds: f64,
    pub ms_per_attempt: f64,
}

impl Report {
    pub fn new(mode: Mode, policy: &LoadedPolicy, results: &[AttemptResult], seconds: f64) -> Self {
        let match_threshold = policy.params().iter().find(|p| p.name == "match-threshold").map(|p| p.value);
        let mut enroll_reasons: BTreeMap<&str, &str> = BTreeMap::new();
        for r in results {
            enroll_reasons.insert(&r.enroll, &r.enroll_reason);
        }
        let refused_enrollments: Vec<&str> =
            enroll_reasons.values().copied().filter(|r| *r != "ENROLLED_AS_USER").collect();
        let class = |genuine: bool| {
            let of: Vec<&AttemptResult> = results.iter().filter(|r| r.genuine == genuine).collect();
            let approved = of.iter().filter(|r| r.approved).count();
            let reasons: Vec<String> = of
                .iter()
                .filter(|r| !r.approved)
                .map(|r| match &r.reason {
                    Some(reason) => reason.clone(),
                    None => format!("enroll:{}", r.enroll_reason),
                })
                .collect();
            ClassDecisions {
                attempts: of.len(),
                approved,
                approved_rate: if of.is_empty() { 0.0 } else { approved as f64 / of.len() as f64 },
                refused: tally(reasons.iter().map(String::as_str)),
            }
        };
        let scores = |genuine: bool, f: &dyn Fn(&AttemptResult) -> f64| -> Vec<f64> {
            results.iter().filter(|r| r.genuine == genuine).map(f).collect()
        };
        let raw = |r: &AttemptResult| r.similarity.map_or(f64::NEG_INFINITY, f64::from);
        let e2e = |r: &AttemptResult| r.end_to_end_score();
        let threshold = match_threshold.unwrap_or(f64::INFINITY);
        let second_face =
            |r: &AttemptResult| r.enroll_reason == SECOND_FACE || r.reason.as_deref().is_some_and(|x| x == SECOND_FACE);
        let one_person = |genuine: bool| -> Vec<f64> {
            results.iter().filter(|r| r.genuine == genuine && !second_face(r)).map(e2e).collect()
        };
        let gate_losses = results
            .iter()
            .filter(|r| r.genuine && !r.approved && !second_face(r))
            .filter(|r| r.reason.as_deref() != Some("FACE_MISMATCH"))
            .filter_map(|r| {
                let s = r.similarity.filter(|&s| f64::from(s) >= threshold)?;
                Some(GateLoss {
                    enroll: r.enroll.clone(),
                    authenticate: r.authenticate.clone(),
                    reason: r.reason.clone().unwrap_or_else(|| format!("enroll:{}", r.enroll_reason)),
                    similarity: s,
                })
            })
            .collect();
        Report {
            mode,
            policy: format!("{}@{}", policy.info().name, policy.info().version),
            match_threshold,
            attempts: results.len(),
            enrollments: enroll_reasons.len(),
            enrollments_refused: refused_enrollments.len(),
            failure_to_enroll: if enroll_reasons.is_empty() {
                0.0
            } else {
                refused_enrollments.len() as f64 / enroll_reasons.len() as f64
            },
            enrollment_refusals: tally(refused_enrollments.into_iter()),
            genuine: class(true),
            impostor: class(false),
            recognizer: metrics::verification(&scores(true, &raw), &scores(false, &raw)),
            end_to_end: metrics::verification(&scores(true, &e2e), &scores(false, &e2e)),
            one_person: metrics::verification(&one_person(true), &one_person(false)),
            one_person_decisions: (
                results.iter().filter(|r| r.genuine && !second_face(r) && r.approved).count(),
                results.iter().filter(|r| r.genuine && !second_face(r)).count(),
                results.iter().filter(|r| !r.genuine && !second_face(r) && r.approved).count(),
                results.iter().filter(|r| !r.genuine && !second_face(r)).count(),
            ),
            second_face_refusals: (
                results.iter().filter(|r| r.genuine && second_face(r)).count(),
                results.iter().filter(|r| !r.genuine && second_face(r)).count(),
            ),
            gate_losses,
            impostors_approved: results
                .iter()
                .filter(|r| !r.genuine && r.approved)
                .map(|r| (r.enroll.clone(), r.authenticate.clone(), r.similarity.unwrap_or(f32::NAN)))
                .collect(),
            impostor_sweep: None,
            seconds,
            ms_per_attempt: if results.is_empty() { 0.0 } else { seconds * 1000.0 / results.len() as f64 },
        }
    }

    /// The ROC curves of the recognizer and of the whole pipeline.
    pub fn write_roc(&self, results: &[AttemptResult], path: &Path) -> Result<(), String> {
        let pick = |genuine: bool, f: fn(&AttemptResult) -> f64| -> Vec<f64> {
            results.iter().filter(|r| r.genuine == genuine).map(f).collect()
        };
        let raw = |r: &AttemptResult| r.similarity.map_or(f64::NEG_INFINITY, f64::from);
        let (rg, ri) = (pick(true, raw), pick(false, raw));
        let (eg, ei) = (pick(true, AttemptResult::end_to_end_score), pick(false, AttemptResult::end_to_end_score));
        let title = format!("faceauth eval ({:?}): {} genuine, {} impostor", self.mode, rg.len(), ri.len());
        metrics::write_roc_svg(path, &title, &[("recognizer", &rg, &ri), ("end to end (gates)", &eg, &ei)])
    }

    /// A human-readable summary.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let pct = |x: f64| format!("{:.2} %", 100.0 * x);
        let mut s = String::new();
        let v = |s: &mut String, name: &str, m: &metrics::Verification| {
            let _ = writeln!(s, "{}", verification_line(name, m));
        };
        let _ = writeln!(
            s,
            "mode {:?}, policy {} (match-threshold {}), {} attempts ({} genuine, {} impostor)",
            self.mode,
            self.policy,
            self.match_threshold.map_or("-".into(), |t| t.to_string()),
            self.attempts,
            self.genuine.attempts,
            self.impostor.attempts
        );
        let _ = writeln!(
            s,
            "enrollment: {} uploads, {} refused (failure to enroll {}) {:?}",
            self.enrollments,
            self.enrollments_refused,
            pct(self.failure_to_enroll),
            self.enrollment_refusals
        );
        for (name, c) in [("genuine", &self.genuine), ("impostor", &self.impostor)] {
            let _ = writeln!(
                s,
                "{name}: approved {}/{} ({}); refused {:?}",
                c.approved,
                c.attempts,
                pct(c.approved_rate),
                c.refused
            );
        }
        v(&mut s, "recognizer", &self.recognizer);
        v(&mut s, "end to end", &self.end_to_end);
        let _ = writeln!(
            s,
            "refused for a second large face: {} genuine, {} impostor attempts; without them:",
            self.second_face_refusals.0, self.second_face_refusals.1
        );
        v(&mut s, "end to end, one person", &self.one_person);
        let (ga, gn, ia, inn) = self.one_person_decisions;
        let _ = writeln!(
            s,
            "policy decisions, one person: genuine approved {ga}/{gn} ({}), impostor approved {ia}/{inn} ({})",
            pct(if gn == 0 { 0.0 } else { ga as f64 / gn as f64 }),
            pct(if inn == 0 { 0.0 } else { ia as f64 / inn as f64 })
        );
        let _ = writeln!(
            s,
            "genuine lost to a quality gate (or no face) with similarity over the threshold: {}",
            self.gate_losses.len()
        );
        for g in self.gate_losses.iter().take(20) {
            let _ = writeln!(s, "  {} -> {}: {} (similarity {:.3})", g.enroll, g.authenticate, g.reason, g.similarity);
        }
        for (a, b, sim) in self.impostors_approved.iter().take(20) {
            let _ = writeln!(s, "impostor approved: {a} -> {b} (similarity {sim:.3})");
        }
        if let Some(sweep) = self.impostor_sweep.as_ref().filter(|w| w.pairs > 0) {
            let _ = writeln!(
                s,
                "every cross-identity pair of {} faces ({} identities, {} pairs): FAR at threshold",
                sweep.faces, sweep.identities, sweep.pairs
            );
            for (t, n) in &sweep.accepted {
                let _ = writeln!(s, "  {t:.3}: {:.4} % ({n}/{})", 100.0 * *n as f64 / sweep.pairs as f64, sweep.pairs);
            }
        }
        let _ = writeln!(s, "{:.1} s, {:.1} ms per attempt", self.seconds, self.ms_per_attempt);
        s
    }
}

/// One recognizer's figures; "n/a" where a side is missing: an AUC, an EER or a TAR
/// at a FAR needs genuine and impostor attempts both (issue 21: it printed AUC
/// 0.0000 and TAR 100 % with no impostors).
fn verification_line(name: &str, m: &metrics::Verification) -> String {
    let pct = |x: f64| format!("{:.2} %", 100.0 * x);
    if m.genuine == 0 || m.impostor == 0 {
        return format!(
            "{name}: n/a (ROC AUC, EER and TAR at FAR need genuine and impostor attempts: {} genuine, {} impostor scored)",
            m.genuine, m.impostor
        );
    }
    let op = |p: &metrics::OperatingPoint| {
        format!(
            "TAR {} ({}/{}) at FAR {} ({}/{}), threshold {:.3}",
            pct(p.tar),
            p.genuine_accepted,
            m.genuine,
            pct(p.far),
            p.impostor_accepted,
            m.impostor,
            p.threshold
        )
    };
    format!(
        "{name}: ROC AUC {:.4}, EER {}, best accuracy {} at {:.3}; {}; {}; unscored genuine {}, impostor {}",
        m.roc_auc,
        pct(m.eer),
        pct(m.best_accuracy),
        m.best_accuracy_threshold,
        op(&m.at_far_1e2),
        op(&m.at_far_1e3),
        m.genuine_unscored,
        m.impostor_unscored,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_that_need_both_sides_are_not_measurable_with_one() {
        let only_genuine = metrics::verification(&[0.8, 0.7, 0.9], &[]);
        let line = verification_line("recognizer", &only_genuine);
        assert!(line.contains("n/a") && !line.contains("AUC 0.0000") && !line.contains("100.00 %"), "{line}");
        let both = metrics::verification(&[0.8, 0.7, 0.9], &[0.1, 0.2]);
        assert!(verification_line("recognizer", &both).contains("ROC AUC 1.0000"));
    }
}
