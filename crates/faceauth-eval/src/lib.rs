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
//!   (`liveness`).

mod args;
pub mod card;
pub mod liveness;
pub mod metrics;

pub use args::EvalArgs;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use faceauth_core::policy::{Decision, LoadedPolicy, MediaKind};
use faceauth_core::usecase::{AnalyzedMedia, FaceEngine, UseCaseError, face_evidence};
use faceauth_core::vision::FaceEmbedding;

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
}

/// One labelled attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub enroll: PathBuf,
    pub authenticate: PathBuf,
    pub genuine: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {0}: {1}")]
    Read(String, #[source] std::io::Error),
    #[error("{0}: {1}")]
    Format(String, String),
}

/// Reads a pair list: a header, then `file_a,file_b,label` with paths relative to
/// the list's folder (or its parent) and a label of 1/0, yes/no, true/false,
/// same/different (LFW `pairs.csv`, deepface `master.csv`).
pub fn read_pairs(list: &Path) -> Result<Vec<Attempt>, EvalError> {
    let text = std::fs::read_to_string(list).map_err(|e| EvalError::Read(list.display().to_string(), e))?;
    let mut attempts = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        if line.trim().is_empty() {
            continue;
        }
        let bad = |m: &str| EvalError::Format(format!("{}:{}", list.display(), n + 1), m.to_string());
        if cols.len() < 3 {
            return Err(bad("expected file_a,file_b,label"));
        }
        let genuine = match cols[2].to_ascii_lowercase().as_str() {
            "1" | "yes" | "true" | "same" => true,
            "0" | "no" | "false" | "different" => false,
            other => return Err(bad(&format!("label {other:?} is not 1/0, yes/no, true/false"))),
        };
        attempts.push(Attempt { enroll: resolve(list, cols[0]), authenticate: resolve(list, cols[1]), genuine });
    }
    Ok(attempts)
}

/// Every pair of images in the subfolders of `dir`, one folder per person
/// (`faces/selfies/tdp-*/`): same folder genuine, different folders impostor.
pub fn read_folder(dir: &Path, same_person: &[(String, String)]) -> Result<Vec<Attempt>, EvalError> {
    let read = |d: &Path| -> Result<Vec<PathBuf>, EvalError> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(d)
            .map_err(|e| EvalError::Read(d.display().to_string(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        Ok(entries)
    };
    let is_image = |p: &PathBuf| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png" | "webp" | "bmp"))
    };
    let mut images = Vec::new();
    for person in read(dir)?.into_iter().filter(|p| p.is_dir()) {
        images.extend(read(&person)?.into_iter().filter(is_image));
    }
    let mut attempts = Vec::new();
    for (i, a) in images.iter().enumerate() {
        for b in &images[i + 1..] {
            let genuine = canonical(same_person, &identity_of(a)) == canonical(same_person, &identity_of(b));
            attempts.push(Attempt { enroll: a.clone(), authenticate: b.clone(), genuine });
        }
    }
    Ok(attempts)
}

/// Reads `videos/index.csv`: every video against every still of every identity;
/// `same_person` pairs of identities are one person.
pub fn read_video_index(index: &Path, same_person: &[(String, String)]) -> Result<Vec<Attempt>, EvalError> {
    let canonical = |id: &str| canonical(same_person, id);
    let text = std::fs::read_to_string(index).map_err(|e| EvalError::Read(index.display().to_string(), e))?;
    let mut videos = Vec::new();
    let mut stills: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        if cols.len() < 3 {
            return Err(EvalError::Format(
                format!("{}:{}", index.display(), n + 1),
                "expected video,stills,identity".into(),
            ));
        }
        let identity = canonical(cols[2]);
        videos.push((resolve(index, cols[0]), identity.clone()));
        let own = stills.entry(identity).or_default();
        for still in cols[1].split(';').filter(|s| !s.is_empty()) {
            let path = resolve(index, still);
            if !own.contains(&path) {
                own.push(path);
            }
        }
    }
    let mut attempts = Vec::new();
    for (video, identity) in &videos {
        for (who, files) in &stills {
            for still in files {
                attempts.push(Attempt { enroll: still.clone(), authenticate: video.clone(), genuine: who == identity });
            }
        }
    }
    Ok(attempts)
}

/// A listed path: relative to the list's folder, else to its parent
/// (`videos/index.csv` names `videos/...`).
fn resolve(list: &Path, entry: &str) -> PathBuf {
    let dir = list.parent().unwrap_or(Path::new("."));
    let near = dir.join(entry);
    if near.exists() {
        return near;
    }
    match dir.parent() {
        Some(up) if up.join(entry).exists() => up.join(entry),
        _ => near,
    }
}

/// The outcome of one attempt.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptResult {
    pub enroll: String,
    pub authenticate: String,
    pub genuine: bool,
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
    let results = futures::stream::iter(attempts)
        .map(|attempt| {
            let (engine, policy, enrollments, media, progress, cards_dir) = (
                engine.clone(),
                policy.clone(),
                enrollments.clone(),
                media.clone(),
                progress.clone(),
                cards_dir.clone(),
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
                let result = authenticate(&engine, &policy, &media, &attempt, enrollment, with_liveness).await;
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

/// One name for identities known to be one person (`ID1=ID2` pairs).
fn canonical(same_person: &[(String, String)], id: &str) -> String {
    same_person.iter().find(|(_, b)| b == id).map_or_else(|| id.to_string(), |(a, _)| a.clone())
}

/// The identity of a labelled file: its folder's name (LFW, the selfie sets).
fn identity_of(file: &Path) -> String {
    file.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// FAR over every pair of faces of different identities at each threshold.
#[derive(Debug, Clone, Serialize)]
pub struct ImpostorSweep {
    pub faces: usize,
    pub identities: usize,
    pub pairs: u64,
    /// (threshold, impostor pairs at or over it)
    pub accepted: Vec<(f64, u64)>,
}

/// Every cross-identity pair's cosine against the thresholds `from..=to` by `step`.
pub fn impostor_sweep(faces: &[(String, FaceEmbedding)], from: f64, to: f64, step: f64) -> ImpostorSweep {
    let thresholds: Vec<f64> = (0..).map(|i| from + step * f64::from(i)).take_while(|t| *t <= to + 1e-9).collect();
    let mut accepted = vec![0u64; thresholds.len()];
    let mut pairs = 0u64;
    for (i, (who_a, a)) in faces.iter().enumerate() {
        for (who_b, b) in &faces[i + 1..] {
            if who_a == who_b {
                continue;
            }
            pairs += 1;
            let s = f64::from(a.cosine(b));
            for (slot, t) in accepted.iter_mut().zip(&thresholds) {
                if s >= *t {
                    *slot += 1;
                }
            }
        }
    }
    let mut identities: Vec<&str> = faces.iter().map(|(w, _)| w.as_str()).collect();
    identities.sort_unstable();
    identities.dedup();
    ImpostorSweep {
        faces: faces.len(),
        identities: identities.len(),
        pairs,
        accepted: thresholds.into_iter().zip(accepted).collect(),
    }
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
        Mode::Pairs => bytes,
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
            let evidence = faceauth_core::policy::EnrollEvidence { image, faces: face_evidence(&faces, image, None) };
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
    enrollment: Enrollment,
    with_liveness: bool,
) -> AttemptResult {
    let mut result = AttemptResult {
        enroll: attempt.enroll.display().to_string(),
        authenticate: attempt.authenticate.display().to_string(),
        genuine: attempt.genuine,
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
fn error_reason(e: UseCaseError) -> String {
    format!("{}: {e}", e.code())
}

/// Counts by reason code (the part before any `:`).
fn tally<'a>(reasons: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in reasons {
        *counts.entry(r.split(':').next().unwrap_or(r).to_string()).or_insert(0) += 1;
    }
    counts
}

/// Decisions of one class of attempts.
#[derive(Debug, Clone, Serialize)]
pub struct ClassDecisions {
    pub attempts: usize,
    pub approved: usize,
    /// approved / attempts (TAR for genuine attempts, FAR for impostors).
    pub approved_rate: f64,
    /// Why the others were refused: enrollment reasons (prefixed `enroll:`) and
    /// authentication reasons.
    pub refused: BTreeMap<String, usize>,
}

/// A genuine attempt refused by something else than the match although the
/// recognizer's similarity was over the match threshold.
#[derive(Debug, Clone, Serialize)]
pub struct GateLoss {
    pub enroll: String,
    pub authenticate: String,
    pub reason: String,
    pub similarity: f32,
}

const SECOND_FACE: &str = "MULTIPLE_FACES_DETECTED";

/// The report of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: Mode,
    pub policy: String,
    pub match_threshold: Option<f64>,
    pub attempts: usize,
    /// Distinct enrollment uploads, those refused, their share, by reason.
    pub enrollments: usize,
    pub enrollments_refused: usize,
    pub failure_to_enroll: f64,
    pub enrollment_refusals: BTreeMap<String, usize>,
    pub genuine: ClassDecisions,
    pub impostor: ClassDecisions,
    /// The recognizer's similarity alone (no gates; attempts without a face on either
    /// side unscored).
    pub recognizer: metrics::Verification,
    /// End to end: a gate refusal counts as refused at every threshold.
    pub end_to_end: metrics::Verification,
    /// End to end on photos of one person: the attempts refused for a second large
    /// face (the selfie rule against a second person; LFW's press photos often show
    /// one beside the subject) are left out of both classes.
    pub one_person: metrics::Verification,
    /// Attempts refused for a second large face (at enrollment or authentication):
    /// genuine, impostor.
    pub second_face_refusals: (usize, usize),
    /// The policy's own decisions on photos of one person: genuine approved, genuine,
    /// impostor approved, impostor.
    pub one_person_decisions: (usize, usize, usize, usize),
    /// Genuine attempts lost to a quality gate (size, sharpness, pose) or to no face
    /// found, that the recognizer would have matched.
    pub gate_losses: Vec<GateLoss>,
    /// Impostor attempts the policy approved.
    pub impostors_approved: Vec<(String, String, f32)>,
    /// FAR over every cross-identity pair of the still images authenticated with.
    pub impostor_sweep: Option<ImpostorSweep>,
    pub seconds: f64,
    pub ms_per_attempt: f64,
}

impl Report {
    pub fn new(mode: Mode, policy: &LoadedPolicy, results: &[AttemptResult], seconds: f64) -> Self {
        let match_threshold = policy.params().iter().find(|p| p.name == "match-threshold").map(|p| p.value);
        let mut enroll_reasons: BTreeMap<&str, &str> = BTreeMap::new();
        for r in results {
            enroll_reasons.insert(&r.enroll, &r.enroll_reason);
        }
        let refused_enrollments: Vec<&str> =
            enroll_reasons.values().copied().filter(|r| *r != "ENROLLED_AS_USER").collect();
        let class = |genuine: bool| {
            let of: Vec<&AttemptResult> = results.iter().filter(|r| r.genuine == genuine).collect();
            let approved = of.iter().filter(|r| r.approved).count();
            let reasons: Vec<String> = of
                .iter()
                .filter(|r| !r.approved)
                .map(|r| match &r.reason {
                    Some(reason) => reason.clone(),
                    None => format!("enroll:{}", r.enroll_reason),
                })
                .collect();
            ClassDecisions {
                attempts: of.len(),
                approved,
                approved_rate: if of.is_empty() { 0.0 } else { approved as f64 / of.len() as f64 },
                refused: tally(reasons.iter().map(String::as_str)),
            }
        };
        let scores = |genuine: bool, f: &dyn Fn(&AttemptResult) -> f64| -> Vec<f64> {
            results.iter().filter(|r| r.genuine == genuine).map(f).collect()
        };
        let raw = |r: &AttemptResult| r.similarity.map_or(f64::NEG_INFINITY, f64::from);
        let e2e = |r: &AttemptResult| r.end_to_end_score();
        let threshold = match_threshold.unwrap_or(f64::INFINITY);
        let second_face =
            |r: &AttemptResult| r.enroll_reason == SECOND_FACE || r.reason.as_deref().is_some_and(|x| x == SECOND_FACE);
        let one_person = |genuine: bool| -> Vec<f64> {
            results.iter().filter(|r| r.genuine == genuine && !second_face(r)).map(e2e).collect()
        };
        let gate_losses = results
            .iter()
            .filter(|r| r.genuine && !r.approved && !second_face(r))
            .filter(|r| r.reason.as_deref() != Some("FACE_MISMATCH"))
            .filter_map(|r| {
                let s = r.similarity.filter(|&s| f64::from(s) >= threshold)?;
                Some(GateLoss {
                    enroll: r.enroll.clone(),
                    authenticate: r.authenticate.clone(),
                    reason: r.reason.clone().unwrap_or_else(|| format!("enroll:{}", r.enroll_reason)),
                    similarity: s,
                })
            })
            .collect();
        Report {
            mode,
            policy: format!("{}@{}", policy.info().name, policy.info().version),
            match_threshold,
            attempts: results.len(),
            enrollments: enroll_reasons.len(),
            enrollments_refused: refused_enrollments.len(),
            failure_to_enroll: if enroll_reasons.is_empty() {
                0.0
            } else {
                refused_enrollments.len() as f64 / enroll_reasons.len() as f64
            },
            enrollment_refusals: tally(refused_enrollments.into_iter()),
            genuine: class(true),
            impostor: class(false),
            recognizer: metrics::verification(&scores(true, &raw), &scores(false, &raw)),
            end_to_end: metrics::verification(&scores(true, &e2e), &scores(false, &e2e)),
            one_person: metrics::verification(&one_person(true), &one_person(false)),
            one_person_decisions: (
                results.iter().filter(|r| r.genuine && !second_face(r) && r.approved).count(),
                results.iter().filter(|r| r.genuine && !second_face(r)).count(),
                results.iter().filter(|r| !r.genuine && !second_face(r) && r.approved).count(),
                results.iter().filter(|r| !r.genuine && !second_face(r)).count(),
            ),
            second_face_refusals: (
                results.iter().filter(|r| r.genuine && second_face(r)).count(),
                results.iter().filter(|r| !r.genuine && second_face(r)).count(),
            ),
            gate_losses,
            impostors_approved: results
                .iter()
                .filter(|r| !r.genuine && r.approved)
                .map(|r| (r.enroll.clone(), r.authenticate.clone(), r.similarity.unwrap_or(f32::NAN)))
                .collect(),
            impostor_sweep: None,
            seconds,
            ms_per_attempt: if results.is_empty() { 0.0 } else { seconds * 1000.0 / results.len() as f64 },
        }
    }

    /// The ROC curves of the recognizer and of the whole pipeline.
    pub fn write_roc(&self, results: &[AttemptResult], path: &Path) -> Result<(), String> {
        let pick = |genuine: bool, f: fn(&AttemptResult) -> f64| -> Vec<f64> {
            results.iter().filter(|r| r.genuine == genuine).map(f).collect()
        };
        let raw = |r: &AttemptResult| r.similarity.map_or(f64::NEG_INFINITY, f64::from);
        let (rg, ri) = (pick(true, raw), pick(false, raw));
        let (eg, ei) = (pick(true, AttemptResult::end_to_end_score), pick(false, AttemptResult::end_to_end_score));
        let title = format!("faceauth eval ({:?}): {} genuine, {} impostor", self.mode, rg.len(), ri.len());
        metrics::write_roc_svg(path, &title, &[("recognizer", &rg, &ri), ("end to end (gates)", &eg, &ei)])
    }

    /// A human-readable summary.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let pct = |x: f64| format!("{:.2} %", 100.0 * x);
        let mut s = String::new();
        let op = |p: &metrics::OperatingPoint, m: &metrics::Verification| {
            format!(
                "TAR {} ({}/{}) at FAR {} ({}/{}), threshold {:.3}",
                pct(p.tar),
                p.genuine_accepted,
                m.genuine,
                pct(p.far),
                p.impostor_accepted,
                m.impostor,
                p.threshold
            )
        };
        let v = |s: &mut String, name: &str, m: &metrics::Verification| {
            let _ = writeln!(
                s,
                "{name}: ROC AUC {:.4}, EER {}, best accuracy {} at {:.3}; {}; {}; unscored genuine {}, impostor {}",
                m.roc_auc,
                pct(m.eer),
                pct(m.best_accuracy),
                m.best_accuracy_threshold,
                op(&m.at_far_1e2, m),
                op(&m.at_far_1e3, m),
                m.genuine_unscored,
                m.impostor_unscored,
            );
        };
        let _ = writeln!(
            s,
            "mode {:?}, policy {} (match-threshold {}), {} attempts ({} genuine, {} impostor)",
            self.mode,
            self.policy,
            self.match_threshold.map_or("-".into(), |t| t.to_string()),
            self.attempts,
            self.genuine.attempts,
            self.impostor.attempts
        );
        let _ = writeln!(
            s,
            "enrollment: {} uploads, {} refused (failure to enroll {}) {:?}",
            self.enrollments,
            self.enrollments_refused,
            pct(self.failure_to_enroll),
            self.enrollment_refusals
        );
        for (name, c) in [("genuine", &self.genuine), ("impostor", &self.impostor)] {
            let _ = writeln!(
                s,
                "{name}: approved {}/{} ({}); refused {:?}",
                c.approved,
                c.attempts,
                pct(c.approved_rate),
                c.refused
            );
        }
        v(&mut s, "recognizer", &self.recognizer);
        v(&mut s, "end to end", &self.end_to_end);
        let _ = writeln!(
            s,
            "refused for a second large face: {} genuine, {} impostor attempts; without them:",
            self.second_face_refusals.0, self.second_face_refusals.1
        );
        v(&mut s, "end to end, one person", &self.one_person);
        let (ga, gn, ia, inn) = self.one_person_decisions;
        let _ = writeln!(
            s,
            "policy decisions, one person: genuine approved {ga}/{gn} ({}), impostor approved {ia}/{inn} ({})",
            pct(if gn == 0 { 0.0 } else { ga as f64 / gn as f64 }),
            pct(if inn == 0 { 0.0 } else { ia as f64 / inn as f64 })
        );
        let _ = writeln!(
            s,
            "genuine lost to a quality gate (or no face) with similarity over the threshold: {}",
            self.gate_losses.len()
        );
        for g in self.gate_losses.iter().take(20) {
            let _ = writeln!(s, "  {} -> {}: {} (similarity {:.3})", g.enroll, g.authenticate, g.reason, g.similarity);
        }
        for (a, b, sim) in self.impostors_approved.iter().take(20) {
            let _ = writeln!(s, "impostor approved: {a} -> {b} (similarity {sim:.3})");
        }
        if let Some(sweep) = self.impostor_sweep.as_ref().filter(|w| w.pairs > 0) {
            let _ = writeln!(
                s,
                "every cross-identity pair of {} faces ({} identities, {} pairs): FAR at threshold",
                sweep.faces, sweep.identities, sweep.pairs
            );
            for (t, n) in &sweep.accepted {
                let _ = writeln!(s, "  {t:.3}: {:.4} % ({n}/{})", 100.0 * *n as f64 / sweep.pairs as f64, sweep.pairs);
            }
        }
        let _ = writeln!(s, "{:.1} s, {:.1} ms per attempt", self.seconds, self.ms_per_attempt);
        s
    }
}
