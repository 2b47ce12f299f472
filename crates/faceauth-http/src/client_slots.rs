//! Video decodes per client: an authentication is run as its client's (keyed like the
//! rate limit: the forwarded client behind a trusted proxy, IPv6 by its /64), so that
//! `media::video` lets each client have only `--video-decodes-per-client` clips
//! decoded at once. Eighteen slow clips from one address held every place in the
//! worker queue for the decoder's 20 s timeout, and everyone else got 503 (issue 22,
//! item 6); the extra ones are now refused at once with 429 RATE_LIMITED.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::access::client_address;
use crate::answer::LoggedReason;
use crate::limits::rate_key;

/// The reason code of `MediaError::ClientBusy` (`ApiError::reason_and_status`).
const REFUSED: &str = "RATE_LIMITED";

/// Runs `POST /api/authentificate` as its client's (`media::video::decode_for`), and
/// gives its per-client refusal the `Retry-After: 1` of the other 429s: a decode
/// takes seconds, a client that waits one and retries finds its place.
pub(super) async fn decode_as_client(
    State(trusted_proxies): State<Arc<[IpAddr]>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() != "/api/authentificate" {
        return next.run(request).await;
    }
    let peer = request.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let client = rate_key(client_address(request.headers(), peer, &trusted_proxies), peer);
    let mut response = faceauth_core::media::video::decode_for(client, next.run(request)).await;
    let refused = response.status() == StatusCode::TOO_MANY_REQUESTS
        && response.extensions().get::<LoggedReason>().is_some_and(|r| r.0 == REFUSED);
    if refused && !response.headers().contains_key(header::RETRY_AFTER) {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1u32));
    }
    response
}

#[cfg(test)]
mod tests {
    use crate::ApiError;
    use faceauth_core::media::MediaError;
    use faceauth_core::usecase::UseCaseError;

    /// The middleware recognises the refusal by the reason `reason_and_status` gives it.
    #[test]
    fn a_busy_client_is_answered_rate_limited() {
        let error = ApiError::UseCase(UseCaseError::Media(MediaError::ClientBusy(2)));
        assert_eq!(error.reason_and_status(), (super::REFUSED, axum::http::StatusCode::TOO_MANY_REQUESTS));
    }
}
