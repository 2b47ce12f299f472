//! The probes: `GET /health` (liveness) and `GET /ready` (readiness).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::answer::with_reason;
use crate::wire::{HealthAnswer, HealthStatus, ReadyAnswer, ReadyStatus};
use faceauth_core::usecase::FaceAuth;

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses((status = 200, description = "The process answers (liveness).", body = HealthAnswer)),
)]
pub(crate) async fn health() -> Json<HealthAnswer> {
    Json(HealthAnswer { status: HealthStatus::Ok })
}

/// 200 when the database answers and a policy variant can decide; else 503, saying which.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, description = "The database answers and a policy variant can decide (readiness).",
            body = ReadyAnswer),
        (status = 503, description = "Not ready: `status` is `unavailable`, `database` the database's error \
            (or `ok` when no variant answers).", body = ReadyAnswer),
    ),
)]
pub(crate) async fn ready(State(app): State<Arc<FaceAuth>>) -> Response {
    let readiness = app.readiness().await;
    let status = if readiness.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = ReadyAnswer {
        status: if readiness.is_ready() { ReadyStatus::Ready } else { ReadyStatus::Unavailable },
        database: readiness.database.as_ref().map_or_else(|e| e.to_string(), |()| "ok".to_string()),
        policy_variants: readiness.answering_variants,
        embedding_model: readiness.embedding_model.clone(),
    };
    let reason = if readiness.is_ready() { "READY" } else { "NOT_READY" };
    with_reason(status, body, reason)
}
