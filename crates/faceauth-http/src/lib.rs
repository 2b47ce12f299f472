//! The HTTP API, wire-compatible with the original service: parse and validate
//! the request, call a use case, answer in the endpoint's JSON shape.
//! `ApiError::reason_and_status` is the one place errors become HTTP (the reason
//! code is the use case's, `UseCaseError::code`; the status is chosen here).
//! `server` holds the accept loop and `run`; `settings` the server's flags.
//! Admin endpoints (reset, policy management, audit) are in `admin`, behind one gate.

mod access;
mod admin;
mod client_slots;
mod connections;
mod demo;
pub mod limits;
pub mod openapi;
mod server;
mod settings;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use access::AdminAccess;
use access::client_address;
use faceauth_core::policy::{Decision, Endpoint};
use faceauth_core::usecase::{FaceAuth, UseCaseError};
pub use server::run;
pub use settings::ServerConfig;
use wire::{AdminAnswer, AuthenticateAnswer, EnrollAnswer, HealthAnswer, HealthStatus, ReadyAnswer, ReadyStatus};

/// Request-level problems, found before any use case runs.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the username query parameter is missing")]
    MissingUsername,
    #[error("the file field `{0}` is missing")]
    MissingFile(&'static str),
    #[error("the uploaded file is empty")]
    EmptyFile,
    #[error("the upload exceeds the size limit")]
    FileTooLarge,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("the upload did not arrive in time")]
    UploadTimeout,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    UseCase(#[from] UseCaseError),
}

impl ApiError {
    /// The documented reason code and HTTP status of every failure (README table).
    pub fn reason_and_status(&self) -> (&'static str, StatusCode) {
        use StatusCode as S;
        match self {
            ApiError::Request(e) => match e {
                RequestError::MissingUsername => ("MISSING_USERNAME", S::BAD_REQUEST),
                RequestError::MissingFile(_) => ("MISSING_FILE", S::BAD_REQUEST),
                RequestError::EmptyFile => ("EMPTY_FILE", S::BAD_REQUEST),
                RequestError::FileTooLarge => ("FILE_TOO_LARGE", S::PAYLOAD_TOO_LARGE),
                RequestError::Malformed(_) => ("MALFORMED_REQUEST", S::BAD_REQUEST),
                RequestError::UploadTimeout => ("UPLOAD_TIMEOUT", S::REQUEST_TIMEOUT),
            },
            ApiError::UseCase(e) => (e.code(), status_of(e.code())),
        }
    }
}

/// The HTTP status of a use case's reason code (README, "Reasons").
fn status_of(code: &str) -> StatusCode {
    use StatusCode as S;
    match code {
        "EMPTY_USERNAME" | "INVALID_USERNAME" => S::BAD_REQUEST,
        "UNSUPPORTED_MEDIA_TYPE" => S::UNSUPPORTED_MEDIA_TYPE,
        "INVALID_IMAGE" | "INVALID_VIDEO" | "VIDEO_DECODE_TIMEOUT" => S::UNPROCESSABLE_ENTITY,
        "IMAGE_TOO_LARGE" | "VIDEO_TOO_LONG" | "VIDEO_TOO_LARGE" => S::PAYLOAD_TOO_LARGE,
        "VIDEO_UNSUPPORTED" | "STORAGE_FULL" | "SERVER_BUSY" | "POLICY_ERROR" | "DATABASE_UNAVAILABLE" => {
            S::SERVICE_UNAVAILABLE
        }
        "RATE_LIMITED" | "TOO_MANY_ATTEMPTS" => S::TOO_MANY_REQUESTS,
        "UNKNOWN_USER" => S::NOT_FOUND,
        "USERNAME_ALREADY_EXISTS" | "TEMPLATE_OUTDATED" => S::CONFLICT,
        _ => S::INTERNAL_SERVER_ERROR,
    }
}

/// The reason code of an answer, for the request log line.
#[derive(Debug, Clone)]
struct LoggedReason(String);

/// The wire shape of each endpoint: its file field and its answers.
fn file_field(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Enroll => "cin_file",
        Endpoint::Authenticate => "auth_video",
    }
}

/// A refusal in the endpoint's shape.
fn rejected(status: StatusCode, endpoint: Endpoint, reason: &str) -> Response {
    match endpoint {
        Endpoint::Enroll => with_reason(status, EnrollAnswer::rejected(reason), reason),
        Endpoint::Authenticate => with_reason(status, AuthenticateAnswer::rejected(reason), reason),
    }
}

fn decided(endpoint: Endpoint, decision: &Decision) -> Response {
    match (endpoint, decision.approved) {
        (_, false) => rejected(StatusCode::OK, endpoint, &decision.reason),
        (Endpoint::Enroll, true) => with_reason(StatusCode::OK, EnrollAnswer::enrolled(), &decision.reason),
        (Endpoint::Authenticate, true) => {
            with_reason(StatusCode::OK, AuthenticateAnswer::approved(decision.score), &decision.reason)
        }
    }
}

/// A refusal in the endpoint's shape. A busy server's 503 is paced and carries
/// `Retry-After`, and its warning is rate-limited (see `BUSY_PACING`).
async fn failed(endpoint: Endpoint, error: &ApiError) -> Response {
    let (reason, status) = error.reason_and_status();
    let busy = matches!(error, ApiError::UseCase(UseCaseError::Busy));
    if busy {
        // Paced: a client that retries at once (wrk, a naive SDK loop) then asks
        // about 1000/BUSY_PACING_MS times a second instead of tens of thousands.
        // Answered at once, 36 such clients on 2 cores drew 36 000 503s a second
        // and the analyses that were running fell from 78 to 27 a second.
        tokio::time::sleep(BUSY_PACING).await;
        // An overload answers thousands of these a second: one line per second at most.
        BUSY_WARNING.warn(&reason);
    } else if status.is_server_error() {
        tracing::warn!(error = %error_chain(error), reason, "request failed");
    } else {
        tracing::debug!(%error, reason, "request refused");
    }
    let mut response = rejected(status, endpoint, reason);
    let retry_after = match error {
        ApiError::UseCase(e) => e.retry_after_s(),
        ApiError::Request(_) => None,
    };
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
    }
    response
}

pub(crate) use faceauth_core::error_chain;

/// "Server busy" warnings, at most one a second, each with the count since the last.
static BUSY_WARNING: RateLimitedWarning =
    RateLimitedWarning::new("server busy: requests refused with 503 SERVER_BUSY (count since the last line)");

/// A warning written at most once a second, with how many times it happened since
/// the last line: an overload or an attack must not flood the log (28 MB in 80 s).
pub(crate) struct RateLimitedWarning {
    what: &'static str,
    /// Seconds since the Unix epoch of the last line written.
    last: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl RateLimitedWarning {
    pub(crate) const fn new(what: &'static str) -> Self {
        Self { what, last: std::sync::atomic::AtomicU64::new(0), suppressed: std::sync::atomic::AtomicU64::new(0) }
    }

    pub(crate) fn warn(&self, detail: &dyn std::fmt::Display) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.last.load(Relaxed);
        if now > last && self.last.compare_exchange(last, now, Relaxed, Relaxed).is_ok() {
            let times = self.suppressed.swap(0, Relaxed) + 1;
            tracing::warn!(times, %detail, "{}", self.what);
        } else {
            self.suppressed.fetch_add(1, Relaxed);
        }
    }
}

fn with_reason(status: StatusCode, body: impl serde::Serialize, reason: &str) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.extensions_mut().insert(LoggedReason(reason.to_string()));
    response
}

#[derive(Clone)]
struct ApiState {
    app: Arc<FaceAuth>,
    admin: AdminAccess,
    limits: HttpLimits,
}

use std::net::IpAddr;

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
fn documented_routes() -> OpenApiRouter<ApiState> {
    public_routes().merge(admin::routes())
}

fn public_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(enroll))
        .routes(routes!(authenticate))
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(admin_page))
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

/// The header carrying a request's id, on the request and on its answer.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Request ids made by the server: 16 random bytes in hex.
#[derive(Clone, Copy)]
struct NewRequestId;

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
async fn drop_unusable_request_id(mut request: Request, next: Next) -> Response {
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
fn request_id_of(headers: &HeaderMap) -> Option<String> {
    headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// A handler that panicked: logged, answered 500 in the admin shape.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    tracing::error!(panic = what, "request handler panicked");
    api_error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
}

/// A request no route answers, in the reset shape (`{"code", "msg"}`), so that no
/// answer of the API has an empty body.
fn api_error(status: StatusCode, reason: &str) -> Response {
    with_reason(status, AdminAnswer::error(status, reason), reason)
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses((status = 200, description = "The process answers (liveness).", body = HealthAnswer)),
)]
async fn health() -> Json<HealthAnswer> {
    Json(HealthAnswer { status: HealthStatus::Ok })
}

/// The statistics page. It holds no data; it fetches the (gated) statistics itself.
#[utoipa::path(
    get,
    path = "/admin",
    tag = "operations",
    responses((status = 200, description = "The page that plots `/api/admin/stats` (HTML; with a token: \
        `/admin#token=<token>`). Public: the data it shows is fetched through the admin gate.",
        body = String, content_type = "text/html")),
)]
async fn admin_page() -> impl IntoResponse {
    // Never framed by another page (clickjacking of the admin actions it links to).
    let headers = [
        (axum::http::header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
        (axum::http::header::X_FRAME_OPTIONS, "DENY"),
    ];
    (headers, axum::response::Html(include_str!("stats_page.html")))
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
async fn ready(State(app): State<Arc<FaceAuth>>) -> Response {
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

/// One line per request, with its id; everything logged while it runs is in its span.
async fn log_request(request: Request, next: Next) -> Response {
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

type Params = Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

/// The username (query parameter, or a `username` form field as a fallback) and the file.
async fn read_request(
    endpoint: Endpoint,
    params: Params,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(String, Vec<u8>), RequestError> {
    let Query(params) = params.map_err(|e| RequestError::Malformed(e.body_text()))?;
    let mut username = params.get("username").cloned();
    let mut multipart = multipart.map_err(|e| RequestError::Malformed(e.body_text()))?;
    let mut file: Option<Vec<u8>> = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(e)),
        };
        let name = field.name().unwrap_or_default().to_string();
        if name == file_field(endpoint) && file.is_none() {
            file = Some(field.bytes().await.map_err(multipart_error)?.to_vec());
        } else if name == "username" && username.is_none() {
            username = Some(field.text().await.map_err(multipart_error)?);
        } else {
            // Drain unknown fields so their bytes still count against the limit.
            field.bytes().await.map_err(multipart_error)?;
        }
    }
    let username = username.ok_or(RequestError::MissingUsername)?;
    let file = file.ok_or(RequestError::MissingFile(file_field(endpoint)))?;
    if file.is_empty() {
        return Err(RequestError::EmptyFile);
    }
    Ok((username, file))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> RequestError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if s.is::<tower_http::timeout::TimeoutError>() {
            return RequestError::UploadTimeout;
        }
        source = s.source();
    }
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        RequestError::FileTooLarge
    } else {
        RequestError::Malformed(e.body_text())
    }
}

/// Enrolls a user from a photo of their ID card.
#[utoipa::path(
    post,
    path = "/api/enroll",
    tag = "verification",
    params(("username" = Option<String>, Query, example = "alice",
        description = "The account name (required, here or as the \
        multipart field `username`). Trimmed, stored in Unicode NFC, at most 128 bytes, no control characters \
        and no invisible ones (Unicode Default_Ignorable_Code_Point); compared exactly. A name that looks like \
        an enrolled one (same UTS #39 confusable skeleton of its NFKC form) is taken.")),
    request_body(content = wire::EnrollForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Decided by the policy: `trained` `success`, `EnrollStatus` `APPROVED`, \
            `ENROLLED_AS_USER`; or `failed`, `REJECTED` and the policy's reason (`NO_FACE_DETECTED`, \
            `MULTIPLE_FACES_DETECTED`, `FACE_TOO_SMALL`, `FACE_TOO_DARK`, `FACE_TOO_BLURRY`, `FACE_NOT_FRONTAL`, \
            or another policy's code).", body = EnrollAnswer),
        (status = 400, description = "The request is incomplete or malformed.", body = EnrollAnswer),
        (status = 408, description = "The upload did not arrive within `--upload-timeout`.", body = EnrollAnswer),
        (status = 409, description = "`USERNAME_ALREADY_EXISTS`: the username, or a look-alike of it (`аlice` \
            with a Cyrillic `а`, `ａｌｉｃｅ`: the same UTS #39 skeleton), is taken (also when two enrollments race).",
            body = EnrollAnswer),
        (status = 413, description = "The upload or the image is too large.", body = EnrollAnswer),
        (status = 415, description = "Not a JPEG, PNG, WebP or BMP image.", body = EnrollAnswer),
        (status = 422, description = "An image that cannot be decoded.", body = EnrollAnswer),
        (status = 500, description = "A database or inference failure.", body = EnrollAnswer),
        (status = 503, description = "Retry later (`SERVER_BUSY` carries `Retry-After: 1`); `POLICY_ERROR`: the \
            policy failed, nothing was stored; `DATABASE_UNAVAILABLE`: the database did not answer in time; \
            `STORAGE_FULL`: the database's storage is full, nothing was stored.", body = EnrollAnswer),
    ),
)]
async fn enroll(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params: Params,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    decide(Endpoint::Enroll, state, request_id_of(&headers), params, multipart).await
}

/// Authenticates a user with a selfie: a still image or a short video.
#[utoipa::path(
    post,
    path = "/api/authentificate",
    tag = "verification",
    params(("username" = Option<String>, Query, example = "alice",
        description = "The enrolled account name (required, here or \
        as the multipart field `username`); the same rules as at enrollment.")),
    request_body(content = wire::AuthenticateForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Decided by the policy: `APPROVED`, `AUTHENTIFICATION_SUCCESS` and the \
            score; or `REJECTED`, a null score and the policy's reason (`FACE_MISMATCH`, `NO_FACE_DETECTED`, \
            `MULTIPLE_FACES_DETECTED`, `FACE_TOO_SMALL`, `FACE_TOO_DARK`, `FACE_TOO_BLURRY`, `FACE_NOT_FRONTAL`, \
            `LIVENESS_CHECK_FAILED`, or another policy's code).", body = AuthenticateAnswer),
        (status = 400, description = "The request is incomplete or malformed.", body = AuthenticateAnswer),
        (status = 404, description = "No user enrolled under this name.", body = AuthenticateAnswer),
        (status = 408, description = "The upload did not arrive within `--upload-timeout`.",
            body = AuthenticateAnswer),
        (status = 409, description = "The user was enrolled with another embedding model: enroll again.",
            body = AuthenticateAnswer),
        (status = 413, description = "The upload, the image or the video is too large or too long.",
            body = AuthenticateAnswer),
        (status = 415, description = "Neither a supported image nor a video.", body = AuthenticateAnswer),
        (status = 422, description = "An image or a video that cannot be decoded (in time).",
            body = AuthenticateAnswer),
        (status = 429, description = "Too many refused authentications of this username in `--attempt-window` \
            (those that showed a face: a picture without one does not count), or as many being decided at once \
            (`TOO_MANY_ATTEMPTS`); or this client address already has `--video-decodes-per-client` videos being \
            decoded (`RATE_LIMITED`); `Retry-After` says when to try again.", body = AuthenticateAnswer),
        (status = 500, description = "A database or inference failure.", body = AuthenticateAnswer),
        (status = 503, description = "Retry later (`SERVER_BUSY` carries `Retry-After: 1`); `POLICY_ERROR`: the \
            policy failed; `DATABASE_UNAVAILABLE`: the database did not answer in time; `STORAGE_FULL`: the \
            database's storage is full, so the attempt could not be counted and was not analysed (or not \
            approved), or the temporary directory a video is decoded from is full or cannot be written.",
            body = AuthenticateAnswer),
    ),
)]
async fn authenticate(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params: Params,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    decide(Endpoint::Authenticate, state, request_id_of(&headers), params, multipart).await
}

/// Reads the request, runs the endpoint's use case and answers in its shape.
async fn decide(
    endpoint: Endpoint,
    ApiState { app, limits, .. }: ApiState,
    request_id: Option<String>,
    params: Params,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let result = async {
        // Full: refused before the upload is read. Under a storm of immediate retries
        // each 503 then costs little beside the analyses that are running.
        if app.is_saturated() {
            return Err(ApiError::UseCase(UseCaseError::Busy));
        }
        // A whole upload has a deadline: sending a byte every few seconds must not
        // hold a connection for ever.
        let (username, file) = tokio::time::timeout(limits.upload_timeout, read_request(endpoint, params, multipart))
            .await
            .map_err(|_| RequestError::UploadTimeout)??;
        Ok::<_, ApiError>(app.submit(endpoint, &username, file, request_id).await?)
    }
    .await;
    match result {
        Ok(decision) => decided(endpoint, &decision),
        Err(e) => failed(endpoint, &e).await,
    }
}

/// How long a 503 SERVER_BUSY waits before it is sent (see `failed`): short next to
/// a queued request's wait (p99 260 ms at saturation), long enough that a retry
/// storm costs little.
const BUSY_PACING: std::time::Duration = std::time::Duration::from_millis(BUSY_PACING_MS);
const BUSY_PACING_MS: u64 = 50;
