use super::*;
use crate::policy::{AuthenticateEvidence, Decision, Evidence, Failure, FrameSummary, ImageSize, MediaKind, Outcome};
use crate::store::{UserStore, now_ms};

fn record(request_id: &str, username: &str, at_ms: i64, variant: &str, shadow: bool) -> DecisionRecord {
    DecisionRecord {
        request_id: request_id.into(),
        at_ms,
        username: username.into(),
        endpoint: Endpoint::Authenticate,
        variant: variant.into(),
        policy: "default@0.1.0".into(),
        params_hash: "0123456789abcdef".into(),
        shadow,
        outcome: if shadow {
            Outcome::Failed { failure: Failure::PolicyError, message: "wasm trap: unreachable".into() }
        } else {
            Outcome::Decided(Decision { approved: true, reason: "AUTHENTIFICATION_SUCCESS".into(), score: Some(0.61) })
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
        log.decisions(&DecisionFilter { variant: Some(variant.clone()), shadow: Some(false), ..Default::default() })
            .await
            .expect("read"),
    );
    assert_eq!(answers.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(), ["r1", "r2"]);
    let shadows =
        mine(log.decisions(&DecisionFilter { shadow: Some(true), ..Default::default() }).await.expect("read"));
    assert_eq!(shadows.len(), 1);
    assert!(shadows[0].outcome.is_policy_error() && shadows[0].outcome.error() == Some("wasm trap: unreachable"));
    // One request: its answer and its shadow, nothing of the other request.
    let r1 = mine(
        log.decisions(&DecisionFilter { request_id: Some("r1".into()), ..Default::default() }).await.expect("read"),
    );
    assert_eq!(r1.iter().map(|r| (r.request_id.as_str(), r.shadow)).collect::<Vec<_>>(), [("r1", false), ("r1", true)]);
    assert_eq!(r1[0].params_hash, "0123456789abcdef", "the parameters' hash is read back");
    let recent =
        mine(log.decisions(&DecisionFilter { since_ms: Some(base - 1), ..Default::default() }).await.expect("read"));
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

/// Issue 21: paging past any limit. Rows share milliseconds, and the last written
/// is the oldest (a shadow is recorded after later requests' answers), so neither
/// the time nor the id alone orders them: every row comes exactly once, in the
/// order `at DESC, id DESC`, whatever the page size.
async fn pages_cover_every_row_once(log: AuditLog, tag: &str) {
    let variant = format!("pages-{tag}-{}", now_ms());
    let base = now_ms();
    // (request id, at): written in this order.
    let rows = [("a", 0), ("b", 0), ("c", 0), ("d", 1), ("e", 1), ("f", 2), ("g", -5)];
    for (id, at) in rows {
        log.record(&record(id, "pager", base + at, &variant, false)).await.expect("record");
    }
    let newest_first = ["f", "e", "d", "c", "b", "a", "g"];
    let filter = DecisionFilter { variant: Some(variant.clone()), without_evidence: true, ..Default::default() };
    let whole = log.decisions_page(&filter).await.expect("read");
    assert_eq!(whole.next, None);
    let ids = |records: &[DecisionRecord]| records.iter().rev().map(|r| r.request_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&whole.decisions), newest_first);
    for limit in 1..=8 {
        let (mut seen, mut before, mut pages) = (Vec::new(), None, 0);
        loop {
            let page = log
                .decisions_page(&DecisionFilter { limit: Some(limit), before, ..filter.clone() })
                .await
                .expect("read");
            pages += 1;
            assert!(page.decisions.len() as i64 <= limit);
            seen.extend(ids(&page.decisions));
            match page.next {
                Some(next) => {
                    // The cursor is the page's oldest row, and reads back as written.
                    assert_eq!(next.at_ms, page.decisions[0].at_ms);
                    assert_eq!(next.to_string().parse::<Cursor>().expect("cursor"), next);
                    before = Some(next);
                }
                None => break,
            }
            assert!(pages <= 7, "limit {limit}: paging does not end");
        }
        assert_eq!(seen, newest_first, "limit {limit}");
        // A full last page says there is no next one (no empty page to fetch).
        assert_eq!(pages, 7usize.div_ceil(limit as usize), "limit {limit}");
    }
    // Paging and the other filters together: the request's rows before a cursor.
    let after_e = log.decisions_page(&DecisionFilter { limit: Some(2), ..filter.clone() }).await.expect("read");
    assert_eq!(ids(&after_e.decisions), ["f", "e"]);
    let only_b = DecisionFilter { request_id: Some("b".into()), before: after_e.next, ..filter.clone() };
    assert_eq!(ids(&log.decisions_page(&only_b).await.expect("read").decisions), ["b"]);
    let only_f = DecisionFilter { request_id: Some("f".into()), before: after_e.next, ..filter };
    assert!(log.decisions_page(&only_f).await.expect("read").decisions.is_empty());
}

#[tokio::test]
async fn sqlite_pages_cover_every_row_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    pages_cover_every_row_once(UserStore::connect(&url).await.expect("connect").audit_log(), "sqlite").await;
}

#[tokio::test]
async fn postgres_pages_cover_every_row_once() {
    if let Some(store) = crate::store::tests::test_postgres().await {
        pages_cover_every_row_once(store.audit_log(), "postgres").await;
    }
}

#[test]
fn a_cursor_is_at_dash_id() {
    assert_eq!("1765000000000-42".parse::<Cursor>().expect("cursor"), Cursor { at_ms: 1_765_000_000_000, id: 42 });
    assert_eq!("-5-3".parse::<Cursor>().expect("a time before 1970"), Cursor { at_ms: -5, id: 3 });
    assert_eq!(Cursor { at_ms: 7, id: 9 }.to_string(), "7-9");
    for bad in ["", "42", "x-1", "1-x", "1-2-3", "1.5-2", "1 - 2"] {
        assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
    }
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
    let rows = log.decisions(&DecisionFilter { since_ms: Some(base - 1), ..Default::default() }).await.expect("read");
    let names = |id: &str| rows.iter().filter(|r| r.request_id == id).map(|r| r.username.clone()).collect::<Vec<_>>();
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
