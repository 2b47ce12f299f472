//! The service in-process: `faceauth_http::router` on a real engine and a temporary
//! SQLite database, driven request by request with `tower::ServiceExt::oneshot`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::Request;
use faceauth_core::store::UserStore;
use faceauth_core::usecase::{FaceAuth, FaceEngine};
use faceauth_http::AdminAccess;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The upload limit of in-process routers.
pub const MAX_UPLOAD: usize = 10 << 20;

/// A client on loopback, as the real server sees local callers.
pub const LOOPBACK_PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50_000);

/// A SQLite database file in `dir`, created on first use.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("t.db").display())
}

/// The service with `policy_crate`'s component and an empty database in a
/// temporary directory (kept alive by the returned guard).
pub async fn app(policy_crate: &str) -> (Arc<FaceAuth>, tempfile::TempDir) {
    let engine = FaceEngine::init(&super::engine_config(policy_crate))
        .expect("the engine starts (its policy passes its self-check)");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = UserStore::connect(&sqlite_url(dir.path())).await.expect("store");
    (Arc::new(FaceAuth::new(engine, store)), dir)
}

/// The HTTP router of `app`, each request coming from `peer`: axum's
/// `MockConnectInfo`, which the `ConnectInfo` extractor (the admin gate's) falls
/// back to when there is no real connection. Without a peer the loopback-only gate
/// refuses. Each request names the server `Host: 127.0.0.1` unless it names one
/// itself, as every HTTP/1.1 client does (the loopback-only gate refuses a request
/// that names no loopback host: DNS rebinding).
pub fn router(app: &Arc<FaceAuth>, admin: AdminAccess, peer: SocketAddr) -> axum::Router {
    faceauth_http::router(app.clone(), MAX_UPLOAD, admin).layer(MockConnectInfo(peer)).layer(
        axum::middleware::map_request(|mut request: Request<Body>| async move {
            let host = axum::http::HeaderValue::from_static("127.0.0.1");
            request.headers_mut().entry(axum::http::header::HOST).or_insert(host);
            request
        }),
    )
}

/// A `multipart/form-data` body with one file part: (content type, body).
pub fn multipart(field: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "faceauth-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"f.jpg\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A POST of `bytes` as the file part `field` to `uri`.
pub fn upload(uri: &str, field: &str, bytes: &[u8]) -> Request<Body> {
    let (content_type, body) = multipart(field, bytes);
    Request::post(uri).header("content-type", content_type).body(Body::from(body)).expect("request")
}

/// A body-less request.
pub fn empty(method: &str, uri: &str) -> Request<Body> {
    Request::builder().method(method).uri(uri).body(Body::empty()).expect("request")
}

/// One request through `router`; the answer as (status, JSON body).
pub async fn answer(router: axum::Router, request: Request<Body>) -> (u16, Value) {
    let response = router.oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON"))
}
