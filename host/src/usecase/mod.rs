//! The use cases (enroll, authenticate, reset): media -> vision -> policy -> store.
//! The HTTP layer and the CLI tools both call these.

mod evidence;

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::EngineConfig;
use crate::media::video::{self, VideoLimits};
use crate::media::{self, DecodeLimits, MediaError};
use crate::policy::{
    AuthenticateEvidence, Decision, EnrollEvidence, Frame, ImageSize, LoadedPolicy, MediaKind, PolicyError,
    PolicyLimits, PolicyRuntime,
};
use crate::store::{StoreError, UserStore};
use crate::vision::{AnalyzedFace, FaceAnalyzer, ModelFiles, VisionError, VisionPool};

pub use evidence::{faces as face_evidence, summarize as summarize_frames};

/// Longest accepted username, in bytes.
pub const MAX_USERNAME_BYTES: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum UseCaseError {
    #[error("username is empty")]
    EmptyUsername,
    #[error("username is longer than {MAX_USERNAME_BYTES} bytes or contains control characters")]
    InvalidUsername,
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("no user is enrolled under this username")]
    UnknownUser,
    #[error("this username is already enrolled")]
    DuplicateUsername,
    #[error("the enrolled template was made with another face model ({0}); enroll again")]
    OutdatedTemplate(String),
    #[error("the server is busy; retry later")]
    Busy,
    #[error("policy failed: {0}")]
    Policy(PolicyError),
    #[error(transparent)]
    Vision(VisionError),
    #[error(transparent)]
    Store(StoreError),
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
}

/// The face engine without storage: models and policy. Tools use it alone.
pub struct FaceEngine {
    vision: VisionPool,
    policy: Arc<LoadedPolicy>,
    models: ModelFiles,
    onnxruntime_lib: PathBuf,
    decode_limits: DecodeLimits,
    video_limits: VideoLimits,
    // Sessions borrow the environment's settings; keep it alive as long as they are.
    _ort: ort::environment::Environment,
}

impl FaceEngine {
    /// Loads ONNX Runtime, verifies and loads the models, compiles and self-checks the policy.
    pub fn init(config: &EngineConfig) -> Result<Self, InitError> {
        let lib = config.onnxruntime_lib().ok_or(InitError::OnnxRuntimeMissing)?;
        let env = crate::vision::onnx_environment(&lib)
            .map_err(|e| InitError::OnnxRuntime { path: lib.clone(), message: e.to_string() })?;
        let models = ModelFiles::verify(&config.models_dir())?;
        let workers =
            config.workers.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)).max(1);
        let runtime = PolicyRuntime::new(PolicyLimits {
            fuel: config.policy_fuel,
            memory_bytes: config.policy_memory_mib * 1024 * 1024,
            ..PolicyLimits::default()
        })?;
        let policy = Arc::new(runtime.load(&config.policy())?);
        // Liveness inference only runs for a policy that asks for it.
        let with_liveness = policy.info().requires_liveness;
        let analyzers =
            (0..workers).map(|_| FaceAnalyzer::load(&env, &models, with_liveness)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            vision: VisionPool::new(analyzers, config.max_queued, config.min_face_px),
            policy,
            models,
            onnxruntime_lib: lib,
            decode_limits: DecodeLimits::default(),
            video_limits: config.video_limits(),
            _ort: env,
        })
    }

    pub fn policy(&self) -> &LoadedPolicy {
        &self.policy
    }

    pub fn models(&self) -> &ModelFiles {
        &self.models
    }

    pub fn onnxruntime_lib(&self) -> &std::path::Path {
        &self.onnxruntime_lib
    }

    /// Analyses a still image or, for a video, a bounded sample of its frames.
    pub async fn analyze_media(&self, bytes: Vec<u8>) -> Result<AnalyzedMedia, UseCaseError> {
        if !video::is_video(&bytes) {
            let (image, faces) = self.analyze_upload(bytes).await?;
            return Ok(AnalyzedMedia { kind: MediaKind::Image, image, frames: vec![(0, faces)] });
        }
        let sampled = video::sample_frames(bytes, &self.video_limits).await?;
        let image = sampled
            .first()
            .map(|f| ImageSize { width: f.pixels.width(), height: f.pixels.height() })
            .unwrap_or(ImageSize { width: 0, height: 0 });
        let mut frames = Vec::with_capacity(sampled.len());
        for frame in sampled {
            let faces = self.vision.analyze(Arc::new(frame.pixels)).await?;
            frames.push((frame.timestamp_ms, faces));
        }
        Ok(AnalyzedMedia { kind: MediaKind::Video, image, frames })
    }

    /// Decodes a still image and analyses every face in it.
    pub async fn analyze_upload(&self, bytes: Vec<u8>) -> Result<(ImageSize, Vec<AnalyzedFace>), UseCaseError> {
        if video::is_video(&bytes) {
            // An ID document is a photo or a scan.
            return Err(MediaError::UnsupportedFormat.into());
        }
        let limits = self.decode_limits;
        let decoded = tokio::task::spawn_blocking(move || media::decode_image(&bytes, limits))
            .await
            .map_err(|e| UseCaseError::Vision(VisionError::Inference(format!("decoder task failed: {e}"))))??;
        let size = ImageSize { width: decoded.pixels.width(), height: decoded.pixels.height() };
        let faces = self.vision.analyze(Arc::new(decoded.pixels)).await?;
        Ok((size, faces))
    }
}

/// Faces found in an upload: one frame for a still image, sampled frames for a video.
pub struct AnalyzedMedia {
    pub kind: MediaKind,
    pub image: ImageSize,
    /// (timestamp in ms, faces largest first)
    pub frames: Vec<(u32, Vec<AnalyzedFace>)>,
}

/// The service: engine plus store.
pub struct FaceAuth {
    pub engine: FaceEngine,
    pub store: UserStore,
}

/// Checks a username and returns it as stored (surrounding whitespace removed).
pub fn validate_username(raw: &str) -> Result<&str, UseCaseError> {
    let name = raw.trim();
    if name.is_empty() {
        Err(UseCaseError::EmptyUsername)
    } else if name.len() > MAX_USERNAME_BYTES || name.chars().any(char::is_control) {
        Err(UseCaseError::InvalidUsername)
    } else {
        Ok(name)
    }
}

impl FaceAuth {
    pub async fn enroll(&self, username: &str, upload: Vec<u8>) -> Result<Decision, UseCaseError> {
        let username = validate_username(username)?;
        // Cheap early answer; the primary key still decides under a race.
        if self.store.find(username).await?.is_some() {
            return Err(UseCaseError::DuplicateUsername);
        }
        let (image, analyzed) = self.engine.analyze_upload(upload).await?;
        let evidence = EnrollEvidence { image, faces: face_evidence(&analyzed, image, None) };
        let decision = self.engine.policy.decide_enroll(evidence).await?;
        if decision.approved {
            // The policy approved evidence with a face, so there is a primary one.
            let primary = analyzed.first().ok_or_else(|| {
                UseCaseError::Policy(PolicyError::InvalidDecision("approved an enrollment without a face".into()))
            })?;
            self.store.insert(username, &primary.embedding, &self.engine.models.embedding_model_version).await?;
        }
        Ok(decision)
    }

    pub async fn authenticate(&self, username: &str, upload: Vec<u8>) -> Result<Decision, UseCaseError> {
        let username = validate_username(username)?;
        let user = self.store.find(username).await?.ok_or(UseCaseError::UnknownUser)?;
        if user.model_version != self.engine.models.embedding_model_version {
            return Err(UseCaseError::OutdatedTemplate(user.model_version));
        }
        let media = self.engine.analyze_media(upload).await?;
        let frames: Vec<Frame> = media
            .frames
            .iter()
            .map(|(timestamp_ms, faces)| Frame {
                timestamp_ms: *timestamp_ms,
                faces: face_evidence(faces, media.image, Some(&user.embedding)),
            })
            .collect();
        let summary = summarize_frames(&frames);
        let evidence = AuthenticateEvidence { media: media.kind, image: media.image, frames, summary };
        Ok(self.engine.policy.decide_authenticate(evidence).await?)
    }

    pub async fn reset(&self) -> Result<u64, UseCaseError> {
        Ok(self.store.reset().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_trimmed_and_checked() {
        assert_eq!(validate_username("  alice ").ok(), Some("alice"));
        assert!(matches!(validate_username("   "), Err(UseCaseError::EmptyUsername)));
        assert!(matches!(validate_username("a\u{0}b"), Err(UseCaseError::InvalidUsername)));
        assert!(matches!(validate_username(&"x".repeat(129)), Err(UseCaseError::InvalidUsername)));
        assert!(validate_username("José García-Núñez").is_ok());
    }
}
