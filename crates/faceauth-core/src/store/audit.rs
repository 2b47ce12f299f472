//! The audit log: one row per policy decision (the variant that answered and each
//! shadow), with the evidence it decided on as JSON and the latencies. Images are
//! never stored. Rows older than the retention are purged.

use sqlx::{AnyPool, Connection, Row};

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

impl DecisionRecord {
    /// Whether this decision counts against the attempt limit: an authentication
    /// answered (not a shadow) that the policy refused although its evidence showed
    /// a face. Showing a face is a guess at the user's face, whatever the reason
    /// (`FACE_MISMATCH`; `LIVENESS_CHECK_FAILED`: a photo of the user held up;
    /// `MULTIPLE_FACES_DETECTED`: several guesses at once); a picture without a face
    /// (`NO_FACE_DETECTED`, blank or garbage) is none, and counting it let anyone
    /// lock a user out with five blank PNGs. A server failure (`POLICY_ERROR`) is no
    /// decision and does not count. Unreadable evidence counts (fail closed).
    pub fn counts_as_attempt(&self) -> bool {
        let refused = matches!(&self.outcome, Outcome::Decided(d) if !d.approved);
        let face_shown = match &self.evidence {
            RecordedEvidence::Readable(Evidence::Authenticate(e)) => e.summary.frames_with_face > 0,
            RecordedEvidence::Readable(Evidence::Enroll(_)) => false,
            RecordedEvidence::Unreadable { .. } | RecordedEvidence::Omitted => true,
        };
        self.endpoint == Endpoint::Authenticate && !self.shadow && refused && face_shown
    }
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
                 score, evidence, analysis_ms, policy_ms, total_ms, error, counts_as_attempt, attempt_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $17 = 1 THEN $10 ELSE NULL END, $11, $12, $13, \
                 $14, $15, $16, $18)",
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
                    motion: crate::policy::MotionSummary {
                        pairs: 0,
                        blinks: 0,
                        yaw_range: 0.0,
                        pitch_range: 0.0,
                        landmark_motion: 0.0,
                        non_rigid_motion: 0.0,
                    },
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
        let refused = |id: &str, at: i64, shadow: bool| refused(id, "mallory", at, "FACE_MISMATCH", 1, shadow);
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

    /// A refused authentication of `username` at `at`, for `reason`, with
    /// `frames_with_face` frames that showed a face.
    fn refused(id: &str, username: &str, at: i64, reason: &str, frames_with_face: u32, shadow: bool) -> DecisionRecord {
        let mut r = record(id, username, at, "a", shadow);
        r.outcome = Outcome::Decided(Decision { approved: false, reason: reason.into(), score: None });
        if let RecordedEvidence::Readable(Evidence::Authenticate(e)) = &mut r.evidence {
            e.summary.frames_with_face = frames_with_face;
        }
        r
    }

    /// Issue 22, item 8: five blank PNGs (no face) locked a user out. Only refusals
    /// that showed a face count; a policy failure does not.
    #[tokio::test]
    async fn only_refusals_that_showed_a_face_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let log = UserStore::connect(&url).await.expect("connect").audit_log();
        let base = now_ms();
        for i in 0..6 {
            log.record(&refused(&format!("blank{i}"), "victim", base - 100 + i, "NO_FACE_DETECTED", 0, false))
                .await
                .expect("record");
        }
        let mut failed = refused("trap", "victim", base - 50, "POLICY_ERROR", 1, false);
        failed.outcome = Outcome::Failed { failure: Failure::PolicyError, message: "wasm trap".into() };
        log.record(&failed).await.expect("record");
        assert_eq!(log.failed_authentications("victim", base - 60_000).await.expect("count").0, 0);
        for (i, reason) in ["FACE_MISMATCH", "LIVENESS_CHECK_FAILED", "MULTIPLE_FACES_DETECTED"].iter().enumerate() {
            log.record(&refused(&format!("guess{i}"), "victim", base - 40 + i as i64, reason, 1, false))
                .await
                .expect("record");
        }
        assert_eq!(log.failed_authentications("victim", base - 60_000).await.expect("count").0, 3);
    }

    /// Issue 22, item 4: 20 concurrent reservations against a limit of 5: exactly 5
    /// granted, on each backend (PostgreSQL: two pools, as two replicas). A released
    /// reservation frees its place; a recorded decision takes it over.
    async fn reservations_are_atomic(first: AuditLog, second: AuditLog, tag: &str) {
        let user = format!("racer-{tag}-{}", now_ms());
        let limit = Limit { max: 5, window_ms: 60_000 };
        let attempts = (0..20).map(|i| {
            let log = if i % 2 == 0 { first.clone() } else { second.clone() };
            let user = user.clone();
            tokio::spawn(async move { log.reserve_attempt(&user, limit).await.expect("reserve") })
        });
        let mut granted = Vec::new();
        for attempt in attempts {
            match attempt.await.expect("join") {
                Reserved::Granted(id) => granted.push(id),
                Reserved::Refused { retry_after_ms } => assert!((1000..=60_000).contains(&retry_after_ms)),
            }
        }
        assert_eq!(granted.len(), 5, "{granted:?}");
        // One ends in an error that is no attempt: its place is free again.
        first.release_attempt(granted[0]).await.expect("release");
        let Reserved::Granted(again) = first.reserve_attempt(&user, limit).await.expect("reserve") else {
            panic!("a released place is free");
        };
        assert!(matches!(second.reserve_attempt(&user, limit).await.expect("reserve"), Reserved::Refused { .. }));
        // Four end refused with a face: the decision rows take their places.
        let now = now_ms();
        for (i, id) in granted[1..].iter().enumerate() {
            let r = refused(&format!("r{i}"), &user, now + i as i64, "FACE_MISMATCH", 1, false);
            first.record_attempt(&r, Some(*id)).await.expect("record");
        }
        assert_eq!(first.failed_authentications(&user, now - 60_000).await.expect("count").0, 4);
        assert!(matches!(first.reserve_attempt(&user, limit).await.expect("reserve"), Reserved::Refused { .. }));
        // The last one is approved: the count starts again.
        let mut approved = record("ok", &user, now_ms() + 10, "a", false);
        approved.username = user.clone();
        first.record_attempt(&approved, Some(again)).await.expect("record");
        assert!(matches!(second.reserve_attempt(&user, limit).await.expect("reserve"), Reserved::Granted(_)));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sqlite_attempt_reservations_are_atomic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = UserStore::connect(&url).await.expect("connect");
        let other = UserStore::connect(&url).await.expect("connect");
        reservations_are_atomic(store.audit_log(), other.audit_log(), "sqlite").await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_attempt_reservations_are_atomic() {
        if let (Some(store), Some(other)) =
            (crate::store::tests::test_postgres().await, crate::store::tests::test_postgres().await)
        {
            reservations_are_atomic(store.audit_log(), other.audit_log(), "postgres").await;
        }
    }
}
