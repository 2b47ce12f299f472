//! The audit log: one row per policy decision (the variant that answered and each
//! shadow), with the evidence it decided on as JSON and the latencies. Images are
//! never stored. Rows older than the retention are purged.

use sqlx::{AnyPool, Row};

use super::{StoreError, now_ms};

/// Which use case asked for the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    Enroll,
    Authenticate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Enroll => "enroll",
            Endpoint::Authenticate => "authenticate",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "enroll" => Some(Endpoint::Enroll),
            "authenticate" => Some(Endpoint::Authenticate),
            _ => None,
        }
    }
}

/// One recorded decision.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DecisionRecord {
    /// Shared by the answer and the shadow decisions of one request.
    pub request_id: String,
    /// Unix time, milliseconds.
    pub at_ms: i64,
    pub username: String,
    pub endpoint: Endpoint,
    pub variant: String,
    /// `name@version` of the component.
    pub policy: String,
    /// A shadow decision was recorded, not answered.
    pub shadow: bool,
    pub approved: bool,
    pub reason: String,
    pub score: Option<f64>,
    /// The evidence as the policy received it (JSON).
    pub evidence: String,
    /// Decoding and face analysis, milliseconds.
    pub analysis_ms: f64,
    /// The policy call alone.
    pub policy_ms: f64,
    /// The whole use case up to the answer.
    pub total_ms: f64,
}

/// Which recorded decisions to read.
#[derive(Debug, Clone, Default)]
pub struct DecisionFilter {
    pub since_ms: Option<i64>,
    pub endpoint: Option<Endpoint>,
    pub variant: Option<String>,
    /// `Some(false)`: answers only; `Some(true)`: shadows only.
    pub shadow: Option<bool>,
    pub limit: Option<i64>,
    /// Leave the evidence out (empty): statistics over many rows need only the rest,
    /// and a video's evidence is some 15 KB.
    pub without_evidence: bool,
}

#[derive(Clone)]
pub struct AuditLog {
    pool: AnyPool,
}

impl AuditLog {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    pub async fn record(&self, r: &DecisionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO decisions (request_id, at, username, endpoint, variant, policy, shadow, approved, reason, \
             score, evidence, analysis_ms, policy_ms, total_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&r.request_id)
        .bind(r.at_ms)
        .bind(&r.username)
        .bind(r.endpoint.as_str())
        .bind(&r.variant)
        .bind(&r.policy)
        .bind(i32::from(r.shadow))
        .bind(i32::from(r.approved))
        .bind(&r.reason)
        .bind(r.score)
        .bind(&r.evidence)
        .bind(r.analysis_ms)
        .bind(r.policy_ms)
        .bind(r.total_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Matching decisions, oldest first.
    pub async fn decisions(&self, filter: &DecisionFilter) -> Result<Vec<DecisionRecord>, StoreError> {
        // Optional filters as `($n IS NULL OR ...)` keep one statement for both backends.
        let rows = sqlx::query(
            "SELECT request_id, at, username, endpoint, variant, policy, shadow, approved, reason, score, \
             CASE WHEN $6 = 1 THEN '' ELSE evidence END AS evidence, analysis_ms, policy_ms, total_ms FROM decisions \
             WHERE at >= $1 AND ($2 = '' OR endpoint = $2) AND ($3 = '' OR variant = $3) AND ($4 < 0 OR shadow = $4) \
             ORDER BY at DESC, id DESC LIMIT $5",
        )
        .bind(filter.since_ms.unwrap_or(i64::MIN))
        .bind(filter.endpoint.map(Endpoint::as_str).unwrap_or(""))
        .bind(filter.variant.as_deref().unwrap_or(""))
        .bind(filter.shadow.map(i32::from).unwrap_or(-1))
        .bind(filter.limit.unwrap_or(i64::MAX).max(0))
        .bind(i32::from(filter.without_evidence))
        .fetch_all(&self.pool)
        .await?;
        let mut records = rows
            .into_iter()
            .map(|row| -> Result<DecisionRecord, StoreError> {
                let endpoint: String = row.try_get("endpoint")?;
                Ok(DecisionRecord {
                    request_id: row.try_get("request_id")?,
                    at_ms: row.try_get("at")?,
                    username: row.try_get("username")?,
                    endpoint: Endpoint::parse(&endpoint)
                        .ok_or_else(|| StoreError::Corrupt(format!("endpoint {endpoint:?}")))?,
                    variant: row.try_get("variant")?,
                    policy: row.try_get("policy")?,
                    shadow: row.try_get::<i32, _>("shadow")? != 0,
                    approved: row.try_get::<i32, _>("approved")? != 0,
                    reason: row.try_get("reason")?,
                    score: row.try_get("score")?,
                    evidence: row.try_get("evidence")?,
                    analysis_ms: row.try_get("analysis_ms")?,
                    policy_ms: row.try_get("policy_ms")?,
                    total_ms: row.try_get("total_ms")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        records.reverse();
        Ok(records)
    }

    /// Deletes the decisions recorded before `before_ms`; returns how many.
    pub async fn purge_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM decisions WHERE at < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Deletes what is older than `retention` from now.
    pub async fn apply_retention(&self, retention: std::time::Duration) -> Result<u64, StoreError> {
        self.purge_before(now_ms().saturating_sub(retention.as_millis().min(i64::MAX as u128) as i64)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UserStore;

    fn record(request_id: &str, username: &str, at_ms: i64, variant: &str, shadow: bool) -> DecisionRecord {
        DecisionRecord {
            request_id: request_id.into(),
            at_ms,
            username: username.into(),
            endpoint: Endpoint::Authenticate,
            variant: variant.into(),
            policy: "default@0.1.0".into(),
            shadow,
            approved: !shadow,
            reason: if shadow { "FACE_MISMATCH".into() } else { "AUTHENTIFICATION_SUCCESS".into() },
            score: (!shadow).then_some(0.61),
            evidence: r#"{"frames":[]}"#.into(),
            analysis_ms: 120.5,
            policy_ms: 0.4,
            total_ms: 121.0,
        }
    }

    async fn exercise(log: AuditLog, tag: &str) {
        let user = format!("audit-{tag}-{}", now_ms());
        let base = now_ms();
        let variant = format!("a-{tag}");
        log.record(&record("r1", &user, base - 10_000, &variant, false)).await.expect("record");
        log.record(&record("r1", &user, base - 10_000, "b", true)).await.expect("record");
        log.record(&record("r2", &user, base, &variant, false)).await.expect("record");
        let mine = |all: Vec<DecisionRecord>| all.into_iter().filter(|r| r.username == user).collect::<Vec<_>>();
        let all = mine(
            log.decisions(&DecisionFilter { since_ms: Some(base - 20_000), ..Default::default() }).await.expect("read"),
        );
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], record("r1", &user, base - 10_000, &variant, false), "round trip, oldest first");
        let answers = mine(
            log.decisions(&DecisionFilter {
                variant: Some(variant.clone()),
                shadow: Some(false),
                ..Default::default()
            })
            .await
            .expect("read"),
        );
        assert_eq!(answers.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(), ["r1", "r2"]);
        let shadows =
            mine(log.decisions(&DecisionFilter { shadow: Some(true), ..Default::default() }).await.expect("read"));
        assert_eq!(shadows.len(), 1);
        assert!(!shadows[0].approved && shadows[0].score.is_none());
        let recent = mine(
            log.decisions(&DecisionFilter { since_ms: Some(base - 1), ..Default::default() }).await.expect("read"),
        );
        assert_eq!(recent.len(), 1);
        let light = mine(
            log.decisions(&DecisionFilter { since_ms: Some(base - 1), without_evidence: true, ..Default::default() })
                .await
                .expect("read"),
        );
        assert_eq!((light[0].evidence.as_str(), light[0].reason.as_str()), ("", "AUTHENTIFICATION_SUCCESS"));
        // Retention: everything older than 5 s goes, the recent row stays.
        log.purge_before(base - 5_000).await.expect("purge");
        let left = mine(log.decisions(&DecisionFilter::default()).await.expect("read"));
        assert_eq!(left.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(), ["r2"]);
    }

    #[tokio::test]
    async fn sqlite_audit_log_records_filters_and_purges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        exercise(UserStore::connect(&url).await.expect("connect").audit_log(), "sqlite").await;
    }

    #[tokio::test]
    async fn postgres_audit_log_records_filters_and_purges() {
        if let Some(store) = crate::store::tests::test_postgres().await {
            exercise(store.audit_log(), "postgres").await;
        }
    }
}
