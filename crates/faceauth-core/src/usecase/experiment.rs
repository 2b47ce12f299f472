//! A/B results a risk team can act on (issue 21), from the audit log: per endpoint,
//! each answering variant's approval rate with a Wilson 95 % interval, its lift over
//! the control (Newcombe's interval for a difference of proportions) with an
//! always-valid p-value (mSPRT, so the page can be watched every day without
//! inflating false alarms), the sample still needed for a chosen effect, a
//! sample-ratio-mismatch check of the users assigned against the weights, and each
//! shadow against the variant that answered the same requests (McNemar, and the
//! requests where they disagree).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use statrs::distribution::{Binomial, ChiSquared, ContinuousCDF, DiscreteCDF};

use crate::policy::Endpoint;
use crate::store::audit::DecisionRecord;

/// z of a two-sided 95 % interval.
const Z_95: f64 = 1.959_963_984_540_054;
/// z of 80 % power.
const Z_POWER_80: f64 = 0.841_621_233_572_914_3;
/// A sample ratio this unlikely under the weights is a mismatch (the usual bar:
/// an assignment bug, not chance).
pub const SRM_P_VALUE: f64 = 0.001;
/// Disagreeing requests listed per shadow.
const DISAGREEMENTS_LISTED: usize = 100;

/// A 95 % confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// Wilson's score interval for `k` successes of `n` (95 %): keeps its coverage near
/// 0 and 1 and with few trials, where the normal interval does not.
pub fn wilson(k: u64, n: u64) -> Interval {
    if n == 0 {
        return Interval { low: 0.0, high: 1.0 };
    }
    let (n, p, z2) = (n as f64, k as f64 / n as f64, Z_95 * Z_95);
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z_95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Interval { low: (centre - half).max(0.0), high: (centre + half).min(1.0) }
}

/// Newcombe's hybrid score interval (method 10) of `p2 - p1` from the two Wilson
/// intervals.
pub fn newcombe(k1: u64, n1: u64, k2: u64, n2: u64) -> Interval {
    let (p1, p2) = (rate(k1, n1), rate(k2, n2));
    let (w1, w2) = (wilson(k1, n1), wilson(k2, n2));
    let d = p2 - p1;
    Interval {
        low: d - ((p2 - w2.low).powi(2) + (w1.high - p1).powi(2)).sqrt(),
        high: d + ((w2.high - p2).powi(2) + (p1 - w1.low).powi(2)).sqrt(),
    }
}

fn rate(k: u64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { k as f64 / n as f64 }
}

/// The mixture likelihood ratio of the mSPRT for a difference of two proportions
/// (Johari, Pekelis and Walsh, "Always valid inference", 2017: normal
/// approximation, a N(0, tau^2) mixture over the difference).
fn msprt_ratio(k1: u64, n1: u64, k2: u64, n2: u64, tau2: f64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let (p1, p2) = (rate(k1, n1), rate(k2, n2));
    // Floored so that a run of identical outcomes does not make the variance 0.
    let v = (p1 * (1.0 - p1) / n1 as f64 + p2 * (1.0 - p2) / n2 as f64).max(1e-9);
    let d = p2 - p1;
    (v / (v + tau2)).sqrt() * (d * d * tau2 / (2.0 * v * (v + tau2))).exp()
}

/// Users per arm needed to detect an absolute difference `effect` from `base` with a
/// two-sided 5 % test at 80 % power (fixed horizon); `None` for an effect that does
/// not fit in [0, 1] either way. Near 100 % the effect is taken downwards.
pub fn sample_needed(base: f64, effect: f64) -> Option<u64> {
    let p1 = base.clamp(0.0, 1.0);
    let p2 = if p1 + effect <= 1.0 { p1 + effect } else { p1 - effect };
    let d = (p2 - p1).abs();
    if d < 1e-9 || !(0.0..=1.0).contains(&p2) {
        return None;
    }
    let mean = (p1 + p2) / 2.0;
    let a = Z_95 * (2.0 * mean * (1.0 - mean)).sqrt() + Z_POWER_80 * (p1 * (1.0 - p1) + p2 * (1.0 - p2)).sqrt();
    Some((a * a / (d * d)).ceil() as u64)
}

/// One answering variant on one endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct ArmReport {
    pub variant: String,
    pub decisions: u64,
    pub approved: u64,
    pub approval_rate: f64,
    pub approval_interval: Interval,
    /// Approval rate minus the control's (absent for the control).
    pub lift: Option<f64>,
    pub lift_interval: Option<Interval>,
    /// Always-valid p-value of "no difference from the control" (mSPRT): it may be
    /// read at any time, as often as wanted; under 0.05 the gap is real.
    pub always_valid_p: Option<f64>,
    /// Decisions still needed in each of this arm and the control to detect the
    /// chosen effect (fixed-horizon planning figure; 0 when reached).
    pub still_needed: Option<u64>,
}

/// The answering variants of one endpoint, compared with the control.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointReport {
    pub endpoint: Endpoint,
    pub control: String,
    pub arms: Vec<ArmReport>,
}

/// Users assigned to each answering variant against the weights.
#[derive(Debug, Clone, Serialize)]
pub struct SampleRatioCheck {
    /// (variant, distinct users answered, expected share from the weights)
    pub arms: Vec<(String, u64, f64)>,
    pub chi_squared: f64,
    pub p_value: f64,
    /// `p_value` under `SRM_P_VALUE`: the split is not what the weights say (a
    /// routing bug, a variant failing for some users): the comparison is not to be trusted.
    pub mismatch: bool,
}

/// A shadow against the variant that answered the same requests.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowReport {
    pub shadow: String,
    pub endpoint: Endpoint,
    /// Requests decided by both.
    pub paired: u64,
    pub both_approved: u64,
    pub both_rejected: u64,
    /// The answer approved, the shadow refused.
    pub answer_only: u64,
    /// The shadow would have approved what the answer refused.
    pub shadow_only: u64,
    /// McNemar's test of the two disagreements being equally likely (exact binomial
    /// under 25 disagreements, else chi-squared with continuity correction).
    pub mcnemar_p: f64,
    /// The first disagreeing requests (their evidence: `/api/admin/decisions`).
    pub disagreements: Vec<Disagreement>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    pub request_id: String,
    pub at_ms: i64,
    pub answer_reason: String,
    pub shadow_reason: String,
}

/// Everything above, for the stats window.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentReport {
    /// The absolute difference in approval rate `still_needed` plans for.
    pub min_effect: f64,
    pub endpoints: Vec<EndpointReport>,
    pub sample_ratio: Option<SampleRatioCheck>,
    pub shadows: Vec<ShadowReport>,
}

/// The report over `records` (time order), for variants weighted `weights` (the
/// answering variants in force; the heaviest is the control, the first on a tie).
pub fn report(records: &[DecisionRecord], weights: &[(String, u32)], min_effect: f64) -> ExperimentReport {
    let control = weights.iter().filter(|(_, w)| *w > 0).fold(None::<&(String, u32)>, |best, v| match best {
        Some(b) if b.1 >= v.1 => Some(b),
        _ => Some(v),
    });
    let control = control.map(|(name, _)| name.clone());
    let answers: Vec<&DecisionRecord> = records.iter().filter(|r| !r.shadow).collect();
    let mut endpoints = Vec::new();
    for endpoint in [Endpoint::Enroll, Endpoint::Authenticate] {
        let on: Vec<&DecisionRecord> = answers.iter().copied().filter(|r| r.endpoint == endpoint).collect();
        if on.is_empty() {
            continue;
        }
        let control = control.clone().unwrap_or_else(|| on[0].variant.clone());
        endpoints.push(endpoint_report(endpoint, &control, &on, min_effect));
    }
    ExperimentReport {
        min_effect,
        endpoints,
        sample_ratio: sample_ratio(&answers, weights),
        shadows: shadow_reports(records),
    }
}

fn endpoint_report(endpoint: Endpoint, control: &str, on: &[&DecisionRecord], min_effect: f64) -> EndpointReport {
    let variants: BTreeSet<&str> = on.iter().map(|r| r.variant.as_str()).collect();
    let tau2 = min_effect * min_effect;
    let count = |name: &str| {
        let rs = on.iter().filter(|r| r.variant == name);
        let n = rs.clone().count() as u64;
        (rs.filter(|r| r.outcome.approved()).count() as u64, n)
    };
    let (kc, nc) = count(control);
    let mut arms = Vec::new();
    for &name in std::iter::once(&control).chain(variants.iter().filter(|v| **v != control)) {
        let (k, n) = count(name);
        let mut arm = ArmReport {
            variant: name.to_string(),
            decisions: n,
            approved: k,
            approval_rate: rate(k, n),
            approval_interval: wilson(k, n),
            lift: None,
            lift_interval: None,
            always_valid_p: None,
            still_needed: None,
        };
        if name != control && nc > 0 && n > 0 {
            arm.lift = Some(rate(k, n) - rate(kc, nc));
            arm.lift_interval = Some(newcombe(kc, nc, k, n));
            // The running minimum over the decisions as they came: the always-valid
            // p-value is 1 / the largest likelihood ratio seen so far.
            let (mut k1, mut n1, mut k2, mut n2, mut best) = (0, 0, 0, 0, 1.0f64);
            for r in on {
                match r.variant.as_str() {
                    v if v == control => (k1, n1) = (k1 + u64::from(r.outcome.approved()), n1 + 1),
                    v if v == name => (k2, n2) = (k2 + u64::from(r.outcome.approved()), n2 + 1),
                    _ => continue,
                }
                best = best.max(msprt_ratio(k1, n1, k2, n2, tau2));
            }
            arm.always_valid_p = Some((1.0 / best).min(1.0));
            arm.still_needed = sample_needed(rate(kc, nc), min_effect).map(|needed| needed.saturating_sub(n.min(nc)));
        }
        arms.push(arm);
    }
    EndpointReport { endpoint, control: control.to_string(), arms }
}

/// Distinct users answered by each weighted variant against the weights (a user is
/// assigned once, whatever the endpoint).
fn sample_ratio(answers: &[&DecisionRecord], weights: &[(String, u32)]) -> Option<SampleRatioCheck> {
    let weighted: Vec<&(String, u32)> = weights.iter().filter(|(_, w)| *w > 0).collect();
    if weighted.len() < 2 {
        return None;
    }
    let mut users: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for r in answers {
        users.entry(r.variant.as_str()).or_default().insert(r.username.as_str());
    }
    let total_weight: f64 = weighted.iter().map(|(_, w)| f64::from(*w)).sum();
    let observed: Vec<u64> =
        weighted.iter().map(|(n, _)| users.get(n.as_str()).map_or(0, |u| u.len() as u64)).collect();
    let total: u64 = observed.iter().sum();
    if total == 0 {
        return None;
    }
    let mut chi_squared = 0.0;
    let mut arms = Vec::new();
    for ((name, weight), &seen) in weighted.iter().zip(&observed) {
        let share = f64::from(*weight) / total_weight;
        let expected = share * total as f64;
        chi_squared += (seen as f64 - expected).powi(2) / expected;
        arms.push((name.clone(), seen, share));
    }
    let p_value = ChiSquared::new((weighted.len() - 1) as f64).map_or(1.0, |d| d.sf(chi_squared));
    Some(SampleRatioCheck { arms, chi_squared, p_value, mismatch: p_value < SRM_P_VALUE })
}

fn shadow_reports(records: &[DecisionRecord]) -> Vec<ShadowReport> {
    let answers: HashMap<&str, &DecisionRecord> =
        records.iter().filter(|r| !r.shadow).map(|r| (r.request_id.as_str(), r)).collect();
    let mut groups: BTreeMap<(String, &'static str), Vec<(&DecisionRecord, &DecisionRecord)>> = BTreeMap::new();
    for shadow in records.iter().filter(|r| r.shadow) {
        if let Some(answer) = answers.get(shadow.request_id.as_str()) {
            groups.entry((shadow.variant.clone(), shadow.endpoint.as_str())).or_default().push((answer, shadow));
        }
    }
    groups
        .into_values()
        .map(|pairs| {
            let (mut both_approved, mut both_rejected, mut answer_only, mut shadow_only) = (0, 0, 0, 0);
            let mut disagreements = Vec::new();
            for (answer, shadow) in &pairs {
                match (answer.outcome.approved(), shadow.outcome.approved()) {
                    (true, true) => both_approved += 1,
                    (false, false) => both_rejected += 1,
                    (a, _) => {
                        if a {
                            answer_only += 1
                        } else {
                            shadow_only += 1
                        }
                        if disagreements.len() < DISAGREEMENTS_LISTED {
                            disagreements.push(Disagreement {
                                request_id: answer.request_id.clone(),
                                at_ms: answer.at_ms,
                                answer_reason: answer.outcome.reason().to_string(),
                                shadow_reason: shadow.outcome.reason().to_string(),
                            });
                        }
                    }
                }
            }
            let (first, _) = pairs[0];
            ShadowReport {
                shadow: pairs[0].1.variant.clone(),
                endpoint: first.endpoint,
                paired: pairs.len() as u64,
                both_approved,
                both_rejected,
                answer_only,
                shadow_only,
                mcnemar_p: mcnemar(answer_only, shadow_only),
                disagreements,
            }
        })
        .collect()
}

/// McNemar's p-value for `b` and `c` discordant pairs.
pub fn mcnemar(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    if n < 25 {
        return Binomial::new(0.5, n).map_or(1.0, |d| (2.0 * d.cdf(b.min(c))).min(1.0));
    }
    let x = ((b as f64 - c as f64).abs() - 1.0).max(0.0).powi(2) / n as f64;
    ChiSquared::new(1.0).map_or(1.0, |d| d.sf(x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Decision, Outcome};
    use crate::store::audit::RecordedEvidence;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-4
    }

    #[test]
    fn wilson_and_newcombe_match_published_values() {
        // Newcombe (1998), table II: 81/263 -> 0.2553-0.3662.
        let w = wilson(81, 263);
        assert!(close(w.low, 0.2553) && close(w.high, 0.3662), "{w:?}");
        // No successes: the interval still has width (rule-of-three territory).
        let w = wilson(0, 10);
        assert!(w.low == 0.0 && close(w.high, 0.2775), "{w:?}");
        // Newcombe (1998), method 10, example 56/70 vs 48/80: 0.0524 to 0.3339.
        let d = newcombe(48, 80, 56, 70);
        assert!(close(d.low, 0.0524) && close(d.high, 0.3339), "{d:?}");
    }

    #[test]
    fn mcnemar_exact_and_chi_squared() {
        assert!(close(mcnemar(0, 0), 1.0));
        // 1 vs 9 discordant: exact two-sided p = 2 * P(X <= 1), X ~ Bin(10, 0.5) = 0.0215.
        assert!(close(mcnemar(1, 9), 0.021_484_375));
        // 15 vs 35: chi-squared (|15-35|-1)^2/50 = 7.22, p = 0.0072.
        assert!(close(mcnemar(15, 35), 0.0072), "{}", mcnemar(15, 35));
    }

    #[test]
    fn sample_needed_for_two_points_around_forty_per_cent() {
        // 0.40 -> 0.42 at 5 % / 80 %: about 9 500 per arm (standard tables: 9 489).
        let n = sample_needed(0.40, 0.02).expect("planned");
        assert!((9_400..=9_600).contains(&n), "{n}");
        // At 100 % the effect is planned downwards (the A/B page showed u64::MAX).
        assert!(sample_needed(1.0, 0.02).is_some_and(|n| n > 100));
        assert_eq!(sample_needed(0.5, 0.0), None);
    }

    fn record(id: u64, variant: &str, shadow: bool, user: String, approved: bool) -> DecisionRecord {
        DecisionRecord {
            request_id: format!("r{id}"),
            at_ms: id as i64,
            username: user,
            endpoint: Endpoint::Authenticate,
            variant: variant.into(),
            policy: "p@1".into(),
            params_hash: String::new(),
            shadow,
            outcome: Outcome::Decided(Decision {
                approved,
                reason: if approved { "AUTHENTIFICATION_SUCCESS" } else { "FACE_MISMATCH" }.into(),
                score: None,
            }),
            evidence: RecordedEvidence::Omitted,
            analysis_ms: 1.0,
            policy_ms: 0.1,
            total_ms: 2.0,
        }
    }

    /// The issue's hand computation: on authentications alone 143/330 vs 128/357;
    /// the page must show the gap, its interval and whether it is real.
    #[test]
    fn the_issues_a_b_run_is_reported_per_endpoint_with_intervals_and_a_valid_test() {
        let mut records = Vec::new();
        let mut id = 0;
        // Interleaved in time, approvals spread evenly, as traffic comes.
        let spread = |i: u64, k: u64, n: u64| i * k / n != (i + 1) * k / n;
        for i in 0..357 {
            if i < 330 {
                records.push(record(id, "control", false, format!("c{i}"), spread(i, 143, 330)));
                id += 1;
            }
            records.push(record(id, "candidate", false, format!("t{i}"), spread(i, 128, 357)));
            id += 1;
        }
        let weights = [("control".to_string(), 50), ("candidate".to_string(), 50)];
        let report = report(&records, &weights, 0.02);
        let auth = &report.endpoints[0];
        assert_eq!((auth.endpoint, auth.control.as_str()), (Endpoint::Authenticate, "control"));
        let (control, candidate) = (&auth.arms[0], &auth.arms[1]);
        assert_eq!(
            (control.approved, control.decisions, candidate.approved, candidate.decisions),
            (143, 330, 128, 357)
        );
        assert!(close(control.approval_rate, 143.0 / 330.0));
        assert!(control.approval_interval.low < 0.434 && control.approval_interval.high > 0.433);
        let lift = candidate.lift.expect("lift");
        assert!(close(lift, 128.0 / 357.0 - 143.0 / 330.0), "{lift}");
        let interval = candidate.lift_interval.expect("interval");
        assert!(interval.low < lift && lift < interval.high && interval.high < 0.0, "{interval:?}: z ~ 2");
        // The fixed-horizon interval just excludes 0 (z ~ 2), but a page read every day
        // is not a fixed horizon: the always-valid p-value (0.70 here) does not call it yet.
        let p = candidate.always_valid_p.expect("p");
        assert!(p > 0.5 && p <= 1.0, "{p}");
        assert!(candidate.still_needed.expect("planned") > 0);
        // 330 and 357 users on 50/50: no mismatch.
        let srm = report.sample_ratio.expect("srm");
        assert!(!srm.mismatch && srm.p_value > 0.1, "{srm:?}");
    }

    #[test]
    fn a_large_real_gap_is_called_and_a_skewed_split_is_a_mismatch() {
        let mut records = Vec::new();
        for i in 0..2000 {
            records.push(record(2 * i as u64, "a", false, format!("a{i}"), i % 10 < 4));
            if i < 1500 {
                records.push(record(2 * i as u64 + 1, "b", false, format!("b{i}"), i % 10 < 6));
            }
        }
        let weights = [("a".to_string(), 1), ("b".to_string(), 1)];
        // Planned for 10 points: about 385 per arm, reached.
        let report = report(&records, &weights, 0.1);
        let b = &report.endpoints[0].arms[1];
        assert!(b.always_valid_p.expect("p") < 0.001, "{b:?}");
        assert_eq!(b.still_needed, Some(0));
        let srm = report.sample_ratio.expect("srm");
        assert!(srm.mismatch, "2000 vs 1500 users on equal weights: {srm:?}");
    }

    #[test]
    fn a_shadow_is_paired_with_the_answer_of_the_same_request() {
        let mut records = Vec::new();
        for i in 0..30 {
            let user = format!("u{i}");
            let mut answer = record(i as u64, "main", false, user.clone(), i % 2 == 0);
            let mut shadow = record(i as u64, "strict", true, user, i % 2 == 0 && i % 6 != 0);
            answer.request_id = format!("q{i}");
            shadow.request_id = format!("q{i}");
            records.extend([answer, shadow]);
        }
        let report = report(&records, &[("main".to_string(), 1)], 0.02);
        let s = &report.shadows[0];
        assert_eq!((s.shadow.as_str(), s.paired), ("strict", 30));
        assert_eq!((s.both_approved, s.both_rejected, s.answer_only, s.shadow_only), (10, 15, 5, 0));
        assert!(close(s.mcnemar_p, 0.0625), "{}", s.mcnemar_p);
        assert_eq!(s.disagreements.len(), 5);
        assert_eq!(s.disagreements[0].request_id, "q0");
        assert_eq!(s.disagreements[0].shadow_reason, "FACE_MISMATCH");
        assert!(report.sample_ratio.is_none(), "one weighted variant");
    }
}
