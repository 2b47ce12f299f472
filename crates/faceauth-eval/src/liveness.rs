//! `faceauth eval --mode liveness`: presentation-attack figures (ISO/IEC 30107-3
//! terms) of a liveness policy on what can be gathered here, per attack type and per
//! source, with a leave-one-source-out (LOSO) measurement of its rules.
//!
//! Presentations, in three sets:
//! - `shared`, real data of `../shared`: the selfie videos (`videos/index.csv`) and the
//!   phone selfie photos (`faces/selfies`) as bona fide; every item of
//!   `liveness/labels.csv` (live and spoof photos, webcam videos and their phone
//!   replays, and the face crops `face_crop_real` / `face_crop_replay` of five
//!   repositories, reported as rows of their own). Each has a source (its
//!   `source_repo`; the selfie photos and videos are one source), the LOSO group.
//! - `still`, made here from the `shared` bona fide photos
//!   (`scripts/eval/make_presentation_attacks.py` is for the simulated set,
//!   `scripts/eval/make_still_videos.py` for this one, into `ATTACKS/still`): a still
//!   photo turned into a 3 s video, as is, with temporal noise, or slowly panned. Each
//!   keeps the source of its photo.
//! - `simulated`: the simulated print and screen recaptures of
//!   `scripts/eval/make_presentation_attacks.py` and their bona fide originals, when
//!   generated: never used to choose a threshold, measured at the thresholds chosen
//!   on all the real sources.
//!
//! The ISO attack type (PAI species) of an item: `print_photo` and simulated prints ->
//! print; `screen_replay` and simulated screens -> screen replay (a still picture on a
//! screen); `replay_video(phone_screen)` and `face_crop_replay` -> video replay;
//! still videos -> still photo as video. Disguise and deepfake: none here (0 measured).
//!
//! Each presentation is analysed as an authentication upload and decided by the
//! policy with similarities to its own face (identity is not measured here), at its
//! parameters and with each liveness rule alone: its liveness rules all off
//! (`min-liveness` 0, no video rule: the "base" decision), the still-video rule alone,
//! the movement requirement alone. A presentation the base decision refuses (no face,
//! a quality gate, a second face) is not a decision of the PAD subsystem: it is listed
//! apart and left out of APCER and BPCER at every threshold, so every figure has the
//! same denominator. Of the others, the liveness verdict for any rule set follows
//! from the policy's own decisions: refused when the median live probability is under
//! `min-liveness` or an enabled rule refused it alone (the policy checks liveness
//! before anything else). The report checks that this reproduces the policy's actual
//! decisions at its parameters (`consistency`).
//!
//! LOSO: for each source, `min-liveness` is chosen on the bona fide presentations of
//! the OTHER real sources by a declared criterion, the largest threshold that keeps
//! their BPCER at or under 3 % (face crops left out of the choice: the server never
//! receives a tight crop), then APCER and BPCER are counted on the left-out source.
//! The plain reference (median live probability >= 0.3, no video rule) is reported
//! beside it, on the same folds.

mod loso;
mod presentations;
mod report;
mod run;

pub use loso::{Columns, Count, Fold, LOSO_MAX_BPCER, LosoTable, largest_threshold};
pub use presentations::{Presentation, Species, csv_fields, presentations};
pub use report::{CueRow, KindRow, LivenessReport, REFERENCE_MIN_LIVENESS};
pub use run::{PresentationResult, Rules, run};
