//! The `faceauth` binary: configuration in, server or tool out.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use faceauth::config::{Cli, Command, EvalArgs, InspectArgs, ReplayArgs};
use faceauth::usecase::{FaceEngine, face_evidence};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,ort=warn,wasmtime=warn,cranelift=warn".into());
    // The tools print their answer (JSON for `verify`, `eval --json`) on stdout: their
    // log lines go to stderr; the server's to stdout, as before.
    let writer = match cli.command {
        Command::Serve(_) => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stdout),
        _ => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    };
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(writer);
    match cli.log_format {
        // One JSON object per line, with the request span's id, for log shippers.
        faceauth::config::LogFormat::Json => logs.json().with_current_span(true).init(),
        faceauth::config::LogFormat::Text => logs.init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(config) => runtime.block_on(async {
            raise_open_files_limit(config.max_connections);
            let app = faceauth::build(&config).await?;
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            faceauth::run(listener, app, &config, shutdown_signal()).await?;
            Ok(())
        }),
        Command::Inspect(args) => runtime.block_on(inspect(args)),
        Command::Verify(args) => {
            let approved = runtime.block_on(verify(args))?;
            std::process::exit(if approved { 0 } else { 3 });
        }
        Command::Replay(args) => runtime.block_on(replay(args)),
        Command::Eval(args) => runtime.block_on(eval(args)),
        Command::Rekey(database) => runtime.block_on(async {
            let store = database.connect().await?;
            anyhow::ensure!(store.seals_templates(), "no template key configured: nothing to seal with");
            let rewritten = store.rekey().await?;
            println!("{rewritten} templates re-sealed with the current key");
            Ok(())
        }),
    }
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

/// Prints the enrollment evidence of each file and the default decision, as JSON lines.
async fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let engine = FaceEngine::init(&args.engine)?;
    // One file needs no bar; stdout stays the JSON lines either way.
    let bar =
        if args.files.len() > 1 { progress_bar(args.files.len(), "files") } else { indicatif::ProgressBar::hidden() };
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
        bar.suspend(|| println!("{line}"));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// The progress of a long job, drawn on stderr when it is a terminal and hidden
/// when it is piped or redirected (indicatif's stderr target), so that scripts
/// reading stdout or a log see only the results.
fn progress_bar(len: usize, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    let template = format!("{{bar:40}} {{pos}}/{{len}} {what}, {{elapsed}} elapsed, eta {{eta}}");
    bar.set_style(
        indicatif::ProgressStyle::with_template(&template).unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Enrolls `reference` and authenticates `probe` through the server's use cases on a
/// throw-away SQLite database; prints both answers; whether both were approved.
async fn verify(args: faceauth::config::VerifyArgs) -> anyhow::Result<bool> {
    use faceauth::http::ApiError;
    let read = |p: &std::path::Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let (reference, probe) = (read(&args.reference)?, read(&args.probe)?);
    let engine_config = args.engine.clone();
    let engine = tokio::task::spawn_blocking(move || FaceEngine::init(&engine_config)).await??;
    let dir = tempfile::tempdir()?;
    let store =
        faceauth::store::UserStore::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("verify.db").display()))
            .await?;
    let app = faceauth::usecase::FaceAuth::new(engine, store);
    let answer = |result: Result<faceauth::policy::Decision, faceauth::usecase::UseCaseError>| match result {
        Ok(d) => serde_json::json!({"approved": d.approved, "reason": d.reason, "score": d.score}),
        Err(e) => {
            let e = ApiError::from(e);
            serde_json::json!({"approved": false, "reason": e.reason_and_status().0, "error": faceauth::error_chain(&e)})
        }
    };
    let enrolled = answer(app.enroll("verify", reference).await);
    let authenticated = if enrolled["approved"] == true {
        answer(app.authenticate("verify", probe).await)
    } else {
        serde_json::json!({"approved": false, "reason": "NOT_ENROLLED"})
    };
    let approved = authenticated["approved"] == true;
    let report = serde_json::json!({
        "reference": args.reference.display().to_string(),
        "probe": args.probe.display().to_string(),
        "enroll": enrolled,
        "authenticate": authenticated,
        "approved": approved,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(approved)
}

/// Backtests a candidate policy on the recorded decisions and prints the report (JSON).
async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    use faceauth::policy::{Param, PolicyLimits, PolicyRuntime};
    use faceauth::usecase::admin::{ReplayScope, backtest};
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
    let store = args.database.connect().await?;
    let since_ms = args.since_hours.map(|h| faceauth::store::now_ms() - (h as i64) * 3600 * 1000);
    // The backtest reports no progress of its own: a spinner with the time taken.
    let spinner = indicatif::ProgressBar::new_spinner().with_message("replaying recorded decisions");
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let report = backtest(&store.audit_log(), candidate, ReplayScope { since_ms, limit: args.limit, labels }).await;
    spinner.finish_and_clear();
    let report = report?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Runs a labelled list through the pipeline and the policy; prints the figures.
async fn eval(args: EvalArgs) -> anyhow::Result<()> {
    use faceauth::eval::{self, Mode};
    use faceauth::policy::{Param, PolicyLimits, PolicyRuntime};
    if args.mode == Mode::Liveness {
        return eval_liveness(args).await;
    }
    let list = args.list.clone().unwrap_or_else(|| match args.mode {
        Mode::Video | Mode::Liveness => "../shared/videos/index.csv".into(),
        Mode::Pairs | Mode::Card => "../shared/faces/lfw-train/pairs.csv".into(),
    });
    let mut attempts = match args.mode {
        Mode::Video | Mode::Liveness => eval::read_video_index(&list, &args.same_person)?,
        Mode::Pairs | Mode::Card if list.is_dir() => eval::read_folder(&list, &args.same_person)?,
        Mode::Pairs | Mode::Card => eval::read_pairs(&list)?,
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
    let options = eval::RunOptions {
        concurrency: workers,
        cards_dir: args.cards_dir.clone(),
        same_person: args.same_person.clone(),
    };
    let run = eval::run(engine, policy.clone(), args.mode, attempts, &options, move || ticker.inc(1)).await;
    bar.finish_and_clear();
    let results = run.attempts;
    let mut report = eval::Report::new(args.mode, &policy, &results, started.elapsed().as_secs_f64());
    report.impostor_sweep = Some(eval::impostor_sweep(&run.faces, 0.20, 0.50, 0.025));
    if let Some(path) = &args.roc {
        report.write_roc(&results, path).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    write_eval_output(&args, &results, &report, report.text())
}

/// Liveness mode: APCER / BPCER of a liveness policy on ../shared and the simulated attacks.
async fn eval_liveness(args: EvalArgs) -> anyhow::Result<()> {
    use faceauth::policy::{Param, PolicyLimits, PolicyRuntime};
    let shared = args.list.clone().unwrap_or_else(|| "../shared".into());
    let mut engine_config = args.engine.clone();
    // The server's default policy has no liveness: take the liveness policy unless told.
    if engine_config.policy == faceauth::config::EngineConfig::defaults().policy {
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
    let mut presentations = faceauth::eval::liveness::presentations(&shared, &args.attacks);
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
        faceauth::eval::liveness::run(engine, policy.clone(), presentations, workers, move || ticker.inc(1)).await;
    bar.finish_and_clear();
    let report = faceauth::eval::liveness::LivenessReport::new(&policy, &results);
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
