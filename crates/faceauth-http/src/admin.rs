//! Admin endpoints: reset (the original service's), policy management and the audit
//! log. One gate guards them all: the admin token when one is configured, else
//! loopback clients only. Answers and errors use reset's shape:
//! `{"code": <status>, "msg": "DONE" | "ERROR_DETECTED : <why>"}`, plus data fields.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::access::AdminRequest;
use super::wire::{
    AdminAnswer, DecisionJson, DecisionsAnswer, PolicyOverviewAnswer, PolicySetAnswer, ReplayAnswer, StatsAnswer,
    UserErased,
};
use super::{ApiState, error_chain, with_reason};
use faceauth_core::policy::Param;
use faceauth_core::policy::router::RouterError;
use faceauth_core::store::audit::{DecisionRecord, RecordedEvidence};
use faceauth_core::usecase::FaceAuth;
use faceauth_core::usecase::admin::{AdminError, Candidate, DecisionQuery, PolicyChange, ReplayScope};
use faceauth_core::usecase::replay::parse_labels;

/// The admin routes, documented; `super::router_with_limits` puts them behind [`gate`].
pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(reset))
        .routes(routes!(list_policies))
        .routes(routes!(reload_policies))
        .routes(routes!(put_policy, retire_policy))
        .routes(routes!(erase_user))
        .routes(routes!(decisions))
        .routes(routes!(stats))
        .routes(routes!(replay))
        .routes(routes!(metrics))
}

fn error(status: StatusCode, why: impl std::fmt::Display) -> Response {
    with_reason(status, AdminAnswer::error(status, why), "ERROR_DETECTED")
}

fn done(body: impl serde::Serialize) -> Response {
    with_reason(StatusCode::OK, body, "DONE")
}

/// An admin use case's failure at the HTTP edge (the use case's error is the
/// core's; the status is chosen here).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct AdminFailure(#[from] AdminError);

/// The one place admin failures become HTTP: reset's `{"code", "msg"}` shape.
impl IntoResponse for AdminFailure {
    fn into_response(self) -> Response {
        use StatusCode as S;
        let status = match &self.0 {
            AdminError::BadRequest(_) => S::BAD_REQUEST,
            AdminError::TooLarge => S::PAYLOAD_TOO_LARGE,
            AdminError::Router(e) => match e {
                RouterError::NotManaged => S::CONFLICT,
                RouterError::MissingComponent(_) => S::BAD_REQUEST,
                RouterError::UnknownVariant(_) => S::NOT_FOUND,
                RouterError::Write(_) => S::INTERNAL_SERVER_ERROR,
                RouterError::Catalog(_) | RouterError::Variant { .. } => S::UNPROCESSABLE_ENTITY,
            },
            AdminError::Policy(_) => S::UNPROCESSABLE_ENTITY,
            AdminError::Store(e) if e.is_unavailable() => S::SERVICE_UNAVAILABLE,
            AdminError::Store(_) | AdminError::Task(_) => S::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::warn!(error = %error_chain(&self), "admin request failed");
        }
        error(status, &self)
    }
}

impl From<QueryRejection> for AdminFailure {
    fn from(e: QueryRejection) -> Self {
        AdminFailure(AdminError::BadRequest(e.body_text()))
    }
}

impl From<MultipartRejection> for AdminFailure {
    fn from(e: MultipartRejection) -> Self {
        AdminFailure(AdminError::BadRequest(e.body_text()))
    }
}

impl From<MultipartError> for AdminFailure {
    fn from(e: MultipartError) -> Self {
        AdminFailure(if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AdminError::TooLarge
        } else {
            AdminError::BadRequest(e.body_text())
        })
    }
}

/// Admin actions that take no body: a request to them with a form's body came from a form.
const BODYLESS_ACTIONS: [&str; 2] = ["/api/reset", "/api/admin/policies/reload"];

pub(super) async fn gate(
    State(state): State<ApiState>,
    peer: Result<ConnectInfo<std::net::SocketAddr>, axum::extract::rejection::ExtensionRejection>,
    request: Request,
    next: Next,
) -> Response {
    let admin_request = AdminRequest {
        method: request.method(),
        uri: request.uri(),
        headers: request.headers(),
        peer: peer.ok().map(|p| p.0),
        trusted_proxies: &state.limits.trusted_proxies,
        takes_no_body: BODYLESS_ACTIONS.contains(&request.uri().path()),
    };
    let refusal = match state.admin.check(&admin_request) {
        Ok(()) => return next.run(request).await,
        Err(refusal) => refusal,
    };
    let mut response = error(refusal.status(), refusal);
    response.extensions_mut().insert(super::LoggedReason("ADMIN_REFUSED".into()));
    response
}

/// Erases every user, atomically: templates deleted, audit rows pseudonymised.
#[utoipa::path(
    post,
    path = "/api/reset",
    tag = "admin",
    description = "Erases every user atomically: templates deleted, audit rows keep only a keyed hash of the \
        name. The original service's answer, `{\"code\":200,\"msg\":\"DONE\"}`.",
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Done.", body = AdminAnswer),
        (status = 401, description = "A token is configured and this request lacks it.", body = AdminAnswer),
        (status = 403, description = "No token is configured and the client is not on loopback, or does not \
            name a loopback `Host`; or a browser sent it from another site's page.", body = AdminAnswer),
        (status = 500, description = "`ERROR_DETECTED : <explanation>`: a database failure.", body = AdminAnswer),
        (status = 503, description = "The database did not answer within `--db-timeout`: retry.", body = AdminAnswer),
    ),
)]
async fn reset(State(app): State<Arc<FaceAuth>>) -> Result<Response, AdminFailure> {
    let erased = app.reset().await?;
    tracing::info!(users = erased.users, decisions = erased.decisions, "all users erased");
    // The original service's answer, unchanged.
    Ok(done(AdminAnswer::done()))
}

/// Erases one user (right to erasure).
#[utoipa::path(
    delete,
    path = "/api/admin/users/{username}",
    tag = "admin",
    description = "Erases one user: the template is deleted and the user's audit rows keep only `erased:` and a \
        keyed hash of the name.",
    params(("username" = String, Path, description = "The name, exactly as enrolled (percent-encoded).")),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Erased; what was removed.", body = UserErased),
        (status = 400, description = "Not a username that can exist (over 128 bytes, control or invisible \
            characters).", body = AdminAnswer),
        (status = 401, description = "A token is configured and this request lacks it.", body = AdminAnswer),
        (status = 403, description = "No token is configured and the client is not on loopback, or does not \
            name a loopback `Host`; or a browser sent it from another site's page.", body = AdminAnswer),
        (status = 404, description = "No template and no audit rows under this username.", body = AdminAnswer),
        (status = 500, description = "A database failure.", body = AdminAnswer),
        (status = 503, description = "The database did not answer within `--db-timeout`: retry.", body = AdminAnswer),
    ),
)]
async fn erase_user(State(app): State<Arc<FaceAuth>>, Path(username): Path<String>) -> Result<Response, AdminFailure> {
    match app.erase_user(&username).await? {
        Some(erased) => {
            tracing::info!(users = erased.users, decisions = erased.decisions, "a user erased");
            Ok(done(UserErased::new(erased)))
        }
        None => Ok(error(StatusCode::NOT_FOUND, "no template and no audit rows under this username")),
    }
}

/// The policy variants in force.
#[utoipa::path(
    get,
    path = "/api/admin/policies",
    tag = "admin",
    description = "The policy variants in force (parameters, sha256, weights, shadows), whether they come from a \
        policy directory, and the last refused reload.",
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "The policy set.", body = PolicyOverviewAnswer),
        (status = 401, description = "A token is configured and this request lacks it.", body = AdminAnswer),
        (status = 403, description = "No token is configured and the client is not on loopback, or does not \
            name a loopback `Host`; or a browser sent it from another site's page.", body = AdminAnswer),
    ),
)]
async fn list_policies(State(app): State<Arc<FaceAuth>>) -> Response {
    let overview = app.policies();
    done(PolicyOverviewAnswer::new(
        overview.managed,
        overview.directory.map(|d| d.display().to_string()),
        overview.last_error,
        &overview.set,
    ))
}

/// Answers a policy change with the new set.
async fn change(app: &FaceAuth, change: PolicyChange) -> Result<Response, AdminFailure> {
    let set = app.change_policies(change).await?;
    Ok(done(PolicySetAnswer::new(&set)))
}

/// Re-reads the policy directory now.
#[utoipa::path(
    post,
    path = "/api/admin/policies/reload",
    tag = "admin",
    description = "Rebuilds the policy set from `--policy-dir` now (each variant is instantiated and self-checked \
        first; a refused set leaves the current one serving).",
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "The new set.", body = PolicySetAnswer),
        (status = 401, description = "A token is configured and this request lacks it.", body = AdminAnswer),
        (status = 403, description = "No token is configured and the client is not on loopback, or does not \
            name a loopback `Host`; or a browser sent it from another site's page.", body = AdminAnswer),
        (status = 409, description = "The server runs one fixed policy (`--policy`), not a directory.",
            body = AdminAnswer),
        (status = 422, description = "The directory's set is refused (catalog or component invalid).",
            body = AdminAnswer),
    ),
)]
async fn reload_policies(State(app): State<Arc<FaceAuth>>) -> Result<Response, AdminFailure> {
    change(&app, PolicyChange::Reload).await
}

/// Retires variant `name`.
#[utoipa::path(
    delete,
    path = "/api/admin/policies/{name}",
    tag = "admin",
    description = "Retires a variant (not the last answering one), rewriting `policies.toml`.",
    params(("name" = String, Path, description = "The variant's name.")),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "The new set.", body = PolicySetAnswer),
        (status = 401, description = "A token is configured and this request lacks it.", body = AdminAnswer),
        (status = 403, description = "No token is configured and the client is not on loopback, or does not \
            name a loopback `Host`; or a browser sent it from another site's page.", body = AdminAnswer),
        (status = 404, description = "No variant of this name.", body = AdminAnswer),
        (status = 409, description = "The server runs one fixed policy (`--policy`), not a directory.",
            body = AdminAnswer),
        (status = 422, description = "The set without it is refused (no variant would answer), or `policies.toml` \
            could not be written.", body = AdminAnswer),
    ),
)]
async fn retire_policy(State(app): State<Arc<FaceAuth>>, Path(name): Path<String>) -> Result<Response, AdminFailure> {
    change(&app, PolicyChange::Retire(name)).await
}

/// Every field of a multipart body, as (name, bytes).
async fn form_fields(
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Vec<(String, axum::body::Bytes)>, AdminFailure> {
    let mut multipart = multipart?;
    let mut fields = Vec::new();
    while let Some(field) = multipart.next_field().await? {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await?;
        fields.push((name, bytes));
    }
    Ok(fields)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

fn bad(why: impl Into<String>) -> AdminFailure {
    AdminFailure(AdminError::BadRequest(why.into()))
}

fn parse_params(bytes: &[u8]) -> Result<BTreeMap<String, f64>, AdminFailure> {
    serde_json::from_slice(bytes).map_err(|e| bad(format!("params must be a JSON object of numbers: {e}")))
}

/// Adds or replaces variant `name`. Multipart fields, all optional except that a
/// new variant needs a component: `component` (the .wasm file), `weight`,
/// `shadow` (true/false), `params` (a JSON object of name: number overrides).
/// Fields left out keep the variant's current value.
#[utoipa::path(
    put,
    path = "/api/admin/policies/{name}",
    tag = "admin",
    description = "Adds or changes a variant, validated first (instantiated, parameters checked, self-checked); \
        the files are written only once the new set is built.",
    params(("name" = String, Path, description = "The variant's name (letters, digits, `-` and `_`).")),
    request_body(content = super::wire::PutPolicyForm, content_type = "multipart/form-data"),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "The new set.", body = PolicySetAnswer),
        (status = 400, description = "A field is wrong, unknown, or a new variant has no `component`.",
            body = AdminAnswer),
        (status = 401, description = "A token is configured and this request lacks it.", body = AdminAnswer),
        (status = 403, description = "No token is configured and the client is not on loopback, or does not \
            name a loopback `Host`; or a browser sent it from another site's page.", body = AdminAnswer),
        (status = 409, description = "The server runs one fixed policy (`--policy`), not a directory.",
            body = AdminAnswer),
        (status = 413, description = "The body exceeds `--max-upload-bytes`.", body = AdminAnswer),
        (status = 422, description = "The component or the resulting set is refused (does not instantiate, \
            rejects its parameters, fails its self-check, invalid name).", body = AdminAnswer),
        (status = 500, description = "The policy directory could not be written.", body = AdminAnswer),
    ),
)]
async fn put_policy(
    State(app): State<Arc<FaceAuth>>,
    Path(name): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, AdminFailure> {
    let (mut component, mut weight, mut shadow, mut params) = (None, None, None, None);
    for (field_name, bytes) in form_fields(multipart).await? {
        match field_name.as_str() {
            "component" => component = Some(bytes.to_vec()),
            "weight" => weight = Some(text(&bytes).parse::<u32>().map_err(|_| bad("weight must be a whole number"))?),
            "shadow" => {
                shadow = Some(match text(&bytes).as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad("shadow must be true or false")),
                })
            }
            "params" => params = Some(parse_params(&bytes)?),
            other => return Err(bad(format!("unknown field {other:?}"))),
        }
    }
    change(&app, PolicyChange::Put { name, component, weight, shadow, params }).await
}

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
        ("endpoint" = Option<super::wire::EndpointJson>, Query, description = "Only this endpoint's."),
        ("variant" = Option<String>, Query, description = "Only this variant's."),
        ("shadow" = Option<bool>, Query, description = "Only shadow (`true`) or answered (`false`) decisions."),
        ("limit" = Option<i64>, Query, description = "The newest this many (default 100, at most 10 000)."),
    ),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "The decisions.", body = DecisionsAnswer),
        (status = 400, description = "A query parameter is malformed.", body = AdminAnswer),
        (status = 401, description = "A token is configured and this request lacks it.", body = AdminAnswer),
        (status = 403, description = "No token is configured and the client is not on loopback, or does not \
            name a loopback `Host`; or a browser sent it from another site's page.", body = AdminAnswer),
        (status = 500, description = "A database failure.", body = AdminAnswer),
        (status = 503, description = "The database did not answer within `--db-timeout`: retry.", body = AdminAnswer),
    ),
)]
async fn decisions(
    State(app): State<Arc<FaceAuth>>,
    query: Result<Query<DecisionQuery>, QueryRejection>,
) -> Result<Response, AdminFailure> {
    let Query(q) = query?;
    let records: Vec<DecisionJson> = app.decisions(q).await?.into_iter().map(decision_json).collect();
    Ok(done(DecisionsAnswer::new(records)))
}

#[derive(Debug, serde::Deserialize)]
struct StatsQuery {
    /// Default: the last 24 hours.
    since_ms: Option<i64>,
}

/// Per-variant statistics over the audit log's window (at most the last 100 000 decisions).
#[utoipa::path(
    get,
    path = "/api/admin/stats",
    tag = "admin",
    description = "Per-variant statistics over the audit log (at most its last 100 000 decisions): approval rate, \
        reasons, score histogram, latency percentiles, the policy's share of the request time.",
    params(("since_ms" = Option<i64>, Query, description = "Window start, Unix ms (default: the last 24 hours).")),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "The statistics.", body = StatsAnswer),
        (status = 400, description = "A query parameter is malformed.", body = AdminAnswer),
        (status = 401, description = "A token is configured and this request lacks it.", body = AdminAnswer),
        (status = 403, description = "No token is configured and the client is not on loopback, or does not \
            name a loopback `Host`; or a browser sent it from another site's page.", body = AdminAnswer),
        (status = 500, description = "A database failure.", body = AdminAnswer),
        (status = 503, description = "The database did not answer within `--db-timeout`: retry.", body = AdminAnswer),
    ),
)]
async fn stats(
    State(app): State<Arc<FaceAuth>>,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Response, AdminFailure> {
    let Query(q) = query?;
    let report = app.stats(q.since_ms).await?;
    Ok(done(StatsAnswer::new(report)))
}

/// Prometheus metrics (decisions and latencies per variant since start-up).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "admin",
    description = "Prometheus text exposition: decisions by variant, endpoint, role, decision and reason; request \
        and policy-call latency histograms. Admin-gated like the other admin endpoints.",
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "The metrics.", body = String, content_type = "text/plain"),
        (status = 401, description = "A token is configured and this request lacks it.", body = AdminAnswer),
        (status = 403, description = "No token is configured and the client is not on loopback, or does not \
            name a loopback `Host`; or a browser sent it from another site's page.", body = AdminAnswer),
    ),
)]
async fn metrics(State(app): State<Arc<FaceAuth>>) -> Response {
    let mut response = axum::response::IntoResponse::into_response((
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        app.metrics().render(),
    ));
    response.extensions_mut().insert(super::LoggedReason("METRICS".into()));
    response
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
    request_body(content = super::wire::ReplayForm, content_type = "multipart/form-data"),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "The report.", body = ReplayAnswer),
        (status = 400, description = "A field is wrong or unknown.", body = AdminAnswer),
        (status = 401, description = "A token is configured and this request lacks it.", body = AdminAnswer),
        (status = 403, description = "No token is configured and the client is not on loopback, or does not \
            name a loopback `Host`; or a browser sent it from another site's page.", body = AdminAnswer),
        (status = 404, description = "Neither `component` nor `variant` given, or no variant of that name.",
            body = AdminAnswer),
        (status = 413, description = "The body exceeds `--max-upload-bytes`.", body = AdminAnswer),
        (status = 422, description = "The candidate is refused (does not instantiate, rejects its parameters).",
            body = AdminAnswer),
        (status = 500, description = "A database failure.", body = AdminAnswer),
        (status = 503, description = "The database did not answer within `--db-timeout`: retry.", body = AdminAnswer),
    ),
)]
async fn replay(
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
