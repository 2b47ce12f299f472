//! The layers every request passes through: its id (a client's own kept if sane,
//! sent back on every answer), its log line and metrics, and a handler's panic
//! answered as a JSON 500.

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::answer::{LoggedReason, api_error};

/// One line per request, with its id; everything logged while it runs is in its span.
pub(crate) async fn log_request(request: Request, next: Next) -> Response {
    use tracing::Instrument;
    let started = Instant::now();
    let method = request.method().clone();
    // The route template, not the path, in the log line as in the metric labels: the
    // path names users (`/api/admin/users/bob`, an erased one), and the query string
    // too (`?username=`); unknown paths are one label, so few (issue 22, item 9).
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let id = request_id_of(request.headers()).unwrap_or_else(|| "-".into());
    let span = tracing::info_span!("request", request_id = %id);
    let response = next.run(request).instrument(span.clone()).await;
    let reason = response.extensions().get::<LoggedReason>().map(|r| r.0.as_str()).unwrap_or("-");
    faceauth_core::telemetry::observe_request(
        method.as_str(),
        &route,
        response.status().as_u16(),
        reason,
        started.elapsed(),
    );
    span.in_scope(|| {
        tracing::info!(
            "{method} {route} {} {reason} {:.1}ms",
            response.status().as_u16(),
            started.elapsed().as_secs_f64() * 1e3
        )
    });
    response
}

/// The header carrying a request's id, on the request and on its answer.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Request ids made by the server: 16 random bytes in hex.
#[derive(Clone, Copy)]
pub(crate) struct NewRequestId;

impl tower_http::request_id::MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<tower_http::request_id::RequestId> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).ok()?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Some(tower_http::request_id::RequestId::new(axum::http::HeaderValue::from_str(&hex).ok()?))
    }
}

/// A client's `x-request-id` is kept only when it is a short token (it goes into
/// logs and the audit log); otherwise the server makes one.
pub(crate) async fn drop_unusable_request_id(mut request: Request, next: Next) -> Response {
    let usable = request.headers().get(REQUEST_ID_HEADER).is_none_or(|v| {
        v.to_str().is_ok_and(|s| {
            (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
    });
    if !usable {
        request.headers_mut().remove(REQUEST_ID_HEADER);
    }
    next.run(request).await
}

/// The request's id (set by `SetRequestIdLayer` before any handler runs).
pub(crate) fn request_id_of(headers: &HeaderMap) -> Option<String> {
    headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// A handler that panicked: logged, answered 500 in the admin shape.
pub(crate) fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    tracing::error!(panic = what, "request handler panicked");
    api_error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
}
