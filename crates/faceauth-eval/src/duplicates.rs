//! `faceauth eval --mode duplicates` (issue 20): 1:N duplicate search at enrollment,
//! in NIST FRTE 1:N terms, on the faces of a labelled set (LFW View-1 training).
//!
//! The gallery holds the first face of every identity (the server's index,
//! `faceauth_gallery::Gallery`). Mated searches: every other face of an identity
//! with more than one, against the whole gallery; a duplicate is caught at `t` when
//! its mate scores at least `t` (FNIR counts the missed ones). Non-mated searches:
//! the first face of every identity, its own template excluded (a new person,
//! enrolling beside everyone else); a false alarm at `t` when any other scores at
//! least `t` (FPIR). FPIR grows with the gallery: from the per-pair FMR of every
//! cross-identity pair, FPIR(N) ~ 1 - (1 - FMR)^N, which is what the table beside
//! the measured one gives for 1 k to 1 M templates; an FMR under 3 / pairs is not
//! measurable with this set and is said so. Every rate has its 95 % interval
//! (`crate::intervals`): FNIR and FPIR with the identities resampled, the FMR with
//! both identities of each pair resampled, the FPIR at N from the FMR's bounds.

use std::collections::BTreeMap;

use faceauth_core::vision::FaceEmbedding;
use faceauth_gallery::Gallery;
use serde::Serialize;

use crate::intervals::{self, RateInterval};

/// Gallery sizes the FPIR is extrapolated to.
pub const GALLERY_SIZES: [u64; 4] = [1_000, 10_000, 100_000, 1_000_000];

#[derive(Debug, Clone, Serialize)]
pub struct DuplicateRow {
    pub threshold: f64,
    /// Mated searches whose mate scored under the threshold.
    pub missed: usize,
    pub fnir: f64,
    pub fnir_interval: RateInterval,
    /// Non-mated searches with another identity at or over the threshold.
    pub false_alarms: usize,
    pub fpir: f64,
    pub fpir_interval: RateInterval,
    /// Cross-identity pairs at or over the threshold, of `impostor_pairs`.
    pub impostor_pairs_over: u64,
    pub fmr: f64,
    pub fmr_interval: RateInterval,
    /// FPIR from the FMR at each of `GALLERY_SIZES`; `None` when the FMR is 0 (not
    /// measurable with this set: under 3 / `impostor_pairs` at 95 %).
    pub fpir_at: Vec<Option<f64>>,
    /// Its bounds at each size, from the FMR's (the upper one from the rule of three
    /// when no pair is over the threshold).
    pub fpir_at_interval: Vec<(f64, f64)>,
}

/// FPIR in a gallery of `n` from a per-pair FMR.
fn fpir_of(fmr: f64, n: u64) -> f64 {
    1.0 - (1.0 - fmr).powf(n as f64)
}

#[derive(Debug, Clone, Serialize)]
pub struct DuplicateReport {
    pub identities: usize,
    pub gallery: usize,
    pub mated_searches: usize,
    pub non_mated_searches: usize,
    pub impostor_pairs: u64,
    pub gallery_sizes: Vec<u64>,
    pub rows: Vec<DuplicateRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum DuplicateError {
    #[error("the gallery refused a template: {0}")]
    Gallery(#[from] faceauth_gallery::GalleryError),
}

/// The report over `faces` (identity, embedding), at `thresholds`.
pub fn duplicate_report(
    faces: &[(String, FaceEmbedding)],
    thresholds: &[f64],
) -> Result<DuplicateReport, DuplicateError> {
    let mut by_identity: BTreeMap<&str, Vec<&FaceEmbedding>> = BTreeMap::new();
    for (who, embedding) in faces {
        by_identity.entry(who).or_default().push(embedding);
    }
    let mut gallery = Gallery::with_capacity(by_identity.len())?;
    for (who, embeddings) in &by_identity {
        gallery.insert(who, embeddings[0].values())?;
    }
    // Mated: the mate's own score (the index's quantised similarity, as the server sees it).
    let mut mated: Vec<(&str, f32)> = Vec::new();
    for (who, embeddings) in &by_identity {
        for probe in &embeddings[1..] {
            mated.push((who, gallery.similarity(who, probe.values())?.unwrap_or(-1.0)));
        }
    }
    // Non-mated: the best other identity.
    let mut non_mated: Vec<(&str, f32)> = Vec::new();
    for (who, embeddings) in &by_identity {
        let best = gallery.search(embeddings[0].values(), 1, Some(who))?;
        non_mated.push((who, best.first().map_or(-1.0, |m| m.similarity)));
    }
    let sweep = crate::impostor_sweep_at(faces, thresholds);
    let rows = thresholds
        .iter()
        .zip(sweep.accepted.iter().zip(&sweep.intervals))
        .map(|(&t, (&(_, over), &fmr_interval))| {
            let missed = mated.iter().filter(|(_, s)| f64::from(*s) < t).count();
            let false_alarms = non_mated.iter().filter(|(_, s)| f64::from(*s) >= t).count();
            let fmr = over as f64 / sweep.pairs.max(1) as f64;
            DuplicateRow {
                threshold: t,
                missed,
                fnir: missed as f64 / mated.len().max(1) as f64,
                fnir_interval: intervals::of_subjects(mated.iter().map(|&(who, s)| (who, f64::from(s) < t))),
                false_alarms,
                fpir: false_alarms as f64 / non_mated.len().max(1) as f64,
                fpir_interval: intervals::of_subjects(non_mated.iter().map(|&(who, s)| (who, f64::from(s) >= t))),
                impostor_pairs_over: over,
                fmr,
                fmr_interval,
                fpir_at: GALLERY_SIZES.iter().map(|&n| (over > 0).then(|| fpir_of(fmr, n))).collect(),
                fpir_at_interval: GALLERY_SIZES
                    .iter()
                    .map(|&n| (fpir_of(fmr_interval.low, n), fpir_of(fmr_interval.high, n)))
                    .collect(),
            }
        })
        .collect();
    Ok(DuplicateReport {
        identities: by_identity.len(),
        gallery: gallery.len(),
        mated_searches: mated.len(),
        non_mated_searches: non_mated.len(),
        impostor_pairs: sweep.pairs,
        gallery_sizes: GALLERY_SIZES.to_vec(),
        rows,
    })
}

impl DuplicateReport {
    pub fn text(&self) -> String {
        let mut out = format!(
            "duplicate search: {} identities, gallery {} (first face of each), {} mated searches, {} non-mated, \
             {} cross-identity pairs for the FMR\n",
            self.identities, self.gallery, self.mated_searches, self.non_mated_searches, self.impostor_pairs
        );
        let sizes: Vec<String> = self.gallery_sizes.iter().map(|n| format!("FPIR@N={n}")).collect();
        out.push_str(intervals::LEGEND);
        out.push('\n');
        out.push_str(&format!(
            "threshold | FNIR (missed) | FPIR measured | FMR (pairs over) | {}\n",
            sizes.join(" | ")
        ));
        let floor = 3.0 / self.impostor_pairs.max(1) as f64;
        for r in &self.rows {
            let at: Vec<String> = r
                .fpir_at
                .iter()
                .zip(&r.fpir_at_interval)
                .map(|(p, (low, high))| match p {
                    Some(p) => format!("{:.4} % [{:.4}, {:.4}]", p * 100.0, low * 100.0, high * 100.0),
                    None => format!("n/m (<= {:.4} %)", high * 100.0),
                })
                .collect();
            let fmr = &r.fmr_interval;
            out.push_str(&format!(
                "{:.3} | {} | {} | {:.2e} [{:.2e}, {:.2e}] ({}/{}) | {}\n",
                r.threshold,
                intervals::count_text(r.missed as u64, self.mated_searches as u64, &r.fnir_interval),
                intervals::count_text(r.false_alarms as u64, self.non_mated_searches as u64, &r.fpir_interval),
                r.fmr,
                fmr.low,
                fmr.high,
                r.impostor_pairs_over,
                self.impostor_pairs,
                at.join(" | ")
            ));
        }
        out.push_str(&format!(
            "n/m: no cross-identity pair at or over the threshold; the FMR is under {floor:.1e} (3 / pairs, 95 %), \
             not measurable with this set (the bound given is the FPIR at that FMR)\n"
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedding(seed: u32, noise: f32) -> FaceEmbedding {
        let raw: Vec<f32> = (0..512)
            .map(|i| ((i as f32 + 1.0) * (seed as f32 + 1.3)).sin() + noise * ((i * 7 + seed as usize) as f32).cos())
            .collect();
        FaceEmbedding::from_raw(&raw).expect("embedding")
    }

    #[test]
    fn a_second_photo_is_found_and_strangers_are_not() {
        let mut faces = Vec::new();
        for person in 0..20 {
            faces.push((format!("p{person}"), embedding(person, 0.0)));
            if person < 10 {
                faces.push((format!("p{person}"), embedding(person, 0.3)));
            }
        }
        let report = duplicate_report(&faces, &[0.5, 0.99]).expect("report");
        assert_eq!((report.identities, report.gallery, report.mated_searches), (20, 20, 10));
        assert_eq!(report.non_mated_searches, 20);
        // At 0.5 every second photo is caught; at 0.99 none is.
        assert_eq!(report.rows[0].missed, 0, "{report:?}");
        assert_eq!(report.rows[1].missed, 10, "{report:?}");
        assert!(report.rows[0].false_alarms <= report.non_mated_searches);
        assert!(report.text().contains("FPIR@N=1000000"));
        // Every rate inside its interval; FNIR of 0 by the rule of three.
        for r in &report.rows {
            assert!(r.fnir_interval.contains(r.fnir) && r.fpir_interval.contains(r.fpir), "{r:?}");
            assert!(r.fmr_interval.contains(r.fmr), "{r:?}");
            for (p, (low, high)) in r.fpir_at.iter().zip(&r.fpir_at_interval) {
                assert!(p.is_none_or(|p| *low <= p && p <= *high), "{r:?}");
            }
        }
        assert_eq!(report.rows[0].fnir_interval.method, crate::intervals::Method::RuleOfThree);
        assert!(report.text().contains("0/10 = 0.0 % [0.0, 30.0]"), "{}", report.text());
    }
}
