//! A clip sampled into frames: the header checked, the upload written for the
//! decoder, a bounded number of frames spread over the clip handed on as they are
//! decoded, black ones dropped; which are motion-blurred is said from their
//! sharpness once the clip's are known.

use std::io::Write;

use image::RgbImage;

use super::super::{MediaError, container, pixels};
use super::probe::{Probe, check, decoder_max_pixels, probe};
use super::process::run_frames;
use super::slots::DECODE_CLIENT;
use super::sweep::UPLOAD_PREFIX;
use super::{VIDEO_STREAM, VideoFrame, VideoLimits, demuxer_args, demuxer_of};

/// Samples up to `max_frames` frames (at most 64) spread over the clip (upright:
/// FFmpeg applies the rotation metadata of phone videos), dropping black frames, and
/// sends each on `frames` as soon as it is decoded: the caller analyses one while
/// the next is decoded, and the clip's frames are never all in memory at once (24
/// frames of 1280x960 are 88 MB: with them held, one 1440x1080 clip under the
/// liveness policy took the server to 356 MB). Sending stops, and the decoder is
/// killed, once the receiver is dropped.
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
    frames: tokio::sync::mpsc::UnboundedSender<VideoFrame>,
) -> Result<(), MediaError> {
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
    // A decoder of the server's few: a burst of clips waits here holding its upload,
    // not a decoder process and its frames each (the semaphore is never closed).
    let decoder =
        limits.decoders.clone().acquire_owned().await.map_err(|e| MediaError::DecoderUnavailable(e.to_string()))?;
    let (mut index, mut sent) = (0u32, 0u32);
    let on_frame = |pixels: RgbImage| {
        let timestamp_ms = ((index as f64 / fps) * 1000.0) as u32;
        index += 1;
        if is_black(&pixels) {
            return true;
        }
        sent += 1;
        frames.send(VideoFrame { timestamp_ms, pixels }).is_ok()
    };
    run_frames(&limits.ffmpeg, &args, limits, cap, FRAME_MAX_SIDE, on_frame).await?;
    drop(decoder);
    drop(upload);
    if sent == 0 {
        return Err(MediaError::InvalidVideo("no frame could be decoded".into()));
    }
    Ok(())
}

/// A frame this much blurrier than the clip's median (a shake of the phone) is dropped.
const BLURRED_BELOW_MEDIAN: f32 = 0.25;

/// Whole-frame sharpness: the variance of the Laplacian of a 160 px wide copy.
pub fn sharpness(frame: &RgbImage) -> f32 {
    let w = frame.width().clamp(1, 160);
    let h = ((frame.height() as u64 * w as u64) / frame.width().max(1) as u64).max(1) as u32;
    pixels::laplacian_variance(&pixels::resize_bilinear(frame, w, h))
}

/// Which frames of a clip are motion-blurred (a shake of the phone), from each
/// frame's `sharpness`: under a quarter of the clip's median. Relative to the clip,
/// so a dim or soft camera loses nothing; at most half the frames, the blurriest, so
/// a blurred clip is still judged (and refused as blurry) rather than emptied.
pub fn blurred(sharpness: &[f32]) -> Vec<bool> {
    let mut flags = vec![false; sharpness.len()];
    if sharpness.is_empty() {
        return flags;
    }
    let mut sorted = sharpness.to_vec();
    sorted.sort_by(f32::total_cmp);
    let cut = sorted[sorted.len() / 2] * BLURRED_BELOW_MEDIAN;
    let mut below: Vec<usize> = (0..sharpness.len()).filter(|&i| sharpness[i] < cut).collect();
    // The blurriest first, and never more than half of the clip.
    below.sort_by(|&a, &b| sharpness[a].total_cmp(&sharpness[b]));
    below.truncate(sharpness.len() / 2);
    for i in below {
        flags[i] = true;
    }
    flags
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

    /// A burst of clips runs at most `decoders` decoder processes at once (the real
    /// FFmpeg, started through a script that counts the processes running).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_of_clips_waits_for_the_servers_decoders() {
        if std::process::Command::new("ffmpeg").arg("-version").output().is_err() {
            eprintln!("skipped: no ffmpeg (scripts/setup.sh installs it)");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let (running, most) = (dir.path().join("running"), dir.path().join("most"));
        let script = dir.path().join("ffmpeg");
        // Under a lock: count up, remember the highest count, run FFmpeg, count down.
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexec 9>{lock}\nflock 9; n=$(( $(cat {running} 2>/dev/null || echo 0) + 1 )); echo $n > {running}\n\
                 [ $n -gt $(cat {most} 2>/dev/null || echo 0) ] && echo $n > {most}; flock -u 9\n\
                 ffmpeg \"$@\"; status=$?\nflock 9; echo $(( $(cat {running}) - 1 )) > {running}; flock -u 9\nexit $status\n",
                lock = dir.path().join("lock").display(),
                running = running.display(),
                most = most.display(),
            ),
        )
        .expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let clip = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/video_person_a.mp4"))
            .expect("fixture");
        for decoders in [1, 2] {
            let _ = std::fs::remove_file(&most);
            let limits = VideoLimits {
                ffmpeg: script.clone(),
                decoders: std::sync::Arc::new(tokio::sync::Semaphore::new(decoders)),
                temp_dir: dir.path().to_path_buf(),
                ..VideoLimits::default()
            };
            let one = || async {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                sample_frames(clip.clone(), &limits, 8, tx).await.expect("decoded");
                let mut n = 0;
                while rx.recv().await.is_some() {
                    n += 1;
                }
                n
            };
            let (a, b, c, d) = tokio::join!(one(), one(), one(), one());
            assert!([a, b, c, d].iter().all(|&n| n > 0), "{:?}", [a, b, c, d]);
            let most: usize = std::fs::read_to_string(&most).expect("counted").trim().parse().expect("a count");
            assert!(most >= 1 && most <= decoders, "{most} decoders ran at once, of {decoders} allowed");
        }
    }

    #[test]
    fn motion_blurred_frames_are_dropped_but_never_most_of_the_clip() {
        // A sharp checkerboard, and the same smeared flat.
        let sharp = sharpness(&RgbImage::from_fn(64, 48, |x, y| {
            if (x / 4 + y / 4) % 2 == 0 { image::Rgb([250; 3]) } else { image::Rgb([5; 3]) }
        }));
        let smeared = sharpness(&RgbImage::from_pixel(64, 48, image::Rgb([128; 3])));
        assert!(sharp > 100.0 * smeared.max(1e-3), "{sharp} vs {smeared}");
        assert_eq!(blurred(&[sharp, smeared, sharp, sharp]), [false, true, false, false]);
        // A mostly blurred clip keeps its frames, to be judged (and refused as blurry).
        assert_eq!(blurred(&[sharp, smeared, smeared, smeared]), [false; 4], "the median frame is blurred");
        assert_eq!(blurred(&[sharp, sharp, smeared, smeared]), [false, false, true, true]);
        assert!(blurred(&[]).is_empty());
    }
}
