//! A new policy set: the catalog (the directory's, or an admin edit of it) read,
//! every variant built and validated, an edit written, and only then swapped in.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::super::catalog::{COMPONENT_MAX_BYTES, Catalog, read_regular_file, remove_unused_copies, write_atomically};
use super::super::{CompiledPolicy, Param, PolicyError};
use super::watch::directory_fingerprint;
use super::{PolicyRouter, PolicySet, RouterError, Source, Variant};

/// Where a new policy set comes from (`PolicyRouter::apply`).
pub(super) enum Change<'a> {
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
pub(super) type Edit<'a> = Box<dyn FnOnce(&mut Catalog) -> Result<Option<Staged<'a>>, RouterError> + 'a>;

/// A component not yet written to the directory: its file name and bytes.
pub(super) type Staged<'a> = (String, &'a [u8]);

impl PolicyRouter {
    /// Rebuilds the set from the directory and swaps it in; on any error the old set
    /// stays. Blocking (compiles components).
    pub fn reload(&self) -> Result<Arc<PolicySet>, RouterError> {
        self.apply(Change::Reload)
    }

    /// The one way the set changes, under the change lock: the new catalog (the
    /// directory's, or the catalog on disk edited) is validated and its whole set
    /// built, an edit written, and only then installed (`install`: on any failure the
    /// old set keeps serving and the reason is recorded); the directory as it then is
    /// remembered so the watcher does not reload the router's own writes.
    pub(super) fn apply(&self, change: Change<'_>) -> Result<Arc<PolicySet>, RouterError> {
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
            match written {
                Err(e) => result = Err(RouterError::Write(e)),
                Ok(()) => {
                    for file in remove_unused_copies(dir, &catalog) {
                        tracing::info!("policy component {file} removed: no variant uses it");
                    }
                }
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
                // At start-up nothing serves yet (issue 21: it said the previous
                // policies keep serving, and the server then exited).
                if self.current().variants.is_empty() {
                    tracing::error!(error = %e, "policy set refused; no policy is serving");
                } else {
                    tracing::warn!(error = %e, "policy change refused; the previous policies keep serving");
                }
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                Err(e)
            }
        }
    }

    pub(super) fn compiled_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, CompiledPolicy>> {
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
            // The cache is by content: another variant's file may have compiled it.
            let policy = compiled.at(&dir.join(&spec.component)).variant(&overrides).map_err(err)?;
            variants.push(Arc::new(Variant {
                retire_after_failures: spec.retire_after_failures,
                retired: (!spec.retired.is_empty()).then(|| spec.retired.clone()),
                ..Variant::new(spec.name.clone(), Arc::new(policy), spec.weight, spec.shadow)
            }));
        }
        // Forget components no variant uses any more (running requests hold their own Arc).
        self.compiled_cache().retain(|hash, _| in_use.contains(hash));
        Ok(PolicySet { experiment: catalog.experiment.clone(), variants, loaded_at_ms: crate::clock::now_ms() })
    }
}
