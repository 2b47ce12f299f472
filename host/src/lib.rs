//! faceauth: a face-verification server for identity onboarding.
//!
//! Data flows one way: `http` parses and validates, the `usecase`s run the stages
//! `media` (decode) -> `vision` (ONNX inference) -> `policy` (WebAssembly decision)
//! -> `store` (SQL); `usecase::admin` serves the admin API and the CLI tools. `main`
//! only reads the configuration, calls [`build`], then [`run`] on a listener.
#![forbid(unsafe_code)]

pub mod config;
pub mod eval;
pub mod http;
pub mod media;
pub mod policy;
pub mod store;
pub mod usecase;
pub mod vision;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::ServeConfig;
use crate::usecase::{FaceAuth, FaceEngine};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Init(#[from] usecase::InitError),
    #[error("cannot create data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("cannot open the database: {0}")]
    Store(#[from] store::StoreError),
}

/// Builds the service from its configuration and says what it uses.
pub async fn build(config: &ServeConfig) -> Result<Arc<FaceAuth>, StartError> {
    let url = config.database.url();
    if config.database.database_url.is_none() {
        std::fs::create_dir_all(&config.database.data_dir)
            .map_err(|e| StartError::DataDir(config.database.data_dir.display().to_string(), e))?;
    }
    let engine_config = config.engine.clone();
    let engine = tokio::task::spawn_blocking(move || FaceEngine::init(&engine_config))
        .await
        .map_err(|e| usecase::InitError::OnnxRuntime { path: Default::default(), message: e.to_string() })??;
    let store = config.database.connect().await?;
    tracing::info!(
        "models: {} (embedding {}), ONNX Runtime: {}",
        config.engine.models_dir().display(),
        engine.models().embedding_model_version,
        engine.onnxruntime_lib().display()
    );
    match engine.router().directory() {
        Some(dir) => tracing::info!("policies: managed in {} (watched, admin API)", dir.display()),
        None => tracing::info!("policies: fixed at start-up (--policy)"),
    }
    for v in &engine.router().current().variants {
        tracing::info!(
            "policy variant {}: {} from {} ({}, liveness {})",
            v.name,
            v.policy_label(),
            v.policy.source().display(),
            if v.shadow { "shadow".to_string() } else { format!("weight {}", v.weight) },
            if v.policy.info().requires_liveness { "required" } else { "off" }
        );
    }
    tracing::info!("database: {:?} at {}", store.backend(), store::redact(&url));
    Ok(Arc::new(FaceAuth::new(engine, store)))
}

/// Serves the API on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn run(
    listener: TcpListener,
    app: Arc<FaceAuth>,
    config: &ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let admin = http::AdminAccess::from_token(config.admin_token.clone());
    match admin {
        http::AdminAccess::Token(_) => tracing::info!(
            "admin endpoints (reset, policies, decisions, stats, replay, metrics) require the admin token"
        ),
        http::AdminAccess::LoopbackOnly => {
            tracing::info!(
                "no admin token configured: admin endpoints (reset, policies, decisions, stats, replay, metrics) answer loopback clients only"
            )
        }
    }
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("listening on http://{addr}");
    }
    let watcher = app.watch_policies(std::time::Duration::from_millis(config.policy_watch_ms));
    let retention = (config.audit_retention_days > 0).then(|| {
        let app = app.clone();
        let keep = std::time::Duration::from_secs(config.audit_retention_days * 24 * 3600);
        tokio::spawn(async move {
            let mut hourly = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                hourly.tick().await;
                match app.apply_retention(keep).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("audit log: {n} decisions past retention removed"),
                    Err(e) => tracing::warn!(error = %e, "audit log retention failed"),
                }
            }
        })
    });
    let router = http::router(app.clone(), config.max_upload_bytes, admin);
    let (fired, signalled) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = fired.send(());
    };
    let serve = axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .into_future();
    let grace = std::time::Duration::from_secs(config.shutdown_grace);
    // The drain is bounded: a client that stalls mid-upload would otherwise keep the
    // process alive forever after SIGTERM (issue 11, defect 3).
    let served = tokio::select! {
        served = serve => served,
        () = async {
            match signalled.await {
                Ok(()) => tokio::time::sleep(grace).await,
                Err(_) => std::future::pending().await,
            }
        } => {
            tracing::warn!("requests still in flight {} s after the shutdown signal: exiting anyway", grace.as_secs());
            Ok(())
        }
    };
    for task in watcher.into_iter().chain(retention) {
        task.abort();
    }
    app.close().await;
    served
}
