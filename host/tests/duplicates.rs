//! Issue 20, one person, one account: against the real binary, a face enrolled under
//! one name is refused under another (`FACE_ALREADY_ENROLLED`) on SQLite and across
//! two replicas on one PostgreSQL (also when both enroll it at once); erasure takes a
//! template out of every replica's index; the admin search finds the enrolled person
//! and answers bad input in the API's shape.
#![allow(clippy::expect_used)] // test code: a failed expectation is the test failing

mod common;

use common::answers::{enroll_rejected, enrolled};
use common::postgres::{ScratchDatabase, postgres_admin_url};
use common::server::{Server, start_server, start_server_with};
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

/// `POST /api/admin/search?top_k=5` with `fixture` as the image.
async fn search(server: &Server, fixture: &str) -> (u16, Value) {
    let form = Form::new().part("image", Part::bytes(common::fixture(fixture)).file_name("probe.jpg"));
    server.send(Method::POST, "/api/admin/search?top_k=5", Some(form)).await
}

/// The usernames a search found, most similar first.
fn found(answer: &(u16, Value)) -> Vec<String> {
    assert_eq!(answer.0, 200, "{answer:?}");
    answer.1["matches"]
        .as_array()
        .expect("matches")
        .iter()
        .map(|m| m["username"].as_str().expect("username").to_string())
        .collect()
}

/// The similarity of `username` in a search's answer.
fn similarity_of(answer: &(u16, Value), username: &str) -> Option<f64> {
    answer.1["matches"].as_array()?.iter().find(|m| m["username"] == username)?["similarity"].as_f64()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_face_enrolled_under_one_name_is_refused_under_another_on_sqlite() {
    let server = start_server().await;

    // An empty gallery: searched, nobody found.
    let empty = search(&server, "selfie_person_a.jpg").await;
    assert_eq!((empty.0, &empty.1["gallery_size"]), (200, &Value::from(0)), "{empty:?}");
    assert!(found(&empty).is_empty());

    assert_eq!(server.enroll("alice", "id_card_person_a.jpg").await, (200, enrolled()));
    // The same person, another photo of the card, another name.
    assert_eq!(
        server.enroll("mallory", "id_card_person_a_photographed.jpg").await,
        (200, enroll_rejected("FACE_ALREADY_ENROLLED"))
    );
    // Nothing was stored for the refused name.
    let (status, body) = server.authenticate("mallory", "selfie_person_a.jpg").await;
    assert_eq!((status, &body["DecisionReason"]), (404, &Value::from("UNKNOWN_USER")), "{body}");
    // Another person enrolls.
    assert_eq!(server.enroll("bob", "id_card_person_b.jpg").await, (200, enrolled()));

    // The search names the enrolled person first, far above the other.
    let hit = search(&server, "selfie_person_a.jpg").await;
    assert_eq!(found(&hit), ["alice", "bob"], "{hit:?}");
    assert_eq!(hit.1["gallery_size"], 2);
    assert!(similarity_of(&hit, "alice").expect("alice") > 0.6, "{hit:?}");
    assert!(similarity_of(&hit, "bob").expect("bob") < 0.3, "{hit:?}");

    // Bad input, in the admin shape.
    let (status, body) = search(&server, "id_card_back_no_face.jpg").await;
    assert_eq!(status, 422, "{body}");
    assert!(body["msg"].as_str().expect("msg").contains("no face"), "{body}");
    let (status, body) = search(&server, "two_people.jpg").await;
    assert_eq!(status, 422, "{body}");
    assert!(body["msg"].as_str().expect("msg").contains("more than one person"), "{body}");
    let (status, body) = search(&server, "video_person_a.mp4").await;
    assert_eq!(status, 415, "{body}");
    let (status, body) = server.send(Method::POST, "/api/admin/search?top_k=0", Some(Form::new())).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.send(Method::POST, "/api/admin/search", Some(Form::new().text("x", "y"))).await;
    assert_eq!(status, 400, "{body}");

    // Erased: gone from the index at once, and the face may enroll again.
    let (status, body) = server.send(Method::DELETE, "/api/admin/users/alice", None).await;
    assert_eq!(status, 200, "{body}");
    let after = search(&server, "selfie_person_a.jpg").await;
    assert_eq!(found(&after), ["bob"], "{after:?}");
    assert_eq!(server.enroll("alice2", "id_card_person_a_photographed.jpg").await, (200, enrolled()));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_postgresql_replicas_refuse_a_duplicate_whichever_is_asked() {
    let Some(admin_url) = postgres_admin_url() else { return };
    let db = ScratchDatabase::create(&admin_url).await;
    let env = db.replica_env();
    let (a, b) = tokio::join!(start_server_with(&env), start_server_with(&env));

    // Enrolled on A; the same face under another name is refused on B.
    assert_eq!(a.enroll("alice", "id_card_person_a.jpg").await, (200, enrolled()));
    assert_eq!(
        b.enroll("mallory", "id_card_person_a_photographed.jpg").await,
        (200, enroll_rejected("FACE_ALREADY_ENROLLED"))
    );
    assert_eq!(found(&search(&b, "selfie_person_a.jpg").await), ["alice"]);

    // One new face enrolled under two names on the two replicas at once, several
    // times: exactly one name gets it each time (the gallery lock serialises them).
    for round in 0..3 {
        let (first, second) = (format!("bob-a{round}"), format!("bob-b{round}"));
        let (on_a, on_b) =
            tokio::join!(a.enroll(&first, "id_card_person_b.jpg"), b.enroll(&second, "id_card_person_b.jpg"));
        let mut answers = [on_a, on_b];
        answers.sort_by_key(|(_, body)| body["EnrollStatus"].as_str().map(str::to_string));
        assert_eq!(
            answers,
            [(200, enrolled()), (200, enroll_rejected("FACE_ALREADY_ENROLLED"))],
            "round {round}: exactly one approved"
        );
        // Erased for the next round, on the replica that did not enroll it.
        let winner = if found(&search(&a, "selfie_person_b.jpg").await).contains(&first) { first } else { second };
        let (status, body) = b.send(Method::DELETE, &format!("/api/admin/users/{winner}"), None).await;
        assert_eq!(status, 200, "{body}");
    }

    // An erasure on B takes the template out of A's index: A's search no longer finds
    // alice, and her face enrolls again on A under another name.
    let (status, body) = b.send(Method::DELETE, "/api/admin/users/alice", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(found(&search(&a, "selfie_person_a.jpg").await).is_empty());
    assert_eq!(a.enroll("alice-again", "id_card_person_a.jpg").await, (200, enrolled()));

    // Between requests, the index follows the other replica by itself (within 1 s):
    // A's log-free way to show it is its metrics gauge of indexed templates.
    assert_eq!(b.enroll("carol", "id_card_person_b.jpg").await, (200, enrolled()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        if indexed_templates(&a).await == Some(2.0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "replica A did not see B's enrollment within 1 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    drop((a, b));
    db.drop_now().await;
}

/// The `faceauth_gallery_templates` gauge of `/metrics`.
async fn indexed_templates(server: &Server) -> Option<f64> {
    let text = server.request(Method::GET, "/metrics").send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|line| line.strip_prefix("faceauth_gallery_templates ")?.trim().parse().ok())
}
