//! The capture page at `/demo`: enroll with a photo of an ID card, authenticate
//! with a few seconds of webcam video, in a browser. Every asset is served here:
//! one self-contained page (`demo/page.html`, inline style and script), no CDN,
//! no external font.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::router::ApiState;

const PAGE: &str = include_str!("demo/page.html");

/// The page's Content-Security-Policy: only this origin, and of inline code only
/// the page's own `<style>` and `<script>` blocks, by hash (no `'unsafe-inline'`).
/// The camera preview is a `MediaStream` (`srcObject`), which no fetch directive
/// governs; the "save the clip" link is a download, not a fetch.
static CONTENT_SECURITY_POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
    let hashes = |tag| inline_blocks(PAGE, tag).into_iter().map(sha256_source).collect::<Vec<_>>().join(" ");
    let policy = format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self'; media-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hashes("script"),
        hashes("style"),
    );
    // Hashes are base64 and the rest is literal ASCII.
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("default-src 'none'"))
});

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/demo", get(page))
}

async fn page() -> Response {
    let mut response = Html(PAGE).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY.clone());
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // The camera for this page only, nothing else.
    headers.insert("permissions-policy", HeaderValue::from_static("camera=(self), microphone=(), geolocation=()"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The contents of every `<tag>...</tag>` block (written without attributes).
fn inline_blocks<'a>(page: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut blocks = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        blocks.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    blocks
}

/// A CSP hash source for an inline block: `'sha256-BASE64'` of its exact text.
fn sha256_source(block: &str) -> String {
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(block.as_bytes())))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The hashes cover the page's one style and one script block; an attribute on
    /// either tag, or a second block, would escape them.
    #[test]
    fn the_policy_hashes_the_one_inline_style_and_script() {
        assert_eq!(inline_blocks(PAGE, "script").len(), 1);
        assert_eq!(inline_blocks(PAGE, "style").len(), 1);
        assert_eq!(PAGE.matches("<script").count(), 1, "a <script> with attributes would not be hashed");
        assert_eq!(PAGE.matches("<style").count(), 1, "a <style> with attributes would not be hashed");
        let policy = CONTENT_SECURITY_POLICY.to_str().expect("ascii");
        assert!(policy.starts_with("default-src 'none'; script-src 'sha256-"), "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
        // Inline handlers and style attributes would need 'unsafe-inline'.
        assert!(!PAGE.contains(" onclick=") && !PAGE.contains(" style="), "inline handler or style attribute");
    }

    #[test]
    fn block_hash_is_the_csp_sha256_of_the_exact_text() {
        // echo -n 'alert(1)' | openssl dgst -sha256 -binary | base64
        assert_eq!(sha256_source("alert(1)"), "'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='");
        assert_eq!(inline_blocks("<p><script>a</script><script>b</script>", "script"), ["a", "b"]);
    }

    /// Upper-case codes quoted in `text` (`"FACE_MISMATCH"` or `` `FACE_MISMATCH` ``).
    fn codes_in(text: &str) -> BTreeSet<String> {
        text.split(['"', '`'])
            .skip(1)
            .step_by(2)
            .filter(|s| s.len() > 3 && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
            .map(str::to_string)
            .collect()
    }

    /// The page explains in words every reason the API and the shipped policies can
    /// answer: a new code in the host or the SDK without a sentence here fails.
    #[test]
    fn the_page_has_a_sentence_for_every_reason_code() {
        let script = inline_blocks(PAGE, "script")[0];
        let table = script.split("const REASONS = {").nth(1).and_then(|s| s.split("};").next()).expect("REASONS map");
        let explained: BTreeSet<String> =
            table.lines().filter_map(|l| l.trim().split_once(':')).map(|(code, _)| code.to_string()).collect();

        let http = include_str!("error.rs");
        let body = http
            .split("fn reason_and_status")
            .nth(1)
            .expect("reason_and_status moved out of http/mod.rs: point this test at it (the page explains its codes)");
        let body = &body[..body.find("\n    }\n").expect("end of reason_and_status")];
        let mut codes = codes_in(body);
        // The use cases' codes (`UseCaseError::code`), which `reason_and_status` forwards.
        let use_cases = include_str!("../../faceauth-core/src/usecase/error.rs");
        codes.extend(codes_in(use_cases.split("pub fn code").nth(1).expect("UseCaseError::code")));
        assert!(codes.len() >= 20, "reason_and_status and UseCaseError::code codes: {codes:?}");
        // The 404 / 405 answers in the admin shape.
        codes.extend(["NOT_FOUND".to_string(), "METHOD_NOT_ALLOWED".to_string()]);
        // The host's own refusals of a policy decision (the POLICY_ERROR family).
        codes.extend(codes_in(
            include_str!("../../faceauth-core/src/policy/outcome.rs")
                .split("pub fn code")
                .nth(1)
                .expect("Failure::code"),
        ));
        // The reasons of the shipped policies.
        let sdk = include_str!("../../../plugins/policy-sdk/src/lib.rs");
        codes.extend(codes_in(sdk.split("pub mod reasons").nth(1).expect("policy-sdk reasons")));
        // And the README's table (host and policy reasons).
        let readme = include_str!("../../../README.md");
        let table_codes =
            readme.lines().filter(|l| l.starts_with("| `")).flat_map(|l| codes_in(l.split('|').nth(1).unwrap_or("")));
        codes.extend(table_codes);

        let missing: Vec<_> = codes.difference(&explained).collect();
        assert!(missing.is_empty(), "reason codes without a sentence on the demo page: {missing:?}");
    }
}
