//! `GET /metrics`: the Prometheus exposition, behind the admin gate.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;

use super::GateRefusals;
use crate::answer::LoggedReason;
use faceauth_core::usecase::FaceAuth;

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
        GateRefusals,
    ),
)]
pub(super) async fn metrics(State(app): State<Arc<FaceAuth>>) -> Response {
    let mut response = axum::response::IntoResponse::into_response((
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        app.metrics().render(),
    ));
    response.extensions_mut().insert(LoggedReason("METRICS".into()));
    response
}
