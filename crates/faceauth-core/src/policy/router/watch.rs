//! The policy directory watched: polled, and reloaded once a change has settled.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::super::catalog::{CATALOG_FILE, CATALOG_MAX_BYTES, read_regular_file};
use super::{PolicyRouter, PolicySet, RouterError, Source};

/// What a reload looked at, to notice changes without reading every component:
/// per file its name, size, modification and change times and inode (a rename
/// over it changes them even when size and mtime are kept), and the catalog's
/// content hash (a rewrite within the mtime's granularity changes it).
pub(super) type Fingerprint = Vec<(String, FileState)>;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct FileState {
    len: u64,
    modified: Option<SystemTime>,
    changed: (i64, i64),
    inode: u64,
    /// sha256 of the catalog's bytes, or why it could not be read.
    content: Option<Result<String, String>>,
}

/// Consecutive polls after the first sight of a change that must see the directory
/// unchanged before it is reloaded. A `policies.toml` written in two steps (an
/// editor that truncates, a copy in chunks, `cat a > policies.toml` then
/// `cat b >>`) was installed half-written when a poll fell in between: the first
/// half is often a valid catalog, with fewer variants (issue 22: users decided by
/// the wrong variant). Two polls tolerate a pause of up to two watch intervals
/// (4 s by default) inside a write; writers should still write a temporary file
/// and rename it over `policies.toml` (atomic), which this never sees half-done.
const STABLE_POLLS: u32 = 2;

impl PolicyRouter {
    /// The watcher's tick: reloads when the directory changed since the last reload
    /// and has then stayed the same for `STABLE_POLLS` more polls (a file still being
    /// written is not read).
    pub fn reload_if_changed(&self) -> Option<Result<Arc<PolicySet>, RouterError>> {
        let Source::Directory(dir) = &self.source else { return None };
        let seen = directory_fingerprint(dir);
        let mut settling = self.settling.lock().unwrap_or_else(|p| p.into_inner());
        let loaded = self.changing.lock().unwrap_or_else(|p| p.into_inner()).as_ref() == Some(&seen);
        if loaded {
            *settling = None;
            return None;
        }
        let polls = match settling.take() {
            Some((before, polls)) if before == seen => polls + 1,
            _ => 0,
        };
        if polls < STABLE_POLLS {
            *settling = Some((seen, polls));
            return None;
        }
        drop(settling);
        Some(self.reload())
    }

    /// Polls the directory every `interval` and reloads on change, until the
    /// returned task is aborted. Polling rather than inotify: it works on every
    /// filesystem (bind mounts, NFS) and a reload is cheap when nothing changed.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> Option<tokio::task::JoinHandle<()>> {
        self.directory()?;
        let router = self.clone();
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let r = router.clone();
                // Compiling is blocking work.
                let _ = tokio::task::spawn_blocking(move || r.reload_if_changed()).await;
            }
        }))
    }
}

/// The state of the catalog and the components (`FileState`). Symbolic links are
/// followed (a Kubernetes ConfigMap swaps a link, not the files); nothing but the
/// catalog is opened, and that only if it is a regular file.
pub(super) fn directory_fingerprint(dir: &Path) -> Fingerprint {
    let mut seen: Fingerprint = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name != CATALOG_FILE && !name.ends_with(".wasm") {
                        return None;
                    }
                    let meta = std::fs::metadata(e.path()).or_else(|_| e.metadata()).ok()?;
                    let content = (name == CATALOG_FILE).then(|| {
                        read_regular_file(&e.path(), CATALOG_MAX_BYTES)
                            .map(|bytes| format!("{:x}", Sha256::digest(&bytes)))
                            .map_err(|e| e.to_string())
                    });
                    Some((name, file_state(&meta, content)))
                })
                .collect()
        })
        .unwrap_or_default();
    seen.sort();
    seen
}

fn file_state(meta: &std::fs::Metadata, content: Option<Result<String, String>>) -> FileState {
    #[cfg(unix)]
    let (changed, inode) = {
        use std::os::unix::fs::MetadataExt;
        ((meta.ctime(), meta.ctime_nsec()), meta.ino())
    };
    #[cfg(not(unix))]
    let (changed, inode) = ((0, 0), 0);
    FileState { len: meta.len(), modified: meta.modified().ok(), changed, inode, content }
}
