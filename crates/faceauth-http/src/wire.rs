//! The JSON answers of the API as types: what handlers serialize and what the
//! OpenAPI document (`openapi.rs`) describes, so the two cannot differ. Field order
//! is wire order (the original service's keys, in its order).
//! Admin answers built from use-case reports destructure them whole: a field added
//! to a report fails to compile here until the answer (and its schema) says what
//! becomes of it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use faceauth_core::policy::Endpoint;
use faceauth_core::policy::router::PolicySet;
use faceauth_core::store::Erased;
use faceauth_core::usecase::admin::StatsReport;
use faceauth_core::usecase::replay::{Confusion, ReplayReport, Tally, VariantReplay};
use faceauth_core::usecase::stats::{Percentiles, VariantStats};

/// A reason code: one of README's table (the host's and the shipped policies'), or a
/// code of another policy (upper-case letters, digits and `_`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(value_type = String, pattern = "^[A-Z0-9_]+$", example = "FACE_MISMATCH")]
pub struct Reason(pub String);

/// `APPROVED` or `REJECTED`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Approved,
    Rejected,
}

/// `success` when the user was enrolled.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Trained {
    Success,
    Failed,
}

/// The answer of `POST /api/enroll`, the original service's keys.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EnrollAnswer {
    pub trained: Trained,
    #[serde(rename = "EnrollStatus")]
    pub enroll_status: Verdict,
    #[serde(rename = "DecisionReason")]
    pub decision_reason: Reason,
}

impl EnrollAnswer {
    pub fn enrolled() -> Self {
        // The wire contract fixes the success reason.
        Self::new(Trained::Success, Verdict::Approved, "ENROLLED_AS_USER")
    }

    pub fn rejected(reason: &str) -> Self {
        Self::new(Trained::Failed, Verdict::Rejected, reason)
    }

    fn new(trained: Trained, enroll_status: Verdict, reason: &str) -> Self {
        Self { trained, enroll_status, decision_reason: Reason(reason.to_string()) }
    }
}

/// The answer of `POST /api/authentificate`, the original service's keys.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuthenticateAnswer {
    /// Cosine similarity to the enrolled face (6 decimals), on approvals only; else null.
    #[schema(required = true)]
    pub score: Option<f64>,
    #[serde(rename = "Decision")]
    pub decision: Verdict,
    #[serde(rename = "DecisionReason")]
    pub decision_reason: Reason,
}

impl AuthenticateAnswer {
    pub fn approved(score: Option<f32>) -> Self {
        Self {
            score: score.map(|s| (s as f64 * 1e6).round() / 1e6),
            decision: Verdict::Approved,
            // The wire contract fixes the success reason.
            decision_reason: Reason("AUTHENTIFICATION_SUCCESS".into()),
        }
    }

    pub fn rejected(reason: &str) -> Self {
        Self { score: None, decision: Verdict::Rejected, decision_reason: Reason(reason.to_string()) }
    }
}

/// `{"code", "msg"}`: reset's answer, and every admin failure (and an unknown path
/// or method): `msg` is `DONE` or `ERROR_DETECTED : <why>`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdminAnswer {
    /// The HTTP status, repeated.
    #[schema(example = 200)]
    pub code: u16,
    #[schema(example = "DONE")]
    pub msg: String,
}

impl AdminAnswer {
    pub fn done() -> Self {
        Self { code: 200, msg: DONE.into() }
    }

    pub fn error(status: axum::http::StatusCode, why: impl std::fmt::Display) -> Self {
        Self { code: status.as_u16(), msg: format!("ERROR_DETECTED : {why}") }
    }
}

const DONE: &str = "DONE";

/// What an erasure removed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErasedCounts {
    /// Enrolled users whose template was deleted (0 or 1).
    pub users: u64,
    /// Audit rows whose username was replaced by its pseudonym.
    pub decisions: u64,
}

impl From<Erased> for ErasedCounts {
    fn from(Erased { users, decisions }: Erased) -> Self {
        Self { users, decisions }
    }
}

/// `DELETE /api/admin/users/{username}` done.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserErased {
    #[schema(example = 200)]
    pub code: u16,
    #[schema(example = "DONE")]
    pub msg: String,
    pub erased: ErasedCounts,
}

impl UserErased {
    pub fn new(erased: Erased) -> Self {
        Self { code: 200, msg: DONE.into(), erased: erased.into() }
    }
}

/// One policy variant in force.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VariantJson {
    pub name: String,
    /// The component's own name (`info()`).
    pub policy: String,
    pub version: String,
    /// The component's file name.
    pub component: Option<String>,
    pub sha256: String,
    pub requires_liveness: bool,
    /// Share of the users this variant answers, relative to the others' weights.
    pub weight: u32,
    /// Decides on every request, recorded but never answered.
    pub shadow: bool,
    /// The parameters in force (the component's defaults with the overrides).
    pub params: BTreeMap<String, f64>,
}

/// The policy set in force.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicySetJson {
    /// The A/B experiment's salt.
    pub experiment: String,
    /// When the set was built, Unix ms.
    pub loaded_at_ms: i64,
    pub variants: Vec<VariantJson>,
}

impl PolicySetJson {
    pub fn new(set: &PolicySet) -> Self {
        let variants = set
            .variants
            .iter()
            .map(|v| {
                let info = v.policy.info();
                VariantJson {
                    name: v.name.clone(),
                    policy: info.name.clone(),
                    version: info.version.clone(),
                    component: v.policy.source().file_name().map(|n| n.to_string_lossy().into_owned()),
                    sha256: v.policy.sha256().to_string(),
                    requires_liveness: info.requires_liveness,
                    weight: v.weight,
                    shadow: v.shadow,
                    params: v.policy.params().iter().map(|p| (p.name.clone(), p.value)).collect(),
                }
            })
            .collect();
        Self { experiment: set.experiment.clone(), loaded_at_ms: set.loaded_at_ms, variants }
    }
}

/// `GET /api/admin/policies`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyOverviewAnswer {
    #[schema(example = 200)]
    pub code: u16,
    #[schema(example = "DONE")]
    pub msg: String,
    /// Whether the set comes from a policy directory (`--policy-dir`) and can be changed.
    pub managed: bool,
    pub directory: Option<String>,
    /// Why the last reload of the directory was refused, if it was.
    pub last_error: Option<String>,
    pub set: PolicySetJson,
}

impl PolicyOverviewAnswer {
    pub fn new(managed: bool, directory: Option<String>, last_error: Option<String>, set: &PolicySet) -> Self {
        Self { code: 200, msg: DONE.into(), managed, directory, last_error, set: PolicySetJson::new(set) }
    }
}

/// A policy change done: the new set.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicySetAnswer {
    #[schema(example = 200)]
    pub code: u16,
    #[schema(example = "DONE")]
    pub msg: String,
    pub set: PolicySetJson,
}

impl PolicySetAnswer {
    pub fn new(set: &PolicySet) -> Self {
        Self { code: 200, msg: DONE.into(), set: PolicySetJson::new(set) }
    }
}

/// `enroll` or `authenticate`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndpointJson {
    Enroll,
    Authenticate,
}

impl From<Endpoint> for EndpointJson {
    fn from(e: Endpoint) -> Self {
        match e {
            Endpoint::Enroll => EndpointJson::Enroll,
            Endpoint::Authenticate => EndpointJson::Authenticate,
        }
    }
}

/// One recorded decision (the keys of the first release).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DecisionJson {
    /// The request's `x-request-id`, shared by its answer and its shadows.
    pub request_id: String,
    pub at_ms: i64,
    /// The username, or `erased:<hash>` once erased.
    pub username: String,
    pub endpoint: EndpointJson,
    pub variant: String,
    /// `name@version` of the component.
    pub policy: String,
    pub shadow: bool,
    pub approved: bool,
    pub reason: String,
    /// The message of a failure that replaced a policy decision.
    pub error: Option<String>,
    pub score: Option<f64>,
    /// The evidence the policy decided on (measurements only; the policy interface's
    /// shape), null when omitted, `{"unreadable", "stored"}` when it no longer reads.
    #[schema(value_type = Object)]
    pub evidence: Value,
    pub analysis_ms: f64,
    pub policy_ms: f64,
    pub total_ms: f64,
}

/// `GET /api/admin/decisions`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DecisionsAnswer {
    #[schema(example = 200)]
    pub code: u16,
    #[schema(example = "DONE")]
    pub msg: String,
    /// Oldest first.
    pub decisions: Vec<DecisionJson>,
}

impl DecisionsAnswer {
    pub fn new(decisions: Vec<DecisionJson>) -> Self {
        Self { code: 200, msg: DONE.into(), decisions }
    }
}

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
}

impl StatsAnswer {
    pub fn new(report: StatsReport) -> Self {
        let StatsReport { since_ms, decisions, score_bins, variants } = report;
        Self {
            code: 200,
            msg: DONE.into(),
            since_ms,
            decisions,
            score_bins,
            variants: variants.into_iter().map(Into::into).collect(),
        }
    }
}

/// Approvals and rejections against the ground truth.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConfusionJson {
    pub genuine_approved: u64,
    pub genuine_rejected: u64,
    pub impostor_approved: u64,
    pub impostor_rejected: u64,
}

impl From<Confusion> for ConfusionJson {
    fn from(c: Confusion) -> Self {
        let Confusion { genuine_approved, genuine_rejected, impostor_approved, impostor_rejected } = c;
        Self { genuine_approved, genuine_rejected, impostor_approved, impostor_rejected }
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

/// `ok` while the process answers.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthAnswer {
    pub status: HealthStatus,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadyStatus {
    Ready,
    Unavailable,
}

/// `GET /ready`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadyAnswer {
    pub status: ReadyStatus,
    /// `ok`, or the database's error.
    pub database: String,
    /// Variants that answer (not shadows, weight above 0).
    pub policy_variants: usize,
    /// The embedding model's version (templates of another one must enroll again).
    pub embedding_model: String,
}

/// The multipart body of `POST /api/enroll` (documentation: the handler reads the
/// fields as they stream). Other fields are ignored.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EnrollForm {
    /// The ID card photo: JPEG, PNG, WebP or BMP (recognised from the bytes), at most
    /// `--max-upload-bytes` (20 MiB), 52 megapixels and 16384 px a side.
    #[schema(value_type = String, format = Binary, content_media_type = "application/octet-stream")]
    pub cin_file: Vec<u8>,
    /// The username, when the query has none.
    pub username: Option<String>,
}

/// The multipart body of `POST /api/authentificate` (documentation, as [`EnrollForm`]).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuthenticateForm {
    /// The selfie: a still image (as at enrollment) or a short video (MP4/MOV/3GP with
    /// H.264, HEVC or MPEG-4, WebM with VP8/VP9; at most `--video-max-seconds`),
    /// recognised from the bytes.
    #[schema(value_type = String, format = Binary, content_media_type = "application/octet-stream")]
    pub auth_video: Vec<u8>,
    /// The username, when the query has none.
    pub username: Option<String>,
}

/// The multipart body of `PUT /api/admin/policies/{name}`: every field optional,
/// except that a new variant needs a component; fields left out keep the variant's
/// value. Any other field is refused (400).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PutPolicyForm {
    /// The policy component (`.wasm`).
    #[schema(value_type = Option<String>, format = Binary, content_media_type = "application/wasm")]
    pub component: Option<Vec<u8>>,
    /// Share of the users it answers, relative to the other weights.
    pub weight: Option<u32>,
    /// `true` (or `1`): decides on every request, recorded, never answered.
    pub shadow: Option<bool>,
    /// A JSON object of parameter overrides, name: number (`{"match-threshold":0.6}`).
    pub params: Option<String>,
}

/// The multipart body of `POST /api/admin/replay`: a `component` or a `variant` (the
/// candidate), the rest optional. Any other field is refused (400).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReplayForm {
    /// A candidate policy component (`.wasm`).
    #[schema(value_type = Option<String>, format = Binary, content_media_type = "application/wasm")]
    pub component: Option<Vec<u8>>,
    /// Or an existing variant's component and parameters.
    pub variant: Option<String>,
    /// A JSON object of parameter overrides, name: number.
    pub params: Option<String>,
    /// Replay decisions recorded since this Unix time, ms.
    pub since_ms: Option<i64>,
    /// At most this many recorded answers (default 10 000).
    pub limit: Option<i64>,
    /// Ground truth, CSV lines `request_id,label` (label `genuine`/`impostor`): adds
    /// confusion matrices.
    pub labels: Option<String>,
}
