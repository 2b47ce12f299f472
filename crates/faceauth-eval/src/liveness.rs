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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use faceauth_core::policy::{
    AuthenticateEvidence, LoadedPolicy, MediaKind, MotionSummary, Param, PolicyLimits, PolicyRuntime,
};
use faceauth_core::usecase::FaceEngine;

/// The LOSO criterion: the largest `min-liveness` keeping the training BPCER at most this.
pub const LOSO_MAX_BPCER: f64 = 0.03;
/// Today's rule, the reference every variant is compared with.
pub const REFERENCE_MIN_LIVENESS: f32 = 0.3;
/// The source of the phone selfie photos and videos (one source).
const SELFIES_SOURCE: &str = "Trainingdata-datamarket/Selfies-and-video-dataset";

/// ISO/IEC 30107 presentation attack instrument species (and bona fide).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Species {
    BonaFide,
    Print,
    ScreenReplay,
    VideoReplay,
    Disguise,
    Deepfake,
    /// A still photo turned into a video (no recapture at all).
    StillVideo,
    Unknown,
}

impl Species {
    /// From an attack type of `liveness/labels.csv` or of the generated sets.
    pub fn of(bona_fide: bool, attack_type: &str) -> Self {
        if bona_fide {
            return Species::BonaFide;
        }
        let t = attack_type.to_ascii_lowercase();
        if t.starts_with("print") {
            Species::Print
        } else if t.starts_with("screen") {
            Species::ScreenReplay
        } else if t.starts_with("replay_video") || t == "face_crop_replay" || t.starts_with("video_replay") {
            Species::VideoReplay
        } else if t.starts_with("still_video") {
            Species::StillVideo
        } else if t.contains("disguise") || t.contains("mask") || t.contains("makeup") {
            Species::Disguise
        } else if t.contains("deepfake") || t.contains("face_swap") {
            Species::Deepfake
        } else {
            Species::Unknown
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Species::BonaFide => "bona fide",
            Species::Print => "print",
            Species::ScreenReplay => "screen replay",
            Species::VideoReplay => "video replay",
            Species::Disguise => "disguise",
            Species::Deepfake => "deepfake",
            Species::StillVideo => "still photo as video",
            Species::Unknown => "other attack",
        }
    }
}

/// One presentation.
#[derive(Debug, Clone)]
pub struct Presentation {
    pub path: PathBuf,
    pub bona_fide: bool,
    /// Where it comes from (`live_selfie_video`, `print_photo`, `simulated_screen_selfie`...).
    pub kind: String,
    /// The LOSO group: `source_repo`.
    pub source: String,
    /// `shared`, `still` or `simulated` (module documentation).
    pub set: String,
    pub species: Species,
    /// A tight face crop (`face_crop_*`), reported apart.
    pub crop: bool,
}

impl Presentation {
    /// The column this presentation is counted in: its species, with the crops, the
    /// still-video variants and the simulated set apart.
    pub fn column(&self) -> String {
        column(self.species, self.crop, &self.kind, &self.set)
    }
}

fn column(species: Species, crop: bool, kind: &str, set: &str) -> String {
    let mut c = species.label().to_string();
    if crop {
        c.push_str(" (crops)");
    }
    if kind.ends_with("_noise") {
        c.push_str(" + noise");
    } else if kind.ends_with("_pan") {
        c.push_str(", panned");
    }
    if set == "simulated" {
        c.push_str(" (simulated set)");
    }
    c
}

/// The fields of a CSV line (RFC 4180 quotes: `"a, b"` is one field, `""` a quote).
pub fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut current)),
            (c, _) => current.push(c),
        }
    }
    fields.push(current);
    fields
}

/// Rows of a CSV file with a header, by column name.
fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else { return Vec::new() };
    let names = csv_fields(header.trim_end_matches('\r'));
    lines.map(|l| names.iter().cloned().zip(csv_fields(l.trim_end_matches('\r'))).collect::<BTreeMap<_, _>>()).collect()
}

fn field<'a>(row: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    row.get(name).map(String::as_str).unwrap_or("")
}

/// The presentations of `shared` and, if generated, of `attacks` (module documentation).
/// A file listed twice (the same bytes under two names) is kept once.
pub fn presentations(shared: &Path, attacks: &Path) -> Vec<Presentation> {
    let mut out = Vec::new();
    // `attack_type` names the species; `kind` is what the report calls the row.
    let mut push = |path: PathBuf, bona_fide: bool, (attack_type, kind): (&str, &str), source: &str, set: &str| {
        out.push(Presentation {
            path,
            bona_fide,
            kind: kind.to_string(),
            source: if source.is_empty() { "unknown".into() } else { source.to_string() },
            set: set.to_string(),
            species: Species::of(bona_fide, attack_type),
            crop: attack_type.starts_with("face_crop"),
        })
    };
    for row in csv_rows(&shared.join("videos/index.csv")) {
        let video = field(&row, "video");
        if !video.is_empty() {
            push(shared.join(video), true, ("live", "live_selfie_video"), field(&row, "source_repo"), "shared");
        }
    }
    if let Ok(attempts) = super::read_folder(&shared.join("faces/selfies"), &[]) {
        let mut files: Vec<PathBuf> = attempts.into_iter().flat_map(|a| [a.enroll, a.authenticate]).collect();
        files.sort();
        files.dedup();
        for path in files {
            push(path, true, ("live", "live_selfie_photo"), SELFIES_SOURCE, "shared");
        }
    }
    for row in csv_rows(&shared.join("liveness/labels.csv")) {
        let file = field(&row, "file");
        if file.is_empty() {
            continue;
        }
        let (bona_fide, attack_type) = (field(&row, "label") == "live", field(&row, "attack_type"));
        push(shared.join(file), bona_fide, (attack_type, attack_type), field(&row, "source_repo"), "shared");
    }
    for row in csv_rows(&attacks.join("still/labels.csv")) {
        let file = field(&row, "file");
        if !file.is_empty() {
            let attack_type = field(&row, "attack_type");
            push(attacks.join(file), false, (attack_type, attack_type), field(&row, "source_repo"), "still");
        }
    }
    for row in csv_rows(&attacks.join("labels.csv")) {
        let file = field(&row, "file");
        if file.is_empty() {
            continue;
        }
        let origin = if field(&row, "source").contains("deepface") { "deepface" } else { "selfie" };
        let attack_type = field(&row, "attack_type");
        let bona_fide = field(&row, "label") == "bona_fide";
        let kind = format!("simulated_{attack_type}_{origin}");
        push(attacks.join(file), bona_fide, (attack_type, &kind), &format!("simulated {origin}"), "simulated");
    }
    // The same bytes listed twice (a clip in both videos/ and liveness/): once.
    let mut seen = HashSet::new();
    out.retain(|p| match std::fs::read(&p.path) {
        Ok(bytes) => {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            seen.insert((p.set.clone(), bytes.len(), h.finish()))
        }
        Err(_) => true,
    });
    out
}

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
    fn column(&self) -> String {
        column(self.species, self.crop, &self.kind, &self.set)
    }

    /// Decided by the PAD subsystem: a face was found and measured (the policy checks
    /// liveness before anything else, so its liveness verdict stands whatever the
    /// standard decisions say next).
    fn decided_on_liveness(&self) -> bool {
        self.live.is_some() && self.base_reason.is_some()
    }

    /// Refused for liveness under `rules`; none when not decided on liveness.
    fn refused(&self, rules: &Rules) -> Option<bool> {
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
    fn of(params: &[Param]) -> Self {
        let get = |name: &str| params.iter().find(|p| p.name == name).map(|p| p.value);
        Rules {
            min_liveness: get("min-liveness").unwrap_or(0.0) as f32,
            still_video: get("refuse-still-video").is_some_and(|v| v >= 0.5),
            video_cue: get("require-video-cue").is_some_and(|v| v >= 0.5),
        }
    }

    fn describe(&self) -> String {
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
                    Ok(bytes) => engine.analyze_media(bytes, true).await.map_err(super::error_reason),
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

const LIVENESS_FAILED: &str = "LIVENESS_CHECK_FAILED";
const APPROVED: &str = "AUTHENTIFICATION_SUCCESS";

/// Errors out of presentations: (refused bona fide or accepted attacks, decided on liveness).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    pub errors: usize,
    pub n: usize,
}

impl Count {
    fn add(&mut self, error: bool) {
        self.n += 1;
        self.errors += usize::from(error);
    }

    fn merge(&mut self, other: Count) {
        self.n += other.n;
        self.errors += other.errors;
    }

    pub fn rate(&self) -> f64 {
        if self.n == 0 { 0.0 } else { self.errors as f64 / self.n as f64 }
    }

    fn text(&self) -> String {
        if self.n == 0 { "-".into() } else { format!("{:.1} % ({}/{})", 100.0 * self.rate(), self.errors, self.n) }
    }
}

/// Counts of one kind of presentation from one source, at the policy's parameters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindRow {
    pub set: String,
    pub source: String,
    pub kind: String,
    pub column: String,
    pub bona_fide: bool,
    pub presentations: usize,
    /// Decided on liveness (a face measured), and of those refused for liveness.
    pub decided: usize,
    pub refused_for_liveness: usize,
    /// Refused by the decision with the liveness rules off, by reason (no face: not
    /// decided on liveness; a quality gate, a mismatch of the face track: decided on
    /// liveness all the same, and refused anyway).
    pub other: BTreeMap<String, usize>,
    /// Lowest, median and highest live probability of those with a face.
    pub live_range: Option<(f32, f32, f32)>,
}

/// APCER or BPCER per column, under one rule set.
pub type Columns = BTreeMap<String, Count>;

/// One fold of a leave-one-source-out table.
#[derive(Debug, Clone, Serialize)]
pub struct Fold {
    pub left_out: String,
    pub rules: Rules,
    /// Training bona fide presentations the threshold was chosen on, and the training BPCER there.
    pub training: Count,
    pub held_out: Columns,
}

/// A leave-one-source-out table: one rule family, one fold per source.
#[derive(Debug, Clone, Serialize)]
pub struct LosoTable {
    pub name: String,
    pub folds: Vec<Fold>,
    /// The held-out counts summed over the folds.
    pub pooled: Columns,
    /// Columns (attack types) whose APCER is over 5 %, or bona fide columns over 3 %,
    /// on some fold: the target is not held there. Face crops apart (the server never
    /// receives one).
    pub target_missed: Vec<String>,
    pub target_missed_crops: Vec<String>,
}

/// Video cues, per column, for the videos decided on liveness.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CueRow {
    pub column: String,
    pub videos: usize,
    pub with_blink: usize,
    pub yaw_range_12: usize,
    pub non_rigid_002: usize,
    /// Refused by the still-video rule alone / the movement requirement alone.
    pub still_refused: usize,
    pub cue_refused: usize,
    /// Lowest and highest `landmark-motion`, and `non-rigid-motion` (medians over pairs).
    pub landmark_motion: Option<(f32, f32)>,
    pub non_rigid_motion: Option<(f32, f32)>,
}

/// Liveness figures.
#[derive(Debug, Clone, Serialize)]
pub struct LivenessReport {
    pub policy: String,
    pub rules: Rules,
    pub rows: Vec<KindRow>,
    /// At the policy's parameters, and at the reference: APCER / BPCER per column.
    pub at_policy: Columns,
    pub at_reference: Columns,
    pub loso: Vec<LosoTable>,
    pub cues: Vec<CueRow>,
    /// Presentations decided on liveness whose actual decision the rules reproduce.
    pub consistency: Count,
    /// Over the median live probability, the `shared` set without crops: ROC AUC.
    pub roc_auc: f64,
    pub roc_auc_crops: f64,
}

fn columns(results: &[&PresentationResult], rules: &Rules) -> Columns {
    let mut out = Columns::new();
    for r in results {
        if let Some(refused) = r.refused(rules) {
            // BPCER: bona fide refused; APCER: attacks accepted.
            out.entry(r.column()).or_default().add(refused == r.bona_fide);
        }
    }
    out
}

/// The largest `min-liveness` whose BPCER on `bona_fide` scores is at most `max_bpcer`.
pub fn largest_threshold(bona_fide: &[f32], max_bpcer: f64) -> f32 {
    let mut s = bona_fide.to_vec();
    s.sort_by(f32::total_cmp);
    let allowed = (max_bpcer * s.len() as f64 + 1e-9).floor() as usize;
    // Refusing the `allowed` lowest: the threshold is the next score (accepted at >=).
    s.get(allowed).copied().unwrap_or(1.0)
}

impl LivenessReport {
    pub fn new(policy: &LoadedPolicy, results: &[PresentationResult]) -> Self {
        let rules = Rules::of(policy.params());
        let reference = Rules { min_liveness: REFERENCE_MIN_LIVENESS, still_video: false, video_cue: false };
        let all: Vec<&PresentationResult> = results.iter().collect();

        let mut rows: BTreeMap<(String, bool, String, String), KindRow> = BTreeMap::new();
        for r in results {
            let row =
                rows.entry((r.set.clone(), r.bona_fide, r.kind.clone(), r.source.clone())).or_insert_with(|| KindRow {
                    set: r.set.clone(),
                    source: r.source.clone(),
                    kind: r.kind.clone(),
                    column: r.column(),
                    bona_fide: r.bona_fide,
                    ..KindRow::default()
                });
            row.presentations += 1;
            if let Some(refused) = r.refused(&rules) {
                row.decided += 1;
                row.refused_for_liveness += usize::from(refused);
            }
            let reason = r.base_reason.as_deref().unwrap_or(&r.reason);
            if reason != APPROVED {
                *row.other.entry(reason.split(':').next().unwrap_or(reason).to_string()).or_default() += 1;
            }
        }
        for row in rows.values_mut() {
            let mut live: Vec<f32> = results
                .iter()
                .filter(|r| {
                    (&r.set, r.bona_fide, &r.kind, &r.source) == (&row.set, row.bona_fide, &row.kind, &row.source)
                })
                .filter_map(|r| r.live)
                .collect();
            live.sort_by(f32::total_cmp);
            if let (Some(&lo), Some(&hi)) = (live.first(), live.last()) {
                row.live_range = Some((lo, live[live.len() / 2], hi));
            }
        }

        let consistency = {
            let mut c = Count::default();
            for r in results {
                if let Some(refused) = r.refused(&rules) {
                    let actual = r.reason == LIVENESS_FAILED;
                    c.add(actual != refused);
                }
            }
            c
        };

        let loso = vec![
            loso_table("reference: median live probability >= 0.3, no video rule", results, |_| reference),
            loso_table(
                "min-liveness chosen on the other sources (largest with BPCER <= 3 %), no video rule",
                results,
                |t| Rules { min_liveness: t, still_video: false, video_cue: false },
            ),
            loso_table("reference 0.3 + still-video rule", results, |_| Rules { still_video: true, ..reference }),
            loso_table("chosen min-liveness + still-video rule", results, |t| Rules {
                min_liveness: t,
                still_video: true,
                video_cue: false,
            }),
            loso_table("reference 0.3 + movement required (blink, head turn or non-rigid motion)", results, |_| {
                Rules { video_cue: true, ..reference }
            }),
        ];

        let mut cues: BTreeMap<String, CueRow> = BTreeMap::new();
        for r in results.iter().filter(|r| r.decided_on_liveness()) {
            let Some(m) = r.motion.as_ref().filter(|m| m.pairs > 0) else { continue };
            let row = cues.entry(r.column()).or_insert_with(|| CueRow { column: r.column(), ..CueRow::default() });
            row.videos += 1;
            row.with_blink += usize::from(m.blinks >= 1);
            row.yaw_range_12 += usize::from(m.yaw_range >= 12.0);
            row.non_rigid_002 += usize::from(m.non_rigid_motion >= 0.02);
            row.still_refused += usize::from(r.still_refused == Some(true));
            row.cue_refused += usize::from(r.cue_refused == Some(true));
            let widen = |range: &mut Option<(f32, f32)>, v: f32| {
                *range = Some(range.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
            };
            widen(&mut row.landmark_motion, m.landmark_motion);
            widen(&mut row.non_rigid_motion, m.non_rigid_motion);
        }

        let score = |crop: bool, bona_fide: bool| -> Vec<f64> {
            results
                .iter()
                .filter(|r| r.set == "shared" && r.crop == crop && r.bona_fide == bona_fide && r.decided_on_liveness())
                .filter_map(|r| r.live.map(f64::from))
                .collect()
        };
        Self {
            policy: format!("{}@{}", policy.info().name, policy.info().version),
            rules,
            rows: rows.into_values().collect(),
            at_policy: columns(&all, &rules),
            at_reference: columns(&all, &reference),
            loso,
            cues: cues.into_values().collect(),
            consistency,
            roc_auc: super::metrics::roc_auc(&score(false, true), &score(false, false)),
            roc_auc_crops: super::metrics::roc_auc(&score(true, true), &score(true, false)),
        }
    }

    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "policy {}: {}", self.policy, self.rules.describe());
        let _ = writeln!(
            s,
            "\nPresentations by source (decided: a face measured, so the liveness rules judged it; \
             refused anyway: by the decision with the liveness rules off)\n"
        );
        let _ = writeln!(
            s,
            "| set | source | presentations | n | decided | refused for liveness | live min / median / max | refused anyway |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let range = r.live_range.map_or("-".into(), |(a, b, c)| format!("{a:.3} / {b:.3} / {c:.3}"));
            let _ = writeln!(
                s,
                "| {} | {} | {} {} | {} | {} | {} | {range} | {:?} |",
                r.set,
                r.source,
                if r.bona_fide { "bona fide" } else { "attack" },
                r.kind,
                r.presentations,
                r.decided,
                r.refused_for_liveness,
                r.other
            );
        }
        let _ = writeln!(s, "\nPer attack type (ISO/IEC 30107-3): APCER of attacks, BPCER of bona fide, (errors/n)\n");
        let _ = writeln!(s, "| type | policy ({}) | reference ({}) |", self.rules.describe(), REFERENCE_MIN_LIVENESS);
        let _ = writeln!(s, "|---|---|---|");
        let names: BTreeSet<&String> = self.at_policy.keys().chain(self.at_reference.keys()).collect();
        for name in names {
            let get = |c: &Columns| c.get(name).copied().unwrap_or_default().text();
            let what = if name.starts_with("bona fide") { "BPCER" } else { "APCER" };
            let _ = writeln!(s, "| {name}: {what} | {} | {} |", get(&self.at_policy), get(&self.at_reference));
        }
        for name in ["disguise", "deepfake"] {
            let _ = writeln!(s, "| {name}: APCER | not measured (no presentation here) | - |");
        }
        let _ = writeln!(
            s,
            "consistency: the rules reproduce the policy's own decision on {}/{} presentations decided on liveness",
            self.consistency.n - self.consistency.errors,
            self.consistency.n
        );
        let _ = writeln!(
            s,
            "median live probability, ROC AUC: {:.4} (shared set, no crops); {:.4} (face crops)",
            self.roc_auc, self.roc_auc_crops
        );

        for table in &self.loso {
            let _ = writeln!(s, "\nLeave one source out: {}\n", table.name);
            let cols: BTreeSet<&String> = table.pooled.keys().collect();
            let _ = write!(s, "| left out | min-liveness | training BPCER |");
            for c in &cols {
                let _ = write!(s, " {c} |");
            }
            let _ = writeln!(s);
            let _ = writeln!(s, "|---|---|---|{}", "---|".repeat(cols.len()));
            for fold in &table.folds {
                let _ = write!(s, "| {} | {:.3} | {} |", fold.left_out, fold.rules.min_liveness, fold.training.text());
                for c in &cols {
                    let _ = write!(s, " {} |", fold.held_out.get(*c).copied().unwrap_or_default().text());
                }
                let _ = writeln!(s);
            }
            let _ = write!(s, "| **pooled** | | |");
            for c in &cols {
                let _ = write!(s, " {} |", table.pooled.get(*c).copied().unwrap_or_default().text());
            }
            let _ = writeln!(s);
            let missed = |c: &[String]| if c.is_empty() { "none".to_string() } else { c.join(", ") };
            let _ = writeln!(
                s,
                "target (BPCER <= 3 %, APCER <= 5 % on every fold) missed for: {}; face crops: {}",
                missed(&table.target_missed),
                missed(&table.target_missed_crops)
            );
        }

        let _ = writeln!(s, "\nVideo cues (videos decided on liveness)\n");
        let _ = writeln!(
            s,
            "| videos | n | blink | yaw range >= 12 | non-rigid >= 0.02 | refused by still rule | refused by movement rule | landmark motion | non-rigid motion |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        let range = |r: Option<(f32, f32)>| r.map_or("-".into(), |(a, b)| format!("{a:.4}-{b:.4}"));
        for c in &self.cues {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.column,
                c.videos,
                c.with_blink,
                c.yaw_range_12,
                c.non_rigid_002,
                c.still_refused,
                c.cue_refused,
                range(c.landmark_motion),
                range(c.non_rigid_motion)
            );
        }
        s
    }
}

/// One LOSO table: for each source of the `shared` and `still` sets (and the
/// simulated set as one more fold, trained on every real source), the threshold
/// chosen on the other real sources' bona fide (no crops), `rules_for(threshold)`
/// applied to the left-out source.
fn loso_table(name: &str, results: &[PresentationResult], rules_for: impl Fn(f32) -> Rules) -> LosoTable {
    let real = |r: &&PresentationResult| r.set != "simulated";
    let mut sources: Vec<&String> = results.iter().filter(real).map(|r| &r.source).collect();
    sources.sort();
    sources.dedup();
    let simulated = results.iter().any(|r| r.set == "simulated");
    let mut folds = Vec::new();
    let mut pooled = Columns::new();
    let mut missed = BTreeSet::new();
    let left_outs = sources.iter().map(|s| Some(s.as_str())).chain(simulated.then_some(None));
    for left_out in left_outs {
        let training: Vec<&PresentationResult> = results
            .iter()
            .filter(|r| {
                r.set == "shared"
                    && r.bona_fide
                    && !r.crop
                    && Some(r.source.as_str()) != left_out
                    && r.decided_on_liveness()
            })
            .collect();
        let scores: Vec<f32> = training.iter().filter_map(|r| r.live).collect();
        let rules = rules_for(largest_threshold(&scores, LOSO_MAX_BPCER));
        let mut training_count = Count::default();
        for r in &training {
            training_count.add(r.refused(&rules) == Some(true));
        }
        let held: Vec<&PresentationResult> = results
            .iter()
            .filter(|r| match left_out {
                Some(source) => real(r) && r.source == source,
                None => r.set == "simulated",
            })
            .collect();
        let held_out = columns(&held, &rules);
        for (column, count) in &held_out {
            pooled.entry(column.clone()).or_default().merge(*count);
            let limit = if column.starts_with("bona fide") { 0.03 } else { 0.05 };
            if count.rate() > limit {
                missed.insert(column.clone());
            }
        }
        folds.push(Fold {
            left_out: left_out.unwrap_or("simulated recaptures (all real sources train)").to_string(),
            rules,
            training: training_count,
            held_out,
        });
    }
    let (crops, missed): (Vec<String>, Vec<String>) = missed.into_iter().partition(|c| c.contains("(crops)"));
    LosoTable { name: name.to_string(), folds, pooled, target_missed: missed, target_missed_crops: crops }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_types_map_to_iso_species() {
        assert_eq!(Species::of(false, "print_photo"), Species::Print);
        assert_eq!(Species::of(false, "screen_replay"), Species::ScreenReplay);
        assert_eq!(Species::of(false, "replay_video(phone_screen)"), Species::VideoReplay);
        assert_eq!(Species::of(false, "face_crop_replay"), Species::VideoReplay);
        assert_eq!(Species::of(false, "3d_mask"), Species::Disguise);
        assert_eq!(Species::of(false, "print"), Species::Print);
        assert_eq!(Species::of(false, "screen"), Species::ScreenReplay);
        assert_eq!(Species::of(false, "still_video_noise"), Species::StillVideo);
        assert_eq!(Species::of(true, "face_crop_real"), Species::BonaFide);
    }

    #[test]
    fn csv_fields_keep_quoted_commas() {
        assert_eq!(
            csv_fields(r#"a.png,live,face_crop_real,"Alexey (inferred, same face)",Repo"#),
            ["a.png", "live", "face_crop_real", "Alexey (inferred, same face)", "Repo"]
        );
        assert_eq!(csv_fields(r#"x,"say ""hi""",,"#), ["x", r#"say "hi""#, "", ""]);
    }

    #[test]
    fn the_largest_threshold_refuses_at_most_the_allowed_share() {
        let scores: Vec<f32> = (1..=100).map(|i| i as f32 / 100.0).collect();
        // 3 % of 100: the three lowest may be refused, the fourth (0.04) is accepted.
        assert_eq!(largest_threshold(&scores, 0.03), 0.04);
        assert_eq!(largest_threshold(&scores[..10], 0.03), 0.01);
        assert_eq!(largest_threshold(&[], 0.03), 1.0);
    }

    fn result(source: &str, bona_fide: bool, kind: &str, live: f32, still: bool) -> PresentationResult {
        PresentationResult {
            file: String::new(),
            bona_fide,
            kind: kind.into(),
            source: source.into(),
            set: "shared".into(),
            species: Species::of(bona_fide, kind),
            crop: false,
            reason: String::new(),
            live: Some(live),
            frames: 1,
            frames_with_face: 1,
            motion: None,
            base_reason: Some(APPROVED.into()),
            still_refused: Some(still),
            cue_refused: Some(false),
        }
    }

    #[test]
    fn loso_chooses_on_the_other_sources_and_counts_the_left_out_one() {
        let mut results = Vec::new();
        for i in 0..40 {
            results.push(result("a", true, "real", 0.5 + i as f32 / 100.0, false));
            results.push(result("b", true, "real", 0.2 + i as f32 / 100.0, false));
        }
        results.push(result("a", false, "print_photo", 0.45, false));
        results.push(result("b", false, "print_photo", 0.1, false));
        results.push(result("b", false, "still_video", 0.9, true));
        let mut other = result("b", false, "print_photo", 0.9, false);
        other.base_reason = Some("NO_FACE_DETECTED".into());
        other.live = None;
        results.push(other);
        let table = loso_table("t", &results, |t| Rules { min_liveness: t, still_video: true, video_cue: false });
        // Left out a: trained on b (0.20..0.59, one of 40 may go): 0.21; a's print at 0.45 passes.
        let a = &table.folds[0];
        assert_eq!(a.left_out, "a");
        assert!((a.rules.min_liveness - 0.21).abs() < 1e-6, "{:?}", a.rules);
        assert_eq!(a.held_out["print"], Count { errors: 1, n: 1 });
        assert_eq!(a.held_out["bona fide"], Count { errors: 0, n: 40 });
        // Left out b: trained on a (0.50..0.89): 0.51 refuses 31 of b's bona fide.
        let b = &table.folds[1];
        assert_eq!(b.held_out["bona fide"], Count { errors: 31, n: 40 });
        assert_eq!(b.held_out["print"], Count { errors: 0, n: 1 });
        assert_eq!(b.held_out["still photo as video"], Count { errors: 0, n: 1 });
        assert_eq!(table.pooled["print"], Count { errors: 1, n: 2 });
        assert!(table.target_missed.contains(&"print".to_string()));
    }
}
