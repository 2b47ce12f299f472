//! Issue 18, item 4: "a video costs what its analysed frames cost". A clip is decoded
//! by one process, FFmpeg: its container header (size, duration, frames, hence the
//! decoding budget) is read by the server itself, FFprobe is not started for a clip
//! whose container it understands. The decoder keeps its limits: killed at its time
//! limit, a crash is an invalid video, no temporary file left behind.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::answers::{assert_approved, auth_rejected, enrolled};
use common::server::start_server_with;

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir).expect("read dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    files
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// FFprobe is not started for an MP4 (it would leave a mark and fail); the clip is
/// still decoded, analysed and approved.
#[tokio::test(flavor = "multi_thread")]
async fn a_clip_is_decoded_by_one_process() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scripts = tempfile::tempdir().expect("tempdir");
    let mark = scripts.path().join("ffprobe-ran");
    let probe = script(scripts.path(), "ffprobe.sh", &format!("touch '{}'\nexit 1", mark.display()));
    let server = start_server_with(&[
        ("TMPDIR", tmp.path().to_str().expect("utf-8")),
        ("FACEAUTH_FFPROBE", probe.to_str().expect("utf-8")),
    ])
    .await;
    let at_start = listing(tmp.path());
    assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await, (200, enrolled()));
    assert_approved(&server.authenticate("alice", "video_person_a.mp4").await);
    assert!(!mark.exists(), "FFprobe was started");
    assert_eq!(listing(tmp.path()), at_start, "temporary files left behind");
}

/// The decoder that runs now, FFmpeg, hanging: killed at its time limit; crashing: an
/// invalid video. The server goes on serving, nothing is left in the temporary folder.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_or_crashing_decoder_is_contained() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scripts = tempfile::tempdir().expect("tempdir");
    let hang = script(scripts.path(), "hang.sh", "exec sleep 600");
    let crash = script(scripts.path(), "crash.sh", "kill -SEGV $$");
    for (decoder, reason) in [(&hang, "VIDEO_DECODE_TIMEOUT"), (&crash, "INVALID_VIDEO")] {
        let server = start_server_with(&[
            ("TMPDIR", tmp.path().to_str().expect("utf-8")),
            ("FACEAUTH_FFMPEG", decoder.to_str().expect("utf-8")),
            ("FACEAUTH_VIDEO_DECODER_TIMEOUT", "2"),
        ])
        .await;
        let at_start = listing(tmp.path());
        assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await, (200, enrolled()));
        assert_eq!(server.authenticate("alice", "video_person_a.mp4").await, (422, auth_rejected(reason)));
        assert_approved(&server.authenticate("alice", "selfie_person_a.jpg").await);
        assert_eq!(listing(tmp.path()), at_start, "temporary files left behind");
    }
}
