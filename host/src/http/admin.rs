//! Admin endpoints: reset (the original service's), policy management and the audit
//! log. One gate guards them all: the admin token when one is configured, else
//! loopback clients only. Answers and errors use reset's shape:
//! `{"code": <status>, "msg": "DONE" | "ERROR_DETECTED : <why>"}`, plus data fields.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use super::{AdminAccess, ApiState, with_reason};
use crate::policy::Param;
use crate::policy::router::{PolicySet, RouterError, VariantChange};
use crate::store::audit::{DecisionFilter, Endpoint};
use crate::usecase::FaceAuth;
use crate::usecase::replay::{self, parse_labels};
use crate::usecase::stats::variant_stats;

pub(super) fn routes(state: ApiState) -> Router<ApiState> {
    Router::new()
        .route("/api/reset", post(reset))
        .route("/api/admin/policies", get(list_policies))
        .route("/api/admin/policies/reload", post(reload_policies))
        .route("/api/admin/policies/{name}", put(put_policy).delete(retire_policy))
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

async fn gate(
    State(state): State<ApiState>,
    peer: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if state.admin.allows(&headers, peer.map(|p| p.0.0)) {
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

async fn reset(State(app): State<Arc<FaceAuth>>) -> Response {
    match app.reset().await {
        Ok(removed) => {
            tracing::info!(removed, "all users removed");
            done(json!({}))
        }
        Err(e) => {
            tracing::warn!(error = %e, "reset failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, e)
        }
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
    let router = app.engine.router();
    done(json!({
        "managed": router.directory().is_some(),
        "directory": router.directory().map(|d| d.display().to_string()),
        "last_error": router.last_error(),
        "set": describe(&router.current()),
    }))
}

fn router_error(e: &RouterError) -> Response {
    let status = match e {
        RouterError::NotManaged => StatusCode::CONFLICT,
        RouterError::MissingComponent(_) => StatusCode::BAD_REQUEST,
        RouterError::UnknownVariant(_) => StatusCode::NOT_FOUND,
        RouterError::Write(_) => StatusCode::INTERNAL_SERVER_ERROR,
        RouterError::Catalog(_) | RouterError::Variant { .. } => StatusCode::UNPROCESSABLE_ENTITY,
    };
    error(status, e)
}

/// Every field of a multipart body, as (name, bytes); an error answer for a broken one.
async fn form_fields(
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Vec<(String, axum::body::Bytes)>, Response> {
    let mut multipart = multipart.map_err(|e| error(StatusCode::BAD_REQUEST, e.body_text()))?;
    let mut fields = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(|e| error(e.status(), e.body_text()))? {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(|e| error(e.status(), e.body_text()))?;
        fields.push((name, bytes));
    }
    Ok(fields)
}

/// Runs a policy change (compiling is blocking work) and answers with the new set.
async fn change(
    app: Arc<FaceAuth>,
    f: impl FnOnce(&crate::policy::router::PolicyRouter) -> Result<Arc<PolicySet>, RouterError> + Send + 'static,
) -> Response {
    let router = app.engine.router().clone();
    match tokio::task::spawn_blocking(move || f(&router)).await {
        Ok(Ok(set)) => done(json!({"set": describe(&set)})),
        Ok(Err(e)) => router_error(&e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn reload_policies(State(app): State<Arc<FaceAuth>>) -> Response {
    change(app, |router| router.reload()).await
}

async fn retire_policy(State(app): State<Arc<FaceAuth>>, Path(name): Path<String>) -> Response {
    change(app, move |router| router.retire(&name)).await
}

/// Adds or replaces variant `name`. Multipart fields, all optional except that a
/// new variant needs a component: `component` (the .wasm file), `weight`,
/// `shadow` (true/false), `params` (a JSON object of name: number overrides).
/// Fields left out keep the variant's current value.
async fn put_policy(
    State(app): State<Arc<FaceAuth>>,
    Path(name): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let fields = match form_fields(multipart).await {
        Ok(f) => f,
        Err(answer) => return answer,
    };
    let (mut component, mut weight, mut shadow, mut params) = (None, None, None, None);
    for (field_name, bytes) in fields {
        let text = || String::from_utf8_lossy(&bytes).trim().to_string();
        match field_name.as_str() {
            "component" => component = Some(bytes.to_vec()),
            "weight" => match text().parse::<u32>() {
                Ok(w) => weight = Some(w),
                Err(_) => return error(StatusCode::BAD_REQUEST, "weight must be a whole number"),
            },
            "shadow" => match text().as_str() {
                "true" | "1" => shadow = Some(true),
                "false" | "0" => shadow = Some(false),
                _ => return error(StatusCode::BAD_REQUEST, "shadow must be true or false"),
            },
            "params" => match serde_json::from_slice::<BTreeMap<String, f64>>(&bytes) {
                Ok(p) => params = Some(p),
                Err(e) => {
                    return error(StatusCode::BAD_REQUEST, format!("params must be a JSON object of numbers: {e}"));
                }
            },
            other => return error(StatusCode::BAD_REQUEST, format!("unknown field {other:?}")),
        }
    }
    change(app, move |router| {
        router.put_variant(&name, VariantChange { component: component.as_deref(), weight, shadow, params })
    })
    .await
}

#[derive(Debug, serde::Deserialize)]
struct DecisionQuery {
    since_ms: Option<i64>,
    endpoint: Option<Endpoint>,
    variant: Option<String>,
    shadow: Option<bool>,
    limit: Option<i64>,
}

/// Recorded decisions, newest `limit` (default 100) in time order.
async fn decisions(
    State(app): State<Arc<FaceAuth>>,
    query: Result<Query<DecisionQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let filter = DecisionFilter {
        since_ms: q.since_ms,
        endpoint: q.endpoint,
        variant: q.variant,
        shadow: q.shadow,
        limit: Some(q.limit.unwrap_or(100).clamp(1, 10_000)),
        without_evidence: false,
    };
    match app.audit.decisions(&filter).await {
        Ok(records) => {
            let records: Vec<Value> = records
                .into_iter()
                .map(|r| {
                    let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
                    // The evidence is JSON already: nest it rather than quote it.
                    if let Some(obj) = v.as_object_mut() {
                        obj.insert("evidence".into(), serde_json::from_str(&r.evidence).unwrap_or(Value::Null));
                    }
                    v
                })
                .collect();
            done(json!({"decisions": records}))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Debug, serde::Deserialize)]
struct StatsQuery {
    /// Default: the last 24 hours.
    since_ms: Option<i64>,
}

/// Per-variant statistics over the audit log's window (at most the last 100 000 decisions).
async fn stats(
    State(app): State<Arc<FaceAuth>>,
    query: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let since_ms = q.since_ms.unwrap_or_else(|| crate::store::now_ms() - 24 * 3600 * 1000);
    let filter =
        DecisionFilter { since_ms: Some(since_ms), limit: Some(100_000), without_evidence: true, ..Default::default() };
    match app.audit.decisions(&filter).await {
        Ok(records) => done(json!({
            "since_ms": since_ms,
            "decisions": records.len(),
            "score_bins": crate::usecase::stats::SCORE_BINS,
            "variants": variant_stats(&records),
        })),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Prometheus metrics (decisions and latencies per variant since start-up).
async fn metrics(State(app): State<Arc<FaceAuth>>) -> Response {
    let mut response = axum::response::IntoResponse::into_response((
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        app.metrics.render(),
    ));
    response.extensions_mut().insert(super::LoggedReason("METRICS".into()));
    response
}

/// Backtests a candidate over recorded decisions. Multipart fields: `component`
/// (a .wasm) or `variant` (an existing variant's component), optional `params`
/// (JSON object of overrides), `since_ms`, `limit` (default 10 000) and `labels`
/// (CSV `request_id,label` with genuine/impostor).
async fn replay(State(app): State<Arc<FaceAuth>>, multipart: Result<Multipart, MultipartRejection>) -> Response {
    let fields = match form_fields(multipart).await {
        Ok(f) => f,
        Err(answer) => return answer,
    };
    let (mut component, mut variant, mut params, mut since_ms, mut limit, mut labels) =
        (None, None, BTreeMap::new(), None, 10_000i64, Default::default());
    for (name, bytes) in fields {
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        let bad = |what: &str| error(StatusCode::BAD_REQUEST, what.to_string());
        match name.as_str() {
            "component" => component = Some(bytes.to_vec()),
            "variant" => variant = Some(text),
            "params" => match serde_json::from_str::<BTreeMap<String, f64>>(&text) {
                Ok(p) => params = p,
                Err(_) => return bad("params must be a JSON object of numbers"),
            },
            "since_ms" => match text.parse() {
                Ok(v) => since_ms = Some(v),
                Err(_) => return bad("since_ms must be a whole number"),
            },
            "limit" => match text.parse::<i64>() {
                Ok(v) => limit = v.clamp(1, 1_000_000),
                Err(_) => return bad("limit must be a whole number"),
            },
            "labels" => match parse_labels(&text) {
                Ok(l) => labels = l,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("labels: {e}")),
            },
            other => return error(StatusCode::BAD_REQUEST, format!("unknown field {other:?}")),
        }
    }
    let overrides: Vec<Param> = params.into_iter().map(|(name, value)| Param { name, value }).collect();
    let records = match app
        .audit
        .decisions(&DecisionFilter { since_ms, shadow: Some(false), limit: Some(limit), ..Default::default() })
        .await
    {
        Ok(r) => r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let router = app.engine.router().clone();
    let work = move || -> Result<replay::ReplayReport, RouterError> {
        let candidate = router.candidate(component.as_deref(), variant.as_deref(), &overrides)?;
        Ok(replay::replay(&candidate, &records, &labels))
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(report)) => done(json!({"report": report})),
        Ok(Err(e)) => router_error(&e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}
