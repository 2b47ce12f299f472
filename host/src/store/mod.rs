//! Enrolled face templates and the decision audit log in SQL, through sqlx's `Any`
//! driver so one code path serves the embedded SQLite default and PostgreSQL.
//! Images are never stored.

pub mod audit;

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row};

use crate::vision::FaceEmbedding;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("this username is already enrolled")]
    DuplicateUsername,
    #[error("unsupported database URL (expected sqlite:// or postgres://): {0}")]
    UnsupportedUrl(String),
    #[error("stored template of {0} is unreadable")]
    CorruptTemplate(String),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A stored face template.
#[derive(Debug, Clone)]
pub struct EnrolledUser {
    pub username: String,
    pub embedding: FaceEmbedding,
    pub model_version: String,
    pub enrolled_at_ms: i64,
}

#[derive(Clone)]
pub struct UserStore {
    pool: AnyPool,
    backend: Backend,
}

impl UserStore {
    /// Connects and applies the migrations of the URL's backend.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(redact(url)));
        };
        let pool = AnyPoolOptions::new().max_connections(8).connect(url).await?;
        match backend {
            Backend::Sqlite => {
                // WAL lets readers proceed during a write; the setting is stored in the file.
                sqlx::query("PRAGMA journal_mode=WAL").fetch_optional(&pool).await?;
                SQLITE_MIGRATIONS.run(&pool).await?;
            }
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Self { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The audit log, in the same database.
    pub fn audit_log(&self) -> audit::AuditLog {
        audit::AuditLog::new(self.pool.clone())
    }

    /// Inserts a new user; a username taken (even by a concurrent request) is
    /// `DuplicateUsername`, decided by the primary key, not by a prior read.
    pub async fn insert(
        &self,
        username: &str,
        embedding: &FaceEmbedding,
        model_version: &str,
    ) -> Result<(), StoreError> {
        let now_ms = now_ms();
        let result =
            sqlx::query("INSERT INTO users (username, embedding, model_version, enrolled_at) VALUES ($1, $2, $3, $4)")
                .bind(username)
                .bind(embedding.to_bytes())
                .bind(model_version)
                .bind(now_ms)
                .execute(&self.pool)
                .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::DuplicateUsername),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn find(&self, username: &str) -> Result<Option<EnrolledUser>, StoreError> {
        let row = sqlx::query("SELECT username, embedding, model_version, enrolled_at FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let bytes: Vec<u8> = row.try_get("embedding")?;
        let embedding =
            FaceEmbedding::from_bytes(&bytes).ok_or_else(|| StoreError::CorruptTemplate(username.to_string()))?;
        Ok(Some(EnrolledUser {
            username: row.try_get("username")?,
            embedding,
            model_version: row.try_get("model_version")?,
            enrolled_at_ms: row.try_get("enrolled_at")?,
        }))
    }

    /// Removes every user in one transaction; returns how many there were.
    pub async fn reset(&self) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM users").execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    pub async fn count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(&self.pool).await?.try_get("n")?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..scheme], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn embedding(seed: f32) -> FaceEmbedding {
        let raw: Vec<f32> = (0..512).map(|i| (i as f32 * seed).sin() + 0.01).collect();
        FaceEmbedding::from_raw(&raw).expect("valid")
    }

    async fn exercise(store: UserStore) {
        store.reset().await.expect("reset");
        store.insert("alice", &embedding(0.3), "m1").await.expect("insert");
        assert!(matches!(store.insert("alice", &embedding(0.5), "m1").await, Err(StoreError::DuplicateUsername)));
        let found = store.find("alice").await.expect("find").expect("present");
        assert!((found.embedding.cosine(&embedding(0.3)) - 1.0).abs() < 1e-5);
        assert_eq!(found.model_version, "m1");
        assert!(store.find("bob").await.expect("find").is_none());
        store.insert("bob", &embedding(0.7), "m1").await.expect("insert");
        assert_eq!(store.reset().await.expect("reset"), 2);
        assert_eq!(store.count().await.expect("count"), 0);
    }

    #[tokio::test]
    async fn sqlite_store_roundtrip_duplicate_and_reset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        exercise(UserStore::connect(&url).await.expect("connect")).await;
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
        let store = UserStore::connect(&url)
            .await
            .expect("PostgreSQL must be reachable (or set FACEAUTH_TEST_POSTGRES_URL=skip)");
        assert_eq!(store.backend(), Backend::Postgres);
        Some(store)
    }

    #[tokio::test]
    async fn postgres_store_roundtrip_duplicate_and_reset() {
        if let Some(store) = test_postgres().await {
            exercise(store).await;
        }
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
