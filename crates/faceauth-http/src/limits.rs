//! Limits on a request's head and on a client's request rate, answered in the
//! API's JSON shapes (hyper's own refusals have empty bodies).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::access::client_address;
use crate::answer::{api_error, rejected};
use faceauth_core::policy::Endpoint;

/// The longest request target (path and query). The API's own are under 300 bytes;
/// browsers and proxies allow about 8 KiB. hyper refuses more than 64 KiB itself.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Header lines at most. hyper is told to parse up to `PARSED_HEADERS`, so that a
/// request between the two gets this JSON answer rather than hyper's empty one.
pub const MAX_HEADERS: usize = 100;
/// What hyper parses at most (its default is 100); beyond it its own empty 431.
pub const PARSED_HEADERS: usize = 1000;
/// Header bytes at most (names and values). hyper alone accepted 500 KB of headers.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The endpoint a path is, for answers in its shape.
fn endpoint_of(path: &str) -> Option<Endpoint> {
    match path {
        "/api/enroll" => Some(Endpoint::Enroll),
        "/api/authentificate" => Some(Endpoint::Authenticate),
        _ => None,
    }
}

/// A refusal in the shape of the route asked for: the endpoint's, else `{"code", "msg"}`.
fn refusal(path: &str, status: StatusCode, reason: &str) -> Response {
    match endpoint_of(path) {
        Some(endpoint) => rejected(status, endpoint, reason),
        None => api_error(status, reason),
    }
}

/// 414 URI_TOO_LONG and 431 HEADERS_TOO_LARGE, before any route runs.
pub(super) async fn refuse_oversized_head(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let uri_bytes = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        return refusal(path, StatusCode::URI_TOO_LONG, "URI_TOO_LONG");
    }
    let headers = request.headers();
    let header_bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return refusal(path, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "HEADERS_TOO_LARGE");
    }
    next.run(request).await
}

/// Requests per client address: `per_minute` on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_minute: NonZeroU32,
    pub burst: NonZeroU32,
}

type KeyedLimiter = governor::DefaultKeyedRateLimiter<IpAddr>;

/// The per-client limiter (`governor`'s keyed GCRA), keyed by `rate_key`.
#[derive(Clone)]
pub(super) struct ClientRateLimit {
    limiter: Arc<KeyedLimiter>,
    trusted_proxies: Arc<[IpAddr]>,
}

impl ClientRateLimit {
    pub(super) fn new(limit: RateLimit, trusted_proxies: Arc<[IpAddr]>) -> Self {
        let period = Duration::from_secs(60) / limit.per_minute.get();
        let quota = governor::Quota::with_period(period)
            .unwrap_or_else(|| governor::Quota::per_minute(limit.per_minute))
            .allow_burst(limit.burst);
        let limiter = Arc::new(governor::RateLimiter::keyed(quota));
        // The limiter keeps a cell per address: forget the ones that are full again,
        // or a scan from many addresses would grow it for ever.
        let weak = Arc::downgrade(&limiter);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Self { limiter, trusted_proxies };
        };
        runtime.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                let Some(limiter) = weak.upgrade() else { return };
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        });
        Self { limiter, trusted_proxies }
    }
}

/// Whose budget a request spends: the client the admin gate would name, else the
/// peer itself (forwarding headers from a peer that is not a declared proxy are
/// ignored, so they cannot put everyone in one shared bucket). IPv6 by its /64: one
/// host has a whole /64 to pick fresh addresses from.
pub(super) fn rate_key(client: Option<IpAddr>, peer: Option<IpAddr>) -> IpAddr {
    match client.or(peer).map(|ip| ip.to_canonical()) {
        Some(IpAddr::V6(v6)) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        Some(v4) => v4,
        None => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// 429 RATE_LIMITED with `Retry-After` for a client over its rate. `/health` and
/// `/ready` are exempt (probes must not be throttled); an unknown client shares one key.
pub(super) async fn limit_client_rate(State(limit): State<ClientRateLimit>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if matches!(path, "/health" | "/ready") {
        return next.run(request).await;
    }
    let peer = request.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let client = rate_key(client_address(request.headers(), peer, &limit.trusted_proxies), peer);
    match limit.limiter.check_key(&client) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(limit.limiter.clock().now());
            let mut response = refusal(path, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review of issue 11: a peer that sent `X-Forwarded-For` without being a declared
    /// proxy had no client address, and all such requests shared one bucket.
    #[test]
    fn rate_keys_fall_back_to_the_peer_and_group_ipv6_by_64() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        assert_eq!(rate_key(None, Some(ip("203.0.113.9"))), ip("203.0.113.9"));
        assert_eq!(rate_key(Some(ip("198.51.100.1")), Some(ip("10.0.0.1"))), ip("198.51.100.1"));
        assert_eq!(rate_key(None, Some(ip("2001:db8:1:2:aaaa::1"))), ip("2001:db8:1:2::"));
        assert_eq!(rate_key(None, Some(ip("2001:db8:1:2:bbbb::7"))), rate_key(None, Some(ip("2001:db8:1:2::9"))));
        assert_ne!(rate_key(None, Some(ip("2001:db8:1:3::1"))), rate_key(None, Some(ip("2001:db8:1:2::1"))));
        assert_eq!(rate_key(None, Some(ip("::ffff:192.0.2.4"))), ip("192.0.2.4"));
    }
}
