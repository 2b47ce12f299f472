//! The command line's long jobs: a progress bar on a terminal, nothing but the
//! results when piped (issue 12, CLI ergonomics).
#![allow(clippy::expect_used)] // test code: a failed expectation is the test failing

mod common;

use std::process::{Command, Output};

const FILES: [&str; 3] = ["id_card_person_a.jpg", "selfie_person_a.jpg", "two_people.jpg"];

/// The engine's settings (models, ONNX Runtime, the default policy) in the
/// environment of `command`, with warnings only in the log.
fn with_engine(command: &mut Command) -> &mut Command {
    let config = common::engine_config("default-policy");
    command
        .env("FACEAUTH_MODELS_DIR", &config.models_dir)
        .env("FACEAUTH_POLICY", &config.policy)
        .env("FACEAUTH_ONNXRUNTIME_LIB", config.onnxruntime_lib().expect("ort"))
        .env("RUST_LOG", "warn")
}

/// `faceauth inspect` on three fixtures, wrapped by `wrapper` when given (a pty).
fn inspect(wrapper: Option<&str>) -> Output {
    let mut args = vec![env!("CARGO_BIN_EXE_faceauth").to_string(), "inspect".into()];
    args.extend(FILES.iter().map(|f| common::repo_root().join("tests/fixtures").join(f).display().to_string()));
    let mut command = match wrapper {
        // `script` runs the command on a pseudo-terminal and copies what it draws.
        Some(script) => {
            let mut c = Command::new(script);
            c.args(["-qec", &args.join(" "), "/dev/null"]);
            c
        }
        None => {
            let mut c = Command::new(&args[0]);
            c.args(&args[1..]);
            c
        }
    };
    with_engine(&mut command).output().expect("faceauth inspect runs")
}

#[test]
fn inspect_prints_json_lines_when_piped_and_a_bar_on_a_terminal() {
    let piped = inspect(None);
    assert!(piped.status.success(), "{}", String::from_utf8_lossy(&piped.stderr));
    let stdout = String::from_utf8_lossy(&piped.stdout);
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).expect("each stdout line is JSON")).collect();
    assert_eq!(lines.len(), FILES.len(), "{stdout}");
    assert!(lines[2]["faces"].as_array().is_some_and(|f| f.len() == 2), "{}", lines[2]);
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(!stderr.contains("files,"), "a progress bar on a pipe: {stderr}");

    // On a terminal (util-linux `script`; Debian has it) the bar is drawn on stderr.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED (terminal half): no `script` command");
        return;
    }
    let on_terminal = inspect(Some("script"));
    assert!(on_terminal.status.success());
    let drawn = String::from_utf8_lossy(&on_terminal.stdout);
    assert!(drawn.contains("/3 files,"), "no progress bar on a terminal: {drawn}");
    assert_eq!(drawn.matches("\"file\":").count(), FILES.len(), "{drawn}");
}

/// Issue 21: `inspect` exited 0 when every file failed; one analysed file is enough
/// for 0 (each failure is its own JSON line).
#[test]
fn inspect_fails_when_no_file_could_be_analysed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_an_image = dir.path().join("notes.txt");
    std::fs::write(&not_an_image, "not a picture").expect("write");
    let run = |files: &[std::path::PathBuf]| {
        with_engine(Command::new(env!("CARGO_BIN_EXE_faceauth")).arg("inspect").args(files))
            .output()
            .expect("faceauth inspect runs")
    };
    let all_failed = run(std::slice::from_ref(&not_an_image));
    assert!(!all_failed.status.success(), "exit 0 although nothing was analysed");
    assert!(String::from_utf8_lossy(&all_failed.stdout).contains("\"error\""));
    let one_good = run(&[not_an_image, common::repo_root().join("tests/fixtures/selfie_person_a.jpg")]);
    assert!(one_good.status.success(), "{}", String::from_utf8_lossy(&one_good.stderr));
}

/// Issue 21: `replay --data-dir EMPTY` created a database there and reported 0.
#[test]
fn replay_refuses_a_data_directory_without_a_database() {
    let empty = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_faceauth"))
        .args(["replay", "--policy"])
        .arg(common::policy_wasm("default-policy"))
        .arg("--data-dir")
        .arg(empty.path())
        .output()
        .expect("faceauth replay runs");
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no database at"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(empty.path()).expect("read").count(), 0, "files were created");
}

/// Issue 21: `serve --policy-dir EMPTY` logged that "the previous policies keep
/// serving", then exited: there were none.
#[test]
fn serve_with_an_empty_policy_directory_says_that_nothing_serves() {
    let (policies, data) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let out = with_engine(
        Command::new(env!("CARGO_BIN_EXE_faceauth"))
            .arg("serve")
            .env("FACEAUTH_LISTEN", "127.0.0.1:0")
            .env("FACEAUTH_DATA_DIR", data.path())
            .env("FACEAUTH_POLICY_DIR", policies.path()),
    )
    .output()
    .expect("faceauth serve runs");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{log}");
    assert!(!log.contains("keep serving"), "{log}");
    assert!(log.contains("no policy is serving") && log.contains("policies.toml"), "{log}");
}
