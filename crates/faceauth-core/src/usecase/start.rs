//! Start-up: the face engine, the store and the use cases built from their
//! settings, with one log line for each thing the server uses.

use std::sync::Arc;

use super::{AttemptConfig, EngineConfig, FaceAuth, FaceEngine};
use crate::store::DatabaseConfig;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Init(#[from] super::InitError),
    #[error("cannot create data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("cannot open the database: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Builds the service from its configuration and says what it uses.
pub async fn start(
    engine_config: &EngineConfig,
    database: &DatabaseConfig,
    attempts: &AttemptConfig,
) -> Result<Arc<FaceAuth>, StartError> {
    let url = database.url();
    if database.database_url.is_none() {
        std::fs::create_dir_all(&database.data_dir)
            .map_err(|e| StartError::DataDir(database.data_dir.display().to_string(), e))?;
    }
    // Uploads' temporary copies left by a server killed mid-decode (`kill -9`).
    crate::media::video::sweep_stale_uploads(&engine_config.video_limits().temp_dir);
    let init_config = engine_config.clone();
    let engine = tokio::task::spawn_blocking(move || FaceEngine::init(&init_config))
        .await
        .map_err(|e| super::InitError::OnnxRuntime { path: Default::default(), message: e.to_string() })??;
    let store = database.connect().await?;
    tracing::info!(
        "models: {} (embedding {}), ONNX Runtime: {}",
        engine_config.models_dir().display(),
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
    tracing::info!("database: {:?} at {}", store.backend(), crate::store::redact(&url));
    if store.seals_templates() {
        tracing::info!("face templates: sealed at rest (XChaCha20-Poly1305)");
    } else {
        tracing::warn!(
            "face templates are stored in clear: set --template-key-file or FACEAUTH_TEMPLATE_KEYS to seal them (README, Security)"
        );
    }
    let app = FaceAuth::new(engine, store)
        .with_attempt_limit(Some(attempts.limit()))
        .with_duplicate_search(engine_config.duplicate_search);
    if !engine_config.duplicate_search {
        tracing::warn!("duplicate search off (--duplicate-search false): one face may enroll under several names");
    }
    let loading = std::time::Instant::now();
    let templates = app.load_enrolled_faces().await?;
    tracing::info!(
        "duplicate search: {templates} enrolled templates in memory ({:.1} s to load)",
        loading.elapsed().as_secs_f64()
    );
    Ok(Arc::new(app))
}
