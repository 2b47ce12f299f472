//! Admin endpoints: reset (the original service's), policy management and the audit
//! log. One gate guards them all: the admin token when one is configured, else
//! loopback clients only. Answers and errors use reset's shape:
//! `{"code": <status>, "msg": "DONE" | "ERROR_DETECTED : <why>"}`, plus data fields.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use super::{AdminAccess, ApiState, error_chain, with_reason};
use crate::policy::Param;
use crate::policy::router::{PolicySet, RouterError};
use crate::store::audit::{DecisionRecord, RecordedEvidence};
use crate::usecase::FaceAuth;
use crate::usecase::admin::{AdminError, Candidate, DecisionQuery, PolicyChange, ReplayScope};
use crate::usecase::replay::parse_labels;

pub(super) fn routes(state: ApiState) -> Router<ApiState> {
    Router::new()
        .route("/api/reset", post(reset))
        .route("/api/admin/policies", get(list_policies))
        .route("/api/admin/policies/reload", post(reload_policies))
        .route("/api/admin/policies/{name}", put(put_policy).delete(retire_policy))
        .route("/api/admin/users/{username}", axum::routing::delete(erase_user))
        .route("/api/admin/decisions", get(decisions))
        .route("/api/admin/stats", get(stats))
        .route("/api/admin/replay", post(replay))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state, gate))
}

fn error(status: StatusCode, why: impl std::fmt::Display) -> Response {
    with_reason(status, json!({"code": status.as_u16(), "msg": format!("ERROR_DETECTED : {why}")}), "ERROR_DETECTED")
}

fn done(extra: Value) -> Response {
    let mut body = json!({"code": 200, "msg": "DONE"});
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    with_reason(StatusCode::OK, body, "DONE")
}

/// The one place admin failures become HTTP: reset's `{"code", "msg"}` shape.
impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        use StatusCode as S;
        let status = match &self {
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

impl From<QueryRejection> for AdminError {
    fn from(e: QueryRejection) -> Self {
        AdminError::BadRequest(e.body_text())
    }
}

impl From<MultipartRejection> for AdminError {
    fn from(e: MultipartRejection) -> Self {
        AdminError::BadRequest(e.body_text())
    }
}

impl From<MultipartError> for AdminError {
    fn from(e: MultipartError) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AdminError::TooLarge
        } else {
            AdminError::BadRequest(e.body_text())
        }
    }
}

async fn gate(
    State(state): State<ApiState>,
    peer: Result<ConnectInfo<std::net::SocketAddr>, axum::extract::rejection::ExtensionRejection>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if state.admin.allows(&headers, peer.ok().map(|p| p.0), &state.limits.trusted_proxies) {
        return next.run(request).await;
    }
    let (status, why) = match state.admin {
        AdminAccess::Token(_) => (StatusCode::UNAUTHORIZED, "a valid admin token is required"),
        AdminAccess::LoopbackOnly => (StatusCode::FORBIDDEN, "admin endpoints answer loopback clients only"),
    };
    let mut response = error(status, why);
    response.extensions_mut().insert(super::LoggedReason("ADMIN_REFUSED".into()));
    response
}

async fn reset(State(app): State<Arc<FaceAuth>>) -> Result<Response, AdminError> {
    let erased = app.reset().await?;
    tracing::info!(users = erased.users, decisions = erased.decisions, "all users erased");
    // The original service's answer, unchanged.
    Ok(done(json!({})))
}

/// Erases one user: `{"code":200,"msg":"DONE","erased":{"users":1,"decisions":N}}`,
/// 404 for a name with no template and no audit rows.
async fn erase_user(State(app): State<Arc<FaceAuth>>, Path(username): Path<String>) -> Result<Response, AdminError> {
    match app.erase_user(&username).await? {
        Some(erased) => {
            tracing::info!(users = erased.users, decisions = erased.decisions, "a user erased");
            Ok(done(json!({"erased": erased})))
        }
        None => Ok(error(StatusCode::NOT_FOUND, "no template and no audit rows under this username")),
    }
}

/// The policy set as JSON (what `GET /api/admin/policies` answers).
pub fn describe(set: &PolicySet) -> Value {
    json!({
        "experiment": set.experiment,
        "loaded_at_ms": set.loaded_at_ms,
        "variants": set.variants.iter().map(|v| {
            let info = v.policy.info();
            json!({
                "name": v.name,
                "policy": info.name,
                "version": info.version,
                "component": v.policy.source().file_name().map(|n| n.to_string_lossy().into_owned()),
                "sha256": v.policy.sha256(),
                "requires_liveness": info.requires_liveness,
                "weight": v.weight,
                "shadow": v.shadow,
                "params": v.policy.params().iter().map(|p| (p.name.clone(), p.value)).collect::<BTreeMap<_, _>>(),
            })
        }).collect::<Vec<_>>(),
    })
}

async fn list_policies(State(app): State<Arc<FaceAuth>>) -> Response {
    let overview = app.policies();
    done(json!({
        "managed": overview.managed,
        "directory": overview.directory.map(|d| d.display().to_string()),
        "last_error": overview.last_error,
        "set": describe(&overview.set),
    }))
}

/// Answers a policy change with the new set.
async fn change(app: &FaceAuth, change: PolicyChange) -> Result<Response, AdminError> {
    let set = app.change_policies(change).await?;
    Ok(done(json!({"set": describe(&set)})))
}

async fn reload_policies(State(app): State<Arc<FaceAuth>>) -> Result<Response, AdminError> {
    change(&app, PolicyChange::Reload).await
}

async fn retire_policy(State(app): State<Arc<FaceAuth>>, Path(name): Path<String>) -> Result<Response, AdminError> {
    change(&app, PolicyChange::Retire(name)).await
}

/// Every field of a multipart body, as (name, bytes).
async fn form_fields(
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Vec<(String, axum::body::Bytes)>, AdminError> {
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

fn bad(why: impl Into<String>) -> AdminError {
    AdminError::BadRequest(why.into())
}

fn parse_params(bytes: &[u8]) -> Result<BTreeMap<String, f64>, AdminError> {
    serde_json::from_slice(bytes).map_err(|e| bad(format!("params must be a JSON object of numbers: {e}")))
}

/// Adds or replaces variant `name`. Multipart fields, all optional except that a
/// new variant needs a component: `component` (the .wasm file), `weight`,
/// `shadow` (true/false), `params` (a JSON object of name: number overrides).
/// Fields left out keep the variant's current value.
async fn put_policy(
    State(app): State<Arc<FaceAuth>>,
    Path(name): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, AdminError> {
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
fn decision_json(r: DecisionRecord) -> Value {
    let evidence = match r.evidence {
        RecordedEvidence::Readable(e) => serde_json::to_value(&e).map(|tagged| tagged["evidence"].clone()),
        RecordedEvidence::Omitted => Ok(Value::Null),
        // Shown as stored, with why it no longer reads.
        RecordedEvidence::Unreadable { json, error } => {
            let stored = serde_json::from_str(&json).unwrap_or(Value::String(json));
            Ok(json!({"unreadable": error, "stored": stored}))
        }
    };
    json!({
        "request_id": r.request_id,
        "at_ms": r.at_ms,
        "username": r.username,
        "endpoint": r.endpoint,
        "variant": r.variant,
        "policy": r.policy,
        "shadow": r.shadow,
        "approved": r.outcome.approved(),
        "reason": r.outcome.reason(),
        "error": r.outcome.error(),
        "score": r.outcome.score().map(f64::from),
        "evidence": evidence.unwrap_or_else(|e| json!({"unserializable": e.to_string()})),
        "analysis_ms": r.analysis_ms,
        "policy_ms": r.policy_ms,
        "total_ms": r.total_ms,
    })
}

/// Recorded decisions, newest `limit` (default 100) in time order.
async fn decisions(
    State(app): State<Arc<FaceAuth>>,
    query: Result<Query<DecisionQuery>, QueryRejection>,
) -> Result<Response, AdminError> {
    let Query(q) = query?;
    let records: Vec<Value> = app.decisions(q).await?.into_iter().map(decision_json).collect();
    Ok(done(json!({"decisions": records})))
}

#[derive(Debug, serde::Deserialize)]
struct StatsQuery {
    /// Default: the last 24 hours.
    since_ms: Option<i64>,
}

/// Per-variant statistics over the audit log's window (at most the last 100 000 decisions).
async fn stats(
    State(app): State<Arc<FaceAuth>>,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Response, AdminError> {
    let Query(q) = query?;
    let report = app.stats(q.since_ms).await?;
    Ok(done(serde_json::to_value(report).unwrap_or(Value::Null)))
}

/// Prometheus metrics (decisions and latencies per variant since start-up).
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
async fn replay(
    State(app): State<Arc<FaceAuth>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, AdminError> {
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
    Ok(done(json!({"report": report})))
}
