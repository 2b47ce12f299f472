//! The one typed configuration, from flags and environment. Defaults make
//! `target/release/faceauth serve`, run from the repository root after
//! `scripts/setup.sh`, work with nothing else set.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "faceauth", version, about = "Face-verification server for identity onboarding")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log lines as text, or as one JSON object per line (for log shippers).
    #[arg(long, global = true, env = "FACEAUTH_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(ServeConfig),
    /// Analyse image files and print, per file, the evidence a policy would get (JSON lines).
    Inspect(InspectArgs),
    /// Enroll the first file and authenticate the second against it, with the
    /// server's use cases and policy (a throw-away database); prints both answers as
    /// JSON. Exit status 0 when approved, 3 when refused.
    Verify(VerifyArgs),
    /// Backtest a policy on the recorded decisions: how its answers would differ (JSON report).
    Replay(ReplayArgs),
    /// Re-seal every stored face template with the current template key (after a
    /// key rotation, or to seal templates stored in clear).
    Rekey(DatabaseConfig),
    /// Verification figures on a labelled list (ROC AUC, EER, TAR at FAR, failure to
    /// enroll, refusals by reason) through the same steps as the server.
    Eval(EvalArgs),
}

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// What is evaluated: photo pairs, ID card -> photo, or card -> selfie video.
    #[arg(long, value_enum, default_value = "pairs")]
    pub mode: crate::eval::Mode,
    /// The labelled list: `file_a,file_b,label` (pairs, card), a folder of one
    /// subfolder per person (pairs, card), `videos/index.csv` (video), or the shared
    /// data folder (liveness); paths relative to its folder. Default: `../shared/faces/lfw-train/pairs.csv`,
    /// or `../shared/videos/index.csv` in video mode.
    #[arg(long)]
    pub list: Option<PathBuf>,
    /// A parameter override of the policy, NAME=VALUE (repeatable).
    #[arg(long = "param", value_parser = parse_param)]
    pub params: Vec<(String, f64)>,
    /// Evaluate only the first N attempts.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Write the ROC curve (recognizer and end to end) as SVG.
    #[arg(long)]
    pub roc: Option<PathBuf>,
    /// Write every attempt's outcome as JSON lines.
    #[arg(long)]
    pub attempts_out: Option<PathBuf>,
    /// Liveness mode: the simulated attacks of `scripts/eval/make_presentation_attacks.py`.
    #[arg(long, default_value = "target/presentation-attacks")]
    pub attacks: PathBuf,
    /// Write the ID cards made for enrollment (card and video modes) into this folder.
    #[arg(long)]
    pub cards_dir: Option<PathBuf>,
    /// Identities (folder names, or video-index identities) known to be one person,
    /// e.g. two worker ids of one person, as `ID1=ID2` (repeatable).
    #[arg(long = "same-person", value_parser = parse_alias)]
    pub same_person: Vec<(String, String)>,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub engine: EngineConfig,
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "FACEAUTH_LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// Token that admin endpoints (reset, policies, decisions, stats, replay, metrics) require as `Authorization: Bearer <token>`.
    /// Without one, admin endpoints answer loopback clients only.
    #[arg(long, env = "FACEAUTH_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A reverse proxy whose `X-Forwarded-For` names the client (repeatable; none by
    /// default). Loopback-only admin endpoints then judge the forwarded client; a
    /// request with forwarding headers from any other peer is refused admin.
    #[arg(long = "trusted-proxy", env = "FACEAUTH_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Largest accepted upload, in bytes.
    #[arg(long, env = "FACEAUTH_MAX_UPLOAD_BYTES", default_value_t = 20 * 1024 * 1024,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=1 << 30))]
    pub max_upload_bytes: usize,
    /// Days the audit log keeps each decision (0: forever).
    #[arg(long, env = "FACEAUTH_AUDIT_RETENTION_DAYS", default_value_t = 90,
          value_parser = clap::value_parser!(u64).range(0..=36_500))]
    pub audit_retention_days: u64,
    /// How often the policy directory is checked for changes, in milliseconds.
    #[arg(long, env = "FACEAUTH_POLICY_WATCH_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub policy_watch_ms: u64,
    /// Open client connections at most (keep it under the process's file-descriptor
    /// limit, which is raised to its hard limit at start-up). At the cap a new
    /// connection takes the place of the one that has sent least for longest and
    /// has no request being answered; it is refused only when every one has.
    #[arg(long, env = "FACEAUTH_MAX_CONNECTIONS", default_value_t = 512,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_connections: usize,
    /// Open connections per client address (an IPv6 client by its /64; a
    /// `--trusted-proxy` is not capped) at most; past it the client's own idlest
    /// connection is closed for the new one. 64: a browser opens at most 6 per
    /// server, so an office of ten behind one NAT address fits, while one client
    /// holds at most an eighth of the default 512.
    #[arg(long, env = "FACEAUTH_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 64,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_connections_per_client: usize,
    /// Seconds a client gets to send a request's headers, and the longest pause
    /// allowed within an upload; then the connection is closed (slow clients must not
    /// hold connections).
    #[arg(long, env = "FACEAUTH_HEADER_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub header_timeout: u64,
    /// Seconds a whole upload may take to arrive; then 408 UPLOAD_TIMEOUT.
    #[arg(long, env = "FACEAUTH_UPLOAD_TIMEOUT", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub upload_timeout: u64,
    /// Refused authentications that showed a face allowed per username within
    /// `--attempt-window` (counted after its last approved one, across replicas, from
    /// the audit log; a picture with no face does not count);
    /// then 429 TOO_MANY_ATTEMPTS. 0: no limit.
    #[arg(long, env = "FACEAUTH_MAX_FAILED_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub max_failed_attempts: u32,
    /// The attempt limit's window, in seconds.
    #[arg(long, env = "FACEAUTH_ATTEMPT_WINDOW", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub attempt_window: u64,
    /// Seconds in-flight requests get to finish after SIGTERM or Ctrl-C; then the
    /// server exits anyway (a stalled upload cannot hold it). A second signal exits at once.
    #[arg(long, env = "FACEAUTH_SHUTDOWN_GRACE", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace: u64,
    /// Requests per minute allowed per client address (the forwarded client behind a
    /// `--trusted-proxy`), then 429 RATE_LIMITED with `Retry-After`; `/health` and
    /// `/ready` are exempt. 0 (the default): no per-client limit (the worker queue's
    /// 503 still bounds the load).
    #[arg(long, env = "FACEAUTH_RATE_LIMIT", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub rate_limit: u32,
    /// Requests a client may send at once before `--rate-limit` paces it.
    #[arg(long, env = "FACEAUTH_RATE_LIMIT_BURST", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate_limit_burst: u32,
    #[command(flatten)]
    pub engine: EngineConfig,
}

/// Where users and the audit log are stored.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// Directory for the embedded SQLite database.
    #[arg(long, env = "FACEAUTH_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Database URL (sqlite://... or postgres://...); default: SQLite in the data directory.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Seconds a database operation may wait for a connection, a lock or a
    /// statement; then the request is answered 503 DATABASE_UNAVAILABLE.
    #[arg(long, env = "FACEAUTH_DB_TIMEOUT", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub db_timeout: u64,
    /// Keys that seal face templates at rest, `ID=BASE64` (32 random bytes, e.g.
    /// `head -c 32 /dev/urandom | base64`), comma-separated; the first seals, all
    /// open. Without keys templates are stored in clear (the server warns).
    #[arg(long, env = "FACEAUTH_TEMPLATE_KEYS", hide_env_values = true)]
    pub template_keys: Option<String>,
    /// A file of template keys, one `ID=BASE64` per line (first seals); with `--template-keys` both count.
    #[arg(long, env = "FACEAUTH_TEMPLATE_KEY_FILE")]
    pub template_key_file: Option<PathBuf>,
    /// The file of the secret that keys erased users' pseudonyms in the audit log,
    /// kept out of the database so that a copy of it does not re-identify them; made
    /// (mode 0600) by the first start on a new database. Default: `pseudonym.key`
    /// beside the SQLite database, or in the data directory with PostgreSQL (every
    /// replica on one database needs the same file). A database whose pseudonyms were
    /// made with another key, or whose key file is missing, is refused at start-up.
    #[arg(long, env = "FACEAUTH_PSEUDONYM_KEY_FILE")]
    pub pseudonym_key_file: Option<PathBuf>,
}

impl DatabaseConfig {
    /// Connects to the configured database with the configured timeout.
    pub async fn connect(&self) -> Result<crate::store::UserStore, crate::store::StoreError> {
        let mut spec = self.template_keys.clone().unwrap_or_default();
        if let Some(path) = &self.template_key_file {
            let text = std::fs::read_to_string(path).map_err(|source| crate::store::templates::KeyError::File {
                path: path.display().to_string(),
                source,
            })?;
            spec = format!("{spec}\n{text}");
        }
        let options = crate::store::StoreOptions {
            timeout: std::time::Duration::from_secs(self.db_timeout),
            template_keys: crate::store::templates::TemplateKeys::parse(&spec)?.map(std::sync::Arc::new),
            // SQLite: beside the database (the store's default).
            pseudonym_key_file: self.pseudonym_key_file.clone().or_else(|| {
                self.database_url
                    .as_deref()
                    .is_some_and(|url| !url.starts_with("sqlite:"))
                    .then(|| self.data_dir.join(crate::store::pseudonym::FILE_NAME))
            }),
        };
        crate::store::UserStore::connect_with(&self.url(), options).await
    }

    pub fn url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir.join("faceauth.db").display()))
    }
}

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The candidate policy component (.wasm).
    #[arg(long)]
    pub policy: PathBuf,
    /// A parameter override, NAME=VALUE (repeatable).
    #[arg(long = "param", value_parser = parse_param)]
    pub params: Vec<(String, f64)>,
    /// Only decisions of the last N hours (default: all that are kept).
    #[arg(long)]
    pub since_hours: Option<u64>,
    /// Replay at most this many (the most recent) decisions.
    #[arg(long, default_value_t = 100_000)]
    pub limit: i64,
    /// Ground truth, CSV `request_id,label` (genuine / impostor), for confusion matrices.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    #[command(flatten)]
    pub database: DatabaseConfig,
}

fn parse_alias(s: &str) -> Result<(String, String), String> {
    let (a, b) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected ID1=ID2"))?;
    Ok((a.trim().to_string(), b.trim().to_string()))
}

/// Faces smaller than 8 px carry no identity; over 1000 px no selfie would be searched.
fn parse_min_face_px(s: &str) -> Result<f32, String> {
    let v: f32 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (8.0..=1000.0).contains(&v) { Ok(v) } else { Err(format!("{v} is not in 8..=1000")) }
}

fn parse_param(s: &str) -> Result<(String, f64), String> {
    let (name, value) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))?;
    let value: f64 = value.trim().parse().map_err(|_| format!("{s:?}: the value is not a number"))?;
    Ok((name.trim().to_string(), value))
}

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
            ffmpeg: self.ffmpeg.clone(),
            ffprobe: self.ffprobe.clone(),
            ..Default::default()
        }
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

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The reference: an ID card or a photo, enrolled as the server would.
    pub reference: PathBuf,
    /// The probe: a selfie image or a selfie video, authenticated against it.
    pub probe: PathBuf,
    #[command(flatten)]
    pub engine: EngineConfig,
}

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// Image files to analyse.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub engine: EngineConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Result<ServeConfig, clap::Error> {
        let argv = ["faceauth", "serve"].iter().chain(args).copied();
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Serve(config) => config,
            _ => unreachable!("serve parses as serve"),
        })
    }

    #[test]
    fn defaults_parse_and_ranges_are_enforced_by_clap() {
        let config = serve(&[]).expect("the defaults are in range");
        assert_eq!((config.policy_watch_ms, config.engine.max_queued), (2000, 16));
        for bad in [
            ["--workers", "0"],
            ["--policy-watch-ms", "10"],
            ["--min-face-px", "2"],
            ["--video-max-frames", "0"],
            ["--max-upload-bytes", "10"],
            ["--shutdown-grace", "99999"],
        ] {
            let err = serve(&bad).expect_err("out of range");
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad:?}");
        }
        assert_eq!(serve(&["--min-face-px", "24"]).expect("in range").engine.min_face_px, 24.0);
    }
}
