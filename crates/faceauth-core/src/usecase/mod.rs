//! The use cases (enroll, authenticate, reset): media -> vision -> policy -> store.
//! The HTTP layer and the CLI tools both call these.

pub mod admin;
mod attempts;
mod decide;
mod engine;
mod error;
mod evidence;
pub mod experiment;
pub mod fixtures;
pub mod gallery;
pub mod replay;
pub mod search;
mod service;
mod settings;
mod start;
pub mod stats;
pub mod username;

pub use attempts::AttemptLimit;
pub use engine::{AnalyzedMedia, FaceEngine};
pub use error::{InitError, UseCaseError};
pub use evidence::{faces as face_evidence, motion as motion_summary, summarize as summarize_frames};
pub use service::FaceAuth;
pub use settings::{AttemptConfig, EngineConfig, locate};
pub use start::{StartError, start};
pub use username::{MAX_USERNAME_BYTES, validate_username};
