//! The admin endpoints' wire types: reset's `{"code", "msg"}` (also every admin
//! failure, and an unknown path's answer), erasure, the policy set, recorded
//! decisions, and the admin upload forms. The statistics and replay reports are in
//! `reports`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use faceauth_core::policy::Endpoint;
use faceauth_core::policy::router::PolicySet;
use faceauth_core::store::Erased;

/// `{"code", "msg"}`: reset's answer, and every admin failure (and an unknown path
/// or method): `msg` is `DONE` or `ERROR_DETECTED : <why>`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdminAnswer {
    /// The HTTP status, repeated.
    #[schema(example = 200)]
    pub code: u16,
    #[schema(example = "DONE")]
    pub msg: String,
}

impl AdminAnswer {
    pub fn done() -> Self {
        Self { code: 200, msg: DONE.into() }
    }

    pub fn error(status: axum::http::StatusCode, why: impl std::fmt::Display) -> Self {
        Self { code: status.as_u16(), msg: format!("ERROR_DETECTED : {why}") }
    }
}

pub(super) const DONE: &str = "DONE";

/// What an erasure removed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErasedCounts {
    /// Enrolled users whose template was deleted (0 or 1).
    pub users: u64,
    /// Audit rows whose username was replaced by its pseudonym.
    pub decisions: u64,
}

impl From<Erased> for ErasedCounts {
    fn from(Erased { users, decisions }: Erased) -> Self {
        Self { users, decisions }
    }
}

/// `DELETE /api/admin/users/{username}` done.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserErased {
    #[schema(example = 200)]
    pub code: u16,
    #[schema(example = "DONE")]
    pub msg: String,
    pub erased: ErasedCounts,
}

impl UserErased {
    pub fn new(erased: Erased) -> Self {
        Self { code: 200, msg: DONE.into(), erased: erased.into() }
    }
}

/// One policy variant in force.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VariantJson {
    pub name: String,
    /// The component's own name (`info()`).
    pub policy: String,
    pub version: String,
    /// The component's file name.
    pub component: Option<String>,
    pub sha256: String,
    pub requires_liveness: bool,
    /// Share of the users this variant answers, relative to the others' weights.
    pub weight: u32,
    /// Decides on every request, recorded but never answered.
    pub shadow: bool,
    /// The parameters in force (the component's defaults with the overrides).
    pub params: BTreeMap<String, f64>,
    /// Failed calls in a row on live traffic after which it retires itself (0: never).
    pub retire_after_failures: u32,
    /// When and why it retired itself, if it did (its weight is then 0).
    pub retired: Option<String>,
}

/// The policy set in force.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicySetJson {
    /// The A/B experiment's salt.
    pub experiment: String,
    /// When the set was built, Unix ms.
    pub loaded_at_ms: i64,
    pub variants: Vec<VariantJson>,
}

impl PolicySetJson {
    pub fn new(set: &PolicySet) -> Self {
        let variants = set
            .variants
            .iter()
            .map(|v| {
                let info = v.policy.info();
                VariantJson {
                    name: v.name.clone(),
                    policy: info.name.clone(),
                    version: info.version.clone(),
                    component: v.policy.source().file_name().map(|n| n.to_string_lossy().into_owned()),
                    sha256: v.policy.sha256().to_string(),
                    requires_liveness: info.requires_liveness,
                    weight: v.weight,
                    shadow: v.shadow,
                    params: v.policy.params().iter().map(|p| (p.name.clone(), p.value)).collect(),
                    retire_after_failures: v.retire_after_failures,
                    retired: v.retired.clone(),
                }
            })
            .collect();
        Self { experiment: set.experiment.clone(), loaded_at_ms: set.loaded_at_ms, variants }
    }
}

/// `GET /api/admin/policies`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyOverviewAnswer {
    #[schema(example = 200)]
    pub code: u16,
    #[schema(example = "DONE")]
    pub msg: String,
    /// Whether the set comes from a policy directory (`--policy-dir`) and can be changed.
    pub managed: bool,
    pub directory: Option<String>,
    /// Why the last reload of the directory was refused, if it was.
    pub last_error: Option<String>,
    pub set: PolicySetJson,
}

impl PolicyOverviewAnswer {
    pub fn new(managed: bool, directory: Option<String>, last_error: Option<String>, set: &PolicySet) -> Self {
        Self { code: 200, msg: DONE.into(), managed, directory, last_error, set: PolicySetJson::new(set) }
    }
}

/// A policy change done: the new set.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicySetAnswer {
    #[schema(example = 200)]
    pub code: u16,
    #[schema(example = "DONE")]
    pub msg: String,
    pub set: PolicySetJson,
}

impl PolicySetAnswer {
    pub fn new(set: &PolicySet) -> Self {
        Self { code: 200, msg: DONE.into(), set: PolicySetJson::new(set) }
    }
}

/// `enroll` or `authenticate`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndpointJson {
    Enroll,
    Authenticate,
}

impl From<Endpoint> for EndpointJson {
    fn from(e: Endpoint) -> Self {
        match e {
            Endpoint::Enroll => EndpointJson::Enroll,
            Endpoint::Authenticate => EndpointJson::Authenticate,
        }
    }
}

/// One recorded decision (the keys of the first release).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DecisionJson {
    /// The request's `x-request-id`, shared by its answer and its shadows.
    pub request_id: String,
    pub at_ms: i64,
    /// The username, or `erased:<hash>` once erased.
    pub username: String,
    pub endpoint: EndpointJson,
    pub variant: String,
    /// `name@version` of the component.
    pub policy: String,
    /// The first 16 hex digits of SHA-256 over the component's sha256 and the
    /// variant's parameters in force (sorted `name=value` lines): another hash under
    /// the same variant means its parameters changed. `""` on rows recorded before
    /// it was.
    #[schema(example = "3f2a9c0d41b7e865")]
    pub params_hash: String,
    pub shadow: bool,
    pub approved: bool,
    pub reason: String,
    /// The message of a failure that replaced a policy decision.
    pub error: Option<String>,
    pub score: Option<f64>,
    /// The evidence the policy decided on (measurements only; the policy interface's
    /// shape), null when left out (`evidence=false`), `{"unreadable", "stored"}`
    /// when it no longer reads.
    #[schema(value_type = Option<Object>)]
    pub evidence: Value,
    pub analysis_ms: f64,
    pub policy_ms: f64,
    pub total_ms: f64,
}

/// `GET /api/admin/decisions`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DecisionsAnswer {
    #[schema(example = 200)]
    pub code: u16,
    #[schema(example = "DONE")]
    pub msg: String,
    /// Oldest first.
    pub decisions: Vec<DecisionJson>,
    /// The cursor of the next, older page (pass it as `before`); null on the last page.
    #[schema(example = "1765000000000-4711")]
    pub next: Option<String>,
}

impl DecisionsAnswer {
    pub fn new(decisions: Vec<DecisionJson>, next: Option<String>) -> Self {
        Self { code: 200, msg: DONE.into(), decisions, next }
    }
}

/// The multipart body of `PUT /api/admin/policies/{name}`: every field optional,
/// except that a new variant needs a component; fields left out keep the variant's
/// value. Any other field is refused (400).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PutPolicyForm {
    /// The policy component (`.wasm`).
    #[schema(value_type = Option<String>, format = Binary, content_media_type = "application/wasm")]
    pub component: Option<Vec<u8>>,
    /// Share of the users it answers, relative to the other weights.
    pub weight: Option<u32>,
    /// `true` (or `1`): decides on every request, recorded, never answered.
    pub shadow: Option<bool>,
    /// A JSON object of parameter overrides, name: number (`{"match-threshold":0.6}`).
    pub params: Option<String>,
}

/// The multipart body of `POST /api/admin/replay`: a `component` or a `variant` (the
/// candidate), the rest optional. Any other field is refused (400).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReplayForm {
    /// A candidate policy component (`.wasm`).
    #[schema(value_type = Option<String>, format = Binary, content_media_type = "application/wasm")]
    pub component: Option<Vec<u8>>,
    /// Or an existing variant's component and parameters.
    pub variant: Option<String>,
    /// A JSON object of parameter overrides, name: number.
    pub params: Option<String>,
    /// Replay decisions recorded since this Unix time, ms.
    pub since_ms: Option<i64>,
    /// At most this many recorded answers (default 10 000).
    pub limit: Option<i64>,
    /// Ground truth, CSV lines `request_id,label` (label `genuine`/`impostor`): adds
    /// confusion matrices.
    pub labels: Option<String>,
}

/// The multipart body of `POST /api/admin/search`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SearchForm {
    /// A still image (JPEG, PNG, WebP...) of one person.
    #[schema(value_type = String, format = Binary)]
    pub image: Vec<u8>,
}

/// One enrolled user found by a search.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FoundUserJson {
    pub username: String,
    /// Cosine similarity to the enrolled template, in [-1, 1]; the default policy
    /// calls an enrollment a duplicate from 0.50 (galleries up to about 2 000) to
    /// 0.70 (README, "Duplicate search").
    #[schema(example = 0.81)]
    pub similarity: f32,
}

/// `POST /api/admin/search` done.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchAnswer {
    #[schema(example = 200)]
    pub code: u16,
    #[schema(example = "DONE")]
    pub msg: String,
    /// Enrolled templates searched.
    pub gallery_size: u64,
    /// Faces found in the image; the largest was searched.
    pub faces_detected: usize,
    /// Most similar first, at most `top_k`.
    pub matches: Vec<FoundUserJson>,
}

impl SearchAnswer {
    pub fn new(search: faceauth_core::usecase::search::FaceSearch) -> Self {
        Self {
            code: 200,
            msg: DONE.into(),
            gallery_size: search.gallery_size,
            faces_detected: search.faces_detected,
            matches: search
                .matches
                .into_iter()
                .map(|m| FoundUserJson { username: m.username, similarity: m.similarity })
                .collect(),
        }
    }
}
