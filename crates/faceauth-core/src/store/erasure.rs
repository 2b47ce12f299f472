//! Erasure: a user's template is deleted and its audit rows keep only a keyed
//! pseudonym of its name (the key is in `pseudonym`).

use sqlx::Row;

use super::{StoreError, UserStore, bounded, gallery};

/// What an erasure removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    /// Enrolled users whose template was deleted.
    pub users: u64,
    /// Audit rows whose username was replaced by its pseudonym.
    pub decisions: u64,
}

impl UserStore {
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
            gallery::record_erasures(&mut tx, self.backend(), Some(username)).await?;
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

    /// Erases every user (as `erase` does each) in one transaction.
    pub async fn reset(&self) -> Result<Erased, StoreError> {
        let erased = bounded(self.timeout, async {
            let mut tx = self.pool.begin().await?;
            gallery::record_erasures(&mut tx, self.backend(), None).await?;
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
}

/// How erased users' names begin in the audit log.
pub const ERASED_PREFIX: &str = "erased:";
