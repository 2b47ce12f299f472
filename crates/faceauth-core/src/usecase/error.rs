//! The use cases' errors: each failure with its documented reason code, and what
//! keeps the engine from starting.

use std::path::PathBuf;

use super::MAX_USERNAME_BYTES;
use crate::media::MediaError;
use crate::policy::PolicyError;
use crate::policy::router::RouterError;
use crate::store::StoreError;
use crate::vision::VisionError;

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
    /// A search image without a face.
    #[error("no face was found in the image")]
    NoFace,
    /// A search image with two people in it: which one is meant is not guessed.
    #[error("the image shows more than one person (a second face at least {0:.0} % of the largest's height)")]
    SeveralPeople(f32),
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
            UseCaseError::NoFace => "NO_FACE_DETECTED",
            UseCaseError::SeveralPeople(_) => "MULTIPLE_FACES_DETECTED",
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
