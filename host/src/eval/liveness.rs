//! `faceauth eval --mode liveness`: presentation-attack figures (ISO/IEC 30107-3
//! terms) of a liveness policy on what can be gathered here.
//!
//! Bona fide: the selfie videos (`videos/`), the live items of `liveness/labels.csv`
//! and the phone selfies (`faces/selfies`); attacks: the spoof items of
//! `liveness/labels.csv` and the simulated print and screen recaptures of
//! `scripts/eval/make_presentation_attacks.py`, when generated (their bona fide items,
//! the selfies and deepface photos as re-encoded originals, then replace the selfies). Tight face crops
//! (`apfolcrop__*`) are left out: the liveness models need the context around a face.
//!
//! Each presentation is analysed as an authentication upload and decided by the
//! policy with similarities to its own face (identity is not measured here). APCER
//! counts attacks the policy let through; BPCER, bona fide presentations it refused
//! as LIVENESS_CHECK_FAILED; presentations refused for another reason (no face...)
//! are listed apart and left out of both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::policy::LoadedPolicy;
use crate::usecase::FaceEngine;

/// One presentation.
#[derive(Debug, Clone)]
pub struct Presentation {
    pub path: PathBuf,
    pub bona_fide: bool,
    /// Where it comes from (`live_selfie`, `print_photo`, `simulated_screen`...).
    pub kind: String,
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    text.lines().skip(1).filter(|l| !l.trim().is_empty()).map(|l| l.split(',').map(str::to_string).collect()).collect()
}

/// The presentations of `shared` and, if generated, of `attacks`.
pub fn presentations(shared: &Path, attacks: &Path) -> Vec<Presentation> {
    let mut out = Vec::new();
    // The simulated set's bona fide items are these selfies (and the deepface
    // photos): count them once.
    let simulated = attacks.join("labels.csv").exists();
    let selfies = shared.join("faces/selfies");
    if let (false, Ok(attempts)) = (simulated, super::read_folder(&selfies, &[])) {
        let mut files: Vec<PathBuf> = attempts.into_iter().flat_map(|a| [a.enroll, a.authenticate]).collect();
        files.sort();
        files.dedup();
        out.extend(files.into_iter().map(|path| Presentation { path, bona_fide: true, kind: "live_selfie".into() }));
    }
    for row in csv_rows(&shared.join("videos/index.csv")) {
        if let Some(video) = row.first() {
            out.push(Presentation { path: shared.join(video), bona_fide: true, kind: "live_selfie_video".into() });
        }
    }
    for row in csv_rows(&shared.join("liveness/labels.csv")) {
        if row.len() < 3 || row[0].contains("apfolcrop__") {
            continue;
        }
        out.push(Presentation { path: shared.join(&row[0]), bona_fide: row[1] == "live", kind: row[2].clone() });
    }
    for row in csv_rows(&attacks.join("labels.csv")) {
        if row.len() < 3 {
            continue;
        }
        let origin = if row.get(3).is_some_and(|s| s.contains("deepface")) { "deepface" } else { "selfie" };
        out.push(Presentation {
            path: attacks.join(&row[0]),
            bona_fide: row[1] == "bona_fide",
            kind: format!("simulated_{}_{origin}", row[2]),
        });
    }
    out
}

/// The outcome of one presentation.
#[derive(Debug, Clone, Serialize)]
pub struct PresentationResult {
    pub file: String,
    pub bona_fide: bool,
    pub kind: String,
    pub reason: String,
    /// Median over frames of the primary face's fused live probability.
    pub live: Option<f32>,
}

/// Analyses and decides every presentation, `concurrency` at a time.
pub async fn run(
    engine: Arc<FaceEngine>,
    policy: Arc<LoadedPolicy>,
    presentations: Vec<Presentation>,
    concurrency: usize,
    progress: impl Fn() + Send + Sync + 'static,
) -> Vec<PresentationResult> {
    use futures::StreamExt;
    let progress = Arc::new(progress);
    futures::stream::iter(presentations)
        .map(|p| {
            let (engine, policy, progress) = (engine.clone(), policy.clone(), progress.clone());
            async move {
                let mut result = PresentationResult {
                    file: p.path.display().to_string(),
                    bona_fide: p.bona_fide,
                    kind: p.kind.clone(),
                    reason: String::new(),
                    live: None,
                };
                let analysed = match std::fs::read(&p.path) {
                    Ok(bytes) => engine.analyze_media(bytes, true).await.map_err(super::error_reason),
                    Err(e) => Err(format!("READ_ERROR: {e}")),
                };
                match analysed {
                    Ok(media) => {
                        let evidence = media.evidence(None);
                        let mut live: Vec<f32> =
                            evidence.frames.iter().filter_map(|f| f.faces.first().and_then(|x| x.liveness)).collect();
                        live.sort_by(f32::total_cmp);
                        result.live = median(&live);
                        result.reason = match policy.decide_authenticate(evidence).await {
                            Ok(d) => d.reason,
                            Err(e) => format!("POLICY_ERROR: {e}"),
                        };
                    }
                    Err(e) => result.reason = e,
                }
                progress();
                result
            }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await
}

fn median(sorted: &[f32]) -> Option<f32> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

const LIVENESS_FAILED: &str = "LIVENESS_CHECK_FAILED";
const APPROVED: &str = "AUTHENTIFICATION_SUCCESS";

/// Counts of one kind of presentation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindTally {
    pub presentations: usize,
    pub refused_for_liveness: usize,
    pub accepted: usize,
    pub other: BTreeMap<String, usize>,
}

/// Liveness figures.
#[derive(Debug, Clone, Serialize)]
pub struct LivenessReport {
    pub policy: String,
    pub min_liveness: Option<f64>,
    pub by_kind: BTreeMap<String, KindTally>,
    /// Attacks accepted / attacks decided on liveness.
    pub apcer: (usize, usize),
    /// Bona fide refused for liveness / bona fide decided on liveness.
    pub bpcer: (usize, usize),
    /// Over the median live probability: the lowest threshold with APCER <= 10 %,
    /// and the BPCER there (bona fide, attacks with a face).
    pub at_apcer_10: super::metrics::OperatingPoint,
    pub roc_auc: f64,
}

impl LivenessReport {
    pub fn new(policy: &LoadedPolicy, results: &[PresentationResult]) -> Self {
        let mut by_kind: BTreeMap<String, KindTally> = BTreeMap::new();
        let (mut apcer, mut bpcer) = ((0, 0), (0, 0));
        for r in results {
            let label = format!("{} {}", if r.bona_fide { "bona fide" } else { "attack" }, r.kind);
            let tally = by_kind.entry(label).or_default();
            tally.presentations += 1;
            let decided_on_liveness = r.reason == LIVENESS_FAILED || r.reason == APPROVED;
            match r.reason.as_str() {
                LIVENESS_FAILED => tally.refused_for_liveness += 1,
                APPROVED => tally.accepted += 1,
                other => *tally.other.entry(other.split(':').next().unwrap_or(other).to_string()).or_default() += 1,
            }
            if decided_on_liveness {
                if r.bona_fide {
                    bpcer.1 += 1;
                    bpcer.0 += usize::from(r.reason == LIVENESS_FAILED);
                } else {
                    apcer.1 += 1;
                    apcer.0 += usize::from(r.reason == APPROVED);
                }
            }
        }
        let score = |bona_fide: bool| -> Vec<f64> {
            results.iter().filter(|r| r.bona_fide == bona_fide).filter_map(|r| r.live.map(f64::from)).collect()
        };
        let (live, attack) = (score(true), score(false));
        Self {
            policy: format!("{}@{}", policy.info().name, policy.info().version),
            min_liveness: policy.params().iter().find(|p| p.name == "min-liveness").map(|p| p.value),
            by_kind,
            apcer,
            bpcer,
            at_apcer_10: super::metrics::at_far(&live, &attack, 0.10),
            roc_auc: super::metrics::roc_auc(&live, &attack),
        }
    }

    pub fn text(&self) -> String {
        use std::fmt::Write;
        let pct = |(n, d): (usize, usize)| format!("{:.1} % ({n}/{d})", 100.0 * n as f64 / d.max(1) as f64);
        let mut s = String::new();
        let _ = writeln!(s, "policy {} (min-liveness {:?})", self.policy, self.min_liveness);
        let _ = writeln!(s, "| presentations | n | refused for liveness | accepted | other rejections |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        for (kind, t) in &self.by_kind {
            let _ = writeln!(
                s,
                "| {kind} | {} | {} | {} | {:?} |",
                t.presentations, t.refused_for_liveness, t.accepted, t.other
            );
        }
        let _ = writeln!(s, "APCER {}, BPCER {} (other rejections left out)", pct(self.apcer), pct(self.bpcer));
        let p = &self.at_apcer_10;
        let _ = writeln!(
            s,
            "median live probability: ROC AUC {:.4}; at threshold {:.3}: APCER {:.1} % ({} attacks), BPCER {:.1} % \
             ({} bona fide accepted)",
            self.roc_auc,
            p.threshold,
            100.0 * p.far,
            p.impostor_accepted,
            100.0 * (1.0 - p.tar),
            p.genuine_accepted
        );
        s
    }
}
