//! Errors at the HTTP edge: `ApiError::reason_and_status` is the one place they
//! become a reason code and a status (the code is the use case's,
//! `UseCaseError::code`; the status is chosen here), and `failed` answers them in
//! the endpoint's shape, a busy server's paced. `RateLimitedWarning` keeps an
//! overload from flooding the log.

use axum::http::StatusCode;
use axum::response::Response;

use crate::answer::rejected;
use faceauth_core::error_chain;
use faceauth_core::policy::Endpoint;
use faceauth_core::usecase::UseCaseError;

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
pub(crate) fn status_of(code: &str) -> StatusCode {
    use StatusCode as S;
    match code {
        "EMPTY_USERNAME" | "INVALID_USERNAME" => S::BAD_REQUEST,
        "UNSUPPORTED_MEDIA_TYPE" => S::UNSUPPORTED_MEDIA_TYPE,
        "INVALID_IMAGE" | "INVALID_VIDEO" | "VIDEO_DECODE_TIMEOUT" | "NO_FACE_DETECTED" | "MULTIPLE_FACES_DETECTED" => {
            S::UNPROCESSABLE_ENTITY
        }
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

/// A refusal in the endpoint's shape. A busy server's 503 is paced and carries
/// `Retry-After`, and its warning is rate-limited (see `BUSY_PACING`).
pub(crate) async fn failed(endpoint: Endpoint, error: &ApiError) -> Response {
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

/// How long a 503 SERVER_BUSY waits before it is sent (see `failed`): short next to
/// a queued request's wait (p99 260 ms at saturation), long enough that a retry
/// storm costs little.
const BUSY_PACING: std::time::Duration = std::time::Duration::from_millis(BUSY_PACING_MS);
const BUSY_PACING_MS: u64 = 50;

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
