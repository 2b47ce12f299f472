//! A bounded pool of `FaceAnalyzer`s: inference runs on blocking threads, at most
//! one job per analyzer, with a short queue; beyond that callers get `Busy` at once
//! (a fast 503) instead of piling up. Its busy workers, waiting jobs and admitted
//! requests are gauges of the process's metrics (`telemetry::PoolGauges`).

use std::sync::{Arc, Mutex};

use image::RgbImage;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{AnalyzedFace, FaceAnalyzer, VisionError};
use crate::telemetry::{Held, PoolGauges};

pub struct VisionPool {
    idle: Arc<Mutex<Vec<FaceAnalyzer>>>,
    workers: Arc<Semaphore>,
    admission: Arc<Semaphore>,
    min_face_px: f32,
    gauges: PoolGauges,
}

/// Puts the analyzer back even if the job panicked.
struct Checkout {
    analyzer: Option<FaceAnalyzer>,
    idle: Arc<Mutex<Vec<FaceAnalyzer>>>,
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let (Some(a), Ok(mut idle)) = (self.analyzer.take(), self.idle.lock()) {
            idle.push(a);
        }
    }
}

/// A place among the requests the pool takes (running or queued), held from before
/// the upload is decoded to the end of its analysis: a request beyond the queue is
/// refused before it costs a decode, and decoded pictures in memory are bounded.
/// Each analysis holds a share of it too, so a client that hangs up does not free
/// the place while its picture is still being analysed.
pub struct Admission {
    permit: Arc<Place>,
}

/// The admission permit and its count in the `admitted` gauge, released together
/// (the count first: fields drop in order, so the gauge never shows one too many).
struct Place {
    _counted: Held,
    _permit: OwnedSemaphorePermit,
}

impl VisionPool {
    pub fn new(analyzers: Vec<FaceAnalyzer>, max_queued: usize, min_face_px: f32) -> Self {
        let n = analyzers.len();
        Self {
            idle: Arc::new(Mutex::new(analyzers)),
            workers: Arc::new(Semaphore::new(n)),
            admission: Arc::new(Semaphore::new(n + max_queued)),
            min_face_px,
            gauges: PoolGauges::new(n, max_queued),
        }
    }

    /// Whether every worker and queue slot is taken right now: lets a caller refuse a
    /// request before reading its upload (`admit` still decides).
    pub fn is_full(&self) -> bool {
        self.admission.available_permits() == 0
    }

    /// A place in the pool, or `Busy` at once when every worker and queue slot is taken.
    pub fn admit(&self) -> Result<Admission, VisionError> {
        let permit = self.admission.clone().try_acquire_owned().map_err(|_| VisionError::Busy)?;
        Ok(Admission { permit: Arc::new(Place { _counted: self.gauges.admitted(), _permit: permit }) })
    }

    /// Analyses every face of one picture, at the upload's own size (a video frame),
    /// with the liveness measures if asked, for an admitted request.
    pub async fn analyze(
        &self,
        admitted: &Admission,
        image: Arc<RgbImage>,
        with_liveness: bool,
    ) -> Result<Vec<AnalyzedFace>, VisionError> {
        let (_, faces) =
            self.analyze_decoded(admitted, move || Ok::<_, VisionError>((image, 1.0, ())), with_liveness).await??;
        Ok(faces)
    }

    /// Decodes and analyses in one job on a worker, so that pictures are decoded only
    /// as fast as workers take them: queued requests hold their compressed upload, not
    /// the decoded pixels (18 decoded 7.5 MP selfies were 100 MB), and decodes do not
    /// crowd the cores. `decode` gives the picture, its scale (the upload's pixels per
    /// pixel of the picture, for a JPEG decoded at reduced scale) and anything the
    /// caller wants back with the faces. Boxes and landmarks come back in the upload's
    /// pixels, and the smallest face searched for is the same size there.
    pub async fn analyze_decoded<T, E, F>(
        &self,
        admitted: &Admission,
        decode: F,
        with_liveness: bool,
    ) -> Result<Result<(T, Vec<AnalyzedFace>), E>, VisionError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce() -> Result<(Arc<RgbImage>, f32, T), E> + Send + 'static,
    {
        let waiting = self.gauges.waiting();
        let worker = self.workers.clone().acquire_owned().await.map_err(|_| VisionError::Busy)?;
        drop(waiting);
        let busy = self.gauges.busy();
        let place = admitted.permit.clone();
        let idle = self.idle.clone();
        let min_face_px = self.min_face_px;
        // The permits move into the blocking job: if the request future is dropped (the
        // client hung up), the job still runs to its end, and its worker and its place
        // stay taken until then. Released with the future instead, the next request
        // found no idle analyzer and failed with a 500 (issue 11, defect 1).
        tokio::task::spawn_blocking(move || {
            // Dropped in this order: the busy count before the worker is handed on.
            let _held = (busy, worker, place);
            let (image, scale, extra) = match decode() {
                Ok(decoded) => decoded,
                Err(e) => return Ok(Err(e)),
            };
            let scale = if scale.is_finite() && scale >= 1.0 { scale } else { 1.0 };
            let analyzer = idle.lock().ok().and_then(|mut v| v.pop());
            let mut checkout = Checkout { analyzer, idle };
            match checkout.analyzer.as_mut() {
                Some(a) => a
                    .analyze(&image, min_face_px / scale, with_liveness)
                    .map(|faces| Ok((extra, faces.into_iter().map(|f| f.scaled(scale)).collect()))),
                None => Err(VisionError::Inference("no idle face analyzer (a previous job crashed)".into())),
            }
        })
        .await
        .map_err(|e| VisionError::Inference(format!("face analysis task failed: {e}")))?
    }
}
