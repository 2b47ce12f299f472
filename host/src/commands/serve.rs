//! `faceauth serve`: the use cases started from their settings, then the HTTP API
//! on a listener until SIGTERM or Ctrl-C.

use anyhow::Context;

use crate::config::ServeConfig;

pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    raise_open_files_limit(config.server.max_connections);
    let app = faceauth_core::usecase::start(&config.engine, &config.database, &config.attempts).await?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    faceauth_http::run(listener, app, &config.server, shutdown_signal()).await?;
    Ok(())
}

/// Descriptors the server needs besides client connections: the database pool,
/// FFmpeg's pipes and temporary uploads, the models, the log.
const DESCRIPTOR_HEADROOM: u64 = 256;

/// Raises the soft open-files limit to the hard one (often 1024 soft for 500k+
/// hard): the soft default is what ran out under 1100 half-sent requests (issue 11,
/// issue 22). Says what it got, and warns when `--max-connections` does not fit.
fn raise_open_files_limit(max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::info!("open files limit: {limit}");
            if (max_connections as u64).saturating_add(DESCRIPTOR_HEADROOM) > limit {
                tracing::warn!(
                    "--max-connections {max_connections} leaves fewer than {DESCRIPTOR_HEADROOM} of the {limit} open \
                     files for the database, FFmpeg and uploads: lower it, or raise the hard limit (ulimit -Hn)"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit; it stays as it is"),
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
    tracing::info!("shutting down: finishing in-flight requests (a second signal exits at once)");
    tokio::spawn(async {
        second_signal().await;
        tracing::warn!("second shutdown signal: exiting at once");
        std::process::exit(130);
    });
}

/// The next SIGINT or SIGTERM after the first.
async fn second_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    tokio::signal::ctrl_c().await.unwrap_or(());
}
