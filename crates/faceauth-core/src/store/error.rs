//! The store's errors, and which of them mean "unavailable": retrying later may succeed.

use std::time::Duration;

use super::{pseudonym, sealing};

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
        source: sealing::TemplateError,
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
    Keys(#[from] sealing::KeyError),
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
