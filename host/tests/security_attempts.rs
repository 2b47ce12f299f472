//! Issue 22 (security), the attempt limit and usernames, against the real binary:
//! concurrent guesses raced the limit (item 4), a full disk made it fail open
//! (item 5), blank pictures locked a user out (item 8), and look-alike usernames
//! enrolled as new accounts (item 12).
#![allow(clippy::expect_used)] // test code: a failed expectation is the test failing

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::answers::{assert_approved, auth_rejected, enroll_rejected, enrolled};
use common::postgres::{ScratchDatabase, postgres_admin_url};
use common::server::{Server, start_server, start_server_with};

/// Authentication decisions answered (not shadows) for `username`, oldest first,
/// as (approved, reason), through `server`'s admin API.
async fn recorded_authentications(server: &Server, username: &str) -> Vec<(bool, String)> {
    let (status, body) = server.get("/api/admin/decisions?endpoint=authenticate&shadow=false&limit=10000").await;
    assert_eq!(status, 200, "{body}");
    body["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .filter(|d| d["username"] == username)
        .map(|d| (d["approved"] == true, d["reason"].as_str().unwrap_or_default().to_string()))
        .collect()
}

/// 20 wrong selfies for `username` at once, spread over `servers`; the answers by
/// status, each checked for its shape.
async fn twenty_wrong_selfies(servers: &[&Server], username: &str) -> BTreeMap<u16, usize> {
    let guesses = (0..20).map(|i| servers[i % servers.len()].authenticate(username, "selfie_person_b.jpg"));
    let mut counts = BTreeMap::new();
    for (status, body) in futures::future::join_all(guesses).await {
        match status {
            200 => assert_eq!(body, auth_rejected("FACE_MISMATCH")),
            429 => assert_eq!(body, auth_rejected("TOO_MANY_ATTEMPTS")),
            // The worker queue full: not analysed either.
            503 => assert_eq!(body, auth_rejected("SERVER_BUSY")),
            other => panic!("unexpected {other} {body}"),
        }
        *counts.entry(status).or_default() += 1;
    }
    counts
}

/// Item 4: after an approval, 20 wrong selfies at once: 18 were analysed and
/// recorded against a limit of 5. Each attempt is now reserved before its analysis.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_wrong_selfies_are_analysed_at_most_the_limit() {
    let server = start_server_with(&[("FACEAUTH_MAX_FAILED_ATTEMPTS", "5")]).await;
    assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await, (200, enrolled()));
    assert_approved(&server.authenticate("alice", "selfie_person_a.jpg").await);

    let counts = twenty_wrong_selfies(&[&server], "alice").await;
    assert_eq!(counts, BTreeMap::from([(200, 5), (429, 15)]), "5 analysed, 15 refused before any analysis");
    let recorded = recorded_authentications(&server, "alice").await;
    let refused: Vec<_> = recorded.iter().filter(|(approved, _)| !approved).collect();
    assert_eq!(refused.len(), 5, "{recorded:?}");
    // The limit is reached: the right face waits too.
    let (status, body) = server.authenticate("alice", "selfie_person_a.jpg").await;
    assert_eq!((status, body), (429, auth_rejected("TOO_MANY_ATTEMPTS")));
}

/// Item 4 across replicas: the reservation is taken under a PostgreSQL advisory
/// lock per username, so two replicas on one database analyse 5 of 20 between them.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_wrong_selfies_on_two_replicas_are_analysed_at_most_the_limit() {
    let Some(admin_url) = postgres_admin_url() else { return };
    let db = ScratchDatabase::create(&admin_url).await;
    let [url, key] = db.replica_env();
    let env = [url, key, ("FACEAUTH_MAX_FAILED_ATTEMPTS", "5")];
    let (a, b) = tokio::join!(start_server_with(&env), start_server_with(&env));
    assert_eq!(a.enroll("alice", "id_card_person_a.jpg").await, (200, enrolled()));
    assert_approved(&b.authenticate("alice", "selfie_person_a.jpg").await);

    let counts = twenty_wrong_selfies(&[&a, &b], "alice").await;
    assert_eq!(counts, BTreeMap::from([(200, 5), (429, 15)]), "5 analysed between the two replicas");
    let recorded = recorded_authentications(&b, "alice").await;
    assert_eq!(recorded.iter().filter(|(approved, _)| !approved).count(), 5, "{recorded:?}");
    let (status, body) = a.authenticate("alice", "selfie_person_a.jpg").await;
    assert_eq!((status, body), (429, auth_rejected("TOO_MANY_ATTEMPTS")));

    drop((a, b));
    db.drop_now().await;
}

/// A PNG of one colour, no face in it.
fn blank_png() -> Vec<u8> {
    let blank = image::RgbImage::from_pixel(320, 240, image::Rgb([255, 255, 255]));
    let mut png = Vec::new();
    blank.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).expect("encode");
    png
}

/// Item 8: five blank PNGs (NO_FACE_DETECTED) locked a user out for 15 minutes.
/// Only refusals that showed a face count: blank pictures never lock; five wrong
/// faces do.
#[tokio::test(flavor = "multi_thread")]
async fn pictures_without_a_face_do_not_lock_a_user_out() {
    let server = start_server_with(&[("FACEAUTH_MAX_FAILED_ATTEMPTS", "5")]).await;
    assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await, (200, enrolled()));
    for _ in 0..6 {
        let answer = server.post("/api/authentificate", Some("username=alice"), "auth_video", Some(blank_png())).await;
        assert_eq!(answer, (200, auth_rejected("NO_FACE_DETECTED")));
    }
    assert_approved(&server.authenticate("alice", "selfie_person_a.jpg").await);

    for _ in 0..5 {
        assert_eq!(server.authenticate("alice", "selfie_person_b.jpg").await, (200, auth_rejected("FACE_MISMATCH")));
    }
    let (status, body) = server.authenticate("alice", "selfie_person_a.jpg").await;
    assert_eq!((status, body), (429, auth_rejected("TOO_MANY_ATTEMPTS")));
}

/// A tmpfs mounted for one test; unmounted when dropped (lazily: a process may
/// still hold a file), also when the test fails.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (the test skips, saying why) unless root and `mount` works here.
    fn mount(size: &str) -> Option<Self> {
        let uid = std::process::Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            eprintln!("SKIPPED: mounting a small tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        if !mounted.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("SKIPPED: `mount -t tmpfs` failed here ({mounted:?})");
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Writes `path` until the filesystem has no byte left; returns how much it wrote.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("filler");
    let mut written = 0;
    for chunk in [1 << 20, 4096, 1] {
        let bytes = vec![0u8; chunk];
        while file.write_all(&bytes).is_ok() {
            written += chunk as u64;
        }
    }
    let _ = file.sync_all();
    written
}

/// Item 5: with the disk full the audit log could not be written, so failures were
/// not counted: 12 of 12 guesses analysed. Now the attempt cannot be reserved: 503
/// STORAGE_FULL before any analysis; enrollment answers 503 STORAGE_FULL (was 500)
/// and `/ready` 503 with the database's error, until space is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_attempts_with_503_storage_full() {
    let Some(tmpfs) = Tmpfs::mount("16m") else { return };
    let data = tmpfs.path().to_str().expect("utf-8 path").to_string();
    let server = start_server_with(&[("FACEAUTH_DATA_DIR", &data), ("FACEAUTH_MAX_FAILED_ATTEMPTS", "5")]).await;
    assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await, (200, enrolled()));
    assert_approved(&server.authenticate("alice", "selfie_person_a.jpg").await);

    let filler: PathBuf = tmpfs.path().join("filler");
    assert!(fill(&filler) > 0, "nothing could be written to the tmpfs");
    let mut answers = BTreeMap::<(u16, String), usize>::new();
    for _ in 0..12 {
        let (status, body) = server.authenticate("alice", "selfie_person_b.jpg").await;
        let reason = body["DecisionReason"].as_str().unwrap_or_default().to_string();
        *answers.entry((status, reason)).or_default() += 1;
    }
    assert_eq!(answers, BTreeMap::from([((503, "STORAGE_FULL".to_string()), 12)]), "none analysed");
    let (status, body) = server.authenticate("alice", "selfie_person_a.jpg").await;
    assert_eq!((status, body), (503, auth_rejected("STORAGE_FULL")), "not approved while nothing can be recorded");
    assert_eq!(server.enroll("bob", "id_card_person_b.jpg").await, (503, enroll_rejected("STORAGE_FULL")));
    let (status, body) = server.get("/ready").await;
    assert_eq!(status, 503, "{body}");
    let database = body["database"].as_str().expect("the database's state");
    assert!(database.contains("full"), "{database}");

    // Space back: ready, and none of the 12 refused guesses counted.
    std::fs::remove_file(&filler).expect("free the space");
    let (status, body) = server.get("/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_approved(&server.authenticate("alice", "selfie_person_a.jpg").await);
    assert_eq!(server.enroll("bob", "id_card_person_b.jpg").await, (200, enrolled()));
    drop(server);
}

/// Item 12: names that look like `alice` enrolled as new accounts: invisible
/// characters outside category Cf, Cyrillic and full-width look-alikes. Invisible
/// ones are refused 400; look-alikes (one UTS #39 skeleton) 409, as a name taken.
#[tokio::test(flavor = "multi_thread")]
async fn look_alike_usernames_cannot_enroll() {
    let server = start_server().await;
    assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await, (200, enrolled()));
    for invisible in
        ["ali\u{034F}ce", "alice\u{FE0F}", "alice\u{E0100}", "\u{115F}alice", "alice\u{3164}", "ali\u{FFA0}ce"]
    {
        let query = format!("username={}", percent(invisible));
        let answer =
            server.post("/api/enroll", Some(&query), "cin_file", Some(common::fixture("id_card_person_b.jpg")));
        assert_eq!(answer.await, (400, enroll_rejected("INVALID_USERNAME")), "{invisible:?}");
    }
    for look_alike in ["\u{0430}lice", "\u{FF41}\u{FF4C}\u{FF49}\u{FF43}\u{FF45}", "aIice", "al\u{0456}ce"] {
        let query = format!("username={}", percent(look_alike));
        let answer =
            server.post("/api/enroll", Some(&query), "cin_file", Some(common::fixture("id_card_person_b.jpg")));
        assert_eq!(answer.await, (409, enroll_rejected("USERNAME_ALREADY_EXISTS")), "{look_alike:?}");
    }
    // The exact name is unchanged; a different name enrolls.
    assert_approved(&server.authenticate("alice", "selfie_person_a.jpg").await);
    let (status, body) = server.authenticate(&percent("\u{0430}lice"), "selfie_person_a.jpg").await;
    assert_eq!((status, body), (404, auth_rejected("UNKNOWN_USER")));
    assert_eq!(server.enroll("alicia", "id_card_person_b.jpg").await, (200, enrolled()));
}

/// `text` percent-encoded for a query string (every byte outside unreserved ASCII).
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
