//! Answers in the API's JSON shapes, each carrying its reason code for the request
//! log line and the metrics (`LoggedReason`, read by `middleware::log_request`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::wire::{AdminAnswer, AuthenticateAnswer, EnrollAnswer};
use faceauth_core::policy::Endpoint;

/// The reason code of an answer, for the request log line.
#[derive(Debug, Clone)]
pub(crate) struct LoggedReason(pub(crate) String);

/// A refusal in the endpoint's shape.
pub(crate) fn rejected(status: StatusCode, endpoint: Endpoint, reason: &str) -> Response {
    match endpoint {
        Endpoint::Enroll => with_reason(status, EnrollAnswer::rejected(reason), reason),
        Endpoint::Authenticate => with_reason(status, AuthenticateAnswer::rejected(reason), reason),
    }
}

pub(crate) fn with_reason(status: StatusCode, body: impl serde::Serialize, reason: &str) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.extensions_mut().insert(LoggedReason(reason.to_string()));
    response
}

/// A request no route answers, in the reset shape (`{"code", "msg"}`), so that no
/// answer of the API has an empty body.
pub(crate) fn api_error(status: StatusCode, reason: &str) -> Response {
    with_reason(status, AdminAnswer::error(status, reason), reason)
}
