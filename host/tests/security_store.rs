//! Issue 22 (security), storage items against the real binary: an erased user stays
//! erased for whoever holds a copy of the database or the log (item 9), and a
//! database file deleted under the running server is answered unavailable, not
//! silently replaced by an empty one (item 13).
#![allow(clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::answers::{assert_approved, enrolled};
use common::postgres::{ScratchDatabase, postgres_admin_url};
use common::server::{Server, listening_address, server_binary, start_server, start_server_with};
use reqwest::Method;
use sqlx::{Connection, Row};

/// A name that must not be found anywhere once erased.
const SECRET_NAME: &str = "bob-the-secret";

/// The real binary on `data` (kept across restarts), its log lines kept for the test
/// to read (the harness's `Server` only echoes them).
struct LoggedServer {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for LoggedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real binary's `serve` on `data`, with `extra_env`, its output piped.
fn serve_command(data: &Path, extra_env: &[(&str, &str)]) -> Command {
    let config = common::engine_config("default-policy");
    let mut command = Command::new(server_binary());
    command
        .arg("serve")
        .env("FACEAUTH_LISTEN", "127.0.0.1:0")
        .env("FACEAUTH_DATA_DIR", data)
        .env("FACEAUTH_MODELS_DIR", &config.models_dir)
        .env("FACEAUTH_POLICY", &config.policy)
        .env("FACEAUTH_ONNXRUNTIME_LIB", config.onnxruntime_lib().expect("ort"))
        .env("RUST_LOG", "info,ort=warn,wasmtime=warn,cranelift=warn")
        .env("NO_COLOR", "1")
        .env_remove("DATABASE_URL")
        .env_remove("FACEAUTH_ADMIN_TOKEN")
        .env_remove("FACEAUTH_PSEUDONYM_KEY_FILE")
        .envs(extra_env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

impl LoggedServer {
    async fn start(data: &Path) -> Self {
        let mut child = serve_command(data, &[]).spawn().expect("server starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (found, listening) = tokio::sync::mpsc::unbounded_channel::<String>();
        let streams: [Box<dyn std::io::Read + Send>; 2] =
            [Box::new(child.stdout.take().expect("stdout")), Box::new(child.stderr.take().expect("stderr"))];
        for stream in streams {
            let (log, found) = (log.clone(), found.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("{line}");
                    if let Some(addr) = listening_address(&line) {
                        let _ = found.send(format!("http://{addr}"));
                    }
                    log.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            });
        }
        drop(found);
        let mut listening = listening;
        let base = tokio::time::timeout(Duration::from_secs(60), listening.recv())
            .await
            .expect("the server listens within 60 s")
            .expect("the server said where it listens");
        Self { child, base, log }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn upload(&self, path: &str, user: &str, field: &str, fixture: &str) -> (u16, serde_json::Value) {
        let url = format!("{}{path}?username={user}", self.base);
        let form = common::server::upload_form(field, common::fixture(fixture));
        common::server::answer(reqwest::Client::new().post(url).multipart(form)).await
    }

    /// Enrolls `user`, authenticates it (an audit row) and erases it.
    async fn enroll_authenticate_erase(&self, user: &str) {
        assert_eq!(self.upload("/api/enroll", user, "cin_file", "id_card_person_a.jpg").await, (200, enrolled()));
        assert_approved(&self.upload("/api/authentificate", user, "auth_video", "selfie_person_a.jpg").await);
        let erased =
            reqwest::Client::new().delete(format!("{}/api/admin/users/{user}", self.base)).send().await.expect("erase");
        assert_eq!(erased.status().as_u16(), 200);
    }
}

/// The text values of a query's first column, on SQLite or PostgreSQL.
macro_rules! column {
    ($conn:expr, $sql:expr) => {
        sqlx::query($sql)
            .fetch_all(&mut *$conn)
            .await
            .expect($sql)
            .iter()
            .map(|row| row.get::<String, _>(0))
            .collect::<Vec<String>>()
    };
}

/// Every row of the `settings` table, (name, value).
macro_rules! settings {
    ($conn:expr) => {
        sqlx::query("SELECT name, value FROM settings")
            .fetch_all(&mut *$conn)
            .await
            .expect("settings")
            .iter()
            .map(|row| (row.get::<String, _>(0), row.get::<String, _>(1)))
            .collect::<Vec<(String, String)>>()
    };
}

/// The SQLite database of a data directory, opened read-only as anyone who copied
/// the file would.
async fn open_copy(data: &Path) -> sqlx::SqliteConnection {
    let url = format!("sqlite://{}?mode=ro", data.join("faceauth.db").display());
    sqlx::SqliteConnection::connect(&url).await.expect("the database opens")
}

/// `erased:` and the first 16 bytes of HMAC-SHA256(key, name), hex (as the server makes it).
fn pseudonym_under(key: &[u8], name: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(name.as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("erased:{hex}")
}

/// Item 9: the key of erased users' pseudonyms was a row of the same database, so a
/// copy of the database re-identified them (`HMAC(key, name)` for a guessed name).
/// Now it is a file beside the database (mode 0600), not in it, and the pseudonym
/// of one name stays the same across restarts.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_of_the_database_does_not_re_identify_erased_users() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = LoggedServer::start(data.path()).await;
    server.enroll_authenticate_erase(SECRET_NAME).await;
    drop(server);

    let mut db = open_copy(data.path()).await;
    let names = column!(&mut db, "SELECT DISTINCT username FROM decisions");
    assert_eq!(names.len(), 1, "{names:?}");
    let pseudonym = names[0].clone();
    assert!(pseudonym.starts_with("erased:"), "{pseudonym}");
    // Nothing stored in the database keys the pseudonym of the guessed name.
    let settings = settings!(&mut db);
    for (name, value) in &settings {
        assert_ne!(pseudonym_under(value.as_bytes(), SECRET_NAME), pseudonym, "settings.{name} re-identifies");
    }
    assert!(!settings.iter().any(|(name, _)| name == "pseudonym_key"), "{settings:?}");
    db.close().await.expect("close");

    // The key is a file of the data directory, readable by its owner only.
    let key_file = data.path().join("pseudonym.key");
    let key = std::fs::read_to_string(&key_file).expect("pseudonym.key beside the database");
    assert_eq!(pseudonym_under(key.trim().as_bytes(), SECRET_NAME), pseudonym, "the file holds the key");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    // Nor do the database's files hold the key's bytes, or the name, anywhere (a
    // deleted row's bytes stay in the file unless overwritten).
    for entry in std::fs::read_dir(data.path()).expect("data dir") {
        let path = entry.expect("entry").path();
        if path == key_file {
            continue;
        }
        let bytes = std::fs::read(&path).expect("read");
        for needle in [key.trim(), SECRET_NAME] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} in {}", path.display());
        }
    }

    // Restarted on the same files, the same name gets the same pseudonym.
    let server = LoggedServer::start(data.path()).await;
    server.enroll_authenticate_erase(SECRET_NAME).await;
    drop(server);
    let mut db = open_copy(data.path()).await;
    let rows = column!(&mut db, "SELECT username FROM decisions");
    // An enrollment and an authentication by each server.
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.iter().all(|name| *name == pseudonym), "{rows:?}");
}

/// Item 9: the request log named the erased user (`DELETE
/// /api/admin/users/bob-the-secret`); it names the route instead.
#[tokio::test(flavor = "multi_thread")]
async fn the_request_log_does_not_name_the_user() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = LoggedServer::start(data.path()).await;
    server.enroll_authenticate_erase(SECRET_NAME).await;
    // A path that matches no route is not logged either.
    let unknown =
        reqwest::get(format!("{}/api/users/{SECRET_NAME}?username={SECRET_NAME}", server.base)).await.expect("request");
    assert_eq!(unknown.status().as_u16(), 404);
    // The log line of the last request is written once its answer is sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = server.log();
    assert!(log.iter().any(|line| line.contains("DELETE /api/admin/users/{username} 200")), "{log:#?}");
    let named: Vec<_> = log.iter().filter(|line| line.contains(SECRET_NAME)).collect();
    assert!(named.is_empty(), "{named:#?}");
}

/// The server's database files (the database, its WAL and shared memory).
fn database_files(server: &Server) -> Vec<std::path::PathBuf> {
    ["faceauth.db", "faceauth.db-wal", "faceauth.db-shm"].iter().map(|f| server.data.path().join(f)).collect()
}

/// Item 13: the SQLite file deleted under the running server: new connections made
/// an empty database (enroll 500 "no such table") while `/ready` said ready. Now
/// requests and `/ready` answer 503 and no file is made.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_database_file_is_unavailable_not_recreated() {
    let server = start_server().await;
    assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await, (200, enrolled()));
    assert_eq!(server.get("/ready").await.0, 200);

    for file in database_files(&server) {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("{}: {e}", file.display()),
        }
    }

    let (status, body) = server.get("/ready").await;
    assert_eq!(status, 503, "{body}");
    let (status, body) = server.enroll("bob", "id_card_person_a.jpg").await;
    assert_eq!((status, &body["DecisionReason"]), (503, &serde_json::json!("DATABASE_UNAVAILABLE")), "{body}");
    let (status, body) = server.authenticate("alice", "selfie_person_a.jpg").await;
    assert_eq!((status, &body["DecisionReason"]), (503, &serde_json::json!("DATABASE_UNAVAILABLE")), "{body}");
    // Every connection of the pool is tried again, not only the first.
    for _ in 0..10 {
        assert_eq!(server.get("/ready").await.0, 503);
    }
    let (status, body) = server.send(Method::GET, "/api/admin/stats", None).await;
    assert_eq!(status, 503, "{body}");
    for file in database_files(&server) {
        assert!(!file.exists(), "{} was made again", file.display());
    }
}

/// Item 9 on PostgreSQL: the key is a file there too (`--pseudonym-key-file`, by
/// default in the data directory). Replicas on one database share the file (started
/// at once, they agree on one key), the database holds no key, and a replica with
/// another key (its own data directory's new one) is refused at start-up rather than
/// giving erased users a second pseudonym.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_replicas_share_one_key_file_and_another_key_is_refused() {
    let Some(admin_url) = postgres_admin_url() else { return };
    let db = ScratchDatabase::create(&admin_url).await;
    let env = db.replica_env();
    let key_file = env[1].1;
    let (a, b) = tokio::join!(start_server_with(&env), start_server_with(&env));
    for server in [&a, &b] {
        assert_eq!(server.enroll(SECRET_NAME, "id_card_person_a.jpg").await, (200, enrolled()));
        assert_approved(&server.authenticate(SECRET_NAME, "selfie_person_a.jpg").await);
        let path = format!("/api/admin/users/{SECRET_NAME}");
        assert_eq!(server.send(Method::DELETE, &path, None).await.0, 200);
    }

    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let settings = settings!(&mut conn);
    assert!(!settings.iter().any(|(name, _)| name == "pseudonym_key"), "{settings:?}");
    let names = column!(&mut conn, "SELECT DISTINCT username FROM decisions");
    let key = std::fs::read_to_string(key_file).expect("the shared key file");
    assert_eq!(names, [pseudonym_under(key.trim().as_bytes(), SECRET_NAME)], "one pseudonym from both replicas");
    for (name, value) in &settings {
        assert_ne!(pseudonym_under(value.as_bytes(), SECRET_NAME), names[0], "settings.{name} re-identifies");
    }
    conn.close().await.expect("close");

    // A third replica on its own data directory (a new key of its own): refused.
    let data = tempfile::tempdir().expect("tempdir");
    let mut third = tokio::process::Command::from(serve_command(data.path(), &[("DATABASE_URL", db.url.as_str())]));
    third.kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), third.output())
        .await
        .expect("the replica with another key exits instead of serving")
        .expect("output");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("pseudonym key file"), "{said}");
    assert!(!said.contains("listening on"), "{said}");

    drop((a, b));
    db.drop_now().await;
}
