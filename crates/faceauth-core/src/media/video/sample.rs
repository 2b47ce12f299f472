//! A clip sampled into frames: the header checked, the upload written for the
//! decoder, a bounded number of frames spread over the clip, black and motion-blurred
//! ones dropped.

use std::io::Write;

use image::RgbImage;

use super::super::{MediaError, container, pixels};
use super::probe::{Probe, check, decoder_max_pixels, probe};
use super::process::run_frames;
use super::slots::DECODE_CLIENT;
use super::sweep::UPLOAD_PREFIX;
use super::{VIDEO_STREAM, VideoFrame, VideoLimits, demuxer_args, demuxer_of};

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
        let header = container::read(&bytes, demuxer == "matroska").map(Probe::from);
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
            pixels::laplacian_variance(&pixels::resize_bilinear(&f.pixels, w, h))
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

/// Frames are scaled by FFmpeg to fit this square: a selfie video's face still spans
/// hundreds of pixels, and decoding, copying and the detector pyramid cost less.
const FRAME_MAX_SIDE: u32 = 1280;

/// Mean luma under 16: a black (or lens-covered) frame carries no face.
fn is_black(image: &RgbImage) -> bool {
    let n = (image.width() as u64 * image.height() as u64).max(1);
    let sum: u64 = image.pixels().map(|p| pixels::luma(p) as u64).sum();
    sum / n < 16
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
