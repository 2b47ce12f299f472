//! Verification metrics over scored genuine and impostor attempts: ROC AUC, EER,
//! best accuracy, TAR at a FAR, and the ROC curve as an SVG.
//!
//! A score of `f64::NEG_INFINITY` is an attempt refused before any similarity could
//! count (no face, a quality gate): it is rejected at every threshold, so gate losses
//! show in every figure instead of silently leaving the set.

use plotters::prelude::*;
use serde::Serialize;

/// One operating point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OperatingPoint {
    /// Accept when score >= threshold.
    pub threshold: f64,
    /// Genuine attempts accepted / genuine attempts.
    pub tar: f64,
    /// Impostor attempts accepted / impostor attempts.
    pub far: f64,
    pub genuine_accepted: usize,
    pub impostor_accepted: usize,
}

/// The figures of one score set.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub genuine: usize,
    pub impostor: usize,
    /// Attempts with no finite score (refused before matching).
    pub genuine_unscored: usize,
    pub impostor_unscored: usize,
    pub roc_auc: f64,
    /// Equal error rate (FAR = FRR, interpolated between the two nearest points).
    pub eer: f64,
    pub best_accuracy: f64,
    pub best_accuracy_threshold: f64,
    /// TAR at FAR <= 1e-2 and <= 1e-3.
    pub at_far_1e2: OperatingPoint,
    pub at_far_1e3: OperatingPoint,
}

/// Accepting at `threshold`.
pub fn operating_point(genuine: &[f64], impostor: &[f64], threshold: f64) -> OperatingPoint {
    let ga = genuine.iter().filter(|&&s| s >= threshold).count();
    let ia = impostor.iter().filter(|&&s| s >= threshold).count();
    OperatingPoint {
        threshold,
        tar: ratio(ga, genuine.len()),
        far: ratio(ia, impostor.len()),
        genuine_accepted: ga,
        impostor_accepted: ia,
    }
}

fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// Every distinct finite score, and one threshold above them all: the thresholds at
/// which some figure changes.
fn thresholds(genuine: &[f64], impostor: &[f64]) -> Vec<f64> {
    let mut t: Vec<f64> = genuine.iter().chain(impostor).copied().filter(|s| s.is_finite()).collect();
    t.sort_by(f64::total_cmp);
    t.dedup();
    let top = t.last().copied().unwrap_or(0.0);
    t.push(top + 1e-6);
    t
}

/// The lowest threshold whose FAR is at most `max_far` (highest TAR under that FAR).
pub fn at_far(genuine: &[f64], impostor: &[f64], max_far: f64) -> OperatingPoint {
    // Impostor scores high to low: accepting the k highest keeps FAR = k / n.
    let mut imp: Vec<f64> = impostor.iter().copied().filter(|s| s.is_finite()).collect();
    imp.sort_by(|a, b| b.total_cmp(a));
    let allowed = (max_far * impostor.len() as f64).floor() as usize;
    let threshold = match imp.get(allowed) {
        // Just above the first impostor that must be refused.
        Some(&s) => next_up(s),
        // Every scored impostor may pass: the lowest genuine or impostor score.
        None => genuine.iter().chain(impostor).copied().filter(|s| s.is_finite()).fold(f64::INFINITY, f64::min),
    };
    let threshold = if threshold.is_finite() { threshold } else { 0.0 };
    operating_point(genuine, impostor, threshold)
}

fn next_up(x: f64) -> f64 {
    x + x.abs().max(1.0) * 1e-9
}

/// ROC AUC as the Mann-Whitney probability that a genuine score beats an impostor
/// score (ties count half; unscored attempts are below everything and tie each other).
pub fn roc_auc(genuine: &[f64], impostor: &[f64]) -> f64 {
    if genuine.is_empty() || impostor.is_empty() {
        return 0.0;
    }
    let mut imp: Vec<f64> = impostor.to_vec();
    imp.sort_by(f64::total_cmp);
    let mut wins = 0.0;
    for &g in genuine {
        let below = imp.partition_point(|&i| i < g);
        let ties = imp[below..].partition_point(|&i| i <= g);
        wins += below as f64 + ties as f64 / 2.0;
    }
    wins / (genuine.len() as f64 * impostor.len() as f64)
}

/// Every figure of one score set.
pub fn verification(genuine: &[f64], impostor: &[f64]) -> Verification {
    let ts = thresholds(genuine, impostor);
    let points: Vec<OperatingPoint> = ts.iter().map(|&t| operating_point(genuine, impostor, t)).collect();
    let total = (genuine.len() + impostor.len()).max(1) as f64;
    let best = points
        .iter()
        .map(|p| (p, (p.genuine_accepted + impostor.len() - p.impostor_accepted) as f64 / total))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.threshold.total_cmp(&a.0.threshold)))
        .map(|(p, acc)| (p.threshold, acc))
        .unwrap_or((0.0, 0.0));
    Verification {
        genuine: genuine.len(),
        impostor: impostor.len(),
        genuine_unscored: genuine.iter().filter(|s| !s.is_finite()).count(),
        impostor_unscored: impostor.iter().filter(|s| !s.is_finite()).count(),
        roc_auc: roc_auc(genuine, impostor),
        eer: eer(&points),
        best_accuracy: best.1,
        best_accuracy_threshold: best.0,
        at_far_1e2: at_far(genuine, impostor, 1e-2),
        at_far_1e3: at_far(genuine, impostor, 1e-3),
    }
}

/// Points ordered by threshold: FAR falls and FRR rises; the crossing, interpolated.
fn eer(points: &[OperatingPoint]) -> f64 {
    let mut previous: Option<&OperatingPoint> = None;
    for p in points {
        let frr = 1.0 - p.tar;
        if frr >= p.far {
            return match previous {
                None => (frr + p.far) / 2.0,
                Some(q) => {
                    // Linear between q (FRR < FAR) and p (FRR >= FAR).
                    let (d0, d1) = ((1.0 - q.tar) - q.far, frr - p.far);
                    let w = if d1 - d0 == 0.0 { 0.0 } else { -d0 / (d1 - d0) };
                    let far = q.far + w * (p.far - q.far);
                    let frr_i = (1.0 - q.tar) + w * (frr - (1.0 - q.tar));
                    (far + frr_i) / 2.0
                }
            };
        }
        previous = Some(p);
    }
    0.5
}

/// Writes the ROC curve (TAR against FAR on a log axis) of each named score set.
pub fn write_roc_svg(path: &std::path::Path, title: &str, curves: &[(&str, &[f64], &[f64])]) -> Result<(), String> {
    let root = SVGBackend::new(path, (720, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let min_far = curves.iter().map(|(_, _, imp)| 1.0 / (imp.len().max(1) as f64)).fold(1e-3f64, f64::min);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((min_far..1.0f64).log_scale(), 0.0f64..1.0)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("FAR (impostors accepted)")
        .y_desc("TAR (genuine accepted)")
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (name, genuine, impostor)) in curves.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let mut series: Vec<(f64, f64)> = thresholds(genuine, impostor)
            .iter()
            .map(|&t| operating_point(genuine, impostor, t))
            .map(|p| (p.far.max(min_far), p.tar))
            .collect();
        series.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        chart
            .draw_series(LineSeries::new(series, colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfectly_separated_scores() {
        let g = [0.9, 0.8, 0.7];
        let i = [0.1, 0.2, 0.3, 0.0];
        let v = verification(&g, &i);
        assert_eq!(v.roc_auc, 1.0);
        assert_eq!(v.best_accuracy, 1.0);
        assert!(v.best_accuracy_threshold > 0.3 && v.best_accuracy_threshold <= 0.7);
        assert_eq!(v.eer, 0.0);
        assert_eq!(v.at_far_1e3.tar, 1.0);
        assert_eq!(v.at_far_1e3.far, 0.0);
    }

    #[test]
    fn overlap_ties_and_unscored_attempts_count() {
        let g = [0.9, 0.5, f64::NEG_INFINITY, 0.2];
        let i = [0.6, 0.5, 0.1, f64::NEG_INFINITY];
        // Pairs won: 0.9 beats 4; 0.5 beats 2 and ties 1; -inf ties 1; 0.2 beats 2.
        assert!((roc_auc(&g, &i) - (4.0 + 2.5 + 0.5 + 2.0) / 16.0).abs() < 1e-12);
        let v = verification(&g, &i);
        assert_eq!((v.genuine_unscored, v.impostor_unscored), (1, 1));
        // Best: accept >= 0.7 (0.9 only): 1 + 4 right of 8, or >= 0.2: 3 + 2 right.
        assert!((v.best_accuracy - 5.0 / 8.0).abs() < 1e-12);
        // FAR <= 1e-3 of 4 impostors: none may pass, so the threshold is above 0.6.
        let p = at_far(&g, &i, 1e-3);
        assert_eq!((p.impostor_accepted, p.genuine_accepted), (0, 1));
        assert!(p.threshold > 0.6);
        // FAR <= 25 %: one impostor (0.6) may pass; 0.5 is refused, so > 0.5.
        let p = at_far(&g, &i, 0.25);
        assert_eq!((p.impostor_accepted, p.genuine_accepted), (1, 1));
    }

    #[test]
    fn eer_of_a_symmetric_overlap() {
        let g = [0.4, 0.6, 0.8, 1.0];
        let i = [0.0, 0.2, 0.4, 0.6];
        let v = verification(&g, &i);
        assert!(v.eer > 0.2 && v.eer < 0.4, "{}", v.eer);
    }

    #[test]
    fn roc_svg_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("roc.svg");
        write_roc_svg(&path, "test", &[("a", &[0.9, 0.5], &[0.1, 0.6])]).expect("svg");
        let svg = std::fs::read_to_string(&path).expect("read");
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{}", &svg[..200.min(svg.len())]);
    }
}
