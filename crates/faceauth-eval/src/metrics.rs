//! Verification metrics over scored genuine and impostor attempts: ROC AUC, EER,
//! best accuracy, TAR at a FAR (with 95 % intervals, `crate::intervals`; a FAR under
//! 3 / impostors is not measurable), and the ROC curve as an SVG with the operating
//! threshold marked.
//!
//! A score of `f64::NEG_INFINITY` is an attempt refused before any similarity could
//! count (no face, a quality gate): it is rejected at every threshold, so gate losses
//! show in every figure instead of silently leaving the set.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

use crate::intervals::{self, RateInterval};

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
    /// Attempts right at the best accuracy's threshold (genuine accepted, impostors
    /// refused), and its interval.
    pub best_accuracy_correct: usize,
    pub best_accuracy_interval: RateInterval,
    /// TAR at FAR <= 1e-2 and <= 1e-3.
    pub at_far_1e2: OperatingPoint,
    pub at_far_1e3: OperatingPoint,
    /// The same two, with their intervals, or not measurable with this set.
    pub far_targets: Vec<FarTarget>,
}

/// TAR at a FAR asked for.
#[derive(Debug, Clone, Serialize)]
pub struct FarTarget {
    /// The FAR asked for.
    pub far: f64,
    /// The impostor attempts a FAR this low needs to be measured at all: one
    /// impostor accepted of n is a FAR of 1/n, and no impostor accepted bounds it only
    /// by 3/n (the rule of three), so it needs n >= 3 / FAR.
    pub needs_impostors: u64,
    /// Whether this set has that many (and genuine attempts).
    pub measurable: bool,
    pub point: OperatingPoint,
    /// Intervals of the point's TAR and FAR (none when not measurable).
    pub tar_interval: Option<RateInterval>,
    pub far_interval: Option<RateInterval>,
}

/// The FARs asked for (`at_far_1e2`, `at_far_1e3`).
pub const FAR_TARGETS: [f64; 2] = [1e-2, 1e-3];

/// The least impostors that measure a FAR of `far` (3 / FAR, the rule of three).
pub fn needs_impostors(far: f64) -> u64 {
    (3.0 / far - 1e-9).ceil() as u64
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

/// Every figure of one score set, with intervals without subject structure (Wilson).
pub fn verification(genuine: &[f64], impostor: &[f64]) -> Verification {
    verification_by_subject(genuine, impostor, None)
}

/// Every figure of one score set; `subjects`: the subject of each genuine and each
/// impostor attempt, for subject-level bootstrap intervals.
pub fn verification_by_subject(
    genuine: &[f64],
    impostor: &[f64],
    subjects: Option<(&[usize], &[usize])>,
) -> Verification {
    // (subject, hit) over both classes; without subjects each attempt is one subject
    // of one class (no structure: Wilson).
    let rate = |of_genuine: Option<&dyn Fn(f64) -> bool>, of_impostor: Option<&dyn Fn(f64) -> bool>| {
        let mut items: Vec<(usize, bool)> = Vec::new();
        for (scores, hit, class) in [(genuine, of_genuine, 0), (impostor, of_impostor, 1)] {
            let Some(hit) = hit else { continue };
            for (i, &s) in scores.iter().enumerate() {
                let subject = match subjects {
                    Some((g, imp)) => [g, imp][class].get(i).copied().unwrap_or(usize::MAX),
                    None => 0,
                };
                items.push((subject, hit(s)));
            }
        }
        intervals::of_subjects(items)
    };
    let ts = thresholds(genuine, impostor);
    let points: Vec<OperatingPoint> = ts.iter().map(|&t| operating_point(genuine, impostor, t)).collect();
    let total = (genuine.len() + impostor.len()).max(1) as f64;
    let best = points
        .iter()
        .map(|p| (p, (p.genuine_accepted + impostor.len() - p.impostor_accepted) as f64 / total))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.threshold.total_cmp(&a.0.threshold)))
        .map(|(p, acc)| (p.threshold, acc))
        .unwrap_or((0.0, 0.0));
    let best_threshold = best.0;
    let best_accuracy_correct = genuine.iter().filter(|&&s| s >= best_threshold).count()
        + impostor.iter().filter(|&&s| s < best_threshold).count();
    let at_far_1e2 = at_far(genuine, impostor, FAR_TARGETS[0]);
    let at_far_1e3 = at_far(genuine, impostor, FAR_TARGETS[1]);
    let far_targets = [(FAR_TARGETS[0], at_far_1e2), (FAR_TARGETS[1], at_far_1e3)]
        .into_iter()
        .map(|(far, point)| {
            let needs = needs_impostors(far);
            let measurable = !genuine.is_empty() && impostor.len() as u64 >= needs;
            let t = point.threshold;
            FarTarget {
                far,
                needs_impostors: needs,
                measurable,
                point,
                tar_interval: measurable.then(|| rate(Some(&|s| s >= t), None)),
                far_interval: measurable.then(|| rate(None, Some(&|s| s >= t))),
            }
        })
        .collect();
    Verification {
        genuine: genuine.len(),
        impostor: impostor.len(),
        genuine_unscored: genuine.iter().filter(|s| !s.is_finite()).count(),
        impostor_unscored: impostor.iter().filter(|s| !s.is_finite()).count(),
        roc_auc: roc_auc(genuine, impostor),
        eer: eer(&points),
        best_accuracy: best.1,
        best_accuracy_threshold: best.0,
        best_accuracy_correct,
        best_accuracy_interval: rate(Some(&|s| s >= best_threshold), Some(&|s| s < best_threshold)),
        at_far_1e2,
        at_far_1e3,
        far_targets,
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

/// The operating threshold marked on a ROC curve: its point and label.
fn marker_label(name: &str, threshold: f64, p: &OperatingPoint, genuine: usize, impostor: usize) -> String {
    format!(
        "{name}, match threshold {threshold}: FAR {:.2} % ({}/{impostor}), TAR {:.1} % ({}/{genuine})",
        100.0 * p.far,
        p.impostor_accepted,
        100.0 * p.tar,
        p.genuine_accepted
    )
}

/// Writes the ROC curve (TAR against FAR on a log axis) of each named score set;
/// `threshold`: the operating threshold (the policy's match threshold), marked on
/// each curve as a point labelled with its (FAR, TAR).
pub fn write_roc_svg(
    path: &std::path::Path,
    title: &str,
    curves: &[(&str, &[f64], &[f64])],
    threshold: Option<f64>,
) -> Result<(), String> {
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
    if let Some(t) = threshold {
        for (i, (name, genuine, impostor)) in curves.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let p = operating_point(genuine, impostor, t);
            let label = marker_label(name, t, &p, genuine.len(), impostor.len());
            // A FAR of 0 sits on the axis's left edge, as the curve does; labels of
            // points on the right half go to their left.
            let x = p.far.max(min_far);
            let right_half = (x / min_far).ln() > 0.5 * (1.0 / min_far).ln();
            let (dx, h) = if right_half { (-8, HPos::Right) } else { (8, HPos::Left) };
            let font = ("sans-serif", 13).into_font().color(&colour).pos(Pos::new(h, VPos::Top));
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((x, p.tar))
                        + Circle::new((0, 0), 5, colour.filled())
                        + Text::new(label, (dx, 14 + 16 * i as i32), font),
                ))
                .map_err(|e| e.to_string())?;
        }
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
        write_roc_svg(&path, "test", &[("a", &[0.9, 0.5], &[0.1, 0.6])], None).expect("svg");
        let svg = std::fs::read_to_string(&path).expect("read");
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{}", &svg[..200.min(svg.len())]);
        assert!(!svg.contains("<circle"), "no marker without a threshold");
    }

    #[test]
    fn roc_svg_marks_the_operating_threshold() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("roc.svg");
        // FAR 1/3 sits on the right half of the axis (1/3 .. 1).
        let (g, i) = ([0.9, 0.5, 0.3, 0.8], [0.1, 0.6, 0.2]);
        write_roc_svg(&path, "test", &[("recognizer", &g, &i)], Some(0.35)).expect("svg");
        let svg = std::fs::read_to_string(&path).expect("read");
        // At 0.35: 3 of 4 genuine, 1 of 3 impostors accepted.
        assert!(svg.contains("recognizer, match threshold 0.35: FAR 33.33 % (1/3), TAR 75.0 % (3/4)"), "{svg}");
        assert!(svg.contains("<circle"), "{svg}");
        // On the right half of the log axis, the label ends at the point.
        let label = svg.find("recognizer, match threshold").expect("label");
        let element = &svg[svg[..label].rfind("<text").expect("text element")..label];
        assert!(element.contains(r#"text-anchor="end""#), "{element}");
    }

    #[test]
    fn a_far_under_three_per_impostors_is_not_measurable() {
        assert_eq!((needs_impostors(1e-2), needs_impostors(1e-3)), (300, 3000));
        let genuine: Vec<f64> = (0..50).map(|i| 0.5 + f64::from(i) / 100.0).collect();
        let impostor: Vec<f64> = (0..400).map(|i| f64::from(i) / 1000.0).collect();
        let v = verification(&genuine, &impostor);
        let [at_1e2, at_1e3] = [&v.far_targets[0], &v.far_targets[1]];
        // 400 impostors measure a FAR of 1 % (>= 300), not 0.1 % (>= 3000).
        assert!(at_1e2.measurable && at_1e2.tar_interval.is_some() && at_1e2.far_interval.is_some());
        assert!(!at_1e3.measurable && at_1e3.tar_interval.is_none() && at_1e3.needs_impostors == 3000);
        let tar = at_1e2.tar_interval.expect("measured");
        assert!(tar.contains(at_1e2.point.tar), "{tar:?} {:?}", at_1e2.point);
        let far = at_1e2.far_interval.expect("measured");
        assert!(far.contains(at_1e2.point.far) && far.high <= 0.05, "{far:?}");
        // Best accuracy: every attempt right, so the rule of three.
        assert_eq!(v.best_accuracy_correct, 450);
        assert_eq!(v.best_accuracy_interval.method, intervals::Method::RuleOfThree);
    }

    #[test]
    fn subjects_give_a_bootstrap_interval() {
        // 20 people, 10 genuine attempts each; 3 people fail 4 times each.
        let mut genuine = Vec::new();
        let mut subjects = Vec::new();
        for person in 0..20 {
            for k in 0..10 {
                genuine.push(if person < 3 && k < 4 { 0.2 } else { 0.8 });
                subjects.push(person);
            }
        }
        let impostor: Vec<f64> = (0..400).map(|i| f64::from(i) / 1000.0 * 0.9).collect();
        let isubjects: Vec<usize> = (0..400).map(|i| i % 20).collect();
        let v = verification_by_subject(&genuine, &impostor, Some((&subjects, &isubjects)));
        let target = &v.far_targets[0];
        let tar = target.tar_interval.expect("measured");
        assert_eq!(tar.method, intervals::Method::SubjectBootstrap);
        assert!(tar.contains(target.point.tar), "{tar:?} {:?}", target.point);
        // Wider than Wilson's: the failures are on three people.
        let w = intervals::binomial(target.point.genuine_accepted as u64, 200);
        assert!(tar.low < w.low, "{tar:?} {w:?}");
    }
}
