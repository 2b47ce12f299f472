//! Writing and reading the recorded decisions, and their retention.

use sqlx::{AnyPool, Row};

use super::{Cursor, DecisionFilter, DecisionPage, DecisionRecord, Endpoint, RecordedEvidence};
use crate::policy::Outcome;
use crate::store::{StoreError, bounded, now_ms};

#[derive(Clone)]
pub struct AuditLog {
    pub(super) pool: AnyPool,
    pub(super) timeout: std::time::Duration,
}

impl AuditLog {
    pub(in crate::store) fn new(pool: AnyPool, timeout: std::time::Duration) -> Self {
        Self { pool, timeout }
    }

    pub async fn record(&self, r: &DecisionRecord) -> Result<(), StoreError> {
        self.record_attempt(r, None).await
    }

    /// Records `r`, the decision of the attempt `reserved` for it (see
    /// `reserve_attempt`): the row names the reservation, which stops counting in
    /// the same statement (never both nor neither), and is then deleted.
    ///
    /// One statement, not a transaction: SQLite rolls a transaction back by itself
    /// on `SQLITE_FULL`, sqlx's ROLLBACK then fails and the connection goes back to
    /// the pool believing it is still in one; the next transaction on it became a
    /// savepoint left open, holding the write lock (every later write "database is
    /// locked").
    pub async fn record_attempt(&self, r: &DecisionRecord, reserved: Option<i64>) -> Result<(), StoreError> {
        let evidence = match &r.evidence {
            RecordedEvidence::Readable(e) => e.to_stored().map_err(|e| StoreError::Corrupt(e.to_string()))?,
            RecordedEvidence::Unreadable { json, .. } => json.clone(),
            RecordedEvidence::Omitted => return Err(StoreError::Corrupt("a decision without its evidence".into())),
        };
        let insert = bounded(self.timeout, async {
            sqlx::query(
                "INSERT INTO decisions (request_id, at, username, endpoint, variant, policy, shadow, approved, reason, \
                 score, evidence, analysis_ms, policy_ms, total_ms, error, counts_as_attempt, attempt_id, params_hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $17 = 1 THEN $10 ELSE NULL END, $11, $12, $13, \
                 $14, $15, $16, $18, $19)",
            )
            .bind(&r.request_id)
            .bind(r.at_ms)
            .bind(&r.username)
            .bind(r.endpoint.as_str())
            .bind(&r.variant)
            .bind(&r.policy)
            .bind(i32::from(r.shadow))
            .bind(i32::from(r.outcome.approved()))
            .bind(r.outcome.reason())
            // Never a NULL float parameter: sqlx's Any driver sends a NULL f64 as a
            // PostgreSQL float4, and the connection's cached statement then refuses
            // the next record's f64 score (22P03: an approval after a refusal on one
            // connection was not recorded).
            .bind(r.outcome.score().map_or(0.0, f64::from))
            .bind(evidence)
            .bind(r.analysis_ms)
            .bind(r.policy_ms)
            .bind(r.total_ms)
            .bind(r.outcome.error())
            .bind(i32::from(r.counts_as_attempt()))
            .bind(i32::from(r.outcome.score().is_some()))
            .bind(reserved)
            .bind(&r.params_hash)
            .execute(&self.pool)
            .await?;
            Ok(())
        });
        insert.await?;
        if let Some(id) = reserved {
            // No longer counted; a row left (the database gone meanwhile) expires.
            if let Err(e) = self.release_attempt(id).await {
                tracing::warn!(error = %e, "a decided attempt's reservation was not deleted; it expires");
            }
        }
        Ok(())
    }

    /// Matching decisions, oldest first.
    pub async fn decisions(&self, filter: &DecisionFilter) -> Result<Vec<DecisionRecord>, StoreError> {
        Ok(self.decisions_page(filter).await?.decisions)
    }

    /// Matching decisions, the newest `limit` oldest first, and where the older ones
    /// start (`next`).
    pub async fn decisions_page(&self, filter: &DecisionFilter) -> Result<DecisionPage, StoreError> {
        let limit = filter.limit.unwrap_or(i64::MAX).max(0);
        let before = filter.before.unwrap_or(Cursor { at_ms: i64::MAX, id: i64::MAX });
        // Optional filters as `($n IS NULL OR ...)` keep one statement for both backends.
        // One row more than asked says whether there is a next page.
        let select = sqlx::query(
            "SELECT id, request_id, at, username, endpoint, variant, policy, params_hash, shadow, approved, reason, \
             score, error, CASE WHEN $6 = 1 THEN '' ELSE evidence END AS evidence, analysis_ms, policy_ms, total_ms \
             FROM decisions \
             WHERE at >= $1 AND ($2 = '' OR endpoint = $2) AND ($3 = '' OR variant = $3) AND ($4 < 0 OR shadow = $4) \
             AND ($7 = '' OR request_id = $7) AND ($8 = 0 OR at < $9 OR (at = $9 AND id < $10)) \
             ORDER BY at DESC, id DESC LIMIT $5",
        )
        .bind(filter.since_ms.unwrap_or(i64::MIN))
        .bind(filter.endpoint.map(Endpoint::as_str).unwrap_or(""))
        .bind(filter.variant.as_deref().unwrap_or(""))
        .bind(filter.shadow.map(i32::from).unwrap_or(-1))
        .bind(limit.saturating_add(1))
        .bind(i32::from(filter.without_evidence))
        .bind(filter.request_id.as_deref().unwrap_or(""))
        .bind(i32::from(filter.before.is_some()))
        .bind(before.at_ms)
        .bind(before.id)
        .fetch_all(&self.pool);
        let mut rows = bounded(self.timeout, async { Ok(select.await?) }).await?;
        let more = rows.len() as u64 > limit as u64;
        rows.truncate(limit.try_into().unwrap_or(usize::MAX));
        let mut next = None;
        let mut decisions = Vec::with_capacity(rows.len());
        for row in rows {
            let endpoint: String = row.try_get("endpoint")?;
            let endpoint =
                Endpoint::parse(&endpoint).ok_or_else(|| StoreError::Corrupt(format!("endpoint {endpoint:?}")))?;
            let record = DecisionRecord {
                request_id: row.try_get("request_id")?,
                at_ms: row.try_get("at")?,
                username: row.try_get("username")?,
                endpoint,
                variant: row.try_get("variant")?,
                policy: row.try_get("policy")?,
                params_hash: row.try_get("params_hash")?,
                shadow: row.try_get::<i32, _>("shadow")? != 0,
                outcome: Outcome::from_stored(
                    row.try_get::<i32, _>("approved")? != 0,
                    row.try_get("reason")?,
                    row.try_get("score")?,
                    row.try_get("error")?,
                ),
                evidence: if filter.without_evidence {
                    RecordedEvidence::Omitted
                } else {
                    RecordedEvidence::read(endpoint, row.try_get("evidence")?)
                },
                analysis_ms: row.try_get("analysis_ms")?,
                policy_ms: row.try_get("policy_ms")?,
                total_ms: row.try_get("total_ms")?,
            };
            // The page's oldest row, read last.
            next = more.then_some(Cursor { at_ms: record.at_ms, id: row.try_get("id")? });
            decisions.push(record);
        }
        decisions.reverse();
        Ok(DecisionPage { decisions, next })
    }

    /// Deletes the decisions recorded before `before_ms`; returns how many.
    pub async fn purge_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        let delete = sqlx::query("DELETE FROM decisions WHERE at < $1").bind(before_ms).execute(&self.pool);
        bounded(self.timeout, async { Ok(delete.await?.rows_affected()) }).await
    }

    /// Deletes what is older than `retention` from now.
    pub async fn apply_retention(&self, retention: std::time::Duration) -> Result<u64, StoreError> {
        self.purge_before(now_ms().saturating_sub(retention.as_millis().min(i64::MAX as u128) as i64)).await
    }
}
