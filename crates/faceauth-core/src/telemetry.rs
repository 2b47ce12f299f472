// Not split (issue 19): 88 of its 404 lines are tests; the rest is one concern, the process's metrics.
//! Process metrics on the `metrics` crate, exported in Prometheus text at
//! `/metrics` by `metrics-exporter-prometheus`: every HTTP answer by route, status
//! and reason; the vision pool's workers and queue; the duration of each stage of an
//! analysis; and every policy decision by variant. Durations are in seconds.
//!
//! One recorder serves the process ([`install`], idempotent): tests run many servers
//! and engines in one process, and the `metrics` crate has one global recorder, so
//! their numbers add up there (tests look at deltas or at label values of their own).

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::{Gauge, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Every answer: `method`, `route` (the matched template), `status`, `reason`.
pub const HTTP_REQUESTS: &str = "faceauth_http_requests_total";
/// Time to every answer, by `method` and `route`.
pub const HTTP_DURATION: &str = "faceauth_http_request_duration_seconds";
/// Policy decisions: `variant`, `endpoint`, `role` (answer/shadow), `decision`, `reason`.
pub const DECISIONS: &str = "faceauth_decisions_total";
/// Time from a decided request's arrival to its decision, by `variant`, `endpoint`, `role`.
pub const DECISION_DURATION: &str = "faceauth_request_duration_seconds";
/// Time in the policy call, by `variant`, `endpoint`, `role`.
pub const POLICY_CALL_DURATION: &str = "faceauth_policy_call_duration_seconds";
/// Time of one stage of a request's work, by `stage` (see [`Stage`]).
pub const STAGE_DURATION: &str = "faceauth_stage_duration_seconds";
/// Face analyzers in the pool (`--workers`).
pub const VISION_WORKERS: &str = "faceauth_vision_workers";
/// Analyzers running a job now.
pub const VISION_BUSY: &str = "faceauth_vision_workers_busy";
/// Jobs (a picture, a video frame) waiting for an analyzer now.
pub const VISION_QUEUE_DEPTH: &str = "faceauth_vision_queue_depth";
/// Requests that may wait beyond the workers (`--max-queued`).
pub const VISION_QUEUE_LIMIT: &str = "faceauth_vision_queue_limit";
/// Requests holding a place in the pool (running, waiting, or a video being sampled);
/// at workers + queue limit new uploads are answered 503 `SERVER_BUSY`.
pub const VISION_ADMITTED: &str = "faceauth_vision_admitted_requests";
/// Enrolled templates in this replica's duplicate-search index.
pub const GALLERY_TEMPLATES: &str = "faceauth_gallery_templates";
/// Counter: variants that retired themselves after failing (`retire_after_failures`).
pub const POLICY_RETIREMENTS: &str = "faceauth_policy_retirements_total";

/// Buckets of the request histograms, seconds. A refusal before any analysis takes
/// about a millisecond and a paced 503 `SERVER_BUSY` 50 ms; a photo 30 ms to 2 s
/// (p50 52 ms for 250x250, 156 ms for 7.5 MP at concurrency 4); a selfie video
/// 0.4-2.2 s alone and several seconds queued; the video decoder gives up at 20 s and
/// an upload at 120 s. Finer where photos fall, coarse beyond 2 s.
const REQUEST_BUCKETS: [f64; 17] =
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 20.0, 60.0, 120.0];

/// Buckets of the stage and policy-call histograms, seconds: a policy call is well
/// under a millisecond (0.54 % of the request time), a database call about one; a
/// detection pass or an embedding 5-30 ms (embedder 18.8 ms), decoding a 7.5 MP JPEG
/// 22 ms; sampling a video with FFmpeg 0.3-2 s, at most the 20 s decoder timeout.
const STAGE_BUCKETS: [f64; 17] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0];

/// How often buffered histogram samples are folded into their buckets when nobody
/// scrapes (a scrape does it too): 5 s of samples at 100 requests a second and ten
/// observations each are 40 KB.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The Prometheus side of the process's recorder.
pub struct Exporter {
    handle: PrometheusHandle,
}

impl Exporter {
    /// Everything recorded since start-up, in the Prometheus text format (0.0.4).
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

/// A recorder with this service's buckets (not installed).
fn recorder() -> PrometheusRecorder {
    let builder = [
        (HTTP_DURATION, &REQUEST_BUCKETS[..]),
        (DECISION_DURATION, &REQUEST_BUCKETS[..]),
        (POLICY_CALL_DURATION, &STAGE_BUCKETS[..]),
        (STAGE_DURATION, &STAGE_BUCKETS[..]),
    ]
    .into_iter()
    .try_fold(PrometheusBuilder::new(), |builder, (name, buckets)| {
        builder.set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
    });
    // Only an empty bucket list is refused, and none is.
    builder.map(PrometheusBuilder::build_recorder).unwrap_or_else(|_| PrometheusBuilder::new().build_recorder())
}

fn describe() {
    metrics::describe_counter!(HTTP_REQUESTS, "HTTP answers, by method, route template, status and reason.");
    metrics::describe_histogram!(HTTP_DURATION, Unit::Seconds, "Time to the HTTP answer, by method and route.");
    metrics::describe_counter!(DECISIONS, "Policy decisions, by variant, endpoint, role, decision and reason.");
    metrics::describe_histogram!(
        DECISION_DURATION,
        Unit::Seconds,
        "Time from a decided request's arrival to its decision, by variant, endpoint and role."
    );
    metrics::describe_histogram!(POLICY_CALL_DURATION, Unit::Seconds, "Time in the policy call, by variant.");
    metrics::describe_histogram!(
        STAGE_DURATION,
        Unit::Seconds,
        "Time of one stage: decode, decode_video, detect, landmarks, embed, liveness (per face), policy, store."
    );
    metrics::describe_gauge!(VISION_WORKERS, "Face analyzers in the pool.");
    metrics::describe_gauge!(VISION_BUSY, "Face analyzers running a job.");
    metrics::describe_gauge!(VISION_QUEUE_DEPTH, "Analysis jobs waiting for a face analyzer.");
    metrics::describe_gauge!(VISION_QUEUE_LIMIT, "Requests that may wait for a face analyzer beyond the workers.");
    metrics::describe_counter!(
        POLICY_RETIREMENTS,
        "Policy variants retired by themselves after failing calls in a row."
    );
    metrics::describe_gauge!(GALLERY_TEMPLATES, "Enrolled templates in this replica's duplicate-search index.");
    metrics::describe_gauge!(
        VISION_ADMITTED,
        "Requests holding a place in the analysis pool; at workers + queue limit uploads get 503 SERVER_BUSY."
    );
}

/// Installs the process's recorder on first call (with a thread for its upkeep) and
/// returns its exporter. Call it before anything is recorded: until then the
/// `metrics` macros record nowhere.
pub fn install() -> &'static Exporter {
    static EXPORTER: OnceLock<Exporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let recorder = recorder();
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            // Another recorder (a program embedding this library): /metrics stays empty.
            tracing::warn!(error = %e, "a metrics recorder was already installed: /metrics will not see these numbers");
        }
        describe();
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no metrics upkeep thread: histograms are folded at each scrape only");
        }
        Exporter { handle }
    })
}

/// One answered request. `route` is the matched route template (`/api/admin/users/{username}`),
/// never the raw path, so that label values stay few.
pub fn observe_request(method: &str, route: &str, status: u16, reason: &str, elapsed: Duration) {
    let method = method_label(method);
    let labels = [
        ("method", method.to_string()),
        ("route", route.to_string()),
        ("status", status.to_string()),
        ("reason", reason.to_string()),
    ];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_DURATION, &[("method", method.to_string()), ("route", route.to_string())])
        .record(elapsed.as_secs_f64());
}

/// The method as a label: hyper accepts any token as a method, and each new label
/// value is a series kept for ever, so `curl -X FOO$RANDOM` would grow the exporter
/// without bound. Methods the API has none of are `OTHER`.
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
    KNOWN.into_iter().find(|known| *known == method).unwrap_or("OTHER")
}

/// The labels of one policy decision.
pub struct DecisionLabels<'a> {
    pub variant: &'a str,
    pub endpoint: &'static str,
    /// `answer` or `shadow`.
    pub role: &'static str,
    /// `approved` or `rejected`.
    pub decision: &'static str,
    pub reason: &'a str,
}

/// One policy decision (an answer or a shadow's) with the request's and the policy
/// call's durations.
pub fn observe_decision(labels: &DecisionLabels<'_>, request: Duration, policy_call: Duration) {
    let series = [
        ("variant", labels.variant.to_string()),
        ("endpoint", labels.endpoint.to_string()),
        ("role", labels.role.to_string()),
    ];
    let mut decision = series.to_vec();
    decision.push(("decision", labels.decision.to_string()));
    decision.push(("reason", labels.reason.to_string()));
    metrics::counter!(DECISIONS, &decision).increment(1);
    metrics::histogram!(DECISION_DURATION, &series).record(request.as_secs_f64());
    metrics::histogram!(POLICY_CALL_DURATION, &series).record(policy_call.as_secs_f64());
}

/// The stages of a request's work, timed where they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Decoding a still image (on the worker that analyses it).
    Decode,
    /// Sampling a video's frames with FFmpeg, the whole clip.
    DecodeVideo,
    /// Face detection over the pyramid, per picture or frame.
    Detect,
    /// Landmarks and alignment, per face.
    Landmarks,
    /// The embedding, per face.
    Embed,
    /// Passive liveness and eye state, per face (when a policy asks for them).
    Liveness,
    /// One policy call (answer or shadow).
    Policy,
    /// One database call on a request's path (user lookup, attempts, store, audit).
    Store,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::DecodeVideo => "decode_video",
            Stage::Detect => "detect",
            Stage::Landmarks => "landmarks",
            Stage::Embed => "embed",
            Stage::Liveness => "liveness",
            Stage::Policy => "policy",
            Stage::Store => "store",
        }
    }
}

pub fn observe_stage(stage: Stage, elapsed: Duration) {
    metrics::histogram!(STAGE_DURATION, "stage" => stage.label()).record(elapsed.as_secs_f64());
}

/// Runs `f`, recording its duration under `stage`.
pub fn timed<T>(stage: Stage, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    observe_stage(stage, started.elapsed());
    out
}

/// Awaits `work`, recording its duration under `stage` (not when it is dropped unfinished).
pub async fn timed_async<T>(stage: Stage, work: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = work.await;
    observe_stage(stage, started.elapsed());
    out
}

/// The gauges of one vision pool. Pools add up (one per process in a server; tests
/// run several): each adds its workers and queue limit while it exists, and each job
/// or request it holds counts one while held.
pub struct PoolGauges {
    workers: f64,
    queue_limit: f64,
    busy: Gauge,
    waiting: Gauge,
    admitted: Gauge,
}

impl PoolGauges {
    pub fn new(workers: usize, queue_limit: usize) -> Self {
        let gauges = Self {
            workers: workers as f64,
            queue_limit: queue_limit as f64,
            busy: metrics::gauge!(VISION_BUSY),
            waiting: metrics::gauge!(VISION_QUEUE_DEPTH),
            admitted: metrics::gauge!(VISION_ADMITTED),
        };
        metrics::gauge!(VISION_WORKERS).increment(gauges.workers);
        metrics::gauge!(VISION_QUEUE_LIMIT).increment(gauges.queue_limit);
        // Shown at 0 from the start, not only after the first job.
        for g in [&gauges.busy, &gauges.waiting, &gauges.admitted] {
            g.increment(0.0);
        }
        gauges
    }

    /// An analyzer running a job, while the guard lives.
    pub fn busy(&self) -> Held {
        Held::new(&self.busy)
    }

    /// A job waiting for an analyzer, while the guard lives.
    pub fn waiting(&self) -> Held {
        Held::new(&self.waiting)
    }

    /// A request holding a place in the pool, while the guard lives.
    pub fn admitted(&self) -> Held {
        Held::new(&self.admitted)
    }
}

impl Drop for PoolGauges {
    fn drop(&mut self) {
        metrics::gauge!(VISION_WORKERS).decrement(self.workers);
        metrics::gauge!(VISION_QUEUE_LIMIT).decrement(self.queue_limit);
    }
}

/// One unit of a gauge, given back on drop (also when a job panics or a request is
/// dropped while it waits).
pub struct Held(Gauge);

impl Held {
    fn new(gauge: &Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Runs `f` on a recorder of its own (the global one is shared by every test of the
    /// process); `f` is given a function that renders what was recorded so far.
    pub(crate) fn recorded<T>(f: impl FnOnce(&dyn Fn() -> String) -> T) -> T {
        let recorder = recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            f(&|| handle.render())
        })
    }

    #[test]
    fn requests_and_stages_render_in_seconds_with_our_buckets() {
        let text = recorded(|render| {
            observe_request("POST", "/api/enroll", 503, "SERVER_BUSY", Duration::from_millis(60));
            observe_request("POST", "/api/enroll", 503, "SERVER_BUSY", Duration::from_millis(52));
            observe_stage(Stage::Embed, Duration::from_millis(18));
            render()
        });
        assert!(
            text.contains(
                "faceauth_http_requests_total{method=\"POST\",route=\"/api/enroll\",status=\"503\",reason=\"SERVER_BUSY\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE faceauth_http_request_duration_seconds histogram"), "{text}");
        // 52 and 60 ms: above 0.05, within 0.075.
        let bucket = |le: &str| {
            format!(
                "faceauth_http_request_duration_seconds_bucket{{method=\"POST\",route=\"/api/enroll\",le=\"{le}\"}}"
            )
        };
        assert!(text.contains(&format!("{} 0\n", bucket("0.05"))), "{text}");
        assert!(text.contains(&format!("{} 2\n", bucket("0.075"))), "{text}");
        assert!(text.contains("faceauth_stage_duration_seconds_bucket{stage=\"embed\",le=\"0.01\"} 0\n"), "{text}");
        assert!(text.contains("faceauth_stage_duration_seconds_bucket{stage=\"embed\",le=\"0.025\"} 1\n"), "{text}");
        assert!(text.contains("faceauth_stage_duration_seconds_count{stage=\"embed\"} 1\n"), "{text}");
    }

    /// Review of issue 12: any method token a client sends was a new label value.
    #[test]
    fn unknown_methods_share_one_label() {
        let text = recorded(|render| {
            for i in 0..50 {
                observe_request(&format!("FOO{i}"), "unmatched", 405, "METHOD_NOT_ALLOWED", Duration::from_millis(1));
            }
            observe_request("GET", "unmatched", 404, "NOT_FOUND", Duration::from_millis(1));
            render()
        });
        assert!(
            text.contains("faceauth_http_requests_total{method=\"OTHER\",route=\"unmatched\",status=\"405\",reason=\"METHOD_NOT_ALLOWED\"} 50"),
            "{text}"
        );
        assert!(!text.contains("FOO"), "{text}");
        assert!(text.contains("method=\"GET\""), "{text}");
    }

    #[test]
    fn pool_gauges_count_what_is_held_and_give_it_back() {
        let (held, released) = recorded(|render| {
            let pool = PoolGauges::new(2, 16);
            let busy = pool.busy();
            let waiting = (pool.waiting(), pool.waiting());
            let admitted = pool.admitted();
            drop(busy);
            let busy = pool.busy();
            let held = render();
            drop((busy, waiting, admitted, pool));
            (held, render())
        });
        for line in [
            "faceauth_vision_workers 2",
            "faceauth_vision_queue_limit 16",
            "faceauth_vision_workers_busy 1",
            "faceauth_vision_queue_depth 2",
            "faceauth_vision_admitted_requests 1",
        ] {
            assert!(held.contains(&format!("\n{line}\n")), "{line}: {held}");
        }
        for gauge in [VISION_WORKERS, VISION_BUSY, VISION_QUEUE_DEPTH, VISION_QUEUE_LIMIT, VISION_ADMITTED] {
            assert!(released.contains(&format!("\n{gauge} 0\n")), "{gauge}: {released}");
        }
    }
}
