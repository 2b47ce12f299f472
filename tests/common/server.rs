//! The real `faceauth` binary on a free port with a temporary SQLite database.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::Value;

pub const MAX_UPLOAD: usize = 3 * 1024 * 1024;

pub struct Server {
    child: Child,
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

pub async fn start_server() -> Server {
    start_server_with(&[]).await
}

pub async fn start_server_with(extra_env: &[(&str, &str)]) -> Server {
    let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let data = tempfile::tempdir().expect("tempdir");
    let config = super::engine_config("default-policy");
    let child = Command::new(env!("CARGO_BIN_EXE_faceauth"))
        .arg("serve")
        .env("FACEAUTH_LISTEN", format!("127.0.0.1:{port}"))
        .env("FACEAUTH_DATA_DIR", data.path())
        .env("FACEAUTH_MAX_UPLOAD_BYTES", MAX_UPLOAD.to_string())
        .env("FACEAUTH_MODELS_DIR", &config.models_dir)
        .env("FACEAUTH_POLICY", &config.policy)
        .env("FACEAUTH_ONNXRUNTIME_LIB", config.onnxruntime_lib().expect("ort"))
        .env_remove("DATABASE_URL")
        .env_remove("FACEAUTH_ADMIN_TOKEN")
        .envs(extra_env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("server starts");
    let server = Server { child, base: format!("http://127.0.0.1:{port}"), data };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = client.get(format!("{}/health", server.base)).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "server did not become ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server
}

impl Server {
    /// Sends a signal (`TERM`, `INT`) to the server process.
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{name}");
    }

    /// The exit status if the process ends within `within`.
    pub async fn exited_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    pub async fn post(&self, path: &str, query: Option<&str>, field: &str, bytes: Option<Vec<u8>>) -> (u16, Value) {
        let mut url = format!("{}{path}", self.base);
        if let Some(q) = query {
            url.push('?');
            url.push_str(q);
        }
        let mut form = Form::new().text("note", "extra fields are ignored");
        if let Some(bytes) = bytes {
            form = form.part(field.to_string(), Part::bytes(bytes).file_name("upload.bin"));
        }
        let r = reqwest::Client::new().post(url).multipart(form).send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    /// Any request with an optional multipart form; the answer as (status, JSON).
    pub async fn send(&self, method: reqwest::Method, path: &str, form: Option<Form>) -> (u16, Value) {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.base));
        if let Some(form) = form {
            request = request.multipart(form);
        }
        let r = request.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
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
