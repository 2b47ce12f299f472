//! The WebAssembly policy boundary. Policies are components implementing
//! `wit/policy.wit`; the host hands them evidence and gets a decision back.
//!
//! Sandbox: each call gets a fresh `Store` from a cached `InstancePre`, a fuel
//! budget (CPU) and a memory limiter. A `wasm32-wasip2` guest built with `std`
//! imports WASI interfaces; they are satisfied by an empty context: no preopened
//! directories, environment, arguments, network, a frozen clock and a fixed random
//! stream. Any trap or exhausted budget is a `PolicyError`, which the use cases turn
//! into REJECTED / POLICY_ERROR (fail closed).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({
        world: "policy",
        path: "../wit",
    });
}

pub use bindings::faceauth::policy::types::{
    AuthenticateEvidence, Decision, EnrollEvidence, Face, FaceBox, Frame, FrameSummary, HeadPose, ImageSize, MediaKind,
    PolicyInfo,
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
    #[error("cannot load policy component {path}: {message}")]
    Load { path: String, message: String },
    #[error("policy component {path} failed its self-check: {message}")]
    SelfCheck { path: String, message: String },
    #[error("policy call failed: {0}")]
    Call(String),
    #[error("policy returned an invalid decision: {0}")]
    InvalidDecision(String),
    #[error("all policy instances are busy")]
    Busy,
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
}

impl PolicyRuntime {
    pub fn new(limits: PolicyLimits) -> Result<Self, PolicyError> {
        let err = |e: wasmtime::Error| PolicyError::Load { path: "<engine>".into(), message: format!("{e:#}") };
        let mut config = Config::new();
        config.consume_fuel(true);
        config.max_wasm_stack(512 * 1024);
        let engine = Engine::new(&config).map_err(err)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(err)?;
        Ok(Self { engine, linker: Arc::new(linker), limits })
    }

    /// Compiles, links and self-checks a component; only a policy that passes is returned.
    pub fn load(&self, path: &Path) -> Result<LoadedPolicy, PolicyError> {
        let load_err =
            |e: wasmtime::Error| PolicyError::Load { path: path.display().to_string(), message: format!("{e:#}") };
        let component = Component::from_file(&self.engine, path).map_err(load_err)?;
        let pre = self.linker.instantiate_pre(&component).map_err(load_err)?;
        let pre = PolicyPre::new(pre).map_err(load_err)?;
        let mut policy = LoadedPolicy {
            pre,
            runtime: self.clone(),
            permits: Arc::new(Semaphore::new(self.limits.max_concurrent)),
            source: path.to_path_buf(),
            info: PolicyInfo { name: String::new(), version: String::new(), requires_liveness: false },
        };
        let check_err = |message: String| PolicyError::SelfCheck { path: path.display().to_string(), message };
        policy.info = policy.call(|p, s| p.call_info(s)).map_err(|e| check_err(e.to_string()))?;
        policy.self_check().map_err(check_err)?;
        Ok(policy)
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
        store.set_fuel(self.limits.fuel).map_err(|e| PolicyError::Call(format!("{e:#}")))?;
        Ok(store)
    }
}

/// A compiled, validated policy, ready to decide.
pub struct LoadedPolicy {
    pre: PolicyPre<PolicyState>,
    runtime: PolicyRuntime,
    permits: Arc<Semaphore>,
    source: PathBuf,
    info: PolicyInfo,
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy").field("source", &self.source).field("info", &self.info).finish()
    }
}

impl LoadedPolicy {
    pub fn info(&self) -> &PolicyInfo {
        &self.info
    }

    pub fn source(&self) -> &Path {
        &self.source
    }

    /// One call in a fresh instance: no state survives between decisions.
    fn call<R>(
        &self,
        f: impl FnOnce(&Policy, &mut Store<PolicyState>) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        let mut store = self.runtime.new_store()?;
        let instance = self.pre.instantiate(&mut store).map_err(|e| PolicyError::Call(format!("{e:#}")))?;
        f(&instance, &mut store).map_err(|e| PolicyError::Call(format!("{e:#}")))
    }

    pub fn decide_enroll_blocking(&self, evidence: &EnrollEvidence) -> Result<Decision, PolicyError> {
        validate(self.call(|p, s| p.call_decide_enroll(s, evidence))?)
    }

    pub fn decide_authenticate_blocking(&self, evidence: &AuthenticateEvidence) -> Result<Decision, PolicyError> {
        validate(self.call(|p, s| p.call_decide_authenticate(s, evidence))?)
    }

    /// A policy must at least refuse a picture without any face.
    fn self_check(&self) -> Result<(), String> {
        let image = ImageSize { width: 640, height: 480 };
        let enroll =
            self.decide_enroll_blocking(&EnrollEvidence { image, faces: Vec::new() }).map_err(|e| e.to_string())?;
        if enroll.approved {
            return Err("it approves an enrollment with no face".into());
        }
        let auth = self
            .decide_authenticate_blocking(&{
                let frames = vec![Frame { timestamp_ms: 0, faces: Vec::new() }];
                let summary = crate::usecase::summarize_frames(&frames);
                AuthenticateEvidence { media: MediaKind::Image, image, frames, summary }
            })
            .map_err(|e| e.to_string())?;
        if auth.approved {
            return Err("it approves an authentication with no face".into());
        }
        Ok(())
    }
}

/// Async entry points: the wasm call runs on a blocking thread, bounded by a semaphore.
impl LoadedPolicy {
    pub async fn decide_enroll(self: &Arc<Self>, evidence: EnrollEvidence) -> Result<Decision, PolicyError> {
        let _permit = self.permits.clone().try_acquire_owned().map_err(|_| PolicyError::Busy)?;
        let policy = self.clone();
        tokio::task::spawn_blocking(move || policy.decide_enroll_blocking(&evidence))
            .await
            .map_err(|e| PolicyError::Call(e.to_string()))?
    }

    pub async fn decide_authenticate(
        self: &Arc<Self>,
        evidence: AuthenticateEvidence,
    ) -> Result<Decision, PolicyError> {
        let _permit = self.permits.clone().try_acquire_owned().map_err(|_| PolicyError::Busy)?;
        let policy = self.clone();
        tokio::task::spawn_blocking(move || policy.decide_authenticate_blocking(&evidence))
            .await
            .map_err(|e| PolicyError::Call(e.to_string()))?
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
