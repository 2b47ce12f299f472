//! The presentations: where they are listed (`../shared`, the generated sets), their
//! ISO attack type and the column of the report each one is counted in.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

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

pub(super) fn column(species: Species, crop: bool, kind: &str, set: &str) -> String {
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
    if let Ok(attempts) = crate::read_folder(&shared.join("faces/selfies"), &[]) {
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
}
