//! The multipart upload of `POST /api/enroll` and `POST /api/authentificate`: the
//! username and the file, read as they stream, within the size limit.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;

use crate::error::RequestError;
use faceauth_core::policy::Endpoint;

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// An upload as extracted: the query and the multipart body, not yet read. Never
/// rejected here: a full server refuses before reading the upload, and a refusal
/// is in the endpoint's shape, so its problems are found by [`Upload::read`].
pub(crate) struct Upload {
    params: Params,
    multipart: Result<Multipart, MultipartRejection>,
}

impl<S: Send + Sync> FromRequest<S> for Upload {
    type Rejection = Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Infallible> {
        let (mut parts, body) = request.into_parts();
        let params = Query::from_request_parts(&mut parts, state).await;
        let multipart = Multipart::from_request(Request::from_parts(parts, body), state).await;
        Ok(Self { params, multipart })
    }
}

/// The wire shape of each endpoint: its file field.
fn file_field(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Enroll => "cin_file",
        Endpoint::Authenticate => "auth_video",
    }
}

impl Upload {
    /// The username (query parameter, or a `username` form field as a fallback) and the file.
    pub(crate) async fn read(self, endpoint: Endpoint) -> Result<(String, Vec<u8>), RequestError> {
        let Query(params) = self.params.map_err(|e| RequestError::Malformed(e.body_text()))?;
        let mut username = params.get("username").cloned();
        let mut multipart = self.multipart.map_err(|e| RequestError::Malformed(e.body_text()))?;
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
}

fn multipart_error(e: MultipartError) -> RequestError {
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
