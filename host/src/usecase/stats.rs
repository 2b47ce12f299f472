//! Per-variant statistics: from the audit log over a time window (JSON for the
//! admin API and the stats page), and as process counters for Prometheus.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use serde::Serialize;

use crate::store::audit::DecisionRecord;

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
            s
        })
        .collect()
}

fn score_bin(score: f64) -> usize {
    ((score.clamp(0.0, 1.0) * SCORE_BINS as f64) as usize).min(SCORE_BINS - 1)
}

/// Latency bucket bounds of the Prometheus histograms, milliseconds.
const LATENCY_BUCKETS_MS: [f64; 12] = [0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS_MS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, ms: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(LATENCY_BUCKETS_MS) {
            if ms <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += ms;
    }
}

#[derive(Debug, Default, Clone)]
struct Series {
    decisions: BTreeMap<(String, String), u64>,
    total_ms: Histogram,
    policy_ms: Histogram,
}

/// Counters since the process started, per variant and role, for `/metrics`.
#[derive(Debug, Default)]
pub struct DecisionMetrics {
    series: Mutex<BTreeMap<(String, &'static str, &'static str), Series>>,
}

impl DecisionMetrics {
    pub fn observe(&self, r: &DecisionRecord) {
        let role = if r.shadow { "shadow" } else { "answer" };
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let s = series.entry((r.variant.clone(), r.endpoint.as_str(), role)).or_default();
        let decision = if r.outcome.approved() { "approved" } else { "rejected" };
        *s.decisions.entry((decision.to_string(), r.outcome.reason().to_string())).or_default() += 1;
        s.total_ms.observe(r.total_ms);
        s.policy_ms.observe(r.policy_ms);
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = String::new();
        out.push_str(
            "# HELP faceauth_decisions_total Policy decisions, by variant, endpoint, role, decision and reason.\n",
        );
        out.push_str("# TYPE faceauth_decisions_total counter\n");
        for ((variant, endpoint, role), s) in &series {
            for ((decision, reason), n) in &s.decisions {
                let _ = writeln!(
                    out,
                    "faceauth_decisions_total{{variant=\"{}\",endpoint=\"{endpoint}\",role=\"{role}\",decision=\"{decision}\",reason=\"{}\"}} {n}",
                    escape(variant),
                    escape(reason)
                );
            }
        }
        for (name, help, pick) in [
            ("faceauth_request_duration_ms", "Time to the answer, milliseconds.", 0),
            ("faceauth_policy_call_duration_ms", "Time in the policy call, milliseconds.", 1),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for ((variant, endpoint, role), s) in &series {
                let h = if pick == 0 { &s.total_ms } else { &s.policy_ms };
                let labels = format!("variant=\"{}\",endpoint=\"{endpoint}\",role=\"{role}\"", escape(variant));
                for (bound, n) in LATENCY_BUCKETS_MS.iter().zip(h.buckets) {
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {n}");
                }
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
                let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
            }
        }
        out
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
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

    #[test]
    fn prometheus_output_counts_and_buckets() {
        let m = DecisionMetrics::default();
        m.observe(&record("a\"x", true, "AUTHENTIFICATION_SUCCESS", Some(0.6), 120.0));
        m.observe(&record("a\"x", false, "FACE_MISMATCH", None, 80.0));
        let text = m.render();
        assert!(text.contains(
            "faceauth_decisions_total{variant=\"a\\\"x\",endpoint=\"authenticate\",role=\"answer\",decision=\"rejected\",reason=\"FACE_MISMATCH\"} 1"
        ), "{text}");
        assert!(text.contains("faceauth_request_duration_ms_bucket{variant=\"a\\\"x\",endpoint=\"authenticate\",role=\"answer\",le=\"100\"} 1"), "{text}");
        assert!(text.contains(
            "faceauth_request_duration_ms_count{variant=\"a\\\"x\",endpoint=\"authenticate\",role=\"answer\"} 2"
        ));
    }
}
