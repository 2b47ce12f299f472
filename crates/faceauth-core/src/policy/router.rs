//! Which policy variant decides a request. The active `PolicySet` sits behind an
//! `Arc` that is swapped whole: a request takes the set once and finishes on it,
//! whatever is swapped in meanwhile. A new set is built and every variant
//! validated (compiled, parameters checked, self-checked) before the swap; a set
//! that fails is refused and the old one keeps serving.
//!
//! A/B: a user always meets the same answering variant while the experiment (the
//! catalog's `experiment` salt and the weights) is unchanged: the assignment is a
//! hash of salt and username, not a random draw. Shadows run after the answer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::catalog::{
    CATALOG_FILE, CATALOG_MAX_BYTES, COMPONENT_MAX_BYTES, Catalog, CatalogError, VariantSpec, read_regular_file,
    write_atomically,
};
use super::{CompiledPolicy, LoadedPolicy, Param, PolicyError, PolicyRuntime};

/// An admin change of a variant; `None` keeps the current value.
#[derive(Debug, Default)]
pub struct VariantChange<'a> {
    /// A new component's bytes.
    pub component: Option<&'a [u8]>,
    pub weight: Option<u32>,
    pub shadow: Option<bool>,
    /// Replaces the variant's parameter overrides.
    pub params: Option<std::collections::BTreeMap<String, f64>>,
}

/// One running variant.
#[derive(Debug)]
pub struct Variant {
    pub name: String,
    pub policy: Arc<LoadedPolicy>,
    pub weight: u32,
    pub shadow: bool,
}

impl Variant {
    /// `name@version` of the component.
    pub fn policy_label(&self) -> String {
        format!("{}@{}", self.policy.info().name, self.policy.info().version)
    }
}

/// The variants in force, as one immutable value.
#[derive(Debug)]
pub struct PolicySet {
    pub experiment: String,
    pub variants: Vec<Arc<Variant>>,
    /// Unix ms of the build.
    pub loaded_at_ms: i64,
}

/// The variants one request meets.
#[derive(Debug, Clone)]
pub struct Route {
    pub answer: Arc<Variant>,
    pub shadows: Vec<Arc<Variant>>,
}

impl Route {
    /// Liveness is measured when any variant of the route will read it.
    pub fn requires_liveness(&self) -> bool {
        std::iter::once(&self.answer).chain(&self.shadows).any(|v| v.policy.info().requires_liveness)
    }
}

impl PolicySet {
    /// The variant that answers `username` and the shadows; `None` only for a set
    /// without an answering variant, which is never installed.
    pub fn route(&self, username: &str) -> Option<Route> {
        let serving: Vec<&Arc<Variant>> = self.variants.iter().filter(|v| !v.shadow && v.weight > 0).collect();
        let total: u64 = serving.iter().map(|v| u64::from(v.weight)).sum();
        let mut point = bucket(&self.experiment, username) % total.max(1);
        let mut answer = None;
        for v in serving {
            if point < u64::from(v.weight) {
                answer = Some(v.clone());
                break;
            }
            point -= u64::from(v.weight);
        }
        let shadows = self.variants.iter().filter(|v| v.shadow).cloned().collect();
        Some(Route { answer: answer?, shadows })
    }

    pub fn variant(&self, name: &str) -> Option<&Arc<Variant>> {
        self.variants.iter().find(|v| v.name == name)
    }
}

/// Stable position of a user in the experiment: the first 8 bytes of
/// sha256(experiment, 0, username).
fn bucket(experiment: &str, username: &str) -> u64 {
    let digest = Sha256::new().chain_update(experiment).chain_update([0]).chain_update(username).finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("variant {variant}: {source}")]
    Variant { variant: String, source: PolicyError },
    #[error("policies are fixed at start-up (--policy); start with --policy-dir to manage them at run time")]
    NotManaged,
    #[error("no variant named {0}")]
    UnknownVariant(String),
    #[error("variant {0} does not exist: send its component")]
    MissingComponent(String),
    #[error("cannot write the policy directory: {0}")]
    Write(String),
}

/// Where the variants come from.
enum Source {
    /// One component given on the command line, fixed.
    Single,
    /// A policy directory with its catalog, watched and managed through the admin API.
    Directory(PathBuf),
}

/// Where a new policy set comes from (`PolicyRouter::apply`).
enum Change<'a> {
    /// The directory as it is; nothing is written, and a catalog that cannot be read
    /// is refused like a set that fails to build.
    Reload,
    /// An edit of the catalog on disk (admin API). A refused edit (an error of the
    /// closure, or an invalid catalog) changes nothing and is not recorded as the
    /// last error.
    Edit(Edit<'a>),
}

/// Edits the catalog; returns the component it stages, written with the catalog
/// once the new set is installed.
type Edit<'a> = Box<dyn FnOnce(&mut Catalog) -> Result<Option<Staged<'a>>, RouterError> + 'a>;

/// A component not yet written to the directory: its file name and bytes.
type Staged<'a> = (String, &'a [u8]);

/// What a reload looked at, to notice changes without reading every component:
/// per file its name, size, modification and change times and inode (a rename
/// over it changes them even when size and mtime are kept), and the catalog's
/// content hash (a rewrite within the mtime's granularity changes it).
type Fingerprint = Vec<(String, FileState)>;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct FileState {
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

/// Holds the active policy set and replaces it safely.
pub struct PolicyRouter {
    runtime: PolicyRuntime,
    source: Source,
    current: RwLock<Arc<PolicySet>>,
    /// Compiled components by content hash, so a reload recompiles only what changed.
    compiled: Mutex<HashMap<String, CompiledPolicy>>,
    /// Serialises reloads and admin changes; holds what the last one looked at.
    changing: Mutex<Option<Fingerprint>>,
    /// A change the watcher saw and waits to see unchanged (`STABLE_POLLS`): the
    /// directory then, and the polls since that saw it the same.
    settling: Mutex<Option<(Fingerprint, u32)>>,
    last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for PolicyRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyRouter").field("current", &self.current()).finish()
    }
}

impl PolicyRouter {
    /// One fixed variant, named after the policy, answering everyone.
    pub fn single(runtime: PolicyRuntime, component: &Path) -> Result<Self, RouterError> {
        let compiled = runtime
            .compile_file(component)
            .map_err(|source| RouterError::Variant { variant: component.display().to_string(), source })?;
        let name = compiled.info().name.clone();
        let policy = compiled.variant(&[]).map_err(|source| RouterError::Variant { variant: name.clone(), source })?;
        let set = PolicySet {
            experiment: String::new(),
            variants: vec![Arc::new(Variant { name, policy: Arc::new(policy), weight: 1, shadow: false })],
            loaded_at_ms: crate::clock::now_ms(),
        };
        Ok(Self::new(runtime, Source::Single, set))
    }

    /// The variants of `dir/policies.toml`.
    pub fn from_dir(runtime: PolicyRuntime, dir: &Path) -> Result<Self, RouterError> {
        let router = Self::new(
            runtime,
            Source::Directory(dir.to_path_buf()),
            PolicySet { experiment: String::new(), variants: Vec::new(), loaded_at_ms: 0 },
        );
        router.reload()?;
        Ok(router)
    }

    fn new(runtime: PolicyRuntime, source: Source, set: PolicySet) -> Self {
        Self {
            runtime,
            source,
            current: RwLock::new(Arc::new(set)),
            compiled: Mutex::new(HashMap::new()),
            changing: Mutex::new(None),
            settling: Mutex::new(None),
            last_error: Mutex::new(None),
        }
    }

    /// The set in force; callers keep this `Arc` for the whole request.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The policy directory, when policies are managed at run time.
    pub fn directory(&self) -> Option<&Path> {
        match &self.source {
            Source::Directory(dir) => Some(dir),
            Source::Single => None,
        }
    }

    /// Why the last reload or change was refused, if it was.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Rebuilds the set from the directory and swaps it in; on any error the old set
    /// stays. Blocking (compiles components).
    pub fn reload(&self) -> Result<Arc<PolicySet>, RouterError> {
        self.apply(Change::Reload)
    }

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

    /// Adds or changes variant `name` (admin API), starting from its entry in the
    /// catalog on disk. The whole new set is built and validated before anything is
    /// written.
    pub fn put_variant(&self, name: &str, change: VariantChange<'_>) -> Result<Arc<PolicySet>, RouterError> {
        self.apply(Change::Edit(Box::new(move |catalog| {
            let existing = catalog.variants.iter().position(|v| v.name == name);
            let mut spec = match existing {
                Some(i) => catalog.variants[i].clone(),
                None if change.component.is_some() => VariantSpec {
                    name: name.to_string(),
                    component: String::new(),
                    weight: 0,
                    shadow: false,
                    params: Default::default(),
                },
                None => return Err(RouterError::MissingComponent(name.to_string())),
            };
            spec.weight = change.weight.unwrap_or(spec.weight);
            spec.shadow = change.shadow.unwrap_or(spec.shadow);
            spec.params = change.params.unwrap_or(spec.params);
            let staged = match change.component {
                Some(bytes) => {
                    // Validate the bytes before they are written under a name the catalog uses.
                    let compiled = self
                        .runtime
                        .compile(bytes, Path::new(name))
                        .map_err(|source| RouterError::Variant { variant: name.to_string(), source })?;
                    // Content-addressed file name: replacing a component never changes the
                    // bytes under a variant that is still running on the old ones.
                    spec.component = format!("{name}-{}.wasm", &compiled.sha256()[..12]);
                    self.compiled_cache().insert(compiled.sha256().to_string(), compiled);
                    Some((spec.component.clone(), bytes))
                }
                None => None,
            };
            match existing {
                Some(i) => catalog.variants[i] = spec,
                None => catalog.variants.push(spec),
            }
            Ok(staged)
        })))
    }

    /// Retires a variant (admin API); the last answering variant cannot go.
    pub fn retire(&self, name: &str) -> Result<Arc<PolicySet>, RouterError> {
        self.apply(Change::Edit(Box::new(|catalog| {
            let before = catalog.variants.len();
            catalog.variants.retain(|v| v.name != name);
            if catalog.variants.len() == before {
                return Err(RouterError::UnknownVariant(name.to_string()));
            }
            Ok(None)
        })))
    }

    /// A policy to backtest, never routed: new component bytes, or else `variant`
    /// (its component and parameters), with `overrides` applied; validated like any
    /// variant.
    pub fn candidate(
        &self,
        component: Option<&[u8]>,
        variant: Option<&str>,
        overrides: &[Param],
    ) -> Result<LoadedPolicy, RouterError> {
        let label = variant.unwrap_or("candidate").to_string();
        let err = |source: PolicyError| RouterError::Variant { variant: label.clone(), source };
        let (compiled, base) = match (component, variant) {
            (Some(bytes), _) => (self.runtime.compile(bytes, Path::new("candidate.wasm")).map_err(err)?, Vec::new()),
            (None, Some(name)) => {
                let set = self.current();
                let v = set.variant(name).ok_or_else(|| RouterError::UnknownVariant(name.to_string()))?;
                (v.policy.compiled.clone(), v.policy.params().to_vec())
            }
            (None, None) => return Err(RouterError::UnknownVariant("(none given)".into())),
        };
        // The variant's own parameter set, then the new overrides on top: `variant`
        // applies overrides in order, a later one winning (`merge_params`).
        let layered: Vec<Param> = base.into_iter().chain(overrides.iter().cloned()).collect();
        compiled.variant(&layered).map_err(err)
    }

    /// The one way the set changes, under the change lock: the new catalog (the
    /// directory's, or the catalog on disk edited) is validated and its whole set
    /// built, an edit written, and only then installed (`install`: on any failure the
    /// old set keeps serving and the reason is recorded); the directory as it then is
    /// remembered so the watcher does not reload the router's own writes.
    fn apply(&self, change: Change<'_>) -> Result<Arc<PolicySet>, RouterError> {
        let Source::Directory(dir) = &self.source else { return Err(RouterError::NotManaged) };
        let mut fingerprint = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let edits = matches!(change, Change::Edit(_));
        let (catalog, staged) = match change {
            Change::Reload => {
                // Seen even if refused: a broken directory is retried once it changes again.
                *fingerprint = Some(directory_fingerprint(dir));
                match Catalog::read(dir) {
                    Ok(catalog) => (catalog, None),
                    Err(e) => return self.install(Err(e.into())),
                }
            }
            Change::Edit(edit) => {
                let mut catalog = Catalog::read(dir)?;
                let staged = edit(&mut catalog)?;
                catalog.validate()?;
                (catalog, staged)
            }
        };
        let mut result = self.build_set(dir, &catalog, staged.as_ref().map(|(file, bytes)| (file.as_str(), *bytes)));
        if edits && result.is_ok() {
            // Written before it serves: a set installed then not saved answered 500
            // while it took traffic, and the next reload dropped it unsaid. A failed
            // write is the server's (500), not the client's.
            let written = staged
                .map_or(Ok(()), |(file, bytes)| {
                    write_atomically(dir, &file, bytes).map(|_| ()).map_err(|e| format!("{file}: {e}"))
                })
                .and_then(|()| catalog.write(dir).map_err(|e| e.to_string()));
            if let Err(e) = written {
                result = Err(RouterError::Write(e));
            }
        }
        let set = self.install(result)?;
        if edits {
            *fingerprint = Some(directory_fingerprint(dir));
        }
        Ok(set)
    }

    fn install(&self, result: Result<PolicySet, RouterError>) -> Result<Arc<PolicySet>, RouterError> {
        match result {
            Ok(set) => {
                let set = Arc::new(set);
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = set.clone();
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                tracing::info!(
                    variants = %set.variants.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(","),
                    experiment = %set.experiment,
                    "policy set installed"
                );
                Ok(set)
            }
            Err(e) => {
                tracing::warn!(error = %e, "policy change refused; the previous policies keep serving");
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn compiled_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, CompiledPolicy>> {
        self.compiled.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Builds every variant of `catalog`; `staged` is a component not yet written
    /// to the directory (its file name and bytes).
    fn build_set(
        &self,
        dir: &Path,
        catalog: &Catalog,
        staged: Option<(&str, &[u8])>,
    ) -> Result<PolicySet, RouterError> {
        let mut variants = Vec::new();
        let mut in_use = Vec::new();
        for spec in &catalog.variants {
            let err = |source: PolicyError| RouterError::Variant { variant: spec.name.clone(), source };
            let bytes = match staged {
                Some((name, bytes)) if name == spec.component => bytes.to_vec(),
                _ => read_regular_file(&dir.join(&spec.component), COMPONENT_MAX_BYTES).map_err(|source| {
                    err(PolicyError::Read { path: dir.join(&spec.component).display().to_string(), source })
                })?,
            };
            let hash = format!("{:x}", Sha256::digest(&bytes));
            let cached = self.compiled_cache().get(&hash).cloned();
            let compiled = match cached {
                Some(c) => c,
                None => {
                    let c = self.runtime.compile(&bytes, &dir.join(&spec.component)).map_err(err)?;
                    self.compiled_cache().insert(hash.clone(), c.clone());
                    c
                }
            };
            in_use.push(hash);
            let overrides: Vec<Param> =
                spec.params.iter().map(|(name, value)| Param { name: name.clone(), value: *value }).collect();
            let policy = compiled.variant(&overrides).map_err(err)?;
            variants.push(Arc::new(Variant {
                name: spec.name.clone(),
                policy: Arc::new(policy),
                weight: spec.weight,
                shadow: spec.shadow,
            }));
        }
        // Forget components no variant uses any more (running requests hold their own Arc).
        self.compiled_cache().retain(|hash, _| in_use.contains(hash));
        Ok(PolicySet { experiment: catalog.experiment.clone(), variants, loaded_at_ms: crate::clock::now_ms() })
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
fn directory_fingerprint(dir: &Path) -> Fingerprint {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket("e1", "alice"), bucket("e1", "alice"));
        assert_ne!(bucket("e1", "alice"), bucket("e2", "alice"));
        // 10 % of 10 000 users land in a 10/100 slice, give or take.
        let in_slice = (0..10_000).filter(|i| bucket("e1", &format!("user{i}")) % 100 < 10).count();
        assert!((850..1150).contains(&in_slice), "{in_slice}");
    }
}
