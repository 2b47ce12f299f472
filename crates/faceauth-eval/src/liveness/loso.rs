//! APCER and BPCER per column under one rule set, and the leave-one-source-out
//! tables: `min-liveness` chosen on the other sources, counted on the left-out one.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::run::{PresentationResult, Rules};
use crate::intervals::{self, RateInterval};

/// The LOSO criterion: the largest `min-liveness` keeping the training BPCER at most this.
pub const LOSO_MAX_BPCER: f64 = 0.03;

/// Errors out of presentations: (refused bona fide or accepted attacks, decided on
/// liveness), with the sources they come from: the subjects of its 95 % interval
/// (`crate::intervals`; Wilson's within one source, the rule of three at 0 errors).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Count {
    pub errors: usize,
    pub n: usize,
    /// (errors, n) per source.
    pub by_source: BTreeMap<String, (u64, u64)>,
}

impl Count {
    pub(super) fn add(&mut self, source: &str, error: bool) {
        self.n += 1;
        self.errors += usize::from(error);
        let c = self.by_source.entry(source.to_string()).or_default();
        c.0 += u64::from(error);
        c.1 += 1;
    }

    fn merge(&mut self, other: &Count) {
        self.n += other.n;
        self.errors += other.errors;
        for (source, (e, n)) in &other.by_source {
            let c = self.by_source.entry(source.clone()).or_default();
            c.0 += e;
            c.1 += n;
        }
    }

    pub fn rate(&self) -> f64 {
        if self.n == 0 { 0.0 } else { self.errors as f64 / self.n as f64 }
    }

    /// The rate's 95 % interval, the sources resampled.
    pub fn interval(&self) -> RateInterval {
        intervals::interval(&self.by_source.values().copied().collect::<Vec<_>>())
    }

    /// (errors, n).
    pub fn counts(&self) -> (usize, usize) {
        (self.errors, self.n)
    }

    pub(super) fn text(&self) -> String {
        if self.n == 0 {
            "-".into()
        } else {
            intervals::count_text(self.errors as u64, self.n as u64, &self.interval())
        }
    }
}

impl Serialize for Count {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Count", 5)?;
        s.serialize_field("errors", &self.errors)?;
        s.serialize_field("n", &self.n)?;
        s.serialize_field("rate", &self.rate())?;
        s.serialize_field("interval", &self.interval())?;
        s.serialize_field("sources", &self.by_source.len())?;
        s.end()
    }
}

/// APCER or BPCER per column, under one rule set.
pub type Columns = BTreeMap<String, Count>;

/// One fold of a leave-one-source-out table.
#[derive(Debug, Clone, Serialize)]
pub struct Fold {
    pub left_out: String,
    pub rules: Rules,
    /// Training bona fide presentations the threshold was chosen on, and the training BPCER there.
    pub training: Count,
    pub held_out: Columns,
}

/// A leave-one-source-out table: one rule family, one fold per source.
#[derive(Debug, Clone, Serialize)]
pub struct LosoTable {
    pub name: String,
    pub folds: Vec<Fold>,
    /// The held-out counts summed over the folds.
    pub pooled: Columns,
    /// Columns (attack types) whose APCER is over 5 %, or bona fide columns over 3 %,
    /// on some fold: the target is not held there. Face crops apart (the server never
    /// receives one).
    pub target_missed: Vec<String>,
    pub target_missed_crops: Vec<String>,
    /// Columns too small to show the target met even pooled over every fold: a rate
    /// of at most 5 % (3 %) needs at least 3 / 5 % = 60 (100) presentations (the rule
    /// of three), with the number each needs.
    pub target_not_measurable: Vec<(String, u64)>,
}

/// The LOSO target of a column: BPCER at most 3 % for bona fide, APCER at most 5 %.
fn target_of(column: &str) -> f64 {
    if column.starts_with("bona fide") { LOSO_MAX_BPCER } else { 0.05 }
}

pub(super) fn columns(results: &[&PresentationResult], rules: &Rules) -> Columns {
    let mut out = Columns::new();
    for r in results {
        if let Some(refused) = r.refused(rules) {
            // BPCER: bona fide refused; APCER: attacks accepted.
            out.entry(r.column()).or_default().add(&r.source, refused == r.bona_fide);
        }
    }
    out
}

/// The largest `min-liveness` whose BPCER on `bona_fide` scores is at most `max_bpcer`.
pub fn largest_threshold(bona_fide: &[f32], max_bpcer: f64) -> f32 {
    let mut s = bona_fide.to_vec();
    s.sort_by(f32::total_cmp);
    let allowed = (max_bpcer * s.len() as f64 + 1e-9).floor() as usize;
    // Refusing the `allowed` lowest: the threshold is the next score (accepted at >=).
    s.get(allowed).copied().unwrap_or(1.0)
}

/// One LOSO table: for each source of the `shared` and `still` sets (and the
/// simulated set as one more fold, trained on every real source), the threshold
/// chosen on the other real sources' bona fide (no crops), `rules_for(threshold)`
/// applied to the left-out source.
pub(super) fn loso_table(name: &str, results: &[PresentationResult], rules_for: impl Fn(f32) -> Rules) -> LosoTable {
    let real = |r: &&PresentationResult| r.set != "simulated";
    let mut sources: Vec<&String> = results.iter().filter(real).map(|r| &r.source).collect();
    sources.sort();
    sources.dedup();
    let simulated = results.iter().any(|r| r.set == "simulated");
    let mut folds = Vec::new();
    let mut pooled = Columns::new();
    let mut missed = BTreeSet::new();
    let left_outs = sources.iter().map(|s| Some(s.as_str())).chain(simulated.then_some(None));
    for left_out in left_outs {
        let training: Vec<&PresentationResult> = results
            .iter()
            .filter(|r| {
                r.set == "shared"
                    && r.bona_fide
                    && !r.crop
                    && Some(r.source.as_str()) != left_out
                    && r.decided_on_liveness()
            })
            .collect();
        let scores: Vec<f32> = training.iter().filter_map(|r| r.live).collect();
        let rules = rules_for(largest_threshold(&scores, LOSO_MAX_BPCER));
        let mut training_count = Count::default();
        for r in &training {
            training_count.add(&r.source, r.refused(&rules) == Some(true));
        }
        let held: Vec<&PresentationResult> = results
            .iter()
            .filter(|r| match left_out {
                Some(source) => real(r) && r.source == source,
                None => r.set == "simulated",
            })
            .collect();
        let held_out = columns(&held, &rules);
        for (column, count) in &held_out {
            pooled.entry(column.clone()).or_default().merge(count);
            if count.rate() > target_of(column) {
                missed.insert(column.clone());
            }
        }
        folds.push(Fold {
            left_out: left_out.unwrap_or("simulated recaptures (all real sources train)").to_string(),
            rules,
            training: training_count,
            held_out,
        });
    }
    let (crops, missed): (Vec<String>, Vec<String>) = missed.into_iter().partition(|c| c.contains("(crops)"));
    let target_not_measurable = pooled
        .iter()
        .map(|(column, count)| (column.clone(), crate::metrics::needs_impostors(target_of(column)), count.n as u64))
        .filter(|(_, needs, n)| n < needs)
        .map(|(column, needs, _)| (column, needs))
        .collect();
    LosoTable {
        name: name.to_string(),
        folds,
        pooled,
        target_missed: missed,
        target_missed_crops: crops,
        target_not_measurable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::liveness::{Species, run::APPROVED};

    #[test]
    fn the_largest_threshold_refuses_at_most_the_allowed_share() {
        let scores: Vec<f32> = (1..=100).map(|i| i as f32 / 100.0).collect();
        // 3 % of 100: the three lowest may be refused, the fourth (0.04) is accepted.
        assert_eq!(largest_threshold(&scores, 0.03), 0.04);
        assert_eq!(largest_threshold(&scores[..10], 0.03), 0.01);
        assert_eq!(largest_threshold(&[], 0.03), 1.0);
    }

    fn result(source: &str, bona_fide: bool, kind: &str, live: f32, still: bool) -> PresentationResult {
        PresentationResult {
            file: String::new(),
            bona_fide,
            kind: kind.into(),
            source: source.into(),
            set: "shared".into(),
            species: Species::of(bona_fide, kind),
            crop: false,
            reason: String::new(),
            live: Some(live),
            frames: 1,
            frames_with_face: 1,
            motion: None,
            base_reason: Some(APPROVED.into()),
            still_refused: Some(still),
            cue_refused: Some(false),
        }
    }

    #[test]
    fn loso_chooses_on_the_other_sources_and_counts_the_left_out_one() {
        let mut results = Vec::new();
        for i in 0..40 {
            results.push(result("a", true, "real", 0.5 + i as f32 / 100.0, false));
            results.push(result("b", true, "real", 0.2 + i as f32 / 100.0, false));
        }
        results.push(result("a", false, "print_photo", 0.45, false));
        results.push(result("b", false, "print_photo", 0.1, false));
        results.push(result("b", false, "still_video", 0.9, true));
        let mut other = result("b", false, "print_photo", 0.9, false);
        other.base_reason = Some("NO_FACE_DETECTED".into());
        other.live = None;
        results.push(other);
        let table = loso_table("t", &results, |t| Rules { min_liveness: t, still_video: true, video_cue: false });
        // Left out a: trained on b (0.20..0.59, one of 40 may go): 0.21; a's print at 0.45 passes.
        let a = &table.folds[0];
        assert_eq!(a.left_out, "a");
        assert!((a.rules.min_liveness - 0.21).abs() < 1e-6, "{:?}", a.rules);
        assert_eq!(a.held_out["print"].counts(), (1, 1));
        assert_eq!(a.held_out["bona fide"].counts(), (0, 40));
        // Left out b: trained on a (0.50..0.89): 0.51 refuses 31 of b's bona fide.
        let b = &table.folds[1];
        assert_eq!(b.held_out["bona fide"].counts(), (31, 40));
        assert_eq!(b.held_out["print"].counts(), (0, 1));
        assert_eq!(b.held_out["still photo as video"].counts(), (0, 1));
        assert_eq!(table.pooled["print"].counts(), (1, 2));
        // A fold is one source: Wilson's interval; pooled over the two sources: resampled.
        assert_eq!(b.held_out["bona fide"].interval().method, crate::intervals::Method::Wilson);
        assert!(b.held_out["bona fide"].text().starts_with("31/40 = 77.5 % ["), "{}", b.held_out["bona fide"].text());
        let pooled = &table.pooled["bona fide"];
        assert_eq!((pooled.by_source.len(), pooled.counts()), (2, (31, 80)));
        assert_eq!(pooled.interval().method, crate::intervals::Method::SubjectBootstrap);
        assert!(pooled.interval().contains(pooled.rate()));
        // No error: the rule of three.
        assert_eq!(a.held_out["bona fide"].text(), "0/40 = 0.0 % [0.0, 7.5]");
        assert!(table.target_missed.contains(&"print".to_string()));
        // 80 bona fide pooled: a BPCER of 3 % needs 100; 2 prints: an APCER of 5 % needs 60.
        assert!(table.target_not_measurable.contains(&("bona fide".to_string(), 100)), "{table:?}");
        assert!(table.target_not_measurable.contains(&("print".to_string(), 60)), "{table:?}");
    }
}
