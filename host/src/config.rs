//! The one typed configuration, from flags and environment, composed of the
//! settings each component owns (`ServerConfig` in the HTTP crate, `DatabaseConfig`
//! in the store, `EngineConfig` and `AttemptConfig` in the use cases, `EvalArgs` in
//! the evaluation crate). Defaults make `target/release/faceauth serve`, run from
//! the repository root after `scripts/setup.sh`, work with nothing else set.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use faceauth_core::policy::parse_param;
use faceauth_core::store::DatabaseConfig;
use faceauth_core::usecase::{AttemptConfig, EngineConfig};
use faceauth_eval::EvalArgs;
use faceauth_http::ServerConfig;

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
    /// Policy authoring: `faceauth policy test` runs a component over evidence
    /// fixtures with expected outcomes.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Re-seal every stored face template with the current template key (after a
    /// key rotation, or to seal templates stored in clear).
    Rekey(DatabaseConfig),
    /// Verification figures on a labelled list (ROC AUC, EER, TAR at FAR, failure to
    /// enroll, refusals by reason) through the same steps as the server.
    Eval(EvalArgs),
}

/// `faceauth serve`: the server's settings and those of the core it runs.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    #[command(flatten)]
    pub server: ServerConfig,
    #[command(flatten)]
    pub attempts: AttemptConfig,
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub engine: EngineConfig,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Run a policy component over evidence fixtures (JSON files or directories of
    /// them) and check each outcome against the fixture's `expect`; exit status 1 if
    /// any differs. See `crates/faceauth-core/src/usecase/fixtures.rs` for the format.
    Test(PolicyTestArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PolicyTestArgs {
    /// The policy component (.wasm).
    #[arg(long)]
    pub policy: PathBuf,
    /// A parameter override, NAME=VALUE (repeatable), applied before each fixture's own.
    #[arg(long = "param", value_parser = parse_param)]
    pub params: Vec<(String, f64)>,
    /// Fixture files (.json) or directories holding them.
    #[arg(required = true)]
    pub fixtures: Vec<PathBuf>,
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
        assert_eq!((config.server.policy_watch_ms, config.engine.max_queued), (2000, 16));
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
