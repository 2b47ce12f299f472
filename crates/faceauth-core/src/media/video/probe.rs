//! What a clip declares (read by `container`, or by FFprobe), and the clips refused
//! from it before anything is decoded.

use super::super::{MediaError, container};
use super::process::run_limited;
use super::{VIDEO_STREAM, VideoLimits, demuxer_args};

/// What the container declares, and the packets of its video: read by `container`
/// (every video track, at the largest size), or by FFprobe (the first video stream).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Probe {
    pub(super) duration: Option<f64>,
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

impl From<container::Header> for Probe {
    /// Every video track counts, at the largest frame size declared: FFmpeg decodes
    /// one (`-map 0:V:0`), so this is never less than its work.
    fn from(header: container::Header) -> Self {
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
pub(super) fn check(probe: &Probe, limits: &VideoLimits) -> Result<(), MediaError> {
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

/// `-max_pixels` for the decoder (see `sample_frames`).
pub(super) fn decoder_max_pixels(probe: &Probe, max_side: u32) -> u64 {
    let padded = |side: u32| u64::from(side).div_ceil(64) * 64 + 64;
    (4 * padded(probe.width) * padded(probe.height)).min(u64::from(max_side).pow(2)).max(1)
}

pub(super) async fn probe(input: &str, demuxer: &str, limits: &VideoLimits) -> Result<Probe, MediaError> {
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

#[cfg(test)]
mod tests {
    use super::super::DEFAULT_MAX_PIXEL_FRAMES;
    use super::*;

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
}
