//! Temporary copies of uploads left over by a killed server, removed at start-up.

use std::path::Path;
use std::time::Duration;

/// The prefix of the temporary copies of uploads (`sweep_stale_uploads`).
pub(super) const UPLOAD_PREFIX: &str = "faceauth-upload-";

/// An upload's temporary copy older than this is left over by a server that was
/// killed (`kill -9`, out of memory) mid-decode. A live one exists for the probe and
/// the decode, each bounded by `--video-decoder-timeout` (600 s at most): an hour is
/// past any server's, so servers sharing one temporary directory, whatever their
/// settings, never remove each other's live uploads.
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(3600);

/// Removes the uploads' temporary copies in `dir` older than `STALE_UPLOAD_AGE`
/// (regular files named `faceauth-upload-*` only, links not followed); how many.
/// By age rather than by owner: a per-process directory would need its owner's
/// liveness, which a pid does not tell across containers sharing `/tmp`.
pub fn sweep_stale_uploads(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let stale = entry.file_name().to_str().is_some_and(|name| name.starts_with(UPLOAD_PREFIX))
            && entry.metadata().is_ok_and(|m| {
                m.file_type().is_file()
                    && m.modified().is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_UPLOAD_AGE))
            });
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!("removed {removed} stale temporary upload(s) from {}", dir.display());
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 22, item 13: uploads left by a killed server are swept, live ones kept.
    #[test]
    fn stale_uploads_are_swept_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = std::time::SystemTime::now() - STALE_UPLOAD_AGE - Duration::from_secs(60);
        let file = |name: &str, modified: Option<std::time::SystemTime>| {
            let path = dir.path().join(name);
            let f = std::fs::File::create(&path).expect("create");
            if let Some(t) = modified {
                f.set_modified(t).expect("mtime");
            }
            path
        };
        let stale = file("faceauth-upload-stale", Some(old));
        let live = file("faceauth-upload-live", None);
        let other = file("someone-else", Some(old));
        std::fs::create_dir(dir.path().join("faceauth-upload-dir")).expect("dir");
        assert_eq!(sweep_stale_uploads(dir.path()), 1);
        assert!(!stale.exists() && live.exists() && other.exists() && dir.path().join("faceauth-upload-dir").exists());
        assert_eq!(sweep_stale_uploads(&dir.path().join("missing")), 0);
    }
}
