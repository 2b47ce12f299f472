//! End to end: the real `faceauth` binary on a free port with a temporary SQLite
//! database, driven over HTTP with realistic fixtures (ID cards built from real,
//! MIT-licensed deepface photos; see scripts/fixtures/make_fixtures.py).
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

mod common;

use common::answers::{admin_token_required, assert_approved, auth_rejected, done, enroll_rejected, enrolled};
use common::server::{MAX_UPLOAD, answer, start_server, start_server_with, upload_form};
use reqwest::Method;

#[tokio::test(flavor = "multi_thread")]
async fn enroll_authenticate_and_reset_over_http() {
    // One person enrolled under several names, one per kind of ID picture: the
    // duplicate search (issue 20, host/tests/duplicates.rs) is off for it.
    let server = start_server_with(&[("FACEAUTH_DUPLICATE_SEARCH", "false")]).await;

    // Enrollment from three kinds of ID-card pictures of person A, each with a ghost portrait.
    for (user, card) in [
        ("alice", "id_card_person_a.jpg"),
        ("alice-photographed", "id_card_person_a_photographed.jpg"),
        ("alice-strip", "id_card_person_a_front_back.jpg"),
    ] {
        assert_eq!(server.enroll(user, card).await, (200, enrolled()), "{card}");
    }
    assert_eq!(server.enroll("bob", "id_card_person_b.jpg").await, (200, enrolled()));

    // The same person, from a different photo, against each enrollment.
    for user in ["alice", "alice-photographed", "alice-strip"] {
        let score = assert_approved(&server.authenticate(user, "selfie_person_a.jpg").await);
        assert!(score > 0.4 && score <= 1.0, "{user}: {score}");
    }
    assert_approved(&server.authenticate("bob", "selfie_person_b.jpg").await);
    // The same selfie as a 9 MP phone photo (decoded at half scale): the same answer,
    // and the two people still apart.
    let small_score = assert_approved(&server.authenticate("alice", "selfie_person_a.jpg").await);
    for (user, selfie, same) in [("alice", "selfie_person_a.jpg", true), ("bob", "selfie_person_a.jpg", false)] {
        let photo = image::load_from_memory(&common::fixture(selfie)).expect("fixture").to_rgb8();
        let (w, h) = photo.dimensions();
        let large = image::imageops::resize(&photo, w * 5, h * 5, image::imageops::FilterType::Triangle);
        let mut jpeg = Vec::new();
        large.write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).expect("encode");
        let q = format!("username={user}");
        let answer = server.post("/api/authentificate", Some(&q), "auth_video", Some(jpeg)).await;
        if same {
            let score = assert_approved(&answer);
            assert!((score - small_score).abs() < 0.05, "{score} vs {small_score}");
        } else {
            assert_eq!(answer, (200, auth_rejected("FACE_MISMATCH")));
        }
    }
    // Someone else.
    assert_eq!(server.authenticate("alice", "selfie_person_b.jpg").await, (200, auth_rejected("FACE_MISMATCH")));
    assert_eq!(server.authenticate("bob", "selfie_person_a.jpg").await, (200, auth_rejected("FACE_MISMATCH")));

    // Policy rejections.
    assert_eq!(server.enroll("nobody", "id_card_back_no_face.jpg").await, (200, enroll_rejected("NO_FACE_DETECTED")));
    assert_eq!(server.enroll("couple", "two_people.jpg").await, (200, enroll_rejected("MULTIPLE_FACES_DETECTED")));
    assert_eq!(server.enroll("tiny", "tiny_face_scene.jpg").await, (200, enroll_rejected("FACE_TOO_SMALL")));
    assert_eq!(server.authenticate("alice", "two_people.jpg").await, (200, auth_rejected("MULTIPLE_FACES_DETECTED")));
    assert_eq!(
        server.authenticate("alice", "selfie_person_a_blurred.jpg").await,
        (200, auth_rejected("FACE_TOO_BLURRY"))
    );
    assert_eq!(
        server.authenticate("alice", "id_card_back_no_face.jpg").await,
        (200, auth_rejected("NO_FACE_DETECTED"))
    );
    // Rejected enrollments stored nothing.
    assert_eq!(server.authenticate("couple", "selfie_person_a.jpg").await, (404, auth_rejected("UNKNOWN_USER")));

    // Reset removes everyone.
    assert_eq!(server.send(Method::POST, "/api/reset", None).await, (200, done()));
    assert_eq!(server.authenticate("alice", "selfie_person_a.jpg").await, (404, auth_rejected("UNKNOWN_USER")));
    // And the name is free again.
    assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await, (200, enrolled()));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_request_gets_its_reason_and_status() {
    let server = start_server().await;
    let card = common::fixture("id_card_person_a.jpg");
    let post = |path: &'static str, query: Option<&'static str>, field: &'static str, bytes: Option<Vec<u8>>| {
        let server = &server;
        async move { server.post(path, query, field, bytes).await }
    };

    // Username problems, on both endpoints.
    assert_eq!(
        post("/api/enroll", None, "cin_file", Some(card.clone())).await,
        (400, enroll_rejected("MISSING_USERNAME"))
    );
    assert_eq!(
        post("/api/enroll", Some("username="), "cin_file", Some(card.clone())).await,
        (400, enroll_rejected("EMPTY_USERNAME"))
    );
    assert_eq!(
        post("/api/enroll", Some("username=%20%20"), "cin_file", Some(card.clone())).await,
        (400, enroll_rejected("EMPTY_USERNAME"))
    );
    assert_eq!(
        post("/api/enroll", Some("username=a%00b"), "cin_file", Some(card.clone())).await,
        (400, enroll_rejected("INVALID_USERNAME"))
    );
    // Invalid UTF-8 (`Jos%E9` was stored as "Jos\u{FFFD}", which `Jos%E8` then reached)
    // and invisible characters (zero-width space, bidi override) are refused.
    for name in ["Jos%E9", "ali%E2%80%8Bce", "%E2%80%AEecila"] {
        let q = format!("username={name}");
        assert_eq!(
            server.post("/api/enroll", Some(&q), "cin_file", Some(card.clone())).await,
            (400, enroll_rejected("INVALID_USERNAME")),
            "{name}"
        );
    }
    // One name typed two ways (precomposed, combining accent) is one account.
    assert_eq!(server.enroll("Jos%C3%A9", "id_card_person_a.jpg").await, (200, enrolled()));
    assert_eq!(
        server.enroll("Jose%CC%81", "id_card_person_a.jpg").await,
        (409, enroll_rejected("USERNAME_ALREADY_EXISTS"))
    );
    assert_approved(&server.authenticate("Jose%CC%81", "selfie_person_a.jpg").await);
    assert_eq!(
        post("/api/authentificate", None, "auth_video", Some(card.clone())).await,
        (400, auth_rejected("MISSING_USERNAME"))
    );
    assert_eq!(
        post("/api/authentificate", Some("username="), "auth_video", Some(card.clone())).await,
        (400, auth_rejected("EMPTY_USERNAME"))
    );

    // File problems.
    assert_eq!(
        post("/api/enroll", Some("username=u1"), "cin_file", None).await,
        (400, enroll_rejected("MISSING_FILE"))
    );
    assert_eq!(
        post("/api/enroll", Some("username=u1"), "wrong_field", Some(card.clone())).await,
        (400, enroll_rejected("MISSING_FILE"))
    );
    assert_eq!(
        post("/api/enroll", Some("username=u1"), "cin_file", Some(Vec::new())).await,
        (400, enroll_rejected("EMPTY_FILE"))
    );
    assert_eq!(
        post("/api/enroll", Some("username=u1"), "cin_file", Some(b"%PDF-1.4 not an image".to_vec())).await,
        (415, enroll_rejected("UNSUPPORTED_MEDIA_TYPE"))
    );
    let truncated = card[..card.len() / 3].to_vec();
    assert_eq!(
        post("/api/enroll", Some("username=u1"), "cin_file", Some(truncated)).await,
        (422, enroll_rejected("INVALID_IMAGE"))
    );
    assert_eq!(
        post("/api/enroll", Some("username=u1"), "cin_file", Some(png_claiming(100_000, 100_000))).await,
        (413, enroll_rejected("IMAGE_TOO_LARGE"))
    );
    let mut huge = card.clone();
    huge.resize(MAX_UPLOAD + 1024, 0);
    assert_eq!(
        post("/api/enroll", Some("username=u1"), "cin_file", Some(huge)).await,
        (413, enroll_rejected("FILE_TOO_LARGE"))
    );
    let not_multipart = server.request(Method::POST, "/api/enroll?username=u1").body("plain body");
    assert_eq!(answer(not_multipart).await, (400, enroll_rejected("MALFORMED_REQUEST")));

    // Unknown user, and a username taken twice, also by two simultaneous enrollments.
    assert_eq!(server.authenticate("ghost", "selfie_person_a.jpg").await, (404, auth_rejected("UNKNOWN_USER")));
    // (Person B: person A is enrolled above, as José.)
    let (a, b) =
        tokio::join!(server.enroll("twin", "id_card_person_b.jpg"), server.enroll("twin", "id_card_person_b.jpg"));
    let mut answers = vec![a, b];
    answers.sort_by_key(|x| x.0);
    assert_eq!(answers, vec![(200, enrolled()), (409, enroll_rejected("USERNAME_ALREADY_EXISTS"))]);
    assert_eq!(server.enroll("twin", "id_card_person_b.jpg").await, (409, enroll_rejected("USERNAME_ALREADY_EXISTS")));
    // The first enrollment is intact.
    assert_approved(&server.authenticate("twin", "selfie_person_b.jpg").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_requires_the_admin_token_when_one_is_configured() {
    let server = start_server_with(&[("FACEAUTH_ADMIN_TOKEN", "s3cret-token")]).await;
    assert_eq!(server.enroll("carol", "id_card_person_a.jpg").await, (200, enrolled()));
    let reset = || server.request(Method::POST, "/api/reset");
    for auth in [None, Some("Bearer wrong"), Some("s3cret-token")] {
        let mut request = reset();
        if let Some(a) = auth {
            request = request.header("authorization", a);
        }
        assert_eq!(answer(request).await, (401, admin_token_required()), "{auth:?}");
    }
    // Nothing was removed.
    assert_approved(&server.authenticate("carol", "selfie_person_a.jpg").await);
    assert_eq!(answer(reset().header("authorization", "Bearer s3cret-token")).await, (200, done()));
    assert_eq!(server.authenticate("carol", "selfie_person_a.jpg").await, (404, auth_rejected("UNKNOWN_USER")));
}

/// Selfie videos (fixtures from tests/fixtures/make_videos.sh), hostile streams and
/// a hanging or crashing decoder; the private temporary directory must stay empty.
#[tokio::test(flavor = "multi_thread")]
async fn authenticates_from_video_and_contains_bad_streams() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tmp_path = tmp.path().to_str().expect("utf-8 path").to_string();
    let server = start_server_with(&[("TMPDIR", &tmp_path)]).await;
    // ONNX Runtime leaves a session-id file there at start-up; requests must add nothing.
    let at_start = listing(tmp.path());
    assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await, (200, enrolled()));
    assert_eq!(server.enroll("bob", "id_card_person_b.jpg").await, (200, enrolled()));

    let score = assert_approved(&server.authenticate("alice", "video_person_a.mp4").await);
    assert!(score >= 0.45, "{score}");
    assert_approved(&server.authenticate("bob", "video_person_b.webm").await);
    // HEVC in QuickTime with a display rotation, as iPhones record.
    assert_approved(&server.authenticate("alice", "video_person_a_hevc.mov").await);
    assert_eq!(server.authenticate("alice", "video_person_b.webm").await, (200, auth_rejected("FACE_MISMATCH")));
    assert_eq!(server.authenticate("bob", "video_person_a.mp4").await, (200, auth_rejected("FACE_MISMATCH")));
    // Person B appears in the second half only: caught.
    assert_eq!(server.authenticate("alice", "video_person_a_then_b.mp4").await, (200, auth_rejected("FACE_MISMATCH")));
    assert_eq!(server.authenticate("alice", "video_no_face.mp4").await, (200, auth_rejected("NO_FACE_DETECTED")));
    // A JPEG named like a video is judged by its bytes: a still image.
    assert_approved(&server.authenticate("alice", "selfie_person_a.jpg").await);

    let video = common::fixture("video_person_a.mp4");
    let q = Some("username=alice");
    let truncated = video[..video.len() * 2 / 5].to_vec();
    assert_eq!(
        server.post("/api/authentificate", q, "auth_video", Some(truncated)).await,
        (422, auth_rejected("INVALID_VIDEO"))
    );
    let mut corrupt = video[..64].to_vec();
    corrupt.extend((0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    assert_eq!(
        server.post("/api/authentificate", q, "auth_video", Some(corrupt)).await,
        (422, auth_rejected("INVALID_VIDEO"))
    );
    assert_eq!(server.authenticate("alice", "video_huge_frames.mp4").await, (413, auth_rejected("VIDEO_TOO_LARGE")));
    assert_eq!(server.authenticate("alice", "video_one_hour.mp4").await, (413, auth_rejected("VIDEO_TOO_LONG")));
    // ID documents are photos or scans, not videos.
    assert_eq!(server.enroll("carol", "video_person_a.mp4").await, (415, enroll_rejected("UNSUPPORTED_MEDIA_TYPE")));
    assert_eq!(listing(tmp.path()), at_start, "temporary files left behind");
    drop(server);

    // A decoder that hangs is killed at its time limit; one that crashes is an invalid video.
    let scripts = tempfile::tempdir().expect("tempdir");
    let hang = scripts.path().join("hang.sh");
    let crash = scripts.path().join("crash.sh");
    std::fs::write(&hang, "#!/bin/sh\nexec sleep 600\n").expect("script");
    std::fs::write(&crash, "#!/bin/sh\nkill -SEGV $$\n").expect("script");
    for script in [&hang, &crash] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    for (probe, reason, status) in [(&hang, "VIDEO_DECODE_TIMEOUT", 422), (&crash, "INVALID_VIDEO", 422)] {
        let server = start_server_with(&[
            ("TMPDIR", &tmp_path),
            // The decoder (the container's header is read in-process: no FFprobe for an MP4).
            ("FACEAUTH_FFMPEG", probe.to_str().expect("path")),
            ("FACEAUTH_VIDEO_DECODER_TIMEOUT", "2"),
        ])
        .await;
        let at_start = listing(tmp.path());
        assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await, (200, enrolled()));
        assert_eq!(server.authenticate("alice", "video_person_a.mp4").await, (status, auth_rejected(reason)));
        // Still serving.
        assert_approved(&server.authenticate("alice", "selfie_person_a.jpg").await);
        assert_eq!(listing(tmp.path()), at_start, "temporary files left behind");
    }
}

/// The liveness policy on the real live and spoof samples of `../shared/liveness`
/// (not committed: no licence for some). Skips, saying so, without them.
#[tokio::test(flavor = "multi_thread")]
async fn liveness_policy_refuses_prints_and_screen_replays() {
    let shared = common::shared_dir_or_skip!();
    let policy = common::policy_wasm("liveness-policy");
    let server = start_server_with(&[("FACEAUTH_POLICY", policy.to_str().expect("path"))]).await;
    let live = |name: &str| std::fs::read(shared.join("liveness").join(name)).expect("sample");
    let enroll = |bytes: Vec<u8>| server.post("/api/enroll", Some("username=sample"), "cin_file", Some(bytes));
    assert_eq!(enroll(live("live/silentface__image_T1.jpg")).await, (200, enrolled()));
    let auth = |bytes: Vec<u8>| server.post("/api/authentificate", Some("username=sample"), "auth_video", Some(bytes));
    assert_approved(&auth(live("live/silentface__image_T1.jpg")).await);
    for spoof in ["spoof/silentface__image_F1.jpg", "spoof/silentface__image_F2.jpg"] {
        assert_eq!(auth(live(spoof)).await, (200, auth_rejected("LIVENESS_CHECK_FAILED")), "{spoof}");
    }
}

fn listing(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> =
        std::fs::read_dir(dir).expect("read dir").filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    files
}

/// A valid PNG signature and header declaring a `width`x`height` image, and no pixels.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    png.extend_from_slice(&[0, 0, 0, 0]);
    png.extend_from_slice(b"IEND");
    png.extend_from_slice(&crc32(b"IEND").to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A photo moved in front of the camera (the committed zoom-and-pan clip of a still
/// selfie, a digital replay) passes the default policy and even passive liveness, but
/// not a liveness variant that asks for a movement (`require-video-cue = 1`, for
/// capture flows that tell the user to turn their head): it never blinks, barely
/// turns and moves rigidly, as a flat picture does.
#[tokio::test(flavor = "multi_thread")]
async fn a_liveness_variant_requiring_movement_refuses_a_photo_moved_in_front_of_the_camera() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(common::policy_wasm("liveness-policy"), dir.path().join("liveness_policy.wasm")).expect("copy");
    std::fs::write(
        dir.path().join("policies.toml"),
        "[[variant]]\nname = \"challenge\"\ncomponent = \"liveness_policy.wasm\"\nweight = 1\nparams = { require-video-cue = 1 }\n",
    )
    .expect("catalog");
    let server = start_server_with(&[("FACEAUTH_POLICY_DIR", dir.path().to_str().expect("path"))]).await;
    assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await, (200, enrolled()));
    assert_eq!(server.authenticate("alice", "video_person_a.mp4").await, (200, auth_rejected("LIVENESS_CHECK_FAILED")));
}

/// Issue 11, defect 1: a client that hangs up while its upload is analysed must not
/// make other people's requests fail. The pool's places are held by the analysis
/// itself, so while it runs others get a fast 503 (retry later), then their answer;
/// before the fix they got 500 "no idle face analyzer".
#[tokio::test(flavor = "multi_thread")]
async fn a_client_hanging_up_mid_analysis_leaves_others_a_503_not_a_500() {
    let server = start_server_with(&[("FACEAUTH_WORKERS", "1"), ("FACEAUTH_MAX_QUEUED", "0")]).await;
    assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await, (200, enrolled()));
    // A slow picture: the selfie tiled 6x6 (36 faces, about 0.8 s of analysis here).
    let selfie = image::load_from_memory(&common::fixture("selfie_person_a.jpg")).expect("fixture").to_rgb8();
    let (w, h) = selfie.dimensions();
    let mut crowd = image::RgbImage::new(w * 6, h * 6);
    for i in 0..36 {
        image::imageops::replace(&mut crowd, &selfie, i64::from(w * (i % 6)), i64::from(h * (i / 6)));
    }
    let mut jpeg = Vec::new();
    crowd.write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).expect("encode");
    assert!(jpeg.len() < MAX_UPLOAD, "{}", jpeg.len());
    let authenticate = |bytes: Vec<u8>| {
        server.request(Method::POST, "/api/authentificate?username=alice").multipart(upload_form("auth_video", bytes))
    };
    let hung_up = authenticate(jpeg).timeout(std::time::Duration::from_millis(300)).send().await;
    assert!(hung_up.is_err(), "the picture must take longer than the client waits: {hung_up:?}");
    // Still busy with it: a 503 that says when to come back.
    let busy = authenticate(common::fixture("selfie_person_a.jpg")).send().await.expect("answer");
    assert_eq!(busy.status().as_u16(), 503);
    assert_eq!(busy.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    assert_eq!(busy.json::<serde_json::Value>().await.expect("json"), auth_rejected("SERVER_BUSY"));
    let mut statuses = vec![503];
    loop {
        let answer = server.authenticate("alice", "selfie_person_a.jpg").await;
        statuses.push(answer.0);
        assert!(answer.0 == 200 || answer.0 == 503, "{answer:?} after {statuses:?}");
        if answer.0 == 200 {
            assert_approved(&answer);
            break;
        }
        assert_eq!(answer.1["DecisionReason"], "SERVER_BUSY", "{answer:?}");
        assert!(statuses.len() < 600, "never answered: {statuses:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(statuses.len() > 1, "the hung-up analysis must still hold the only worker: {statuses:?}");
}

/// Issue 11, defect 3: a stalled upload held the process forever after SIGTERM, and a
/// second signal was ignored. The drain is bounded by `--shutdown-grace`; a second
/// signal exits at once.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_is_bounded_by_the_grace_and_a_second_signal() {
    use tokio::io::AsyncWriteExt;
    async fn stalled_upload(server: &common::server::Server) -> tokio::net::TcpStream {
        let addr = server.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST /api/authentificate?username=a HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: multipart/form-data; boundary=X\r\nContent-Length: 100000\r\n\r\n--X\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        // Let the server start reading the body it will never fully get.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        stream
    }
    let mut server = start_server_with(&[("FACEAUTH_SHUTDOWN_GRACE", "1")]).await;
    let _stalled = stalled_upload(&server).await;
    server.signal("TERM");
    let exited = server.exited_within(std::time::Duration::from_secs(10)).await;
    assert!(exited.is_some(), "still running 10 s after SIGTERM with a 1 s grace");

    let mut server = start_server_with(&[("FACEAUTH_SHUTDOWN_GRACE", "600")]).await;
    let _stalled = stalled_upload(&server).await;
    server.signal("TERM");
    assert!(server.exited_within(std::time::Duration::from_millis(500)).await.is_none(), "the grace is honoured");
    server.signal("INT");
    let exited = server.exited_within(std::time::Duration::from_secs(5)).await;
    assert!(exited.is_some(), "a second signal must exit at once");
}

/// Issue 11, defect 4: a decompression bomb inside the byte limit (a few dozen KB of
/// PNG that decodes to 64 megapixels) is refused from its header, before any pixel is
/// decoded, by the documented megapixel cap.
#[tokio::test(flavor = "multi_thread")]
async fn a_decompression_bomb_is_refused_before_it_is_decoded() {
    let server = start_server().await;
    let bomb = image::GrayImage::new(8000, 8000);
    let mut png = Vec::new();
    bomb.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).expect("encode");
    assert!(png.len() < 512 * 1024, "{} bytes", png.len());
    // Before the cap it was decoded (64 MB grey, 192 MB RGB) and searched for faces.
    let answer = server.post("/api/enroll", Some("username=bomb"), "cin_file", Some(png)).await;
    assert_eq!(answer, (413, enroll_rejected("IMAGE_TOO_LARGE")));
}

/// Issue 11, defect 6: 20 simultaneous enrollments of one name stored one user but
/// left 18 "approved" enrollments in the audit log. What is recorded is what was
/// finally answered: one approval, the others refused as a taken name. (16 here: the
/// test server takes 18 requests at once, 2 workers and 16 queued.)
#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_records_what_was_answered_when_enrollments_race() {
    let server = start_server().await;
    let card = common::fixture("id_card_person_a.jpg");
    let answers = futures::future::join_all(
        (0..16).map(|_| server.post("/api/enroll", Some("username=racer"), "cin_file", Some(card.clone()))),
    )
    .await;
    let approved = answers.iter().filter(|a| a.0 == 200 && a.1 == enrolled()).count();
    assert_eq!(approved, 1, "{answers:?}");
    assert!(
        answers.iter().all(|a| a.0 == 200 || *a == (409, enroll_rejected("USERNAME_ALREADY_EXISTS"))),
        "{answers:?}"
    );
    let (status, log) = server.get("/api/admin/decisions?endpoint=enroll&limit=100").await;
    assert_eq!(status, 200, "{log}");
    let records = log["decisions"].as_array().cloned().unwrap_or_default();
    let recorded_approvals = records.iter().filter(|r| r["approved"] == true && r["username"] == "racer").count();
    assert_eq!(recorded_approvals, 1, "{records:?}");
}

/// The harness (host/tests/common/server.rs) finds the server's port in its log line,
/// whatever timestamp, level and colour codes come with it.
#[test]
fn the_harness_reads_the_listening_address_through_colours_and_prefixes() {
    use common::server::listening_address;
    let addr: std::net::SocketAddr = "127.0.0.1:40123".parse().expect("addr");
    for line in [
        "2026-01-01T00:00:00.000000Z  INFO listening on http://127.0.0.1:40123",
        "\u{1b}[2m2026-01-01T00:00:00.000000Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m listening on http://127.0.0.1:40123",
        "INFO listening on http://\u{1b}[1m127.0.0.1:40123\u{1b}[0m",
        "listening on http://127.0.0.1:40123/ (ready)",
    ] {
        assert_eq!(listening_address(line), Some(addr), "{line:?}");
    }
    assert_eq!(listening_address("INFO models: /x (embedding y)"), None);
    assert_eq!(listening_address("listening on http://not-an-address"), None);
}

/// A server that exits before it listens fails its test at once, with what it said,
/// instead of at the harness's start-up deadline.
#[tokio::test(flavor = "multi_thread")]
async fn the_harness_fails_at_once_on_a_server_that_exits_before_listening() {
    let started = std::time::Instant::now();
    let Err(failed) = tokio::spawn(start_server_with(&[("FACEAUTH_MODELS_DIR", "/nonexistent/models")])).await else {
        panic!("the harness must fail on a server that cannot start");
    };
    let message = failed.into_panic().downcast::<String>().map(|m| *m).unwrap_or_default();
    assert!(message.contains("without listening"), "{message}");
    assert!(message.contains("/nonexistent/models"), "the server's own words: {message}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
}

/// Issue 11, security: failed authentications per username are limited (here 3 in
/// the window): the next attempt is refused 429 TOO_MANY_ATTEMPTS with Retry-After,
/// even with the right face, before any analysis; other usernames are not affected.
#[tokio::test(flavor = "multi_thread")]
async fn failed_authentications_are_limited_per_username() {
    let server = start_server_with(&[("FACEAUTH_MAX_FAILED_ATTEMPTS", "3"), ("FACEAUTH_ATTEMPT_WINDOW", "600")]).await;
    assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await, (200, enrolled()));
    assert_eq!(server.enroll("bob", "id_card_person_b.jpg").await, (200, enrolled()));
    // An approved attempt between failures starts the count again.
    for _ in 0..2 {
        assert_eq!(server.authenticate("alice", "selfie_person_b.jpg").await, (200, auth_rejected("FACE_MISMATCH")));
    }
    assert_approved(&server.authenticate("alice", "selfie_person_a.jpg").await);
    for _ in 0..3 {
        assert_eq!(server.authenticate("alice", "selfie_person_b.jpg").await, (200, auth_rejected("FACE_MISMATCH")));
    }
    let response = server
        .request(reqwest::Method::POST, "/api/authentificate?username=alice")
        .multipart(common::server::upload_form("auth_video", common::fixture("selfie_person_a.jpg")))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 =
        response.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds in Retry-After");
    assert!((1..=600).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(response.json::<serde_json::Value>().await.expect("json"), auth_rejected("TOO_MANY_ATTEMPTS"));
    assert_approved(&server.authenticate("bob", "selfie_person_b.jpg").await);
}

/// Issue 11, defect 2: sockets that send half a request exhausted the file
/// descriptors ("accept error: Too many open files") and /health stopped answering.
/// With 256 descriptors and 1100 such sockets: the server closes each after the
/// header timeout, keeps accepting, and answers /health and an enrollment.
#[tokio::test(flavor = "multi_thread")]
async fn half_sent_requests_cannot_exhaust_the_server() {
    use std::io::Write;
    let server = common::server::start_server_under(
        &["prlimit", "--nofile=256:256", "--"],
        &[("FACEAUTH_MAX_CONNECTIONS", "128"), ("FACEAUTH_HEADER_TIMEOUT", "1")],
    )
    .await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut sockets = Vec::new();
    for _ in 0..1100 {
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            let _ = s.write_all(b"POST /api/enroll?username=x HTTP/1.1\r\nHost: x\r\n");
            sockets.push(s);
        }
    }
    assert!(sockets.len() > 256, "only {} sockets opened", sockets.len());
    // Every half-sent request is closed by the server (read: end of stream or an error answer).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut open = sockets.len();
    while open > 0 && std::time::Instant::now() < deadline {
        open = 0;
        for s in &mut sockets {
            use std::io::Read;
            s.set_read_timeout(Some(std::time::Duration::from_millis(1))).expect("timeout");
            let mut buf = [0u8; 64];
            match s.read(&mut buf) {
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    open += 1
                }
                _ => {}
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(open, 0, "{open} half-sent requests still held by the server");
    // The sockets are still open on our side: the server freed its own descriptors.
    assert_eq!(server.get("/health").await, (200, serde_json::json!({"status": "ok"})));
    assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await, (200, enrolled()));
    drop(sockets);
}

/// Issue 12: every answer carries `x-request-id`; the audit log records the
/// decision under that id; a client's own short id is kept, a long one replaced.
#[tokio::test(flavor = "multi_thread")]
async fn every_answer_carries_its_request_id_and_the_audit_log_the_same() {
    let server = start_server().await;
    let id_of = |r: &reqwest::Response| {
        r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string).expect("x-request-id")
    };
    let enroll = server
        .request(Method::POST, "/api/enroll?username=alice")
        .header("x-request-id", "client-chosen-42")
        .multipart(upload_form("cin_file", common::fixture("id_card_person_a.jpg")))
        .send()
        .await
        .expect("request");
    assert_eq!(id_of(&enroll), "client-chosen-42");
    let auth = server
        .request(Method::POST, "/api/authentificate?username=alice")
        .header("x-request-id", "x".repeat(200))
        .multipart(upload_form("auth_video", common::fixture("selfie_person_a.jpg")))
        .send()
        .await
        .expect("request");
    let server_made = id_of(&auth);
    assert_eq!(server_made.len(), 32, "{server_made}");
    for (method, path) in [(Method::GET, "/health"), (Method::GET, "/no/such/path"), (Method::POST, "/api/enroll")] {
        let r = server.request(method, path).send().await.expect("request");
        assert!(!id_of(&r).is_empty(), "{path}");
    }
    let (status, decisions) = server.get("/api/admin/decisions").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> =
        decisions["decisions"].as_array().expect("list").iter().filter_map(|d| d["request_id"].as_str()).collect();
    assert!(ids.contains(&"client-chosen-42") && ids.contains(&server_made.as_str()), "{ids:?}");
}

/// Issue 12: `faceauth verify A B` runs the server's use cases on two files and
/// prints both answers; the exit status says approved (0) or refused (3).
#[test]
fn verify_enrolls_one_file_and_authenticates_the_other() {
    let config = common::engine_config("default-policy");
    let run = |reference: &str, probe: &str| {
        let fixture = |name: &str| common::repo_root().join("tests/fixtures").join(name);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_faceauth"))
            .arg("verify")
            .arg(fixture(reference))
            .arg(fixture(probe))
            .env("FACEAUTH_MODELS_DIR", &config.models_dir)
            .env("FACEAUTH_POLICY", &config.policy)
            .env("FACEAUTH_ONNXRUNTIME_LIB", config.onnxruntime_lib().expect("ort"))
            .output()
            .expect("faceauth verify runs");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
        (out.status.code(), report)
    };
    let (code, report) = run("id_card_person_a.jpg", "video_person_a.mp4");
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["authenticate"]["reason"], "AUTHENTIFICATION_SUCCESS", "{report}");
    assert!(report["authenticate"]["score"].as_f64().is_some_and(|s| s > 0.4), "{report}");
    let (code, report) = run("id_card_person_a.jpg", "selfie_person_b.jpg");
    assert_eq!((code, &report["authenticate"]["reason"]), (Some(3), &serde_json::json!("FACE_MISMATCH")), "{report}");
    let (code, report) = run("id_card_back_no_face.jpg", "selfie_person_a.jpg");
    assert_eq!((code, &report["enroll"]["reason"]), (Some(3), &serde_json::json!("NO_FACE_DETECTED")), "{report}");
}

/// Issue 12, metrics: `/metrics` counts every answer by route template, status and
/// reason (4xx and 503 included), times each stage, and shows the vision pool's
/// busy workers and queue while they are taken. One worker and one queue place: a
/// slow picture takes the worker, a second upload waits, a third is refused 503.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_refusals_and_overload_by_route_status_and_reason_and_show_the_pool() {
    use common::metrics::Scrape;
    use std::time::{Duration, Instant};
    const REQUESTS: &str = "faceauth_http_requests_total";
    let server = start_server_with(&[("FACEAUTH_WORKERS", "1"), ("FACEAUTH_MAX_QUEUED", "1")]).await;
    let scrape = || async {
        let response = server.request(Method::GET, "/metrics").send().await.expect("metrics");
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
        assert_eq!(content_type.as_deref(), Some("text/plain; version=0.0.4; charset=utf-8"));
        Scrape(response.text().await.expect("text"))
    };
    let gauge = |s: &Scrape, name: &str| s.sum(name, &[]).unwrap_or_else(|| panic!("no gauge {name}: {}", s.0));
    let start = scrape().await;
    for (name, value) in [
        ("faceauth_vision_workers", 1.0),
        ("faceauth_vision_queue_limit", 1.0),
        ("faceauth_vision_workers_busy", 0.0),
        ("faceauth_vision_queue_depth", 0.0),
        ("faceauth_vision_admitted_requests", 0.0),
    ] {
        assert_eq!(gauge(&start, name), value, "{name}");
    }

    // Refusals: a bad request, an unknown path, an admin 404 under its route template.
    let (status, body) =
        server.post("/api/enroll", None, "cin_file", Some(common::fixture("id_card_person_a.jpg"))).await;
    assert_eq!((status, body), (400, enroll_rejected("MISSING_USERNAME")));
    assert_eq!(server.get("/no/such/path").await.0, 404);
    assert_eq!(server.send(Method::DELETE, "/api/admin/users/nobody", None).await.0, 404);
    assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await, (200, enrolled()));
    assert_approved(&server.authenticate("alice", "video_person_a.mp4").await);

    // Overload. The slow picture holds the only worker...
    let crowd = common::crowd_of_selfies(6);
    let authenticate = |bytes: Vec<u8>| {
        server.request(Method::POST, "/api/authentificate?username=alice").multipart(upload_form("auth_video", bytes))
    };
    let slow = tokio::spawn(authenticate(crowd).send());
    let wait_for = |name: &'static str| async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = scrape().await;
            if gauge(&s, name) >= 1.0 {
                return s;
            }
            assert!(Instant::now() < deadline, "{name} never reached 1: {}", s.0);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let running = wait_for("faceauth_vision_workers_busy").await;
    assert_eq!(gauge(&running, "faceauth_vision_workers_busy"), 1.0);
    // ... a second upload takes the queue's place and waits for it ...
    let queued = tokio::spawn(authenticate(common::fixture("selfie_person_a.jpg")).send());
    let waiting = wait_for("faceauth_vision_queue_depth").await;
    assert_eq!(gauge(&waiting, "faceauth_vision_admitted_requests"), 2.0, "{}", waiting.0);
    assert_eq!(gauge(&waiting, "faceauth_vision_workers_busy"), 1.0, "{}", waiting.0);
    // ... and a third is refused.
    let busy = authenticate(common::fixture("selfie_person_a.jpg")).send().await.expect("answer");
    assert_eq!(busy.status().as_u16(), 503);
    assert_eq!(busy.json::<serde_json::Value>().await.expect("json"), auth_rejected("SERVER_BUSY"));
    assert!(!slow.is_finished(), "the slow picture finished before the overload was measured: make it slower");
    let slow = slow.await.expect("task").expect("answer");
    assert_eq!(slow.status().as_u16(), 200);
    assert_approved(&answer(authenticate(common::fixture("selfie_person_a.jpg"))).await);
    let queued = queued.await.expect("task").expect("answer");
    assert_eq!(queued.status().as_u16(), 200, "the queued upload is answered once the worker is free");

    let end = scrape().await;
    let requests = |route: &str, status: &str, reason: &str| {
        end.count(REQUESTS, &[("route", route), ("status", status), ("reason", reason)])
    };
    assert_eq!(requests("/api/enroll", "400", "MISSING_USERNAME"), 1.0, "{}", end.0);
    assert_eq!(requests("unmatched", "404", "NOT_FOUND"), 1.0, "{}", end.0);
    assert_eq!(requests("/api/admin/users/{username}", "404", "ERROR_DETECTED"), 1.0, "{}", end.0);
    assert_eq!(requests("/api/authentificate", "503", "SERVER_BUSY"), 1.0, "{}", end.0);
    // The video, the queued upload and the last one; the crowd is refused (several large faces).
    assert_eq!(requests("/api/authentificate", "200", "AUTHENTIFICATION_SUCCESS"), 3.0, "{}", end.0);
    assert_eq!(requests("/api/authentificate", "200", "MULTIPLE_FACES_DETECTED"), 1.0, "{}", end.0);
    assert_eq!(requests("/api/enroll", "200", "ENROLLED_AS_USER"), 1.0, "{}", end.0);
    // The scrapes themselves, under their route.
    assert!(requests("/metrics", "200", "METRICS") >= 3.0, "{}", end.0);
    // Every answer has a latency, in seconds.
    let answered = end.count(REQUESTS, &[("route", "/api/authentificate")]);
    let timed = end.count("faceauth_http_request_duration_seconds_count", &[("route", "/api/authentificate")]);
    assert_eq!(timed, answered, "{}", end.0);
    assert!(
        end.0.contains(
            "faceauth_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/authentificate\",le=\"0.05\"}"
        ),
        "{}",
        end.0
    );
    // The stages: four stills decoded (the card, the crowd, two selfies), one video
    // sampled, every picture and frame searched, each face measured, each decision timed.
    let stage = |name: &str| end.count("faceauth_stage_duration_seconds_count", &[("stage", name)]);
    assert_eq!(stage("decode"), 4.0, "{}", end.0);
    assert_eq!(stage("decode_video"), 1.0, "{}", end.0);
    assert!(stage("detect") >= 4.0 + 2.0, "{}", end.0);
    assert!(stage("landmarks") >= stage("embed") && stage("embed") >= 6.0, "{}", end.0);
    assert_eq!(stage("liveness"), 0.0, "the default policy asks for no liveness: {}", end.0);
    assert_eq!(stage("policy"), 5.0, "{}", end.0);
    // Per request at least the user lookup and the audit record.
    assert!(stage("store") >= 2.0 * 5.0, "{}", end.0);
    assert!(end.count("faceauth_stage_duration_seconds_sum", &[("stage", "embed")]) > 0.0, "{}", end.0);
    // The decisions, by variant, as before.
    let decisions = end.count(
        "faceauth_decisions_total",
        &[("endpoint", "authenticate"), ("role", "answer"), ("decision", "approved")],
    );
    assert_eq!(decisions, 3.0, "{}", end.0);
    // And the pool is free again.
    for name in ["faceauth_vision_workers_busy", "faceauth_vision_queue_depth", "faceauth_vision_admitted_requests"] {
        assert_eq!(gauge(&end, name), 0.0, "{name}: {}", end.0);
    }
}
