//! Erasure: every user (`POST /api/reset`, the original service's) or one (right to
//! erasure).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{AdminFailure, DatabaseFailures, GateRefusals, done, error};
use crate::wire::{AdminAnswer, UserErased};
use faceauth_core::usecase::FaceAuth;

/// Erases every user, atomically: templates deleted, audit rows pseudonymised.
#[utoipa::path(
    post,
    path = "/api/reset",
    tag = "admin",
    description = "Erases every user atomically: templates deleted, audit rows keep only a keyed hash of the \
        name. The original service's answer, `{\"code\":200,\"msg\":\"DONE\"}`.",
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Done.", body = AdminAnswer),
        // Not `DatabaseFailures`: reset's 500 says more.
        (status = 500, description = "`ERROR_DETECTED : <explanation>`: a database failure.", body = AdminAnswer),
        (status = 503, description = "The database did not answer within `--db-timeout`: retry.", body = AdminAnswer),
        GateRefusals,
    ),
)]
pub(super) async fn reset(State(app): State<Arc<FaceAuth>>) -> Result<Response, AdminFailure> {
    let erased = app.reset().await?;
    tracing::info!(users = erased.users, decisions = erased.decisions, "all users erased");
    // The original service's answer, unchanged.
    Ok(done(AdminAnswer::done()))
}

/// Erases one user (right to erasure).
#[utoipa::path(
    delete,
    path = "/api/admin/users/{username}",
    tag = "admin",
    description = "Erases one user: the template is deleted and the user's audit rows keep only `erased:` and a \
        keyed hash of the name.",
    params(("username" = String, Path, description = "The name, exactly as enrolled (percent-encoded).")),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Erased; what was removed.", body = UserErased),
        (status = 400, description = "Not a username that can exist (over 128 bytes, control or invisible \
            characters).", body = AdminAnswer),
        (status = 404, description = "No template and no audit rows under this username.", body = AdminAnswer),
        GateRefusals,
        DatabaseFailures,
    ),
)]
pub(super) async fn erase_user(
    State(app): State<Arc<FaceAuth>>,
    Path(username): Path<String>,
) -> Result<Response, AdminFailure> {
    match app.erase_user(&username).await? {
        Some(erased) => {
            tracing::info!(users = erased.users, decisions = erased.decisions, "a user erased");
            Ok(done(UserErased::new(erased)))
        }
        None => Ok(error(StatusCode::NOT_FOUND, "no template and no audit rows under this username")),
    }
}
