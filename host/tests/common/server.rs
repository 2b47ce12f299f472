//! The real `faceauth` binary with a temporary SQLite database, on the port the
//! operating system gives it (`FACEAUTH_LISTEN=127.0.0.1:0`): the harness reads the
//! bound address from the server's own `listening on http://ADDR` log line, so there
//! is no port to race for and no readiness polling. Both output streams are read
//! (the log goes to stdout) and echoed to the test's stderr.

use std::io::{BufRead, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use reqwest::{Method, RequestBuilder};
use serde_json::Value;

pub const MAX_UPLOAD: usize = 3 * 1024 * 1024;

/// How long a server may take to load its models and policies and start listening.
/// Generous for slow CI; a server that exits first fails at once.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// What the binary logs once its listener is bound (crates/faceauth-http/src/server.rs, `run`).
const LISTENING: &str = "listening on http://";

pub struct Server {
    child: Child,
    /// `http://ADDR`, the address the server reported.
    pub base: String,
    /// The server's data directory (its SQLite database).
    pub data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary under test: this build's, or `FACEAUTH_TEST_SERVER_BIN` (an earlier
/// build, to show that a new test fails on the code before its fix).
pub fn server_binary() -> std::path::PathBuf {
    std::env::var_os("FACEAUTH_TEST_SERVER_BIN").map_or_else(|| env!("CARGO_BIN_EXE_faceauth").into(), Into::into)
}

pub async fn start_server() -> Server {
    start_server_with(&[]).await
}

pub async fn start_server_with(extra_env: &[(&str, &str)]) -> Server {
    start_server_under(&[], extra_env).await
}

/// The server started by a wrapper command (`prlimit --nofile=256 --`, ...) that
/// runs the binary given as its last argument.
pub async fn start_server_under(wrapper: &[&str], extra_env: &[(&str, &str)]) -> Server {
    let data = tempfile::tempdir().expect("tempdir");
    let config = super::engine_config("default-policy");
    // The harness reads an info line of the `faceauth` target: keep it on whatever
    // RUST_LOG says (a later `faceauth=...` directive of the caller's still wins).
    let log_filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.is_empty() => format!("faceauth=info,{filter}"),
        _ => "info,ort=warn,wasmtime=warn,cranelift=warn".to_string(),
    };
    let binary = server_binary();
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(&binary);
            c
        }
        None => Command::new(&binary),
    };
    let mut child = command
        .arg("serve")
        .env("FACEAUTH_LISTEN", "127.0.0.1:0")
        .env("FACEAUTH_DATA_DIR", data.path())
        .env("FACEAUTH_MAX_UPLOAD_BYTES", MAX_UPLOAD.to_string())
        .env("FACEAUTH_MODELS_DIR", &config.models_dir)
        .env("FACEAUTH_POLICY", &config.policy)
        .env("FACEAUTH_ONNXRUNTIME_LIB", config.onnxruntime_lib().expect("ort"))
        .env("RUST_LOG", log_filter)
        .env("NO_COLOR", "1")
        .env_remove("DATABASE_URL")
        .env_remove("FACEAUTH_ADMIN_TOKEN")
        .envs(extra_env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("server starts");
    let (found, listening) = tokio::sync::oneshot::channel();
    let watch = Arc::new(Mutex::new(Watch { found: Some(found), said: String::new(), open: 2 }));
    let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("piped stdout"));
    let stderr: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("piped stderr"));
    for (name, stream) in [("stdout", stdout), ("stderr", stderr)] {
        let watch = watch.clone();
        std::thread::Builder::new()
            .name(format!("faceauth-{name}"))
            .spawn(move || forward(stream, &watch))
            .expect("output thread");
    }
    let mut server = Server { child, base: String::new(), data };
    match tokio::time::timeout(START_DEADLINE, listening).await {
        Ok(Ok(Ok(addr))) => server.base = format!("http://{addr}"),
        Ok(Ok(Err(output))) => {
            let status = server.exit_status();
            panic!("the server closed its output without listening ({status}); its output:\n{output}");
        }
        Ok(Err(_)) => panic!("the server's output thread ended without a word"),
        Err(_) => panic!(
            "the server did not report `{LISTENING}ADDR` within {} s (its output is above; \
             does RUST_LOG hide faceauth=info?)",
            START_DEADLINE.as_secs()
        ),
    }
    server
}

/// What the output threads share: where to report the address, what the server
/// said before it, and how many of its two streams are still open.
struct Watch {
    found: Option<tokio::sync::oneshot::Sender<Result<SocketAddr, String>>>,
    said: String,
    open: usize,
}

/// Echoes every line of one of the server's output streams to the test's stderr
/// (captured with the test's output) and reports, once, the address of the
/// `listening on` line; or, if both streams end first, everything the server said.
/// (The log goes to stdout today; either stream is read for it.)
fn forward(stream: Box<dyn Read + Send>, watch: &Mutex<Watch>) {
    let mut reader = std::io::BufReader::new(stream);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match reader.read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\r', '\n']);
        eprintln!("{line}");
        let mut watch = watch.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if watch.found.is_none() {
            continue;
        }
        match listening_address(line) {
            Some(addr) => {
                let _ = watch.found.take().map(|found| found.send(Ok(addr)));
                watch.said = String::new();
            }
            None => {
                watch.said.push_str(line);
                watch.said.push('\n');
            }
        }
    }
    let mut watch = watch.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    watch.open -= 1;
    if watch.open == 0 {
        let said = std::mem::take(&mut watch.said);
        let _ = watch.found.take().map(|found| found.send(Err(said)));
    }
}

/// The address in a `listening on http://ADDR` log line, whatever prefix
/// (timestamp, level) and ANSI colour codes the line carries.
pub fn listening_address(line: &str) -> Option<SocketAddr> {
    let plain = strip_ansi(line);
    let (_, rest) = plain.split_once(LISTENING)?;
    rest.split(|c: char| c.is_whitespace() || c == '/').next()?.parse().ok()
}

/// `text` without ANSI escape sequences (`ESC [ ... final-byte`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            // Parameters and intermediates up to the final byte (@ to ~).
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// A form with the upload under `field` and an extra text field the server ignores.
pub fn upload_form(field: &str, bytes: Vec<u8>) -> Form {
    Form::new()
        .text("note", "extra fields are ignored")
        .part(field.to_string(), Part::bytes(bytes).file_name("upload.bin"))
}

/// The answer as (status, JSON body).
pub async fn answer(request: RequestBuilder) -> (u16, Value) {
    let r = request.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON body"))
}

impl Server {
    /// Sends a signal (`TERM`, `INT`) to the server process.
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{name}");
    }

    /// The exit status if the process ends within `within`.
    pub async fn exited_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// How the process ended, once its output has closed: killed if it is somehow
    /// still running a few seconds later.
    fn exit_status(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.to_string();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        "still running with its output closed; killed".to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to `path` (with its query, if any), to finish and send.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        reqwest::Client::new().request(method, self.url(path))
    }

    pub async fn post(&self, path: &str, query: Option<&str>, field: &str, bytes: Option<Vec<u8>>) -> (u16, Value) {
        let path = match query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        let form = match bytes {
            Some(bytes) => upload_form(field, bytes),
            None => Form::new().text("note", "extra fields are ignored"),
        };
        answer(self.request(Method::POST, &path).multipart(form)).await
    }

    /// Any request with an optional multipart form; the answer as (status, JSON).
    pub async fn send(&self, method: Method, path: &str, form: Option<Form>) -> (u16, Value) {
        let mut request = self.request(method, path);
        if let Some(form) = form {
            request = request.multipart(form);
        }
        answer(request).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(Method::GET, path, None).await
    }

    pub async fn enroll(&self, user: &str, fixture: &str) -> (u16, Value) {
        let q = format!("username={user}");
        self.post("/api/enroll", Some(&q), "cin_file", Some(super::fixture(fixture))).await
    }

    pub async fn authenticate(&self, user: &str, fixture: &str) -> (u16, Value) {
        let q = format!("username={user}");
        self.post("/api/authentificate", Some(&q), "auth_video", Some(super::fixture(fixture))).await
    }
}
