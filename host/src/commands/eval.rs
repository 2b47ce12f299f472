//! `faceauth eval`: figures of the whole pipeline on a labelled list.

use anyhow::Context;
use faceauth_core::usecase::FaceEngine;
use faceauth_eval::{EvalArgs, Mode};

use super::progress_bar;

/// Runs a labelled list through the pipeline and the policy; prints the figures.
pub async fn eval(args: EvalArgs) -> anyhow::Result<()> {
    use faceauth_core::policy::{Param, PolicyLimits, PolicyRuntime};
    if args.mode == Mode::Liveness {
        return eval_liveness(args).await;
    }
    let list = args.list.clone().unwrap_or_else(|| match args.mode {
        Mode::Video | Mode::Liveness => "../shared/videos/index.csv".into(),
        Mode::Pairs | Mode::Card | Mode::Duplicates => "../shared/faces/lfw-train/pairs.csv".into(),
    });
    let mut attempts = match args.mode {
        Mode::Video | Mode::Liveness => faceauth_eval::read_video_index(&list, &args.same_person)?,
        Mode::Pairs | Mode::Card | Mode::Duplicates if list.is_dir() => {
            faceauth_eval::read_folder(&list, &args.same_person)?
        }
        Mode::Pairs | Mode::Card | Mode::Duplicates => faceauth_eval::read_pairs(&list)?,
    };
    if let Some(n) = args.limit {
        attempts.truncate(n);
    }
    let engine_config = args.engine.clone();
    let engine = std::sync::Arc::new(tokio::task::spawn_blocking(move || FaceEngine::init(&engine_config)).await??);
    let overrides: Vec<Param> =
        args.params.iter().map(|(name, value)| Param { name: name.clone(), value: *value }).collect();
    let policy = std::sync::Arc::new(
        PolicyRuntime::new(PolicyLimits::default())?.compile_file(&args.engine.policy())?.variant(&overrides)?,
    );
    let bar = progress_bar(attempts.len(), "attempts");
    let workers = args.engine.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let started = std::time::Instant::now();
    let ticker = bar.clone();
    let options = faceauth_eval::RunOptions {
        concurrency: workers,
        cards_dir: args.cards_dir.clone(),
        same_person: args.same_person.clone(),
    };
    let run = faceauth_eval::run(engine, policy.clone(), args.mode, attempts, &options, move || ticker.inc(1)).await;
    bar.finish_and_clear();
    if args.mode == Mode::Duplicates {
        // Thresholds over the 1:1 one (0.35): a 1:N search needs far fewer false matches per pair.
        let thresholds: Vec<f64> = (0..=20).map(|i| 0.35 + 0.025 * f64::from(i)).collect();
        let report = faceauth_eval::duplicates::duplicate_report(&run.faces, &thresholds)?;
        return write_eval_output(&args, &run.attempts, &report, report.text());
    }
    let results = run.attempts;
    let mut report = faceauth_eval::Report::new(args.mode, &policy, &results, started.elapsed().as_secs_f64());
    report.impostor_sweep = Some(faceauth_eval::impostor_sweep(&run.faces, 0.20, 0.50, 0.025));
    if let Some(path) = &args.roc {
        report.write_roc(&results, path).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    write_eval_output(&args, &results, &report, report.text())
}

/// Liveness mode: APCER / BPCER of a liveness policy on ../shared and the simulated attacks.
async fn eval_liveness(args: EvalArgs) -> anyhow::Result<()> {
    use faceauth_core::policy::{Param, PolicyLimits, PolicyRuntime};
    let shared = args.list.clone().unwrap_or_else(|| "../shared".into());
    let mut engine_config = args.engine.clone();
    // The server's default policy has no liveness: take the liveness policy unless told.
    if engine_config.policy == faceauth_core::usecase::EngineConfig::defaults().policy {
        engine_config.policy = "target/wasm32-wasip2/release/liveness_policy.wasm".into();
    }
    let overrides: Vec<Param> =
        args.params.iter().map(|(name, value)| Param { name: name.clone(), value: *value }).collect();
    let policy = std::sync::Arc::new(
        PolicyRuntime::new(PolicyLimits::default())?.compile_file(&engine_config.policy())?.variant(&overrides)?,
    );
    anyhow::ensure!(
        policy.info().requires_liveness,
        "{} does not require liveness: pass --policy target/wasm32-wasip2/release/liveness_policy.wasm",
        engine_config.policy().display()
    );
    let mut presentations = faceauth_eval::liveness::presentations(&shared, &args.attacks);
    if let Some(n) = args.limit {
        presentations.truncate(n);
    }
    if !args.attacks.join("labels.csv").exists() {
        eprintln!(
            "no simulated attacks under {}: run python3 scripts/eval/make_presentation_attacks.py first",
            args.attacks.display()
        );
    }
    let engine = std::sync::Arc::new(tokio::task::spawn_blocking(move || FaceEngine::init(&engine_config)).await??);
    let bar = progress_bar(presentations.len(), "presentations");
    let workers = args.engine.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let ticker = bar.clone();
    let results =
        faceauth_eval::liveness::run(engine, policy.clone(), presentations, workers, move || ticker.inc(1)).await;
    bar.finish_and_clear();
    let report = faceauth_eval::liveness::LivenessReport::new(&policy, &results);
    write_eval_output(&args, &results, &report, report.text())
}

/// The per-attempt JSON lines (`--attempts-out`) and the report, as text or JSON.
fn write_eval_output(
    args: &EvalArgs,
    results: &[impl serde::Serialize],
    report: &impl serde::Serialize,
    text: String,
) -> anyhow::Result<()> {
    if let Some(path) = &args.attempts_out {
        let lines: Vec<String> = results.iter().map(serde_json::to_string).collect::<Result<_, _>>()?;
        std::fs::write(path, lines.join("\n") + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{text}");
    }
    Ok(())
}
