//! The `faceauth` binary: configuration in, server or tool out.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use faceauth::config::{Cli, Command, InspectArgs, ReplayArgs};
use faceauth::usecase::{FaceEngine, face_evidence};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,ort=warn,wasmtime=warn,cranelift=warn".into()),
        )
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(config) => runtime.block_on(async {
            let app = faceauth::build(&config).await?;
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            faceauth::run(listener, app, &config, shutdown_signal()).await?;
            Ok(())
        }),
        Command::Inspect(args) => runtime.block_on(inspect(args)),
        Command::Replay(args) => runtime.block_on(replay(args)),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
    tracing::info!("shutting down");
}

/// Prints the enrollment evidence of each file and the default decision, as JSON lines.
async fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let engine = FaceEngine::init(&args.engine)?;
    for file in &args.files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let line = match engine.analyze_upload(bytes).await {
            Ok((image, analyzed)) => {
                let faces = face_evidence(&analyzed, image, None);
                serde_json::json!({
                    "file": file.display().to_string(),
                    "width": image.width,
                    "height": image.height,
                    "faces": faces.iter().map(|f| serde_json::json!({
                        "detector_score": f.detector_score,
                        "box": [f.face_box.x, f.face_box.y, f.face_box.width, f.face_box.height],
                        "relative_size": f.relative_size,
                        "sharpness": f.sharpness,
                        "yaw": f.pose.yaw, "pitch": f.pose.pitch, "roll": f.pose.roll,
                        "similarity_to_primary": f.similarity,
                    })).collect::<Vec<_>>(),
                })
            }
            Err(e) => serde_json::json!({"file": file.display().to_string(), "error": e.to_string()}),
        };
        println!("{line}");
    }
    Ok(())
}

/// Backtests a candidate policy on the recorded decisions and prints the report (JSON).
async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    use faceauth::policy::{Param, PolicyLimits, PolicyRuntime};
    use faceauth::store::audit::DecisionFilter;
    let labels = match &args.labels {
        Some(path) => faceauth::usecase::replay::parse_labels(
            &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        None => Default::default(),
    };
    let overrides: Vec<Param> =
        args.params.iter().map(|(name, value)| Param { name: name.clone(), value: *value }).collect();
    let candidate = PolicyRuntime::new(PolicyLimits::default())?.compile_file(&args.policy)?.variant(&overrides)?;
    let store = faceauth::store::UserStore::connect(&args.database.url()).await?;
    let since_ms = args.since_hours.map(|h| faceauth::store::now_ms() - (h as i64) * 3600 * 1000);
    let filter = DecisionFilter { since_ms, shadow: Some(false), limit: Some(args.limit), ..Default::default() };
    let records = store.audit_log().decisions(&filter).await?;
    let report =
        tokio::task::spawn_blocking(move || faceauth::usecase::replay::replay(&candidate, &records, &labels)).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
