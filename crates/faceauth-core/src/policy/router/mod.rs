//! Which policy variant decides a request. The active `PolicySet` sits behind an
//! `Arc` that is swapped whole: a request takes the set once and finishes on it,
//! whatever is swapped in meanwhile. A new set is built and every variant
//! validated (compiled, parameters checked, self-checked) before the swap; a set
//! that fails is refused and the old one keeps serving.
//!
//! `set`: the variants in force and which of them a request meets; `load`: a new set
//! built from the directory and swapped in; `watch`: the directory polled for changes.

mod load;
mod set;
mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::catalog::{CatalogError, VariantSpec};
use super::{CompiledPolicy, LoadedPolicy, Param, PolicyError, PolicyRuntime};
use load::Change;
pub use set::{PolicySet, Route, Variant};
use watch::Fingerprint;

/// An admin change of a variant; `None` keeps the current value.
#[derive(Debug, Default)]
pub struct VariantChange<'a> {
    /// A new component's bytes.
    pub component: Option<&'a [u8]>,
    pub weight: Option<u32>,
    pub shadow: Option<bool>,
    /// Replaces the variant's parameter overrides.
    pub params: Option<std::collections::BTreeMap<String, f64>>,
    pub retire_after_failures: Option<u32>,
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
            variants: vec![Arc::new(Variant::new(name, Arc::new(policy), 1, false))],
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
                    retire_after_failures: 0,
                    retired: String::new(),
                },
                None => return Err(RouterError::MissingComponent(name.to_string())),
            };
            // Given traffic again by hand: no longer retired.
            if change.weight.is_some_and(|w| w > 0) || change.shadow == Some(true) {
                spec.retired.clear();
            }
            spec.weight = change.weight.unwrap_or(spec.weight);
            spec.shadow = change.shadow.unwrap_or(spec.shadow);
            spec.retire_after_failures = change.retire_after_failures.unwrap_or(spec.retire_after_failures);
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

    /// Counts a live decision of `variant` (its answer or its shadow). After
    /// `retire_after_failures` failed calls in a row the variant retires itself: its
    /// weight set to 0 and its shadow role removed in the catalog, which says when and
    /// why (`retired`), so a component that keeps failing stops refusing its share of
    /// users as POLICY_ERROR and the other variants answer them. Overload (`Busy`) is
    /// the server's, not the policy's, and does not count; the last answering
    /// variant is never retired (the catalog would have none).
    pub fn observe(self: &Arc<Self>, variant: &Variant, decision: &Result<super::Decision, PolicyError>) {
        use std::sync::atomic::Ordering::Relaxed;
        let error = match decision {
            Ok(_) => return variant.failing.store(0, Relaxed),
            Err(PolicyError::Busy) => return,
            Err(e) => e,
        };
        let failed = variant.failing.fetch_add(1, Relaxed) + 1;
        // Exactly at the limit: one retirement however many requests fail at once.
        if variant.retire_after_failures == 0 || failed != variant.retire_after_failures || self.directory().is_none() {
            return;
        }
        let why = format!(
            "{}: {failed} failed calls in a row; the last: {}",
            httpdate::fmt_http_date(std::time::SystemTime::now()),
            crate::errors::error_chain(error)
        );
        let (router, name) = (self.clone(), variant.name.clone());
        // Writing the catalog and rebuilding the set is blocking work, off the request's path.
        tokio::task::spawn_blocking(move || router.retire_failing(&name, &why));
    }

    fn retire_failing(&self, name: &str, why: &str) {
        let retired = self.apply(Change::Edit(Box::new(|catalog| {
            let spec = catalog
                .variants
                .iter_mut()
                .find(|v| v.name == name)
                .ok_or_else(|| RouterError::UnknownVariant(name.to_string()))?;
            spec.weight = 0;
            spec.shadow = false;
            spec.retired = why.to_string();
            Ok(None)
        })));
        match retired {
            Ok(_) => {
                metrics::counter!(crate::telemetry::POLICY_RETIREMENTS, "variant" => name.to_string()).increment(1);
                tracing::error!(variant = name, reason = why, "policy variant retired: it kept failing");
            }
            Err(e) => {
                tracing::error!(variant = name, reason = why, error = %e, "a failing policy variant was not retired")
            }
        }
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
}
