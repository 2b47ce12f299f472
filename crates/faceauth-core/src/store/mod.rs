//! Enrolled face templates and the decision audit log in SQL, through sqlx's `Any`
//! driver so one code path serves the embedded SQLite default and PostgreSQL.
//! Images are never stored.

pub mod audit;
pub mod pseudonym;
mod settings;
pub mod templates;
mod usernames;

pub use settings::DatabaseConfig;
pub use usernames::skeleton;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Another enrolled username has this one's confusable skeleton (UTS #39).
    #[error("this username looks like an enrolled one (same confusable skeleton)")]
    ConfusableUsername,
    /// The database's storage is full (SQLite `SQLITE_FULL`, PostgreSQL
    /// `disk_full`): answered 503 `STORAGE_FULL`; nothing was written.
    #[error("the database's storage is full: {0}")]
    Full(#[source] sqlx::Error),
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
    #[error(transparent)]
    PseudonymKey(#[from] pseudonym::PseudonymKeyError),
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
        if let E::Database(db) = &e {
            // SQLite: SQLITE_FULL (also what an ENOSPC write becomes); PostgreSQL: disk_full.
            if matches!(db.code().as_deref(), Some("13" | "53100")) {
                return StoreError::Full(e);
            }
        }
        let unavailable = match &e {
            E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => true,
            E::Database(db) => {
                let code = db.code().unwrap_or_default();
                // PostgreSQL: query_canceled (statement_timeout), lock_not_available
                // (lock_timeout), connection exceptions, shutdown; SQLite: SQLITE_BUSY
                // and SQLITE_LOCKED after busy_timeout, SQLITE_CANTOPEN (the file
                // deleted under the running server: connections do not make it again).
                matches!(code.as_ref(), "57014" | "55P03" | "57P01" | "57P02" | "57P03" | "5" | "6" | "14")
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
    /// The file of the key of erased users' pseudonyms (see `pseudonym`); `None`:
    /// `pseudonym.key` beside a SQLite database (PostgreSQL needs one).
    pub pseudonym_key_file: Option<PathBuf>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { timeout: DEFAULT_TIMEOUT, template_keys: None, pseudonym_key_file: None }
    }
}

#[derive(Clone)]
pub struct UserStore {
    pool: AnyPool,
    backend: Backend,
    timeout: Duration,
    keys: Option<std::sync::Arc<templates::TemplateKeys>>,
    /// Keys the pseudonyms of erased users (kept in a file, see `pseudonym`).
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
        let StoreOptions { timeout, template_keys: keys, pseudonym_key_file } = options;
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(redact(url)));
        };
        let (pool_url, file) = match backend {
            Backend::Sqlite => open_sqlite(url).await?,
            Backend::Postgres => (url.to_string(), None),
        };
        let key_home = match (pseudonym_key_file, &file) {
            (Some(path), _) => pseudonym::KeyHome::File(path),
            (None, Some(db)) => pseudonym::KeyHome::File(db.path.with_file_name(pseudonym::FILE_NAME)),
            (None, None) if backend == Backend::Sqlite => pseudonym::KeyHome::Ephemeral,
            (None, None) => return Err(pseudonym::PseudonymKeyError::NoFile.into()),
        };
        let ms = timeout.as_millis().max(1);
        // Leaked once per pool: `after_connect` runs them on every new connection.
        let session: &'static [String] = Box::leak(
            match backend {
                // secure_delete: an erased user's name and template are overwritten in
                // the file, not left in its free pages for whoever copies it.
                Backend::Sqlite => vec![format!("PRAGMA busy_timeout = {ms}"), "PRAGMA secure_delete = ON".into()],
                Backend::Postgres => vec![format!("SET statement_timeout = {ms}"), format!("SET lock_timeout = {ms}")],
            }
            .into_boxed_slice(),
        );
        let (on_connect, on_acquire) = (file.clone(), file);
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(timeout)
            .after_connect(move |conn, _meta| {
                let file = on_connect.clone();
                Box::pin(async move {
                    if let Some(file) = file.filter(|f| !f.unchanged()) {
                        return Err(file.gone());
                    }
                    for statement in session {
                        sqlx::query(statement).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            // A connection to a file deleted or replaced since is closed, not used:
            // it would read and write a file nobody else sees.
            .before_acquire(move |_conn, _meta| {
                let usable = on_acquire.as_ref().is_none_or(DatabaseFile::unchanged);
                Box::pin(async move { Ok(usable) })
            })
            .connect(&pool_url)
            .await?;
        match backend {
            Backend::Sqlite => {
                // WAL lets readers proceed during a write; the setting is stored in the file.
                sqlx::query("PRAGMA journal_mode=WAL").fetch_optional(&pool).await?;
                SQLITE_MIGRATIONS.run(&pool).await?;
            }
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        usernames::fill_skeletons(&pool).await?;
        let pseudonym_key = pseudonym::load(&pool, &key_home).await?;
        let store = Self { pool, backend, timeout, keys, pseudonym_key };
        // A `pseudonym_key` row just moved to its file: out of the WAL too.
        store.scrub().await;
        Ok(store)
    }

    /// SQLite: copies the WAL into the database and empties it, so that the bytes of
    /// deleted rows (overwritten in the database by `secure_delete`) do not stay in
    /// older WAL frames. Best effort: a reader holding the WAL only delays it.
    async fn scrub(&self) {
        if self.backend == Backend::Sqlite {
            let done = bounded(self.timeout, async {
                Ok(sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_all(&self.pool).await.map(|_| ())?)
            });
            if let Err(e) = done.await {
                tracing::warn!(error = %e, "the WAL was not emptied after an erasure (it will be at a later one)");
            }
        }
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
        let erased = bounded(self.timeout, async {
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
        .await?;
        self.scrub().await;
        Ok(erased)
    }

    /// Whether templates are sealed at rest (keys configured).
    pub fn seals_templates(&self) -> bool {
        self.keys.is_some()
    }

    /// Whether the database answers a query of its tables now (`/ready`): `SELECT 1`
    /// alone passed on an empty database made where the file had been deleted.
    pub async fn ping(&self) -> Result<(), StoreError> {
        bounded(self.timeout, async {
            Ok(sqlx::query("SELECT 1 FROM users LIMIT 1").fetch_optional(&self.pool).await.map(|_| ())?)
        })
        .await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The audit log, in the same database.
    pub fn audit_log(&self) -> audit::AuditLog {
        audit::AuditLog::new(self.pool.clone(), self.timeout)
    }

    /// Inserts a new user; a username taken (even by a concurrent request) is
    /// `DuplicateUsername`, decided by the primary key, not by a prior read; a
    /// username that looks like an enrolled one is `ConfusableUsername`, decided by
    /// the unique index of skeletons.
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
                "INSERT INTO users (username, embedding, model_version, enrolled_at, key_id, skeleton) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(username)
            .bind(template)
            .bind(model_version)
            .bind(now_ms)
            .bind(key_id)
            .bind(usernames::skeleton(username))
            .execute(&self.pool)
            .await;
            match result {
                Ok(_) => Ok(()),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(self.taken(username).await?),
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
        let erased = bounded(self.timeout, async {
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
        .await?;
        self.scrub().await;
        Ok(erased)
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

/// The SQLite database file a pool works on, as it was when the server opened it.
#[derive(Debug, Clone)]
struct DatabaseFile {
    path: std::sync::Arc<Path>,
    identity: FileIdentity,
}

/// Which file a path names (device and inode): a file deleted and made again, or
/// replaced by a rename, is another one.
type FileIdentity = (u64, u64);

fn identity_of(path: &Path) -> Option<FileIdentity> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        // Only whether it is there.
        let _ = meta;
        Some((0, 0))
    }
}

impl DatabaseFile {
    fn unchanged(&self) -> bool {
        identity_of(&self.path) == Some(self.identity)
    }

    /// The error of a connection refused because the file changed: an I/O error,
    /// so answered 503 `DATABASE_UNAVAILABLE`.
    fn gone(&self) -> sqlx::Error {
        sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("the database file {} was deleted or replaced under the running server", self.path.display()),
        ))
    }
}

/// Opens the SQLite database once, making it if the URL says so (`mode=rwc`): only
/// at start-up. Returns the URL of the pool's connections, which never make the file
/// (`mode=rw`: a file deleted under the running server came back empty, and every
/// request failed with "no such table" while `/ready` said ready), and the file
/// (`None`: in memory).
async fn open_sqlite(url: &str) -> Result<(String, Option<DatabaseFile>), StoreError> {
    use sqlx::Connection;
    use std::str::FromStr;
    sqlx::AnyConnection::connect(url).await?.close().await?;
    let path = sqlx::sqlite::SqliteConnectOptions::from_str(url)?.get_filename().to_path_buf();
    let file = identity_of(&path).map(|identity| DatabaseFile { path: path.into(), identity });
    let pool_url = match url.split_once('?') {
        Some((base, query)) => {
            let query: Vec<&str> = query.split('&').map(|p| if p == "mode=rwc" { "mode=rw" } else { p }).collect();
            format!("{base}?{}", query.join("&"))
        }
        None => url.to_string(),
    };
    Ok((pool_url, file))
}

/// Unix time in milliseconds.
pub use crate::clock::now_ms;

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
        let keys = templates::TemplateKeys::parse(spec).expect("valid").expect("keys");
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
}
