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
//!
//! `runtime` holds the wasmtime side (the engine, the limits, a fresh store per
//! call), `component` a compiled component, its variants and their self-check, and
//! `bindings` the types generated from the WIT world.

mod bindings;
pub mod catalog;
mod component;
mod outcome;
pub mod router;
mod runtime;

pub use component::{CompiledPolicy, LoadedPolicy};
pub use outcome::{Endpoint, Evidence, Failure, Outcome};
pub use runtime::{PolicyLimits, PolicyRuntime};

/// A parameter override as given on a command line, `NAME=VALUE`.
pub fn parse_param(s: &str) -> Result<(String, f64), String> {
    let (name, value) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))?;
    let value: f64 = value.trim().parse().map_err(|_| format!("{s:?}: the value is not a number"))?;
    Ok((name.trim().to_string(), value))
}

pub use bindings::faceauth::policy::types::{
    AuthenticateEvidence, Decision, DuplicateSearch, EnrollEvidence, Face, FaceBox, Frame, FrameSummary, GalleryMatch,
    HeadPose, ImageSize, MediaKind, MotionSummary, Param, PolicyInfo,
};

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
    /// The component refuses the variant's parameters (an unknown name, a value out
    /// of its range): the variant's configuration is wrong, not the component.
    #[error("policy component {path} refused the parameters: {reason}")]
    Params { path: String, reason: String },
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
    /// The call failed after the policy wrote to its stdout or stderr: what it wrote
    /// (a Rust policy's `panicked at src/lib.rs:6:5: ...`), cut at 2 KiB.
    #[error("policy call failed; the policy wrote: {output}")]
    Failed {
        output: String,
        #[source]
        source: wasmtime::Error,
    },
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
            PolicyError::Call(e) | PolicyError::Failed { source: e, .. } | PolicyError::Load { source: e, .. } => {
                e.downcast_ref::<wasmtime::Trap>().copied()
            }
            PolicyError::SelfCheck { source: Some(inner), .. } => inner.trap(),
            _ => None,
        }
    }
}
