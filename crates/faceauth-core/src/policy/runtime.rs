//! The wasmtime side of a policy call: one engine and linker per process, and for
//! every call a fresh `Store` with its fuel budget, memory limiter and empty WASI
//! context (see the sandbox in the module's root).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest;
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::bindings::PolicyPre;
use super::{CompiledPolicy, LoadedPolicy, PolicyError, PolicyInfo, catalog};

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

pub(super) struct PolicyState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// What the guest wrote to stdout and stderr (a Rust policy's panic message).
    pub(super) output: GuestOutput,
}

/// The guest's stdout and stderr: the first `GUEST_OUTPUT_KEPT` bytes kept, so that
/// a failed call can name what the policy said (`panicked at src/lib.rs:6:5: ...`),
/// the rest dropped. Writes never fail, as on the sink an empty context gives: a
/// policy that prints much must not fail for it (a full `MemoryOutputPipe` traps).
#[derive(Clone, Default)]
pub(super) struct GuestOutput(Arc<std::sync::Mutex<Vec<u8>>>);

/// A panic message with its location fits; a policy's debugging output is cut.
const GUEST_OUTPUT_KEPT: usize = 2048;

impl GuestOutput {
    fn keep(&self, bytes: &[u8]) {
        let mut kept = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let room = GUEST_OUTPUT_KEPT.saturating_sub(kept.len());
        kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// What was kept, as text with its surrounding blank lines trimmed; `None` if nothing.
    pub(super) fn text(&self) -> Option<String> {
        let kept = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let text = String::from_utf8_lossy(&kept).trim().to_string();
        (!text.is_empty()).then_some(text)
    }
}

impl wasmtime_wasi::cli::IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl wasmtime_wasi::p2::OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.keep(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.keep(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
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
    pub(super) permits: Arc<Semaphore>,
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

    pub(super) fn new_store(&self) -> Result<Store<PolicyState>, PolicyError> {
        let output = GuestOutput::default();
        let wasi = WasiCtx::builder()
            .stdout(output.clone())
            .stderr(output.clone())
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
        let mut store = Store::new(&self.engine, PolicyState { wasi, table: ResourceTable::new(), limits, output });
        store.limiter(|s| &mut s.limits);
        store.set_fuel(self.limits.fuel).map_err(PolicyError::Call)?;
        Ok(store)
    }
}

/// Runs `f` on a thread of its own. WASI output of a guest (a panic message on
/// stderr, say) goes through wasmtime-wasi's sync adapter, which blocks on the
/// ambient tokio runtime and panics on an async worker thread; load-time calls can
/// come from one (tests, tools), request-time calls run on blocking threads.
pub(super) fn off_async_threads<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}
