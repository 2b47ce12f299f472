//! The audit log: recorded decisions, per-variant statistics, and a candidate
//! policy replayed over them.

use std::sync::Arc;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use serde_json::{Value, json};

use super::form::{bad, form_fields, parse_params, text};
use super::{AdminFailure, DatabaseFailures, GateRefusals, done};
use crate::wire::{self, AdminAnswer, DecisionJson, DecisionsAnswer, ReplayAnswer, StatsAnswer};
use faceauth_core::policy::Param;
use faceauth_core::store::audit::{DecisionRecord, RecordedEvidence};
use faceauth_core::usecase::FaceAuth;
use faceauth_core::usecase::admin::{Candidate, DecisionQuery, ReplayScope};
use faceauth_core::usecase::replay::parse_labels;

/// A recorded decision as the admin API shows it (the keys of the first release;
/// `error` is the message of a failure that replaced a policy decision).
fn decision_json(r: DecisionRecord) -> DecisionJson {
    let evidence = match r.evidence {
        RecordedEvidence::Readable(e) => serde_json::to_value(&e).map(|tagged| tagged["evidence"].clone()),
        RecordedEvidence::Omitted => Ok(Value::Null),
        // Shown as stored, with why it no longer reads.
        RecordedEvidence::Unreadable { json, error } => {
            let stored = serde_json::from_str(&json).unwrap_or(Value::String(json));
            Ok(json!({"unreadable": error, "stored": stored}))
        }
    };
    DecisionJson {
        request_id: r.request_id,
        at_ms: r.at_ms,
        username: r.username,
        endpoint: r.endpoint.into(),
        variant: r.variant,
        policy: r.policy,
        shadow: r.shadow,
        approved: r.outcome.approved(),
        reason: r.outcome.reason().to_string(),
        error: r.outcome.error().map(str::to_string),
        score: r.outcome.score().map(f64::from),
        evidence: evidence.unwrap_or_else(|e| json!({"unserializable": e.to_string()})),
        analysis_ms: r.analysis_ms,
        policy_ms: r.policy_ms,
        total_ms: r.total_ms,
    }
}

/// Recorded decisions, newest `limit` (default 100) in time order.
#[utoipa::path(
    get,
    path = "/api/admin/decisions",
    tag = "admin",
    description = "Recorded decisions (the audit log), the newest `limit` in time order: each answer and each \
        shadow decision, with the evidence the policy decided on.",
    params(
        ("since_ms" = Option<i64>, Query, description = "Recorded at or after this Unix time, ms."),
        ("endpoint" = Option<wire::EndpointJson>, Query, description = "Only this endpoint's."),
        ("variant" = Option<String>, Query, description = "Only this variant's."),
        ("shadow" = Option<bool>, Query, description = "Only shadow (`true`) or answered (`false`) decisions."),
        ("limit" = Option<i64>, Query, description = "The newest this many (default 100, at most 10 000)."),
    ),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "The decisions.", body = DecisionsAnswer),
        (status = 400, description = "A query parameter is malformed.", body = AdminAnswer),
        GateRefusals,
        DatabaseFailures,
    ),
)]
pub(super) async fn decisions(
    State(app): State<Arc<FaceAuth>>,
    query: Result<Query<DecisionQuery>, QueryRejection>,
) -> Result<Response, AdminFailure> {
    let Query(q) = query?;
    let records: Vec<DecisionJson> = app.decisions(q).await?.into_iter().map(decision_json).collect();
    Ok(done(DecisionsAnswer::new(records)))
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct StatsQuery {
    /// Default: the last 24 hours.
    since_ms: Option<i64>,
    /// Only this endpoint's decisions (issue 21: the filter was ignored, and the
    /// approval rate mixed enrollments with authentications).
    endpoint: Option<faceauth_core::policy::Endpoint>,
    /// The difference in approval rate `still_needed` plans for (default 0.02).
    min_effect: Option<f64>,
}

/// Per-variant statistics over the audit log's window (at most the last 100 000 decisions).
#[utoipa::path(
    get,
    path = "/api/admin/stats",
    tag = "admin",
    description = "Per-variant statistics over the audit log (at most its last 100 000 decisions): approval rate, \
        reasons, score histogram, latency percentiles, the policy's share of the request time; and `experiment`, \
        the A/B comparison per endpoint: each answering variant's approval rate with a Wilson 95 % interval, its \
        lift over the control (the heaviest weight) with Newcombe's 95 % interval and an always-valid p-value \
        (mSPRT: valid however often it is read), the decisions still needed for `min_effect`, a \
        sample-ratio-mismatch check of the users per variant against the weights (chi-squared, mismatch at \
        p < 0.001), and each shadow against the answers of the same requests (McNemar, the disagreeing requests).",
    params(
        ("since_ms" = Option<i64>, Query, description = "Window start, Unix ms (default: the last 24 hours)."),
        ("endpoint" = Option<wire::EndpointJson>, Query, description = "Only this endpoint's decisions."),
        ("min_effect" = Option<f64>, Query, description = "The absolute difference in approval rate the \
            sample-size plan is for, in (0, 1); default 0.02."),
    ),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "The statistics.", body = StatsAnswer),
        (status = 400, description = "A query parameter is malformed.", body = AdminAnswer),
        GateRefusals,
        DatabaseFailures,
    ),
)]
pub(super) async fn stats(
    State(app): State<Arc<FaceAuth>>,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Response, AdminFailure> {
    let Query(q) = query?;
    let report = app.stats(q.since_ms, q.endpoint, q.min_effect).await?;
    Ok(done(StatsAnswer::new(report)))
}

/// Backtests a candidate over recorded decisions. Multipart fields: `component`
/// (a .wasm) or `variant` (an existing variant's component), optional `params`
/// (JSON object of overrides), `since_ms`, `limit` (default 10 000) and `labels`
/// (CSV `request_id,label` with genuine/impostor).
#[utoipa::path(
    post,
    path = "/api/admin/replay",
    tag = "admin",
    description = "Backtests a candidate policy over the recorded evidence: what would change (approve/reject \
        counts, reason changes, per recorded variant; confusion matrices when labels are given).",
    request_body(content = wire::ReplayForm, content_type = "multipart/form-data"),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "The report.", body = ReplayAnswer),
        (status = 400, description = "A field is wrong or unknown.", body = AdminAnswer),
        (status = 404, description = "Neither `component` nor `variant` given, or no variant of that name.",
            body = AdminAnswer),
        (status = 413, description = "The body exceeds `--max-upload-bytes`.", body = AdminAnswer),
        (status = 422, description = "The candidate is refused (does not instantiate, rejects its parameters).",
            body = AdminAnswer),
        GateRefusals,
        DatabaseFailures,
    ),
)]
pub(super) async fn replay(
    State(app): State<Arc<FaceAuth>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, AdminFailure> {
    let (mut candidate, mut scope) = (Candidate::default(), ReplayScope::default());
    for (name, bytes) in form_fields(multipart).await? {
        match name.as_str() {
            "component" => candidate.component = Some(bytes.to_vec()),
            "variant" => candidate.variant = Some(text(&bytes)),
            "params" => {
                candidate.params =
                    parse_params(&bytes)?.into_iter().map(|(name, value)| Param { name, value }).collect();
            }
            "since_ms" => {
                scope.since_ms = Some(text(&bytes).parse().map_err(|_| bad("since_ms must be a whole number"))?)
            }
            "limit" => scope.limit = text(&bytes).parse().map_err(|_| bad("limit must be a whole number"))?,
            "labels" => scope.labels = parse_labels(&text(&bytes)).map_err(|e| bad(format!("labels: {e}")))?,
            other => return Err(bad(format!("unknown field {other:?}"))),
        }
    }
    let report = app.replay(candidate, scope).await?;
    Ok(done(ReplayAnswer::new(report)))
}
