//! A compiled component (`CompiledPolicy`) and its variants (`LoadedPolicy`: the
//! component with a parameter set, checked by the component and self-checked on
//! recorded evidence before it takes traffic).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::Store;

use super::bindings::{Policy, PolicyPre};
use super::runtime::{PolicyState, off_async_threads};
use super::{AuthenticateEvidence, Decision, EnrollEvidence, Param, PolicyError, PolicyInfo, PolicyRuntime, outcome};

/// A compiled and linked component, not yet checked with a parameter set.
#[derive(Clone)]
pub struct CompiledPolicy {
    pub(super) pre: PolicyPre<PolicyState>,
    pub(super) runtime: PolicyRuntime,
    pub(super) source: PathBuf,
    pub(super) sha256: String,
    pub(super) info: PolicyInfo,
}

impl CompiledPolicy {
    pub fn info(&self) -> &PolicyInfo {
        &self.info
    }

    /// The same compiled component, named by another file holding the same bytes
    /// (two variants of one component): errors name the variant's own file.
    pub(super) fn at(&self, source: &Path) -> CompiledPolicy {
        CompiledPolicy { source: source.to_path_buf(), ..self.clone() }
    }

    /// Hex sha256 of the component's bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// One call in a fresh instance: no state survives between decisions.
    pub(super) fn call<R>(
        &self,
        f: impl FnOnce(&Policy, &mut Store<PolicyState>) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        let mut store = self.runtime.new_store()?;
        let result = self.pre.instantiate(&mut store).and_then(|instance| f(&instance, &mut store));
        // What the policy wrote before it failed (a Rust policy's panic message)
        // reaches its author in the error: the admin answer, the audit row, the log.
        result.map_err(|source| match store.data().output.text() {
            Some(output) => PolicyError::Failed { output, source },
            None => PolicyError::Call(source),
        })
    }

    /// This component with `overrides` applied to its declared parameters, checked
    /// by the component (`check-params`) and self-checked on recorded evidence; only
    /// a variant that passes is returned. An override of a parameter the policy does
    /// not declare is refused: a typo must not silently run the defaults.
    pub fn variant(&self, overrides: &[Param]) -> Result<LoadedPolicy, PolicyError> {
        let path = self.source.display().to_string();
        let check_err = |failure: SelfCheckFailure| PolicyError::SelfCheck {
            path: path.clone(),
            reason: failure.reason,
            source: failure.source.map(Box::new),
        };
        let refused = |reason: String| PolicyError::Params { path: path.clone(), reason };
        let params = merge_params(&self.info.params, overrides).map_err(refused)?;
        let policy = LoadedPolicy { compiled: self.clone(), params };
        // One thread for both calls: the component's own parameter check, then the
        // self-check on recorded evidence.
        off_async_threads(|| {
            policy
                .compiled
                .call(|p, s| p.call_check_params(s, &policy.params))
                .map_err(|e| check_err(SelfCheckFailure::call("check-params", e)))?
                .map_err(refused)?;
            policy.self_check().map_err(check_err)
        })?;
        Ok(policy)
    }
}

/// Why a variant failed its checks: a reason, and the failed call if one failed.
struct SelfCheckFailure {
    reason: String,
    source: Option<PolicyError>,
}

impl SelfCheckFailure {
    fn call(what: &str, e: PolicyError) -> Self {
        Self { reason: format!("{what}: {}", crate::errors::error_chain(&e)), source: Some(e) }
    }
}

impl From<String> for SelfCheckFailure {
    fn from(reason: String) -> Self {
        Self { reason, source: None }
    }
}

/// A compiled, validated policy variant, ready to decide.
pub struct LoadedPolicy {
    pub(super) compiled: CompiledPolicy,
    /// The complete parameter set every call receives.
    params: Vec<Param>,
}

/// The declared defaults with `overrides` applied, in declaration order. The one
/// place parameter sets are merged: overrides apply in turn, a later one of a name
/// winning, so layers of overrides merge by concatenation (the router's
/// `candidate`: a variant's set, then new overrides).
fn merge_params(declared: &[Param], overrides: &[Param]) -> Result<Vec<Param>, String> {
    let mut params = declared.to_vec();
    for o in overrides {
        let slot = params.iter_mut().find(|p| p.name == o.name).ok_or_else(|| {
            let known: Vec<&str> = declared.iter().map(|p| p.name.as_str()).collect();
            format!("unknown parameter {:?} (the policy declares: {})", o.name, known.join(", "))
        })?;
        if !o.value.is_finite() {
            return Err(format!("parameter {} is not a finite number", o.name));
        }
        slot.value = o.value;
    }
    Ok(params)
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("source", &self.compiled.source)
            .field("info", &self.compiled.info)
            .field("params", &self.params)
            .finish()
    }
}

impl LoadedPolicy {
    pub fn info(&self) -> &PolicyInfo {
        &self.compiled.info
    }

    pub fn source(&self) -> &Path {
        &self.compiled.source
    }

    /// Hex sha256 of the component's bytes.
    pub fn sha256(&self) -> &str {
        &self.compiled.sha256
    }

    /// The parameter set in force (defaults with this variant's overrides).
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    fn call<R>(
        &self,
        f: impl FnOnce(&Policy, &mut Store<PolicyState>) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        self.compiled.call(f)
    }

    pub fn decide_enroll_blocking(&self, evidence: &EnrollEvidence) -> Result<Decision, PolicyError> {
        validate(self.call(|p, s| p.call_decide_enroll(s, &self.params, evidence))?)
    }

    pub fn decide_authenticate_blocking(&self, evidence: &AuthenticateEvidence) -> Result<Decision, PolicyError> {
        validate(self.call(|p, s| p.call_decide_authenticate(s, &self.params, evidence))?)
    }

    /// Before a variant takes traffic it decides on recorded evidence of real uploads
    /// (`selfcheck/`, made by `examples/record_selfcheck.rs`): it must refuse an ID
    /// card without a face, a stranger's selfie and a selfie showing two people,
    /// and answer a 24-frame video within its budget.
    fn self_check(&self) -> Result<(), SelfCheckFailure> {
        let parse = |name: &str, json: &str| -> Result<AuthenticateEvidence, SelfCheckFailure> {
            serde_json::from_str(json)
                .and_then(|value| serde_json::from_value(outcome::upgraded(value)))
                .map_err(|e| format!("recorded evidence {name}: {e}").into())
        };
        let no_face: EnrollEvidence = serde_json::from_str(SELFCHECK_ENROLL_NO_FACE)
            .map_err(|e| SelfCheckFailure::from(format!("recorded evidence enroll_no_face: {e}")))?;
        let decided = self
            .decide_enroll_blocking(&no_face)
            .map_err(|e| SelfCheckFailure::call("an ID card without a face", e))?;
        if decided.approved {
            return Err("it approves an enrollment with no face".to_string().into());
        }
        for (name, json) in [("a stranger", SELFCHECK_STRANGER), ("two people", SELFCHECK_TWO_PEOPLE)] {
            let decided = self
                .decide_authenticate_blocking(&parse(name, json)?)
                .map_err(|e| SelfCheckFailure::call(&format!("the selfie of {name}"), e))?;
            if decided.approved {
                return Err(format!("it approves the selfie of {name}").into());
            }
        }
        self.decide_authenticate_blocking(&parse("video", SELFCHECK_VIDEO)?)
            .map_err(|e| SelfCheckFailure::call("a recorded 24-frame video", e))?;
        Ok(())
    }
}

const SELFCHECK_ENROLL_NO_FACE: &str = include_str!("selfcheck/enroll_no_face.json");
const SELFCHECK_STRANGER: &str = include_str!("selfcheck/authenticate_stranger.json");
const SELFCHECK_TWO_PEOPLE: &str = include_str!("selfcheck/authenticate_two_people.json");
const SELFCHECK_VIDEO: &str = include_str!("selfcheck/authenticate_video.json");

/// Async entry points: the wasm call runs on a blocking thread, bounded by a semaphore.
impl LoadedPolicy {
    pub async fn decide_enroll(self: &Arc<Self>, evidence: EnrollEvidence) -> Result<Decision, PolicyError> {
        let _permit = self.compiled.runtime.permits.clone().try_acquire_owned().map_err(|_| PolicyError::Busy)?;
        let policy = self.clone();
        tokio::task::spawn_blocking(move || policy.decide_enroll_blocking(&evidence))
            .await
            .map_err(PolicyError::Thread)?
    }

    pub async fn decide_authenticate(
        self: &Arc<Self>,
        evidence: AuthenticateEvidence,
    ) -> Result<Decision, PolicyError> {
        let _permit = self.compiled.runtime.permits.clone().try_acquire_owned().map_err(|_| PolicyError::Busy)?;
        let policy = self.clone();
        tokio::task::spawn_blocking(move || policy.decide_authenticate_blocking(&evidence))
            .await
            .map_err(PolicyError::Thread)?
    }
}

/// Reasons are part of the API: short, upper-case codes.
fn validate(decision: Decision) -> Result<Decision, PolicyError> {
    let reason_ok = !decision.reason.is_empty()
        && decision.reason.len() <= 64
        && decision.reason.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !reason_ok {
        return Err(PolicyError::InvalidDecision(format!("reason {:?} is not an UPPER_SNAKE code", decision.reason)));
    }
    if decision.score.is_some_and(|s| !s.is_finite()) {
        return Err(PolicyError::InvalidDecision("score is not finite".into()));
    }
    Ok(decision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_to_declared_parameters_only() {
        let declared = vec![Param { name: "a".into(), value: 1.0 }, Param { name: "b".into(), value: 2.0 }];
        let merged = merge_params(&declared, &[Param { name: "b".into(), value: 5.0 }]).expect("known");
        assert_eq!(merged.iter().map(|p| p.value).collect::<Vec<_>>(), vec![1.0, 5.0]);
        let typo = merge_params(&declared, &[Param { name: "c".into(), value: 5.0 }]).unwrap_err();
        assert!(typo.contains("unknown parameter \"c\"") && typo.contains("a, b"), "{typo}");
        assert!(merge_params(&declared, &[Param { name: "a".into(), value: f64::NAN }]).is_err());
        let layered = [Param { name: "a".into(), value: 3.0 }, Param { name: "a".into(), value: 4.0 }];
        assert_eq!(merge_params(&declared, &layered).expect("known")[0].value, 4.0);
    }
}
