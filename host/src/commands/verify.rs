//! `faceauth verify`: enroll one file, authenticate another, through the server's
//! use cases on a throw-away database.

use anyhow::Context;
use faceauth_core::usecase::FaceEngine;

/// Enrolls `reference` and authenticates `probe` through the server's use cases on a
/// throw-away SQLite database; prints both answers; whether both were approved.
pub async fn verify(args: crate::config::VerifyArgs) -> anyhow::Result<bool> {
    let read = |p: &std::path::Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let (reference, probe) = (read(&args.reference)?, read(&args.probe)?);
    let engine_config = args.engine.clone();
    let engine = tokio::task::spawn_blocking(move || FaceEngine::init(&engine_config)).await??;
    let dir = tempfile::tempdir()?;
    let store = faceauth_core::store::UserStore::connect(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("verify.db").display()
    ))
    .await?;
    let app = faceauth_core::usecase::FaceAuth::new(engine, store);
    let answer = |result: Result<faceauth_core::policy::Decision, faceauth_core::usecase::UseCaseError>| match result {
        Ok(d) => serde_json::json!({"approved": d.approved, "reason": d.reason, "score": d.score}),
        Err(e) => serde_json::json!({"approved": false, "reason": e.code(), "error": faceauth_core::error_chain(&e)}),
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
