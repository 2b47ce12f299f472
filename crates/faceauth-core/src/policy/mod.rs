//! The WebAssembly policy boundary. Policies are components implementing
//! `wit/policy.wit`; the host hands them evidence and gets a decision back.
//!
//! Sandbox: each call gets a fresh `Store` from a cached `InstancePre`, a fuel
//! budget (CPU) and a memory limiter. A `wasm32-wasip2` guest built with `std`
//! imports WASI interfaces; they are satisfied by an empty context: no preopened
//! directories, environment, arguments, network, a frozen clock and a fixed random
//! stream. Any trap or exhausted budget is a `PolicyError`, which the use cases turn
//! into REJECTED / POLICY_ERROR (fail closed).
//!
//! A component is compiled once (`CompiledPolicy`, cached by content hash) and run
//! as one or more variants (`LoadedPolicy`: the component with a parameter set).
//! `router` decides which variant answers a request and which shadow it.

pub mod catalog;
mod outcome;
pub mod router;

pub use outcome::{Endpoint, Evidence, Failure, Outcome};

/// A parameter override as given on a command line, `NAME=VALUE`.
pub fn parse_param(s: &str) -> Result<(String, f64), String> {
    let (name, value) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))?;
    let value: f64 = value.trim().parse().map_err(|_| format!("{s:?}: the value is not a number"))?;
    Ok((name.trim().to_string(), value))
}

use std::path::{Path, PathBuf};

use sha2::Digest;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({
        world: "policy",
        path: "../../wit",
        // Evidence and decisions go to the audit log as JSON and come back for replay.
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

pub use bindings::faceauth::policy::types::{
    AuthenticateEvidence, Decision, EnrollEvidence, Face, FaceBox, Frame, FrameSummary, HeadPose, ImageSize, MediaKind,
    MotionSummary, Param, PolicyInfo,
};
use bindings::{Policy, PolicyPre};

/// Budgets for one policy call.
#[derive(Debug, Clone, Copy)]
pub struct PolicyLimits {
    /// Wasm fuel per call (about one unit per instruction).
    pub fuel: u64,
    /// Linear memory cap per instance, in bytes.
    pub memory_bytes: usize,
    /// Calls running at once; more are refused as busy.
    pub max_concurrent: usize,
}

impl Default for PolicyLimits {
    fn default() -> Self {
        // A real policy needs well under a million instructions; 50M is ~tens of ms.
        Self { fuel: 50_000_000, memory_bytes: 32 * 1024 * 1024, max_concurrent: 16 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    // The cause in the message itself: the admin API answers with this line only.
    #[error("cannot read policy component {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load policy component {path}")]
    Load {
        path: String,
        #[source]
        source: wasmtime::Error,
    },
    /// The component loads but must not take traffic; `source` is the failed call, if one failed.
    #[error("policy component {path} failed its self-check: {reason}")]
    SelfCheck {
        path: String,
        reason: String,
        #[source]
        source: Option<Box<PolicyError>>,
    },
    #[error("policy call failed")]
    Call(#[source] wasmtime::Error),
    #[error("the policy call's thread failed")]
    Thread(#[source] tokio::task::JoinError),
    #[error("policy returned an invalid decision: {0}")]
    InvalidDecision(String),
    #[error("all policy instances are busy")]
    Busy,
}

impl PolicyError {
    /// The wasm trap that stopped the component (fuel, an `unreachable`, a bad
    /// memory access...), if a trap did.
    pub fn trap(&self) -> Option<wasmtime::Trap> {
        match self {
            PolicyError::Call(e) | PolicyError::Load { source: e, .. } => e.downcast_ref::<wasmtime::Trap>().copied(),
            PolicyError::SelfCheck { source: Some(inner), .. } => inner.trap(),
            _ => None,
        }
    }
}

struct PolicyState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for PolicyState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// A clock stuck at the epoch: policies must not depend on time.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Compiles and instantiates policy components; one per process.
#[derive(Clone)]
pub struct PolicyRuntime {
    engine: Engine,
    linker: Arc<Linker<PolicyState>>,
    limits: PolicyLimits,
    /// Policy calls running at once, over every variant.
    permits: Arc<Semaphore>,
}

impl PolicyRuntime {
    pub fn new(limits: PolicyLimits) -> Result<Self, PolicyError> {
        let err = |source: wasmtime::Error| PolicyError::Load { path: "<engine>".into(), source };
        let mut config = Config::new();
        config.consume_fuel(true);
        config.max_wasm_stack(512 * 1024);
        let engine = Engine::new(&config).map_err(err)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(err)?;
        Ok(Self { engine, linker: Arc::new(linker), limits, permits: Arc::new(Semaphore::new(limits.max_concurrent)) })
    }

    /// Compiles, links and self-checks a component with its default parameters.
    pub fn load(&self, path: &Path) -> Result<LoadedPolicy, PolicyError> {
        self.compile_file(path)?.variant(&[])
    }

    pub fn compile_file(&self, path: &Path) -> Result<CompiledPolicy, PolicyError> {
        // Regular files only, bounded: a FIFO or /dev/zero given as `--policy` must not hang start-up.
        let bytes = catalog::read_regular_file(path, catalog::COMPONENT_MAX_BYTES)
            .map_err(|source| PolicyError::Read { path: path.display().to_string(), source })?;
        self.compile(&bytes, path)
    }

    /// Compiles and links a component and reads its `info`. `source` names it in
    /// errors and listings.
    pub fn compile(&self, bytes: &[u8], source: &Path) -> Result<CompiledPolicy, PolicyError> {
        let load_err = |e: wasmtime::Error| PolicyError::Load { path: source.display().to_string(), source: e };
        let component = Component::new(&self.engine, bytes).map_err(load_err)?;
        let pre = self.linker.instantiate_pre(&component).map_err(load_err)?;
        let pre = PolicyPre::new(pre).map_err(load_err)?;
        let mut compiled = CompiledPolicy {
            pre,
            runtime: self.clone(),
            source: source.to_path_buf(),
            sha256: format!("{:x}", sha2::Sha256::digest(bytes)),
            info: PolicyInfo { name: String::new(), version: String::new(), requires_liveness: false, params: vec![] },
        };
        compiled.info =
            off_async_threads(|| compiled.call(|p, s| p.call_info(s))).map_err(|e| PolicyError::SelfCheck {
                path: source.display().to_string(),
                reason: "info".into(),
                source: Some(Box::new(e)),
            })?;
        Ok(compiled)
    }

    fn new_store(&self) -> Result<Store<PolicyState>, PolicyError> {
        let wasi = WasiCtx::builder()
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(wasmtime_wasi::Deterministic::new(vec![0x5a]))
            .insecure_random(wasmtime_wasi::Deterministic::new(vec![0xa5]))
            .insecure_random_seed(0)
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .instances(16)
            .tables(64)
            .memories(16)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&self.engine, PolicyState { wasi, table: ResourceTable::new(), limits });
        store.limiter(|s| &mut s.limits);
        store.set_fuel(self.limits.fuel).map_err(PolicyError::Call)?;
        Ok(store)
    }
}

/// A compiled and linked component, not yet checked with a parameter set.
#[derive(Clone)]
pub struct CompiledPolicy {
    pre: PolicyPre<PolicyState>,
    runtime: PolicyRuntime,
    source: PathBuf,
    sha256: String,
    info: PolicyInfo,
}

impl CompiledPolicy {
    pub fn info(&self) -> &PolicyInfo {
        &self.info
    }

    /// Hex sha256 of the component's bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// One call in a fresh instance: no state survives between decisions.
    fn call<R>(
        &self,
        f: impl FnOnce(&Policy, &mut Store<PolicyState>) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        let mut store = self.runtime.new_store()?;
        let instance = self.pre.instantiate(&mut store).map_err(PolicyError::Call)?;
        f(&instance, &mut store).map_err(PolicyError::Call)
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
        let params = merge_params(&self.info.params, overrides).map_err(|e| check_err(e.into()))?;
        let policy = LoadedPolicy { compiled: self.clone(), params };
        off_async_threads(|| {
            policy
                .compiled
                .call(|p, s| p.call_check_params(s, &policy.params))
                .map_err(|e| SelfCheckFailure::call("check-params", e))?
                .map_err(|message| SelfCheckFailure::from(format!("parameters refused: {message}")))?;
            policy.self_check()
        })
        .map_err(check_err)?;
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

/// Runs `f` on a thread of its own. WASI output of a guest (a panic message on
/// stderr, say) goes through wasmtime-wasi's sync adapter, which blocks on the
/// ambient tokio runtime and panics on an async worker thread; load-time calls can
/// come from one (tests, tools), request-time calls run on blocking threads.
fn off_async_threads<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// A compiled, validated policy variant, ready to decide.
pub struct LoadedPolicy {
    compiled: CompiledPolicy,
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
