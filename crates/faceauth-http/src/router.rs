//! The API's router: every route, the limits a request may take of the server, and
//! the layers around them (`middleware`, `limits`, `client_slots`; the admin routes
//! behind `admin::gate`).

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::AdminAccess;
use crate::answer::api_error;
use crate::middleware::{NewRequestId, drop_unusable_request_id, log_request, panic_response};
use crate::{admin, client_slots, demo, health, limits, openapi, stats_page, verification};
use faceauth_core::usecase::FaceAuth;

#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) app: Arc<FaceAuth>,
    pub(crate) admin: AdminAccess,
    pub(crate) limits: HttpLimits,
}

impl axum::extract::FromRef<ApiState> for Arc<FaceAuth> {
    fn from_ref(state: &ApiState) -> Self {
        state.app.clone()
    }
}

/// What one request may take of the server.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub max_upload_bytes: usize,
    /// The longest pause within a request body.
    pub body_pause: std::time::Duration,
    /// The longest time to receive a whole upload.
    pub upload_timeout: std::time::Duration,
    /// Reverse proxies whose `X-Forwarded-For` is believed (admin gate, rate limit).
    pub trusted_proxies: Arc<[IpAddr]>,
    /// Requests per client address (`--rate-limit`); `None`: no per-client limit.
    pub rate_limit: Option<limits::RateLimit>,
}

impl HttpLimits {
    /// The server's defaults (see `ServeConfig`) with this upload size limit.
    pub fn with_max_upload(max_upload_bytes: usize) -> Self {
        Self {
            max_upload_bytes,
            body_pause: std::time::Duration::from_secs(10),
            upload_timeout: std::time::Duration::from_secs(120),
            trusted_proxies: Arc::new([]),
            rate_limit: None,
        }
    }
}

/// The API with the default time limits (tests, tools).
pub fn router(app: Arc<FaceAuth>, max_upload_bytes: usize, admin: AdminAccess) -> Router {
    router_with_limits(app, HttpLimits::with_max_upload(max_upload_bytes), admin)
}

/// Every documented route: the public ones, and the admin ones (not gated here:
/// `router_with_limits` gates them; `openapi::document` reads the paths).
/// Registered through `routes!` only, so none lacks its documentation.
pub(crate) fn documented_routes() -> OpenApiRouter<ApiState> {
    public_routes().merge(admin::routes())
}

/// The public routes, in the order of the OpenAPI document's paths.
fn public_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(verification::enroll))
        .routes(routes!(verification::authenticate))
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(stats_page::admin_page))
}

pub fn router_with_limits(app: Arc<FaceAuth>, limits: HttpLimits, admin: AdminAccess) -> Router {
    let (max_upload_bytes, body_pause) = (limits.max_upload_bytes, limits.body_pause);
    let rate_limit = limits.rate_limit.map(|l| limits::ClientRateLimit::new(l, limits.trusted_proxies.clone()));
    let state = ApiState { app, admin, limits };
    let gated = admin::routes().route_layer(middleware::from_fn_with_state(state.clone(), admin::gate));
    let (api, _) = public_routes().merge(gated).split_for_parts();
    let api = api
        // Documented in `openapi` (its own router: the page and its assets).
        .merge(demo::routes())
        .fallback(|| async { api_error(StatusCode::NOT_FOUND, "NOT_FOUND") })
        .method_not_allowed_fallback(|| async { api_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED") })
        .layer(DefaultBodyLimit::max(max_upload_bytes))
        // A client that stops sending mid-body loses its connection slot.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(body_pause))
        // Oversized heads and, when configured, clients over their rate: refused in
        // JSON before any route runs, still logged, counted and given a request id.
        .layer(middleware::from_fn(limits::refuse_oversized_head))
        // Video decodes counted per client (`--video-decodes-per-client`).
        .layer(middleware::from_fn_with_state(state.limits.trusted_proxies.clone(), client_slots::decode_as_client));
    let api = match rate_limit {
        Some(rate_limit) => api.layer(middleware::from_fn_with_state(rate_limit, limits::limit_client_rate)),
        None => api,
    };
    api
        // Innermost first: a panic becomes the JSON 500 that the log line and the
        // request id still see; the id is set (a client's own kept if sane) and
        // sent back on every answer.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(log_request))
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(NewRequestId))
        .layer(middleware::from_fn(drop_unusable_request_id))
        .with_state(state)
}
