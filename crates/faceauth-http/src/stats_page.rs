//! The statistics page at `/admin` (`stats_page.html`).

use axum::response::IntoResponse;

/// The statistics page. It holds no data; it fetches the (gated) statistics itself.
#[utoipa::path(
    get,
    path = "/admin",
    tag = "operations",
    responses((status = 200, description = "The page that plots `/api/admin/stats` (HTML; with a token: \
        `/admin#token=<token>`). Public: the data it shows is fetched through the admin gate.",
        body = String, content_type = "text/html")),
)]
pub(crate) async fn admin_page() -> impl IntoResponse {
    // Never framed by another page (clickjacking of the admin actions it links to).
    let headers = [
        (axum::http::header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
        (axum::http::header::X_FRAME_OPTIONS, "DENY"),
    ];
    (headers, axum::response::Html(include_str!("stats_page.html")))
}
