//! Identify (`POST /api/admin/search`): the enrolled users most similar to the person
//! in an image, for a risk team checking a suspected duplicate account.

use std::sync::Arc;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::form::{bad, form_fields};
use super::{AdminFailure, DatabaseFailures, GateRefusals, done};
use crate::middleware::request_id_of;
use crate::wire::{AdminAnswer, SearchAnswer, SearchForm};
use faceauth_core::usecase::FaceAuth;
use faceauth_core::usecase::search::MAX_SEARCH_RESULTS;

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub(super) struct SearchQuery {
    /// How many users to return, 1 to 100 (default 5).
    top_k: Option<usize>,
}

/// Searches the enrolled faces for the person in an image.
#[utoipa::path(
    post,
    path = "/api/admin/search",
    tag = "admin",
    description = "The enrolled users most similar to the person in `image` (a still image), most similar \
        first, from the same exact index that refuses duplicate enrollments. Recorded (time, gallery size, \
        result count, best similarity; no image and no name).",
    params(SearchQuery),
    request_body(content = SearchForm, content_type = "multipart/form-data"),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Searched (an empty gallery finds no one).", body = SearchAnswer),
        (status = 400, description = "No `image` field, another field, or `top_k` outside 1..=100.",
            body = AdminAnswer),
        (status = 413, description = "The body exceeds `--max-upload-bytes`.", body = AdminAnswer),
        (status = 415, description = "Not an image format the server decodes (a video is refused).",
            body = AdminAnswer),
        (status = 422, description = "`NO_FACE_DETECTED`, `MULTIPLE_FACES_DETECTED` (a second person at least \
            60 % of the largest face's height), or an unreadable image.", body = AdminAnswer),
        GateRefusals,
        DatabaseFailures,
    ),
)]
pub(super) async fn search(
    State(app): State<Arc<FaceAuth>>,
    headers: HeaderMap,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, AdminFailure> {
    let Query(query) = query?;
    let top_k = query.top_k.unwrap_or(5);
    if !(1..=MAX_SEARCH_RESULTS).contains(&top_k) {
        return Err(bad(format!("top_k must be 1 to {MAX_SEARCH_RESULTS}")));
    }
    let mut image = None;
    for (name, bytes) in form_fields(multipart).await? {
        match name.as_str() {
            "image" if image.is_none() => image = Some(bytes.to_vec()),
            other => return Err(bad(format!("unexpected field {other:?} (expected one `image`)"))),
        }
    }
    let image = image.ok_or_else(|| bad("missing the `image` field"))?;
    let id = request_id_of(&headers).unwrap_or_default();
    let found = app.search_enrolled(&id, image, top_k).await.map_err(|e| AdminFailure(e.into()))?;
    Ok(done(SearchAnswer::new(found)))
}
