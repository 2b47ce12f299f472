//! The store's settings, as clap arguments that the binary composes with the others.

use std::path::PathBuf;

use clap::Args;

/// The SQLite database's file name in the data directory.
const DATABASE_FILE: &str = "faceauth.db";

/// Where users and the audit log are stored.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// Directory for the embedded SQLite database.
    #[arg(long, env = "FACEAUTH_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Database URL (sqlite://... or postgres://...); default: SQLite in the data directory.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Seconds a database operation may wait for a connection, a lock or a
    /// statement; then the request is answered 503 DATABASE_UNAVAILABLE.
    #[arg(long, env = "FACEAUTH_DB_TIMEOUT", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub db_timeout: u64,
    /// Keys that seal face templates at rest, `ID=BASE64` (32 random bytes, e.g.
    /// `head -c 32 /dev/urandom | base64`), comma-separated; the first seals, all
    /// open. Without keys templates are stored in clear (the server warns).
    #[arg(long, env = "FACEAUTH_TEMPLATE_KEYS", hide_env_values = true)]
    pub template_keys: Option<String>,
    /// A file of template keys, one `ID=BASE64` per line (first seals); with `--template-keys` both count.
    #[arg(long, env = "FACEAUTH_TEMPLATE_KEY_FILE")]
    pub template_key_file: Option<PathBuf>,
    /// The file of the secret that keys erased users' pseudonyms in the audit log,
    /// kept out of the database so that a copy of it does not re-identify them; made
    /// (mode 0600) by the first start on a new database. Default: `pseudonym.key`
    /// beside the SQLite database, or in the data directory with PostgreSQL (every
    /// replica on one database needs the same file). A database whose pseudonyms were
    /// made with another key, or whose key file is missing, is refused at start-up.
    #[arg(long, env = "FACEAUTH_PSEUDONYM_KEY_FILE")]
    pub pseudonym_key_file: Option<PathBuf>,
}

impl DatabaseConfig {
    /// Connects to the configured database with the configured timeout.
    pub async fn connect(&self) -> Result<crate::store::UserStore, crate::store::StoreError> {
        let mut spec = self.template_keys.clone().unwrap_or_default();
        if let Some(path) = &self.template_key_file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| crate::store::sealing::KeyError::File { path: path.display().to_string(), source })?;
            spec = format!("{spec}\n{text}");
        }
        let options = crate::store::StoreOptions {
            timeout: std::time::Duration::from_secs(self.db_timeout),
            template_keys: crate::store::sealing::TemplateKeys::parse(&spec)?.map(std::sync::Arc::new),
            // SQLite: beside the database (the store's default).
            pseudonym_key_file: self.pseudonym_key_file.clone().or_else(|| {
                self.database_url
                    .as_deref()
                    .is_some_and(|url| !url.starts_with("sqlite:"))
                    .then(|| self.data_dir.join(crate::store::pseudonym::FILE_NAME))
            }),
        };
        crate::store::UserStore::connect_with(&self.url(), options).await
    }

    /// The embedded SQLite file when no URL is given, for tools that read an existing
    /// database and must not create an empty one (`replay`, `rekey`).
    pub fn default_sqlite_file(&self) -> Option<PathBuf> {
        self.database_url.is_none().then(|| self.data_dir.join(DATABASE_FILE))
    }

    pub fn url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir.join(DATABASE_FILE).display()))
    }
}
