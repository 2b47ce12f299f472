//! The service (`FaceAuth`): its state, its life cycle and the enroll and authenticate
//! use cases; how a request is decided and recorded is in `decide`, the attempt
//! limit in `attempts`.

use super::decide::{OnApproval, Timing};
use super::gallery::EnrolledFaces;
use super::{AttemptLimit, FaceEngine, UseCaseError, face_evidence, validate_username};
use crate::policy::{Decision, DuplicateSearch, Endpoint, EnrollEvidence, Evidence, GalleryMatch};
use crate::store::audit::AuditLog;
use crate::store::{StoreError, UserStore, now_ms};
use crate::telemetry::{self, Stage};

/// The service: engine, store, audit log and the process's metrics. The HTTP layer
/// and the CLI reach them only through its use cases (here and in `admin`).
pub struct FaceAuth {
    pub(super) engine: FaceEngine,
    pub(super) store: UserStore,
    pub(super) audit: AuditLog,
    metrics: &'static telemetry::Exporter,
    pub(super) attempts: Option<AttemptLimit>,
    /// The enrolled faces, searched at enrollment (one person, one account).
    pub(super) faces: std::sync::Arc<EnrolledFaces>,
    /// Whether enrollments give the policy the duplicate search.
    duplicate_search: bool,
    /// A write failed for lack of space and none has succeeded since: `/ready`
    /// then probes with a write of its own.
    storage_full: std::sync::atomic::AtomicBool,
}

impl FaceAuth {
    pub fn new(engine: FaceEngine, store: UserStore) -> Self {
        let audit = store.audit_log();
        let faces = std::sync::Arc::new(EnrolledFaces::new(&engine.models.embedding_model_version));
        Self {
            faces,
            duplicate_search: true,
            engine,
            store,
            audit,
            metrics: telemetry::install(),
            attempts: None,
            storage_full: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// This service with a limit on failed authentications per username.
    pub fn with_attempt_limit(self, limit: Option<AttemptLimit>) -> Self {
        Self { attempts: limit.filter(|l| l.max_failures > 0), ..self }
    }

    /// This service with (the default) or without the duplicate search at enrollment.
    pub fn with_duplicate_search(self, on: bool) -> Self {
        Self { duplicate_search: on, ..self }
    }

    /// Notes whether a write reached the storage: a full one is remembered until a
    /// write succeeds again (see `database_ready`).
    pub(super) fn watch_write<T>(&self, written: Result<T, StoreError>) -> Result<T, StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        match &written {
            Ok(_) => self.storage_full.store(false, Relaxed),
            Err(StoreError::Full(_)) => self.storage_full.store(true, Relaxed),
            Err(_) => {}
        }
        written
    }

    /// The database answers and, if a write last failed for lack of space, a write
    /// succeeds again (`/ready`): a full disk answers reads, so `SELECT 1` alone
    /// said ready while every authentication failed.
    pub async fn database_ready(&self) -> Result<(), StoreError> {
        self.store.ping().await?;
        if self.storage_full.load(std::sync::atomic::Ordering::Relaxed) {
            self.watch_write(self.audit.probe_write().await)?;
        }
        Ok(())
    }

    /// Whether a new upload would be refused as busy right now (see `FaceEngine::is_saturated`).
    pub fn is_saturated(&self) -> bool {
        self.engine.is_saturated()
    }

    /// Watches the policy directory (when there is one), reloading on change.
    pub fn watch_policies(&self, interval: std::time::Duration) -> Option<tokio::task::JoinHandle<()>> {
        self.engine.router.watch(interval)
    }

    /// Loads every enrolled template into the duplicate-search index (else the
    /// first enrollment does); returns how many.
    pub async fn load_enrolled_faces(&self) -> Result<usize, StoreError> {
        self.faces.catch_up(&self.store).await?;
        Ok(self.faces.len())
    }

    /// Follows the other replicas' enrollments and erasures every `interval`.
    pub fn watch_enrolled_faces(&self, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
        self.faces.watch(self.store.clone(), interval)
    }

    /// The process's metrics since start-up (requests, vision pool, stages,
    /// decisions), for `/metrics`.
    pub fn metrics(&self) -> &'static telemetry::Exporter {
        self.metrics
    }

    /// Deletes audit rows older than `retention` from now; returns how many.
    pub async fn apply_retention(&self, retention: std::time::Duration) -> Result<u64, StoreError> {
        self.audit.apply_retention(retention).await
    }

    /// Closes the database pool (after the last request).
    pub async fn close(&self) {
        self.store.close().await;
    }

    /// Runs the use case of `endpoint` on an upload; `request_id` (the HTTP
    /// request's) names its audit records, else a new id does.
    pub async fn submit(
        &self,
        endpoint: Endpoint,
        username: &str,
        upload: Vec<u8>,
        request_id: Option<String>,
    ) -> Result<Decision, UseCaseError> {
        let id = request_id.unwrap_or_else(self::request_id);
        match endpoint {
            Endpoint::Enroll => self.enroll_as(id, username, upload).await,
            Endpoint::Authenticate => self.authenticate_as(id, username, upload).await,
        }
    }

    pub async fn enroll(&self, username: &str, upload: Vec<u8>) -> Result<Decision, UseCaseError> {
        self.enroll_as(request_id(), username, upload).await
    }

    pub async fn authenticate(&self, username: &str, upload: Vec<u8>) -> Result<Decision, UseCaseError> {
        self.authenticate_as(request_id(), username, upload).await
    }

    async fn enroll_as(&self, id: String, username: &str, upload: Vec<u8>) -> Result<Decision, UseCaseError> {
        let started = std::time::Instant::now();
        let username = &validate_username(username)?;
        // Cheap early answers; the primary key and the index of skeletons still
        // decide under a race.
        if store_call(self.store.find(username)).await?.is_some() {
            return Err(UseCaseError::DuplicateUsername);
        }
        if store_call(self.store.confusable_with_enrolled(username)).await? {
            return Err(UseCaseError::ConfusableUsername);
        }
        let route = self.engine.route(username)?;
        let (image, analyzed) = self.engine.analyze_upload(upload).await?;
        let timing = Timing { started, analysis_ms: started.elapsed().as_secs_f64() * 1000.0 };
        let primary = analyzed.first().map(|f| &f.embedding);
        // Searched and decided under the gallery lock, stored before it is released:
        // two enrollments of one face (on any replica) cannot both miss each other.
        let mut guard = store_call(self.faces.lock_for_enrollment(&self.store)).await?;
        // A concurrent enrollment of this name (on any replica) that stored first: its
        // face would now be found as "another" account; the name is what is taken.
        if store_call(self.store.find(username)).await?.is_some() {
            return Err(UseCaseError::DuplicateUsername);
        }
        let duplicates = match primary.filter(|_| self.duplicate_search) {
            Some(embedding) => {
                let search = self.faces.search(embedding, DUPLICATE_MATCHES).await;
                let matches = search.hits.iter().map(|h| GalleryMatch { similarity: h.similarity }).collect();
                Some(DuplicateSearch { gallery_size: search.gallery_size, matches })
            }
            None => None,
        };
        let evidence =
            Evidence::Enroll(EnrollEvidence { image, faces: face_evidence(&analyzed, image, None), duplicates });
        let decided = self
            .decide_and_record(id, username, &route, evidence, timing, OnApproval::Enroll(primary, &mut guard), None)
            .await;
        if let Err(e) = guard.finish(&self.store).await {
            // The enrollment is committed; the index catches up at the next poll.
            tracing::warn!(error = %e, "the duplicate-search index did not take the enrollment at once");
        }
        decided
    }

    async fn authenticate_as(&self, id: String, username: &str, upload: Vec<u8>) -> Result<Decision, UseCaseError> {
        let started = std::time::Instant::now();
        let username = &validate_username(username)?;
        let user = store_call(self.store.find(username)).await?.ok_or(UseCaseError::UnknownUser)?;
        // Before the analysis: a guessing attack costs no inference, and concurrent
        // guesses cannot all pass one count. Released, unless a decision is recorded
        // in its place, whichever way this request ends.
        let reservation = self.reserve_attempt(username).await?;
        if user.model_version != self.engine.models.embedding_model_version {
            return Err(UseCaseError::OutdatedTemplate(user.model_version));
        }
        // The route is taken once: a policy swap during the analysis does not change
        // which variants decide this request.
        let route = self.engine.route(username)?;
        let media = self.engine.analyze_media(upload, route.requires_liveness()).await?;
        let timing = Timing { started, analysis_ms: started.elapsed().as_secs_f64() * 1000.0 };
        let evidence = Evidence::Authenticate(media.evidence(Some(&user.embedding)));
        self.decide_and_record(id, username, &route, evidence, timing, OnApproval::Nothing, reservation).await
    }
}

/// Enrolled templates most similar to an enrolling face given to the policy.
const DUPLICATE_MATCHES: usize = 10;

/// A database call on a request's path, timed as the `store` stage.
pub(super) async fn store_call<T>(call: impl std::future::Future<Output = T>) -> T {
    telemetry::timed_async(Stage::Store, call).await
}

/// A unique id per request, shared by its answer and shadow records.
fn request_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:x}-{:x}-{n:x}", now_ms(), std::process::id())
}
