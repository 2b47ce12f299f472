//! Enrolled face templates and the decision audit log in SQL, through sqlx's `Any`
//! driver so one code path serves the embedded SQLite default and PostgreSQL.
//! Images are never stored.

pub mod audit;
mod connect;
mod erasure;
mod error;
pub mod gallery;
pub mod pseudonym;
pub mod sealing;
mod settings;
mod usernames;
mod users;

pub use connect::{Backend, DEFAULT_TIMEOUT, StoreOptions, UserStore, redact};
pub use erasure::{ERASED_PREFIX, Erased};
pub use error::StoreError;
pub use gallery::{GalleryChange, GalleryLock, GalleryTemplate};
pub use settings::DatabaseConfig;
pub use usernames::skeleton;
pub use users::EnrolledUser;

use connect::bounded;

/// Unix time in milliseconds.
pub use crate::clock::now_ms;

#[cfg(test)]
pub(crate) mod tests;
