//! The OpenAPI 3.1 contract, generated from the handlers' `#[utoipa::path]`
//! attributes and the answer types of `wire`: routes are registered through
//! `utoipa_axum`'s `routes!`, so a route of the API has its documentation by
//! construction. Served at `GET /openapi.json` (public). The refusal reasons of the
//! two upload endpoints are narrowed per status here, from one table.

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::{Modify, OpenApi as _};

/// Security scheme name of the admin endpoints.
pub const ADMIN_SECURITY: &str = "admin_token";

/// What every admin operation says about its gate.
pub const ADMIN_GATE: &str = "Admin endpoint. With `--admin-token` set it requires \
`Authorization: Bearer <token>` (else 401); without a token it answers loopback clients only \
(else 403; a request relayed by a proxy not declared with `--trusted-proxy` is not loopback).";

/// Refusal reasons by HTTP status.
pub type Refusals = &'static [(u16, &'static [&'static str])];

/// Host refusals of `POST /api/enroll`: (status, reasons), README's table and
/// `ApiError::reason_and_status`. A 200 carries the policy's decision instead.
pub const ENROLL_REFUSALS: Refusals = &[
    (
        400,
        &["MISSING_USERNAME", "EMPTY_USERNAME", "INVALID_USERNAME", "MISSING_FILE", "EMPTY_FILE", "MALFORMED_REQUEST"],
    ),
    (408, &["UPLOAD_TIMEOUT"]),
    (409, &["USERNAME_ALREADY_EXISTS"]),
    (413, &["FILE_TOO_LARGE", "IMAGE_TOO_LARGE"]),
    (414, &["URI_TOO_LONG"]),
    // An ID document is a photo or a scan: a video is refused too.
    (415, &["UNSUPPORTED_MEDIA_TYPE"]),
    (422, &["INVALID_IMAGE"]),
    (429, &["RATE_LIMITED"]),
    (431, &["HEADERS_TOO_LARGE"]),
    (500, &["INTERNAL_ERROR"]),
    (503, &["SERVER_BUSY", "POLICY_ERROR", "DATABASE_UNAVAILABLE", "STORAGE_FULL"]),
];

/// Host refusals of `POST /api/authentificate`, as [`ENROLL_REFUSALS`].
pub const AUTHENTICATE_REFUSALS: Refusals = &[
    (
        400,
        &["MISSING_USERNAME", "EMPTY_USERNAME", "INVALID_USERNAME", "MISSING_FILE", "EMPTY_FILE", "MALFORMED_REQUEST"],
    ),
    (404, &["UNKNOWN_USER"]),
    (408, &["UPLOAD_TIMEOUT"]),
    (409, &["TEMPLATE_OUTDATED"]),
    (413, &["FILE_TOO_LARGE", "IMAGE_TOO_LARGE", "VIDEO_TOO_LONG", "VIDEO_TOO_LARGE"]),
    (414, &["URI_TOO_LONG"]),
    (415, &["UNSUPPORTED_MEDIA_TYPE"]),
    (422, &["INVALID_IMAGE", "INVALID_VIDEO", "VIDEO_DECODE_TIMEOUT"]),
    (429, &["TOO_MANY_ATTEMPTS", "RATE_LIMITED"]),
    (431, &["HEADERS_TOO_LARGE"]),
    (500, &["INTERNAL_ERROR"]),
    (503, &["SERVER_BUSY", "POLICY_ERROR", "DATABASE_UNAVAILABLE", "VIDEO_UNSUPPORTED", "STORAGE_FULL"]),
];

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "faceauth",
        description = "Face verification for identity onboarding: enroll with an ID card photo, \
authenticate with a selfie (image or short video). Wire-compatible with the original service. \
A decision (approved or rejected) is HTTP 200; a request that could not be processed gets a 4xx/5xx \
status in the same shape with a reason code. Every answer carries `x-request-id`. A path or method \
the API does not have answers 404 / 405 as `{\"code\", \"msg\"}`.",
        license(name = "MIT"),
    ),
    paths(demo_page),
    modifiers(&AdminSecurity),
    tags(
        (name = "verification", description = "Enrollment and authentication (the original service's API)"),
        (name = "admin", description = "Reset, erasure, policy variants, audit log, statistics, metrics"),
        (name = "operations", description = "Liveness, readiness, this document, the pages"),
    )
)]
struct ApiDoc;

/// The bearer-token scheme of the admin endpoints.
struct AdminSecurity;

impl Modify for AdminSecurity {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(format!(
                "The `--admin-token`. Without one configured the admin endpoints need no \
                 credentials but answer loopback clients only. {ADMIN_GATE}"
            )))
            .build();
        components.add_security_scheme(ADMIN_SECURITY, SecurityScheme::Http(bearer));
    }
}

/// Each refusal status of the upload endpoints gets the exact reasons it can carry
/// (an `enum` on `DecisionReason`, and a list in its description).
struct NarrowRefusals;

impl Modify for NarrowRefusals {
    fn modify(&self, openapi: &mut OpenApi) {
        let endpoints: [(&str, &str, Refusals); 2] = [
            ("/api/enroll", "EnrollAnswer", ENROLL_REFUSALS),
            ("/api/authentificate", "AuthenticateAnswer", AUTHENTICATE_REFUSALS),
        ];
        for (path, schema, refusals) in endpoints {
            let Some(operation) = openapi.paths.paths.get_mut(path).and_then(|item| item.post.as_mut()) else {
                continue;
            };
            for (status, reasons) in refusals {
                let Some(RefOr::T(response)) = operation.responses.responses.get_mut(&status.to_string()) else {
                    continue;
                };
                let listed: Vec<String> = reasons.iter().map(|r| format!("`{r}`")).collect();
                response.description = format!("{} Reasons: {}.", response.description, listed.join(", "));
                let verdict = if schema == "EnrollAnswer" { "EnrollStatus" } else { "Decision" };
                let narrowed = AllOfBuilder::new()
                    .item(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(schema)))
                    .item(
                        ObjectBuilder::new()
                            .property(
                                "DecisionReason",
                                ObjectBuilder::new()
                                    .schema_type(Type::String)
                                    .enum_values(Some(reasons.iter().copied())),
                            )
                            .property(
                                verdict,
                                ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["REJECTED"])),
                            ),
                    )
                    .build();
                for content in response.content.values_mut() {
                    content.schema = Some(RefOr::T(Schema::AllOf(narrowed.clone())));
                }
            }
        }
    }
}

/// The document of the API: every route `super::router` registers (each through
/// `routes!`, the `/demo` page's by `demo_page` below).
pub fn document() -> OpenApi {
    let (_, paths) = crate::router::documented_routes().split_for_parts();
    let mut doc = ApiDoc::openapi();
    doc.merge(paths);
    RequestLimits.modify(&mut doc);
    NarrowRefusals.modify(&mut doc);
    GateDescriptions.modify(&mut doc);
    doc
}

/// The refusals of `limits`, before any route runs: 414 and 431 on every operation,
/// 429 `RATE_LIMITED` on every one but the probes (only with `--rate-limit`), each
/// in the shape of its path.
struct RequestLimits;

impl Modify for RequestLimits {
    fn modify(&self, openapi: &mut OpenApi) {
        use super::limits::{MAX_HEADER_BYTES, MAX_HEADERS, MAX_URI_BYTES};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        for (path, item) in openapi.paths.paths.iter_mut() {
            let schema = match path.as_str() {
                "/api/enroll" => "EnrollAnswer",
                "/api/authentificate" => "AuthenticateAnswer",
                _ => "AdminAnswer",
            };
            let probe = matches!(path.as_str(), "/health" | "/ready");
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let mut refusals = vec![
                    ("414", format!("The request target is over {} KiB (`URI_TOO_LONG`).", MAX_URI_BYTES / 1024)),
                    (
                        "431",
                        format!(
                            "Over {MAX_HEADERS} header lines or {} KiB of headers (`HEADERS_TOO_LARGE`).",
                            MAX_HEADER_BYTES / 1024
                        ),
                    ),
                ];
                if !probe {
                    refusals.push((
                        "429",
                        "With `--rate-limit`: this client address is over its rate (`RATE_LIMITED`); `Retry-After` says in how many seconds to retry."
                            .to_string(),
                    ));
                }
                for (status, description) in refusals {
                    let responses = &mut operation.responses.responses;
                    if let Some(RefOr::T(existing)) = responses.get_mut(status) {
                        existing.description = format!("{} {description}", existing.description);
                        continue;
                    }
                    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name(schema))).build();
                    let response =
                        ResponseBuilder::new().description(description).content("application/json", content).build();
                    responses.insert(status.to_string(), RefOr::T(response));
                }
            }
        }
    }
}

/// Every operation behind the admin gate says how it is gated.
struct GateDescriptions;

impl Modify for GateDescriptions {
    fn modify(&self, openapi: &mut OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let gated = operation.security.iter().flatten().any(|requirement| {
                    serde_json::to_value(requirement).is_ok_and(|v| v.get(ADMIN_SECURITY).is_some())
                });
                if gated {
                    let description = operation.description.get_or_insert_with(String::new);
                    if !description.is_empty() {
                        description.push_str("\n\n");
                    }
                    description.push_str(ADMIN_GATE);
                }
            }
        }
    }
}

/// The document as served, built once.
fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")))
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of the API (this one).",
        body = Object, content_type = "application/json")),
)]
pub(super) async fn openapi_json() -> Response {
    let mut response = ([(axum::http::header::CONTENT_TYPE, "application/json")], document_json()).into_response();
    response.extensions_mut().insert(crate::answer::LoggedReason("OPENAPI".into()));
    response
}

/// The capture page (`demo.rs`, its own router): enroll with an ID card photo,
/// authenticate with a few seconds of webcam video, in a browser. Documentation only.
#[utoipa::path(
    get,
    path = "/demo",
    tag = "operations",
    responses((status = 200, description = "The capture page (HTML; it calls the public API).",
        body = String, content_type = "text/html")),
)]
#[allow(dead_code)] // documents the route `demo::routes` registers
async fn demo_page() {}
