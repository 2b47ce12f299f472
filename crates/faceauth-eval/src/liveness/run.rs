//! The run: every presentation analysed once and decided by the policy, at its
//! parameters and with each liveness rule alone; and the verdict of a rule set on it.

use std::sync::Arc;

use serde::Serialize;

use faceauth_core::policy::{
    AuthenticateEvidence, LoadedPolicy, MediaKind, MotionSummary, Param, PolicyLimits, PolicyRuntime,
};
use faceauth_core::usecase::FaceEngine;

use super::presentations::{Presentation, Species, column};

/// The outcome of one presentation.
#[derive(Debug, Clone, Serialize)]
pub struct PresentationResult {
    pub file: String,
    pub bona_fide: bool,
    pub kind: String,
    pub source: String,
    pub set: String,
    pub species: Species,
    pub crop: bool,
    /// The policy's decision at its parameters.
    pub reason: String,
    /// The policy's aggregate: the median (the upper one of an even count) over frames
    /// of the primary face's fused live probability.
    pub live: Option<f32>,
    /// Frames analysed and frames with a face.
    pub frames: usize,
    pub frames_with_face: usize,
    /// A video's motion summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub motion: Option<MotionSummary>,
    /// The decision with the policy's liveness rules off (`min-liveness` 0, no video
    /// rule); none when the policy has no such parameters.
    pub base_reason: Option<String>,
    /// Refused for liveness by the still-video rule alone / the movement requirement alone.
    pub still_refused: Option<bool>,
    pub cue_refused: Option<bool>,
}

impl PresentationResult {
    pub(super) fn column(&self) -> String {
        column(self.species, self.crop, &self.kind, &self.set)
    }

    /// Decided by the PAD subsystem: a face was found and measured (the policy checks
    /// liveness before anything else, so its liveness verdict stands whatever the
    /// standard decisions say next).
    pub(super) fn decided_on_liveness(&self) -> bool {
        self.live.is_some() && self.base_reason.is_some()
    }

    /// Refused for liveness under `rules`; none when not decided on liveness.
    pub(super) fn refused(&self, rules: &Rules) -> Option<bool> {
        if !self.decided_on_liveness() {
            return None;
        }
        let passive = self.live.is_some_and(|l| l < rules.min_liveness);
        let still = rules.still_video && self.still_refused == Some(true);
        let cue = rules.video_cue && self.cue_refused == Some(true);
        Some(passive || still || cue)
    }
}

/// A set of liveness rules of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rules {
    pub min_liveness: f32,
    /// `refuse-still-video`
    pub still_video: bool,
    /// `require-video-cue`
    pub video_cue: bool,
}

impl Rules {
    pub(super) fn of(params: &[Param]) -> Self {
        let get = |name: &str| params.iter().find(|p| p.name == name).map(|p| p.value);
        Rules {
            min_liveness: get("min-liveness").unwrap_or(0.0) as f32,
            still_video: get("refuse-still-video").is_some_and(|v| v >= 0.5),
            video_cue: get("require-video-cue").is_some_and(|v| v >= 0.5),
        }
    }

    pub(super) fn describe(&self) -> String {
        let mut s = format!("median live probability >= {:.3}", self.min_liveness);
        if self.still_video {
            s.push_str(" + still-video rule");
        }
        if self.video_cue {
            s.push_str(" + movement required");
        }
        s
    }
}

/// The policy with some parameters overridden (those it declares).
fn variant(policy: &LoadedPolicy, overrides: &[(&str, f64)]) -> Result<Arc<LoadedPolicy>, String> {
    let declared: Vec<&str> = policy.info().params.iter().map(|p| p.name.as_str()).collect();
    if !declared.contains(&"min-liveness") {
        return Err(format!("{} declares no min-liveness", policy.source().display()));
    }
    let mut params: Vec<Param> = policy.params().to_vec();
    for &(name, value) in overrides {
        if let Some(p) = params.iter_mut().find(|p| p.name == name) {
            p.value = value;
        }
    }
    let compiled = PolicyRuntime::new(PolicyLimits::default())
        .and_then(|r| r.compile_file(policy.source()))
        .map_err(|e| e.to_string())?;
    compiled.variant(&params).map(Arc::new).map_err(|e| e.to_string())
}

/// The policy's median (as `liveness-policy` takes it: the upper one of an even count).
fn policy_median(evidence: &AuthenticateEvidence) -> Option<f32> {
    let mut live: Vec<f32> = evidence.frames.iter().filter_map(|f| f.faces.first().and_then(|x| x.liveness)).collect();
    live.sort_by(f32::total_cmp);
    live.get(live.len() / 2).copied()
}

/// Analyses and decides every presentation, `concurrency` at a time.
pub async fn run(
    engine: Arc<FaceEngine>,
    policy: Arc<LoadedPolicy>,
    presentations: Vec<Presentation>,
    concurrency: usize,
    progress: impl Fn() + Send + Sync + 'static,
) -> Vec<PresentationResult> {
    use futures::StreamExt;
    // The liveness rules one at a time (module documentation).
    let off = [("min-liveness", 0.0), ("refuse-still-video", 0.0), ("require-video-cue", 0.0)];
    let still = [("min-liveness", 0.0), ("refuse-still-video", 1.0), ("require-video-cue", 0.0)];
    let cue = [("min-liveness", 0.0), ("refuse-still-video", 0.0), ("require-video-cue", 1.0)];
    let p = policy.clone();
    let variants = tokio::task::spawn_blocking(move || -> Result<_, String> {
        Ok([variant(&p, &off)?, variant(&p, &still)?, variant(&p, &cue)?])
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let variants = match variants {
        Ok(v) => Some(Arc::new(v)),
        Err(e) => {
            eprintln!("liveness rules not measured one by one: {e}");
            None
        }
    };
    let progress = Arc::new(progress);
    futures::stream::iter(presentations)
        .map(|p| {
            let (engine, policy, progress, variants) =
                (engine.clone(), policy.clone(), progress.clone(), variants.clone());
            async move {
                let mut result = PresentationResult {
                    file: p.path.display().to_string(),
                    bona_fide: p.bona_fide,
                    kind: p.kind.clone(),
                    source: p.source.clone(),
                    set: p.set.clone(),
                    species: p.species,
                    crop: p.crop,
                    reason: String::new(),
                    live: None,
                    frames: 0,
                    frames_with_face: 0,
                    motion: None,
                    base_reason: None,
                    still_refused: None,
                    cue_refused: None,
                };
                let analysed = match std::fs::read(&p.path) {
                    Ok(bytes) => engine.analyze_media(bytes, true).await.map_err(crate::run::error_reason),
                    Err(e) => Err(format!("READ_ERROR: {e}")),
                };
                match analysed {
                    Ok(media) => {
                        let evidence = media.evidence(None);
                        result.live = policy_median(&evidence);
                        result.frames = evidence.frames.len();
                        result.frames_with_face = evidence.frames.iter().filter(|f| !f.faces.is_empty()).count();
                        if evidence.media == MediaKind::Video {
                            result.motion = Some(evidence.summary.motion);
                        }
                        let decide = |policy: Arc<LoadedPolicy>, evidence: AuthenticateEvidence| async move {
                            match policy.decide_authenticate(evidence).await {
                                Ok(d) => d.reason,
                                Err(e) => format!("POLICY_ERROR: {e}"),
                            }
                        };
                        if let Some(v) = variants {
                            result.base_reason = Some(decide(v[0].clone(), evidence.clone()).await);
                            result.still_refused =
                                Some(decide(v[1].clone(), evidence.clone()).await == LIVENESS_FAILED);
                            result.cue_refused = Some(decide(v[2].clone(), evidence.clone()).await == LIVENESS_FAILED);
                        }
                        result.reason = decide(policy, evidence).await;
                    }
                    Err(e) => result.reason = e,
                }
                progress();
                result
            }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await
}

pub(super) const LIVENESS_FAILED: &str = "LIVENESS_CHECK_FAILED";
pub(super) const APPROVED: &str = "AUTHENTIFICATION_SUCCESS";
