//! The audit log: one row per policy decision (the variant that answered and each
//! shadow), with the evidence it decided on as JSON and the latencies. Images are
//! never stored. Rows older than the retention are purged.

use sqlx::{AnyPool, Row};

use super::{StoreError, bounded, now_ms};
pub use crate::policy::Endpoint;
use crate::policy::{Evidence, Outcome};

/// One recorded decision.
#[derive(Debug, Clone, PartialEq)]
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
    /// What the client was answered (for a shadow: what it would have been).
    pub outcome: Outcome,
    /// The evidence the policy decided on.
    pub evidence: RecordedEvidence,
    /// Decoding and face analysis, milliseconds.
    pub analysis_ms: f64,
    /// The policy call alone.
    pub policy_ms: f64,
    /// The whole use case up to the answer.
    pub total_ms: f64,
}

/// A record's evidence as read back.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordedEvidence {
    /// Not read (`DecisionFilter::without_evidence`).
    Omitted,
    Readable(Evidence),
    /// Written by an older interface: the stored JSON and why it does not read.
    Unreadable {
        json: String,
        error: String,
    },
}

impl RecordedEvidence {
    fn read(endpoint: Endpoint, json: String) -> Self {
        match Evidence::from_stored(endpoint, &json) {
            Ok(evidence) => RecordedEvidence::Readable(evidence),
            Err(e) => RecordedEvidence::Unreadable { json, error: e.to_string() },
        }
    }
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
    timeout: std::time::Duration,
}

impl AuditLog {
    pub(super) fn new(pool: AnyPool, timeout: std::time::Duration) -> Self {
        Self { pool, timeout }
    }

    pub async fn record(&self, r: &DecisionRecord) -> Result<(), StoreError> {
        let evidence = match &r.evidence {
            RecordedEvidence::Readable(e) => e.to_stored().map_err(|e| StoreError::Corrupt(e.to_string()))?,
            RecordedEvidence::Unreadable { json, .. } => json.clone(),
            RecordedEvidence::Omitted => return Err(StoreError::Corrupt("a decision without its evidence".into())),
        };
        let insert = sqlx::query(
            "INSERT INTO decisions (request_id, at, username, endpoint, variant, policy, shadow, approved, reason, \
             score, evidence, analysis_ms, policy_ms, total_ms, error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
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
        .bind(r.outcome.score().map(f64::from))
        .bind(evidence)
        .bind(r.analysis_ms)
        .bind(r.policy_ms)
        .bind(r.total_ms)
        .bind(r.outcome.error())
        .execute(&self.pool);
        bounded(self.timeout, async { Ok(insert.await.map(|_| ())?) }).await
    }

    /// Matching decisions, oldest first.
    pub async fn decisions(&self, filter: &DecisionFilter) -> Result<Vec<DecisionRecord>, StoreError> {
        // Optional filters as `($n IS NULL OR ...)` keep one statement for both backends.
        let select = sqlx::query(
            "SELECT request_id, at, username, endpoint, variant, policy, shadow, approved, reason, score, error, \
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
        .fetch_all(&self.pool);
        let rows = bounded(self.timeout, async { Ok(select.await?) }).await?;
        let mut records = rows
            .into_iter()
            .map(|row| -> Result<DecisionRecord, StoreError> {
                let endpoint: String = row.try_get("endpoint")?;
                let endpoint =
                    Endpoint::parse(&endpoint).ok_or_else(|| StoreError::Corrupt(format!("endpoint {endpoint:?}")))?;
                Ok(DecisionRecord {
                    request_id: row.try_get("request_id")?,
                    at_ms: row.try_get("at")?,
                    username: row.try_get("username")?,
                    endpoint,
                    variant: row.try_get("variant")?,
                    policy: row.try_get("policy")?,
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
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        records.reverse();
        Ok(records)
    }

    /// Refused authentications answered to `username` since `since_ms` and after its
    /// last approved one: how many, and when the first of them was. Every replica
    /// writes this log, so the count is shared.
    pub async fn failed_authentications(
        &self,
        username: &str,
        since_ms: i64,
    ) -> Result<(i64, Option<i64>), StoreError> {
        let query = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(at) AS first FROM decisions \
             WHERE username = $1 AND endpoint = 'authenticate' AND shadow = 0 AND approved = 0 AND at >= $2 \
             AND at > COALESCE((SELECT MAX(at) FROM decisions WHERE username = $1 AND endpoint = 'authenticate' \
             AND shadow = 0 AND approved = 1), $2 - 1)",
        )
        .bind(username)
        .bind(since_ms)
        .fetch_one(&self.pool);
        let row = bounded(self.timeout, async { Ok(query.await?) }).await?;
        Ok((row.try_get("n")?, row.try_get("first")?))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{AuthenticateEvidence, Decision, Failure, FrameSummary, ImageSize, MediaKind};
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
            outcome: if shadow {
                Outcome::Failed { failure: Failure::PolicyError, message: "wasm trap: unreachable".into() }
            } else {
                Outcome::Decided(Decision {
                    approved: true,
                    reason: "AUTHENTIFICATION_SUCCESS".into(),
                    score: Some(0.61),
                })
            },
            evidence: RecordedEvidence::Readable(crate::policy::Evidence::Authenticate(AuthenticateEvidence {
                media: MediaKind::Image,
                image: ImageSize { width: 640, height: 480 },
                frames: vec![],
                summary: FrameSummary {
                    frames: 1,
                    frames_with_face: 0,
                    frames_with_single_face: 0,
                    best_similarity: None,
                    median_similarity: None,
                    worst_similarity: None,
                    motion: crate::usecase::motion_summary(&[]),
                },
            })),
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
        assert!(shadows[0].outcome.is_policy_error() && shadows[0].outcome.error() == Some("wasm trap: unreachable"));
        let recent = mine(
            log.decisions(&DecisionFilter { since_ms: Some(base - 1), ..Default::default() }).await.expect("read"),
        );
        assert_eq!(recent.len(), 1);
        let light = mine(
            log.decisions(&DecisionFilter { since_ms: Some(base - 1), without_evidence: true, ..Default::default() })
                .await
                .expect("read"),
        );
        assert_eq!(
            (&light[0].evidence, light[0].outcome.reason()),
            (&RecordedEvidence::Omitted, "AUTHENTIFICATION_SUCCESS")
        );
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

    /// Erasure: the template goes, the user's audit rows (answers and shadows)
    /// keep only the keyed pseudonym, other users' rows are untouched.
    async fn erasure_pseudonymises(store: UserStore, tag: &str) {
        let (user, other) = (format!("erase-{tag}-{}", now_ms()), format!("keep-{tag}-{}", now_ms()));
        let log = store.audit_log();
        let embedding = crate::vision::FaceEmbedding::from_raw(&[0.5f32; 512]).expect("embedding");
        store.insert(&user, &embedding, "m1").await.expect("insert");
        let base = now_ms();
        log.record(&record("e1", &user, base, "a", false)).await.expect("record");
        log.record(&record("e1", &user, base, "b", true)).await.expect("record");
        log.record(&record("e2", &other, base, "a", false)).await.expect("record");
        let erased = store.erase(&user).await.expect("erase");
        assert_eq!((erased.users, erased.decisions), (1, 2));
        assert!(store.find(&user).await.expect("find").is_none());
        let pseudonym = store.pseudonym(&user);
        assert!(pseudonym.starts_with(super::super::ERASED_PREFIX) && !pseudonym.contains(&user), "{pseudonym}");
        let rows =
            log.decisions(&DecisionFilter { since_ms: Some(base - 1), ..Default::default() }).await.expect("read");
        let names =
            |id: &str| rows.iter().filter(|r| r.request_id == id).map(|r| r.username.clone()).collect::<Vec<_>>();
        assert_eq!(names("e1"), [pseudonym.clone(), pseudonym.clone()]);
        assert!(names("e2").contains(&other));
        assert!(rows.iter().all(|r| r.username != user));
        // Erased twice: nothing left under the name.
        assert_eq!(store.erase(&user).await.expect("erase"), crate::store::Erased { users: 0, decisions: 0 });
        store.erase(&other).await.expect("clean up");
    }

    #[tokio::test]
    async fn sqlite_erasure_pseudonymises_the_audit_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        erasure_pseudonymises(UserStore::connect(&url).await.expect("connect"), "sqlite").await;
    }

    #[tokio::test]
    async fn postgres_erasure_pseudonymises_the_audit_log() {
        if let Some(store) = crate::store::tests::test_postgres().await {
            erasure_pseudonymises(store, "postgres").await;
        }
    }

    #[tokio::test]
    async fn failed_authentications_count_after_the_last_success() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let log = UserStore::connect(&url).await.expect("connect").audit_log();
        let base = now_ms();
        let refused = |id: &str, at: i64, shadow: bool| {
            let mut r = record(id, "mallory", at, "a", shadow);
            r.outcome = Outcome::Decided(Decision { approved: false, reason: "FACE_MISMATCH".into(), score: None });
            r
        };
        for (i, at) in [base - 5000, base - 4000, base - 3000].iter().enumerate() {
            log.record(&refused(&format!("f{i}"), *at, false)).await.expect("record");
        }
        assert_eq!(log.failed_authentications("mallory", base - 60_000).await.expect("count"), (3, Some(base - 5000)));
        // Outside the window they do not count; shadows never do.
        assert_eq!(log.failed_authentications("mallory", base - 3500).await.expect("count").0, 1);
        log.record(&refused("s", base - 2500, true)).await.expect("record");
        assert_eq!(log.failed_authentications("mallory", base - 60_000).await.expect("count").0, 3);
        // An approved authentication starts the count again.
        log.record(&record("ok", "mallory", base - 2000, "a", false)).await.expect("record");
        log.record(&refused("f3", base - 1000, false)).await.expect("record");
        assert_eq!(log.failed_authentications("mallory", base - 60_000).await.expect("count"), (1, Some(base - 1000)));
        assert_eq!(log.failed_authentications("someone-else", base - 60_000).await.expect("count"), (0, None));
    }
}
