//! The use cases (enroll, authenticate, reset): media -> vision -> policy -> store.
//! The HTTP layer and the CLI tools both call these.

pub mod admin;
mod evidence;
pub mod replay;
mod settings;
mod start;
pub mod stats;
pub mod username;

use std::path::PathBuf;
use std::sync::Arc;

use crate::media::video::{self, VideoLimits};
use crate::media::{self, DecodeLimits, MediaError};
use crate::policy::router::{PolicyRouter, Route, RouterError, Variant};
use crate::policy::{
    AuthenticateEvidence, Decision, Endpoint, EnrollEvidence, Evidence, Failure, Frame, ImageSize, MediaKind, Outcome,
    PolicyError, PolicyLimits, PolicyRuntime,
};
use crate::store::audit::{self as audit_log, AuditLog, DecisionRecord, RecordedEvidence, Reserved};
use crate::store::{StoreError, UserStore, now_ms};
use crate::telemetry::{self, Stage};
use crate::vision::{AnalyzedFace, FaceAnalyzer, FaceEmbedding, ModelFiles, VisionError, VisionPool};

pub use evidence::{faces as face_evidence, motion as motion_summary, summarize as summarize_frames};
pub use settings::{AttemptConfig, EngineConfig, locate};
pub use start::{StartError, start};
pub use username::{MAX_USERNAME_BYTES, validate_username};

#[derive(Debug, thiserror::Error)]
pub enum UseCaseError {
    #[error("username is empty")]
    EmptyUsername,
    #[error(
        "username is longer than {MAX_USERNAME_BYTES} bytes, is not valid UTF-8, or contains control or invisible characters"
    )]
    InvalidUsername,
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("no user is enrolled under this username")]
    UnknownUser,
    #[error("this username is already enrolled")]
    DuplicateUsername,
    #[error("this username looks like an enrolled one (same UTS #39 confusable skeleton)")]
    ConfusableUsername,
    #[error("the enrolled template was made with another face model ({0}); enroll again")]
    OutdatedTemplate(String),
    #[error("the server is busy; retry later")]
    Busy,
    #[error("too many failed authentications for this username; retry in {retry_after_s} s")]
    TooManyAttempts { retry_after_s: u64 },
    #[error("policy failed: {0}")]
    Policy(#[source] PolicyError),
    #[error(transparent)]
    Vision(VisionError),
    #[error(transparent)]
    Store(StoreError),
}

impl UseCaseError {
    /// The documented reason code of the failure (README, "Reasons"): a fact of the
    /// use case, the same from the API, the CLI and `eval`; only the HTTP edge turns
    /// it into a status.
    pub fn code(&self) -> &'static str {
        match self {
            UseCaseError::EmptyUsername => "EMPTY_USERNAME",
            UseCaseError::InvalidUsername => "INVALID_USERNAME",
            UseCaseError::Media(e) => match e {
                MediaError::UnsupportedFormat => "UNSUPPORTED_MEDIA_TYPE",
                MediaError::Corrupt(_) => "INVALID_IMAGE",
                MediaError::TooLarge(_) => "IMAGE_TOO_LARGE",
                MediaError::VideoTooLong(_) => "VIDEO_TOO_LONG",
                MediaError::VideoTooLarge(_) => "VIDEO_TOO_LARGE",
                MediaError::InvalidVideo(_) => "INVALID_VIDEO",
                MediaError::DecoderTimeout(_) => "VIDEO_DECODE_TIMEOUT",
                MediaError::DecoderUnavailable(_) => "VIDEO_UNSUPPORTED",
                MediaError::TempStorage(_) => "STORAGE_FULL",
                MediaError::ClientBusy(_) => "RATE_LIMITED",
            },
            UseCaseError::UnknownUser => "UNKNOWN_USER",
            // A look-alike (UTS #39 skeleton) of an enrolled name is taken too.
            UseCaseError::DuplicateUsername | UseCaseError::ConfusableUsername => "USERNAME_ALREADY_EXISTS",
            UseCaseError::OutdatedTemplate(_) => "TEMPLATE_OUTDATED",
            UseCaseError::Busy => "SERVER_BUSY",
            UseCaseError::TooManyAttempts { .. } => "TOO_MANY_ATTEMPTS",
            UseCaseError::Policy(_) => "POLICY_ERROR",
            UseCaseError::Vision(_) => "INTERNAL_ERROR",
            UseCaseError::Store(StoreError::Full(_)) => "STORAGE_FULL",
            UseCaseError::Store(e) if e.is_unavailable() => "DATABASE_UNAVAILABLE",
            UseCaseError::Store(_) => "INTERNAL_ERROR",
        }
    }

    /// Seconds after which a retry may succeed, for the failures that say so.
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            UseCaseError::Busy => Some(1),
            UseCaseError::TooManyAttempts { retry_after_s } => Some(*retry_after_s),
            _ => None,
        }
    }
}

impl From<VisionError> for UseCaseError {
    fn from(e: VisionError) -> Self {
        match e {
            VisionError::Busy => UseCaseError::Busy,
            other => UseCaseError::Vision(other),
        }
    }
}

impl From<PolicyError> for UseCaseError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::Busy => UseCaseError::Busy,
            other => UseCaseError::Policy(other),
        }
    }
}

impl From<StoreError> for UseCaseError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DuplicateUsername => UseCaseError::DuplicateUsername,
            StoreError::ConfusableUsername => UseCaseError::ConfusableUsername,
            other => UseCaseError::Store(other),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("ONNX Runtime library not found: run scripts/setup.sh or pass --onnxruntime-lib")]
    OnnxRuntimeMissing,
    #[error("cannot load ONNX Runtime from {path}: {message}")]
    OnnxRuntime { path: PathBuf, message: String },
    #[error(transparent)]
    Vision(#[from] VisionError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Router(#[from] RouterError),
}

/// The face engine without storage: models and policies. Tools use it alone.
pub struct FaceEngine {
    vision: VisionPool,
    router: Arc<PolicyRouter>,
    models: ModelFiles,
    onnxruntime_lib: PathBuf,
    decode_limits: DecodeLimits,
    video_limits: VideoLimits,
    // Sessions borrow the environment's settings; keep it alive as long as they are.
    _ort: ort::environment::Environment,
}

impl FaceEngine {
    /// Loads ONNX Runtime, verifies and loads the models, compiles and self-checks the
    /// policies (one `--policy`, or the variants of `--policy-dir`).
    pub fn init(config: &EngineConfig) -> Result<Self, InitError> {
        // Before the pool exists: its gauges are registered with the recorder.
        telemetry::install();
        let lib = config.onnxruntime_lib().ok_or(InitError::OnnxRuntimeMissing)?;
        let env = crate::vision::onnx_environment(&lib)
            .map_err(|e| InitError::OnnxRuntime { path: lib.clone(), message: e.to_string() })?;
        let models = ModelFiles::verify(&config.models_dir())?;
        let workers = config.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let runtime = PolicyRuntime::new(PolicyLimits {
            fuel: config.policy_fuel,
            memory_bytes: config.policy_memory_mib * 1024 * 1024,
            ..PolicyLimits::default()
        })?;
        let router = Arc::new(match &config.policy_dir {
            Some(dir) => PolicyRouter::from_dir(runtime, dir)?,
            None => PolicyRouter::single(runtime, &config.policy())?,
        });
        // The liveness models are loaded always (a variant that needs them can be
        // swapped in at run time) but run only for requests whose policies read them.
        let analyzers = (0..workers).map(|_| FaceAnalyzer::load(&env, &models, true)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            vision: VisionPool::new(analyzers, config.max_queued, config.min_face_px),
            router,
            models,
            onnxruntime_lib: lib,
            decode_limits: DecodeLimits::default(),
            video_limits: config.video_limits(),
            _ort: env,
        })
    }

    pub fn router(&self) -> &Arc<PolicyRouter> {
        &self.router
    }

    /// The variants `username` meets now (fail closed when none can answer).
    pub fn route(&self, username: &str) -> Result<Route, UseCaseError> {
        self.router
            .current()
            .route(username)
            .ok_or_else(|| UseCaseError::Policy(PolicyError::InvalidDecision("no policy variant can answer".into())))
    }

    pub fn models(&self) -> &ModelFiles {
        &self.models
    }

    pub fn onnxruntime_lib(&self) -> &std::path::Path {
        &self.onnxruntime_lib
    }

    /// Whether a new upload would be refused as `Busy` right now (checked again when
    /// it is admitted): the HTTP layer answers 503 before reading the body.
    pub fn is_saturated(&self) -> bool {
        self.vision.is_full()
    }

    /// Analyses a still image or, for a video, a bounded sample of its frames; the
    /// liveness measures only `with_liveness`.
    pub async fn analyze_media(&self, bytes: Vec<u8>, with_liveness: bool) -> Result<AnalyzedMedia, UseCaseError> {
        if !video::is_video(&bytes) {
            let (image, faces) = self.analyze_image(bytes, with_liveness).await?;
            return Ok(AnalyzedMedia { kind: MediaKind::Image, image, frames: vec![(0, faces)] });
        }
        let admitted = self.vision.admit()?;
        // Blinks and movement need denser frames than matching does.
        let max_frames = if with_liveness { self.video_limits.liveness_frames } else { self.video_limits.max_frames };
        let sampled =
            telemetry::timed_async(Stage::DecodeVideo, video::sample_frames(bytes, &self.video_limits, max_frames))
                .await?;
        let image = sampled
            .first()
            .map(|f| ImageSize { width: f.pixels.width(), height: f.pixels.height() })
            .unwrap_or(ImageSize { width: 0, height: 0 });
        let mut frames = Vec::with_capacity(sampled.len());
        for frame in sampled {
            let faces = self.vision.analyze(&admitted, Arc::new(frame.pixels), with_liveness).await?;
            frames.push((frame.timestamp_ms, faces));
        }
        Ok(AnalyzedMedia { kind: MediaKind::Video, image, frames })
    }

    /// Decodes a still image (an ID document) and analyses every face in it.
    pub async fn analyze_upload(&self, bytes: Vec<u8>) -> Result<(ImageSize, Vec<AnalyzedFace>), UseCaseError> {
        self.analyze_image(bytes, false).await
    }

    async fn analyze_image(
        &self,
        bytes: Vec<u8>,
        with_liveness: bool,
    ) -> Result<(ImageSize, Vec<AnalyzedFace>), UseCaseError> {
        if video::is_video(&bytes) {
            // An ID document is a photo or a scan.
            return Err(MediaError::UnsupportedFormat.into());
        }
        // Admitted before decoding: beyond the queue, a 503 costs no decode.
        let admitted = self.vision.admit()?;
        let limits = self.decode_limits;
        // Decoded on the worker that analyses it (see `VisionPool::analyze_decoded`).
        let decode = move || {
            let decoded = telemetry::timed(Stage::Decode, || media::decode_image(&bytes, limits))?;
            let (width, height) = decoded.original_size;
            let scale = decoded.scale();
            Ok::<_, MediaError>((Arc::new(decoded.pixels), scale, ImageSize { width, height }))
        };
        Ok(self.vision.analyze_decoded(&admitted, decode, with_liveness).await??)
    }
}

/// Faces found in an upload: one frame for a still image, sampled frames for a video.
pub struct AnalyzedMedia {
    pub kind: MediaKind,
    pub image: ImageSize,
    /// (timestamp in ms, faces largest first)
    pub frames: Vec<(u32, Vec<AnalyzedFace>)>,
}

impl AnalyzedMedia {
    /// The policy's evidence: similarities to `template`, or, without one, to each
    /// frame's own primary face (tools that measure liveness alone).
    pub fn evidence(&self, template: Option<&FaceEmbedding>) -> AuthenticateEvidence {
        let primaries: Vec<Option<&AnalyzedFace>> = self.frames.iter().map(|(_, faces)| faces.first()).collect();
        let mut track = match self.kind {
            MediaKind::Video => evidence::earlier_similarities(&primaries),
            MediaKind::Image => Vec::new(),
        }
        .into_iter();
        let frames: Vec<Frame> = self
            .frames
            .iter()
            .map(|(timestamp_ms, faces)| Frame {
                timestamp_ms: *timestamp_ms,
                faces: face_evidence(faces, self.image, template),
                earlier_similarities: track.next().unwrap_or_default(),
            })
            .collect();
        let summary = summarize_frames(&frames, motion_summary(&primaries));
        AuthenticateEvidence { media: self.kind, image: self.image, frames, summary }
    }
}

/// The service: engine, store, audit log and the process's metrics. The HTTP layer
/// and the CLI reach them only through its use cases (here and in `admin`).
pub struct FaceAuth {
    engine: FaceEngine,
    store: UserStore,
    audit: AuditLog,
    metrics: &'static telemetry::Exporter,
    attempts: Option<AttemptLimit>,
    /// A write failed for lack of space and none has succeeded since: `/ready`
    /// then probes with a write of its own.
    storage_full: std::sync::atomic::AtomicBool,
}

/// Refused authentications allowed per username within a window (after the last
/// approved one); more are answered 429 TOO_MANY_ATTEMPTS before any analysis.
///
/// What counts (`DecisionRecord::counts_as_attempt`): an authentication the policy
/// refused although it showed a face. A face shown is a guess at the user's face,
/// whatever the policy's reason: `FACE_MISMATCH`, `LIVENESS_CHECK_FAILED` (a photo or
/// screen of the user held up: the very attack to limit) and `MULTIPLE_FACES_DETECTED`
/// (several guesses at once) count. An upload without any face (`NO_FACE_DETECTED`:
/// five blank 249-byte PNGs locked a user out for 15 minutes), a server failure
/// (`POLICY_ERROR`, busy, timeouts) and an upload that is refused before a decision
/// (undecodable, too large) do not. An approved authentication starts the count again.
///
/// Each attempt is reserved before its analysis, atomically across replicas (see
/// `AuditLog::reserve_attempt`): reservations not yet decided count too, so that at
/// most `max_failures` attempts are analysed however many arrive at once.
#[derive(Debug, Clone, Copy)]
pub struct AttemptLimit {
    pub max_failures: u32,
    pub window: std::time::Duration,
}

/// A decision made, with how long the policy took.
struct Decided {
    decision: Result<Decision, PolicyError>,
    policy_ms: f64,
}

async fn decide(variant: &Variant, evidence: &Evidence) -> Decided {
    let started = std::time::Instant::now();
    let decision = variant.policy.decide(evidence.clone()).await;
    let elapsed = started.elapsed();
    telemetry::observe_stage(Stage::Policy, elapsed);
    Decided { decision, policy_ms: elapsed.as_secs_f64() * 1000.0 }
}

/// A database call on a request's path, timed as the `store` stage.
async fn store_call<T>(call: impl std::future::Future<Output = T>) -> T {
    telemetry::timed_async(Stage::Store, call).await
}

impl DecisionRecord {
    /// This record with `variant`'s decision in it.
    fn with_outcome(self, variant: &Variant, decided: &Decided, shadow: bool) -> Self {
        DecisionRecord {
            variant: variant.name.clone(),
            policy: variant.policy_label(),
            shadow,
            // A failed policy is recorded as what a client sees of it: refused.
            outcome: Outcome::from_decision(&decided.decision),
            policy_ms: decided.policy_ms,
            at_ms: if shadow { now_ms() } else { self.at_ms },
            ..self
        }
    }
}

/// What an approved decision stores before it is recorded and answered.
enum OnApproval<'a> {
    Nothing,
    /// The primary face's embedding, if the evidence had a face.
    Enroll(Option<&'a FaceEmbedding>),
}

/// Timing of one request, for the audit log.
struct Timing {
    started: std::time::Instant,
    analysis_ms: f64,
}

impl FaceAuth {
    pub fn new(engine: FaceEngine, store: UserStore) -> Self {
        let audit = store.audit_log();
        Self {
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

    /// Reserves an attempt of `username` before its analysis, or refuses it 429
    /// when its counted failures and the attempts being decided reach the limit.
    /// `None`: no limit configured.
    async fn reserve_attempt(&self, username: &str) -> Result<Option<Reservation>, UseCaseError> {
        let Some(limit) = self.attempts else { return Ok(None) };
        let limit = audit_log::Limit {
            max: limit.max_failures,
            window_ms: limit.window.as_millis().min(i64::MAX as u128) as i64,
        };
        let reserved = match store_call(self.audit.reserve_attempt(username, limit)).await {
            // Refused: nothing was written.
            refused @ Ok(Reserved::Refused { .. }) => refused,
            written => self.watch_write(written),
        }?;
        match reserved {
            Reserved::Granted(id) => Ok(Some(Reservation { audit: self.audit.clone(), id, released: false })),
            Reserved::Refused { retry_after_ms } => {
                Err(UseCaseError::TooManyAttempts { retry_after_s: (retry_after_ms.max(1000) as u64).div_ceil(1000) })
            }
        }
    }

    /// Notes whether a write reached the storage: a full one is remembered until a
    /// write succeeds again (see `database_ready`).
    fn watch_write<T>(&self, written: Result<T, StoreError>) -> Result<T, StoreError> {
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
        let evidence = Evidence::Enroll(EnrollEvidence { image, faces: face_evidence(&analyzed, image, None) });
        let primary = analyzed.first().map(|f| &f.embedding);
        self.decide_and_record(id, username, &route, evidence, timing, OnApproval::Enroll(primary), None).await
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

    /// The answering variant decides and its decision is recorded; then, off the
    /// request's path, each shadow decides on the same evidence and is recorded.
    /// An authentication whose decision cannot be recorded is refused (its attempt
    /// would not count: on a full disk, 12 of 12 guesses were analysed and answered).
    #[allow(clippy::too_many_arguments)]
    async fn decide_and_record(
        &self,
        id: String,
        username: &str,
        route: &Route,
        evidence: Evidence,
        timing: Timing,
        on_approval: OnApproval<'_>,
        reservation: Option<Reservation>,
    ) -> Result<Decision, UseCaseError> {
        let decided = decide(&route.answer, &evidence).await;
        let mut answer = DecisionRecord {
            request_id: id,
            at_ms: now_ms(),
            username: username.to_string(),
            endpoint: evidence.endpoint(),
            variant: String::new(),
            policy: String::new(),
            shadow: false,
            outcome: Outcome::from_decision(&decided.decision),
            evidence: RecordedEvidence::Readable(evidence.clone()),
            analysis_ms: timing.analysis_ms,
            policy_ms: 0.0,
            total_ms: timing.started.elapsed().as_secs_f64() * 1000.0,
        }
        .with_outcome(&route.answer, &decided, false);
        // An approved enrollment is stored before anything is recorded, and a failed
        // store is recorded as the refusal the client gets: 20 racing enrollments of
        // one name left 19 "approved" rows for 1 stored user (issue 11, defect 6).
        let stored = match (on_approval, &decided.decision) {
            (OnApproval::Enroll(primary), Ok(d)) if d.approved => self.store_enrollment(username, primary).await,
            _ => Ok(()),
        };
        if let Err(e) = &stored {
            let failure = match e {
                UseCaseError::DuplicateUsername | UseCaseError::ConfusableUsername => Failure::UsernameAlreadyExists,
                UseCaseError::Policy(_) => Failure::PolicyError,
                _ => Failure::StoreError,
            };
            answer.outcome = Outcome::Failed { failure, message: crate::errors::error_chain(e) };
        }
        stats::observe_decision(&answer);
        let reserved = reservation.as_ref().map(|r| r.id);
        match self.watch_write(store_call(self.audit.record_attempt(&answer, reserved)).await) {
            Ok(()) => {
                if let Some(mut reservation) = reservation {
                    // The decision row took its place (`record_attempt` names and deletes it).
                    reservation.released = true;
                }
            }
            // Not approved, and the attempt left unrecorded had no answer.
            Err(e) if answer.endpoint == Endpoint::Authenticate => {
                tracing::error!(error = %e, request_id = %answer.request_id, "audit log write failed: refused");
                return Err(e.into());
            }
            Err(e) => {
                // An enrollment stored stands; losing its audit row is logged loudly.
                tracing::error!(error = %e, request_id = %answer.request_id, "audit log write failed");
            }
        }
        if !route.shadows.is_empty() {
            let (audit, shadows) = (self.audit.clone(), route.shadows.clone());
            tokio::spawn(async move {
                for variant in &shadows {
                    let decided = decide(variant, &evidence).await;
                    let record = answer.clone().with_outcome(variant, &decided, true);
                    stats::observe_decision(&record);
                    if let Err(e) = store_call(audit.record(&record)).await {
                        tracing::error!(error = %e, variant = %variant.name, "audit log write of a shadow failed");
                    }
                }
            });
        }
        stored?;
        Ok(decided.decision?)
    }

    /// Stores an approved enrollment's primary face.
    async fn store_enrollment(&self, username: &str, primary: Option<&FaceEmbedding>) -> Result<(), UseCaseError> {
        // The policy approved evidence without a face: nothing can be enrolled.
        let embedding = primary.ok_or_else(|| {
            UseCaseError::Policy(PolicyError::InvalidDecision("approved an enrollment without a face".into()))
        })?;
        let version = &self.engine.models.embedding_model_version;
        Ok(self.watch_write(store_call(self.store.insert(username, embedding, version)).await)?)
    }
}

/// An attempt reserved before an authentication's analysis (see
/// `AuditLog::reserve_attempt`). Released when dropped, unless its decision was
/// recorded in its place: an error that is no attempt (busy, an undecodable upload,
/// an outdated template, the client gone mid-analysis) must not count.
struct Reservation {
    audit: AuditLog,
    id: i64,
    released: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (audit, id) = (self.audit.clone(), self.id);
        // Off the request's path (it may be ending by cancellation). Not released
        // (no runtime, the database unreachable): it stops counting after
        // `RESERVATION_TTL_MS`.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = audit.release_attempt(id).await {
                    tracing::warn!(error = %e, "an attempt reservation was not released; it expires");
                }
            });
        }
    }
}

/// A unique id per request, shared by its answer and shadow records.
fn request_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:x}-{:x}-{n:x}", now_ms(), std::process::id())
}
