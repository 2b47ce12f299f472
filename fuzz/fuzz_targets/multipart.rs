//! The upload form, as the HTTP handlers read it: axum's `Multipart` on a request
//! body of arbitrary bytes (fixed boundary `fuzzb`), every field read to its end
//! (`username` as text, others as bytes, as `http::read_request` does), errors
//! rendered as the handlers render them. Then `usecase::validate_username` on the
//! input as UTF-8 and on every username field: it must not panic, and a name it
//! accepts is trimmed, non-empty, within `MAX_USERNAME_BYTES`, free of control
//! characters and accepted unchanged a second time.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;
use faceauth_core::usecase::{MAX_USERNAME_BYTES, validate_username};
use libfuzzer_sys::fuzz_target;

/// The boundary of every fuzzed body (seeds in corpus/multipart use it).
const BOUNDARY: &str = "fuzzb";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("tokio runtime"))
}

fn check_username(raw: &str) {
    let Ok(name) = validate_username(raw) else { return };
    assert!(!name.is_empty(), "{raw:?} accepted as an empty name");
    assert!(name.len() <= MAX_USERNAME_BYTES, "{raw:?} accepted as {} bytes", name.len());
    assert_eq!(name.trim(), name, "{raw:?} accepted untrimmed");
    assert!(!name.chars().any(char::is_control), "{raw:?} accepted with a control character");
    match validate_username(&name) {
        Ok(again) => assert_eq!(again, name, "{raw:?}: normalising twice changes {name:?}"),
        Err(e) => panic!("{raw:?} accepted as {name:?}, which is then refused: {e}"),
    }
}

async fn read_form(data: &[u8]) {
    let request = Request::builder()
        .method("POST")
        .uri("/api/enroll")
        .header(CONTENT_TYPE, format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(Body::from(data.to_vec()))
        .expect("request");
    let mut multipart = match Multipart::from_request(request, &()).await {
        Ok(multipart) => multipart,
        Err(rejection) => {
            let _ = rejection.body_text();
            return;
        }
    };
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                let _ = (e.status(), e.body_text());
                break;
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        let _ = (field.file_name(), field.content_type(), field.headers().len());
        if name == "username" {
            match field.text().await {
                Ok(text) => check_username(&text),
                Err(e) => {
                    let _ = (e.status(), e.body_text());
                    break;
                }
            }
        } else if let Err(e) = field.bytes().await {
            let _ = (e.status(), e.body_text());
            break;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_username(text);
    }
    runtime().block_on(read_form(data));
});
