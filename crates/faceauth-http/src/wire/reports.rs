//! The admin reports' wire types: per-variant statistics and a replay's report.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::admin::DONE;
use faceauth_core::usecase::admin::StatsReport;
use faceauth_core::usecase::replay::{Confusion, Flip, RateInterval, ReplayReport, Tally, VariantReplay};
use faceauth_core::usecase::stats::{ParamsUse, Percentiles, VariantStats};

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PercentilesJson {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl From<Percentiles> for PercentilesJson {
    fn from(Percentiles { p50, p90, p99, max }: Percentiles) -> Self {
        Self { p50, p90, p99, max }
    }
}

/// One variant's statistics.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VariantStatsJson {
    pub variant: String,
    pub policy: String,
    pub shadow: bool,
    pub decisions: u64,
    pub approved: u64,
    pub approval_rate: f64,
    pub policy_errors: u64,
    /// Count by reason.
    pub reasons: BTreeMap<String, u64>,
    /// Scores of approved authentications, in `score_bins` bins over [0, 1].
    pub score_histogram: Vec<u64>,
    pub total_ms: PercentilesJson,
    pub analysis_ms: PercentilesJson,
    pub policy_ms: PercentilesJson,
    /// Mean share of the request's time spent in the policy call.
    pub policy_share: f64,
    /// The parameter sets it decided under (`params_hash` of its decisions), first
    /// used first: more than one means its parameters changed within the window.
    pub params: Vec<ParamsUseJson>,
}

/// One parameter set a variant decided under.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ParamsUseJson {
    /// As the decisions' `params_hash`; `""`: recorded before the hash was.
    pub params_hash: String,
    pub decisions: u64,
    /// The first and the last of those decisions, Unix ms.
    pub first_at_ms: i64,
    pub last_at_ms: i64,
}

impl From<ParamsUse> for ParamsUseJson {
    fn from(ParamsUse { params_hash, decisions, first_at_ms, last_at_ms }: ParamsUse) -> Self {
        Self { params_hash, decisions, first_at_ms, last_at_ms }
    }
}

impl From<VariantStats> for VariantStatsJson {
    fn from(v: VariantStats) -> Self {
        let VariantStats {
            variant,
            policy,
            shadow,
            decisions,
            approved,
            approval_rate,
            policy_errors,
            reasons,
            score_histogram,
            total_ms,
            analysis_ms,
            policy_ms,
            policy_share,
            params,
        } = v;
        Self {
            variant,
            policy,
            shadow,
            decisions,
            approved,
            approval_rate,
            policy_errors,
            reasons,
            score_histogram,
            total_ms: total_ms.into(),
            analysis_ms: analysis_ms.into(),
            policy_ms: policy_ms.into(),
            policy_share,
            params: params.into_iter().map(Into::into).collect(),
        }
    }
}

/// `GET /api/admin/stats`: the report's fields beside `code` and `msg`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatsAnswer {
    #[schema(example = 200)]
    pub code: u16,
    #[schema(example = "DONE")]
    pub msg: String,
    /// Start of the window, Unix ms.
    pub since_ms: i64,
    /// Decisions in the window (at most the last 100 000).
    pub decisions: usize,
    pub score_bins: usize,
    pub variants: Vec<VariantStatsJson>,
    /// The A/B comparison (see the operation's description): `min_effect`,
    /// `endpoints` [{`endpoint`, `control`, `arms` [{`variant`, `decisions`,
    /// `approved`, `approval_rate`, `approval_interval` {`low`, `high`}, `lift`,
    /// `lift_interval`, `always_valid_p`, `still_needed`}]}], `sample_ratio`
    /// {`arms` [[variant, users, expected share]], `chi_squared`, `p_value`,
    /// `mismatch`} or null, `shadows` [{`shadow`, `endpoint`, `paired`,
    /// `both_approved`, `both_rejected`, `answer_only`, `shadow_only`, `mcnemar_p`,
    /// `disagreements` [{`request_id`, `at_ms`, `answer_reason`, `shadow_reason`}]}].
    #[schema(value_type = Object)]
    pub experiment: serde_json::Value,
}

impl StatsAnswer {
    pub fn new(report: StatsReport) -> Self {
        let StatsReport { since_ms, decisions, score_bins, variants, experiment } = report;
        Self {
            code: 200,
            msg: DONE.into(),
            since_ms,
            decisions,
            score_bins,
            variants: variants.into_iter().map(Into::into).collect(),
            experiment: serde_json::to_value(experiment).unwrap_or_default(),
        }
    }
}

/// Approvals and rejections against the ground truth, with the approval rates and
/// their 95 % intervals.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConfusionJson {
    pub genuine_approved: u64,
    pub genuine_rejected: u64,
    pub impostor_approved: u64,
    pub impostor_rejected: u64,
    /// `null` without genuine attempts.
    pub genuine_approved_rate: Option<f64>,
    pub genuine_approved_interval: RateIntervalJson,
    /// `null` without impostor attempts.
    pub impostor_approved_rate: Option<f64>,
    pub impostor_approved_interval: RateIntervalJson,
}

/// A 95 % interval on a rate.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RateIntervalJson {
    pub low: f64,
    pub high: f64,
    /// `wilson`, `rule-of-three` (no error: `[0, 3/n]`, or `[1 - 3/n, 1]`) or `none`.
    pub method: String,
}

impl From<RateInterval> for RateIntervalJson {
    fn from(RateInterval { low, high, method }: RateInterval) -> Self {
        Self { low, high, method: method.to_string() }
    }
}

impl From<Confusion> for ConfusionJson {
    fn from(c: Confusion) -> Self {
        Self {
            genuine_approved_rate: c.genuine_approved_rate(),
            genuine_approved_interval: c.genuine_approved_interval().into(),
            impostor_approved_rate: c.impostor_approved_rate(),
            impostor_approved_interval: c.impostor_approved_interval().into(),
            genuine_approved: c.genuine_approved,
            genuine_rejected: c.genuine_rejected,
            impostor_approved: c.impostor_approved,
            impostor_rejected: c.impostor_rejected,
        }
    }
}

/// A recorded decision the candidate decides otherwise.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlipJson {
    pub request_id: String,
    /// Unix ms.
    pub at_ms: i64,
    pub endpoint: String,
    /// The variant that answered it.
    pub variant: String,
    pub recorded_approved: bool,
    pub recorded_reason: String,
    pub replayed_approved: bool,
    pub replayed_reason: String,
}

impl From<Flip> for FlipJson {
    fn from(f: Flip) -> Self {
        Self {
            request_id: f.request_id,
            at_ms: f.at_ms,
            endpoint: f.endpoint.to_string(),
            variant: f.variant,
            recorded_approved: f.recorded_approved,
            recorded_reason: f.recorded_reason,
            replayed_approved: f.replayed_approved,
            replayed_reason: f.replayed_reason,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TallyJson {
    pub approved: u64,
    pub rejected: u64,
    /// Count by reason.
    pub reasons: BTreeMap<String, u64>,
    /// Only when labels were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confusion: Option<ConfusionJson>,
}

impl From<Tally> for TallyJson {
    fn from(Tally { approved, rejected, reasons, confusion }: Tally) -> Self {
        Self { approved, rejected, reasons, confusion: confusion.map(Into::into) }
    }
}

/// What one recorded variant decided, and what the candidate decides on the same requests.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VariantReplayJson {
    pub recorded: TallyJson,
    pub replayed: TallyJson,
}

impl From<VariantReplay> for VariantReplayJson {
    fn from(VariantReplay { recorded, replayed }: VariantReplay) -> Self {
        Self { recorded: recorded.into(), replayed: replayed.into() }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReplayReportJson {
    /// `name@version` of the candidate.
    pub candidate: String,
    /// Recorded answers replayed.
    pub decisions: u64,
    /// Records whose evidence could not be read (written by an older interface).
    pub unreadable: u64,
    pub recorded: TallyJson,
    pub replayed: TallyJson,
    pub per_variant: BTreeMap<String, VariantReplayJson>,
    pub changed: u64,
    pub approve_to_reject: u64,
    pub reject_to_approve: u64,
    /// `"OLD_REASON -> NEW_REASON"`: count.
    pub reason_changes: BTreeMap<String, u64>,
    /// The decisions the candidate would flip (approval or reason), the first 1000
    /// of `changed` in the order replayed; look one up with
    /// `GET /api/admin/decisions?request_id=`.
    pub flips: Vec<FlipJson>,
}

impl From<ReplayReport> for ReplayReportJson {
    fn from(r: ReplayReport) -> Self {
        let ReplayReport {
            candidate,
            decisions,
            unreadable,
            recorded,
            replayed,
            per_variant,
            changed,
            approve_to_reject,
            reject_to_approve,
            reason_changes,
            flips,
        } = r;
        Self {
            candidate,
            decisions,
            unreadable,
            recorded: recorded.into(),
            replayed: replayed.into(),
            per_variant: per_variant.into_iter().map(|(k, v)| (k, v.into())).collect(),
            changed,
            approve_to_reject,
            reject_to_approve,
            reason_changes,
            flips: flips.into_iter().map(Into::into).collect(),
        }
    }
}

/// `POST /api/admin/replay`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReplayAnswer {
    #[schema(example = 200)]
    pub code: u16,
    #[schema(example = "DONE")]
    pub msg: String,
    pub report: ReplayReportJson,
}

impl ReplayAnswer {
    pub fn new(report: ReplayReport) -> Self {
        Self { code: 200, msg: DONE.into(), report: report.into() }
    }
}
