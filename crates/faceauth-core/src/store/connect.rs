//! Opening the database: the pool and the session settings of its connections, the
//! migrations, and the SQLite file, whose deletion under the running server must not
//! go unnoticed.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;

use super::{StoreError, audit, pseudonym, sealing, usernames};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long one database operation may wait (for a connection, a lock, a
/// statement) before it is refused as unavailable: a table locked for 40 s made
/// every request hang 30 s and then fail with a 500 (issue 11, defect 9).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bounds `operation` by `limit`: the backstop for a connection that stalls below
/// the database's own timeouts (a network partition).
pub(super) async fn bounded<T>(
    limit: Duration,
    operation: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    // Beyond the statement and lock timeouts, so that theirs is the error reported.
    let backstop = limit * 2 + Duration::from_secs(1);
    tokio::time::timeout(backstop, operation).await.unwrap_or(Err(StoreError::TimedOut(backstop)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How the store works beyond its URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// See `DEFAULT_TIMEOUT`.
    pub timeout: Duration,
    /// Keys that seal templates at rest; `None`: templates are stored in clear.
    pub template_keys: Option<std::sync::Arc<sealing::TemplateKeys>>,
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
    pub(super) pool: AnyPool,
    backend: Backend,
    pub(super) timeout: Duration,
    pub(super) keys: Option<std::sync::Arc<sealing::TemplateKeys>>,
    /// Keys the pseudonyms of erased users (kept in a file, see `pseudonym`).
    pub(super) pseudonym_key: std::sync::Arc<[u8]>,
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
    pub(super) async fn scrub(&self) {
        if self.backend == Backend::Sqlite {
            let done = bounded(self.timeout, async {
                Ok(sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_all(&self.pool).await.map(|_| ())?)
            });
            if let Err(e) = done.await {
                tracing::warn!(error = %e, "the WAL was not emptied after an erasure (it will be at a later one)");
            }
        }
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

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

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
