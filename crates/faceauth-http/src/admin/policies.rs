//! The policy variants in force, and their changes: reload the policy directory,
//! add or replace a variant, retire one.

use std::sync::Arc;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, State};
use axum::response::Response;

use super::form::{bad, form_fields, parse_params, text};
use super::{AdminFailure, GateRefusals, done};
use crate::wire::{self, AdminAnswer, PolicyOverviewAnswer, PolicySetAnswer};
use faceauth_core::usecase::FaceAuth;
use faceauth_core::usecase::admin::PolicyChange;

/// The policy variants in force.
#[utoipa::path(
    get,
    path = "/api/admin/policies",
    tag = "admin",
    description = "The policy variants in force (parameters, sha256, weights, shadows), whether they come from a \
        policy directory, and the last refused reload.",
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "The policy set.", body = PolicyOverviewAnswer),
        GateRefusals,
    ),
)]
pub(super) async fn list_policies(State(app): State<Arc<FaceAuth>>) -> Response {
    let overview = app.policies();
    done(PolicyOverviewAnswer::new(
        overview.managed,
        overview.directory.map(|d| d.display().to_string()),
        overview.last_error,
        &overview.set,
    ))
}

/// Answers a policy change with the new set.
async fn change(app: &FaceAuth, change: PolicyChange) -> Result<Response, AdminFailure> {
    let set = app.change_policies(change).await?;
    Ok(done(PolicySetAnswer::new(&set)))
}

/// Re-reads the policy directory now.
#[utoipa::path(
    post,
    path = "/api/admin/policies/reload",
    tag = "admin",
    description = "Rebuilds the policy set from `--policy-dir` now (each variant is instantiated and self-checked \
        first; a refused set leaves the current one serving).",
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "The new set.", body = PolicySetAnswer),
        (status = 409, description = "The server runs one fixed policy (`--policy`), not a directory.",
            body = AdminAnswer),
        (status = 422, description = "The directory's set is refused (catalog or component invalid).",
            body = AdminAnswer),
        GateRefusals,
    ),
)]
pub(super) async fn reload_policies(State(app): State<Arc<FaceAuth>>) -> Result<Response, AdminFailure> {
    change(&app, PolicyChange::Reload).await
}

/// Retires variant `name`.
#[utoipa::path(
    delete,
    path = "/api/admin/policies/{name}",
    tag = "admin",
    description = "Retires a variant (not the last answering one), rewriting `policies.toml`.",
    params(("name" = String, Path, description = "The variant's name.")),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "The new set.", body = PolicySetAnswer),
        (status = 404, description = "No variant of this name.", body = AdminAnswer),
        (status = 409, description = "The server runs one fixed policy (`--policy`), not a directory.",
            body = AdminAnswer),
        (status = 422, description = "The set without it is refused (no variant would answer), or `policies.toml` \
            could not be written.", body = AdminAnswer),
        GateRefusals,
    ),
)]
pub(super) async fn retire_policy(
    State(app): State<Arc<FaceAuth>>,
    Path(name): Path<String>,
) -> Result<Response, AdminFailure> {
    change(&app, PolicyChange::Retire(name)).await
}

/// Adds or replaces variant `name`. Multipart fields, all optional except that a
/// new variant needs a component: `component` (the .wasm file), `weight`,
/// `shadow` (true/false), `params` (a JSON object of name: number overrides),
/// `retire_after_failures` (failed calls in a row on live traffic after which the
/// variant retires itself; 0: never). Fields left out keep the variant's current
/// value; a weight above 0 or `shadow=true` clears a retirement.
#[utoipa::path(
    put,
    path = "/api/admin/policies/{name}",
    tag = "admin",
    description = "Adds or changes a variant, validated first (instantiated, parameters checked, self-checked); \
        the files are written only once the new set is built.",
    params(("name" = String, Path, description = "The variant's name (letters, digits, `-` and `_`).")),
    request_body(content = wire::PutPolicyForm, content_type = "multipart/form-data"),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "The new set.", body = PolicySetAnswer),
        (status = 400, description = "A field is wrong, unknown, or a new variant has no `component`.",
            body = AdminAnswer),
        (status = 409, description = "The server runs one fixed policy (`--policy`), not a directory.",
            body = AdminAnswer),
        (status = 413, description = "The body exceeds `--max-upload-bytes`.", body = AdminAnswer),
        (status = 422, description = "The component or the resulting set is refused (does not instantiate, \
            rejects its parameters, fails its self-check, invalid name).", body = AdminAnswer),
        (status = 500, description = "The policy directory could not be written.", body = AdminAnswer),
        GateRefusals,
    ),
)]
pub(super) async fn put_policy(
    State(app): State<Arc<FaceAuth>>,
    Path(name): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, AdminFailure> {
    let (mut component, mut weight, mut shadow, mut params, mut retire_after_failures) = (None, None, None, None, None);
    for (field_name, bytes) in form_fields(multipart).await? {
        match field_name.as_str() {
            "component" => component = Some(bytes.to_vec()),
            "weight" => weight = Some(text(&bytes).parse::<u32>().map_err(|_| bad("weight must be a whole number"))?),
            "shadow" => {
                shadow = Some(match text(&bytes).as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad("shadow must be true or false")),
                })
            }
            "params" => params = Some(parse_params(&bytes)?),
            "retire_after_failures" => {
                retire_after_failures =
                    Some(text(&bytes).parse::<u32>().map_err(|_| bad("retire_after_failures must be a whole number"))?)
            }
            other => return Err(bad(format!("unknown field {other:?}"))),
        }
    }
    change(&app, PolicyChange::Put { name, component, weight, shadow, params, retire_after_failures }).await
}
