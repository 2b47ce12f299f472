//! `faceauth eval`: verification figures of the whole pipeline on a labelled list
//! of attempts, through the same steps as the server's use cases (decode, analyse,
//! evidence, the policy's decision), quality gates included, without HTTP or a
//! database.
//!
//! Modes:
//! - `pairs`: enroll from `file_a`, authenticate with `file_b` (photo pairs);
//! - `card`: enroll from an ID card made from `file_a` (`card`), authenticate with `file_b`;
//! - `video`: for `videos/index.csv` (`video,stills,identity,...`), every video
//!   against a card of every still of every identity;
//! - `liveness`: presentation attacks and live selfies through a liveness policy
//!   (`liveness`);
//! - `duplicates`: 1:N duplicate search at enrollment (`duplicates`).

mod args;
pub mod card;
pub mod duplicates;
pub mod intervals;
mod lists;
pub mod liveness;
pub mod metrics;
mod report;
mod run;

pub use args::EvalArgs;
pub use lists::{Attempt, EvalError, read_folder, read_pairs, read_video_index};
pub use report::{ClassDecisions, GateLoss, ImpostorSweep, Report, impostor_sweep, impostor_sweep_at};
pub use run::{AttemptResult, RunOptions, RunResults, run};

use serde::Serialize;

/// What is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Photo pairs: enroll from file_a, authenticate with file_b.
    Pairs,
    /// Enroll from an ID card built from file_a, authenticate with file_b.
    Card,
    /// Selfie videos (videos/index.csv) against cards of every identity's stills.
    Video,
    /// Presentation attacks against live selfies and videos (a liveness policy).
    Liveness,
    /// 1:N duplicate search at enrollment (FNIR, FPIR by gallery size) on the faces
    /// of a labelled list (default: LFW View-1 training).
    Duplicates,
}
