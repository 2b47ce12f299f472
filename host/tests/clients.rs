//! The example clients of examples/clients/ (Python with `requests`, Node.js with its
//! built-in `fetch`), run as subprocesses: against the real server (enroll, an
//! approved selfie and video, a rejection, an unknown user, reset), against a stub
//! answering 503 SERVER_BUSY with `Retry-After` (retried, then given up), and against
//! nothing (a transport error). Their documented exit codes: 0 approved or DONE,
//! 1 no answer from the API, 3 REJECTED by the policy, 4 refused by the server.
//!
//! `python3` with `requests` and `node` (18 or later) are required, not optional:
//! scripts/test.sh installs them.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Multipart, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use common::answers::{assert_approved, auth_rejected, done, enroll_rejected, enrolled};
use common::server::start_server;
use serde_json::{Value, json};

/// One run of a client may take this long at most (a video analysed on a slow machine).
const RUN_DEADLINE: Duration = Duration::from_secs(180);

#[derive(Clone, Copy, Debug)]
enum Client {
    Python,
    Js,
}

impl Client {
    const ALL: [Client; 2] = [Client::Python, Client::Js];

    fn name(self) -> &'static str {
        match self {
            Client::Python => "python",
            Client::Js => "js",
        }
    }

    /// The interpreter and the script.
    fn program(self) -> (&'static str, PathBuf) {
        let clients = common::repo_root().join("examples/clients");
        match self {
            Client::Python => ("python3", clients.join("python/faceauth_client.py")),
            Client::Js => ("node", clients.join("js/faceauth_client.mjs")),
        }
    }

    /// Fails the test, saying what to install, unless the interpreter and what the
    /// client needs are there: a missing tool must not make the test pass.
    async fn require(self) {
        let (program, probe, install) = match self {
            Client::Python => {
                ("python3", vec!["-c", "import requests"], "pip install -r examples/clients/python/requirements.txt")
            }
            Client::Js => (
                "node",
                vec![
                    "-e",
                    "process.exit(['fetch', 'FormData', 'Blob'].every((n) => typeof globalThis[n] === 'function') ? 0 : 1)",
                ],
                "apt-get install nodejs (18 or later)",
            ),
        };
        let status = tokio::process::Command::new(program).args(&probe).stdin(Stdio::null()).status().await;
        match status {
            Ok(status) if status.success() => {}
            outcome => panic!(
                "the {} client needs `{program} {}` to work ({outcome:?}): scripts/test.sh installs it ({install})",
                self.name(),
                probe.join(" ")
            ),
        }
    }
}

/// What a run of a client gave.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    /// The JSON answer it printed (one line).
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// Asserts the exit code and the printed answer.
    fn expect(&self, code: i32, answer: &Value) {
        assert_eq!((self.code, &self.json()), (code, answer), "{self:?}");
    }
}

/// Runs `client` with `--url url` and `args`, from the repository's root.
async fn run(client: Client, url: &str, args: &[&str]) -> Run {
    let (program, script) = client.program();
    let started = Instant::now();
    let output = tokio::process::Command::new(program)
        .arg(&script)
        .arg("--url")
        .arg(url)
        .args(args)
        .current_dir(common::repo_root())
        // The test decides everything the client uses: no server or token from the
        // environment, and loopback never through a proxy.
        .env_remove("FACEAUTH_URL")
        .env_remove("FACEAUTH_ADMIN_TOKEN")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(RUN_DEADLINE, output)
        .await
        .unwrap_or_else(|_| panic!("{} {args:?} did not finish within {RUN_DEADLINE:?}", client.name()))
        .unwrap_or_else(|e| panic!("{program} {}: {e}", script.display()));
    let run = Run {
        code: output.status.code().unwrap_or_else(|| panic!("{} {args:?} was killed: {output:?}", client.name())),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        took: started.elapsed(),
    };
    eprintln!("{} {args:?} -> {} in {:?}: {}{}", client.name(), run.code, run.took, run.stdout, run.stderr);
    run
}

fn fixture_path(name: &str) -> String {
    let path = common::repo_root().join("tests/fixtures").join(name);
    assert!(path.exists(), "{}", path.display());
    path.to_str().expect("utf-8 path").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn both_clients_enroll_authenticate_and_reset_on_the_real_server() {
    for client in Client::ALL {
        client.require().await;
    }
    let server = start_server().await;
    let card = fixture_path("id_card_person_a.jpg");
    for client in Client::ALL {
        // A name the query string must encode (spaces, an accent, parentheses).
        let user = format!("Alice José ({})", client.name());

        run(client, &server.base, &["enroll", &user, &card]).await.expect(0, &enrolled());
        for selfie in ["selfie_person_a.jpg", "video_person_a.mp4"] {
            let answer = run(client, &server.base, &["authenticate", &user, &fixture_path(selfie)]).await;
            assert_eq!(answer.code, 0, "{selfie}: {answer:?}");
            let score = assert_approved(&(200, answer.json()));
            assert!(score > 0.4 && score <= 1.0, "{selfie}: {score}");
        }
        // A policy decision: REJECTED is an answer, with its own exit code.
        run(client, &server.base, &["authenticate", &user, &fixture_path("selfie_person_b.jpg")])
            .await
            .expect(3, &auth_rejected("FACE_MISMATCH"));
        // Requests the server refuses (409, 404): the JSON is printed all the same.
        run(client, &server.base, &["enroll", &user, &card])
            .await
            .expect(4, &enroll_rejected("USERNAME_ALREADY_EXISTS"));
        let ghost = format!("ghost-{}", client.name());
        run(client, &server.base, &["authenticate", &ghost, &fixture_path("selfie_person_a.jpg")])
            .await
            .expect(4, &auth_rejected("UNKNOWN_USER"));
        // Reset (from loopback, no token configured) removes everyone.
        run(client, &server.base, &["reset"]).await.expect(0, &done());
        run(client, &server.base, &["authenticate", &user, &fixture_path("selfie_person_a.jpg")])
            .await
            .expect(4, &auth_rejected("UNKNOWN_USER"));
    }
}

/// A canned answer of the stub.
#[derive(Clone)]
struct Canned {
    status: StatusCode,
    retry_after: Option<&'static str>,
    content_type: &'static str,
    body: String,
}

impl Canned {
    fn json(status: StatusCode, retry_after: Option<&'static str>, body: &Value) -> Canned {
        Canned { status, retry_after, content_type: "application/json", body: body.to_string() }
    }
}

/// What the stub received: the query and each multipart field's name and size.
#[derive(Debug, PartialEq)]
struct Seen {
    query: Option<String>,
    fields: Vec<(String, usize)>,
}

/// A server answering `answers` in turn (the last one from then on), recording requests.
struct Stub {
    answers: Vec<Canned>,
    seen: Mutex<Vec<Seen>>,
}

async fn stub_answer(State(stub): State<Arc<Stub>>, uri: Uri, mut form: Multipart) -> Response {
    let mut fields = Vec::new();
    while let Some(field) = form.next_field().await.expect("multipart") {
        let name = field.name().unwrap_or_default().to_string();
        fields.push((name, field.bytes().await.expect("field").len()));
    }
    let canned = {
        let mut seen = stub.seen.lock().unwrap();
        seen.push(Seen { query: uri.query().map(str::to_string), fields });
        stub.answers[(seen.len() - 1).min(stub.answers.len() - 1)].clone()
    };
    let mut response = (canned.status, [(header::CONTENT_TYPE, canned.content_type)], canned.body).into_response();
    if let Some(after) = canned.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, after.parse().expect("header"));
    }
    response
}

/// Starts a stub on a loopback port: its base URL and its record.
async fn start_stub(answers: Vec<Canned>) -> (String, Arc<Stub>) {
    let stub = Arc::new(Stub { answers, seen: Mutex::new(Vec::new()) });
    let app = axum::Router::new().fallback(stub_answer).with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("stub serves") });
    (format!("http://{addr}"), stub)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_server_is_retried_after_its_retry_after_then_given_up() {
    for client in Client::ALL {
        client.require().await;
    }
    let selfie = fixture_path("selfie_person_a.jpg");
    let size = std::fs::read(&selfie).expect("fixture").len();
    let busy = Canned::json(StatusCode::SERVICE_UNAVAILABLE, Some("1"), &auth_rejected("SERVER_BUSY"));
    let approved = json!({"score": 0.81, "Decision": "APPROVED", "DecisionReason": "AUTHENTIFICATION_SUCCESS"});
    let upload = || Seen { query: Some("username=alice".to_string()), fields: vec![("auth_video".to_string(), size)] };
    for client in Client::ALL {
        // Busy twice, then the answer: waited for as told (1 s, twice), the whole
        // upload sent again each time.
        let (base, stub) =
            start_stub(vec![busy.clone(), busy.clone(), Canned::json(StatusCode::OK, None, &approved)]).await;
        let run_ = run(client, &base, &["authenticate", "alice", &selfie]).await;
        run_.expect(0, &approved);
        assert_eq!(*stub.seen.lock().unwrap(), [upload(), upload(), upload()], "{client:?}");
        assert!(run_.took >= Duration::from_millis(1900), "{client:?} did not wait for Retry-After: {run_:?}");
        assert!(run_.stderr.contains("retrying in 1 s"), "{client:?} says it retries: {run_:?}");

        // Busy for good: `--retries 1` is two requests, then the 503's answer, refused.
        let (base, stub) = start_stub(vec![busy.clone()]).await;
        run(client, &base, &["--retries", "1", "authenticate", "alice", &selfie])
            .await
            .expect(4, &auth_rejected("SERVER_BUSY"));
        assert_eq!(stub.seen.lock().unwrap().len(), 2, "{client:?}");

        // A 503 without Retry-After (not a "come back later") is not retried.
        let down = Canned::json(StatusCode::SERVICE_UNAVAILABLE, None, &auth_rejected("DATABASE_UNAVAILABLE"));
        let (base, stub) = start_stub(vec![down]).await;
        run(client, &base, &["authenticate", "alice", &selfie]).await.expect(4, &auth_rejected("DATABASE_UNAVAILABLE"));
        assert_eq!(stub.seen.lock().unwrap().len(), 1, "{client:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_answer_from_the_api_is_exit_1_with_nothing_on_stdout() {
    for client in Client::ALL {
        client.require().await;
    }
    let card = fixture_path("id_card_person_a.jpg");
    // A loopback port nobody listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("address"))
    };
    // Something that is not the API: an HTML 502 from a proxy.
    let proxy = Canned {
        status: StatusCode::BAD_GATEWAY,
        retry_after: None,
        content_type: "text/html",
        body: "<html><body>502 Bad Gateway</body></html>".to_string(),
    };
    let (not_the_api, _stub) = start_stub(vec![proxy]).await;
    for client in Client::ALL {
        for base in [&closed, &not_the_api] {
            let run = run(client, base, &["enroll", "alice", &card]).await;
            assert_eq!(run.code, 1, "{client:?} {base}: {run:?}");
            assert!(run.stdout.is_empty(), "{client:?} {base}: {run:?}");
            assert!(run.stderr.contains("faceauth_client: "), "{client:?} {base}: {run:?}");
        }
    }
}
