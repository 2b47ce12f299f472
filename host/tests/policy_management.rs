//! Policies as a product, end to end on the real server: a policy directory with
//! A/B variants and a shadow, sticky assignment, the audit log, hot swap through
//! the directory and the admin API (a bad component is refused and the old set
//! keeps serving), replay, statistics, Prometheus metrics and the stats page in a
//! real headless browser.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::answers::{admin_loopback_only, admin_token_required};
use common::in_process::{LOOPBACK_PEER, answer, empty, router};
use common::server::{Server, start_server_with};
use faceauth_http::AdminAccess;
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

/// A policy directory holding the shipped components and `catalog`.
fn policy_dir(catalog: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["default-policy", "strict-policy", "liveness-policy"] {
        let wasm = common::policy_wasm(name);
        std::fs::copy(&wasm, dir.path().join(wasm.file_name().expect("name"))).expect("copy component");
    }
    std::fs::write(dir.path().join("policies.toml"), catalog).expect("catalog");
    dir
}

async fn start_with_dir(dir: &Path) -> Server {
    start_server_with(&[("FACEAUTH_POLICY_DIR", dir.to_str().expect("utf-8")), ("FACEAUTH_POLICY_WATCH_MS", "200")])
        .await
}

/// Recorded decisions of `user`, waiting (a bounded time) until `at_least` are there:
/// shadow decisions are recorded after the answer.
async fn decisions_of(server: &Server, user: &str, at_least: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = server.get("/api/admin/decisions?limit=10000").await;
        assert_eq!(status, 200, "{body}");
        let mine: Vec<Value> = body["decisions"]
            .as_array()
            .expect("decisions")
            .iter()
            .filter(|d| d["username"] == user)
            .cloned()
            .collect();
        if mine.len() >= at_least || Instant::now() > deadline {
            return mine;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_set(server: &Server, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = server.get("/api/admin/policies").await;
        if check(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "the policy set did not change: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn variant_names(policies: &Value) -> Vec<String> {
    policies["set"]["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| v["name"].as_str().expect("name").to_string())
        .collect()
}

const AB_CATALOG: &str = r#"
experiment = "threshold-test"

[[variant]]
name = "control"
component = "default_policy.wasm"
weight = 50

[[variant]]
name = "high-threshold"
component = "default_policy.wasm"
weight = 50
params = { match-threshold = 0.99 }

[[variant]]
name = "strict-shadow"
component = "strict_policy.wasm"
shadow = true
"#;

#[tokio::test(flavor = "multi_thread")]
async fn ab_variants_are_sticky_shadows_are_recorded_and_nothing_changes_the_answer() {
    let dir = policy_dir(AB_CATALOG);
    // Eight accounts of one person (the duplicate search: host/tests/duplicates.rs).
    let server = start_server_with(&[
        ("FACEAUTH_POLICY_DIR", dir.path().to_str().expect("utf-8")),
        ("FACEAUTH_POLICY_WATCH_MS", "200"),
        ("FACEAUTH_DUPLICATE_SEARCH", "false"),
    ])
    .await;
    let (_, policies) = server.get("/api/admin/policies").await;
    assert_eq!(variant_names(&policies), ["control", "high-threshold", "strict-shadow"]);
    assert_eq!(policies["set"]["variants"][1]["params"]["match-threshold"], 0.99);

    // Users spread over both variants; each always meets the same one.
    let mut seen = std::collections::BTreeMap::<String, Vec<String>>::new();
    for i in 0..8 {
        let user = format!("user{i}");
        assert_eq!(server.enroll(&user, "id_card_person_a.jpg").await.0, 200);
        for _ in 0..2 {
            let (status, answer) = server.authenticate(&user, "selfie_person_a.jpg").await;
            assert_eq!(status, 200, "{answer}");
        }
        let decisions = decisions_of(&server, &user, 6).await;
        // Enrollment + two authentications, each answered once and shadowed once.
        assert_eq!(decisions.len(), 6, "{decisions:?}");
        let answers: Vec<&Value> = decisions.iter().filter(|d| d["shadow"] == false).collect();
        let variants: Vec<String> = answers.iter().map(|d| d["variant"].as_str().unwrap().to_string()).collect();
        assert!(variants.windows(2).all(|w| w[0] == w[1]), "sticky: {variants:?}");
        let shadows: Vec<&Value> = decisions.iter().filter(|d| d["shadow"] == true).collect();
        assert!(shadows.iter().all(|d| d["variant"] == "strict-shadow"));
        // The evidence is recorded, with no image in it.
        let auth = answers.iter().find(|d| d["endpoint"] == "authenticate").expect("an authentication");
        assert!(auth["evidence"]["frames"][0]["faces"][0]["similarity"].is_number(), "{auth}");
        assert!(auth["total_ms"].as_f64().unwrap() >= auth["policy_ms"].as_f64().unwrap());
        // The answer is the answering variant's: control approves, 0.99 rejects.
        let last = answers.last().unwrap();
        match variants[0].as_str() {
            "control" => assert_eq!(last["reason"], "AUTHENTIFICATION_SUCCESS"),
            "high-threshold" => assert_eq!(last["reason"], "FACE_MISMATCH"),
            other => panic!("unexpected variant {other}"),
        }
        seen.entry(variants[0].clone()).or_default().push(user);
    }
    assert_eq!(seen.len(), 2, "8 users should meet both variants of a 50/50 split: {seen:?}");

    // Statistics per variant, as JSON, as Prometheus metrics, and on the page.
    let (status, stats) = server.get("/api/admin/stats").await;
    assert_eq!(status, 200);
    let stats_variants: Vec<&str> =
        stats["variants"].as_array().unwrap().iter().map(|v| v["variant"].as_str().unwrap()).collect();
    assert!(stats_variants.contains(&"strict-shadow") && stats_variants.contains(&"control"), "{stats}");
    // Issue 21: the endpoint filter is applied (it was ignored): 8 users x 2
    // authentications, each answered and shadowed; 8 enrollments likewise.
    assert_eq!(stats["decisions"], 48, "{stats}");
    let (status, auth_stats) = server.get("/api/admin/stats?endpoint=authenticate").await;
    assert_eq!((status, &auth_stats["decisions"]), (200, &serde_json::json!(32)), "{auth_stats}");
    let (_, enroll_stats) = server.get("/api/admin/stats?endpoint=enroll").await;
    assert_eq!(enroll_stats["decisions"], 16, "{enroll_stats}");
    let metrics = server.request(Method::GET, "/metrics").send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("faceauth_decisions_total{variant=\"strict-shadow\""), "{metrics}");
    assert!(metrics.contains("faceauth_policy_call_duration_seconds_bucket{variant=\"strict-shadow\""), "{metrics}");
    assert!(metrics.contains("faceauth_request_duration_seconds_bucket{variant=\"control\""), "{metrics}");

    // Replay: the control variant's component at threshold 0.99 would reject what was approved.
    let form = Form::new().text("variant", "control").text("params", r#"{"match-threshold": 0.99}"#);
    let (status, replay) = server.send(Method::POST, "/api/admin/replay", Some(form)).await;
    assert_eq!(status, 200, "{replay}");
    let report = &replay["report"];
    assert_eq!(report["decisions"], 24, "8 enrollments + 16 authentications: {report}");
    let control_approvals = report["per_variant"]["control"]["recorded"]["approved"].as_u64().unwrap();
    assert!(report["approve_to_reject"].as_u64().unwrap() >= control_approvals.saturating_sub(8), "{report}");
    assert!(report["reason_changes"]["AUTHENTIFICATION_SUCCESS -> FACE_MISMATCH"].as_u64().unwrap() > 0, "{report}");
    // Issue 21: which decisions it would flip, each found again by its request id.
    let flips = report["flips"].as_array().expect("flips");
    assert_eq!(flips.len() as u64, report["changed"].as_u64().unwrap(), "{report}");
    let flip = flips.iter().find(|f| f["recorded_approved"] == true).expect("an approval flipped");
    assert_eq!(flip["replayed_approved"], false, "{flip}");
    let (_, found) =
        server.get(&format!("/api/admin/decisions?request_id={}", flip["request_id"].as_str().unwrap())).await;
    let answered = found["decisions"].as_array().unwrap().iter().find(|d| d["shadow"] == false).cloned().unwrap();
    assert_eq!((&answered["approved"], &answered["reason"]), (&flip["recorded_approved"], &flip["recorded_reason"]));
    // With ground truth (every authentication here is the genuine user), a confusion matrix per variant.
    let (_, all) = server.get("/api/admin/decisions?limit=10000&shadow=false&endpoint=authenticate").await;
    let labels: String = all["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{},genuine\n", d["request_id"].as_str().unwrap()))
        .collect();
    let form = Form::new().text("variant", "control").text("labels", format!("request_id,label\n{labels}"));
    let (status, labelled) = server.send(Method::POST, "/api/admin/replay", Some(form)).await;
    assert_eq!(status, 200, "{labelled}");
    let confusion = &labelled["report"]["per_variant"]["high-threshold"]["recorded"]["confusion"];
    assert_eq!(confusion["impostor_approved"], 0, "{labelled}");
    assert!(confusion["genuine_rejected"].as_u64().unwrap() > 0, "0.99 rejects the genuine user: {labelled}");
    let replayed = &labelled["report"]["per_variant"]["high-threshold"]["replayed"]["confusion"];
    assert_eq!(replayed["genuine_rejected"], 0, "the control component at 0.45 accepts them: {labelled}");
    // Rates with their 95 % intervals: all genuine approved by the replay, rule of three.
    assert_eq!(replayed["genuine_approved_rate"], 1.0, "{labelled}");
    assert_eq!(replayed["genuine_approved_interval"]["method"], "rule-of-three", "{labelled}");
    assert_eq!(replayed["impostor_approved_rate"], Value::Null, "no impostor labelled: {labelled}");

    // The same backtest from the command line, on the server's database.
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_faceauth"))
        .args(["replay", "--param", "match-threshold=0.99", "--policy"])
        .arg(common::policy_wasm("default-policy"))
        .arg("--data-dir")
        .arg(server.data.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("faceauth replay runs");
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let cli_report: Value = serde_json::from_slice(&cli.stdout).expect("JSON report");
    assert_eq!(cli_report["decisions"], report["decisions"]);
    assert_eq!(cli_report["approve_to_reject"], report["approve_to_reject"]);

    // Issue 21: every decision records the hash of its variant's component and
    // parameters: one per variant here, the two variants of one component apart.
    let hashes = params_hashes(&server).await;
    assert_eq!(hashes.keys().collect::<Vec<_>>(), ["control", "high-threshold", "strict-shadow"], "{hashes:?}");
    for (variant, seen) in &hashes {
        assert_eq!(seen.len(), 1, "{variant}: {seen:?}");
        let hash = seen.iter().next().unwrap();
        assert!(hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "{variant}: {hash}");
    }
    assert_ne!(hashes["control"], hashes["high-threshold"], "same component, other parameters");
    let old_hash = hashes["high-threshold"].iter().next().unwrap().clone();
    // The threshold changed mid-experiment: the variant's later decisions carry
    // another hash, and its statistics list both sets with their counts.
    let form = Form::new().text("params", r#"{"match-threshold": 0.98}"#);
    let (status, changed) = server.send(Method::PUT, "/api/admin/policies/high-threshold", Some(form)).await;
    assert_eq!(status, 200, "{changed}");
    let user = seen["high-threshold"][0].clone();
    let (status, answer) = server.authenticate(&user, "selfie_person_a.jpg").await;
    assert_eq!(status, 200, "{answer}");
    decisions_of(&server, &user, 8).await;
    let (_, stats) = server.get("/api/admin/stats").await;
    let high = stats["variants"].as_array().unwrap().iter().find(|v| v["variant"] == "high-threshold").expect("stats");
    let sets = high["params"].as_array().expect("params");
    assert_eq!(sets.len(), 2, "{high}");
    assert_eq!(sets[0]["params_hash"], old_hash.as_str(), "the first set first: {high}");
    assert_ne!(sets[1]["params_hash"], old_hash.as_str(), "{high}");
    assert_eq!(sets[1]["decisions"], 1, "one decision since the change: {high}");
    assert_eq!(
        sets[0]["decisions"].as_u64().unwrap() + 1,
        high["decisions"].as_u64().unwrap(),
        "every decision under one of the sets: {high}"
    );

    // Issue 21: the audit log pages past any limit and exports as CSV.
    pages_and_csv(&server).await;

    // The stats page, rendered by a real headless browser.
    render_stats_page(&server).await;
}

/// The parameter hashes recorded per variant.
async fn params_hashes(server: &Server) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let (status, all) = server.get("/api/admin/decisions?limit=10000&evidence=false").await;
    assert_eq!(status, 200, "{all}");
    let mut hashes = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for d in all["decisions"].as_array().unwrap() {
        assert!(d["evidence"].is_null(), "evidence=false leaves it out: {d}");
        let (variant, hash) = (d["variant"].as_str().unwrap(), d["params_hash"].as_str().unwrap());
        hashes.entry(variant.to_string()).or_default().insert(hash.to_string());
    }
    hashes
}

/// Pages of 7 through the whole audit log by `next`/`before`: every decision once,
/// newest page first, the same rows as one big page; the same as CSV; bad cursors
/// and formats are 400 in the admin shape.
async fn pages_and_csv(server: &Server) {
    let (_, whole) = server.get("/api/admin/decisions?limit=10000").await;
    assert!(whole["next"].is_null(), "all in one page: {}", whole["next"]);
    let whole = whole["decisions"].as_array().unwrap().clone();
    assert!(whole.len() > 7 * 3, "{}", whole.len());
    let (mut paged, mut next, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let path = match &next {
            Some(before) => format!("/api/admin/decisions?limit=7&before={before}"),
            None => "/api/admin/decisions?limit=7".to_string(),
        };
        let response = server.request(Method::GET, &path).send().await.expect("request");
        let header = response.headers().get("x-next-before").map(|v| v.to_str().unwrap().to_string());
        let page: Value = response.json().await.expect("JSON");
        assert_eq!(page["next"].as_str().map(str::to_string), header, "the header says what `next` says");
        let mut rows = page["decisions"].as_array().unwrap().clone();
        assert!(rows.len() <= 7);
        // Each page oldest first; the pages newest first.
        rows.extend(paged);
        paged = rows;
        pages += 1;
        next = page["next"].as_str().map(str::to_string);
        if next.is_none() {
            break;
        }
    }
    assert_eq!(pages, whole.len().div_ceil(7));
    assert_eq!(paged, whole, "the pages together are the whole log, each row once");

    // CSV: a header line, then the same rows, without the evidence unless asked.
    let csv = server.request(Method::GET, "/api/admin/decisions?limit=10000&format=csv").send().await.expect("csv");
    assert_eq!(csv.status().as_u16(), 200);
    let content_type = csv.headers().get("content-type").unwrap().to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let text = csv.text().await.expect("text");
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert!(lines[0].starts_with("request_id,at_ms,username,endpoint,variant,policy,params_hash,"), "{}", lines[0]);
    assert!(lines[0].ends_with(",total_ms"), "no evidence column unless asked: {}", lines[0]);
    assert_eq!(lines.len(), whole.len() + 1, "{text}");
    let first = &whole[0];
    assert!(
        lines[1].starts_with(&format!(
            "{},{},{},",
            first["request_id"].as_str().unwrap(),
            first["at_ms"],
            first["username"].as_str().unwrap()
        )),
        "{} vs {first}",
        lines[1]
    );
    let with = server.request(Method::GET, "/api/admin/decisions?limit=1&format=csv&evidence=true").send().await;
    let with = with.expect("csv").text().await.expect("text");
    assert!(with.starts_with("request_id,") && with.contains(",total_ms,evidence\r\n"), "{with}");
    assert!(with.contains(",\"{\"\""), "the evidence as a quoted JSON cell: {with}");

    for (query, why) in [
        ("before=yesterday", "<at_ms>-<id>"),
        ("before=1-2-3", "<at_ms>-<id>"),
        ("format=xml", "xml"),
        ("request_id=", "request_id"),
        ("evidence=maybe", "true"),
    ] {
        let (status, body) = server.get(&format!("/api/admin/decisions?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["code"], 400, "{query}: {body}");
        let msg = body["msg"].as_str().unwrap();
        assert!(msg.starts_with("ERROR_DETECTED : ") && msg.contains(why), "{query}: {body}");
    }
}

/// Loads `/admin` in headless Chromium and checks the rendered DOM: a table row and
/// chart bars per variant, drawn by the page's script from the live statistics, and
/// the live panel's answers by status and pool numbers, the same as `/metrics`.
async fn render_stats_page(server: &Server) {
    // A refusal, so that the panel has a 4xx row; nothing else answers 400 meanwhile.
    let (status, _) = server.post("/api/enroll", None, "cin_file", Some(common::fixture("id_card_person_a.jpg"))).await;
    assert_eq!(status, 400);
    let text = server.request(Method::GET, "/metrics").send().await.expect("metrics").text().await.expect("text");
    let scrape = common::metrics::Scrape(text);
    let refused = scrape.count("faceauth_http_requests_total", &[("status", "400")]);
    let workers = scrape.count("faceauth_vision_workers", &[]);
    assert!(refused >= 1.0 && workers >= 1.0, "{}", scrape.0);
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|b| std::process::Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
    else {
        panic!("no headless browser found: scripts/test.sh installs Debian's chromium");
    };
    let profile = tempfile::tempdir().expect("profile dir");
    let output = tokio::process::Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("{}/admin", server.base))
        .output()
        .await
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(dom.contains("data-rendered=\"true\""), "page script did not finish: {dom}");
    assert!(dom.contains("<p id=\"error\"></p>"), "the page reported an error: {dom}");
    for variant in ["control", "strict-shadow"] {
        assert!(dom.contains(&format!("<td>{variant}</td>")), "no row for {variant}: {dom}");
    }
    assert!(dom.matches("class=\"bar\"").count() >= 4, "no chart bars: {dom}");
    // Issue 21: the experiment, per endpoint, with intervals, and the shadow's pairing.
    assert!(dom.contains("<tr class=\"arm\"><td>control</td>"), "no experiment row for the control: {dom}");
    assert!(dom.contains(" pts</td>") && dom.contains(" % to "), "no lift or interval: {dom}");
    assert!(dom.contains("<tr class=\"pair\"><td>answer approved</td>"), "no shadow pairing: {dom}");
    // Issue 21: each disagreeing request links to its decisions, the answer and the
    // shadow's, each with its evidence.
    let links: Vec<(String, String)> = dom
        .split("<a class=\"decisions\" href=\"")
        .skip(1)
        .map(|rest| {
            let (href, rest) = rest.split_once("\">").expect("a link's end");
            let text = rest.split_once("</a>").expect("a link's text").0;
            (href.replace("&amp;", "&"), text.to_string())
        })
        .collect();
    assert!(!links.is_empty(), "no link from a disagreeing request to its decisions: {dom}");
    for (href, request_id) in links {
        assert!(href.starts_with("/api/admin/decisions?request_id="), "{href}");
        let (status, body) = server.get(&href).await;
        assert_eq!(status, 200, "{href}: {body}");
        let rows = body["decisions"].as_array().expect("decisions");
        assert_eq!(rows.len(), 2, "the answer and the shadow of {request_id}: {body}");
        assert!(rows.iter().all(|d| d["request_id"] == request_id.as_str()), "{body}");
        let roles: Vec<&Value> = rows.iter().map(|d| &d["shadow"]).collect();
        assert!(roles.contains(&&Value::Bool(false)) && roles.contains(&&Value::Bool(true)), "{body}");
        assert_ne!(rows[0]["approved"], rows[1]["approved"], "they disagree: {body}");
        assert!(rows.iter().all(|d| d["evidence"].is_object()), "with the evidence: {body}");
    }
    // The variant whose threshold changed mid-experiment says so.
    assert!(dom.contains("class=\"mismatch params-changed\""), "no parameter change shown: {dom}");
    for unrendered in [">undefined", ">NaN", "NaN %", "18446744073709552000"] {
        assert!(!dom.contains(unrendered), "a value did not render ({unrendered}): {dom}");
    }
    // The live panel, from /metrics.
    assert!(dom.contains("<p id=\"live-error\"></p>"), "the live panel reported an error: {dom}");
    assert!(
        dom.contains(&format!("<tr class=\"status\" data-status=\"400\"><td>400</td><td>{refused}</td></tr>")),
        "no 400 row with {refused} answers: {dom}"
    );
    assert!(dom.contains("<tr class=\"status\" data-status=\"200\"><td>200</td>"), "no 200 row: {dom}");
    assert!(dom.contains("<td id=\"unavailable\">0</td>"), "{dom}");
    assert!(dom.contains(&format!("<span id=\"workers\">{workers}</span>")), "{dom}");
    assert!(dom.contains("<span id=\"busy-workers\">0</span>"), "{dom}");
    assert!(dom.contains("<span id=\"queue-depth\">0</span>"), "{dom}");
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_are_swapped_at_run_time_and_bad_ones_are_refused() {
    let dir = policy_dir("[[variant]]\nname = \"main\"\ncomponent = \"default_policy.wasm\"\nweight = 1\n");
    let server = start_with_dir(dir.path()).await;
    assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await.0, 200);

    // Through the directory: a new catalog is picked up by the watcher.
    std::fs::write(
        dir.path().join("policies.toml"),
        "[[variant]]\nname = \"main\"\ncomponent = \"strict_policy.wasm\"\nweight = 1\n",
    )
    .expect("write");
    wait_for_set(&server, |p| p["set"]["variants"][0]["policy"] == "strict").await;

    // A broken component is refused; the previous set keeps serving.
    std::fs::write(dir.path().join("broken.wasm"), b"\0asm not really").expect("write");
    std::fs::write(
        dir.path().join("policies.toml"),
        "[[variant]]\nname = \"main\"\ncomponent = \"broken.wasm\"\nweight = 1\n",
    )
    .expect("write");
    let refused = wait_for_set(&server, |p| p["last_error"].is_string()).await;
    assert_eq!(refused["set"]["variants"][0]["policy"], "strict", "{refused}");
    let (status, _) = server.authenticate("alice", "selfie_person_a.jpg").await;
    assert_eq!(status, 200);
    let (status, reload) = server.send(Method::POST, "/api/admin/policies/reload", None).await;
    assert_eq!(status, 422, "{reload}");
    assert!(reload["msg"].as_str().unwrap().starts_with("ERROR_DETECTED : "), "{reload}");

    // Through the admin API: restore a good catalog, then add a variant from uploaded bytes.
    std::fs::write(
        dir.path().join("policies.toml"),
        "# The risk team's file.\n[[variant]]\nname = \"main\"\ncomponent = \"default_policy.wasm\"\nweight = 1\n",
    )
    .expect("write");
    let (status, _) = server.send(Method::POST, "/api/admin/policies/reload", None).await;
    assert_eq!(status, 200);
    let upload = |bytes: Vec<u8>, params: &'static str| {
        Form::new()
            .part("component", Part::bytes(bytes).file_name("policy.wasm"))
            .text("weight", "1")
            .text("params", params)
    };
    let strict = std::fs::read(common::policy_wasm("strict-policy")).expect("strict component");
    let threshold = r#"{"match-threshold": 0.5}"#;
    let (status, added) =
        server.send(Method::PUT, "/api/admin/policies/strict-b", Some(upload(strict, threshold))).await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(variant_names(&added), ["main", "strict-b"]);
    assert_eq!(added["set"]["variants"][1]["params"]["match-threshold"], 0.5);
    // Garbage bytes and an unknown parameter (a typo) are refused.
    let garbage = upload(b"garbage".to_vec(), threshold);
    let (status, _) = server.send(Method::PUT, "/api/admin/policies/bad", Some(garbage)).await;
    assert_eq!(status, 422);
    let default = std::fs::read(common::policy_wasm("default-policy")).expect("default component");
    let typo = upload(default, r#"{"match-treshold": 0.5}"#);
    let (status, refused) = server.send(Method::PUT, "/api/admin/policies/typo", Some(typo)).await;
    assert_eq!(status, 422);
    let msg = refused["msg"].as_str().unwrap();
    assert!(msg.contains("unknown parameter"), "{refused}");
    // Issue 21: the message named the other variant's component (the same bytes)
    // and called the typo a self-check failure.
    assert!(msg.contains("typo-") && msg.contains("refused the parameters") && !msg.contains("self-check"), "{msg}");
    let (_, now) = server.get("/api/admin/policies").await;
    assert_eq!(variant_names(&now), ["main", "strict-b"], "refused changes left the set alone");
    // The catalog on disk says the same (a restart would serve it).
    let on_disk = std::fs::read_to_string(dir.path().join("policies.toml")).expect("catalog");
    assert!(on_disk.contains("strict-b") && !on_disk.contains("typo"), "{on_disk}");
    // Issue 21: PUT rewrote the file without the operator's comments.
    assert!(on_disk.contains("# The risk team's file."), "{on_disk}");
    let copied = |dir: &std::path::Path| {
        let names = std::fs::read_dir(dir).expect("policy dir").flatten();
        names.map(|e| e.file_name().to_string_lossy().to_string()).filter(|n| n.starts_with("strict-b-")).count()
    };
    assert_eq!(copied(dir.path()), 1, "the uploaded component is copied in");

    // Retire; the last answering variant cannot go.
    let (status, retired) = server.send(Method::DELETE, "/api/admin/policies/strict-b", None).await;
    assert_eq!(status, 200, "{retired}");
    assert_eq!(variant_names(&retired), ["main"]);
    // Issue 21: DELETE left the copied component behind.
    assert_eq!(copied(dir.path()), 0, "the retired variant's copied component is removed");
    assert!(dir.path().join("default_policy.wasm").exists(), "the operator's own file stays");
    let (status, last) = server.send(Method::DELETE, "/api/admin/policies/main", None).await;
    assert_eq!(status, 422, "{last}");
    let (status, _) = server.send(Method::DELETE, "/api/admin/policies/ghost", None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_endpoints_need_the_token_when_one_is_set() {
    let dir = policy_dir("[[variant]]\nname = \"main\"\ncomponent = \"default_policy.wasm\"\nweight = 1\n");
    let server = start_server_with(&[
        ("FACEAUTH_POLICY_DIR", dir.path().to_str().expect("utf-8")),
        ("FACEAUTH_ADMIN_TOKEN", "s3cret"),
    ])
    .await;
    for (method, path) in [
        (Method::GET, "/api/admin/policies"),
        (Method::POST, "/api/admin/policies/reload"),
        (Method::DELETE, "/api/admin/policies/main"),
        (Method::GET, "/api/admin/decisions"),
        (Method::GET, "/api/admin/stats"),
        (Method::POST, "/api/admin/replay"),
        (Method::POST, "/api/reset"),
    ] {
        let (status, body) = server.send(method.clone(), path, None).await;
        assert_eq!((status, body), (401, admin_token_required()), "{method} {path}");
    }
    let metrics = server.request(Method::GET, "/metrics").send().await.expect("request");
    assert_eq!(metrics.status().as_u16(), 401);
    let authorized = server.request(Method::GET, "/api/admin/policies").bearer_auth("s3cret").send().await;
    assert_eq!(authorized.expect("request").status().as_u16(), 200);
}

/// Without a token the admin endpoints answer loopback clients only: in-process,
/// with the peer address the real server would see.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_token_admin_endpoints_answer_loopback_peers_only() {
    let (app, _db) = common::in_process::app("default-policy").await;
    let remote: std::net::SocketAddr = "192.0.2.7:40000".parse().expect("addr");
    for path in ["/api/admin/policies", "/api/admin/decisions", "/api/admin/stats"] {
        let far = answer(router(&app, AdminAccess::LoopbackOnly, remote), empty("GET", path)).await;
        assert_eq!(far, (403, admin_loopback_only()), "{path}");
        let (status, body) = answer(router(&app, AdminAccess::LoopbackOnly, LOOPBACK_PEER), empty("GET", path)).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}

/// A request keeps the variants it was routed to: swapping the set while it runs
/// changes nothing for it (the set is an `Arc` taken once per request).
#[test]
fn a_request_in_flight_finishes_on_the_policy_it_started_with() {
    use faceauth_core::policy::router::PolicyRouter;
    use faceauth_core::policy::{PolicyLimits, PolicyRuntime};
    let dir = policy_dir("[[variant]]\nname = \"old\"\ncomponent = \"default_policy.wasm\"\nweight = 1\n");
    let router = PolicyRouter::from_dir(PolicyRuntime::new(PolicyLimits::default()).expect("runtime"), dir.path())
        .expect("loads");
    let in_flight = router.current().route("alice").expect("routed");
    std::fs::write(
        dir.path().join("policies.toml"),
        "[[variant]]\nname = \"new\"\ncomponent = \"strict_policy.wasm\"\nweight = 1\n",
    )
    .expect("write");
    router.reload().expect("the new set is valid");
    assert_eq!(router.current().route("alice").expect("routed").answer.name, "new");
    // The request that started before the swap still decides with the old variant.
    assert_eq!(in_flight.answer.name, "old");
    assert_eq!(in_flight.answer.policy.info().name, "default");
    let evidence = serde_json::from_str(include_str!(
        "../../crates/faceauth-core/src/policy/selfcheck/authenticate_stranger.json"
    ))
    .expect("recorded evidence");
    let decision = in_flight.answer.policy.decide_authenticate_blocking(&evidence).expect("decides");
    assert_eq!(decision.reason, "FACE_MISMATCH");
}

/// A change the server cannot write to the policy directory must not serve: the
/// set in memory installed before its files were written, so a PUT answered 500
/// while the new variant took traffic, and the next reload dropped it silently.
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_change_that_cannot_be_written_does_not_serve() {
    use sha2::Digest;
    let dir = policy_dir("[[variant]]\nname = \"main\"\ncomponent = \"default_policy.wasm\"\nweight = 1\n");
    let server = start_with_dir(dir.path()).await;
    let strict = std::fs::read(common::policy_wasm("strict-policy")).expect("strict component");
    // The component's content-addressed file name taken by a directory: its write fails.
    let sha: String = sha2::Sha256::digest(&strict).iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir(dir.path().join(format!("blocked-{}.wasm", &sha[..12]))).expect("blocking directory");
    let form = Form::new().part("component", Part::bytes(strict).file_name("policy.wasm")).text("weight", "1");
    let (status, body) = server.send(Method::PUT, "/api/admin/policies/blocked", Some(form)).await;
    assert_eq!(status, 500, "{body}");
    let (_, now) = server.get("/api/admin/policies").await;
    assert_eq!(variant_names(&now), ["main"], "a change that was not written serves: {now}");
    assert!(now["last_error"].as_str().is_some_and(|e| e.contains("blocked")), "{now}");
    let on_disk = std::fs::read_to_string(dir.path().join("policies.toml")).expect("catalog");
    assert!(!on_disk.contains("blocked"), "{on_disk}");
}
