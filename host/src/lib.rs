//! faceauth: a face-verification server for identity onboarding.
//!
//! Data flows one way: `http` parses and validates, the `usecase`s run the stages
//! `media` (decode) -> `vision` (ONNX inference) -> `policy` (WebAssembly decision)
//! -> `store` (SQL). `main` only reads the configuration and calls [`serve`].
#![forbid(unsafe_code)]

pub mod config;
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
use crate::store::UserStore;
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
    let url = config.database_url();
    if config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StartError::DataDir(config.data_dir.display().to_string(), e))?;
    }
    let engine_config = config.engine.clone();
    let engine = tokio::task::spawn_blocking(move || FaceEngine::init(&engine_config))
        .await
        .map_err(|e| usecase::InitError::OnnxRuntime { path: Default::default(), message: e.to_string() })??;
    let store = UserStore::connect(&url).await?;
    let policy = engine.policy();
    tracing::info!(
        "models: {} (embedding {}), ONNX Runtime: {}",
        config.engine.models_dir().display(),
        engine.models().embedding_model_version,
        engine.onnxruntime_lib().display()
    );
    tracing::info!(
        "policy: {} {} from {} (liveness {})",
        policy.info().name,
        policy.info().version,
        policy.source().display(),
        if policy.info().requires_liveness { "required" } else { "off" }
    );
    tracing::info!("database: {:?} at {}", store.backend(), store::redact(&url));
    Ok(Arc::new(FaceAuth { engine, store }))
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
        http::AdminAccess::Token(_) => tracing::info!("admin endpoints (reset) require the admin token"),
        http::AdminAccess::LoopbackOnly => {
            tracing::info!("no admin token configured: admin endpoints (reset) answer loopback clients only")
        }
    }
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("listening on http://{addr}");
    }
    let router = http::router(app.clone(), config.max_upload_bytes, admin);
    axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await?;
    app.store.close().await;
    Ok(())
}
