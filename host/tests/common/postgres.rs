//! A PostgreSQL database of its own for one test (the CI machine's server, as the
//! store tests use), for tests that run replicas of the real binary on it.

use sqlx::Connection;

/// The CI machine's PostgreSQL (as the store tests use), or `None` when told to skip.
pub fn postgres_admin_url() -> Option<String> {
    let url = std::env::var("FACEAUTH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    if url == "skip" {
        eprintln!("SKIPPED: FACEAUTH_TEST_POSTGRES_URL=skip");
        return None;
    }
    Some(url)
}

/// A database of its own for one test, dropped at the end (both replicas migrate it),
/// with the one pseudonym key file its replicas share (each replica's own data
/// directory would give it a key of its own, which the server refuses at start-up).
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    pub url: String,
    key_file: String,
    _keys: tempfile::TempDir,
}

impl ScratchDatabase {
    pub async fn create(admin_url: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
        let name = format!("faceauth_scratch_{}_{nanos}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(admin_url)
            .await
            .expect("PostgreSQL must be reachable (or set FACEAUTH_TEST_POSTGRES_URL=skip)");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
        let base = admin_url.rsplit_once('/').map_or(admin_url, |(base, _)| base);
        let keys = tempfile::tempdir().expect("tempdir for the pseudonym key");
        let key_file = keys.path().join("pseudonym.key").to_str().expect("utf-8 temp path").to_string();
        Self { admin_url: admin_url.to_string(), url: format!("{base}/{name}"), name, key_file, _keys: keys }
    }

    /// The environment of a replica on this database: its URL and the shared
    /// pseudonym key file (created by the first replica to start).
    pub fn replica_env(&self) -> [(&'static str, &str); 2] {
        [("DATABASE_URL", self.url.as_str()), ("FACEAUTH_PSEUDONYM_KEY_FILE", self.key_file.as_str())]
    }

    pub async fn drop_now(self) {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await.expect("connect");
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::raw_sql(&sql).execute(&mut conn).await.expect("drop database");
    }
}
