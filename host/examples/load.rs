//! Load generator: concurrent authentications against a running server, reporting
//! throughput and latency percentiles (the project's speed check; no test asserts timings).
//!
//! `cargo run --release --example load -- [BASE_URL] [REQUESTS] [CONCURRENCY]`
//! (defaults http://127.0.0.1:5000 200 8). It enrolls a user from the ID-card fixture
//! first, then authenticates with the selfie fixture. At the end it reads the server's
//! per-variant statistics (`/api/admin/stats`, from the audit log; run it from the
//! server's machine or set FACEAUTH_ADMIN_TOKEN) to report what share of each
//! request the policy call took.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a tool: fail loudly

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name);
    std::fs::read(path).expect("fixture")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args.get(1).cloned().unwrap_or_else(|| "http://127.0.0.1:5000".into());
    let requests: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let concurrency: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(8);
    let client = reqwest::Client::new();
    let user = format!("load-{}", std::process::id());
    let form = Form::new().part("cin_file", Part::bytes(fixture("id_card_person_a.jpg")).file_name("card.jpg"));
    let enrolled = client.post(format!("{base}/api/enroll?username={user}")).multipart(form).send().await;
    println!("enroll: {}", enrolled.expect("server reachable").text().await.unwrap_or_default());

    let selfie = Arc::new(fixture("selfie_person_a.jpg"));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, base, user, selfie, next) =
                (client.clone(), base.clone(), user.clone(), selfie.clone(), next.clone());
            tokio::spawn(async move {
                let mut results = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                    let form = Form::new().part("auth_video", Part::bytes(selfie.to_vec()).file_name("selfie.jpg"));
                    let t = Instant::now();
                    let response =
                        client.post(format!("{base}/api/authentificate?username={user}")).multipart(form).send().await;
                    let status = response.map(|r| r.status().as_u16()).unwrap_or(0);
                    results.push((t.elapsed(), status));
                }
                results
            })
        })
        .collect();
    let mut results: Vec<(Duration, u16)> = Vec::new();
    for w in workers {
        results.extend(w.await.expect("worker"));
    }
    let elapsed = started.elapsed();
    let mut ok: Vec<Duration> = results.iter().filter(|r| r.1 == 200).map(|r| r.0).collect();
    ok.sort();
    let busy = results.iter().filter(|r| r.1 == 503).count();
    let other = results.len() - ok.len() - busy;
    let pct =
        |p: f64| ok.get(((ok.len().max(1) - 1) as f64 * p) as usize).map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0);
    println!(
        "{} requests, concurrency {concurrency}: {:.1} req/s; 200: {}, 503 busy: {busy}, other: {other}; \
         latency ms p50 {:.0} p90 {:.0} p99 {:.0} max {:.0}",
        results.len(),
        results.len() as f64 / elapsed.as_secs_f64(),
        ok.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );

    let mut stats = client.get(format!("{base}/api/admin/stats"));
    if let Ok(token) = std::env::var("FACEAUTH_ADMIN_TOKEN") {
        stats = stats.bearer_auth(token);
    }
    let stats: serde_json::Value = match stats.send().await {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
        _ => {
            println!("(no access to /api/admin/stats: the policy share is not reported)");
            return;
        }
    };
    for v in stats["variants"].as_array().into_iter().flatten() {
        println!(
            "variant {} ({}): {} decisions; policy call p50 {:.3} ms p99 {:.3} ms; request p50 {:.0} ms; \
             policy share of the request time {:.3} %",
            v["variant"].as_str().unwrap_or("?"),
            if v["shadow"] == true { "shadow" } else { "answer" },
            v["decisions"],
            v["policy_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
            v["policy_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
            v["total_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
            100.0 * v["policy_share"].as_f64().unwrap_or(f64::NAN)
        );
    }
}
