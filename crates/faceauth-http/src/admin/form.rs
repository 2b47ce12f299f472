//! The multipart bodies of the admin actions that take one (`PUT` a policy, replay).

use std::collections::BTreeMap;

use axum::extract::multipart::{Multipart, MultipartRejection};

use super::AdminFailure;
use faceauth_core::usecase::admin::AdminError;

/// Every field of a multipart body, as (name, bytes).
pub(super) async fn form_fields(
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Vec<(String, axum::body::Bytes)>, AdminFailure> {
    let mut multipart = multipart?;
    let mut fields = Vec::new();
    while let Some(field) = multipart.next_field().await? {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await?;
        fields.push((name, bytes));
    }
    Ok(fields)
}

pub(super) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

pub(super) fn bad(why: impl Into<String>) -> AdminFailure {
    AdminFailure(AdminError::BadRequest(why.into()))
}

pub(super) fn parse_params(bytes: &[u8]) -> Result<BTreeMap<String, f64>, AdminFailure> {
    serde_json::from_slice(bytes).map_err(|e| bad(format!("params must be a JSON object of numbers: {e}")))
}
