//! Per-variant statistics: from the audit log over a time window (JSON for the
//! admin API and the stats page), and as process metrics for Prometheus.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::store::audit::DecisionRecord;
use crate::telemetry;

/// Score histogram bins: [k/20, (k+1)/20) for k in 0..20; negatives go to the first.
pub const SCORE_BINS: usize = 20;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

fn percentiles(values: &mut [f64]) -> Percentiles {
    if values.is_empty() {
        return Percentiles::default();
    }
    values.sort_by(f64::total_cmp);
    let at = |p: f64| values[((values.len() - 1) as f64 * p).round() as usize];
    Percentiles { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1.0) }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VariantStats {
    pub variant: String,
    pub policy: String,
    pub shadow: bool,
    pub decisions: u64,
    pub approved: u64,
    pub approval_rate: f64,
    pub policy_errors: u64,
    pub reasons: BTreeMap<String, u64>,
    /// Scores of approved authentications, in `SCORE_BINS` bins over [0, 1].
    pub score_histogram: Vec<u64>,
    pub total_ms: Percentiles,
    pub analysis_ms: Percentiles,
    pub policy_ms: Percentiles,
    /// Mean share of the request's time spent in the policy call.
    pub policy_share: f64,
    /// The parameter sets this variant decided under (`DecisionRecord::params_hash`),
    /// first used first: more than one means its parameters (or its component)
    /// changed within the window, mid-experiment.
    pub params: Vec<ParamsUse>,
}

/// One parameter set a variant decided under, and over which decisions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ParamsUse {
    /// `""`: decisions recorded before the hash was.
    pub params_hash: String,
    pub decisions: u64,
    /// The first and the last of those decisions, Unix ms.
    pub first_at_ms: i64,
    pub last_at_ms: i64,
}

/// The distinct parameter hashes of `records`, with their counts and time spans,
/// in order of first use.
fn params_uses(records: &[&DecisionRecord]) -> Vec<ParamsUse> {
    let mut uses: BTreeMap<&str, ParamsUse> = BTreeMap::new();
    for r in records {
        let entry = uses.entry(r.params_hash.as_str()).or_insert_with(|| ParamsUse {
            params_hash: r.params_hash.clone(),
            decisions: 0,
            first_at_ms: r.at_ms,
            last_at_ms: r.at_ms,
        });
        entry.decisions += 1;
        entry.first_at_ms = entry.first_at_ms.min(r.at_ms);
        entry.last_at_ms = entry.last_at_ms.max(r.at_ms);
    }
    let mut uses: Vec<ParamsUse> = uses.into_values().collect();
    uses.sort_by(|a, b| (a.first_at_ms, &a.params_hash).cmp(&(b.first_at_ms, &b.params_hash)));
    uses
}

/// Statistics per (variant, role) over `records`.
pub fn variant_stats(records: &[DecisionRecord]) -> Vec<VariantStats> {
    let mut groups: BTreeMap<(bool, String), Vec<&DecisionRecord>> = BTreeMap::new();
    for r in records {
        groups.entry((r.shadow, r.variant.clone())).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|((shadow, variant), rs)| {
            let mut s = VariantStats {
                variant,
                policy: rs.last().map(|r| r.policy.clone()).unwrap_or_default(),
                shadow,
                decisions: rs.len() as u64,
                score_histogram: vec![0; SCORE_BINS],
                ..Default::default()
            };
            let (mut total, mut analysis, mut policy) = (Vec::new(), Vec::new(), Vec::new());
            let mut share = 0.0;
            for r in &rs {
                if r.outcome.is_policy_error() {
                    s.policy_errors += 1;
                }
                *s.reasons.entry(r.outcome.reason().to_string()).or_default() += 1;
                if r.outcome.approved() {
                    s.approved += 1;
                    if let Some(score) = r.outcome.score() {
                        s.score_histogram[score_bin(f64::from(score))] += 1;
                    }
                }
                total.push(r.total_ms);
                analysis.push(r.analysis_ms);
                policy.push(r.policy_ms);
                share += if r.total_ms > 0.0 { r.policy_ms / r.total_ms } else { 0.0 };
            }
            s.approval_rate = s.approved as f64 / s.decisions.max(1) as f64;
            s.policy_share = share / s.decisions.max(1) as f64;
            s.total_ms = percentiles(&mut total);
            s.analysis_ms = percentiles(&mut analysis);
            s.policy_ms = percentiles(&mut policy);
            s.params = params_uses(&rs);
            s
        })
        .collect()
}

fn score_bin(score: f64) -> usize {
    ((score.clamp(0.0, 1.0) * SCORE_BINS as f64) as usize).min(SCORE_BINS - 1)
}

/// Counts one decision (an answer or a shadow's) in the process's metrics
/// (`faceauth_decisions_total` and its duration histograms, see `telemetry`).
pub fn observe_decision(r: &DecisionRecord) {
    let labels = telemetry::DecisionLabels {
        variant: &r.variant,
        endpoint: r.endpoint.as_str(),
        role: if r.shadow { "shadow" } else { "answer" },
        decision: if r.outcome.approved() { "approved" } else { "rejected" },
        reason: r.outcome.reason(),
    };
    telemetry::observe_decision(&labels, seconds(r.total_ms), seconds(r.policy_ms));
}

/// A recorded duration in milliseconds (never negative, never NaN) as a `Duration`.
fn seconds(ms: f64) -> Duration {
    Duration::try_from_secs_f64(ms / 1000.0).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Decision, Endpoint, Failure, Outcome};
    use crate::store::audit::RecordedEvidence;

    fn record(variant: &str, approved: bool, reason: &str, score: Option<f32>, total: f64) -> DecisionRecord {
        DecisionRecord {
            request_id: "r".into(),
            at_ms: 0,
            username: "u".into(),
            endpoint: Endpoint::Authenticate,
            variant: variant.into(),
            policy: "p@1".into(),
            params_hash: "h1".into(),
            shadow: false,
            outcome: match reason.strip_prefix("POLICY_ERROR: ") {
                Some(message) => Outcome::Failed { failure: Failure::PolicyError, message: message.into() },
                None => Outcome::Decided(Decision { approved, reason: reason.into(), score }),
            },
            evidence: RecordedEvidence::Omitted,
            analysis_ms: total - 1.0,
            policy_ms: 1.0,
            total_ms: total,
        }
    }

    #[test]
    fn stats_group_by_variant_with_rates_histograms_and_percentiles() {
        let records = vec![
            record("a", true, "AUTHENTIFICATION_SUCCESS", Some(0.62), 100.0),
            record("a", false, "FACE_MISMATCH", None, 200.0),
            record("a", false, "POLICY_ERROR: trap", None, 300.0),
            record("b", true, "AUTHENTIFICATION_SUCCESS", Some(0.99), 50.0),
        ];
        let stats = variant_stats(&records);
        assert_eq!(stats.len(), 2);
        let a = &stats[0];
        assert_eq!((a.variant.as_str(), a.decisions, a.approved, a.policy_errors), ("a", 3, 1, 1));
        assert!((a.approval_rate - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(a.reasons["POLICY_ERROR"], 1);
        assert_eq!(a.score_histogram[12], 1);
        assert_eq!((a.total_ms.p50, a.total_ms.max), (200.0, 300.0));
        assert_eq!(stats[1].score_histogram[SCORE_BINS - 1], 1);
    }

    /// Issue 21: a variant whose parameters changed mid-experiment shows both sets,
    /// each with its count and time span, the first used first.
    #[test]
    fn stats_list_the_parameter_sets_each_variant_decided_under() {
        let at = |variant: &str, hash: &str, at_ms: i64| DecisionRecord {
            params_hash: hash.into(),
            at_ms,
            ..record(variant, true, "AUTHENTIFICATION_SUCCESS", Some(0.7), 10.0)
        };
        let records =
            vec![at("a", "old", 100), at("a", "new", 300), at("a", "old", 200), at("a", "new", 400), at("b", "x", 5)];
        let stats = variant_stats(&records);
        let uses = |hash: &str, decisions, first_at_ms, last_at_ms| ParamsUse {
            params_hash: hash.into(),
            decisions,
            first_at_ms,
            last_at_ms,
        };
        assert_eq!(stats[0].params, [uses("old", 2, 100, 200), uses("new", 2, 300, 400)]);
        assert_eq!(stats[1].params, [uses("x", 1, 5, 5)]);
    }

    #[test]
    fn decisions_are_counted_by_variant_role_and_reason_with_durations_in_seconds() {
        let text = crate::telemetry::tests::recorded(|render| {
            observe_decision(&record("a\"x", true, "AUTHENTIFICATION_SUCCESS", Some(0.6), 120.0));
            observe_decision(&record("a\"x", false, "FACE_MISMATCH", None, 80.0));
            observe_decision(&DecisionRecord { shadow: true, ..record("s", false, "POLICY_ERROR: trap", None, 30.0) });
            render()
        });
        let series = "variant=\"a\\\"x\",endpoint=\"authenticate\",role=\"answer\"";
        assert!(
            text.contains(&format!(
                "faceauth_decisions_total{{{series},decision=\"rejected\",reason=\"FACE_MISMATCH\"}} 1\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(
                "faceauth_decisions_total{variant=\"s\",endpoint=\"authenticate\",role=\"shadow\",decision=\"rejected\",reason=\"POLICY_ERROR\"} 1\n"
            ),
            "{text}"
        );
        // 80 and 120 ms: one within 0.1 s, both within 0.15 s.
        assert!(
            text.contains(&format!("faceauth_request_duration_seconds_bucket{{{series},le=\"0.1\"}} 1\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("faceauth_request_duration_seconds_bucket{{{series},le=\"0.15\"}} 2\n")),
            "{text}"
        );
        assert!(text.contains(&format!("faceauth_request_duration_seconds_count{{{series}}} 2\n")), "{text}");
        // The policy took 1 ms of each.
        let policy = |le: &str| format!("faceauth_policy_call_duration_seconds_bucket{{{series},le=\"{le}\"}}");
        assert!(text.contains(&format!("{} 0\n", policy("0.0005"))), "{text}");
        assert!(text.contains(&format!("{} 2\n", policy("0.0025"))), "{text}");
        assert!(!text.contains("_ms"), "{text}");
    }
}
