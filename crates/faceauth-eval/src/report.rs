//! The report of a verification run: decisions by class, the recognizer's and the
//! whole pipeline's figures, gate losses, the ROC curves and the impostor sweep;
//! every rate with its 95 % interval (`crate::intervals`: the attempts' subject is
//! the enrolled person; the sweep's are the two identities of each pair).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use faceauth_core::policy::LoadedPolicy;
use faceauth_core::vision::FaceEmbedding;

use crate::intervals::{self, RateInterval};
use crate::{AttemptResult, Mode, metrics};

/// FAR over every pair of faces of different identities at each threshold.
#[derive(Debug, Clone, Serialize)]
pub struct ImpostorSweep {
    pub faces: usize,
    pub identities: usize,
    pub pairs: u64,
    /// (threshold, impostor pairs at or over it)
    pub accepted: Vec<(f64, u64)>,
    /// The FAR's interval at each threshold: identities resampled (both of a pair's).
    pub intervals: Vec<RateInterval>,
}

/// Every cross-identity pair's cosine against the thresholds `from..=to` by `step`.
pub fn impostor_sweep(faces: &[(String, FaceEmbedding)], from: f64, to: f64, step: f64) -> ImpostorSweep {
    let thresholds: Vec<f64> = (0..).map(|i| from + step * f64::from(i)).take_while(|t| *t <= to + 1e-9).collect();
    impostor_sweep_at(faces, &thresholds)
}

/// Every cross-identity pair's cosine against each of `thresholds`.
pub fn impostor_sweep_at(faces: &[(String, FaceEmbedding)], thresholds: &[f64]) -> ImpostorSweep {
    // The thresholds in ascending order: a pair clearing the `b` lowest is in bucket `b`.
    let mut order: Vec<usize> = (0..thresholds.len()).collect();
    order.sort_by(|&a, &b| thresholds[a].total_cmp(&thresholds[b]));
    let ascending: Vec<f64> = order.iter().map(|&i| thresholds[i]).collect();
    let index = intervals::index_of(faces.iter().map(|(w, _)| w.clone()));
    let mut per_identity = vec![0u64; index.len()];
    let ids: Vec<usize> = faces.iter().map(|(w, _)| index[w]).collect();
    for &i in &ids {
        per_identity[i] += 1;
    }
    // Accepted pairs by (identity, identity, bucket).
    let mut over: std::collections::HashMap<(usize, usize, usize), u64> = std::collections::HashMap::new();
    let mut pairs = 0u64;
    for (i, (_, a)) in faces.iter().enumerate() {
        for (j, (_, b)) in faces.iter().enumerate().skip(i + 1) {
            let (x, y) = (ids[i], ids[j]);
            if x == y {
                continue;
            }
            pairs += 1;
            let s = f64::from(a.cosine(b));
            let bucket = ascending.partition_point(|t| s >= *t);
            if bucket > 0 {
                *over.entry((x.min(y), x.max(y), bucket)).or_insert(0) += 1;
            }
        }
    }
    let mut accepted_sparse: Vec<(usize, usize, usize, u64)> =
        over.into_iter().map(|((i, j, b), n)| (i, j, b, n)).collect();
    accepted_sparse.sort_unstable();
    // Accepted at the k-th lowest threshold: every bucket over k.
    let mut by_rank = vec![0u64; ascending.len()];
    for &(_, _, bucket, n) in &accepted_sparse {
        for slot in &mut by_rank[..bucket] {
            *slot += n;
        }
    }
    let bootstrap = intervals::pair_bootstrap(
        &per_identity,
        &accepted_sparse,
        ascending.len(),
        intervals::RESAMPLES,
        intervals::SEED,
    );
    let mut accepted = vec![(0.0, 0u64); thresholds.len()];
    let mut bounds = vec![intervals::binomial(0, 0); thresholds.len()];
    for (rank, &i) in order.iter().enumerate() {
        accepted[i] = (thresholds[i], by_rank[rank]);
        bounds[i] = intervals::pair_interval(by_rank[rank], pairs, bootstrap.as_ref().map(|b| b[rank]));
    }
    ImpostorSweep { faces: faces.len(), identities: index.len(), pairs, accepted, intervals: bounds }
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
    pub approved_interval: RateInterval,
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
    pub failure_to_enroll_interval: RateInterval,
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
    /// Their intervals: genuine approved, impostor approved.
    pub one_person_intervals: (RateInterval, RateInterval),
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
        let name = format!("{}@{}", policy.info().name, policy.info().version);
        Self::of(mode, name, match_threshold, results, seconds)
    }

    /// The report of `results` decided by the policy `name` at `match_threshold`.
    pub fn of(mode: Mode, name: String, match_threshold: Option<f64>, results: &[AttemptResult], seconds: f64) -> Self {
        let mut enroll_reasons: BTreeMap<&str, &str> = BTreeMap::new();
        for r in results {
            enroll_reasons.insert(&r.enroll, &r.enroll_reason);
        }
        let refused_enrollments: Vec<&str> =
            enroll_reasons.values().copied().filter(|r| *r != "ENROLLED_AS_USER").collect();
        let mut enroll_subjects: BTreeMap<&str, &str> = BTreeMap::new();
        for r in results {
            enroll_subjects.insert(&r.enroll, &r.subject);
        }
        let failure_to_enroll_interval = intervals::of_subjects(
            enroll_reasons.iter().map(|(file, reason)| (enroll_subjects[file], *reason != "ENROLLED_AS_USER")),
        );
        // Subjects as indices, in name order.
        let subject_index = intervals::index_of(results.iter().map(|r| r.subject.clone()));
        let subject_of = |r: &AttemptResult| subject_index[&r.subject];
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
                approved_interval: intervals::of_subjects(of.iter().map(|r| (r.subject.as_str(), r.approved))),
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
        let subjects = |genuine: bool, one: bool| -> Vec<usize> {
            results.iter().filter(|r| r.genuine == genuine && !(one && second_face(r))).map(subject_of).collect()
        };
        let (all_g, all_i, one_g, one_i) =
            (subjects(true, false), subjects(false, false), subjects(true, true), subjects(false, true));
        let one_person_rate = |genuine: bool| {
            intervals::of_subjects(
                results.iter().filter(|r| r.genuine == genuine && !second_face(r)).map(|r| (subject_of(r), r.approved)),
            )
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
            policy: name,
            match_threshold,
            attempts: results.len(),
            enrollments: enroll_reasons.len(),
            enrollments_refused: refused_enrollments.len(),
            failure_to_enroll: if enroll_reasons.is_empty() {
                0.0
            } else {
                refused_enrollments.len() as f64 / enroll_reasons.len() as f64
            },
            failure_to_enroll_interval,
            enrollment_refusals: tally(refused_enrollments.into_iter()),
            genuine: class(true),
            impostor: class(false),
            recognizer: metrics::verification_by_subject(
                &scores(true, &raw),
                &scores(false, &raw),
                Some((&all_g, &all_i)),
            ),
            end_to_end: metrics::verification_by_subject(
                &scores(true, &e2e),
                &scores(false, &e2e),
                Some((&all_g, &all_i)),
            ),
            one_person: metrics::verification_by_subject(&one_person(true), &one_person(false), Some((&one_g, &one_i))),
            one_person_decisions: (
                results.iter().filter(|r| r.genuine && !second_face(r) && r.approved).count(),
                results.iter().filter(|r| r.genuine && !second_face(r)).count(),
                results.iter().filter(|r| !r.genuine && !second_face(r) && r.approved).count(),
                results.iter().filter(|r| !r.genuine && !second_face(r)).count(),
            ),
            one_person_intervals: (one_person_rate(true), one_person_rate(false)),
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
        metrics::write_roc_svg(
            path,
            &title,
            &[("recognizer", &rg, &ri), ("end to end (gates)", &eg, &ei)],
            self.match_threshold,
        )
    }

    /// A human-readable summary.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let count = |k: usize, n: usize, iv: &RateInterval| intervals::count_text(k as u64, n as u64, iv);
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
        let _ = writeln!(s, "{}", intervals::LEGEND);
        let _ = writeln!(
            s,
            "enrollment: {} uploads, failure to enroll {} {:?}",
            self.enrollments,
            count(self.enrollments_refused, self.enrollments, &self.failure_to_enroll_interval),
            self.enrollment_refusals
        );
        for (name, c) in [("genuine", &self.genuine), ("impostor", &self.impostor)] {
            let _ = writeln!(
                s,
                "{name}: approved {}; refused {:?}",
                count(c.approved, c.attempts, &c.approved_interval),
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
            "policy decisions, one person: genuine approved {}, impostor approved {}",
            count(ga, gn, &self.one_person_intervals.0),
            count(ia, inn, &self.one_person_intervals.1)
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
                "every cross-identity pair of {} faces ({} identities, {} pairs): FAR at threshold \
                 (identities resampled)",
                sweep.faces, sweep.identities, sweep.pairs
            );
            for ((t, n), iv) in sweep.accepted.iter().zip(&sweep.intervals) {
                let _ = writeln!(s, "  {t:.3}: {}", intervals::count_text(*n, sweep.pairs, iv));
            }
        }
        let _ = writeln!(s, "{:.1} s, {:.1} ms per attempt", self.seconds, self.ms_per_attempt);
        s
    }
}

/// One recognizer's figures; "n/a" where a side is missing: an AUC, an EER or a TAR
/// at a FAR needs genuine and impostor attempts both (issue 21: it printed AUC
/// 0.0000 and TAR 100 % with no impostors). A TAR at a FAR under 3 / impostors is
/// not measurable with the set, and says so instead of a number.
fn verification_line(name: &str, m: &metrics::Verification) -> String {
    let pct = |x: f64| format!("{:.2} %", 100.0 * x);
    if m.genuine == 0 || m.impostor == 0 {
        return format!(
            "{name}: n/a (ROC AUC, EER and TAR at FAR need genuine and impostor attempts: {} genuine, {} impostor scored)",
            m.genuine, m.impostor
        );
    }
    let target = |t: &metrics::FarTarget| {
        let asked = format!("at FAR {}", pct_short(t.far));
        match (t.measurable, t.tar_interval, t.far_interval) {
            (true, Some(tar), Some(far)) => format!(
                "{asked}: TAR {}, FAR {}, threshold {:.3}",
                intervals::count_text(t.point.genuine_accepted as u64, m.genuine as u64, &tar),
                intervals::count_text(t.point.impostor_accepted as u64, m.impostor as u64, &far),
                t.point.threshold
            ),
            _ => format!("TAR {asked}: {}", not_measurable(t.needs_impostors)),
        }
    };
    let targets: Vec<String> = m.far_targets.iter().map(target).collect();
    format!(
        "{name}: ROC AUC {:.4}, EER {}, best accuracy {} at {:.3}; {}; unscored genuine {}, impostor {}",
        m.roc_auc,
        pct(m.eer),
        intervals::count_text(
            m.best_accuracy_correct as u64,
            (m.genuine + m.impostor) as u64,
            &m.best_accuracy_interval
        ),
        m.best_accuracy_threshold,
        targets.join("; "),
        m.genuine_unscored,
        m.impostor_unscored,
    )
}

/// What a FAR asked for under 3 / impostors prints.
pub fn not_measurable(needs_impostors: u64) -> String {
    format!("not measurable with this set (needs >= {needs_impostors} impostors)")
}

/// 1 % or 0.1 %: a FAR asked for, as few digits as it takes.
fn pct_short(x: f64) -> String {
    format!("{} %", 100.0 * x)
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

    #[test]
    fn a_far_the_set_cannot_measure_says_so() {
        // 500 impostors: FAR 1 % measurable (>= 300), FAR 0.1 % not (>= 3000).
        let genuine: Vec<f64> = (0..100).map(|i| 0.4 + f64::from(i) / 200.0).collect();
        let impostor: Vec<f64> = (0..500).map(|i| f64::from(i) / 1000.0).collect();
        let line = verification_line("recognizer", &metrics::verification(&genuine, &impostor));
        assert!(line.contains("TAR at FAR 0.1 %: not measurable with this set (needs >= 3000 impostors)"), "{line}");
        assert!(line.contains("at FAR 1 %: TAR "), "{line}");
        assert!(!line.contains("at FAR 0.1 %: TAR"), "{line}");
    }

    fn attempt(subject: &str, n: usize, genuine: bool, approved: bool, similarity: f32) -> AttemptResult {
        AttemptResult {
            enroll: format!("{subject}/{subject}_{n}.jpg"),
            authenticate: format!("x/{n}.jpg"),
            genuine,
            subject: subject.into(),
            enroll_reason: "ENROLLED_AS_USER".into(),
            reason: Some(if approved { "AUTHENTIFICATION_SUCCESS" } else { "FACE_MISMATCH" }.into()),
            approved,
            similarity: Some(similarity),
            evidence: None,
        }
    }

    #[test]
    fn every_rate_prints_its_interval() {
        let mut results = Vec::new();
        for person in 0..30 {
            let who = format!("p{person}");
            for k in 0..8 {
                let fail = person < 3 && k < 3;
                results.push(attempt(&who, k, true, !fail, if fail { 0.2 } else { 0.8 }));
            }
            for k in 0..10 {
                let passes = person == 7 && k == 0;
                results.push(attempt(&who, 100 + k, false, passes, if passes { 0.5 } else { 0.1 }));
            }
        }
        let report = Report::of(Mode::Pairs, "test@1".into(), Some(0.35), &results, 1.0);
        assert_eq!((report.genuine.approved, report.genuine.attempts), (231, 240));
        assert_eq!((report.impostor.approved, report.impostor.attempts), (1, 300));
        let g = report.genuine.approved_interval;
        assert_eq!(g.method, intervals::Method::SubjectBootstrap);
        assert!(g.contains(231.0 / 240.0) && report.impostor.approved_interval.contains(1.0 / 300.0));
        // No enrollment refused: the rule of three.
        assert_eq!(report.failure_to_enroll_interval.method, intervals::Method::RuleOfThree);
        let text = report.text();
        for expected in [
            "failure to enroll 0/540 = 0.00 % [0.00, 0.56]",
            "genuine: approved 231/240 = 96.2 % [",
            "impostor: approved 1/300 = 0.3",
            "policy decisions, one person: genuine approved 231/240 = 96.2 % [",
            // At FAR 1 % (3 of 300 impostors may pass, those at 0.1 tie): the 0.2 genuine pass.
            "at FAR 1 %: TAR 240/240 = 100.0 % [",
            "], FAR 1/300 = 0.3",
            "TAR at FAR 0.1 %: not measurable with this set (needs >= 3000 impostors)",
            "best accuracy 539/540 = 99.",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
        assert_eq!(text, Report::of(Mode::Pairs, "test@1".into(), Some(0.35), &results, 1.0).text(), "seeded");
    }

    #[test]
    fn the_sweep_gives_each_threshold_its_interval() {
        let faces: Vec<(String, FaceEmbedding)> = (0..12)
            .map(|i: usize| {
                let raw: Vec<f32> = (0..512)
                    .map(|d: usize| ((d * (i / 2 + 1)) as f32).sin() + 0.05 * (d as f32 * i as f32).cos())
                    .collect();
                (format!("id{}", i / 2), FaceEmbedding::from_raw(&raw).expect("embedding"))
            })
            .collect();
        let sweep = impostor_sweep_at(&faces, &[0.9, 0.2, 0.5]);
        assert_eq!((sweep.identities, sweep.pairs), (6, (12 * 11 / 2 - 6) as u64));
        for ((t, n), iv) in sweep.accepted.iter().zip(&sweep.intervals) {
            assert!(iv.contains(*n as f64 / sweep.pairs as f64), "{t}: {n} {iv:?}");
        }
        // Unsorted thresholds keep their order; a lower threshold accepts at least as many.
        assert_eq!(sweep.accepted.iter().map(|a| a.0).collect::<Vec<_>>(), vec![0.9, 0.2, 0.5]);
        assert!(sweep.accepted[1].1 >= sweep.accepted[2].1 && sweep.accepted[2].1 >= sweep.accepted[0].1);
        // The same counts as a direct count of the pairs.
        let direct = |t: f64| {
            let mut n = 0;
            for (i, (a, x)) in faces.iter().enumerate() {
                for (b, y) in &faces[i + 1..] {
                    n += u64::from(a != b && f64::from(x.cosine(y)) >= t);
                }
            }
            n
        };
        assert_eq!(sweep.accepted.iter().map(|a| a.1).collect::<Vec<_>>(), vec![direct(0.9), direct(0.2), direct(0.5)]);
    }
}
