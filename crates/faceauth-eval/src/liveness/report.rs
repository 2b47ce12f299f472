//! The liveness report: counts per kind and source, APCER and BPCER per ISO/IEC
//! 30107-3 attack type at the policy's rules and at the reference, the
//! leave-one-source-out tables, the video cues; and its text.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use faceauth_core::policy::LoadedPolicy;

use super::loso::{Columns, Count, LosoTable, columns, loso_table};
use super::run::{APPROVED, LIVENESS_FAILED, PresentationResult, Rules};

/// Today's rule, the reference every variant is compared with.
pub const REFERENCE_MIN_LIVENESS: f32 = 0.3;

/// Counts of one kind of presentation from one source, at the policy's parameters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindRow {
    pub set: String,
    pub source: String,
    pub kind: String,
    pub column: String,
    pub bona_fide: bool,
    pub presentations: usize,
    /// Decided on liveness (a face measured), and of those refused for liveness.
    pub decided: usize,
    pub refused_for_liveness: usize,
    /// Refused by the decision with the liveness rules off, by reason (no face: not
    /// decided on liveness; a quality gate, a mismatch of the face track: decided on
    /// liveness all the same, and refused anyway).
    pub other: BTreeMap<String, usize>,
    /// Lowest, median and highest live probability of those with a face.
    pub live_range: Option<(f32, f32, f32)>,
}

/// Video cues, per column, for the videos decided on liveness.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CueRow {
    pub column: String,
    pub videos: usize,
    pub with_blink: usize,
    pub yaw_range_12: usize,
    pub non_rigid_002: usize,
    /// Refused by the still-video rule alone / the movement requirement alone.
    pub still_refused: usize,
    pub cue_refused: usize,
    /// Lowest and highest `landmark-motion`, and `non-rigid-motion` (medians over pairs).
    pub landmark_motion: Option<(f32, f32)>,
    pub non_rigid_motion: Option<(f32, f32)>,
}

/// Liveness figures.
#[derive(Debug, Clone, Serialize)]
pub struct LivenessReport {
    pub policy: String,
    pub rules: Rules,
    pub rows: Vec<KindRow>,
    /// At the policy's parameters, and at the reference: APCER / BPCER per column.
    pub at_policy: Columns,
    pub at_reference: Columns,
    pub loso: Vec<LosoTable>,
    pub cues: Vec<CueRow>,
    /// Presentations decided on liveness whose actual decision the rules reproduce.
    pub consistency: Count,
    /// Over the median live probability, the `shared` set without crops: ROC AUC.
    pub roc_auc: f64,
    pub roc_auc_crops: f64,
}

impl LivenessReport {
    pub fn new(policy: &LoadedPolicy, results: &[PresentationResult]) -> Self {
        let rules = Rules::of(policy.params());
        let reference = Rules { min_liveness: REFERENCE_MIN_LIVENESS, still_video: false, video_cue: false };
        let all: Vec<&PresentationResult> = results.iter().collect();

        let mut rows: BTreeMap<(String, bool, String, String), KindRow> = BTreeMap::new();
        for r in results {
            let row =
                rows.entry((r.set.clone(), r.bona_fide, r.kind.clone(), r.source.clone())).or_insert_with(|| KindRow {
                    set: r.set.clone(),
                    source: r.source.clone(),
                    kind: r.kind.clone(),
                    column: r.column(),
                    bona_fide: r.bona_fide,
                    ..KindRow::default()
                });
            row.presentations += 1;
            if let Some(refused) = r.refused(&rules) {
                row.decided += 1;
                row.refused_for_liveness += usize::from(refused);
            }
            let reason = r.base_reason.as_deref().unwrap_or(&r.reason);
            if reason != APPROVED {
                *row.other.entry(reason.split(':').next().unwrap_or(reason).to_string()).or_default() += 1;
            }
        }
        for row in rows.values_mut() {
            let mut live: Vec<f32> = results
                .iter()
                .filter(|r| {
                    (&r.set, r.bona_fide, &r.kind, &r.source) == (&row.set, row.bona_fide, &row.kind, &row.source)
                })
                .filter_map(|r| r.live)
                .collect();
            live.sort_by(f32::total_cmp);
            if let (Some(&lo), Some(&hi)) = (live.first(), live.last()) {
                row.live_range = Some((lo, live[live.len() / 2], hi));
            }
        }

        let consistency = {
            let mut c = Count::default();
            for r in results {
                if let Some(refused) = r.refused(&rules) {
                    let actual = r.reason == LIVENESS_FAILED;
                    c.add(&r.source, actual != refused);
                }
            }
            c
        };

        let loso = vec![
            loso_table("reference: median live probability >= 0.3, no video rule", results, |_| reference),
            loso_table(
                "min-liveness chosen on the other sources (largest with BPCER <= 3 %), no video rule",
                results,
                |t| Rules { min_liveness: t, still_video: false, video_cue: false },
            ),
            loso_table("reference 0.3 + still-video rule", results, |_| Rules { still_video: true, ..reference }),
            loso_table("chosen min-liveness + still-video rule", results, |t| Rules {
                min_liveness: t,
                still_video: true,
                video_cue: false,
            }),
            loso_table("reference 0.3 + movement required (blink, head turn or non-rigid motion)", results, |_| {
                Rules { video_cue: true, ..reference }
            }),
        ];

        let mut cues: BTreeMap<String, CueRow> = BTreeMap::new();
        for r in results.iter().filter(|r| r.decided_on_liveness()) {
            let Some(m) = r.motion.as_ref().filter(|m| m.pairs > 0) else { continue };
            let row = cues.entry(r.column()).or_insert_with(|| CueRow { column: r.column(), ..CueRow::default() });
            row.videos += 1;
            row.with_blink += usize::from(m.blinks >= 1);
            row.yaw_range_12 += usize::from(m.yaw_range >= 12.0);
            row.non_rigid_002 += usize::from(m.non_rigid_motion >= 0.02);
            row.still_refused += usize::from(r.still_refused == Some(true));
            row.cue_refused += usize::from(r.cue_refused == Some(true));
            let widen = |range: &mut Option<(f32, f32)>, v: f32| {
                *range = Some(range.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
            };
            widen(&mut row.landmark_motion, m.landmark_motion);
            widen(&mut row.non_rigid_motion, m.non_rigid_motion);
        }

        let score = |crop: bool, bona_fide: bool| -> Vec<f64> {
            results
                .iter()
                .filter(|r| r.set == "shared" && r.crop == crop && r.bona_fide == bona_fide && r.decided_on_liveness())
                .filter_map(|r| r.live.map(f64::from))
                .collect()
        };
        Self {
            policy: format!("{}@{}", policy.info().name, policy.info().version),
            rules,
            rows: rows.into_values().collect(),
            at_policy: columns(&all, &rules),
            at_reference: columns(&all, &reference),
            loso,
            cues: cues.into_values().collect(),
            consistency,
            roc_auc: crate::metrics::roc_auc(&score(false, true), &score(false, false)),
            roc_auc_crops: crate::metrics::roc_auc(&score(true, true), &score(true, false)),
        }
    }

    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "policy {}: {}", self.policy, self.rules.describe());
        let _ = writeln!(
            s,
            "\nPresentations by source (decided: a face measured, so the liveness rules judged it; \
             refused anyway: by the decision with the liveness rules off)\n"
        );
        let _ = writeln!(
            s,
            "| set | source | presentations | n | decided | refused for liveness | live min / median / max | refused anyway |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let range = r.live_range.map_or("-".into(), |(a, b, c)| format!("{a:.3} / {b:.3} / {c:.3}"));
            let _ = writeln!(
                s,
                "| {} | {} | {} {} | {} | {} | {} | {range} | {:?} |",
                r.set,
                r.source,
                if r.bona_fide { "bona fide" } else { "attack" },
                r.kind,
                r.presentations,
                r.decided,
                r.refused_for_liveness,
                r.other
            );
        }
        let _ = writeln!(
            s,
            "\nPer attack type (ISO/IEC 30107-3): APCER of attacks, BPCER of bona fide, errors/n = rate [95 % interval: \
             sources resampled (2000 bootstrap resamples, fixed seed, at least Wilson's width); Wilson within one \
             source; rule of three [0, 3/n] with no error]\n"
        );
        let _ = writeln!(s, "| type | policy ({}) | reference ({}) |", self.rules.describe(), REFERENCE_MIN_LIVENESS);
        let _ = writeln!(s, "|---|---|---|");
        let names: BTreeSet<&String> = self.at_policy.keys().chain(self.at_reference.keys()).collect();
        for name in names {
            let get = |c: &Columns| c.get(name).cloned().unwrap_or_default().text();
            let what = if name.starts_with("bona fide") { "BPCER" } else { "APCER" };
            let _ = writeln!(s, "| {name}: {what} | {} | {} |", get(&self.at_policy), get(&self.at_reference));
        }
        for name in ["disguise", "deepfake"] {
            let _ = writeln!(s, "| {name}: APCER | not measured (no presentation here) | - |");
        }
        let _ = writeln!(
            s,
            "consistency: the rules reproduce the policy's own decision on {}/{} presentations decided on liveness",
            self.consistency.n - self.consistency.errors,
            self.consistency.n
        );
        let _ = writeln!(
            s,
            "median live probability, ROC AUC: {:.4} (shared set, no crops); {:.4} (face crops)",
            self.roc_auc, self.roc_auc_crops
        );

        for table in &self.loso {
            let _ = writeln!(s, "\nLeave one source out: {}\n", table.name);
            let cols: BTreeSet<&String> = table.pooled.keys().collect();
            let _ = write!(s, "| left out | min-liveness | training BPCER |");
            for c in &cols {
                let _ = write!(s, " {c} |");
            }
            let _ = writeln!(s);
            let _ = writeln!(s, "|---|---|---|{}", "---|".repeat(cols.len()));
            for fold in &table.folds {
                let _ = write!(s, "| {} | {:.3} | {} |", fold.left_out, fold.rules.min_liveness, fold.training.text());
                for c in &cols {
                    let _ = write!(s, " {} |", fold.held_out.get(*c).cloned().unwrap_or_default().text());
                }
                let _ = writeln!(s);
            }
            let _ = write!(s, "| **pooled** | | |");
            for c in &cols {
                let _ = write!(s, " {} |", table.pooled.get(*c).cloned().unwrap_or_default().text());
            }
            let _ = writeln!(s);
            let missed = |c: &[String]| if c.is_empty() { "none".to_string() } else { c.join(", ") };
            let _ = writeln!(
                s,
                "target (BPCER <= 3 %, APCER <= 5 % on every fold) missed for: {}; face crops: {}",
                missed(&table.target_missed),
                missed(&table.target_missed_crops)
            );
            if !table.target_not_measurable.is_empty() {
                let small: Vec<String> =
                    table.target_not_measurable.iter().map(|(c, needs)| format!("{c} (needs >= {needs})")).collect();
                let _ = writeln!(s, "target not measurable with this set, pooled over the folds: {}", small.join(", "));
            }
        }

        let _ = writeln!(s, "\nVideo cues (videos decided on liveness)\n");
        let _ = writeln!(
            s,
            "| videos | n | blink | yaw range >= 12 | non-rigid >= 0.02 | refused by still rule | refused by movement rule | landmark motion | non-rigid motion |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        let range = |r: Option<(f32, f32)>| r.map_or("-".into(), |(a, b)| format!("{a:.4}-{b:.4}"));
        for c in &self.cues {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.column,
                c.videos,
                c.with_blink,
                c.yaw_range_12,
                c.non_rigid_002,
                c.still_refused,
                c.cue_refused,
                range(c.landmark_motion),
                range(c.non_rigid_motion)
            );
        }
        s
    }
}
