//! The labelled lists an evaluation reads: photo pairs, folders of one person each,
//! the selfie videos' index; and who a listed file is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// One name for identities known to be one person (`ID1=ID2` pairs).
pub(crate) fn canonical(same_person: &[(String, String)], id: &str) -> String {
    same_person.iter().find(|(_, b)| b == id).map_or_else(|| id.to_string(), |(a, _)| a.clone())
}

/// The identity of a labelled file: its folder's name (LFW, the selfie sets).
pub(crate) fn identity_of(file: &Path) -> String {
    file.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}
