//! The one harness of the integration tests: where the repository's artefacts are
//! ([`fixture`], [`policy_wasm`], [`engine_config`], [`shared_dir`]), the API's answers
//! ([`answers`]), the real binary as a subprocess ([`server`]) and the router
//! in-process ([`in_process`]).
#![allow(dead_code, clippy::expect_used)]

use std::path::{Path, PathBuf};

use faceauth_core::usecase::EngineConfig;

pub mod answers;
pub mod in_process;
pub mod metrics;
pub mod postgres;
pub mod server;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ has a parent").to_path_buf()
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = repo_root().join("tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A built policy component; `scripts/setup.sh` builds them.
pub fn policy_wasm(crate_name: &str) -> PathBuf {
    let path = repo_root().join("target/wasm32-wasip2/release").join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(path.exists(), "{} is missing: run scripts/setup.sh (or scripts/test.sh)", path.display());
    path
}

pub fn engine_config(policy_crate: &str) -> EngineConfig {
    let mut config = EngineConfig::defaults();
    config.models_dir = repo_root().join("models");
    config.policy = policy_wasm(policy_crate);
    config.workers = Some(2);
    assert!(
        config.onnxruntime_lib().is_some(),
        "ONNX Runtime is missing under .runtime/: run scripts/setup.sh (or scripts/test.sh)"
    );
    config
}

/// The shared real-data folder, or the test returns at once with a SKIPPED line.
#[allow(unused_macros)] // each test binary compiles this module; not all use it
macro_rules! shared_dir_or_skip {
    () => {
        match common::shared_dir_or_say_skipped() {
            Some(dir) => dir,
            None => return,
        }
    };
}
#[allow(unused_imports)]
pub(crate) use shared_dir_or_skip;

/// The shared real-data folder (`../shared` beside the checkout, or FACEAUTH_SHARED_DIR).
pub fn shared_dir() -> Option<PathBuf> {
    let dir =
        std::env::var_os("FACEAUTH_SHARED_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("../shared"));
    dir.join("faces/deepface/master.csv").exists().then_some(dir)
}

/// [`shared_dir`], or `None` having printed the test's SKIPPED line.
pub fn shared_dir_or_say_skipped() -> Option<PathBuf> {
    let dir = shared_dir();
    if dir.is_none() {
        eprintln!("SKIPPED: ../shared (FACEAUTH_SHARED_DIR) not found");
    }
    dir
}

/// Runs FFmpeg quietly (errors only), overwriting outputs; fails the test if it fails.
pub fn ffmpeg<S: AsRef<std::ffi::OsStr>>(args: &[S]) {
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg (scripts/setup.sh installs it)");
    let args: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
    assert!(status.success(), "ffmpeg {args:?}");
}

/// A JPEG of `selfie_person_a.jpg` tiled `n`x`n`: a slow picture to analyse (6x6,
/// 36 faces: about 0.8 s on a 2-core machine), under the servers' upload limit.
pub fn crowd_of_selfies(n: u32) -> Vec<u8> {
    let selfie = image::load_from_memory(&fixture("selfie_person_a.jpg")).expect("fixture").to_rgb8();
    let (w, h) = selfie.dimensions();
    let mut crowd = image::RgbImage::new(w * n, h * n);
    for i in 0..n * n {
        image::imageops::replace(&mut crowd, &selfie, i64::from(w * (i % n)), i64::from(h * (i / n)));
    }
    let mut jpeg = Vec::new();
    crowd.write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).expect("encode");
    jpeg
}
