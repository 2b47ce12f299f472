//! The audit log: recorded decisions, per-variant statistics, and a candidate
//! policy replayed over them.

use std::sync::Arc;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::form::{bad, form_fields, parse_params, text};
use super::{AdminFailure, DatabaseFailures, GateRefusals, done};
use crate::answer::LoggedReason;
use crate::wire::{self, AdminAnswer, DecisionJson, DecisionsAnswer, ReplayAnswer, StatsAnswer};
use faceauth_core::policy::Param;
use faceauth_core::store::audit::{DecisionRecord, RecordedEvidence};
use faceauth_core::usecase::FaceAuth;
use faceauth_core::usecase::admin::{Candidate, DecisionQuery, ReplayScope};
use faceauth_core::usecase::replay::parse_labels;

/// A record's evidence as the admin API shows it: the policy interface's shape, null
/// when omitted, `{"unreadable", "stored"}` when it no longer reads.
fn evidence_json(evidence: RecordedEvidence) -> Value {
    let evidence = match evidence {
        RecordedEvidence::Readable(e) => serde_json::to_value(&e).map(|tagged| tagged["evidence"].clone()),
        RecordedEvidence::Omitted => Ok(Value::Null),
        // Shown as stored, with why it no longer reads.
        RecordedEvidence::Unreadable { json, error } => {
            let stored = serde_json::from_str(&json).unwrap_or(Value::String(json));
            Ok(json!({"unreadable": error, "stored": stored}))
        }
    };
    evidence.unwrap_or_else(|e| json!({"unserializable": e.to_string()}))
}

/// A recorded decision as the admin API shows it (the keys of the first release;
/// `error` is the message of a failure that replaced a policy decision).
fn decision_json(r: DecisionRecord) -> DecisionJson {
    DecisionJson {
        request_id: r.request_id,
        at_ms: r.at_ms,
        username: r.username,
        endpoint: r.endpoint.into(),
        variant: r.variant,
        policy: r.policy,
        params_hash: r.params_hash,
        shadow: r.shadow,
        approved: r.outcome.approved(),
        reason: r.outcome.reason().to_string(),
        error: r.outcome.error().map(str::to_string),
        score: r.outcome.score().map(f64::from),
        evidence: evidence_json(r.evidence),
        analysis_ms: r.analysis_ms,
        policy_ms: r.policy_ms,
        total_ms: r.total_ms,
    }
}

/// How `GET /api/admin/decisions` answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DecisionsFormat {
    #[default]
    Json,
    Csv,
}

/// The query parameters of `GET /api/admin/decisions` that are the HTTP layer's
/// (the filters are the use case's `DecisionQuery`, read from the same query).
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct ExportQuery {
    format: Option<DecisionsFormat>,
    /// Default: with the evidence in JSON, without in CSV.
    evidence: Option<bool>,
}

/// The header that carries the next page's cursor (also `next` in the JSON answer).
const NEXT_HEADER: &str = "x-next-before";

/// The CSV export's columns, in order; `evidence` last, only when asked.
const CSV_COLUMNS: [&str; 16] = [
    "request_id",
    "at_ms",
    "username",
    "endpoint",
    "variant",
    "policy",
    "params_hash",
    "shadow",
    "approved",
    "reason",
    "error",
    "score",
    "analysis_ms",
    "policy_ms",
    "total_ms",
    "evidence",
];

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break,
/// quotes doubled. A text that a spreadsheet would run as a formula (starting with
/// `=`, `+`, `-`, `@`, a tab or a carriage return; usernames and request ids are the
/// clients') is prefixed with `'`, as OWASP advises for CSV exports: the file is for
/// people who open it in a spreadsheet as much as for scripts.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_string() };
    if text.contains([',', '"', '\r', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

/// `records` as CSV: a header line, then one line per decision, lines ended by CRLF
/// (RFC 4180). Numbers as JSON writes them; an absent score or error is empty.
fn decisions_csv(records: Vec<DecisionRecord>, with_evidence: bool) -> String {
    let columns = if with_evidence { &CSV_COLUMNS[..] } else { &CSV_COLUMNS[..CSV_COLUMNS.len() - 1] };
    let mut out = columns.join(",");
    out.push_str("\r\n");
    for r in records {
        let mut fields = vec![
            csv_field(&r.request_id),
            r.at_ms.to_string(),
            csv_field(&r.username),
            r.endpoint.as_str().to_string(),
            csv_field(&r.variant),
            csv_field(&r.policy),
            csv_field(&r.params_hash),
            r.shadow.to_string(),
            r.outcome.approved().to_string(),
            csv_field(r.outcome.reason()),
            r.outcome.error().map(csv_field).unwrap_or_default(),
            r.outcome.score().map(|s| f64::from(s).to_string()).unwrap_or_default(),
            r.analysis_ms.to_string(),
            r.policy_ms.to_string(),
            r.total_ms.to_string(),
        ];
        if with_evidence {
            fields.push(csv_field(&evidence_json(r.evidence).to_string()));
        }
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Recorded decisions, newest `limit` (default 100) in time order; older pages by `before`.
#[utoipa::path(
    get,
    path = "/api/admin/decisions",
    tag = "admin",
    description = "Recorded decisions (the audit log), the newest `limit` in time order: each answer and each \
        shadow decision, with the evidence the policy decided on and the hash of the parameters it decided under. \
        Paging goes past any limit: when older decisions match, the answer's `next` (and its `x-next-before` \
        header) is the cursor to pass as `before` for the next, older page, in the stable order \
        `at DESC, id DESC`; `next` is null on the last page. `format=csv` answers the same rows as CSV \
        (RFC 4180, a header line, one line per decision, without the evidence unless `evidence=true`; a text \
        cell that starts with `=`, `+`, `-` or `@` is prefixed with `'` against spreadsheet formulas).",
    params(
        ("since_ms" = Option<i64>, Query, description = "Recorded at or after this Unix time, ms."),
        ("endpoint" = Option<wire::EndpointJson>, Query, description = "Only this endpoint's."),
        ("variant" = Option<String>, Query, description = "Only this variant's."),
        ("shadow" = Option<bool>, Query, description = "Only shadow (`true`) or answered (`false`) decisions."),
        ("request_id" = Option<String>, Query, description = "Only this request's decisions (exact): its answer \
            and its shadows."),
        ("before" = Option<String>, Query, description = "The cursor `<at_ms>-<id>` of the previous page \
            (its `next`): only decisions recorded before that page's oldest."),
        ("limit" = Option<i64>, Query, description = "The newest this many (default 100, at most 10 000)."),
        ("format" = inline(Option<DecisionsFormat>), Query, description = "`json` (default) or `csv`."),
        ("evidence" = Option<bool>, Query, description = "Include the evidence (default: `true` in JSON, \
            `false` in CSV, where it is a JSON cell)."),
    ),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "The decisions.",
            content((DecisionsAnswer = "application/json"), (String = "text/csv")),
            headers(("x-next-before" = String, description = "The next, older page's cursor (`before`); absent on \
                the last page."))),
        (status = 400, description = "A query parameter is malformed.", body = AdminAnswer),
        GateRefusals,
        DatabaseFailures,
    ),
)]
pub(super) async fn decisions(
    State(app): State<Arc<FaceAuth>>,
    query: Result<Query<DecisionQuery>, QueryRejection>,
    export: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, AdminFailure> {
    let (Query(mut q), Query(export)) = (query?, export?);
    if q.request_id.as_deref() == Some("") {
        return Err(bad("request_id is empty"));
    }
    let format = export.format.unwrap_or_default();
    let with_evidence = export.evidence.unwrap_or(format == DecisionsFormat::Json);
    q.without_evidence = !with_evidence;
    let page = app.decisions(q).await?;
    let next = page.next.map(|cursor| cursor.to_string());
    let mut response = match format {
        DecisionsFormat::Json => {
            done(DecisionsAnswer::new(page.decisions.into_iter().map(decision_json).collect(), next.clone()))
        }
        DecisionsFormat::Csv => {
            let mut response = (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (header::CONTENT_DISPOSITION, "attachment; filename=\"decisions.csv\""),
                ],
                decisions_csv(page.decisions, with_evidence),
            )
                .into_response();
            response.extensions_mut().insert(LoggedReason("DONE".into()));
            response
        }
    };
    if let Some(next) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert(NEXT_HEADER, next);
    }
    Ok(response)
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

#[cfg(test)]
mod tests {
    use super::*;
    use faceauth_core::policy::{Decision, Endpoint, Failure, Outcome};

    #[test]
    fn csv_fields_are_quoted_as_rfc_4180_says() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field(""), "");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("cr\rhere"), "\"cr\rhere\"");
        // A formula is not run by the spreadsheet that opens the export.
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        for formula in ["+1", "-1", "@SUM(A1)", "\tx"] {
            assert_eq!(csv_field(formula), format!("'{formula}"));
        }
        assert_eq!(csv_field("erased:ab12"), "erased:ab12");
    }

    fn record(request_id: &str, username: &str, shadow: bool, outcome: Outcome) -> DecisionRecord {
        DecisionRecord {
            request_id: request_id.into(),
            at_ms: 1_765_000_000_000,
            username: username.into(),
            endpoint: Endpoint::Authenticate,
            variant: "control".into(),
            policy: "default@0.1.0".into(),
            params_hash: "0123456789abcdef".into(),
            shadow,
            outcome,
            evidence: RecordedEvidence::Unreadable { json: "{\"old\":1}".into(), error: "old, gone".into() },
            analysis_ms: 120.5,
            policy_ms: 0.25,
            total_ms: 121.0,
        }
    }

    #[test]
    fn decisions_export_as_csv_with_a_header_and_one_line_each() {
        let approved =
            Outcome::Decided(Decision { approved: true, reason: "AUTHENTIFICATION_SUCCESS".into(), score: Some(0.5) });
        let failed =
            Outcome::Failed { failure: Failure::PolicyError, message: "wasm trap: \"unreachable\", at 3".into() };
        let records = vec![record("r1", "alice, jr.", false, approved), record("r1", "=cmd", true, failed)];
        let csv = decisions_csv(records.clone(), false);
        assert_eq!(
            csv,
            "request_id,at_ms,username,endpoint,variant,policy,params_hash,shadow,approved,reason,error,score,\
             analysis_ms,policy_ms,total_ms\r\n\
             r1,1765000000000,\"alice, jr.\",authenticate,control,default@0.1.0,0123456789abcdef,false,true,\
             AUTHENTIFICATION_SUCCESS,,0.5,120.5,0.25,121\r\n\
             r1,1765000000000,'=cmd,authenticate,control,default@0.1.0,0123456789abcdef,true,false,POLICY_ERROR,\
             \"wasm trap: \"\"unreachable\"\", at 3\",,120.5,0.25,121\r\n"
        );
        // Asked for, the evidence is the last column: the JSON the JSON answer has.
        let with = decisions_csv(records, true);
        let header = with.lines().next().expect("header");
        assert!(header.ends_with(",total_ms,evidence"), "{header}");
        let first = with.lines().nth(1).expect("a row");
        assert!(
            first.ends_with(",121,\"{\"\"unreadable\"\":\"\"old, gone\"\",\"\"stored\"\":{\"\"old\"\":1}}\""),
            "{first}"
        );
    }
}
