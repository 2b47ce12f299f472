//! The settings the use cases consume (the face engine, the attempt limit), as clap
//! arguments that the binary composes with the others.

use std::path::{Path, PathBuf};

use clap::{Args, Parser};

/// What the face engine needs, shared by the server and the tools.
#[derive(Debug, Clone, Args)]
pub struct EngineConfig {
    /// Directory holding the ONNX models (see models/README.md).
    #[arg(long, env = "FACEAUTH_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
    /// ONNX Runtime shared library; default: the one `scripts/setup.sh` installs under .runtime/.
    #[arg(long, env = "FACEAUTH_ONNXRUNTIME_LIB")]
    pub onnxruntime_lib: Option<PathBuf>,
    /// Policy component (.wasm) that makes every decision, fixed for the process.
    #[arg(long, env = "FACEAUTH_POLICY", default_value = "target/wasm32-wasip2/release/default_policy.wasm")]
    pub policy: PathBuf,
    /// Policy directory: its `policies.toml` lists the variants (A/B weights, shadows,
    /// parameters); watched for changes and managed through the admin API. Overrides
    /// `--policy`.
    #[arg(long, env = "FACEAUTH_POLICY_DIR")]
    pub policy_dir: Option<PathBuf>,
    /// Search every enrolling face among the enrolled (one person, one account): the
    /// policy sees the most similar templates and the default policy refuses
    /// `FACE_ALREADY_ENROLLED`. `false` gives the policies no search (deployments
    /// where one person may hold several accounts); the index is kept either way
    /// for `POST /api/admin/search`.
    #[arg(long, env = "FACEAUTH_DUPLICATE_SEARCH", default_value_t = true, action = clap::ArgAction::Set)]
    pub duplicate_search: bool,
    /// Face-analysis workers (ONNX session sets); default: one per CPU.
    #[arg(long, env = "FACEAUTH_WORKERS", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256))]
    pub workers: Option<usize>,
    /// Requests allowed to wait for a worker; beyond that the answer is 503 SERVER_BUSY.
    #[arg(long, env = "FACEAUTH_MAX_QUEUED", default_value_t = 16,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=100_000))]
    pub max_queued: usize,
    /// Smallest face side, in pixels of the upload, that the detector searches for.
    #[arg(long, env = "FACEAUTH_MIN_FACE_PX", default_value_t = 40.0, value_parser = parse_min_face_px)]
    pub min_face_px: f32,
    /// Wasm fuel (about one instruction each) allowed per policy call.
    #[arg(long, env = "FACEAUTH_POLICY_FUEL", default_value_t = 50_000_000,
          value_parser = clap::value_parser!(u64).range(100_000..=100_000_000_000))]
    pub policy_fuel: u64,
    /// Linear memory allowed per policy instance, in MiB.
    #[arg(long, env = "FACEAUTH_POLICY_MEMORY_MIB", default_value_t = 32,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    pub policy_memory_mib: usize,
    /// Frames sampled from a selfie video, spread over the clip.
    #[arg(long, env = "FACEAUTH_VIDEO_MAX_FRAMES", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub video_max_frames: u32,
    /// Frames sampled when the policy requires liveness: denser, so that blinks and
    /// head movement show (a 3 s clip is then seen at 8 frames per second).
    #[arg(long, env = "FACEAUTH_VIDEO_LIVENESS_FRAMES", default_value_t = 24,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub video_liveness_frames: u32,
    /// Longest accepted selfie video, in seconds (real capture clips run past 30 s:
    /// one of the 9 in ../shared/videos is 32.4 s).
    #[arg(long, env = "FACEAUTH_VIDEO_MAX_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub video_max_seconds: u64,
    /// Wall-clock limit of the video decoder, in seconds.
    #[arg(long, env = "FACEAUTH_VIDEO_DECODER_TIMEOUT", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub video_decoder_timeout: u64,
    /// Largest decoding work accepted, in pixel-frames (width x height x frames): a
    /// clip over it is refused 413 VIDEO_TOO_LARGE before it is decoded. The default
    /// (4e9) passes 1920x1080 at 60 fps for 30 s and 4K at 30 fps for 15 s.
    #[arg(long, env = "FACEAUTH_VIDEO_MAX_PIXEL_FRAMES",
          default_value_t = crate::media::video::DEFAULT_MAX_PIXEL_FRAMES,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub video_max_pixel_frames: u64,
    /// Videos one client address may have decoded at once; more are answered 429
    /// RATE_LIMITED at once. Raise it (or 0: no limit) when one backend sends every
    /// user's video from a single address.
    #[arg(long, env = "FACEAUTH_VIDEO_DECODES_PER_CLIENT", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub video_decodes_per_client: u32,
    /// Videos decoded at once over the whole server (default: one per face-analysis
    /// worker); more wait for a decoder, holding only their upload. Each decoder of a
    /// 1440x1080 clip takes about 85 MB besides its frames, and a full queue of
    /// clips decoding at once took the server past 600 MB.
    #[arg(long, env = "FACEAUTH_VIDEO_DECODERS", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub video_decoders: Option<u32>,
    /// FFmpeg executable (Debian package `ffmpeg`; `scripts/setup.sh` installs it).
    #[arg(long, env = "FACEAUTH_FFMPEG", default_value = "ffmpeg")]
    pub ffmpeg: PathBuf,
    /// FFprobe executable.
    #[arg(long, env = "FACEAUTH_FFPROBE", default_value = "ffprobe")]
    pub ffprobe: PathBuf,
}

impl EngineConfig {
    /// Settings with every default, for tests and tools.
    pub fn defaults() -> Self {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            engine: EngineConfig,
        }
        Wrapper::parse_from(["faceauth"]).engine
    }

    /// The ONNX Runtime library: the flag, else the one setup installed.
    pub fn onnxruntime_lib(&self) -> Option<PathBuf> {
        if let Some(p) = &self.onnxruntime_lib {
            return Some(p.clone());
        }
        let dir = locate(Path::new(".runtime/onnxruntime"))?;
        let mut libs: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so")))
            .collect();
        libs.sort();
        libs.into_iter().next()
    }

    pub fn video_limits(&self) -> crate::media::video::VideoLimits {
        crate::media::video::VideoLimits {
            // Ranges are checked by clap (the `value_parser`s above).
            max_frames: self.video_max_frames,
            liveness_frames: self.video_liveness_frames,
            max_duration: std::time::Duration::from_secs(self.video_max_seconds),
            decoder_timeout: std::time::Duration::from_secs(self.video_decoder_timeout),
            max_pixel_frames: self.video_max_pixel_frames,
            decodes_per_client: self.video_decodes_per_client,
            decoders: std::sync::Arc::new(tokio::sync::Semaphore::new(
                self.video_decoders.map_or_else(|| self.worker_count(), |n| n as usize),
            )),
            ffmpeg: self.ffmpeg.clone(),
            ffprobe: self.ffprobe.clone(),
            ..Default::default()
        }
    }

    /// Face-analysis workers: the flag, else one per core.
    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    pub fn models_dir(&self) -> PathBuf {
        locate(&self.models_dir).unwrap_or_else(|| self.models_dir.clone())
    }

    pub fn policy(&self) -> PathBuf {
        locate(&self.policy).unwrap_or_else(|| self.policy.clone())
    }
}

/// Resolves a relative default against the working directory, then against the
/// repository the binary was built in (`target/<profile>/faceauth` -> `../..`), so
/// the server also starts from elsewhere in a checkout.
pub fn locate(path: &Path) -> Option<PathBuf> {
    if path.is_absolute() || path.exists() {
        return path.exists().then(|| path.to_path_buf());
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors().skip(1).take(4).map(|dir| dir.join(path)).find(|candidate| candidate.exists())
}

/// The limit on refused authentications per username.
#[derive(Debug, Clone, Args)]
pub struct AttemptConfig {
    /// Refused authentications that showed a face allowed per username within
    /// `--attempt-window` (counted after its last approved one, across replicas, from
    /// the audit log; a picture with no face does not count);
    /// then 429 TOO_MANY_ATTEMPTS. 0: no limit.
    #[arg(long, env = "FACEAUTH_MAX_FAILED_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub max_failed_attempts: u32,
    /// The attempt limit's window, in seconds.
    #[arg(long, env = "FACEAUTH_ATTEMPT_WINDOW", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub attempt_window: u64,
}

impl AttemptConfig {
    pub fn limit(&self) -> super::AttemptLimit {
        super::AttemptLimit {
            max_failures: self.max_failed_attempts,
            window: std::time::Duration::from_secs(self.attempt_window),
        }
    }
}

/// Faces smaller than 8 px carry no identity; over 1000 px no selfie would be searched.
fn parse_min_face_px(s: &str) -> Result<f32, String> {
    let v: f32 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (8.0..=1000.0).contains(&v) { Ok(v) } else { Err(format!("{v} is not in 8..=1000")) }
}
