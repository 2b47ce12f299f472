//! Admin endpoints: reset (the original service's), policy management and the audit
//! log. One gate guards them all: the admin token when one is configured, else
//! loopback clients only. Answers and errors use reset's shape:
//! `{"code": <status>, "msg": "DONE" | "ERROR_DETECTED : <why>"}`, plus data fields.
//! Handlers by resource: `users` (reset, erasure), `policies`, `decisions`
//! (the audit log, statistics, replay), `metrics`; `form` reads their multipart
//! bodies. The refusals every admin operation documents alike are declared once
//! here (`GateRefusals`, `DatabaseFailures`).

mod decisions;
mod form;
mod metrics;
mod policies;
mod search;
mod users;

use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::AdminRequest;
use crate::answer::{LoggedReason, with_reason};
use crate::router::ApiState;
use crate::wire::AdminAnswer;
use faceauth_core::error_chain;
use faceauth_core::policy::router::RouterError;
use faceauth_core::usecase::admin::AdminError;

/// The admin routes, documented; `crate::router::router_with_limits` puts them behind [`gate`].
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(users::reset))
        .routes(routes!(policies::list_policies))
        .routes(routes!(policies::reload_policies))
        .routes(routes!(policies::put_policy, policies::retire_policy))
        .routes(routes!(users::erase_user))
        .routes(routes!(search::search))
        .routes(routes!(decisions::decisions))
        .routes(routes!(decisions::stats))
        .routes(routes!(decisions::replay))
        .routes(routes!(metrics::metrics))
}

fn error(status: StatusCode, why: impl std::fmt::Display) -> Response {
    with_reason(status, AdminAnswer::error(status, why), "ERROR_DETECTED")
}

fn done(body: impl serde::Serialize) -> Response {
    with_reason(StatusCode::OK, body, "DONE")
}

/// An admin use case's failure at the HTTP edge (the use case's error is the
/// core's; the status is chosen here).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct AdminFailure(#[from] AdminError);

/// The one place admin failures become HTTP: reset's `{"code", "msg"}` shape.
impl IntoResponse for AdminFailure {
    fn into_response(self) -> Response {
        use StatusCode as S;
        let status = match &self.0 {
            AdminError::BadRequest(_) => S::BAD_REQUEST,
            AdminError::TooLarge => S::PAYLOAD_TOO_LARGE,
            AdminError::Router(e) => match e {
                RouterError::NotManaged => S::CONFLICT,
                RouterError::MissingComponent(_) => S::BAD_REQUEST,
                RouterError::UnknownVariant(_) => S::NOT_FOUND,
                RouterError::Write(_) => S::INTERNAL_SERVER_ERROR,
                RouterError::Catalog(_) | RouterError::Variant { .. } => S::UNPROCESSABLE_ENTITY,
            },
            AdminError::Policy(_) => S::UNPROCESSABLE_ENTITY,
            AdminError::Store(e) if e.is_unavailable() => S::SERVICE_UNAVAILABLE,
            AdminError::Store(_) | AdminError::Task(_) => S::INTERNAL_SERVER_ERROR,
            AdminError::UseCase(e) => crate::error::status_of(e.code()),
        };
        if status.is_server_error() {
            tracing::warn!(error = %error_chain(&self), "admin request failed");
        }
        error(status, &self)
    }
}

impl From<QueryRejection> for AdminFailure {
    fn from(e: QueryRejection) -> Self {
        AdminFailure(AdminError::BadRequest(e.body_text()))
    }
}

impl From<MultipartRejection> for AdminFailure {
    fn from(e: MultipartRejection) -> Self {
        AdminFailure(AdminError::BadRequest(e.body_text()))
    }
}

impl From<MultipartError> for AdminFailure {
    fn from(e: MultipartError) -> Self {
        AdminFailure(if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AdminError::TooLarge
        } else {
            AdminError::BadRequest(e.body_text())
        })
    }
}

/// Admin actions that take no body: a request to them with a form's body came from a form.
const BODYLESS_ACTIONS: [&str; 2] = ["/api/reset", "/api/admin/policies/reload"];

pub(crate) async fn gate(
    State(state): State<ApiState>,
    peer: Result<ConnectInfo<std::net::SocketAddr>, axum::extract::rejection::ExtensionRejection>,
    request: Request,
    next: Next,
) -> Response {
    let admin_request = AdminRequest {
        method: request.method(),
        uri: request.uri(),
        headers: request.headers(),
        peer: peer.ok().map(|p| p.0),
        trusted_proxies: &state.limits.trusted_proxies,
        takes_no_body: BODYLESS_ACTIONS.contains(&request.uri().path()),
    };
    let refusal = match state.admin.check(&admin_request) {
        Ok(()) => return next.run(request).await,
        Err(refusal) => refusal,
    };
    let mut response = error(refusal.status(), refusal);
    response.extensions_mut().insert(LoggedReason("ADMIN_REFUSED".into()));
    response
}

/// The gate's refusals, documented on every admin operation.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only: `gate` answers them
enum GateRefusals {
    #[response(status = 401, description = "A token is configured and this request lacks it.")]
    NoToken(AdminAnswer),
    #[response(
        status = 403,
        description = "No token is configured and the client is not on loopback, or does not \
        name a loopback `Host`; or a browser sent it from another site's page."
    )]
    NotAllowed(AdminAnswer),
}

/// The database's failures, documented on the admin operations that read or write it.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only: `AdminFailure` answers them
enum DatabaseFailures {
    #[response(status = 500, description = "A database failure.")]
    Failed(AdminAnswer),
    #[response(status = 503, description = "The database did not answer within `--db-timeout`: retry.")]
    Unavailable(AdminAnswer),
}
