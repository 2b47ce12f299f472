//! The user store's tests, and the helpers the other store tests share
//! (`test_postgres`, `connect_for_test`).

use std::path::Path;
use std::time::Duration;

use sqlx::Row;

use super::*;
use crate::vision::FaceEmbedding;

fn embedding(seed: f32) -> FaceEmbedding {
    let raw: Vec<f32> = (0..512).map(|i| (i as f32 * seed).sin() + 0.01).collect();
    FaceEmbedding::from_raw(&raw).expect("valid")
}

/// `reset` erases every user of the database: only on a database of its own
/// (not the PostgreSQL shared with the other tests running at the same time).
async fn exercise(store: UserStore, reset: bool) {
    if reset {
        store.reset().await.expect("reset");
    }
    for name in ["alice", "bob"] {
        store.erase(name).await.expect("erase");
    }
    store.insert("alice", &embedding(0.3), "m1").await.expect("insert");
    assert!(matches!(store.insert("alice", &embedding(0.5), "m1").await, Err(StoreError::DuplicateUsername)));
    let found = store.find("alice").await.expect("find").expect("present");
    assert!((found.embedding.cosine(&embedding(0.3)) - 1.0).abs() < 1e-5);
    assert_eq!(found.model_version, "m1");
    assert!(store.find("bob").await.expect("find").is_none());
    store.insert("bob", &embedding(0.7), "m1").await.expect("insert");
    if reset {
        assert_eq!(store.reset().await.expect("reset").users, 2);
        assert_eq!(store.count().await.expect("count"), 0);
    }
}

#[tokio::test]
async fn sqlite_store_roundtrip_duplicate_and_reset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    exercise(UserStore::connect(&url).await.expect("connect"), true).await;
}

#[tokio::test]
async fn concurrent_enrollments_of_one_username_yield_one_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = UserStore::connect(&url).await.expect("connect");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move { s.insert("same", &embedding(0.1 + i as f32), "m1").await })
        })
        .collect();
    let mut ok = 0;
    let mut dup = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(()) => ok += 1,
            Err(StoreError::DuplicateUsername) => dup += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((ok, dup), (1, 7));
}

/// The PostgreSQL of the CI machines (127.0.0.1:5432, database `test`); set
/// FACEAUTH_TEST_POSTGRES_URL to use another, or to `skip` to skip (`None`).
pub(crate) async fn test_postgres() -> Option<UserStore> {
    let url = std::env::var("FACEAUTH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    if url == "skip" {
        eprintln!("SKIPPED: FACEAUTH_TEST_POSTGRES_URL=skip");
        return None;
    }
    let store = connect_for_test(&url, StoreOptions::default()).await;
    assert_eq!(store.backend(), Backend::Postgres);
    Some(store)
}

/// The pseudonym key of the shared test PostgreSQL: one for every test and run
/// (the database keeps a check of it and refuses another).
const TEST_PSEUDONYM_KEY: &str = "7e57000000000000000000000000000000000000000000000000000000000001";

/// Connects; PostgreSQL with the test key file (SQLite keeps its own beside the database).
pub(crate) async fn connect_for_test(url: &str, mut options: StoreOptions) -> UserStore {
    use sqlx::Connection;
    if url.starts_with("postgres") {
        let path = std::env::temp_dir().join("faceauth-test-postgres-pseudonym.key");
        // Whole or not at all for the tests reading it at the same time.
        let temp = tempfile::NamedTempFile::new_in(std::env::temp_dir()).expect("temp file");
        std::fs::write(temp.path(), TEST_PSEUDONYM_KEY).expect("write");
        temp.persist(&path).expect("persist");
        // A test database keyed by an earlier run (or older code) is put on the test key.
        if let Ok(mut conn) = sqlx::AnyConnection::connect(url).await {
            let _ = sqlx::query("DELETE FROM settings WHERE name = 'pseudonym_key'").execute(&mut conn).await;
            let _ = sqlx::query("UPDATE settings SET value = $1 WHERE name = 'pseudonym_key_check'")
                .bind(pseudonym::check(TEST_PSEUDONYM_KEY))
                .execute(&mut conn)
                .await;
        }
        options.pseudonym_key_file = Some(path);
    }
    UserStore::connect_with(url, options)
        .await
        .expect("PostgreSQL must be reachable (or set FACEAUTH_TEST_POSTGRES_URL=skip)")
}

#[tokio::test]
async fn postgres_store_roundtrip_duplicate_and_reset() {
    if let Some(store) = test_postgres().await {
        exercise(store, false).await;
    }
}

/// Issue 11, defect 9: a table another session has locked is refused as
/// unavailable within about the timeout, not after a 30 s hang as a 500.
async fn locked_table_is_unavailable(url: &str, lock: &str) {
    let timeout = Duration::from_millis(300);
    let store = connect_for_test(url, StoreOptions { timeout, ..Default::default() }).await;
    let locker = connect_for_test(url, StoreOptions::default()).await;
    let mut conn = locker.pool.acquire().await.expect("connection");
    sqlx::raw_sql(lock).execute(&mut *conn).await.expect("lock");
    let started = std::time::Instant::now();
    let err = store.insert("locked-out", &embedding(0.2), "m1").await.expect_err("the table is locked");
    let waited = started.elapsed();
    sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await.expect("unlock");
    assert!(err.is_unavailable(), "{err}");
    // Not a speed check: the default would be 5 s (SQLite) or forever (PostgreSQL).
    assert!(waited < Duration::from_secs(4), "waited {waited:?}");
    // Once the lock is gone the store works again.
    store.insert("locked-out", &embedding(0.2), "m1").await.expect("insert");
    store.ping().await.expect("ping");
}

#[tokio::test]
async fn sqlite_locked_table_is_unavailable_in_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    locked_table_is_unavailable(&url, "BEGIN IMMEDIATE").await;
}

#[tokio::test]
async fn postgres_locked_table_is_unavailable_in_time() {
    if let Some(store) = test_postgres().await {
        sqlx::query("DELETE FROM users WHERE username = 'locked-out'").execute(&store.pool).await.expect("clean");
        let url = std::env::var("FACEAUTH_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
        locked_table_is_unavailable(&url, "BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE").await;
        sqlx::query("DELETE FROM users WHERE username = 'locked-out'").execute(&store.pool).await.expect("clean");
    }
}

fn keys(spec: &str) -> StoreOptions {
    let keys = sealing::TemplateKeys::parse(spec).expect("valid").expect("keys");
    StoreOptions { template_keys: Some(std::sync::Arc::new(keys)), ..Default::default() }
}

const K1: &str = "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "k2=ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

/// Templates are sealed at rest: the stored bytes are not the template, the
/// row carries its key id, and a store without that key cannot read it.
async fn templates_are_sealed(url: &str, username: &str) {
    let store = connect_for_test(url, keys(K1)).await;
    let _ = sqlx::query("DELETE FROM users WHERE username = $1").bind(username).execute(&store.pool).await;
    store.insert(username, &embedding(0.3), "m1").await.expect("insert");
    let row = sqlx::query("SELECT embedding, key_id FROM users WHERE username = $1")
        .bind(username)
        .fetch_one(&store.pool)
        .await
        .expect("row");
    let (stored, key_id): (Vec<u8>, Option<String>) = (row.get("embedding"), row.get("key_id"));
    assert_eq!(key_id.as_deref(), Some("k1"));
    assert_ne!(stored, embedding(0.3).to_bytes());
    let found = store.find(username).await.expect("find").expect("present");
    assert!((found.embedding.cosine(&embedding(0.3)) - 1.0).abs() < 1e-5);
    let clear = connect_for_test(url, StoreOptions::default()).await;
    assert!(matches!(clear.find(username).await, Err(StoreError::SealedTemplate { .. })));
    let other = connect_for_test(url, keys(K2)).await;
    assert!(matches!(other.find(username).await, Err(StoreError::SealedTemplate { .. })));
    sqlx::query("DELETE FROM users WHERE username = $1").bind(username).execute(&store.pool).await.expect("clean");
}

#[tokio::test]
async fn sqlite_templates_are_sealed_and_rotate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    templates_are_sealed(&url, "sealed").await;
    // Rotation: a row in clear and a row under k1; the new key first, the old kept.
    UserStore::connect(&url).await.expect("connect").insert("clear", &embedding(0.4), "m1").await.expect("insert");
    UserStore::connect_with(&url, keys(K1))
        .await
        .expect("connect")
        .insert("old", &embedding(0.5), "m1")
        .await
        .expect("insert");
    let rotated = UserStore::connect_with(&url, keys(&format!("{K2},{K1}"))).await.expect("connect");
    assert!(rotated.find("old").await.expect("the old key still opens").is_some());
    assert_eq!(rotated.rekey().await.expect("rekey"), 2);
    assert_eq!(rotated.rekey().await.expect("rekey again"), 0, "nothing left to re-seal");
    // Now the new key alone opens both.
    let new_only = UserStore::connect_with(&url, keys(K2)).await.expect("connect");
    for (name, seed) in [("clear", 0.4), ("old", 0.5)] {
        let found = new_only.find(name).await.expect("find").expect("present");
        assert!((found.embedding.cosine(&embedding(seed)) - 1.0).abs() < 1e-5, "{name}");
    }
}

#[tokio::test]
async fn postgres_templates_are_sealed() {
    if test_postgres().await.is_some() {
        let url = std::env::var("FACEAUTH_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
        templates_are_sealed(&url, "sealed-postgres").await;
    }
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("t.db").display())
}

fn settings_row(dir: &Path, name: &str) -> Option<String> {
    let db = dir.join("t.db");
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(format!("SELECT value FROM settings WHERE name = '{name}'"))
        .output()
        .expect("sqlite3");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// Issue 22, item 9: a database whose `settings.pseudonym_key` row keyed its
/// pseudonyms (before the key file) has it moved to the file and deleted: the
/// same names keep the same pseudonyms, and the database no longer holds the key.
#[tokio::test]
async fn the_pseudonym_key_moves_out_of_the_database_and_pseudonyms_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path());
    let key_file = dir.path().join(pseudonym::FILE_NAME);
    // The database as older code left it: the key in `settings`, no file, no check.
    let store = UserStore::connect(&url).await.expect("connect");
    let legacy = "0123456789abcdef".repeat(4);
    sqlx::query("DELETE FROM settings").execute(&store.pool).await.expect("clear");
    sqlx::query("INSERT INTO settings (name, value) VALUES ('pseudonym_key', $1)")
        .bind(&legacy)
        .execute(&store.pool)
        .await
        .expect("legacy key");
    store.close().await;
    std::fs::remove_file(&key_file).expect("the first start made a key file");

    let store = UserStore::connect(&url).await.expect("connect");
    let before = {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(legacy.as_bytes()).expect("key");
        mac.update(b"carol");
        let hex: String = mac.finalize().into_bytes().iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("{ERASED_PREFIX}{hex}")
    };
    assert_eq!(store.pseudonym("carol"), before, "the moved key gives the same pseudonyms");
    store.close().await;
    assert_eq!(std::fs::read_to_string(&key_file).expect("key file").trim(), legacy);
    assert_eq!(settings_row(dir.path(), "pseudonym_key"), None, "the key left the database");
    assert!(settings_row(dir.path(), "pseudonym_key_check").is_some());
    let db = std::fs::read(dir.path().join("t.db")).expect("database");
    assert!(!db.windows(legacy.len()).any(|w| w == legacy.as_bytes()), "the key's bytes are overwritten");
    // Restarted: the same key.
    let store = UserStore::connect(&url).await.expect("connect");
    assert_eq!(store.pseudonym("carol"), before);
}

/// Item 9: the key file missing, or another key, is refused at start-up rather
/// than silently giving erased users a second pseudonym.
#[tokio::test]
async fn a_missing_or_foreign_pseudonym_key_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path());
    let key_file = dir.path().join(pseudonym::FILE_NAME);
    let first = UserStore::connect(&url).await.expect("connect").pseudonym("dave");
    let kept = std::fs::read_to_string(&key_file).expect("key file made");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    std::fs::remove_file(&key_file).expect("remove");
    let missing = UserStore::connect(&url).await.map(|_| ()).expect_err("no key file");
    assert!(matches!(missing, StoreError::PseudonymKey(pseudonym::PseudonymKeyError::Missing(_))), "{missing}");
    assert!(!key_file.exists(), "no new key was made");
    std::fs::write(&key_file, "ab".repeat(32)).expect("write");
    let foreign = UserStore::connect(&url).await.map(|_| ()).expect_err("another key");
    assert!(matches!(foreign, StoreError::PseudonymKey(pseudonym::PseudonymKeyError::Mismatch(_))), "{foreign}");
    std::fs::write(&key_file, "not a key").expect("write");
    let malformed = UserStore::connect(&url).await.map(|_| ()).expect_err("not a key");
    assert!(matches!(malformed, StoreError::PseudonymKey(pseudonym::PseudonymKeyError::Malformed(_))));
    // Given elsewhere, by name.
    let elsewhere = dir.path().join("keys/pseudonym.key");
    std::fs::create_dir_all(elsewhere.parent().expect("parent")).expect("dir");
    std::fs::write(&elsewhere, &kept).expect("write");
    let options = StoreOptions { pseudonym_key_file: Some(elsewhere), ..Default::default() };
    assert_eq!(UserStore::connect_with(&url, options).await.expect("connect").pseudonym("dave"), first);
}

/// Issue 22, item 13: the SQLite file deleted under the running store: its
/// connections do not make an empty database; every operation and the readiness
/// ping are refused as unavailable.
#[tokio::test]
async fn a_deleted_sqlite_file_is_unavailable_and_not_made_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path());
    let store = UserStore::connect(&url).await.expect("connect");
    store.insert("erin", &embedding(0.3), "m1").await.expect("insert");
    store.ping().await.expect("ping");
    for name in ["t.db", "t.db-wal", "t.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(name));
    }
    for _ in 0..10 {
        let err = store.ping().await.expect_err("no database");
        assert!(err.is_unavailable(), "{err}");
    }
    let err = store.insert("frank", &embedding(0.4), "m1").await.expect_err("no database");
    assert!(err.is_unavailable(), "{err}");
    let err = store.find("erin").await.expect_err("no database");
    assert!(err.is_unavailable(), "{err}");
    assert!(!dir.path().join("t.db").exists(), "the file was made again");
}

#[test]
fn redacts_passwords() {
    assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
    assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
}
