//! Selfie videos: FFmpeg, run as a separate process with a hard time limit, an
//! address-space limit, only the `file` protocol (no network) and only the demuxer of
//! the container sniffed from the bytes, reads the upload from a private temporary
//! file that is removed whatever happens (and swept at start-up after a `kill -9`),
//! and hands back a bounded number of frames spread over the clip as PPMs on a pipe.
//! A clip whose decoding would cost more than `VideoLimits::max_pixel_frames` is
//! refused before it is decoded, and each client decodes a few clips at once at most.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use image::{ImageFormat, RgbImage};
use tokio::io::AsyncReadExt;
use tokio::process::{ChildStderr, ChildStdout, Command};

use super::MediaError;

/// Bounds on the work a clip may cause, whatever its length, resolution or frame rate.
#[derive(Debug, Clone)]
pub struct VideoLimits {
    /// Frames sampled from a clip, spread over its duration.
    pub max_frames: u32,
    /// Frames sampled when liveness is measured (blinks and movement need denser frames).
    pub liveness_frames: u32,
    /// Longest accepted clip.
    pub max_duration: Duration,
    /// Largest accepted frame side, in pixels (as declared by the container).
    pub max_side: u32,
    /// Largest accepted decoding work: frame width x height x frames decoded, from
    /// what the container declares and the packets it holds (see `DEFAULT_MAX_PIXEL_FRAMES`).
    pub max_pixel_frames: u64,
    /// Videos one client (address, as the rate limit keys it) may have decoded at
    /// once; more are refused at once (`MediaError::ClientBusy`). 0: no limit.
    pub decodes_per_client: u32,
    /// The decodes running per client (shared by the clones of these limits).
    pub running: ClientDecodes,
    /// Wall-clock limit of each decoder process.
    pub decoder_timeout: Duration,
    /// Address-space limit of each decoder process.
    pub decoder_memory_bytes: u64,
    /// Where the private temporary copy of an upload lives.
    pub temp_dir: PathBuf,
    /// The `ffmpeg` and `ffprobe` executables; FFprobe only for a container that
    /// `container` does not understand.
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
}

impl Default for VideoLimits {
    fn default() -> Self {
        Self {
            max_frames: 8,
            liveness_frames: 24,
            max_duration: Duration::from_secs(30),
            max_side: 4096,
            max_pixel_frames: DEFAULT_MAX_PIXEL_FRAMES,
            decodes_per_client: 2,
            running: ClientDecodes::default(),
            decoder_timeout: Duration::from_secs(20),
            decoder_memory_bytes: 2 << 30,
            temp_dir: std::env::temp_dir(),
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
        }
    }
}

/// The default decoding budget, in pixel-frames (width x height x frames): 4e9. The
/// largest clips a phone records for a selfie check are about 1920x1080 at 60 fps for
/// 30 s, or 3840x2160 at 30 fps for 15 s: 3.7e9 each. The 20 real clips of
/// ../shared/videos and ../shared/liveness need 2.9e8 at most (1920x1080, 140 frames).
/// An 80 KB clip of 4096x4096 grey at 30 fps for 59 s needs 3.0e10 and held a decoder
/// for the whole 20 s timeout (issue 22, item 6).
pub const DEFAULT_MAX_PIXEL_FRAMES: u64 = 4_000_000_000;

/// The video decodes running per client (the client of a request is set by
/// `decode_for`). Cloned, it is the same table.
#[derive(Clone, Default)]
pub struct ClientDecodes(Arc<Mutex<HashMap<IpAddr, u32>>>);

impl std::fmt::Debug for ClientDecodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientDecodes")
    }
}

tokio::task_local! {
    /// The client the current request's decodes count against (set by the HTTP layer).
    static DECODE_CLIENT: IpAddr;
}

/// Runs `work` (a request) with its video decodes counted against `client`. Outside
/// it (the CLI, tools) decodes are not counted per client.
pub async fn decode_for<F: std::future::Future>(client: IpAddr, work: F) -> F::Output {
    DECODE_CLIENT.scope(client, work).await
}

/// One running decode of a client; its place is given back when dropped.
struct DecodeSlot {
    table: ClientDecodes,
    client: IpAddr,
}

impl ClientDecodes {
    /// A place for one more decode of `client`, or `ClientBusy` when it already has
    /// `limit` running (0: no limit).
    fn take(&self, client: IpAddr, limit: u32) -> Result<DecodeSlot, MediaError> {
        let mut running = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = running.entry(client).or_insert(0);
        if limit > 0 && *count >= limit {
            return Err(MediaError::ClientBusy(limit));
        }
        *count += 1;
        Ok(DecodeSlot { table: self.clone(), client })
    }

    /// Clients with a decode running (tests).
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }
}

impl Drop for DecodeSlot {
    fn drop(&mut self) {
        let mut running = self.table.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = running.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                // Forgotten at zero: a scan from many addresses leaves nothing behind.
                running.remove(&self.client);
            }
        }
    }
}

/// The prefix of the temporary copies of uploads (`sweep_stale_uploads`).
const UPLOAD_PREFIX: &str = "faceauth-upload-";

/// An upload's temporary copy older than this is left over by a server that was
/// killed (`kill -9`, out of memory) mid-decode. A live one exists for the probe and
/// the decode, each bounded by `--video-decoder-timeout` (600 s at most): an hour is
/// past any server's, so servers sharing one temporary directory, whatever their
/// settings, never remove each other's live uploads.
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(3600);

/// Removes the uploads' temporary copies in `dir` older than `STALE_UPLOAD_AGE`
/// (regular files named `faceauth-upload-*` only, links not followed); how many.
/// By age rather than by owner: a per-process directory would need its owner's
/// liveness, which a pid does not tell across containers sharing `/tmp`.
pub fn sweep_stale_uploads(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let stale = entry.file_name().to_str().is_some_and(|name| name.starts_with(UPLOAD_PREFIX))
            && entry.metadata().is_ok_and(|m| {
                m.file_type().is_file()
                    && m.modified().is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_UPLOAD_AGE))
            });
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!("removed {removed} stale temporary upload(s) from {}", dir.display());
    }
    removed
}

/// The demuxers FFmpeg may use: those of the containers `is_video` accepts, and no
/// other (DASH, HLS, concat and the like open further files named inside the upload).
const DEMUXERS: &str = "mov,matroska";

/// The demuxer of a container recognised by `is_video`: ISO-BMFF (MP4, MOV, 3GP) or
/// EBML (Matroska, WebM).
fn demuxer_of(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(&EBML_MAGIC) { "matroska" } else { "mov" }
}

/// One sampled frame.
#[derive(Debug)]
pub struct VideoFrame {
    pub timestamp_ms: u32,
    pub pixels: RgbImage,
}

/// What the container declares, and the packets of its video: read by `container`
/// (every video track, at the largest size), or by FFprobe (the first video stream).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Probe {
    duration: Option<f64>,
    width: u32,
    height: u32,
    /// The frames that decoding may take: the packets counted in the stream (or, if
    /// not counted, as many as declared, or its frame rate over the duration limit).
    frames: u64,
}

impl Probe {
    /// Decoding work, in pixel-frames.
    fn pixel_frames(&self) -> u64 {
        u64::from(self.width).saturating_mul(u64::from(self.height)).saturating_mul(self.frames)
    }
}

impl From<super::container::Header> for Probe {
    /// Every video track counts, at the largest frame size declared: FFmpeg decodes
    /// one (`-map 0:V:0`), so this is never less than its work.
    fn from(header: super::container::Header) -> Self {
        let tracks = &header.video;
        Probe {
            duration: header.duration,
            width: tracks.iter().map(|t| t.width).max().unwrap_or(0),
            height: tracks.iter().map(|t| t.height).max().unwrap_or(0),
            frames: tracks.iter().fold(0u64, |n, t| n.saturating_add(t.frames)),
        }
    }
}

/// Refuses a clip whose declared size, duration or decoding work is over `limits`.
fn check(probe: &Probe, limits: &VideoLimits) -> Result<(), MediaError> {
    let max_secs = limits.max_duration.as_secs_f64();
    if probe.width == 0 || probe.height == 0 {
        return Err(MediaError::InvalidVideo("no decodable video stream".into()));
    }
    if probe.width > limits.max_side || probe.height > limits.max_side {
        return Err(MediaError::VideoTooLarge(format!("{}x{} frames", probe.width, probe.height)));
    }
    if let Some(d) = probe.duration
        && d > max_secs
    {
        return Err(MediaError::VideoTooLong(format!("{d:.1} s, limit {max_secs:.0} s")));
    }
    if probe.pixel_frames() > limits.max_pixel_frames {
        return Err(MediaError::VideoTooLarge(format!(
            "{} frames of {}x{} take too long to decode ({:.1e} pixel-frames, limit {:.1e})",
            probe.frames,
            probe.width,
            probe.height,
            probe.pixel_frames() as f64,
            limits.max_pixel_frames as f64
        )));
    }
    Ok(())
}

/// Samples up to `max_frames` frames (at most 64) spread over the clip (upright:
/// FFmpeg applies the rotation metadata of phone videos), dropping black frames.
///
/// One decoder process per clip (issue 18): the container's header (size, duration,
/// frames, hence the decoding budget) is read here (`container`), before anything is
/// written or started; FFprobe is asked only when that reader does not understand
/// the file. FFmpeg then decodes on one thread: on a busy server its frame threads
/// only added CPU (and a copy of the decoder's state each).
pub async fn sample_frames(
    bytes: Vec<u8>,
    limits: &VideoLimits,
    max_frames: u32,
) -> Result<Vec<VideoFrame>, MediaError> {
    let max_frames = max_frames.clamp(1, 64);
    // Held until the frames are out: a client sending many slow clips at once gets
    // `ClientBusy` for the extra ones instead of holding every place in the queue.
    let _slot = match DECODE_CLIENT.try_with(|client| *client) {
        Ok(client) => Some(limits.running.take(client, limits.decodes_per_client)?),
        Err(_) => None,
    };
    let demuxer = demuxer_of(&bytes);
    // Off the async threads: it walks every box or cluster of the upload.
    let (bytes, header) = tokio::task::spawn_blocking(move || {
        let header = super::container::read(&bytes, demuxer == "matroska").map(Probe::from);
        (bytes, header)
    })
    .await
    .map_err(|e| MediaError::InvalidVideo(e.to_string()))?;
    // Refused from the header: nothing written, no process started.
    if let Some(probe) = &header {
        check(probe, limits)?;
    }
    // Written off the async threads; dropped (and the file removed) on every path
    // out of this function.
    let temp_dir = limits.temp_dir.clone();
    let upload = tokio::task::spawn_blocking(move || -> std::io::Result<tempfile::NamedTempFile> {
        let mut file = tempfile::Builder::new().prefix(UPLOAD_PREFIX).tempfile_in(temp_dir)?;
        file.write_all(&bytes)?;
        file.flush()?;
        Ok(file)
    })
    .await
    .map_err(|e| MediaError::TempStorage(e.to_string()))?
    .map_err(|e| MediaError::TempStorage(format!("{}: {e}", limits.temp_dir.display())))?;
    // `file:` names the protocol, so that a colon in the directory's path is not read as one.
    let input = format!("file:{}", upload.path().display());

    let max_secs = limits.max_duration.as_secs_f64();
    let probe = match header {
        Some(probe) => probe,
        None => {
            let probe = probe(&input, demuxer, limits).await?;
            check(&probe, limits)?;
            probe
        }
    };
    // Known duration: frames evenly over it. Unknown (browser WebM): 2 per second,
    // and the decoder never reads past the duration limit.
    let fps = match probe.duration {
        Some(d) if d > 0.0 => (max_frames as f64 / d).clamp(0.05, 30.0),
        _ => 2.0,
    };
    let filter = format!(
        "fps={fps:.6},scale='min({FRAME_MAX_SIDE},iw)':'min({FRAME_MAX_SIDE},ih)':force_original_aspect_ratio=decrease"
    );
    let mut args: Vec<String> = vec![
        "-nostdin".into(),
        "-v".into(),
        "error".into(),
        // A damaged stream (an interrupted upload) is refused, not half-read.
        "-xerror".into(),
        // The decoder refuses a frame far larger than the container declared (a stream
        // that grows mid-clip past the checks above): 4 times the declared pixels,
        // padded to the decoders' alignment (a phone turned, a camera restarted fit),
        // and never over `max_side` squared.
        "-max_pixels".into(),
        decoder_max_pixels(&probe, limits.max_side).to_string(),
        // One decoding thread, one filter thread (see above).
        "-threads".into(),
        "1".into(),
        "-filter_threads".into(),
        "1".into(),
    ];
    args.extend(demuxer_args(demuxer));
    args.extend([
        "-t".into(),
        format!("{max_secs}"),
        "-i".into(),
        input,
        // The first video stream, and no other: FFmpeg's own choice is the largest,
        // which a 64x64 first stream would hide.
        "-map".into(),
        format!("0:{VIDEO_STREAM}"),
        "-an".into(),
        "-sn".into(),
        "-dn".into(),
        "-vf".into(),
        filter,
        "-frames:v".into(),
        max_frames.to_string(),
        "-f".into(),
        "image2pipe".into(),
        // Uncompressed PPM: encoding PNG took FFmpeg 0.26 s of a 9.6 s clip's 8 frames
        // (PPM 0.12 s), and decoding it again cost the host as much.
        "-c:v".into(),
        "ppm".into(),
        "pipe:1".into(),
    ]);
    // Enough for max_frames frames of FRAME_MAX_SIDE squared.
    let cap = max_frames as usize * (FRAME_MAX_SIDE as usize).pow(2) * 3 + 1024 * max_frames as usize;
    let decoded = run_frames(&limits.ffmpeg, &args, limits, cap, FRAME_MAX_SIDE).await?;
    drop(upload);
    let mut frames = Vec::new();
    for (k, pixels) in decoded.into_iter().enumerate() {
        if is_black(&pixels) {
            continue;
        }
        frames.push(VideoFrame { timestamp_ms: ((k as f64 / fps) * 1000.0) as u32, pixels });
    }
    if frames.is_empty() {
        return Err(MediaError::InvalidVideo("no frame could be decoded".into()));
    }
    Ok(drop_blurred(frames))
}

/// A frame this much blurrier than the clip's median (a shake of the phone) is dropped.
const BLURRED_BELOW_MEDIAN: f32 = 0.25;

/// Drops motion-blurred frames: whole-frame sharpness (variance of the Laplacian
/// of a 160 px wide copy) under a quarter of the clip's median. Relative to the
/// clip, so a dim or soft camera loses nothing; at most half the frames go, so a
/// blurred clip is still judged (and refused as blurry) rather than emptied.
fn drop_blurred(frames: Vec<VideoFrame>) -> Vec<VideoFrame> {
    let sharpness: Vec<f32> = frames
        .iter()
        .map(|f| {
            let w = f.pixels.width().clamp(1, 160);
            let h = ((f.pixels.height() as u64 * w as u64) / f.pixels.width().max(1) as u64).max(1) as u32;
            super::pixels::laplacian_variance(&super::pixels::resize_bilinear(&f.pixels, w, h))
        })
        .collect();
    let mut sorted = sharpness.clone();
    sorted.sort_by(f32::total_cmp);
    let cut = sorted[sorted.len() / 2] * BLURRED_BELOW_MEDIAN;
    let mut blurred: Vec<usize> = (0..frames.len()).filter(|&i| sharpness[i] < cut).collect();
    // The blurriest first, and never more than half of the clip.
    blurred.sort_by(|&a, &b| sharpness[a].total_cmp(&sharpness[b]));
    blurred.truncate(frames.len() / 2);
    frames.into_iter().enumerate().filter(|(i, _)| !blurred.contains(i)).map(|(_, f)| f).collect()
}

/// The one stream read: the first video stream that is not a cover picture.
const VIDEO_STREAM: &str = "V:0";

/// FFmpeg's and FFprobe's input options: the sniffed container's demuxer forced,
/// only the accepted demuxers and only local files, for the upload and anything it
/// names (the DASH demuxer, chosen by probing, read `file:///...` from a manifest).
fn demuxer_args(demuxer: &str) -> [String; 6] {
    ["-f", demuxer, "-format_whitelist", DEMUXERS, "-protocol_whitelist", "file"].map(String::from)
}

/// `-max_pixels` for the decoder (see `sample_frames`).
fn decoder_max_pixels(probe: &Probe, max_side: u32) -> u64 {
    let padded = |side: u32| u64::from(side).div_ceil(64) * 64 + 64;
    (4 * padded(probe.width) * padded(probe.height)).min(u64::from(max_side).pow(2)).max(1)
}

async fn probe(input: &str, demuxer: &str, limits: &VideoLimits) -> Result<Probe, MediaError> {
    let mut args: Vec<String> = ["-v", "error"].map(String::from).to_vec();
    args.extend(demuxer_args(demuxer));
    // `-count_packets` demuxes the whole upload (cheap: no decoding) for the true
    // number of frames, which the header may understate (a fragmented MP4's is 0).
    args.extend(
        [
            "-select_streams",
            VIDEO_STREAM,
            "-count_packets",
            "-show_entries",
            "format=duration:stream=width,height,nb_frames,nb_read_packets,avg_frame_rate,r_frame_rate",
            "-of",
            "json",
        ]
        .map(String::from),
    );
    args.push(input.to_string());
    let out = run_limited(&limits.ffprobe, &args, limits, 1 << 20).await?;
    let json: serde_json::Value =
        serde_json::from_slice(&out).map_err(|e| MediaError::InvalidVideo(format!("unreadable probe: {e}")))?;
    Ok(parse_probe(&json, limits.max_duration.as_secs_f64()))
}

/// FFprobe's JSON answer (see `probe`); `max_secs` is the duration decoded at most.
fn parse_probe(json: &serde_json::Value, max_secs: f64) -> Probe {
    let stream = &json["streams"][0];
    let dim = |k: &str| stream[k].as_u64().unwrap_or(0).min(u32::MAX as u64) as u32;
    // Numbers come as strings ("75", "3.000000", "30000/1001") or "N/A".
    let number = |k: &str| stream[k].as_str().and_then(|s| s.parse::<u64>().ok());
    let rate = |k: &str| {
        let (n, d) = stream[k].as_str()?.split_once('/')?;
        let (n, d) = (n.parse::<f64>().ok()?, d.parse::<f64>().ok()?);
        Some(n / d).filter(|r| r.is_finite() && *r > 0.0)
    };
    let duration = json["format"]["duration"].as_str().and_then(|s| s.parse::<f64>().ok()).filter(|d| d.is_finite());
    let counted = number("nb_read_packets").max(number("nb_frames"));
    // Not counted (not expected with `-count_packets`): the frame rate over what is
    // decoded, at least 60 fps.
    let frames = counted.unwrap_or_else(|| {
        let fps = rate("avg_frame_rate").or(rate("r_frame_rate")).unwrap_or(60.0).max(60.0);
        (fps * duration.unwrap_or(max_secs).min(max_secs)).ceil() as u64
    });
    Probe { duration, width: dim("width"), height: dim("height"), frames }
}

/// Starts a decoder under `ulimit -v`, with a clean environment, killed when dropped.
fn spawn_limited(
    program: &Path,
    args: &[String],
    limits: &VideoLimits,
) -> Result<(tokio::process::Child, ChildStdout, ChildStderr), MediaError> {
    let kib = (limits.decoder_memory_bytes / 1024).max(1);
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| MediaError::DecoderUnavailable(format!("{}: {e}", program.display())))?;
    let stdout = child.stdout.take().ok_or_else(|| MediaError::DecoderUnavailable("no stdout".into()))?;
    let stderr = child.stderr.take().ok_or_else(|| MediaError::DecoderUnavailable("no stderr".into()))?;
    Ok((child, stdout, stderr))
}

/// The first 64 KiB of a decoder's messages.
async fn read_messages(stderr: &mut ChildStderr) -> Vec<u8> {
    let mut err = Vec::new();
    // An error reading them leaves what was read: the exit status decides.
    let _ = stderr.take(64 * 1024).read_to_end(&mut err).await;
    err
}

/// Waits for the decoder; its first message line when it failed.
async fn finished(child: &mut tokio::process::Child, messages: &[u8]) -> Result<(), MediaError> {
    let status = child.wait().await.map_err(|e| MediaError::DecoderUnavailable(e.to_string()))?;
    if !status.success() {
        let message = String::from_utf8_lossy(messages);
        let first = message.lines().next().unwrap_or("decoder failed").to_string();
        if status.code() == Some(127) {
            return Err(MediaError::DecoderUnavailable(first));
        }
        return Err(MediaError::InvalidVideo(first));
    }
    Ok(())
}

/// Runs a decoder under `ulimit -v` with a wall-clock limit, reading at most `cap`
/// bytes of its output; the process is killed if it overruns either.
async fn run_limited(
    program: &std::path::Path,
    args: &[String],
    limits: &VideoLimits,
    cap: usize,
) -> Result<Vec<u8>, MediaError> {
    let (mut child, mut stdout, mut stderr) = spawn_limited(program, args, limits)?;
    let work = async {
        let mut out = Vec::new();
        let mut limited_out = (&mut stdout).take(cap as u64 + 1);
        let (read_out, err) = tokio::join!(limited_out.read_to_end(&mut out), read_messages(&mut stderr));
        read_out.map_err(|e| MediaError::InvalidVideo(e.to_string()))?;
        if out.len() > cap {
            return Err(MediaError::VideoTooLarge("decoder output over its limit".into()));
        }
        finished(&mut child, &err).await?;
        Ok(out)
    };
    match tokio::time::timeout(limits.decoder_timeout, work).await {
        Ok(result) => result,
        // The child is killed when dropped.
        Err(_) => Err(MediaError::DecoderTimeout(limits.decoder_timeout.as_secs())),
    }
}

/// Like `run_limited`, for FFmpeg's PPM frames: each frame is read into its own
/// buffer as it comes (one copy of the frames in memory, not the stream and then
/// the frames).
async fn run_frames(
    program: &Path,
    args: &[String],
    limits: &VideoLimits,
    cap: usize,
    max_side: u32,
) -> Result<Vec<RgbImage>, MediaError> {
    let (mut child, mut stdout, mut stderr) = spawn_limited(program, args, limits)?;
    let work = async {
        let (frames, err) = tokio::join!(read_ppm_frames(&mut stdout, cap, max_side), read_messages(&mut stderr));
        let frames = frames?;
        finished(&mut child, &err).await?;
        Ok(frames)
    };
    match tokio::time::timeout(limits.decoder_timeout, work).await {
        Ok(result) => result,
        // The child is killed when dropped.
        Err(_) => Err(MediaError::DecoderTimeout(limits.decoder_timeout.as_secs())),
    }
}

/// Reads FFmpeg's image2pipe PPM output (binary P6, maxval 255, one header per frame)
/// to its end, at most `cap` bytes: the frames before anything else, a frame larger
/// than `max_side`, or a truncated frame; the rest is read and dropped.
async fn read_ppm_frames<R: tokio::io::AsyncRead + Unpin>(
    reader: R,
    cap: usize,
    max_side: u32,
) -> Result<Vec<RgbImage>, MediaError> {
    let mut reader = tokio::io::BufReader::with_capacity(64 * 1024, reader.take(cap as u64 + 1));
    let read_error = |e: std::io::Error| MediaError::InvalidVideo(e.to_string());
    let mut frames = Vec::new();
    let mut header = Vec::with_capacity(32);
    'frames: loop {
        // The header, byte by byte from the buffer: "P6", three numbers, one whitespace.
        header.clear();
        let (width, height) = loop {
            let mut byte = [0u8];
            if reader.read(&mut byte).await.map_err(read_error)? == 0 {
                break 'frames;
            }
            header.push(byte[0]);
            if let Some((w, h, end)) = ppm_header(&header)
                && end == header.len()
            {
                break (w, h);
            }
            if header.len() > 32 {
                break 'frames;
            }
        };
        if width == 0 || height == 0 || width > max_side || height > max_side {
            break;
        }
        let mut pixels = vec![0u8; width as usize * height as usize * 3];
        match reader.read_exact(&mut pixels).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(read_error(e)),
        }
        match RgbImage::from_raw(width, height, pixels) {
            Some(frame) => frames.push(frame),
            None => break,
        }
    }
    // Whatever follows is drained (the decoder must not block on a full pipe).
    tokio::io::copy(&mut reader, &mut tokio::io::sink()).await.map_err(read_error)?;
    let read = reader.into_inner();
    if read.limit() == 0 {
        return Err(MediaError::VideoTooLarge("decoder output over its limit".into()));
    }
    Ok(frames)
}

/// Frames are scaled by FFmpeg to fit this square: a selfie video's face still spans
/// hundreds of pixels, and decoding, copying and the detector pyramid cost less.
const FRAME_MAX_SIDE: u32 = 1280;

/// `P6 <width> <height> 255` and the single whitespace byte after it (FFmpeg writes
/// no comments): (width, height, offset of the pixel data).
fn ppm_header(bytes: &[u8]) -> Option<(u32, u32, usize)> {
    if !bytes.starts_with(b"P6") {
        return None;
    }
    let mut pos = 2;
    let mut fields = [0u32; 3];
    for field in &mut fields {
        while bytes.get(pos)?.is_ascii_whitespace() {
            pos += 1;
        }
        let digits = bytes[pos..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 6 {
            return None;
        }
        *field = std::str::from_utf8(&bytes[pos..pos + digits]).ok()?.parse().ok()?;
        pos += digits;
    }
    if fields[2] != 255 || !bytes.get(pos)?.is_ascii_whitespace() {
        return None;
    }
    Some((fields[0], fields[1], pos + 1))
}

/// Mean luma under 16: a black (or lens-covered) frame carries no face.
fn is_black(image: &RgbImage) -> bool {
    let n = (image.width() as u64 * image.height() as u64).max(1);
    let sum: u64 = image.pixels().map(|p| super::pixels::luma(p) as u64).sum();
    sum / n < 16
}

/// The first bytes of an EBML document (Matroska, WebM).
const EBML_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];

/// Video containers phones and browsers produce, recognised from the bytes.
pub fn is_video(bytes: &[u8]) -> bool {
    let iso_box = bytes.get(4..8).is_some_and(|b| matches!(b, b"ftyp" | b"moov" | b"mdat" | b"wide" | b"free"));
    if is_heif_still(bytes) {
        // A HEIC/HEIF photo (iPhone default) is an image in an ISO box: not a video,
        // so it is refused as an unsupported image format, not as a broken video.
        return false;
    }
    let matroska = bytes.starts_with(&EBML_MAGIC);
    (iso_box || matroska) && image::guess_format(bytes).map_or(true, |f| f == ImageFormat::Avif)
}

/// An ISO-BMFF file whose major brand is a HEIF still image (HEIC, HEIF).
fn is_heif_still(bytes: &[u8]) -> bool {
    bytes.get(4..8) == Some(b"ftyp")
        && bytes.get(8..12).is_some_and(|brand| matches!(brand, b"heic" | b"heix" | b"heim" | b"heis" | b"mif1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11, minor: a HEIC photo sent to authenticate was INVALID_VIDEO.
    #[test]
    fn heic_photos_are_not_videos() {
        assert!(!is_video(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"));
        assert!(!is_video(b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic"));
        let err = crate::media::decode_image(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", Default::default());
        assert!(matches!(err, Err(crate::media::MediaError::UnsupportedFormat)), "{err:?}");
    }

    #[test]
    fn recognises_containers_by_their_bytes() {
        assert!(is_video(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00"));
        assert!(is_video(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00"));
        assert!(is_video(&[0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x86, 0x81]));
        assert!(!is_video(b"\xFF\xD8\xFF\xE0\x00\x10JFIF"));
        assert!(!is_video(b"hello"));
    }

    /// Issue 22, item 1: FFmpeg is told the container `is_video` recognised.
    #[test]
    fn the_demuxer_is_the_sniffed_container() {
        assert_eq!(demuxer_of(b"\x00\x00\x00\x18ftypmp42"), "mov");
        assert_eq!(demuxer_of(b"<!--free--><MPD>"), "mov");
        assert_eq!(demuxer_of(&[0x1A, 0x45, 0xDF, 0xA3, 0x9F]), "matroska");
        let args = demuxer_args("mov");
        assert_eq!(args.join(" "), "-f mov -format_whitelist mov,matroska -protocol_whitelist file");
    }

    /// Issue 22, item 6: at most `limit` decodes per client at once, others unaffected,
    /// places given back (and the client forgotten) when the decodes end.
    #[test]
    fn each_client_decodes_a_few_videos_at_once() {
        let table = ClientDecodes::default();
        let (a, b): (IpAddr, IpAddr) = ("198.51.100.7".parse().expect("ip"), "203.0.113.9".parse().expect("ip"));
        let first = table.take(a, 2).expect("first");
        let second = table.take(a, 2).expect("second");
        assert!(matches!(table.take(a, 2), Err(MediaError::ClientBusy(2))));
        let other = table.take(b, 2).expect("another client is not limited by the first");
        drop(first);
        let third = table.take(a, 2).expect("a place was given back");
        drop((second, third, other));
        assert_eq!(table.clients(), 0, "clients are forgotten at zero");
        // 0: no limit.
        let many: Vec<_> = (0..50).map(|_| table.take(a, 0).expect("unlimited")).collect();
        assert_eq!(many.len(), 50);
    }

    /// Issue 22, item 6: the decoding work from FFprobe's answer.
    #[test]
    fn decoding_work_is_counted_from_the_packets() {
        let probe = |streams: serde_json::Value, duration: &str| {
            parse_probe(&serde_json::json!({"streams": [streams], "format": {"duration": duration}}), 60.0)
        };
        // The packets counted win over a header that understates them.
        let p = probe(
            serde_json::json!({"width": 4096, "height": 4096, "nb_frames": "30", "nb_read_packets": "1770",
                "avg_frame_rate": "30/1", "r_frame_rate": "30/1"}),
            "59.0",
        );
        assert_eq!((p.frames, p.pixel_frames()), (1770, 4096 * 4096 * 1770));
        assert!(p.pixel_frames() > DEFAULT_MAX_PIXEL_FRAMES);
        // A browser WebM: no duration, no frame count in the header.
        let p = probe(
            serde_json::json!({"width": 1280, "height": 720, "nb_read_packets": "76", "avg_frame_rate": "23/3"}),
            "N/A",
        );
        assert_eq!((p.duration, p.frames), (None, 76));
        // Nothing counted: the frame rate (at least 60) over the decoded duration.
        let p = probe(serde_json::json!({"width": 1920, "height": 1080, "avg_frame_rate": "0/0"}), "N/A");
        assert_eq!(p.frames, 3600);
        // The largest legitimate clips fit the default budget.
        for (w, h, frames) in [(1920u64, 1080u64, 60 * 30u64), (3840, 2160, 30 * 15)] {
            assert!(w * h * frames < DEFAULT_MAX_PIXEL_FRAMES, "{w}x{h}x{frames}");
        }
    }

    #[test]
    fn the_decoder_refuses_frames_far_larger_than_declared() {
        let probe = |width, height| Probe { duration: None, width, height, frames: 1 };
        assert_eq!(decoder_max_pixels(&probe(64, 64), 4096), 4 * 128 * 128);
        assert_eq!(decoder_max_pixels(&probe(1920, 1080), 4096), 4 * 1984 * 1152);
        assert_eq!(decoder_max_pixels(&probe(4000, 4000), 4096), 4096 * 4096);
    }

    /// Issue 22, item 13: uploads left by a killed server are swept, live ones kept.
    #[test]
    fn stale_uploads_are_swept_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = std::time::SystemTime::now() - STALE_UPLOAD_AGE - Duration::from_secs(60);
        let file = |name: &str, modified: Option<std::time::SystemTime>| {
            let path = dir.path().join(name);
            let f = std::fs::File::create(&path).expect("create");
            if let Some(t) = modified {
                f.set_modified(t).expect("mtime");
            }
            path
        };
        let stale = file("faceauth-upload-stale", Some(old));
        let live = file("faceauth-upload-live", None);
        let other = file("someone-else", Some(old));
        std::fs::create_dir(dir.path().join("faceauth-upload-dir")).expect("dir");
        assert_eq!(sweep_stale_uploads(dir.path()), 1);
        assert!(!stale.exists() && live.exists() && other.exists() && dir.path().join("faceauth-upload-dir").exists());
        assert_eq!(sweep_stale_uploads(&dir.path().join("missing")), 0);
    }

    #[test]
    fn motion_blurred_frames_are_dropped_but_never_most_of_the_clip() {
        // A sharp checkerboard, and the same smeared flat.
        let sharp =
            || {
                RgbImage::from_fn(64, 48, |x, y| {
                    if (x / 4 + y / 4) % 2 == 0 { image::Rgb([250; 3]) } else { image::Rgb([5; 3]) }
                })
            };
        let smeared = || RgbImage::from_pixel(64, 48, image::Rgb([128; 3]));
        let frame = |t: u32, pixels: RgbImage| VideoFrame { timestamp_ms: t, pixels };
        let kept = drop_blurred(vec![frame(0, sharp()), frame(1, smeared()), frame(2, sharp()), frame(3, sharp())]);
        assert_eq!(kept.iter().map(|f| f.timestamp_ms).collect::<Vec<_>>(), [0, 2, 3]);
        // A mostly blurred clip keeps its frames, to be judged (and refused as blurry).
        let kept = drop_blurred(vec![frame(0, sharp()), frame(1, smeared()), frame(2, smeared()), frame(3, smeared())]);
        assert_eq!(kept.len(), 4, "the median frame is blurred: nothing is far below it");
        let kept = drop_blurred(vec![frame(0, sharp()), frame(1, sharp()), frame(2, smeared()), frame(3, smeared())]);
        assert_eq!(kept.len(), 2);
    }

    fn read_frames(stream: Vec<u8>, cap: usize) -> Result<Vec<RgbImage>, MediaError> {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(read_ppm_frames(&stream[..], cap, 1280))
    }

    #[test]
    fn reads_concatenated_ppms() {
        let one = |w: u32, h: u32, v: u8| {
            let mut f = format!("P6\n{w} {h}\n255\n").into_bytes();
            f.extend(std::iter::repeat_n(v, (w * h * 3) as usize));
            f
        };
        let mut stream = one(3, 2, 200);
        stream.extend(one(2, 2, 10));
        stream.extend(&one(4, 4, 7)[..20]); // a truncated third
        let frames = read_frames(stream.clone(), 1 << 20).expect("read");
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].dimensions(), (3, 2));
        assert_eq!(frames[1].get_pixel(1, 1).0, [10, 10, 10]);
        // Larger than allowed, or not a PPM: nothing more is read.
        assert!(read_frames(one(3000, 1, 0), 1 << 20).expect("read").is_empty());
        assert!(read_frames(b"P5\n1 1\n255\n\0".to_vec(), 1 << 20).expect("read").is_empty());
        assert!(read_frames(b"P6\n1 1\n65535\n\0\0\0\0\0\0".to_vec(), 1 << 20).expect("read").is_empty());
        // More output than the cap is refused, even after a bad header.
        assert!(matches!(read_frames(stream.clone(), stream.len() - 1), Err(MediaError::VideoTooLarge(_))));
        assert_eq!(read_frames(stream.clone(), stream.len()).expect("read").len(), 2);
        let mut junk = b"P5".to_vec();
        junk.extend(std::iter::repeat_n(0, 100));
        assert!(matches!(read_frames(junk, 50), Err(MediaError::VideoTooLarge(_))));
    }
}
