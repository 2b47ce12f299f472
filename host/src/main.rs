//! The `faceauth` binary: configuration in, server or tool out.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use faceauth::config::{Cli, Command, InspectArgs};
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
