//! Process metrics on the `metrics` crate (exported in Prometheus text at
//! `/metrics`): every HTTP answer by route, status and reason, in seconds.

use std::time::Duration;

/// One answered request. `route` is the matched route template (`/api/admin/users/{username}`),
/// never the raw path, so that label values stay few.
pub fn observe_request(method: &str, route: &str, status: u16, reason: &str, elapsed: Duration) {
    let labels = [
        ("method", method.to_string()),
        ("route", route.to_string()),
        ("status", status.to_string()),
        ("reason", reason.to_string()),
    ];
    metrics::counter!("faceauth_http_requests_total", &labels).increment(1);
    metrics::histogram!(
        "faceauth_http_request_duration_seconds",
        &[("method", method.to_string()), ("route", route.to_string())]
    )
    .record(elapsed.as_secs_f64());
}
