//! Enrolled face templates and the decision audit log in SQL, through sqlx's `Any`
//! driver so one code path serves the embedded SQLite default and PostgreSQL.
//! Images are never stored.

pub mod audit;
pub mod templates;

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    #[error("stored template of {username} does not open")]
    SealedTemplate {
        username: String,
        #[source]
        source: templates::TemplateError,
    },
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// The database did not answer in time (pool exhausted, a lock held, a stalled
    /// connection) or is unreachable: answered 503 `DATABASE_UNAVAILABLE`.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("the database did not answer within {0:?}")]
    TimedOut(Duration),
    #[error(transparent)]
    Keys(#[from] templates::KeyError),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// The database could not be reached in time: retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::TimedOut(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        let unavailable = match &e {
            E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => true,
            E::Database(db) => {
                let code = db.code().unwrap_or_default();
                // PostgreSQL: query_canceled (statement_timeout), lock_not_available
                // (lock_timeout), connection exceptions, shutdown; SQLite: SQLITE_BUSY
                // and SQLITE_LOCKED after busy_timeout.
                matches!(code.as_ref(), "57014" | "55P03" | "57P01" | "57P02" | "57P03" | "5" | "6")
                    || code.starts_with("08")
            }
            _ => false,
        };
        if unavailable { StoreError::Unavailable(e) } else { StoreError::Database(e) }
    }
}

/// How long one database operation may wait (for a connection, a lock, a
/// statement) before it is refused as unavailable: a table locked for 40 s made
/// every request hang 30 s and then fail with a 500 (issue 11, defect 9).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bounds `operation` by `limit`: the backstop for a connection that stalls below
/// the database's own timeouts (a network partition).
async fn bounded<T>(limit: Duration, operation: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    // Beyond the statement and lock timeouts, so that theirs is the error reported.
    let backstop = limit * 2 + Duration::from_secs(1);
    tokio::time::timeout(backstop, operation).await.unwrap_or(Err(StoreError::TimedOut(backstop)))
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

/// How the store works beyond its URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// See `DEFAULT_TIMEOUT`.
    pub timeout: Duration,
    /// Keys that seal templates at rest; `None`: templates are stored in clear.
    pub template_keys: Option<std::sync::Arc<templates::TemplateKeys>>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { timeout: DEFAULT_TIMEOUT, template_keys: None }
    }
}

#[derive(Clone)]
pub struct UserStore {
    pool: AnyPool,
    backend: Backend,
    timeout: Duration,
    keys: Option<std::sync::Arc<templates::TemplateKeys>>,
    /// Keys the pseudonyms of erased users (the database's `pseudonym_key`).
    pseudonym_key: std::sync::Arc<[u8]>,
}

/// What an erasure removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    /// Enrolled users whose template was deleted.
    pub users: u64,
    /// Audit rows whose username was replaced by its pseudonym.
    pub decisions: u64,
}

impl UserStore {
    /// Connects with `DEFAULT_TIMEOUT` and applies the migrations of the URL's backend.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// Connects and applies the migrations; every later operation waits at most
    /// about `options.timeout` for a connection, a lock or a statement.
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let StoreOptions { timeout, template_keys: keys } = options;
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(redact(url)));
        };
        let ms = timeout.as_millis().max(1);
        // Leaked once per pool: `after_connect` runs them on every new connection.
        let session: &'static [String] = Box::leak(
            match backend {
                Backend::Sqlite => vec![format!("PRAGMA busy_timeout = {ms}")],
                Backend::Postgres => vec![format!("SET statement_timeout = {ms}"), format!("SET lock_timeout = {ms}")],
            }
            .into_boxed_slice(),
        );
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(timeout)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    for statement in session {
                        sqlx::query(statement).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        match backend {
            Backend::Sqlite => {
                // WAL lets readers proceed during a write; the setting is stored in the file.
                sqlx::query("PRAGMA journal_mode=WAL").fetch_optional(&pool).await?;
                SQLITE_MIGRATIONS.run(&pool).await?;
            }
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let pseudonym_key = pseudonym_key(&pool).await?;
        Ok(Self { pool, backend, timeout, keys, pseudonym_key })
    }

    /// The name an erased user keeps in the audit log: `erased:` and 32 hex digits
    /// of HMAC-SHA256 under the database's secret. One person's rows stay linkable to
    /// each other (attempt counts, replay) but not to the name, without the secret.
    pub fn pseudonym(&self, username: &str) -> String {
        use hmac::Mac;
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.pseudonym_key) else {
            unreachable!("HMAC takes keys of any length")
        };
        mac.update(username.as_bytes());
        let digest = mac.finalize().into_bytes();
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("{ERASED_PREFIX}{hex}")
    }

    /// Replaces `username` by its pseudonym in the audit log; returns the rows changed.
    async fn pseudonymise(&self, conn: &mut sqlx::AnyConnection, username: &str) -> Result<u64, StoreError> {
        Ok(sqlx::query("UPDATE decisions SET username = $1 WHERE username = $2")
            .bind(self.pseudonym(username))
            .bind(username)
            .execute(conn)
            .await?
            .rows_affected())
    }

    /// Erases `username`: its template is deleted and its audit rows keep only its
    /// pseudonym, in one transaction.
    pub async fn erase(&self, username: &str) -> Result<Erased, StoreError> {
        bounded(self.timeout, async {
            let mut tx = self.pool.begin().await?;
            let users = sqlx::query("DELETE FROM users WHERE username = $1")
                .bind(username)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let decisions = self.pseudonymise(&mut tx, username).await?;
            tx.commit().await?;
            Ok(Erased { users, decisions })
        })
        .await
    }

    /// Whether templates are sealed at rest (keys configured).
    pub fn seals_templates(&self) -> bool {
        self.keys.is_some()
    }

    /// Whether the database answers a trivial query now (`/ready`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        bounded(self.timeout, async { Ok(sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ())?) }).await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The audit log, in the same database.
    pub fn audit_log(&self) -> audit::AuditLog {
        audit::AuditLog::new(self.pool.clone(), self.timeout)
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
        let (template, key_id) = self.seal(username, model_version, &embedding.to_bytes())?;
        bounded(self.timeout, async {
            let result = sqlx::query(
                "INSERT INTO users (username, embedding, model_version, enrolled_at, key_id) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(username)
            .bind(template)
            .bind(model_version)
            .bind(now_ms)
            .bind(key_id)
            .execute(&self.pool)
            .await;
            match result {
                Ok(_) => Ok(()),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::DuplicateUsername),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    pub async fn find(&self, username: &str) -> Result<Option<EnrolledUser>, StoreError> {
        let query = sqlx::query(
            "SELECT username, embedding, model_version, enrolled_at, key_id FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool);
        let row = bounded(self.timeout, async { Ok(query.await?) }).await?;
        let Some(row) = row else { return Ok(None) };
        let model_version: String = row.try_get("model_version")?;
        let bytes = self.open(username, &model_version, row.try_get("key_id")?, row.try_get("embedding")?)?;
        let embedding =
            FaceEmbedding::from_bytes(&bytes).ok_or_else(|| StoreError::CorruptTemplate(username.to_string()))?;
        Ok(Some(EnrolledUser {
            username: row.try_get("username")?,
            embedding,
            model_version,
            enrolled_at_ms: row.try_get("enrolled_at")?,
        }))
    }

    /// A template as stored: sealed under the current key, or in clear without keys.
    fn seal(
        &self,
        username: &str,
        model_version: &str,
        template: &[u8],
    ) -> Result<(Vec<u8>, Option<String>), StoreError> {
        match &self.keys {
            Some(keys) => {
                let sealed = keys
                    .seal(username, model_version, template)
                    .map_err(|source| StoreError::SealedTemplate { username: username.into(), source })?;
                Ok((sealed, Some(keys.current().to_string())))
            }
            None => Ok((template.to_vec(), None)),
        }
    }

    /// A stored template's bytes, opened with its key when it has one.
    fn open(
        &self,
        username: &str,
        model_version: &str,
        key_id: Option<String>,
        stored: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let Some(key_id) = key_id else { return Ok(stored) };
        let sealed = |source| StoreError::SealedTemplate { username: username.into(), source };
        let keys = self.keys.as_ref().ok_or_else(|| sealed(templates::TemplateError::UnknownKey(key_id.clone())))?;
        keys.open(&key_id, username, model_version, &stored).map_err(sealed)
    }

    /// Re-seals every template that is not under the current key (in clear, or
    /// under an older key) with the current key; returns how many. A row is
    /// rewritten only if it is unchanged since it was read.
    pub async fn rekey(&self) -> Result<u64, StoreError> {
        let Some(keys) = &self.keys else { return Ok(0) };
        let current = keys.current().to_string();
        let rows =
            sqlx::query("SELECT username, embedding, model_version, key_id FROM users").fetch_all(&self.pool).await?;
        let mut rewritten = 0;
        for row in rows {
            let key_id: Option<String> = row.try_get("key_id")?;
            if key_id.as_deref() == Some(current.as_str()) {
                continue;
            }
            let (username, model_version): (String, String) = (row.try_get("username")?, row.try_get("model_version")?);
            let stored: Vec<u8> = row.try_get("embedding")?;
            let template = self.open(&username, &model_version, key_id.clone(), stored.clone())?;
            let (sealed, new_id) = self.seal(&username, &model_version, &template)?;
            let updated =
                sqlx::query("UPDATE users SET embedding = $1, key_id = $2 WHERE username = $3 AND embedding = $4")
                    .bind(sealed)
                    .bind(new_id)
                    .bind(&username)
                    .bind(stored)
                    .execute(&self.pool)
                    .await?;
            rewritten += updated.rows_affected();
        }
        Ok(rewritten)
    }

    /// Erases every user (as `erase` does each) in one transaction.
    pub async fn reset(&self) -> Result<Erased, StoreError> {
        bounded(self.timeout, async {
            let mut tx = self.pool.begin().await?;
            let users = sqlx::query("DELETE FROM users").execute(&mut *tx).await?.rows_affected();
            let names: Vec<String> = sqlx::query("SELECT DISTINCT username FROM decisions WHERE username NOT LIKE $1")
                .bind(format!("{ERASED_PREFIX}%"))
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|row| row.try_get("username"))
                .collect::<Result<_, _>>()?;
            let mut decisions = 0;
            for name in names {
                decisions += self.pseudonymise(&mut tx, &name).await?;
            }
            tx.commit().await?;
            Ok(Erased { users, decisions })
        })
        .await
    }

    pub async fn count(&self) -> Result<i64, StoreError> {
        bounded(self.timeout, async {
            Ok(sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(&self.pool).await?.try_get("n")?)
        })
        .await
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// How erased users' names begin in the audit log.
pub const ERASED_PREFIX: &str = "erased:";

/// The database's pseudonym secret, made (32 random bytes) by the first process to
/// open it; every replica on one database reads the same one.
async fn pseudonym_key(pool: &AnyPool) -> Result<std::sync::Arc<[u8]>, StoreError> {
    let mut fresh = [0u8; 32];
    getrandom::fill(&mut fresh)
        .map_err(|e| StoreError::Corrupt(format!("no randomness for the pseudonym key: {e}")))?;
    let fresh: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
    sqlx::query("INSERT INTO settings (name, value) VALUES ('pseudonym_key', $1) ON CONFLICT (name) DO NOTHING")
        .bind(fresh)
        .execute(pool)
        .await?;
    let key: String = sqlx::query("SELECT value FROM settings WHERE name = 'pseudonym_key'")
        .fetch_one(pool)
        .await?
        .try_get("value")?;
    Ok(key.into_bytes().into())
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
        let store = UserStore::connect(&url)
            .await
            .expect("PostgreSQL must be reachable (or set FACEAUTH_TEST_POSTGRES_URL=skip)");
        assert_eq!(store.backend(), Backend::Postgres);
        Some(store)
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
        let store =
            UserStore::connect_with(url, StoreOptions { timeout, ..Default::default() }).await.expect("connect");
        let locker = UserStore::connect(url).await.expect("connect");
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
        let keys = templates::TemplateKeys::parse(spec).expect("valid").expect("keys");
        StoreOptions { template_keys: Some(std::sync::Arc::new(keys)), ..Default::default() }
    }

    const K1: &str = "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2=ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    /// Templates are sealed at rest: the stored bytes are not the template, the
    /// row carries its key id, and a store without that key cannot read it.
    async fn templates_are_sealed(url: &str, username: &str) {
        let store = UserStore::connect_with(url, keys(K1)).await.expect("connect");
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
        let clear = UserStore::connect(url).await.expect("connect");
        assert!(matches!(clear.find(username).await, Err(StoreError::SealedTemplate { .. })));
        let other = UserStore::connect_with(url, keys(K2)).await.expect("connect");
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

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
