//! Selfie videos: FFmpeg, run as a separate process with a hard time limit, an
//! address-space limit and only the `file` protocol (no network), reads the upload
//! from a private temporary file that is removed whatever happens, and hands back
//! a bounded number of frames spread over the clip as PNGs on a pipe.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use image::{ImageFormat, RgbImage};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

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
    /// Wall-clock limit of each decoder process.
    pub decoder_timeout: Duration,
    /// Address-space limit of each decoder process.
    pub decoder_memory_bytes: u64,
    /// Where the private temporary copy of an upload lives.
    pub temp_dir: PathBuf,
    /// The `ffmpeg` and `ffprobe` executables.
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
            decoder_timeout: Duration::from_secs(20),
            decoder_memory_bytes: 2 << 30,
            temp_dir: std::env::temp_dir(),
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
        }
    }
}

/// One sampled frame.
#[derive(Debug)]
pub struct VideoFrame {
    pub timestamp_ms: u32,
    pub pixels: RgbImage,
}

/// What the container declares.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Probe {
    duration: Option<f64>,
    width: u32,
    height: u32,
}

/// Samples up to `max_frames` frames (at most 64) spread over the clip (upright: FFmpeg applies the rotation metadata
/// of phone videos), dropping black frames.
pub async fn sample_frames(
    bytes: Vec<u8>,
    limits: &VideoLimits,
    max_frames: u32,
) -> Result<Vec<VideoFrame>, MediaError> {
    let max_frames = max_frames.clamp(1, 64);
    // Written off the async threads; dropped (and the file removed) on every path
    // out of this function.
    let temp_dir = limits.temp_dir.clone();
    let upload = tokio::task::spawn_blocking(move || -> std::io::Result<tempfile::NamedTempFile> {
        let mut file = tempfile::Builder::new().prefix("faceauth-upload-").tempfile_in(temp_dir)?;
        file.write_all(&bytes)?;
        file.flush()?;
        Ok(file)
    })
    .await
    .map_err(|e| MediaError::DecoderUnavailable(format!("temporary file: {e}")))?
    .map_err(|e| MediaError::DecoderUnavailable(format!("temporary file: {e}")))?;
    let path = upload.path().to_path_buf();

    let probe = probe(&path, limits).await?;
    if probe.width == 0 || probe.height == 0 {
        return Err(MediaError::InvalidVideo("no decodable video stream".into()));
    }
    if probe.width > limits.max_side || probe.height > limits.max_side {
        return Err(MediaError::VideoTooLarge(format!("{}x{} frames", probe.width, probe.height)));
    }
    let max_secs = limits.max_duration.as_secs_f64();
    if let Some(d) = probe.duration
        && d > max_secs
    {
        return Err(MediaError::VideoTooLong(format!("{d:.1} s, limit {max_secs:.0} s")));
    }
    // Known duration: frames evenly over it. Unknown (browser WebM): 2 per second,
    // and the decoder never reads past the duration limit.
    let fps = match probe.duration {
        Some(d) if d > 0.0 => (max_frames as f64 / d).clamp(0.05, 30.0),
        _ => 2.0,
    };
    let filter = format!(
        "fps={fps:.6},scale='min({FRAME_MAX_SIDE},iw)':'min({FRAME_MAX_SIDE},ih)':force_original_aspect_ratio=decrease"
    );
    let args: Vec<String> = vec![
        "-nostdin".into(),
        "-v".into(),
        "error".into(),
        // A damaged stream (an interrupted upload) is refused, not half-read.
        "-xerror".into(),
        "-protocol_whitelist".into(),
        "file".into(),
        "-t".into(),
        format!("{max_secs}"),
        "-i".into(),
        path.display().to_string(),
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
    ];
    // Enough for max_frames frames of FRAME_MAX_SIDE squared.
    let cap = max_frames as usize * (FRAME_MAX_SIDE as usize).pow(2) * 3 + 1024 * max_frames as usize;
    let output = run_limited(&limits.ffmpeg, &args, limits, cap).await?;
    let mut frames = Vec::new();
    for (k, pixels) in split_ppm_stream(output, FRAME_MAX_SIDE).into_iter().enumerate() {
        if is_black(&pixels) {
            continue;
        }
        frames.push(VideoFrame { timestamp_ms: ((k as f64 / fps) * 1000.0) as u32, pixels });
    }
    drop(upload);
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
            crate::vision::geometry::laplacian_variance(&crate::vision::geometry::resize_bilinear(&f.pixels, w, h))
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

async fn probe(path: &std::path::Path, limits: &VideoLimits) -> Result<Probe, MediaError> {
    let args: Vec<String> = [
        "-v",
        "error",
        "-protocol_whitelist",
        "file",
        "-select_streams",
        "v:0",
        "-show_entries",
        "format=duration:stream=width,height",
        "-of",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([path.display().to_string()])
    .collect();
    let out = run_limited(&limits.ffprobe, &args, limits, 1 << 20).await?;
    let json: serde_json::Value =
        serde_json::from_slice(&out).map_err(|e| MediaError::InvalidVideo(format!("unreadable probe: {e}")))?;
    let stream = &json["streams"][0];
    let dim = |k: &str| stream[k].as_u64().unwrap_or(0).min(u32::MAX as u64) as u32;
    let duration = json["format"]["duration"].as_str().and_then(|s| s.parse::<f64>().ok()).filter(|d| d.is_finite());
    Ok(Probe { duration, width: dim("width"), height: dim("height") })
}

/// Runs a decoder under `ulimit -v` with a wall-clock limit, reading at most `cap`
/// bytes of its output; the process is killed if it overruns either.
async fn run_limited(
    program: &std::path::Path,
    args: &[String],
    limits: &VideoLimits,
    cap: usize,
) -> Result<Vec<u8>, MediaError> {
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
    let mut stdout = child.stdout.take().ok_or_else(|| MediaError::DecoderUnavailable("no stdout".into()))?;
    let mut stderr = child.stderr.take().ok_or_else(|| MediaError::DecoderUnavailable("no stderr".into()))?;
    let work = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut limited_out = (&mut stdout).take(cap as u64 + 1);
        let mut limited_err = (&mut stderr).take(64 * 1024);
        let (read_out, _) = tokio::join!(limited_out.read_to_end(&mut out), limited_err.read_to_end(&mut err));
        read_out.map_err(|e| MediaError::InvalidVideo(e.to_string()))?;
        if out.len() > cap {
            return Err(MediaError::VideoTooLarge("decoder output over its limit".into()));
        }
        let status = child.wait().await.map_err(|e| MediaError::DecoderUnavailable(e.to_string()))?;
        if !status.success() {
            let message = String::from_utf8_lossy(&err);
            let first = message.lines().next().unwrap_or("decoder failed").to_string();
            if status.code() == Some(127) {
                return Err(MediaError::DecoderUnavailable(first));
            }
            return Err(MediaError::InvalidVideo(first));
        }
        Ok(out)
    };
    match tokio::time::timeout(limits.decoder_timeout, work).await {
        Ok(result) => result,
        // The child is killed when dropped.
        Err(_) => Err(MediaError::DecoderTimeout(limits.decoder_timeout.as_secs())),
    }
}

/// Frames are scaled by FFmpeg to fit this square: a selfie video's face still spans
/// hundreds of pixels, and decoding, copying and the detector pyramid cost less.
const FRAME_MAX_SIDE: u32 = 1280;

/// Splits FFmpeg's image2pipe PPM output (binary P6, maxval 255, one header per
/// frame) into frames; stops at anything else, a frame larger than `max_side`, or a
/// truncated frame.
fn split_ppm_stream(bytes: Vec<u8>, max_side: u32) -> Vec<RgbImage> {
    let mut frames = Vec::new();
    let mut pos = 0;
    while let Some((width, height, data_start)) = ppm_header(&bytes[pos..]) {
        if width == 0 || height == 0 || width > max_side || height > max_side {
            break;
        }
        let start = pos + data_start;
        let Some(end) = start.checked_add(width as usize * height as usize * 3).filter(|&e| e <= bytes.len()) else {
            break;
        };
        match RgbImage::from_raw(width, height, bytes[start..end].to_vec()) {
            Some(frame) => frames.push(frame),
            None => break,
        }
        pos = end;
    }
    frames
}

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
    let sum: u64 = image.pixels().map(|p| crate::vision::geometry::luma(p) as u64).sum();
    sum / n < 16
}

/// Video containers phones and browsers produce, recognised from the bytes.
pub fn is_video(bytes: &[u8]) -> bool {
    let iso_box = bytes.get(4..8).is_some_and(|b| matches!(b, b"ftyp" | b"moov" | b"mdat" | b"wide" | b"free"));
    if is_heif_still(bytes) {
        // A HEIC/HEIF photo (iPhone default) is an image in an ISO box: not a video,
        // so it is refused as an unsupported image format, not as a broken video.
        return false;
    }
    let matroska = bytes.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]);
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

    #[test]
    fn splits_concatenated_ppms() {
        let one = |w: u32, h: u32, v: u8| {
            let mut f = format!("P6\n{w} {h}\n255\n").into_bytes();
            f.extend(std::iter::repeat_n(v, (w * h * 3) as usize));
            f
        };
        let mut stream = one(3, 2, 200);
        stream.extend(one(2, 2, 10));
        stream.extend(&one(4, 4, 7)[..20]); // a truncated third
        let frames = split_ppm_stream(stream, 1280);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].dimensions(), (3, 2));
        assert_eq!(frames[1].get_pixel(1, 1).0, [10, 10, 10]);
        // Larger than allowed, or not a PPM: nothing more is read.
        assert!(split_ppm_stream(one(3000, 1, 0), 1280).is_empty());
        assert!(split_ppm_stream(b"P5\n1 1\n255\n\0".to_vec(), 1280).is_empty());
        assert!(split_ppm_stream(b"P6\n1 1\n65535\n\0\0\0\0\0\0".to_vec(), 1280).is_empty());
    }
}
