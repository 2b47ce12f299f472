//! The secret that keys erased users' pseudonyms (`erased:` + HMAC of the name). It
//! is kept in a file outside the database: in the database, anyone with a copy of
//! it could compute `HMAC(key, name)` for a guessed name and re-identify the erased
//! rows (issue 22, item 9). The database keeps only a check value (an HMAC of a
//! constant), so a wrong or missing file is refused at start-up instead of silently
//! giving the same person a second pseudonym.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::{AnyPool, Row};

use super::StoreError;

/// The file's name by default: beside the SQLite database, or in the data directory.
pub const FILE_NAME: &str = "pseudonym.key";

/// Hex digits of a key: 32 random bytes, as the database's `pseudonym_key` held them.
const KEY_HEX_DIGITS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum PseudonymKeyError {
    #[error("pseudonym key file {path}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("pseudonym key file {0}: expected {KEY_HEX_DIGITS} hex digits on one line")]
    Malformed(String),
    #[error(
        "pseudonym key file {0} is missing, but this database already has a pseudonym key (an earlier \
         start's, or another replica's): restore or copy that file (or name it with --pseudonym-key-file); a new \
         key would give erased users a second pseudonym"
    )]
    Missing(String),
    #[error(
        "pseudonym key file {0} does not hold the key this database's pseudonyms were made with (another \
         replica's or an older file?): every replica on one database needs the same file"
    )]
    Mismatch(String),
    #[error("a PostgreSQL database needs a pseudonym key file (--pseudonym-key-file)")]
    NoFile,
}

/// Where the key is kept.
#[derive(Debug, Clone)]
pub enum KeyHome {
    /// This file (made with a new key when the database has none yet).
    File(PathBuf),
    /// A key of this process only: an in-memory database dies with it.
    Ephemeral,
}

/// The key of this database: read from its file, moved there from the database's
/// `settings.pseudonym_key` row (then deleted) by the first start after the update,
/// or made by the first start on a new database.
pub(super) async fn load(pool: &AnyPool, home: &KeyHome) -> Result<Arc<[u8]>, StoreError> {
    let path = match home {
        KeyHome::File(path) => path,
        KeyHome::Ephemeral => return Ok(fresh()?.into_bytes().into()),
    };
    let shown = || path.display().to_string();
    let legacy = setting(pool, "pseudonym_key").await?;
    let key = match (legacy.as_deref(), read(path)?) {
        (Some(legacy), Some(file)) if legacy != file => return Err(PseudonymKeyError::Mismatch(shown()).into()),
        (_, Some(file)) => file,
        (Some(legacy), None) => create(path, legacy)?,
        (None, None) => {
            if setting(pool, "pseudonym_key_check").await?.is_some() {
                // A replica started at the same moment may have written the file and
                // its check between our read of the file and of the check: read again.
                match read(path)? {
                    Some(file) => file,
                    None => return Err(PseudonymKeyError::Missing(shown()).into()),
                }
            } else {
                create(path, &fresh()?)?
            }
        }
    };
    // Two replicas starting at once with different files: the first check stored wins.
    sqlx::query("INSERT INTO settings (name, value) VALUES ('pseudonym_key_check', $1) ON CONFLICT (name) DO NOTHING")
        .bind(check(&key))
        .execute(pool)
        .await?;
    if setting(pool, "pseudonym_key_check").await?.as_deref() != Some(check(&key).as_str()) {
        return Err(PseudonymKeyError::Mismatch(shown()).into());
    }
    if legacy.is_some() {
        // Only now that the file is on disk (synced) and agrees with the check.
        sqlx::query("DELETE FROM settings WHERE name = 'pseudonym_key'").execute(pool).await?;
        tracing::info!("pseudonym key: moved out of the database into {}", path.display());
    }
    Ok(key.into_bytes().into())
}

async fn setting(pool: &AnyPool, name: &str) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT value FROM settings WHERE name = $1").bind(name).fetch_optional(pool).await?;
    Ok(row.map(|row| row.try_get("value")).transpose()?)
}

/// What the database keeps to recognise the key: it does not reveal the key (nor,
/// without it, any pseudonym).
pub(super) fn check(key: &str) -> String {
    use hmac::Mac;
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()) else {
        unreachable!("HMAC takes keys of any length")
    };
    mac.update(b"faceauth pseudonym key check v1");
    mac.finalize().into_bytes().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// A new key: 32 random bytes as hex (the HMAC key is the hex text, as it was when
/// the database held it, so moved keys give the same pseudonyms).
fn fresh() -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::Corrupt(format!("no randomness for the pseudonym key: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| PseudonymKeyError::File { path: path.display().to_string(), source }.into()
}

/// The key in `path`, `None` when there is no such file.
fn read(path: &Path) -> Result<Option<String>, StoreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(path)(e)),
    };
    let key = text.trim();
    if key.len() != KEY_HEX_DIGITS || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PseudonymKeyError::Malformed(path.display().to_string()).into());
    }
    Ok(Some(key.to_string()))
}

/// Writes `key` to `path` (mode 0600) unless the file exists by now; the key the
/// file holds. Written to a temporary file first and linked into place, so that a
/// replica starting at the same time never reads half a key.
fn create(path: &Path, key: &str) -> Result<String, StoreError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(file_error(dir))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".pseudonym.key.");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut temp = builder.tempfile_in(dir).map_err(file_error(dir))?;
    temp.write_all(format!("{key}\n").as_bytes()).map_err(file_error(temp.path()))?;
    temp.as_file().sync_all().map_err(file_error(temp.path()))?;
    match std::fs::hard_link(temp.path(), path) {
        Ok(()) => {
            // The new name durable before the database forgets the key.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            tracing::info!("pseudonym key: {} (keep it with the database's backups, apart from them)", path.display());
            Ok(key.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read(path)?.ok_or_else(|| PseudonymKeyError::Malformed(path.display().to_string()).into())
        }
        Err(e) => Err(file_error(path)(e)),
    }
}
