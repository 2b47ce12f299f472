//! The capture page `/demo` in a real browser: Debian's headless Chromium with a
//! fake camera that plays person A's fixture video (turned into Y4M by FFmpeg),
//! driven through the DevTools protocol over `--remote-debugging-pipe` (JSON
//! messages ended by NUL on file descriptors 3 and 4: no port, no websocket, no
//! extra crate). The browser types, chooses the card file, clicks, records with
//! MediaRecorder and uploads; the test then checks what the page says, what the
//! audit log recorded (a video, several frames) and what the browser sent (the clip
//! it offers to save: WebM with VP8 or VP9).
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use common::server::Server;

/// One headless Chromium, its DevTools pipe and the events it sent while the test
/// waited for answers.
struct Browser {
    child: Child,
    to_browser: ChildStdin,
    from_browser: BufReader<ChildStdout>,
    next_id: u64,
    events: Vec<Value>,
    log: PathBuf,
    _profile: tempfile::TempDir,
}

/// How long one DevTools command may take to answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Browser {
    async fn launch(camera: &Path) -> Browser {
        let chromium = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|b| std::process::Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
            .expect("no headless browser found: scripts/test.sh installs Debian's chromium");
        let profile = tempfile::tempdir().expect("profile dir");
        let log = profile.path().join("chromium.log");
        // The shell gives the browser our pipes as its descriptors 3 (commands in)
        // and 4 (answers out), which `--remote-debugging-pipe` reads and writes.
        let mut child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2"#)
            .arg(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--mute-audio",
                "--remote-debugging-pipe",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
            ])
            .arg(format!("--use-file-for-fake-video-capture={}", camera.display()))
            .arg(format!("--user-data-dir={}", profile.path().join("profile").display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("browser log"))
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");
        let to_browser = child.stdin.take().expect("pipe in");
        let from_browser = BufReader::new(child.stdout.take().expect("pipe out"));
        Browser { child, to_browser, from_browser, next_id: 0, events: Vec::new(), log, _profile: profile }
    }

    /// Sends a command (to the browser, or to a page's `session`) and returns its result.
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("json");
        bytes.push(0);
        self.to_browser.write_all(&bytes).await.unwrap_or_else(|e| self.died(&format!("{method}: {e}")));
        self.to_browser.flush().await.expect("flush");
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut raw = Vec::new();
            match tokio::time::timeout(left, self.from_browser.read_until(0, &mut raw)).await {
                Err(_) => self.died(&format!("{method}: no answer within {CALL_TIMEOUT:?}")),
                Ok(Ok(0)) | Ok(Err(_)) => self.died(&format!("{method}: the pipe closed")),
                Ok(Ok(_)) => {}
            }
            raw.pop_if(|b| *b == 0);
            let message: Value = serde_json::from_slice(&raw).expect("DevTools message is JSON");
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("{method} {params}: {error}");
                }
                return message["result"].clone();
            }
            if message.get("method").is_some() {
                self.events.push(message);
            }
        }
    }

    fn died(&self, what: &str) -> ! {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        panic!("the browser stopped answering ({what}); its log:\n{log}");
    }

    /// The events named `method` received so far.
    fn events_named(&self, method: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["method"] == method).collect()
    }

    async fn close(mut self) {
        let mut bytes = serde_json::to_vec(&json!({"id": 0, "method": "Browser.close", "params": {}})).expect("json");
        bytes.push(0);
        let _ = self.to_browser.write_all(&bytes).await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// One tab, with a phone's screen.
struct Tab {
    session: String,
}

impl Tab {
    async fn open(browser: &mut Browser, downloads: &Path) -> Tab {
        browser
            .call(
                None,
                "Browser.setDownloadBehavior",
                json!({"behavior": "allow", "downloadPath": downloads.display().to_string()}),
            )
            .await;
        let target = browser.call(None, "Target.createTarget", json!({"url": "about:blank"})).await;
        let attached =
            browser.call(None, "Target.attachToTarget", json!({"targetId": target["targetId"], "flatten": true})).await;
        let tab = Tab { session: attached["sessionId"].as_str().expect("session").to_string() };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(Some(&tab.session), domain, json!({})).await;
        }
        // A phone in portrait (390x844 CSS pixels, as an iPhone 12-15).
        browser
            .call(
                Some(&tab.session),
                "Emulation.setDeviceMetricsOverride",
                json!({"width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": true}),
            )
            .await;
        tab
    }

    async fn go(&self, browser: &mut Browser, url: &str) {
        browser.call(Some(&self.session), "Page.navigate", json!({"url": url})).await;
        self.wait_for(browser, "document.body && document.body.dataset.ready === 'true'", "the page's script").await;
    }

    /// Evaluates `expression` in the page (promises awaited) and returns its value.
    async fn eval(&self, browser: &mut Browser, expression: &str) -> Value {
        let answer = browser
            .call(
                Some(&self.session),
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(exception) = answer.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        answer["result"]["value"].clone()
    }

    /// Polls `condition` until it is truthy; returns its value.
    async fn wait_for(&self, browser: &mut Browser, condition: &str, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let value = self
                .eval(browser, &format!("(() => {{ try {{ return {condition}; }} catch (_) {{ return false; }} }})()"))
                .await;
            if !matches!(value, Value::Null | Value::Bool(false)) && value != json!("") && value != json!(0) {
                return value;
            }
            assert!(Instant::now() < deadline, "waited 60 s for {what} ({condition})");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A real click (mouse down and up) in the middle of the element, once it is
    /// scrolled into view: a hidden or covered button cannot be clicked this way.
    async fn click(&self, browser: &mut Browser, selector: &str) {
        let point = self
            .eval(
                browser,
                &format!(
                    "(() => {{ const e = document.querySelector({selector:?}); e.scrollIntoView({{block: 'center'}});
                       const r = e.getBoundingClientRect(); const x = r.x + r.width / 2, y = r.y + r.height / 2;
                       const hit = document.elementFromPoint(x, y);
                       return {{x, y, hit: hit === e || e.contains(hit)}}; }})()"
                ),
            )
            .await;
        assert_eq!(point["hit"], true, "{selector} is not visible or is covered: {point}");
        for kind in ["mousePressed", "mouseReleased"] {
            browser
                .call(
                    Some(&self.session),
                    "Input.dispatchMouseEvent",
                    json!({"type": kind, "x": point["x"], "y": point["y"], "button": "left", "clickCount": 1}),
                )
                .await;
        }
    }

    /// Replaces the text of an input as typing would.
    async fn type_into(&self, browser: &mut Browser, selector: &str, text: &str) {
        self.eval(
            browser,
            &format!("(() => {{ const e = document.querySelector({selector:?}); e.focus(); e.select(); }})()"),
        )
        .await;
        browser.call(Some(&self.session), "Input.insertText", json!({"text": text})).await;
    }

    /// Chooses `file` in a file input, as the file chooser would.
    async fn choose_file(&self, browser: &mut Browser, selector: &str, file: &Path) {
        let document = browser.call(Some(&self.session), "DOM.getDocument", json!({})).await;
        let node = browser
            .call(
                Some(&self.session),
                "DOM.querySelector",
                json!({"nodeId": document["root"]["nodeId"], "selector": selector}),
            )
            .await;
        browser
            .call(
                Some(&self.session),
                "DOM.setFileInputFiles",
                json!({"files": [file.display().to_string()], "nodeId": node["nodeId"]}),
            )
            .await;
    }

    /// The result panel `#id` once an answer is shown: reason, status, decision, sentence, JSON.
    async fn result(&self, browser: &mut Browser, id: &str) -> Value {
        self.wait_for(
            browser,
            &format!(
                "document.getElementById('{id}').dataset.reason !== undefined && (() => {{
                   const r = document.getElementById('{id}');
                   const json = r.querySelector('pre.json');
                   return {{reason: r.dataset.reason, status: Number(r.dataset.status), decision: r.dataset.decision,
                           verdict: r.querySelector('.verdict').textContent,
                           sentence: r.querySelector('.sentence').textContent,
                           answer: json ? JSON.parse(json.textContent) : null}}; }})()"
            ),
            &format!("an answer in #{id}"),
        )
        .await
    }
}

/// Enrolls `user` with `card` through the page; the page's result panel.
async fn enroll(tab: &Tab, browser: &mut Browser, user: &str, card: &str) -> Value {
    tab.type_into(browser, "#username", user).await;
    tab.choose_file(browser, "#card", &common::repo_root().join("tests/fixtures").join(card)).await;
    tab.eval(browser, "delete document.getElementById('enroll-result').dataset.reason").await;
    tab.click(browser, "#enroll").await;
    tab.result(browser, "enroll-result").await
}

/// The live preview shows the camera: playing, with a picture.
const PREVIEW_PLAYING: &str = "(() => { const v = document.getElementById('preview');
     return !v.paused && v.videoWidth > 0 && v.currentTime > 0; })()";

/// Makes the page keep each text the countdown shows, in `window.countdownSeen`.
const WATCH_COUNTDOWN: &str = "(() => { const c = document.getElementById('countdown'); window.countdownSeen = [];
     new MutationObserver(() => { const t = c.textContent, s = window.countdownSeen;
       if (t && s[s.length - 1] !== t) s.push(t); }).observe(c, {childList: true, characterData: true, subtree: true});
   })()";

/// Turns the camera on, records with the countdown and waits for the answer. Returns
/// the result panel and the countdown numbers seen while recording.
async fn record_and_verify(tab: &Tab, browser: &mut Browser) -> (Value, Vec<String>) {
    if tab.eval(browser, "document.getElementById('preview').srcObject === null").await == true {
        tab.click(browser, "#camera").await;
    }
    tab.wait_for(browser, PREVIEW_PLAYING, "the camera preview").await;
    tab.eval(browser, "delete document.getElementById('auth-result').dataset.reason").await;
    // Every number the countdown shows, recorded by the page as it changes (polling
    // could miss one on a loaded machine).
    tab.eval(browser, WATCH_COUNTDOWN).await;
    tab.click(browser, "#record").await;
    tab.wait_for(browser, "document.getElementById('auth-result').dataset.reason !== undefined", "the answer").await;
    let seen = tab.eval(browser, "window.countdownSeen").await;
    let seen = seen.as_array().expect("countdown texts").iter().map(|s| s.as_str().unwrap().to_string()).collect();
    (tab.result(browser, "auth-result").await, seen)
}

/// Clicks "save the clip" and returns the saved file: the very Blob that was uploaded.
async fn saved_clip(tab: &Tab, browser: &mut Browser, downloads: &Path) -> PathBuf {
    for entry in std::fs::read_dir(downloads).expect("downloads") {
        std::fs::remove_file(entry.expect("entry").path()).expect("remove an earlier download");
    }
    tab.click(browser, "#clip-link").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let done: Vec<PathBuf> = std::fs::read_dir(downloads)
            .expect("downloads")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_none_or(|x| x != "crdownload"))
            .collect();
        if let [clip] = done.as_slice() {
            return clip.clone();
        }
        assert!(Instant::now() < deadline, "the clip was not saved: {done:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Container, video codec and duration of a clip, by ffprobe.
fn probe(clip: &Path) -> (String, String, f64) {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "format=format_name,duration:stream=codec_name",
        ])
        .args(["-of", "json"])
        .arg(clip)
        .output()
        .expect("ffprobe");
    assert!(out.status.success(), "ffprobe {}: {}", clip.display(), String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let duration = json["format"]["duration"].as_str().and_then(|d| d.parse().ok()).unwrap_or(f64::NAN);
    (
        json["format"]["format_name"].as_str().unwrap_or_default().to_string(),
        json["streams"][0]["codec_name"].as_str().unwrap_or_default().to_string(),
        duration,
    )
}

/// The audit log's last answering decision of `user` at `endpoint`.
async fn last_decision(server: &Server, user: &str, endpoint: &str) -> Value {
    let (status, body) = server.get(&format!("/api/admin/decisions?endpoint={endpoint}&limit=100")).await;
    assert_eq!(status, 200, "{body}");
    let decisions = body["decisions"].as_array().expect("decisions");
    let mine: Vec<&Value> = decisions.iter().filter(|d| d["username"] == user && d["shadow"] == false).collect();
    assert_eq!(mine.len(), 1, "one {endpoint} decision of {user} expected: {mine:?}");
    mine[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_enrolls_and_is_verified_by_webcam_video_in_the_demo_page() {
    let server = common::server::start_server().await;

    // The page itself: HTML, under a policy of this origin and hashed inline code.
    let page = server.request(reqwest::Method::GET, "/demo").send().await.expect("GET /demo");
    assert_eq!(page.status(), 200);
    let header = |name: &str| page.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(header("content-type").starts_with("text/html"), "{}", header("content-type"));
    let csp = header("content-security-policy");
    assert!(csp.starts_with("default-src 'none'; script-src 'sha256-"), "{csp}");
    assert!(csp.contains("connect-src 'self'") && !csp.contains("unsafe"), "{csp}");
    let html = page.text().await.expect("page");
    // One page, nothing else to load: no linked script, style, font or image.
    for link in ["src=", "href=", "url(", "@import"] {
        assert!(!html.contains(link), "the page links something ({link})");
    }

    // The fake camera plays person A's video (Chromium loops it).
    let work = tempfile::tempdir().expect("tempdir");
    let camera = work.path().join("person_a.y4m");
    let fixture = common::repo_root().join("tests/fixtures/video_person_a.mp4");
    let os = std::ffi::OsStr::new;
    common::ffmpeg(&[os("-i"), fixture.as_os_str(), os("-pix_fmt"), os("yuv420p"), camera.as_os_str()]);
    let downloads = work.path().join("downloads");
    std::fs::create_dir(&downloads).expect("downloads dir");

    let mut browser = Browser::launch(&camera).await;
    let b = &mut browser;
    let tab = Tab::open(b, &downloads).await;
    tab.go(b, &server.url("/demo")).await;

    // A phone's screen: nothing wider than it, every button large enough to tap (44 px).
    let layout = tab
        .eval(
            b,
            "({overflow: document.documentElement.scrollWidth - innerWidth,
               small: [...document.querySelectorAll('button')]
                 .filter(e => e.getBoundingClientRect().height < 44).map(e => e.id)})",
        )
        .await;
    assert_eq!(layout, json!({"overflow": 0, "small": []}), "the page does not fit a phone");

    // Enroll: a username, the card chosen in the file input, the button.
    let enrolled = enroll(&tab, b, "alice", "id_card_person_a.jpg").await;
    assert_eq!(enrolled["status"], 200, "{enrolled}");
    assert_eq!(enrolled["reason"], "ENROLLED_AS_USER", "{enrolled}");
    assert_eq!(
        enrolled["answer"],
        json!({"trained": "success", "EnrollStatus": "APPROVED", "DecisionReason": "ENROLLED_AS_USER"})
    );
    assert!(enrolled["sentence"].as_str().unwrap().starts_with("You are enrolled"), "{enrolled}");

    // Authenticate: the camera, the 3 s recording with its countdown, the answer.
    let (verified, countdown) = record_and_verify(&tab, b).await;
    assert_eq!(countdown, ["3", "2", "1"], "the countdown shown while recording");
    assert_eq!(verified["status"], 200, "{verified}");
    assert_eq!(verified["decision"], "APPROVED", "{verified}");
    assert_eq!(verified["reason"], "AUTHENTIFICATION_SUCCESS", "{verified}");
    assert!(verified["verdict"].as_str().unwrap().contains("Approved"), "{verified}");
    assert!(verified["sentence"].as_str().unwrap().starts_with("It is you"), "{verified}");
    let score = verified["answer"]["score"].as_f64().expect("a score on approval");
    assert!(score > 0.5, "{verified}");

    // The server approved a video, not a still: several sampled frames, each with a face.
    let decision = last_decision(&server, "alice", "authenticate").await;
    assert_eq!(decision["approved"], true, "{decision}");
    assert_eq!(decision["evidence"]["media"], "Video", "{decision}");
    let frames = decision["evidence"]["frames"].as_array().expect("frames");
    assert!(frames.len() >= 4, "a 3 s clip sampled at 2 a second or more: {} frames", frames.len());
    assert!(frames.iter().all(|f| !f["faces"].as_array().unwrap().is_empty()), "{decision}");

    // What the browser sent: WebM (VP8 by default), about 3 s long.
    let clip = saved_clip(&tab, b, &downloads).await;
    let (format, codec, seconds) = probe(&clip);
    assert!(format.contains("webm"), "{format}");
    assert_eq!(codec, "vp8");
    assert!((2.5..4.5).contains(&seconds), "{seconds} s");
    let info = tab.eval(b, "document.getElementById('clip-info').textContent").await;
    assert!(info.as_str().unwrap().contains("video/webm;codecs=vp8"), "{info}");

    // Refusals. A taken username: not processed, in words.
    let taken = enroll(&tab, b, "alice", "id_card_person_b.jpg").await;
    assert_eq!((taken["status"].clone(), taken["reason"].clone()), (json!(409), json!("USERNAME_ALREADY_EXISTS")));
    assert!(taken["verdict"].as_str().unwrap().contains("HTTP 409"), "{taken}");
    assert!(taken["sentence"].as_str().unwrap().contains("already taken"), "{taken}");

    // Person B's card, person A before the camera, recorded in VP9: refused.
    tab.go(b, &server.url("/demo?codec=vp9")).await;
    let bob = enroll(&tab, b, "bob", "id_card_person_b.jpg").await;
    assert_eq!(bob["reason"], "ENROLLED_AS_USER", "{bob}");
    let (refused, _) = record_and_verify(&tab, b).await;
    assert_eq!(refused["status"], 200, "{refused}");
    assert_eq!(refused["decision"], "REJECTED", "{refused}");
    assert_eq!(refused["reason"], "FACE_MISMATCH", "{refused}");
    assert!(refused["verdict"].as_str().unwrap().contains("Refused"), "{refused}");
    assert!(refused["sentence"].as_str().unwrap().contains("is not the face on the ID card"), "{refused}");
    assert_eq!(refused["answer"], json!({"score": null, "Decision": "REJECTED", "DecisionReason": "FACE_MISMATCH"}));
    let decision = last_decision(&server, "bob", "authenticate").await;
    assert_eq!(decision["evidence"]["media"], "Video", "{decision}");
    let (format, codec, _) = probe(&saved_clip(&tab, b, &downloads).await);
    assert!(format.contains("webm") && codec == "vp9", "{format} {codec}");

    // A code the page does not know (another policy's) is shown as is.
    assert_eq!(tab.eval(b, "describeReason('TOO_MANY_FRECKLES')").await, "TOO_MANY_FRECKLES");
    // Nothing was blocked by the page's policy, and the script never threw.
    assert_eq!(tab.eval(b, "document.body.dataset.cspViolations || '0'").await, "0");
    assert!(
        browser.events_named("Runtime.exceptionThrown").is_empty(),
        "{:?}",
        browser.events_named("Runtime.exceptionThrown")
    );
    // Console errors other than the network's (the 409 above, the favicon's 404).
    let errors: Vec<_> = browser
        .events_named("Log.entryAdded")
        .into_iter()
        .filter(|e| e["params"]["entry"]["level"] == "error" && e["params"]["entry"]["source"] != "network")
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    browser.close().await;
}
