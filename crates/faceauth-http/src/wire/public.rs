//! The public endpoints' wire types: the original service's answers and upload
//! forms, and the probes' answers.

use serde::Serialize;
use utoipa::ToSchema;

/// A reason code: one of README's table (the host's and the shipped policies'), or a
/// code of another policy (upper-case letters, digits and `_`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(value_type = String, pattern = "^[A-Z0-9_]+$", example = "FACE_MISMATCH")]
pub struct Reason(pub String);

/// `APPROVED` or `REJECTED`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Approved,
    Rejected,
}

/// `success` when the user was enrolled.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Trained {
    Success,
    Failed,
}

/// The answer of `POST /api/enroll`, the original service's keys.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EnrollAnswer {
    pub trained: Trained,
    #[serde(rename = "EnrollStatus")]
    pub enroll_status: Verdict,
    #[serde(rename = "DecisionReason")]
    pub decision_reason: Reason,
}

impl EnrollAnswer {
    pub fn enrolled() -> Self {
        // The wire contract fixes the success reason.
        Self::new(Trained::Success, Verdict::Approved, "ENROLLED_AS_USER")
    }

    pub fn rejected(reason: &str) -> Self {
        Self::new(Trained::Failed, Verdict::Rejected, reason)
    }

    fn new(trained: Trained, enroll_status: Verdict, reason: &str) -> Self {
        Self { trained, enroll_status, decision_reason: Reason(reason.to_string()) }
    }
}

/// The answer of `POST /api/authentificate`, the original service's keys.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuthenticateAnswer {
    /// Cosine similarity to the enrolled face (6 decimals), on approvals only; else null.
    #[schema(required = true)]
    pub score: Option<f64>,
    #[serde(rename = "Decision")]
    pub decision: Verdict,
    #[serde(rename = "DecisionReason")]
    pub decision_reason: Reason,
}

impl AuthenticateAnswer {
    pub fn approved(score: Option<f32>) -> Self {
        Self {
            score: score.map(|s| (s as f64 * 1e6).round() / 1e6),
            decision: Verdict::Approved,
            // The wire contract fixes the success reason.
            decision_reason: Reason("AUTHENTIFICATION_SUCCESS".into()),
        }
    }

    pub fn rejected(reason: &str) -> Self {
        Self { score: None, decision: Verdict::Rejected, decision_reason: Reason(reason.to_string()) }
    }
}

/// `ok` while the process answers.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthAnswer {
    pub status: HealthStatus,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadyStatus {
    Ready,
    Unavailable,
}

/// `GET /ready`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadyAnswer {
    pub status: ReadyStatus,
    /// `ok`, or the database's error.
    pub database: String,
    /// Variants that answer (not shadows, weight above 0).
    pub policy_variants: usize,
    /// The embedding model's version (templates of another one must enroll again).
    pub embedding_model: String,
}

/// The multipart body of `POST /api/enroll` (documentation: the handler reads the
/// fields as they stream). Other fields are ignored.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EnrollForm {
    /// The ID card photo: JPEG, PNG, WebP or BMP (recognised from the bytes), at most
    /// `--max-upload-bytes` (20 MiB), 52 megapixels and 16384 px a side.
    #[schema(value_type = String, format = Binary, content_media_type = "application/octet-stream")]
    pub cin_file: Vec<u8>,
    /// The username, when the query has none.
    pub username: Option<String>,
}

/// The multipart body of `POST /api/authentificate` (documentation, as [`EnrollForm`]).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuthenticateForm {
    /// The selfie: a still image (as at enrollment) or a short video (MP4/MOV/3GP with
    /// H.264, HEVC or MPEG-4, WebM with VP8/VP9; at most `--video-max-seconds`),
    /// recognised from the bytes.
    #[schema(value_type = String, format = Binary, content_media_type = "application/octet-stream")]
    pub auth_video: Vec<u8>,
    /// The username, when the query has none.
    pub username: Option<String>,
}
