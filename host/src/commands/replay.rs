//! `faceauth replay`: a candidate policy backtested on the recorded decisions.

use anyhow::Context;

use crate::config::ReplayArgs;

/// Backtests a candidate policy on the recorded decisions and prints the report (JSON).
pub async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    use faceauth_core::policy::{Param, PolicyLimits, PolicyRuntime};
    use faceauth_core::usecase::admin::{ReplayScope, backtest};
    let labels = match &args.labels {
        Some(path) => faceauth_core::usecase::replay::parse_labels(
            &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        None => Default::default(),
    };
    let overrides: Vec<Param> =
        args.params.iter().map(|(name, value)| Param { name: name.clone(), value: *value }).collect();
    let candidate = PolicyRuntime::new(PolicyLimits::default())?.compile_file(&args.policy)?.variant(&overrides)?;
    // Issue 21: a wrong --data-dir created an empty database and reported 0 decisions.
    if let Some(file) = args.database.default_sqlite_file() {
        anyhow::ensure!(file.exists(), "no database at {}: check --data-dir (or DATABASE_URL)", file.display());
    }
    let store = args.database.connect().await?;
    let since_ms = args.since_hours.map(|h| faceauth_core::store::now_ms() - (h as i64) * 3600 * 1000);
    // The backtest reports no progress of its own: a spinner with the time taken.
    let spinner = indicatif::ProgressBar::new_spinner().with_message("replaying recorded decisions");
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let report = backtest(&store.audit_log(), candidate, ReplayScope { since_ms, limit: args.limit, labels }).await;
    spinner.finish_and_clear();
    let report = report?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
