//! The capture page at `/demo`: enroll with a photo of an ID card, authenticate
//! with a few seconds of webcam video, in a browser. Every asset is served here.

use axum::Router;

use super::ApiState;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
}
