//! Issue 22, items 2 and 3: the loopback admin gate (no `--admin-token`) against a
//! browser. A page of another site, served here from another loopback address, makes
//! real headless Chromium send a form and a `fetch` to `POST /api/reset`; a site
//! whose DNS name was rebound to 127.0.0.1 sends its own name in `Host`. Before the
//! fix both erased every user.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

mod common;

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::server::{Server, answer, start_server};

/// Whether `username` is still enrolled: a second enrollment is refused before any
/// analysis when it is.
async fn still_enrolled(server: &Server, username: &str) -> bool {
    let (status, _) = server.enroll(username, "id_card_person_a.jpg").await;
    status == 409
}

/// Serves `page` (HTML) to every request on a port of 127.0.0.2, another origin than
/// the server's 127.0.0.1 (and another site: a bare IP address is its own site).
async fn serve_attacker_page(page: String) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.expect("127.0.0.2 is loopback on Linux");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let page = page.clone();
            tokio::spawn(async move {
                let mut head = vec![0u8; 8192];
                let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut head)).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (base, task)
}

/// Debian's headless Chromium opens `url`, runs its scripts for a few seconds of
/// virtual time and prints the DOM it ends on.
fn chromium_dump_dom(url: &str) -> String {
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| std::process::Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("no headless browser found: scripts/test.sh installs Debian's chromium");
    let profile = tempfile::tempdir().expect("profile");
    let output = std::process::Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--virtual-time-budget=8000"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn another_sites_page_cannot_reset_through_the_visitors_browser() {
    let server = start_server().await;
    assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await.0, 200);
    let reset = server.url("/api/reset");

    // A form that submits itself: the browser navigates to the answer, which the DOM dump shows.
    let form = format!(
        "<html><body><form id=f method=POST action='{reset}'><input name=x value=1></form>\
         <script>document.getElementById('f').submit()</script></body></html>"
    );
    let (attacker, page_task) = serve_attacker_page(form).await;
    let dom = tokio::task::spawn_blocking(move || chromium_dump_dom(&attacker)).await.expect("browser");
    page_task.abort();
    assert!(!dom.contains("DONE"), "the server answered the cross-site form: {dom}");
    assert!(dom.contains("ERROR_DETECTED"), "the browser should show the refusal: {dom}");
    assert!(still_enrolled(&server, "alice").await, "a cross-site form erased every user");

    // `fetch` without a preflight (no body, no content type): only the browser's own headers tell.
    let fetch = format!(
        "<html><body><p id=out>waiting</p><script>\
         fetch('{reset}', {{method: 'POST', mode: 'no-cors'}})\
         .then(() => document.getElementById('out').textContent = 'sent')\
         .catch(e => document.getElementById('out').textContent = 'failed ' + e)</script></body></html>"
    );
    let (attacker, page_task) = serve_attacker_page(fetch).await;
    let dom = tokio::task::spawn_blocking(move || chromium_dump_dom(&attacker)).await.expect("browser");
    page_task.abort();
    assert!(dom.contains("sent") || dom.contains("failed"), "the page's fetch did not run: {dom}");
    assert!(still_enrolled(&server, "alice").await, "a cross-site fetch erased every user");

    // The same action from this machine's own tools still works (curl sends no browser headers).
    assert_eq!(answer(server.request(Method::POST, "/api/reset")).await, (200, common::answers::done()));
    assert!(!still_enrolled(&server, "alice").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebound_dns_name_reaches_no_admin_endpoint() {
    let server = start_server().await;
    assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await.0, 200);
    let port = server.base.rsplit(':').next().expect("port").to_string();
    let evil_host = format!("rebind.evil.example:{port}");
    for (method, path) in [
        (Method::POST, "/api/reset"),
        (Method::GET, "/api/admin/decisions"),
        (Method::GET, "/api/admin/stats"),
        (Method::GET, "/api/admin/policies"),
        (Method::DELETE, "/api/admin/users/alice"),
    ] {
        let (status, body) = answer(server.request(method.clone(), path).header("host", &evil_host)).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert_eq!(body["code"], Value::from(403));
        assert!(body["msg"].as_str().is_some_and(|m| m.contains("Host")), "{body}");
    }
    assert!(still_enrolled(&server, "alice").await, "the rebound name erased a user");
    // This machine's names still reach it.
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let (status, body) = answer(server.request(Method::GET, "/api/admin/policies").header("host", &host)).await;
        assert_eq!(status, 200, "{host}: {body}");
    }

    // The stats page cannot be framed by another page.
    let page = server.request(Method::GET, "/admin").send().await.expect("page");
    let csp = page.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp:?}");
}
