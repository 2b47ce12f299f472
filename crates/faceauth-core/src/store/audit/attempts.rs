//! The attempt limit, kept in the audit log so that every replica shares it: counted
//! failures, and attempts reserved before their analysis.

use sqlx::{Connection, Row};

use super::AuditLog;
use crate::store::{StoreError, bounded, now_ms};

/// The attempt limit as the audit log applies it.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Counted failures (and undecided reservations) allowed in the window.
    pub max: u32,
    pub window_ms: i64,
}

/// What `AuditLog::reserve_attempt` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// The reservation's id: give it to `record_attempt` or `release_attempt`.
    Granted(i64),
    Refused {
        retry_after_ms: i64,
    },
}

/// How long a reservation counts without its decision: longer than any request's
/// analysis (queue, a 20 s video decode, the policy, two database calls), short
/// enough that the reservations of a crashed process free the username soon.
pub const RESERVATION_TTL_MS: i64 = 5 * 60 * 1000;

/// The counted failures of `$1` at or after `$2` and after its last approved
/// authentication (a `WHERE` clause over `decisions`).
macro_rules! counted_failures {
    () => {
        "username = $1 AND endpoint = 'authenticate' AND shadow = 0 AND approved = 0 \
         AND counts_as_attempt = 1 AND at >= $2 AND at > COALESCE((SELECT MAX(at) FROM decisions \
         WHERE username = $1 AND endpoint = 'authenticate' AND shadow = 0 AND approved = 1), $2 - 1)"
    };
}

/// The PostgreSQL advisory lock of one username's attempts: 64 bits of its SHA-256
/// (a collision only makes two usernames wait for each other).
fn lock_key(username: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(username.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

impl AuditLog {
    /// Counted failures (see `DecisionRecord::counts_as_attempt`) of `username`
    /// since `since_ms` and after its last approved authentication: how many, and
    /// when the first of them was. Every replica writes this log, so the count is
    /// shared.
    pub async fn failed_authentications(
        &self,
        username: &str,
        since_ms: i64,
    ) -> Result<(i64, Option<i64>), StoreError> {
        let query =
            sqlx::query(concat!("SELECT COUNT(*) AS n, MIN(at) AS first FROM decisions WHERE ", counted_failures!()))
                .bind(username)
                .bind(since_ms)
                .fetch_one(&self.pool);
        let row = bounded(self.timeout, async { Ok(query.await?) }).await?;
        Ok((row.try_get("n")?, row.try_get("first")?))
    }

    /// Reserves one attempt of `username` before its analysis, if its counted
    /// failures in the window plus the attempts reserved and not yet decided stay
    /// under `limit.max`; else says when to retry. Atomic across replicas: SQLite
    /// runs the one conditional INSERT under its one writer lock (no explicit
    /// transaction: see `record_attempt`), PostgreSQL under a transaction-scoped
    /// advisory lock per username (without it concurrent transactions all see the
    /// same count: 18 of 20 concurrent wrong selfies were analysed against a limit
    /// of 5).
    pub async fn reserve_attempt(&self, username: &str, limit: Limit) -> Result<Reserved, StoreError> {
        let now = now_ms();
        let (since, stale) = (now.saturating_sub(limit.window_ms), now.saturating_sub(RESERVATION_TTL_MS));
        let granted = bounded(self.timeout, async {
            // Reservations of crashed processes; they no longer count anyway.
            sqlx::query("DELETE FROM attempts WHERE at < $1").bind(stale).execute(&self.pool).await?;
            let reserve = sqlx::query(concat!(
                "INSERT INTO attempts (username, at) SELECT $1, $3 WHERE (SELECT COUNT(*) FROM decisions WHERE ",
                counted_failures!(),
                ") + (SELECT COUNT(*) FROM attempts AS a WHERE a.username = $1 AND a.at >= $4 AND NOT EXISTS \
                 (SELECT 1 FROM decisions AS d WHERE d.attempt_id = a.id)) < $5 RETURNING id"
            ))
            .bind(username)
            .bind(since)
            .bind(now)
            .bind(stale)
            .bind(i64::from(limit.max));
            let mut conn = self.pool.acquire().await?;
            let row = if conn.backend_name().eq_ignore_ascii_case("postgresql") {
                let mut tx = conn.begin().await?;
                sqlx::query("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock($1)) AS lock")
                    .bind(lock_key(username))
                    .execute(&mut *tx)
                    .await?;
                let row = reserve.fetch_optional(&mut *tx).await?;
                tx.commit().await?;
                row
            } else {
                reserve.fetch_optional(&mut *conn).await?
            };
            Ok(row.map(|row| row.try_get::<i64, _>("id")).transpose()?)
        })
        .await?;
        if let Some(id) = granted {
            return Ok(Reserved::Granted(id));
        }
        let (failures, first) = self.failed_authentications(username, since).await?;
        // Free again when the oldest counted failure leaves the window; when the
        // limit is taken by attempts still being decided, in a moment.
        let retry_after_ms = match first {
            Some(first) if failures >= i64::from(limit.max) => first + limit.window_ms - now,
            _ => 0,
        };
        Ok(Reserved::Refused { retry_after_ms: retry_after_ms.max(1000) })
    }

    /// Releases a reservation whose request ended without a recorded decision (an
    /// error that is no attempt: busy, undecodable upload, a client gone).
    pub async fn release_attempt(&self, id: i64) -> Result<(), StoreError> {
        let delete = sqlx::query("DELETE FROM attempts WHERE id = $1").bind(id).execute(&self.pool);
        bounded(self.timeout, async { Ok(delete.await.map(|_| ())?) }).await
    }

    /// Whether a write reaches the database's storage now (`/ready` after a write
    /// failed for lack of space): a row no count reads (no username, expired)
    /// written, then deleted.
    pub async fn probe_write(&self) -> Result<(), StoreError> {
        bounded(self.timeout, async {
            sqlx::query("INSERT INTO attempts (username, at) VALUES ('', 0)").execute(&self.pool).await?;
            sqlx::query("DELETE FROM attempts WHERE username = '' AND at = 0").execute(&self.pool).await?;
            Ok(())
        })
        .await
    }
}
