//! The face engine (ONNX Runtime, the models, the policies; no storage), and the
//! faces it finds in an upload.

use std::path::PathBuf;
use std::sync::Arc;

use super::{EngineConfig, InitError, UseCaseError, evidence, face_evidence, motion_summary, summarize_frames};
use crate::media::video::{self, VideoLimits};
use crate::media::{self, DecodeLimits, MediaError};
use crate::policy::router::{PolicyRouter, Route};
use crate::policy::{AuthenticateEvidence, Frame, ImageSize, MediaKind, PolicyError, PolicyLimits, PolicyRuntime};
use crate::telemetry::{self, Stage};
use crate::vision::{AnalyzedFace, FaceAnalyzer, FaceEmbedding, ModelFiles, VisionPool};

/// The face engine without storage: models and policies. Tools use it alone.
pub struct FaceEngine {
    vision: VisionPool,
    pub(super) router: Arc<PolicyRouter>,
    pub(super) models: ModelFiles,
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
        let workers = config.worker_count();
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
        // Each frame is analysed as soon as it is decoded: the decoder works on the
        // next meanwhile, and the clip's frames are not all held at once.
        let (sender, mut decoded) = tokio::sync::mpsc::unbounded_channel();
        let decode = telemetry::timed_async(
            Stage::DecodeVideo,
            video::sample_frames(bytes, &self.video_limits, max_frames, sender),
        );
        let analyse = async {
            let mut analysed = Vec::new();
            let mut image = None;
            while let Some(frame) = decoded.recv().await {
                image.get_or_insert(ImageSize { width: frame.pixels.width(), height: frame.pixels.height() });
                let sharpness = video::sharpness(&frame.pixels);
                let faces = self.vision.analyze(&admitted, Arc::new(frame.pixels), with_liveness).await?;
                analysed.push((frame.timestamp_ms, sharpness, faces));
            }
            Ok::<_, UseCaseError>((image, analysed))
        };
        // A failed analysis drops the receiver, which stops the decoder.
        let (decoded, analysed) = tokio::join!(decode, analyse);
        let (image, analysed) = analysed?;
        decoded?;
        let image = image.unwrap_or(ImageSize { width: 0, height: 0 });
        // Motion-blurred frames (a shake of the phone) are dropped once the clip's
        // sharpness is known.
        let blurred = video::blurred(&analysed.iter().map(|(_, sharpness, _)| *sharpness).collect::<Vec<_>>());
        let frames = analysed
            .into_iter()
            .zip(blurred)
            .filter(|(_, blurred)| !blurred)
            .map(|((timestamp_ms, _, faces), _)| (timestamp_ms, faces))
            .collect();
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
