//! `faceauth eval`'s arguments.

use std::path::PathBuf;

use clap::Args;
use faceauth_core::policy::parse_param;
use faceauth_core::usecase::EngineConfig;

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// What is evaluated: photo pairs, ID card -> photo, or card -> selfie video.
    #[arg(long, value_enum, default_value = "pairs")]
    pub mode: crate::Mode,
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

fn parse_alias(s: &str) -> Result<(String, String), String> {
    let (a, b) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected ID1=ID2"))?;
    Ok((a.trim().to_string(), b.trim().to_string()))
}
