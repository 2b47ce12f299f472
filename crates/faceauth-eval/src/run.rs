//! The runner: every attempt through the server's steps (decode, analyse, evidence,
//! the policy's decision), each enrollment and each authentication upload analysed
//! once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use faceauth_core::policy::{Decision, LoadedPolicy, MediaKind};
use faceauth_core::usecase::{AnalyzedMedia, FaceEngine, UseCaseError, face_evidence};
use faceauth_core::vision::FaceEmbedding;

use crate::lists::{canonical, identity_of};
use crate::{Attempt, Mode, card};

/// The outcome of one attempt.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptResult {
    pub enroll: String,
    pub authenticate: String,
    pub genuine: bool,
    /// The enrolled (claimed) person: the enrollment file's folder (`--same-person`
    /// applied), the subject its intervals resample (`crate::intervals`).
    pub subject: String,
    /// The enrollment's reason (ENROLLED_AS_USER when approved).
    pub enroll_reason: String,
    /// The authentication's reason; none when the enrollment was refused.
    pub reason: Option<String>,
    pub approved: bool,
    /// Cosine of the two primary faces (for a video, the median over frames with a
    /// face), whatever the gates said: what the recognizer alone would see.
    pub similarity: Option<f32>,
    /// A video's evidence as the policy saw it (every frame's faces, the track), for
    /// `--attempts-out`: rules can be studied on it without analysing the clips again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<faceauth_core::policy::AuthenticateEvidence>,
}

impl AttemptResult {
    /// The score the match threshold meets, end to end: the similarity when the only
    /// question left was the match (approved or FACE_MISMATCH), else refused.
    pub fn end_to_end_score(&self) -> f64 {
        match (self.reason.as_deref(), self.similarity) {
            (Some(r), Some(s)) if self.approved || r == "FACE_MISMATCH" => f64::from(s),
            _ => f64::NEG_INFINITY,
        }
    }
}

/// An analysed enrollment upload and its decision, shared by the attempts that use it.
#[derive(Clone)]
struct Enrollment {
    decision: Result<Decision, String>,
    /// The primary face's embedding, when there is a face (enrolled or not).
    primary: Option<FaceEmbedding>,
}

/// How a run goes.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Attempts in flight at once (one per face-analysis worker keeps them busy).
    pub concurrency: usize,
    /// Where to write the generated ID cards, for a look at what was enrolled.
    pub cards_dir: Option<PathBuf>,
    /// Identities known to be one person (`ID1=ID2`).
    pub same_person: Vec<(String, String)>,
}

/// What a run measured.
pub struct RunResults {
    pub attempts: Vec<AttemptResult>,
    /// The primary face of every still image authenticated with, by identity (its
    /// folder's name): for impostor figures over every cross-identity pair.
    pub faces: Vec<(String, FaceEmbedding)>,
}

/// Runs the attempts through `engine` (analysis) and `policy` (decisions);
/// `progress` is told of each one done.
pub async fn run(
    engine: Arc<FaceEngine>,
    policy: Arc<LoadedPolicy>,
    mode: Mode,
    attempts: Vec<Attempt>,
    options: &RunOptions,
    progress: impl Fn() + Send + Sync + 'static,
) -> RunResults {
    let concurrency = options.concurrency;
    let cards_dir = options.cards_dir.clone();
    use futures::StreamExt;
    let enrollments: Arc<Mutex<HashMap<PathBuf, Arc<tokio::sync::OnceCell<Enrollment>>>>> = Arc::default();
    let media: Arc<MediaCache> = Arc::default();
    let progress = Arc::new(progress);
    let with_liveness = policy.info().requires_liveness;
    let same_person = Arc::new(options.same_person.clone());
    let results = futures::stream::iter(attempts)
        .map(|attempt| {
            let (engine, policy, enrollments, media, progress, cards_dir, same_person) = (
                engine.clone(),
                policy.clone(),
                enrollments.clone(),
                media.clone(),
                progress.clone(),
                cards_dir.clone(),
                same_person.clone(),
            );
            async move {
                let cell = enrollments.lock().map(|mut m| m.entry(attempt.enroll.clone()).or_default().clone());
                let enrollment = match cell {
                    Ok(cell) => cell
                        .get_or_init(|| enroll(&engine, &policy, mode, &attempt.enroll, cards_dir.as_deref()))
                        .await
                        .clone(),
                    Err(_) => Enrollment { decision: Err("cache poisoned".into()), primary: None },
                };
                let subject = canonical(&same_person, &identity_of(&attempt.enroll));
                let result = authenticate(&engine, &policy, &media, &attempt, subject, enrollment, with_liveness).await;
                progress();
                result
            }
        })
        .buffered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut faces: Vec<(String, FaceEmbedding)> = Vec::new();
    if let Ok(cache) = media.lock() {
        let mut files: Vec<&PathBuf> = cache.keys().collect();
        files.sort();
        for file in files {
            let Some(Ok(analyzed)) = cache[file].get() else { continue };
            let primary = analyzed.frames.first().and_then(|(_, faces)| faces.first());
            if let (MediaKind::Image, Some(face)) = (analyzed.kind, primary) {
                faces.push((canonical(&options.same_person, &identity_of(file)), face.embedding.clone()));
            }
        }
    }
    RunResults { attempts: results, faces }
}

async fn enroll(
    engine: &FaceEngine,
    policy: &Arc<LoadedPolicy>,
    mode: Mode,
    file: &Path,
    cards_dir: Option<&Path>,
) -> Enrollment {
    let failed = |e: String| Enrollment { decision: Err(e), primary: None };
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => return failed(format!("READ_ERROR: {e}")),
    };
    let upload = match mode {
        Mode::Pairs | Mode::Duplicates => bytes,
        Mode::Card | Mode::Video | Mode::Liveness => match make_card(engine, bytes, file).await {
            Ok(card) => card,
            Err(e) => return failed(e),
        },
    };
    if let (Some(dir), Mode::Card | Mode::Video) = (cards_dir, mode) {
        let name = file.to_string_lossy().replace(['/', '\\'], "_");
        if let Err(e) = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(dir.join(name), &upload)) {
            tracing::warn!(error = %e, "cannot write the card of {}", file.display());
        }
    }
    match engine.analyze_upload(upload).await {
        Ok((image, faces)) => {
            let evidence = faceauth_core::policy::EnrollEvidence {
                image,
                faces: face_evidence(&faces, image, None),
                duplicates: None,
            };
            let primary = faces.first().map(|f| f.embedding.clone());
            let decision = policy.decide_enroll(evidence).await.map_err(|e| format!("POLICY_ERROR: {e}"));
            Enrollment { decision, primary }
        }
        Err(e) => failed(error_reason(e)),
    }
}

/// A card of the person in `photo`: the portrait cropped around the largest face.
async fn make_card(engine: &FaceEngine, photo: Vec<u8>, file: &Path) -> Result<Vec<u8>, String> {
    let decoded = faceauth_core::media::decode_image(&photo, faceauth_core::media::DecodeLimits::default())
        .map_err(|e| format!("INVALID_IMAGE: {e}"))?;
    // The analysis answers in the upload's pixels; a large JPEG is decoded smaller.
    let to_decoded = 1.0 / decoded.scale();
    let face = engine
        .analyze_upload(photo)
        .await
        .ok()
        .and_then(|(_, faces)| faces.into_iter().next().map(|f| f.scaled(to_decoded).bbox));
    let pixels = decoded.pixels;
    let seed = file.to_string_lossy().bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    card::card_jpeg(&pixels, face, seed).map_err(|e| format!("CARD_ERROR: {e}"))
}

/// Analysed authentication uploads by file, each analysed once.
type MediaCache = Mutex<HashMap<PathBuf, Arc<tokio::sync::OnceCell<Result<Arc<AnalyzedMedia>, String>>>>>;

async fn authenticate(
    engine: &FaceEngine,
    policy: &Arc<LoadedPolicy>,
    media: &MediaCache,
    attempt: &Attempt,
    subject: String,
    enrollment: Enrollment,
    with_liveness: bool,
) -> AttemptResult {
    let mut result = AttemptResult {
        enroll: attempt.enroll.display().to_string(),
        authenticate: attempt.authenticate.display().to_string(),
        genuine: attempt.genuine,
        subject,
        enroll_reason: String::new(),
        reason: None,
        approved: false,
        similarity: None,
        evidence: None,
    };
    let cell = match media.lock() {
        Ok(mut m) => m.entry(attempt.authenticate.clone()).or_default().clone(),
        Err(_) => return result,
    };
    let analyzed = cell
        .get_or_init(|| async {
            let bytes = std::fs::read(&attempt.authenticate).map_err(|e| format!("READ_ERROR: {e}"))?;
            engine.analyze_media(bytes, with_liveness).await.map(Arc::new).map_err(error_reason)
        })
        .await
        .clone();
    // What the recognizer alone says, enrolled or not.
    if let (Some(template), Ok(analyzed)) = (&enrollment.primary, &analyzed) {
        let summary = analyzed.evidence(Some(template)).summary;
        result.similarity = match analyzed.kind {
            MediaKind::Image => summary.best_similarity,
            MediaKind::Video => summary.median_similarity,
        };
    }
    match &enrollment.decision {
        Ok(d) => result.enroll_reason = d.reason.clone(),
        Err(e) => {
            result.enroll_reason = e.clone();
            return result;
        }
    }
    let (Ok(Decision { approved: true, .. }), Some(template)) = (&enrollment.decision, &enrollment.primary) else {
        return result;
    };
    let decision = match analyzed {
        Ok(analyzed) => {
            let evidence = analyzed.evidence(Some(template));
            if analyzed.kind == MediaKind::Video {
                result.evidence = Some(evidence.clone());
            }
            policy.decide_authenticate(evidence).await.map_err(|e| format!("POLICY_ERROR: {e}"))
        }
        Err(e) => Err(e),
    };
    match decision {
        Ok(d) => {
            result.approved = d.approved;
            result.reason = Some(d.reason);
        }
        Err(e) => result.reason = Some(e),
    }
    result
}

/// The reason code for a request the host refused (`UseCaseError::code`, as the
/// API answers it), with the error's words.
pub(crate) fn error_reason(e: UseCaseError) -> String {
    format!("{}: {e}", e.code())
}
