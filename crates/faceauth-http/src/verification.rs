//! The original service's endpoints: `POST /api/enroll` and
//! `POST /api/authentificate`. Parse and validate the upload, run the endpoint's
//! use case, answer in its shape.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::answer::{rejected, with_reason};
use crate::error::{ApiError, RequestError, failed};
use crate::middleware::request_id_of;
use crate::router::ApiState;
use crate::upload::Upload;
use crate::wire::{self, AuthenticateAnswer, EnrollAnswer};
use faceauth_core::policy::{Decision, Endpoint};
use faceauth_core::usecase::UseCaseError;

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
            `FACE_ALREADY_ENROLLED` (the face is enrolled under another name; nothing stored), or another \
            policy's code).", body = EnrollAnswer),
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
pub(crate) async fn enroll(State(state): State<ApiState>, headers: HeaderMap, upload: Upload) -> Response {
    decide(Endpoint::Enroll, state, request_id_of(&headers), upload).await
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
pub(crate) async fn authenticate(State(state): State<ApiState>, headers: HeaderMap, upload: Upload) -> Response {
    decide(Endpoint::Authenticate, state, request_id_of(&headers), upload).await
}

/// Reads the request, runs the endpoint's use case and answers in its shape.
async fn decide(
    endpoint: Endpoint,
    ApiState { app, limits, .. }: ApiState,
    request_id: Option<String>,
    upload: Upload,
) -> Response {
    let result = async {
        // Full: refused before the upload is read. Under a storm of immediate retries
        // each 503 then costs little beside the analyses that are running.
        if app.is_saturated() {
            return Err(ApiError::UseCase(UseCaseError::Busy));
        }
        // A whole upload has a deadline: sending a byte every few seconds must not
        // hold a connection for ever.
        let (username, file) = tokio::time::timeout(limits.upload_timeout, upload.read(endpoint))
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

/// The policy's decision in the endpoint's shape: a rejection too is a 200.
fn decided(endpoint: Endpoint, decision: &Decision) -> Response {
    match (endpoint, decision.approved) {
        (_, false) => rejected(StatusCode::OK, endpoint, &decision.reason),
        (Endpoint::Enroll, true) => with_reason(StatusCode::OK, EnrollAnswer::enrolled(), &decision.reason),
        (Endpoint::Authenticate, true) => {
            with_reason(StatusCode::OK, AuthenticateAnswer::approved(decision.score), &decision.reason)
        }
    }
}
